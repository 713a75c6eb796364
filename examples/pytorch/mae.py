"""Masked autoencoder (MAE) pre-training with a plain PyTorch loop.

The whole MAE data path in one loop: augment -> random_token_mask -> encode only the visible
tokens -> decoder predicts the masked patches -> MSE on those patches. Defaults train a small ViT
on Fashion-MNIST on a laptop CPU (or a GPU when there is one):

    python examples/pytorch/mae.py --epochs 10
    python examples/pytorch/mae.py --dataset folder --data-path ~/images --image-size 224 \
        --patch-size 16 --embed-dim 384 --num-heads 6

Every sample's crop, flip and mask noise come from a generator seeded by (seed, epoch, dataset
index), so a run is reproducible and examples/lightning/mae.py gives the same loss curve.
"""

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision.transforms import v2

from ssl_mae import MAEDecoder, MAELoss, MaskedVisionTransformer, random_token_mask
from ssl_mae.data import build_dataset, dataset_channels
from ssl_mae.loss import masked_patch_targets
from ssl_mae.training.optim import (
    build_adamw,
    param_groups_weight_decay,
    scaled_lr,
    warmup_cosine_scheduler,
)
from ssl_mae.transforms import (
    FASHION_MNIST_NORMALIZE,
    IMAGENET_NORMALIZE,
    BatchedMAEAugment,
    CropParams,
)

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--dataset", default="fashion_mnist", help="fashion_mnist, folder, cifar10...")
parser.add_argument("--data-path", default=None, help="dataset directory (default: built-in)")
parser.add_argument("--limit-images", type=int, default=0, help="train on the first N (0: all)")
parser.add_argument("--image-size", type=int, default=28)
parser.add_argument("--patch-size", type=int, default=4)
parser.add_argument("--embed-dim", type=int, default=192)
parser.add_argument("--depth", type=int, default=6)
parser.add_argument("--num-heads", type=int, default=3)
parser.add_argument("--decoder-dim", type=int, default=128)
parser.add_argument("--decoder-depth", type=int, default=2)
parser.add_argument("--decoder-heads", type=int, default=4)
parser.add_argument("--mask-ratio", type=float, default=0.75)
parser.add_argument("--norm-pix-loss", action="store_true", help="per-patch normalised targets")
parser.add_argument("--batch-size", type=int, default=256)
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--max-steps", type=int, default=-1, help="stop after N steps (-1: no limit)")
parser.add_argument("--base-lr", type=float, default=1.5e-4, help="lr for a batch of 256 images")
parser.add_argument("--weight-decay", type=float, default=0.05)
parser.add_argument("--warmup-epochs", type=int, default=1)
parser.add_argument("--num-workers", type=int, default=2)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
parser.add_argument("--output-dir", type=Path, default=Path("output/pytorch_mae"))


class IndexedImages(Dataset[tuple[Tensor, int]]):
    """Yields (uint8 image, index); the index seeds the sample's augmentation and mask."""

    def __init__(self, dataset: Dataset[tuple[Tensor, int]]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.dataset[index][0], index


def views_and_noise(
    images: Tensor, indices: Tensor, epoch: int, seed: int, augment: BatchedMAEAugment, length: int
) -> tuple[Tensor, Tensor]:
    """Crops/flips images (B, C, H, W) on their device and draws mask noise (B, length).

    Each sample has its own generator seeded by (seed, epoch, index): it gets the same crop, flip
    and mask whichever batch, worker or DDP rank it lands on.
    """
    height, width = images.shape[-2:]
    params, noise = [], []
    for index in indices.tolist():
        state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0]
        generator = torch.Generator().manual_seed(int(state))
        params.append(augment.sample_params(1, height, width, generator=generator))
        noise.append(torch.rand(1, length, generator=generator))
    crops = CropParams(*(torch.cat(values) for values in zip(*params, strict=True)))
    return augment.apply_params(images, crops), torch.cat(noise).to(images.device)


