"""Big-setting MAE recipes (ImageNet-1k ViT-B/16, CIFAR-10/100) for a GPU cluster, via Lightning.

Not run in CI. Each recipe is one stage (pretrain, linear probe or fine-tune) with the official
hyper-parameters of He et al. 2021 (arXiv 2111.06377, Tables 8-10 and the facebookresearch/mae
PRETRAIN/LINPROBE/FINETUNE docs) for ImageNet, and common small-image settings for CIFAR (there
is no official MAE CIFAR recipe). ``batch_size`` is the *effective* batch; the script derives
gradient accumulation from ``--batch-size-per-device``, ``--devices`` and ``--num-nodes`` and
scales the learning rate with ``lr = base_lr * batch_size / 256`` as the paper does.

    python benchmarks/recipes/mae_recipes.py --list
    # 800-epoch pretraining on 4 nodes x 8 GPUs (run on every node; Lightning reads the usual
    # MASTER_ADDR / MASTER_PORT / NODE_RANK or SLURM variables):
    python benchmarks/recipes/mae_recipes.py --recipe in1k_vitb16_pretrain_800 \
        --data-path /data/imagenet --devices 8 --num-nodes 4 --batch-size-per-device 128
    python benchmarks/recipes/mae_recipes.py --recipe in1k_vitb16_linprobe \
        --checkpoint runs/in1k_vitb16_pretrain_800/last.ckpt --data-path /data/imagenet ...
    python benchmarks/recipes/mae_recipes.py --recipe in1k_vitb16_finetune \
        --checkpoint runs/in1k_vitb16_pretrain_800/last.ckpt --data-path /data/imagenet ...
    # wiring check on a CPU (tiny ViT, fake images, two steps):
    python benchmarks/recipes/mae_recipes.py --recipe in1k_vitb16_finetune --smoke

ImageNet is read as an image folder (``<data-path>/train/<class>/*.JPEG`` and ``.../val``);
CIFAR through torchvision (``--data-path`` is its root; nothing is downloaded).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytorch_lightning as L  # the package ssl_mae.MAE is built on
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

VIT_B16 = {"patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12}
VIT_S4 = {"patch_size": 4, "embed_dim": 384, "depth": 12, "num_heads": 6}
TINY = {"patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2}
MAE_DECODER = {"decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16}
SMALL_DECODER = {"decoder_embed_dim": 256, "decoder_depth": 4, "decoder_num_heads": 8}
TINY_DECODER = {"decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2}
CIFAR_NORMALIZE = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]}


@dataclass(frozen=True)
class Recipe:
    """One training stage with its hyper-parameters (effective batch, base lr per 256 images)."""

    stage: str  # "pretrain", "linprobe" or "finetune"
    dataset: str  # "imagenet", "cifar10" or "cifar100"
    image_size: int
    arch: dict[str, int]
    epochs: int
    batch_size: int
    base_lr: float
    weight_decay: float
    warmup_epochs: int
    options: dict[str, Any] = field(default_factory=dict)
    reference: str = ""


def _pretrain(dataset: str, size: int, arch: dict[str, int], epochs: int, **kw: Any) -> Recipe:
    decoder = MAE_DECODER if dataset == "imagenet" else SMALL_DECODER
    return Recipe(
        "pretrain", dataset, size, arch, epochs, kw.pop("batch_size", 4096), 1.5e-4, 0.05,
        kw.pop("warmup_epochs", 40),
        {"mask_ratio": 0.75, "norm_pix_loss": True, "min_scale": 0.2, **decoder, **kw},
    )  # fmt: skip


def _linprobe(dataset: str, size: int, arch: dict[str, int], **kw: Any) -> Recipe:
    return Recipe(
        "linprobe", dataset, size, arch, 90, kw.pop("batch_size", 16384), 0.1, 0.0, 10,
        {"optimizer": "lars", "pool": "cls", **kw}, kw.pop("reference", ""),
    )  # fmt: skip


def _finetune(dataset: str, size: int, arch: dict[str, int], **kw: Any) -> Recipe:
    options: dict[str, Any] = {
        "layer_decay": 0.65, "drop_path": 0.1, "mixup": 0.8, "cutmix": 1.0,
        "label_smoothing": 0.1, "reprob": 0.25, "auto_augment": "rand-m9-mstd0.5-inc1",
        "betas": (0.9, 0.999), "pool": "mean", "min_lr": 1e-6,
    }  # fmt: skip
    reference = kw.pop("reference", "")
    options.update(kw)
    epochs = int(options.pop("epochs", 100))
    batch = int(options.pop("batch_size", 1024))
    base_lr = float(options.pop("base_lr", 5e-4))
    return Recipe(
        "finetune", dataset, size, arch, epochs, batch, base_lr, 0.05, 5, options, reference
    )


RECIPES: dict[str, Recipe] = {
    # Official ImageNet-1k ViT-B/16 (paper: 68.0 % linear, 83.6 % fine-tune after 1600 epochs).
    "in1k_vitb16_pretrain_800": _pretrain("imagenet", 224, VIT_B16, 800),
    "in1k_vitb16_pretrain_1600": _pretrain("imagenet", 224, VIT_B16, 1600),
    "in1k_vitb16_linprobe": _linprobe("imagenet", 224, VIT_B16, reference="68.0 % top-1"),
    "in1k_vitb16_finetune": _finetune("imagenet", 224, VIT_B16, reference="83.6 % top-1"),
    # CIFAR at 32x32 with a ViT-S/4 (community settings; not from the paper).
    "cifar10_vits4_pretrain_800": _pretrain("cifar10", 32, VIT_S4, 800, batch_size=1024),
    "cifar10_vits4_linprobe": _linprobe("cifar10", 32, VIT_S4, batch_size=4096),
    "cifar10_vits4_finetune": _finetune("cifar10", 32, VIT_S4, batch_size=512, base_lr=1e-3),
    "cifar100_vits4_pretrain_800": _pretrain("cifar100", 32, VIT_S4, 800, batch_size=1024),
    "cifar100_vits4_linprobe": _linprobe("cifar100", 32, VIT_S4, batch_size=4096),
    "cifar100_vits4_finetune": _finetune("cifar100", 32, VIT_S4, batch_size=512, base_lr=1e-3),
}
NUM_CLASSES = {"imagenet": 1000, "cifar10": 10, "cifar100": 100}


def normalization(dataset: str) -> dict[str, list[float]]:
    from ssl_mae.transforms import IMAGENET_NORMALIZE

    return IMAGENET_NORMALIZE if dataset == "imagenet" else CIFAR_NORMALIZE


def build_transform(recipe: Recipe, train: bool) -> Any:
    """The stage's image transform (PIL image → tensor)."""
    from torchvision.transforms import v2

    norm = normalization(recipe.dataset)
    size = recipe.image_size
    if recipe.stage == "pretrain":
        from ssl_mae.transforms import MAETransform

        return MAETransform(size, min_scale=recipe.options["min_scale"], normalize=norm)
    if recipe.stage == "finetune" and train:
        from timm.data.transforms_factory import create_transform

        return create_transform(
            size, is_training=True, auto_augment=recipe.options["auto_augment"],
            interpolation="bicubic", re_prob=recipe.options["reprob"], re_mode="pixel",
            re_count=1, mean=tuple(norm["mean"]), std=tuple(norm["std"]),
        )  # fmt: skip
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(**norm)]
    if train:  # linear probe: crop + flip only, as in main_linprobe.py
        head: list[Any] = [
            v2.RandomResizedCrop(size, interpolation=v2.InterpolationMode.BICUBIC),
            v2.RandomHorizontalFlip(),
        ]
    elif size >= 224:  # ImageNet evaluation: resize to 256/224 of the crop, centre crop
        head = [v2.Resize(int(size * 256 / 224), interpolation=3), v2.CenterCrop(size)]
    else:
        head = []
    return v2.Compose([*head, *tail])


