"""Masked autoencoder (MAE) pre-training with PyTorch Lightning.

A small LightningModule assembled from the ssl_mae blocks (the same modules, built in the same
order, as examples/pytorch/mae.py). Defaults train a small ViT on Fashion-MNIST on a laptop CPU,
or a GPU when there is one:

    python examples/lightning/mae.py --epochs 10
    python examples/lightning/mae.py --dataset folder --data-path ~/images --image-size 224 \
        --patch-size 16 --embed-dim 384 --num-heads 6

Every sample's crop, flip and mask noise come from a generator seeded by (seed, epoch, dataset
index), so with the same seed this script and examples/pytorch/mae.py give the same losses.
"""

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch import Tensor
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
parser.add_argument("--accelerator", default="auto", help="cpu, gpu, mps or auto")
parser.add_argument("--output-dir", default="output/lightning_mae")


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


class MAE(pl.LightningModule):
    """MAE: a ViT encoder sees only the visible patches, a light decoder predicts the rest."""

    def __init__(self, **hparams: Any) -> None:
        super().__init__()
        self.save_hyperparameters()
        hp: Any = self.hparams
        in_chans = dataset_channels(hp.dataset)
        vit = {"img_size": hp.image_size, "patch_size": hp.patch_size, "in_chans": in_chans}
        vit |= {"embed_dim": hp.embed_dim, "depth": hp.depth, "num_heads": hp.num_heads}
        # No mask token in the encoder: MAE drops masked tokens, and an unused parameter would
        # make DDP need find_unused_parameters (a graph search every step).
        self.encoder = MaskedVisionTransformer.from_timm(vit, use_mask_token=False)
        self.decoder = MAEDecoder(
            num_patches=self.encoder.num_patches,
            patch_size=hp.patch_size,
            in_chans=in_chans,
            embed_dim=hp.embed_dim,
            decoder_embed_dim=hp.decoder_dim,
            decoder_depth=hp.decoder_depth,
            decoder_num_heads=hp.decoder_heads,
        )
        self.criterion = MAELoss(norm_pix=hp.norm_pix_loss)
        normalize = FASHION_MNIST_NORMALIZE if in_chans == 1 else IMAGENET_NORMALIZE
        self.augment = BatchedMAEAugment(
            hp.image_size, min_scale=0.2, normalize=normalize, interpolation="bicubic"
        )
        self.losses: list[Tensor] = []

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        hp: Any = self.hparams
        images, indices = batch
        epoch, seed = self.current_epoch, hp.seed
        num_patches = self.encoder.num_patches
        views, noise = views_and_noise(images, indices, epoch, seed, self.augment, num_patches)
        # idx_keep / idx_mask index the full token sequence (class token at 0).
        idx_keep, idx_mask = random_token_mask(
            (views.shape[0], self.encoder.sequence_length), hp.mask_ratio, noise=noise
        )
        x_encoded = self.encoder.encode(views, idx_keep=idx_keep)  # visible tokens only
        pred = self.decoder.predict_masked(x_encoded, idx_keep, idx_mask)
        target = masked_patch_targets(views, hp.patch_size, idx_mask)
        loss: Tensor = self.criterion(pred, target)
        self.log("train_loss", loss, prog_bar=True)
        self.losses.append(loss.detach())
        return loss

    def configure_optimizers(self) -> Any:
        hp: Any = self.hparams
        total_steps = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = int(self.trainer.num_training_batches)
        warmup_steps = min(hp.warmup_epochs * steps_per_epoch, total_steps)
        groups = param_groups_weight_decay(self, weight_decay=hp.weight_decay)
        optimizer = build_adamw(groups, lr=scaled_lr(hp.base_lr, hp.batch_size))
        scheduler = warmup_cosine_scheduler(optimizer, total_steps, warmup_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def main(args: argparse.Namespace) -> None:
    pl.seed_everything(args.seed)  # same seed -> same initial weights
    model = MAE(**vars(args))

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
        drop_last=False,
    )

    trainer = pl.Trainer(
        accelerator=args.accelerator,
        devices=1,
        max_epochs=args.epochs,
        max_steps=args.max_steps,
        default_root_dir=args.output_dir,
        logger=CSVLogger(args.output_dir),
        enable_checkpointing=False,
    )
    trainer.fit(model, loader)

    output_dir = Path(args.output_dir)
    trainer.save_checkpoint(output_dir / "last.ckpt")
    torch.save(model.state_dict(), output_dir / "model.pt")
    (output_dir / "losses.json").write_text(json.dumps(torch.stack(model.losses).tolist()))


if __name__ == "__main__":
    main(parser.parse_args())
