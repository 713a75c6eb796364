"""MAE pre-training with Lightning DDP, over the ssl_mae blocks: a script to copy and edit.

python examples/lightning_distributed/mae.py   # 2 processes: on GPUs (NCCL) or CPU (gloo)
NODE_RANK=0 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 python ... --num-nodes 2   # 2 machines
"""

import argparse
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from ssl_mae import MAEDecoder, MAELoss, MaskedAutoencoder, MaskedVisionTransformer
from ssl_mae.data import dataset_channels
from ssl_mae.models.presets import PRETRAIN_PRESETS
from ssl_mae.training.callbacks import NonFiniteLossGuard, SkippedFilesReport
from ssl_mae.training.data import batch_seed, training_images, training_loader
from ssl_mae.training.fast import add_fast_path_arguments, fast_path_from_args
from ssl_mae.training.module import PretrainModule
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
parser.add_argument("--batch-size", type=int, default=256, help="images per process and step")
parser.add_argument("--epochs", type=int, default=10, help="passes over the data")
parser.add_argument("--base-lr", type=float, default=1.5e-4, help="lr = base lr * batch / 256")
parser.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes")
parser.add_argument("--seed", type=int, default=0, help="weights, data order, crops and masks")
parser.add_argument("--accelerator", default="auto", help="cpu (gloo), gpu (NCCL) or auto")
parser.add_argument("--devices", type=int, default=2, help="processes (GPUs) per machine")
parser.add_argument("--num-nodes", type=int, default=1, help="machines")
add_fast_path_arguments(parser)  # "auto": bf16, compile, fused AdamW, data on CUDA
parser.add_argument("--output-dir", type=Path, default="output/lightning_ddp_mae", help="a new dir")


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


class DDPPretrainModule(PretrainModule):
    """ssl_mae's LightningModule, where every process draws the crops and masks of the global batch
    and keeps its rows (the loader deals row i to rank i % world): N processes compute what one
    process computes with N times the batch."""

    augment: BatchedMAEAugment
    seed: int

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        world, seed = self.trainer.world_size, batch_seed(self.seed, self.current_epoch, batch_idx)
        generator = torch.Generator(self.device).manual_seed(seed)
        size, mine = len(batch[0]) * world, slice(self.global_rank, None, world)
        crops = self.augment.sample_params(size, *self.augment.input_size, generator)
        views = self.augment.apply_params(batch[0], type(crops)(*(p[mine] for p in crops)))
        patches = (self.img_size // self.patch_size) ** 2  # per image
        noise = torch.rand(size, patches, generator=generator, device=self.device)
        out = self.mae_step(views, noise=noise[mine])  # mask -> encode visible -> decode -> loss
        bar = not self.sync_free_logging(views.device)  # on CPU only: a host read per step
        self.log("train_loss", out.loss, prog_bar=bar, sync_dist=True)  # the mean over ranks
        return out.loss


def main(args: argparse.Namespace, callbacks: tuple[pl.Callback, ...] = ()) -> PretrainModule:
    """Trains, writes OUTPUT_DIR/last.ckpt and returns the trained module."""
    if (checkpoint := args.output_dir / "last.ckpt").exists():
        parser.error(f"--output-dir {args.output_dir} holds a run already; choose another")
    pl.seed_everything(args.seed)  # every process starts from the same weights
    in_chans = dataset_channels(args.dataset)
    keys = {*PRETRAIN_PRESETS[PRESET].config, "mask_ratio", "norm_pix_loss"}  # its vocabulary
    overrides = {k: v for k, v in vars(args).items() if k in keys} | {"in_chans": in_chans}
    # uint8 images; in a folder an unreadable file is replaced (no rank gets an empty batch).
    dataset = training_images(args.dataset, args.data_path, args.img_size, args.limit_images)
    cuda = args.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    size = len(dataset) * in_chans * args.img_size**2  # bytes of the decoded images
    fast = fast_path_from_args(args, "cuda" if cuda else "cpu", size)
    model = DDPPretrainModule(
        build_mae(args, in_chans), PRESET, overrides, base_lr=args.base_lr,
        compile=fast.compile, fused_adamw=fast.fused_adamw,
    )  # fmt: skip
    normalize = FASHION_MNIST_NORMALIZE if in_chans == 1 else IMAGENET_NORMALIZE  # as the CLI
    model.augment = BatchedMAEAugment(args.img_size, min_scale=0.2, normalize=normalize)
    model.hparams["normalize"] = normalize  # in the checkpoint, for ssl-mae evaluate / export
    model.seed = args.seed  # of the crops and masks, as in the other examples
    trainer = pl.Trainer(
        accelerator=args.accelerator, devices=args.devices, num_nodes=args.num_nodes,
        strategy="ddp",  # or "ddp_spawn" in notebooks, "fsdp" to shard large models
        use_distributed_sampler=False,  # the loader below deals every process its share
        precision=fast.precision, max_epochs=args.epochs, default_root_dir=args.output_dir,  # type: ignore[arg-type]
        callbacks=[NonFiniteLossGuard(fast.check_loss_every_n_steps),  # every step on CPU
                   SkippedFilesReport([dataset]), *callbacks],
    )  # fmt: skip
    # Each epoch a permutation seeded by (seed, epoch): process r takes positions r, r + N, ...
    loader = training_loader(dataset, args.batch_size, args.seed, args.num_workers, fast.gpu_data,
        trainer.strategy.root_device, drop_last=False,  # resident: decoded onto every GPU
        num_replicas=trainer.world_size, rank=trainer.global_rank)  # fmt: skip
    trainer.fit(model, loader)
    trainer.save_checkpoint(checkpoint)  # every process calls it, rank 0 writes
    return model


if __name__ == "__main__":
    main(parser.parse_args())
