"""MAE pre-training in a plain PyTorch loop over the ssl_mae blocks: a script to copy and edit.

python examples/pytorch/mae.py --epochs 10   # mae_vit_micro_patch7's model, Fashion-MNIST
ssl-mae evaluate --checkpoint output/pytorch_mae/last.ckpt   # kNN accuracy of the encoder
"""

import argparse
import math
from pathlib import Path

import torch

from ssl_mae import MAEDecoder, MAELoss, MaskedAutoencoder, MaskedVisionTransformer
from ssl_mae.data import dataset_channels
from ssl_mae.models.presets import PRETRAIN_PRESETS
from ssl_mae.training import optim
from ssl_mae.training.callbacks import count_skipped_files
from ssl_mae.training.checkpoints import save_pretrain_checkpoint
from ssl_mae.training.data import training_images, training_loader
from ssl_mae.training.fast import add_fast_path_arguments, fast_path_from_args
from ssl_mae.training.precision import autocast_context, compile_model
from ssl_mae.transforms import FASHION_MNIST_NORMALIZE, IMAGENET_NORMALIZE, BatchedMAEAugment

PRESET = "mae_vit_micro_patch7"  # the defaults are its model; checkpoints name it

parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
parser.add_argument("--img-size", type=int, default=28, help="images are resized to this")
parser.add_argument("--patch-size", type=int, default=7, help="patch side in pixels")
parser.add_argument("--embed-dim", type=int, default=128, help="encoder width")
parser.add_argument("--depth", type=int, default=4, help="encoder blocks")
parser.add_argument("--num-heads", type=int, default=4, help="encoder attention heads")
parser.add_argument("--decoder-embed-dim", type=int, default=64, help="decoder width")
parser.add_argument("--decoder-depth", type=int, default=2, help="decoder blocks")
parser.add_argument("--decoder-num-heads", type=int, default=4, help="decoder attention heads")
parser.add_argument("--mask-ratio", type=float, default=0.75, help="share of patches removed")
parser.add_argument("--norm-pix-loss", action="store_true", help="per-patch normalised targets")
parser.add_argument("--dataset", default="fashion_mnist", help="or folder, cifar10, stl10...")
parser.add_argument("--data-path", help="dataset directory (fashion_mnist: the built-in files)")
parser.add_argument("--limit-images", type=int, default=0, help="train on the first N (0: all)")
parser.add_argument("--batch-size", type=int, default=256, help="images per step")
parser.add_argument("--epochs", type=int, default=10, help="passes over the data")
parser.add_argument("--base-lr", type=float, default=1.5e-4, help="lr = base lr * batch / 256")
parser.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes")
parser.add_argument("--seed", type=int, default=0, help="weights, data order, crops and masks")
parser.add_argument(
    "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="a torch device"
)
add_fast_path_arguments(parser)  # "auto": bf16, compile, fused AdamW, data on CUDA
parser.add_argument("--output-dir", type=Path, default="output/pytorch_mae", help="a new dir")


def build_mae(args: argparse.Namespace, in_chans: int) -> MaskedAutoencoder:
    """A timm ViT encoder, the MAE decoder and the loss: the blocks of the preset's model."""
    vit = {"img_size": args.img_size, "patch_size": args.patch_size, "in_chans": in_chans}
    vit |= {"embed_dim": args.embed_dim, "depth": args.depth, "num_heads": args.num_heads}
    # No mask token: MAE drops masked tokens, and DDP fails on parameters without a gradient.
    encoder = MaskedVisionTransformer.from_timm(vit, use_mask_token=False)
    decoder = MAEDecoder(encoder.num_patches, args.patch_size, in_chans, args.embed_dim,
        args.decoder_embed_dim, args.decoder_depth, args.decoder_num_heads)  # fmt: skip
    loss = MAELoss(norm_pix=args.norm_pix_loss)  # MSE on the masked patches
    return MaskedAutoencoder(encoder, decoder, loss, args.mask_ratio)


def main(args: argparse.Namespace) -> list[float]:
    """Trains, writes OUTPUT_DIR/last.ckpt and returns the loss of every step."""
    if (checkpoint := args.output_dir / "last.ckpt").exists():
        parser.error(f"--output-dir {args.output_dir} holds a run already; choose another")
    torch.manual_seed(args.seed)  # the same initial weights as the Lightning example
    in_chans, device = dataset_channels(args.dataset), torch.device(args.device)
    mae = build_mae(args, in_chans).to(device)
    normalize = FASHION_MNIST_NORMALIZE if in_chans == 1 else IMAGENET_NORMALIZE  # as the CLI
    augment = BatchedMAEAugment(args.img_size, min_scale=0.2, normalize=normalize)
    # uint8 images (in a folder an unreadable file is replaced by the next image and counted);
    # every epoch a permutation seeded by (seed, epoch), every batch with a seed of its own.
    dataset = training_images(args.dataset, args.data_path, args.img_size, args.limit_images)
    fast = fast_path_from_args(args, device.type, len(dataset) * in_chans * args.img_size**2)
    loader = training_loader(  # resident (gpu_data): the same batches, decoded onto the device
        dataset, args.batch_size, args.seed, args.num_workers, fast.gpu_data, device
    )
    if len(loader) == 0:  # every batch is full (drop_last), as in PretrainDataModule
        parser.error(f"--batch-size {args.batch_size} exceeds the {len(dataset)} images")
    if fast.compile:
        compile_model(mae)  # eager, with one warning, when compilation fails
    dtype = torch.bfloat16 if fast.precision == "bf16-mixed" else None

    # AdamW, weight decay 0.05 except on norms, biases and tokens; 10% warmup, then cosine.
    total_steps = args.epochs * len(loader)
    groups = optim.param_groups_weight_decay(mae, weight_decay=0.05)
    lr = optim.scaled_lr(args.base_lr, args.batch_size)
    optimizer = optim.build_adamw(groups, lr, fused=fast.fused_adamw)
    scheduler = optim.warmup_cosine_scheduler(optimizer, total_steps, int(total_steps * 0.1))

    losses: list[torch.Tensor] = []
    for epoch in range(args.epochs):
        loader.sampler.set_epoch(epoch)
        for batch, _, seed in loader:
            torch.manual_seed(seed)  # the masks, and with the generator the crops and flips
            views = augment(batch.to(device), generator=torch.Generator(device).manual_seed(seed))
            with autocast_context(device, dtype):
                out = mae(views)  # mask -> encode the visible patches -> decode -> loss
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(out.loss.detach())  # read once per epoch: no step waits for the GPU
        loss, skipped = losses[-1].item(), count_skipped_files([dataset])
        print(f"epoch {epoch}  step {len(losses)}  loss {loss:.4f}  skipped files {skipped}")
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss}; try a lower --base-lr")

    keys = {*PRETRAIN_PRESETS[PRESET].config, "mask_ratio", "norm_pix_loss"}  # its vocabulary
    overrides = {k: v for k, v in vars(args).items() if k in keys} | {"in_chans": in_chans}
    save_pretrain_checkpoint(checkpoint, mae, PRESET, overrides, normalize)  # as PretrainModule
    return torch.stack(losses).tolist()


if __name__ == "__main__":
    main(parser.parse_args())
