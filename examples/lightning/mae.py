"""MAE pre-training with PyTorch Lightning: a model from the ssl_mae blocks, trained by ssl_mae's
LightningModule and data module (those of ssl-mae pretrain). A script to copy and edit.

    python examples/lightning/mae.py --epochs 10   # mae_vit_micro_patch7's model, Fashion-MNIST
    ssl-mae evaluate --checkpoint output/lightning_mae/last.ckpt   # kNN accuracy of the encoder
"""

import argparse
from pathlib import Path

import pytorch_lightning as pl
import torch

from ssl_mae import MAEDecoder, MAELoss, MaskedAutoencoder, MaskedVisionTransformer
from ssl_mae.data import dataset_channels
from ssl_mae.models.presets import PRETRAIN_PRESETS
from ssl_mae.training.callbacks import NonFiniteLossGuard, SkippedFilesReport
from ssl_mae.training.data import PretrainDataModule, training_images
from ssl_mae.training.fast import add_fast_path_arguments, fast_path_from_args
from ssl_mae.training.module import PretrainModule
from ssl_mae.transforms import FASHION_MNIST_NORMALIZE, IMAGENET_NORMALIZE

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
parser.add_argument("--accelerator", default="auto", help="cpu, gpu, mps or auto")
add_fast_path_arguments(parser)  # "auto": bf16, compile, fused AdamW, data on CUDA
parser.add_argument("--output-dir", type=Path, default="output/lightning_mae", help="a new dir")


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


def main(args: argparse.Namespace, callbacks: tuple[pl.Callback, ...] = ()) -> PretrainModule:
    """Trains, writes OUTPUT_DIR/last.ckpt and returns the trained module."""
    if (checkpoint := args.output_dir / "last.ckpt").exists():
        parser.error(f"--output-dir {args.output_dir} holds a run already; choose another")
    pl.seed_everything(args.seed)  # the same initial weights as the PyTorch example
    in_chans = dataset_channels(args.dataset)
    keys = {*PRETRAIN_PRESETS[PRESET].config, "mask_ratio", "norm_pix_loss"}  # its vocabulary
    overrides = {k: v for k, v in vars(args).items() if k in keys} | {"in_chans": in_chans}
    # uint8 images (in a folder an unreadable file is replaced by the next image and counted).
    dataset = training_images(args.dataset, args.data_path, args.img_size, args.limit_images)
    cuda = args.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    size = len(dataset) * in_chans * args.img_size**2  # bytes of the decoded images
    fast = fast_path_from_args(args, "cuda" if cuda else "cpu", size)
    # AdamW, weight decay 0.05 except on norms, biases and tokens, lr = base_lr * batch / 256,
    # 10% warmup then cosine. Checkpoints name the preset and the overrides.
    model = PretrainModule(
        build_mae(args, in_chans), PRESET, overrides, base_lr=args.base_lr,
        compile=fast.compile, fused_adamw=fast.fused_adamw,
    )  # fmt: skip
    # Each epoch is a permutation seeded by (seed, epoch). Batches are cropped and flipped on the
    # device, and masked, with generators seeded by (seed, epoch, batch index).
    normalize = FASHION_MNIST_NORMALIZE if in_chans == 1 else IMAGENET_NORMALIZE  # as the CLI
    data = PretrainDataModule(  # no validation set; crops of 20 to 100% of the image
        dataset, None, args.batch_size, (args.img_size,) * 2, normalize, 0.2, args.seed,
        args.num_workers, gpu_data=fast.gpu_data,  # resident: the same batches, on the device
    )  # fmt: skip
    # NaN check: every step on CPU; on CUDA every 50 steps and before every checkpoint.
    guard = NonFiniteLossGuard(fast.check_loss_every_n_steps)
    trainer = pl.Trainer(
        accelerator=args.accelerator, devices=1, precision=fast.precision,  # type: ignore[arg-type]
        max_epochs=args.epochs, default_root_dir=args.output_dir,
        callbacks=[guard, SkippedFilesReport([dataset]), *callbacks],
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(checkpoint)
    return model


if __name__ == "__main__":
    main(parser.parse_args())