def build_data(recipe: Recipe, train: bool, args: argparse.Namespace) -> Dataset[Any]:
    transform = build_transform(recipe, train)
    if args.smoke:
        from torchvision.datasets import FakeData

        fake: Dataset[Any] = FakeData(
            size=16, image_size=(3, recipe.image_size, recipe.image_size),
            num_classes=NUM_CLASSES[recipe.dataset], transform=transform,
        )  # fmt: skip
        return fake
    from ssl_mae.data import build_dataset

    if recipe.dataset == "imagenet":
        split = Path(args.data_path) / ("train" if train else "val")
        return build_dataset("folder", root=split, transform=transform)
    return build_dataset(recipe.dataset, root=args.data_path, train=train, transform=transform)


def load_encoder(args: argparse.Namespace, recipe: Recipe) -> nn.Module:
    """The pretrained MaskedVisionTransformer from a pretraining checkpoint."""
    from ssl_mae.models.mae import MAE

    if args.smoke and args.checkpoint is None:
        encoder: nn.Module = build_mae(recipe).encoder
        return encoder
    if args.checkpoint is None:
        raise SystemExit(f"--checkpoint is required for the {recipe.stage} stage")
    pretrained: nn.Module = MAE.load_from_checkpoint(args.checkpoint, map_location="cpu").encoder
    return pretrained