def main(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)  # same seed -> same initial weights
    in_chans = dataset_channels(args.dataset)
    vit = {"img_size": args.image_size, "patch_size": args.patch_size, "in_chans": in_chans}
    vit |= {"embed_dim": args.embed_dim, "depth": args.depth, "num_heads": args.num_heads}
    # No mask token in the encoder: MAE drops masked tokens, and an unused parameter would
    # make DDP need find_unused_parameters (a graph search every step).
    encoder = MaskedVisionTransformer.from_timm(vit, use_mask_token=False)
    decoder = MAEDecoder(
        num_patches=encoder.num_patches,
        patch_size=args.patch_size,
        in_chans=in_chans,
        embed_dim=args.embed_dim,
        decoder_embed_dim=args.decoder_dim,
        decoder_depth=args.decoder_depth,
        decoder_num_heads=args.decoder_heads,
    )
    model = nn.ModuleDict({"encoder": encoder, "decoder": decoder}).to(args.device)
    criterion = MAELoss(norm_pix=args.norm_pix_loss)

    size = (args.image_size, args.image_size)
    to_tensor = v2.Compose([v2.PILToTensor(), v2.Resize(size), v2.CenterCrop(size)])
    dataset = build_dataset(args.dataset, root=args.data_path, transform=to_tensor)
    if args.limit_images > 0:
        dataset = Subset(dataset, range(min(args.limit_images, len(dataset))))  # type: ignore[arg-type]
    indexed = IndexedImages(dataset)
    # A one-replica DistributedSampler shuffles by (seed, epoch) only, so the order does not
    # depend on how the loop consumes the loader, and matches the distributed example.
    sampler: DistributedSampler[int] = DistributedSampler(
        indexed, num_replicas=1, rank=0, shuffle=True, seed=args.seed
    )
    loader = DataLoader(
        indexed,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.num_workers,
        pin_memory=args.device.startswith("cuda"),
        drop_last=False,
    )
    normalize = FASHION_MNIST_NORMALIZE if in_chans == 1 else IMAGENET_NORMALIZE
    augment = BatchedMAEAugment(size, min_scale=0.2, normalize=normalize, interpolation="bicubic")

    total_steps = args.epochs * len(loader)
    total_steps = min(total_steps, args.max_steps) if args.max_steps >= 0 else total_steps
    groups = param_groups_weight_decay(model, weight_decay=args.weight_decay)
    optimizer = build_adamw(groups, lr=scaled_lr(args.base_lr, args.batch_size))
    warmup_steps = min(args.warmup_epochs * len(loader), total_steps)
    scheduler = warmup_cosine_scheduler(optimizer, total_steps, warmup_steps)

    losses: list[float] = []
    model.train()
    for epoch in range(math.ceil(total_steps / len(loader))):  # the last may stop early
        sampler.set_epoch(epoch)  # a new order every epoch (Lightning does this itself)
        for images, indices in itertools.islice(loader, total_steps - len(losses)):
            images = images.to(args.device, non_blocking=True)
            views, noise = views_and_noise(
                images, indices, epoch, args.seed, augment, encoder.num_patches
            )
            # idx_keep / idx_mask index the full token sequence (class token at 0).
            idx_keep, idx_mask = random_token_mask(
                (views.shape[0], encoder.sequence_length), args.mask_ratio, noise=noise
            )
            x_encoded = encoder.encode(views, idx_keep=idx_keep)  # visible tokens only
            pred = decoder.predict_masked(x_encoded, idx_keep, idx_mask)
            target = masked_patch_targets(views, args.patch_size, idx_mask)
            loss = criterion(pred, target)

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        print(f"epoch {epoch:3d}  step {len(losses):6d}  loss {losses[-1]:.4f}")

    args.output_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.output_dir / "model.pt")
    (args.output_dir / "losses.json").write_text(json.dumps(losses))


if __name__ == "__main__":
    main(parser.parse_args())