def build_mae(recipe: Recipe, **training: Any) -> Any:
    from ssl_mae.models.mae import MAE

    opts = recipe.options
    return MAE(
        img_size=recipe.image_size, in_chans=3, **cast(dict[str, Any], recipe.arch),
        decoder_embed_dim=opts.get("decoder_embed_dim", 512),
        decoder_depth=opts.get("decoder_depth", 8),
        decoder_num_heads=opts.get("decoder_num_heads", 16),
        norm_pix_loss=opts.get("norm_pix_loss", True), layer_norm_eps=1e-6, **training,
    )  # fmt: skip


class LinearProbeModule(L.LightningModule):
    """Frozen encoder + BatchNorm (no affine) + Linear, LARS, warmup + cosine per step."""

    def __init__(self, encoder: nn.Module, recipe: Recipe, lr: float, total: int, warm: int):
        super().__init__()
        from ssl_mae.evaluation import LinearProbe

        self.encoder = encoder.requires_grad_(False).eval()
        self.probe = LinearProbe(int(cast(int, encoder.embed_dim)), NUM_CLASSES[recipe.dataset])
        self.recipe, self.lr, self.total, self.warm = recipe, lr, total, warm

    def features(self, images: Tensor) -> Tensor:
        from ssl_mae.evaluation import encode_pooled

        self.encoder.eval()
        with torch.no_grad():
            return encode_pooled(self.encoder, images, self.recipe.options["pool"]).float()

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = F.cross_entropy(self.probe(self.features(batch[0])), batch[1])
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        _log_accuracy(self, self.probe(self.features(batch[0])), batch[1])

    def configure_optimizers(self) -> Any:
        from ssl_mae.evaluation import LARS
        from ssl_mae.training.optim import warmup_cosine_scheduler

        optimizer = LARS(self.probe.parameters(), lr=self.lr, weight_decay=0.0)
        scheduler = warmup_cosine_scheduler(optimizer, self.total, self.warm)
        return [optimizer], [{"scheduler": scheduler, "interval": "step"}]


class FineTuneModule(L.LightningModule):
    """End-to-end fine-tuning with layer decay, drop path, mixup/cutmix and label smoothing."""

    def __init__(self, encoder: nn.Module, recipe: Recipe, lr: float, total: int, warm: int):
        super().__init__()
        from timm.data.mixup import Mixup

        from ssl_mae.evaluation import FineTuneClassifier, set_drop_path

        opts = recipe.options
        num_classes = NUM_CLASSES[recipe.dataset]
        set_drop_path(encoder, opts["drop_path"])
        self.model = FineTuneClassifier(encoder, num_classes, pool=opts["pool"])
        self.mixup = Mixup(  # type: ignore[no-untyped-call]
            mixup_alpha=opts["mixup"], cutmix_alpha=opts["cutmix"],
            label_smoothing=opts["label_smoothing"], num_classes=num_classes,
        )  # fmt: skip
        self.recipe, self.lr, self.total, self.warm = recipe, lr, total, warm

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        images, targets = self.mixup(batch[0], batch[1])
        loss = torch.sum(-targets * F.log_softmax(self.model(images), dim=-1), dim=-1).mean()
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        _log_accuracy(self, self.model(batch[0]), batch[1])

    def configure_optimizers(self) -> Any:
        from ssl_mae.evaluation import param_groups_layer_decay
        from ssl_mae.training.optim import build_adamw, warmup_cosine_scheduler

        opts = self.recipe.options
        groups = param_groups_layer_decay(self.model, self.recipe.weight_decay, opts["layer_decay"])
        for group in groups:  # each group peaks at lr * its layer scale
            group["lr"] = self.lr * group.get("lr_scale", 1.0)
        optimizer = build_adamw(groups, lr=self.lr, betas=opts["betas"])
        scheduler = warmup_cosine_scheduler(optimizer, self.total, self.warm, opts["min_lr"])
        return [optimizer], [{"scheduler": scheduler, "interval": "step"}]


def _log_accuracy(module: L.LightningModule, logits: Tensor, labels: Tensor) -> None:
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    module.log("val_top1", (top5[:, 0] == labels).float().mean() * 100, sync_dist=True)
    module.log("val_top5", (top5 == labels[:, None]).any(1).float().mean() * 100, sync_dist=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=sorted(RECIPES))
    parser.add_argument("--list", action="store_true", help="print the recipes and exit")
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--checkpoint", default=None, help="pretraining checkpoint (probe/FT)")
    parser.add_argument("--devices", default="auto", help="devices per node")
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--batch-size-per-device", type=int, default=128)
    parser.add_argument("--num-workers", type=int, default=10)
    parser.add_argument("--output-dir", type=Path, default=Path("runs"))
    parser.add_argument("--smoke", action="store_true", help="tiny ViT, fake data, 2 steps, CPU")
    args = parser.parse_args(argv)
    if args.list:
        for name, recipe in RECIPES.items():
            print(name, dataclasses.asdict(recipe))
        return
    if args.recipe is None:
        parser.error("--recipe is required (see --list)")
    recipe = RECIPES[args.recipe]
    if args.smoke:
        small = TINY_DECODER if recipe.stage == "pretrain" else {}
        recipe = dataclasses.replace(
            recipe, arch=TINY, image_size=32, batch_size=8, warmup_epochs=0,
            options={**recipe.options, **small},
        )  # fmt: skip
        args.batch_size_per_device, args.num_workers, args.precision = 4, 0, "32-true"
        args.accelerator, args.devices = "cpu", 1
    elif args.data_path is None:
        parser.error("--data-path is required (or --smoke)")

    trainer_kwargs: dict[str, Any] = {
        "accelerator": args.accelerator, "devices": args.devices, "num_nodes": args.num_nodes,
        "precision": args.precision, "max_epochs": recipe.epochs,
        "default_root_dir": str(args.output_dir / args.recipe),
    }  # fmt: skip
    checkpoints = args.output_dir / args.recipe / "checkpoints"  # .../last.ckpt for the next stage
    trainer_kwargs["callbacks"] = [L.callbacks.ModelCheckpoint(dirpath=checkpoints, save_last=True)]
    if args.smoke:
        trainer_kwargs.update(max_steps=2, limit_val_batches=1, logger=False)
        trainer_kwargs.update(enable_progress_bar=False)
    probe_trainer = L.Trainer(**{**trainer_kwargs, "max_epochs": 1, "max_steps": 1})
    world = probe_trainer.world_size
    del probe_trainer
    per_step = args.batch_size_per_device * world
    accumulate = max(1, math.ceil(recipe.batch_size / per_step))
    effective = per_step * accumulate
    lr = recipe.base_lr * effective / 256
    print(f"{args.recipe}: effective batch {effective} ({accumulate}x accumulation), lr {lr:.3g}")
    trainer = L.Trainer(**trainer_kwargs, accumulate_grad_batches=accumulate, sync_batchnorm=True)

    train = DataLoader(
        build_data(recipe, True, args), batch_size=args.batch_size_per_device, shuffle=True,
        num_workers=args.num_workers, drop_last=True, pin_memory=True,
        persistent_workers=args.num_workers > 0,
    )  # fmt: skip
    if recipe.stage == "pretrain":
        model: L.LightningModule = build_mae(
            recipe, mask_ratio=recipe.options["mask_ratio"], base_lr=recipe.base_lr,
            weight_decay=recipe.weight_decay, warmup_epochs=recipe.warmup_epochs,
            batch_size=args.batch_size_per_device,
        )  # fmt: skip
        trainer.fit(model, train)
        return
    val = DataLoader(
        build_data(recipe, False, args), batch_size=args.batch_size_per_device,
        num_workers=args.num_workers,
    )  # fmt: skip
    steps_per_epoch = max(1, len(train) // (accumulate * (1 if args.smoke else world)))
    total = steps_per_epoch * recipe.epochs
    warm = min(total, steps_per_epoch * recipe.warmup_epochs)
    encoder = load_encoder(args, recipe)
    module_class = LinearProbeModule if recipe.stage == "linprobe" else FineTuneModule
    trainer.fit(module_class(encoder, recipe, lr, total, warm), train, val)
    trainer.validate(trainer.lightning_module, val)


if __name__ == "__main__":
    main()
