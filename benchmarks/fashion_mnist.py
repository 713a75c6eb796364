"""Fashion-MNIST benchmark: MAE pretraining (ours vs Lightly) + kNN / linear probe vs raw pixels.

Every row sees the same recipe: the same timm ViT (built from the same seed), the same optimiser
(AdamW, betas (0.9, 0.95), weight decay 0.05 without decay on norms/biases/tokens, warmup +
cosine per step), the same batches in the same order, the same crops and flips and the same
masks. One ``torch.Generator`` seeded with ``--seed`` draws, step by step, the shuffling, the
augmentation and the mask noise; the stream does not depend on the model, so every
implementation is fed bit-identical inputs and masks.

* ``--impl ours``: the ``ssl_mae`` blocks, ``MaskedVisionTransformer`` →
  ``MAEDecoder.predict_masked`` → ``MAELoss`` on ``masked_patch_targets``.
* ``--impl lightly``: Lightly's wiring as in its MAE example: ``MaskedVisionTransformerTIMM``,
  a linear ``decoder_embed``, ``MaskedVisionTransformerDecoderTIMM`` fed the mask-token sequence
  with the visible tokens set at ``idx_keep``, a linear prediction head, MSE against
  ``get_at_index(patchify(images), idx_mask - 1)``.
* ``--baseline pixels``: the normalised 784 pixels as features.

After pretraining (and at every epoch listed in ``--eval-epochs``) the frozen encoder is
evaluated on the official split (``--split test``) or on a validation split held out of the
training images (``--split val``: the last ``--val-size`` training images, never trained on):
kNN (cosine, k=200, t=0.07) and a linear probe (BatchNorm without affine + Linear, LARS) on
every feature protocol of ``--pools``: ``cls`` (class token), ``mean`` (mean of the patch
tokens), and ``<pool>-last<k>-<cat|avg>`` (that pooling of each of the last k blocks, through
the final norm, concatenated or averaged). Results go to a JSON file and a Markdown table;
per-step losses of every implementation go into one PNG.

``--finetune-epochs N`` also fine-tunes a copy of each pretrained encoder end to end (MAE
recipe: layer-wise lr decay, drop path, label smoothing, warmup + cosine, random resized crops
and flips); ``--scratch-epochs N`` trains the same, freshly initialised ViT with the same
supervised recipe (without layer decay) as the from-scratch reference.

Default run (all rows): ``python benchmarks/fashion_mnist.py``. Tiny smoke run:
``python benchmarks/fashion_mnist.py --train-subset 512 --test-subset 256 --epochs 1``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from ssl_mae.data import load_fashion_mnist
from ssl_mae.evaluation import finetune, knn_accuracy, pool_layers, train_linear_probe
from ssl_mae.loss import MAELoss, masked_patch_targets, normalize_patches
from ssl_mae.masking import random_token_mask
from ssl_mae.modules import MAEDecoder, MaskedVisionTransformer
from ssl_mae.training.optim import build_adamw, param_groups_weight_decay, warmup_cosine_scheduler
from ssl_mae.transforms import FASHION_MNIST_NORMALIZE, BatchedMAEAugment

IMPLS = ("ours", "lightly")
BASELINES = ("pixels",)
POOLS = ("cls", "mean")
SPLITS = ("test", "val")
OPTIMIZER_RECIPES = ("mae", "lightly-example")
# "<pool>-last<k>-<cat|avg>": pool each of the last k blocks, concatenate or average.
_PROTOCOL = re.compile(r"^(cls|mean)(?:-last(\d+)-(cat|avg))?$")
NUM_CLASSES = 10
REPO_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------
# Models: one backbone definition, two MAE wirings.


def build_vit(args: argparse.Namespace) -> VisionTransformer:
    """The timm ViT shared by every implementation (built from the same seed)."""
    torch.manual_seed(args.seed)
    return VisionTransformer(
        img_size=28,
        patch_size=args.patch_size,
        in_chans=1,
        embed_dim=args.embed_dim,
        depth=args.depth,
        num_heads=args.num_heads,
        mlp_ratio=4.0,
        num_classes=0,
        class_token=True,
        global_pool="token",
    )


class OursMAE(nn.Module):
    """MAE assembled from the ssl_mae blocks."""

    def __init__(self, vit: VisionTransformer, args: argparse.Namespace) -> None:
        super().__init__()
        self.patch_size = args.patch_size
        self.backbone = MaskedVisionTransformer(vit)
        self.decoder = MAEDecoder(
            num_patches=self.backbone.num_patches,
            patch_size=args.patch_size,
            in_chans=1,
            embed_dim=args.embed_dim,
            decoder_embed_dim=args.decoder_dim,
            decoder_depth=args.decoder_depth,
            decoder_num_heads=args.decoder_heads,
        )
        self.criterion = MAELoss(norm_pix=args.norm_pix)
        self.decode_ratio: float = args.decode_ratio

    def forward(self, images: Tensor, idx_keep: Tensor, idx_mask: Tensor) -> Tensor:
        """Returns the loss for images (B, 1, 28, 28) and masks over the full sequence.

        With ``decode_ratio < 1`` only that share of the masked tokens (the first ones of the
        randomly ordered ``idx_mask``) is decoded and scored (partial reconstruction).
        """
        encoded = self.backbone.encode(images, idx_keep=idx_keep)
        if self.decode_ratio < 1.0:
            num_decode = max(1, round(self.decode_ratio * idx_mask.shape[1]))
            idx_mask = idx_mask[:, :num_decode]
            pred = self.decoder.predict_at(encoded, idx_keep, idx_mask)
        else:
            pred = self.decoder.predict_masked(encoded, idx_keep, idx_mask)
        target = masked_patch_targets(
            images, self.patch_size, idx_mask, self.backbone.num_prefix_tokens
        )
        loss: Tensor = self.criterion(pred, target)
        return loss


class LightlyMAE(nn.Module):
    """Lightly's MAE wiring (its ``examples/pytorch/mae.py``) around the same timm ViT."""

    def __init__(self, vit: VisionTransformer, args: argparse.Namespace) -> None:
        super().__init__()
        from lightly.models.modules import (
            MaskedVisionTransformerDecoderTIMM,
            MaskedVisionTransformerTIMM,
        )

        self.patch_size = args.patch_size
        self.norm_pix = args.norm_pix
        self.backbone = MaskedVisionTransformerTIMM(vit=vit)
        self.sequence_length = self.backbone.sequence_length
        self.decoder_embed = nn.Linear(args.embed_dim, args.decoder_dim)
        self.decoder = MaskedVisionTransformerDecoderTIMM(
            num_patches=vit.patch_embed.num_patches,
            embed_dim=args.decoder_dim,
            depth=args.decoder_depth,
            num_heads=args.decoder_heads,
        )
        self.prediction_head = nn.Linear(args.decoder_dim, args.patch_size**2 * 1)
        self.criterion = nn.MSELoss()

    def forward(self, images: Tensor, idx_keep: Tensor, idx_mask: Tensor) -> Tensor:
        """Returns the loss for images (B, 1, 28, 28) and masks over the full sequence."""
        from lightly.models import utils

        encoded = self.backbone.encode(images=images, idx_keep=idx_keep)
        x = self.decoder_embed(encoded)
        tokens = utils.repeat_token(self.decoder.mask_token, (x.shape[0], self.sequence_length))
        tokens = utils.set_at_index(tokens, idx_keep, x.type_as(tokens))
        decoded = self.decoder(tokens)
        pred = self.prediction_head(utils.get_at_index(decoded, idx_mask))
        target = utils.get_at_index(utils.patchify(images, self.patch_size), idx_mask - 1)
        if self.norm_pix:
            # Lightly has no norm-pix loss; the recipe's target normalisation is applied here.
            target = normalize_patches(target)
        loss: Tensor = self.criterion(pred, target)
        return loss


def build_model(impl: str, args: argparse.Namespace) -> OursMAE | LightlyMAE:
    """``"ours"`` or ``"lightly"`` around a freshly built (seeded) ViT."""
    vit = build_vit(args)
    # Seed again so that decoder initialisation is reproducible per implementation too.
    torch.manual_seed(args.seed + 1)
    return OursMAE(vit, args) if impl == "ours" else LightlyMAE(vit, args)


# --------------------------------------------------------------------------------------------
# Data: tensors in memory, one generator for order, crops, flips and masks.


@dataclass
class Split:
    images: Tensor  # (N, 1, 28, 28) uint8
    labels: Tensor  # (N,) int64


def load_split(train: bool, subset: int | None, data_root: str | None) -> Split:
    images, labels = load_fashion_mnist(train=train, root=data_root, download=False)
    if subset is not None:
        images, labels = images[:subset], labels[:subset]
    return Split(images.unsqueeze(1).contiguous(), labels)


def load_splits(args: argparse.Namespace) -> tuple[Split, Split]:
    """``(train, evaluation)``: the official split, or the training images minus the last
    ``--val-size`` of them and those held-out images (``--split val``, for every choice of
    recipe; the test split is then never read)."""
    train = load_split(True, args.train_subset, args.data_root)
    if args.split == "test":
        return train, load_split(False, args.test_subset, args.data_root)
    cut = train.images.shape[0] - args.val_size
    if cut < 1:
        raise ValueError(f"--val-size {args.val_size} leaves no training images")
    held_out = Split(train.images[cut:], train.labels[cut:])
    if args.test_subset is not None:
        held_out = Split(held_out.images[: args.test_subset], held_out.labels[: args.test_subset])
    return Split(train.images[:cut], train.labels[:cut]), held_out


def normalize(images: Tensor) -> Tensor:
    """uint8 (B, 1, H, W) → float, normalised with the Fashion-MNIST mean and std."""
    mean, std = FASHION_MNIST_NORMALIZE["mean"][0], FASHION_MNIST_NORMALIZE["std"][0]
    return (images.float() / 255.0 - mean) / std


def pretraining_stream(
    data: Split, args: argparse.Namespace, sequence_length: int, device: torch.device
) -> Iterator[tuple[int, Tensor, Tensor, Tensor]]:
    """Yields ``(epoch, images, idx_keep, idx_mask)`` for every step; identical for every model.

    Everything is drawn on the CPU from one generator and only then moved to ``device``, so a GPU
    run sees the same batches, crops and masks as a CPU run with the same seed.
    """
    generator = torch.Generator().manual_seed(args.seed)
    augment = BatchedMAEAugment(
        input_size=28, min_scale=args.min_scale, normalize=FASHION_MNIST_NORMALIZE
    )
    num_images = data.images.shape[0]
    batch_size = min(args.batch_size, num_images)
    for epoch in range(args.epochs):
        order = torch.randperm(num_images, generator=generator)
        for step in range(num_images // batch_size):
            batch = data.images[order[step * batch_size : (step + 1) * batch_size]]
            images = augment(batch, generator=generator)
            idx_keep, idx_mask = random_token_mask(
                (batch_size, sequence_length), args.mask_ratio, generator=generator
            )
            yield epoch, images.to(device), idx_keep.to(device), idx_mask.to(device)


# --------------------------------------------------------------------------------------------
# Evaluation.


@dataclass(frozen=True)
class Protocol:
    """A frozen-feature protocol: ``pool`` of each of the last ``layers`` blocks, combined."""

    name: str
    pool: str
    layers: int
    combine: str


def parse_protocol(name: str) -> Protocol:
    """``cls``, ``mean`` or ``<cls|mean>-last<k>-<cat|avg>`` (k >= 1)."""
    match = _PROTOCOL.match(name)
    if match is None or (match.group(2) is not None and int(match.group(2)) < 1):
        raise ValueError(
            f"feature protocol must be cls, mean or <cls|mean>-last<k>-<cat|avg>, got {name!r}"
        )
    pool, layers, combine = match.group(1), match.group(2), match.group(3)
    return Protocol(name, pool, int(layers or 1), "mean" if combine == "avg" else "concat")


@torch.no_grad()
def extract(
    backbone: nn.Module,
    data: Split,
    device: torch.device,
    protocols: Sequence[str] = POOLS,
    batch_size: int = 256,
) -> dict[str, Tensor]:
    """Features {protocol: (N, D')} of the frozen encoder on unmasked images.

    One pass through the encoder per batch serves every protocol: each block's output goes
    through the final norm (so ``cls``/``mean`` are the usual output-layer features) and
    ``ssl_mae.evaluation.pool_layers`` pools and combines the last k of them.
    """
    was_training = backbone.training
    backbone.eval()
    num_prefix = int(getattr(backbone, "num_prefix_tokens", 1))
    specs = [parse_protocol(name) for name in protocols]
    out: dict[str, list[Tensor]] = {spec.name: [] for spec in specs}
    for start in range(0, data.images.shape[0], batch_size):
        images = normalize(data.images[start : start + batch_size]).to(device)
        _, blocks = backbone.forward_intermediates(images, norm=True)  # type: ignore[operator]
        for spec in specs:
            if spec.layers > len(blocks):
                raise ValueError(f"{spec.name}: the encoder has only {len(blocks)} blocks")
            features = pool_layers(blocks[-spec.layers :], spec.pool, num_prefix, spec.combine)
            out[spec.name].append(features.float().cpu())
    backbone.train(was_training)
    return {name: torch.cat(parts) for name, parts in out.items()}


def evaluate_features(
    train_x: Tensor, test_x: Tensor, train: Split, test: Split, args: argparse.Namespace
) -> dict[str, float]:
    """kNN top-1/top-5 and linear-probe top-1/top-5 of one feature set, in percent."""
    k = min(args.knn_k, train_x.shape[0])
    knn = knn_accuracy(
        train_x, train.labels, test_x, test.labels, NUM_CLASSES, k=k, temperature=args.knn_t
    )
    if args.probe == "default":  # as `ssl-mae evaluate --protocol linear`: L-BFGS to convergence
        probe = train_linear_probe(
            train_x, train.labels, test_x, test.labels, NUM_CLASSES, seed=args.seed
        )
    else:
        probe = train_linear_probe(
            train_x,
            train.labels,
            test_x,
            test.labels,
            NUM_CLASSES,
            epochs=args.probe_epochs,
            batch_size=args.probe_batch_size,
            base_lr=args.probe_lr,
            warmup_epochs=min(3, args.probe_epochs),
            seed=args.seed,
        )
    return {
        "knn_top1": 100.0 * knn["top1"],
        "knn_top5": 100.0 * knn["top5"],
        "linear_top1": 100.0 * probe["top1"],
        "linear_top5": 100.0 * probe["top5"],
    }


def evaluate_backbone(
    backbone: nn.Module, train: Split, test: Split, args: argparse.Namespace, device: torch.device
) -> dict[str, dict[str, float]]:
    train_features = extract(backbone, train, device, args.pools)
    test_features = extract(backbone, test, device, args.pools)
    return {
        pool: evaluate_features(train_features[pool], test_features[pool], train, test, args)
        for pool in args.pools
    }


def augmenting_loader(
    data: Split, args: argparse.Namespace, batch_size: int
) -> torch.utils.data.DataLoader[tuple[Tensor, Tensor]]:
    """Shuffled, labelled batches with the pretraining augmentation (random resized crop with
    ``--finetune-min-scale`` + flip, normalised), drawn from a generator seeded by ``--seed``."""
    from torch.utils.data import DataLoader, Dataset, TensorDataset

    generator = torch.Generator().manual_seed(args.seed + 2)
    augment = BatchedMAEAugment(
        input_size=28, min_scale=args.finetune_min_scale, normalize=FASHION_MNIST_NORMALIZE
    )

    def collate(samples: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        images = torch.stack([image for image, _ in samples])
        labels = torch.stack([label for _, label in samples])
        return augment(images, generator=generator), labels

    dataset: Dataset[tuple[Tensor, Tensor]] = TensorDataset(data.images, data.labels)  # type: ignore[assignment]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        generator=generator,
        collate_fn=collate,
    )


def supervised_run(
    encoder: nn.Module,
    train: Split,
    test: Split,
    args: argparse.Namespace,
    device: torch.device,
    epochs: int,
    layer_decay: float,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Trains ``encoder`` + a linear head on the mean-pooled patch tokens end to end with the
    MAE fine-tuning recipe (AdamW, warmup + cosine, drop path, label smoothing, layer decay as
    given) on augmented batches; top-1/top-5 in percent on ``test``, wall and CPU time."""
    from torch.utils.data import TensorDataset

    batch_size = min(args.finetune_batch_size, train.images.shape[0])
    # A step budget is scheduled as a 10-epoch run cut at max_steps: ``finetune`` scales its
    # one-epoch warmup by the same factor, so the warmup is the first 10 % of the budget and the
    # cosine reaches its end at the last step, however short the budget.
    schedule_epochs = epochs if max_steps is None else max(epochs, 10)
    tic, cpu = time.perf_counter(), time.process_time()
    result = finetune(
        encoder,
        augmenting_loader(train, args, batch_size),
        TensorDataset(normalize(test.images), test.labels),
        NUM_CLASSES,
        pool="mean",
        epochs=schedule_epochs,
        batch_size=batch_size,
        base_lr=args.finetune_lr,
        layer_decay=layer_decay,
        drop_path_rate=args.finetune_drop_path,
        label_smoothing=0.1,
        warmup_epochs=min(1, epochs),
        max_steps=max_steps,
        seed=args.seed,
        device=device,
    )
    return {
        "epochs": epochs,
        "max_steps": max_steps,
        "layer_decay": layer_decay,
        "top1": 100.0 * result["top1"],
        "top5": 100.0 * result["top5"],
        "wall_s": time.perf_counter() - tic,
        "cpu_s": time.process_time() - cpu,
    }


def finetune_backbone(
    backbone: nn.Module, train: Split, test: Split, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    """Fine-tunes a copy of the pretrained encoder (with layer-wise lr decay)."""
    return supervised_run(
        copy.deepcopy(backbone),
        train,
        test,
        args,
        device,
        args.finetune_epochs,
        args.finetune_layer_decay,
        args.finetune_max_steps,
    )


def run_scratch(
    train: Split, test: Split, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    """The same ViT, freshly initialised (MAE initialisation, no pretraining), trained with the
    supervised recipe of :func:`finetune_backbone` for ``--scratch-epochs`` (no layer decay: a
    random stem has nothing to preserve)."""
    backbone = build_model("ours", args).backbone.to(device)
    result = supervised_run(
        backbone, train, test, args, device, args.scratch_epochs, 1.0, args.scratch_max_steps
    )
    print(f"[scratch] {json.dumps(result)}", flush=True)
    return {"impl": "scratch", "scratch": result}


def save_reconstructions(model: OursMAE, test: Split, args: argparse.Namespace) -> None:
    """PNG of 8 evaluation images: original | masked | reconstruction | visible pasted back,
    drawn through the package's one MAE step around the trained encoder and decoder."""
    from ssl_mae.core import MaskedAutoencoder
    from ssl_mae.visualize import reconstruct, save_reconstruction_grid

    core = MaskedAutoencoder(model.backbone, model.decoder, model.criterion, args.mask_ratio)
    device = next(model.parameters()).device
    images = normalize(test.images[:8]).to(device)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    result = reconstruct(core, images, args.mask_ratio, generator=generator)
    save_reconstruction_grid(result, args.reconstruction, normalize=FASHION_MNIST_NORMALIZE)


# --------------------------------------------------------------------------------------------
# Runs.


def run_impl(
    impl: str, train: Split, test: Split, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    """Pretrains one implementation and evaluates it at the requested epochs."""
    model = build_model(impl, args).to(device)
    num_params = sum(p.numel() for p in model.parameters())
    sequence_length = (28 // args.patch_size) ** 2 + 1  # patches + class token
    steps_per_epoch = train.images.shape[0] // min(args.batch_size, train.images.shape[0])
    total_steps = args.epochs * steps_per_epoch
    if args.max_steps is not None:  # a compute budget: the schedule ends after max_steps
        total_steps = min(total_steps, args.max_steps)
    warmup_steps = min(round(args.warmup_epochs * steps_per_epoch), total_steps)
    optimizer: torch.optim.Optimizer
    if args.optimizer_recipe == "mae":
        optimizer = build_adamw(param_groups_weight_decay(model, args.weight_decay), lr=args.lr)
        scheduler = warmup_cosine_scheduler(optimizer, total_steps, warmup_steps, args.min_lr)
    else:  # Lightly's example: AdamW(model.parameters(), lr) with torch's defaults, constant lr
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    requested = args.eval_epochs if impl in args.curve_impls else []
    eval_epochs = sorted({e for e in requested if 0 < e <= args.epochs} | {args.epochs})

    losses: list[float] = []
    evaluations: list[dict[str, Any]] = []
    train_time = 0.0
    eval_time = 0.0
    train_cpu = 0.0
    tic, cpu_tic = time.perf_counter(), time.process_time()
    epoch_done: float = 0
    stream = pretraining_stream(train, args, sequence_length, device)
    model.train()
    for step, (epoch, images, idx_keep, idx_mask) in enumerate(stream):
        loss = model(images, idx_keep, idx_mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        value = float(loss.item())
        if not math.isfinite(value):
            raise RuntimeError(f"{impl}: loss became {value} at step {step}")
        losses.append(value)
        last = step + 1 == total_steps
        if (step + 1) % steps_per_epoch == 0 or last:
            # A budget that ends inside an epoch is reported in fractional epochs.
            epoch_done = (
                epoch + 1
                if (step + 1) % steps_per_epoch == 0
                else round((step + 1) / steps_per_epoch, 2)
            )
            train_time += time.perf_counter() - tic
            train_cpu += time.process_time() - cpu_tic
            print(
                f"[{impl}] epoch {epoch_done}/{args.epochs} loss {value:.4f} "
                f"train {train_time:.0f}s",
                flush=True,
            )
            if epoch_done in eval_epochs or last:
                tic_eval = time.perf_counter()
                metrics = (
                    {}
                    if args.skip_frozen_eval
                    else evaluate_backbone(model.backbone, train, test, args, device)
                )
                eval_time += time.perf_counter() - tic_eval
                evaluations.append({"epoch": epoch_done, **metrics})
                print(f"[{impl}] epoch {epoch_done}: {json.dumps(metrics)}", flush=True)
            tic, cpu_tic = time.perf_counter(), time.process_time()
        if last:
            break
    if args.save_encoder:
        torch.save(model.backbone.state_dict(), args.save_encoder)
    if args.reconstruction and isinstance(model, OursMAE):
        save_reconstructions(model, test, args)
    if args.finetune_epochs > 0:
        tic_eval = time.perf_counter()
        evaluations[-1]["finetune"] = finetune_backbone(model.backbone, train, test, args, device)
        eval_time += time.perf_counter() - tic_eval
        print(f"[{impl}] fine-tune: {json.dumps(evaluations[-1]['finetune'])}", flush=True)
    return {
        "impl": impl,
        "num_params": num_params,
        "steps": len(losses),
        "steps_per_epoch": steps_per_epoch,
        "losses": losses,
        "evaluations": evaluations,
        "pretrain_wall_s": train_time,
        "pretrain_cpu_s": train_cpu,
        "eval_wall_s": eval_time,
    }


def run_pixels(train: Split, test: Split, args: argparse.Namespace) -> dict[str, Any]:
    tic = time.perf_counter()
    train_x = normalize(train.images).flatten(1)
    test_x = normalize(test.images).flatten(1)
    metrics = evaluate_features(train_x, test_x, train, test, args)
    print(f"[pixels] {json.dumps(metrics)}", flush=True)
    return {"impl": "pixels", "metrics": metrics, "eval_wall_s": time.perf_counter() - tic}


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "load_average": list(os.getloadavg()),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        import lightly

        info["lightly"] = lightly.__version__
    except ImportError:
        pass
    return info


def table_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Flattens the result into one row per (implementation, epoch, pool)."""
    rows: list[dict[str, Any]] = []
    for run in result["runs"]:
        if run["impl"] == "scratch":
            rows.append(
                {
                    "impl": "scratch (supervised)",
                    "pool": "mean",
                    "epochs": 0,
                    "finetune_top1": run["scratch"]["top1"],
                    "finetune_top5": run["scratch"]["top5"],
                    "wall_s": run["scratch"]["wall_s"],
                }
            )
            continue
        if run["impl"] == "pixels":
            rows.append(
                {
                    "impl": "raw pixels",
                    "pool": "-",
                    "epochs": 0,
                    **run["metrics"],
                    "wall_s": run["eval_wall_s"],
                }
            )
            continue
        for evaluation in run["evaluations"]:
            for pool in [p for p in result["config"]["pools"] if p in evaluation]:
                rows.append(
                    {
                        "impl": run["impl"],
                        "pool": pool,
                        "epochs": evaluation["epoch"],
                        **evaluation[pool],
                        "wall_s": run["pretrain_wall_s"] + run["eval_wall_s"],
                    }
                )
        if "finetune" in run["evaluations"][-1]:
            last = run["evaluations"][-1]
            rows.append(
                {
                    "impl": f"{run['impl']} fine-tuned",
                    "pool": "mean",
                    "epochs": last["epoch"],
                    "finetune_top1": last["finetune"]["top1"],
                    "finetune_top5": last["finetune"]["top5"],
                    "finetune_epochs": last["finetune"]["epochs"],
                    "wall_s": run["pretrain_wall_s"] + run["eval_wall_s"],
                }
            )
    return rows


def markdown_table(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        "| implementation | features | pretrain epochs | kNN top-1 | kNN top-5 | linear top-1 "
        "| run wall time (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        if "finetune_top1" in row:  # fine-tuned top-1 / top-5 in the linear column
            lines.append(
                f"| {row['impl']} | {row['pool']} | {row['epochs']} | - | - "
                f"| {row['finetune_top1']:.2f} (fine-tune) | {row['wall_s']:.0f} |"
            )
            continue
        lines.append(
            f"| {row['impl']} | {row['pool']} | {row['epochs']} | {row['knn_top1']:.2f} "
            f"| {row['knn_top5']:.2f} | {row['linear_top1']:.2f} | {row['wall_s']:.0f} |"
        )
    config = result["config"]
    lines += [
        "",
        f"Machine: {machine['processor']}, {machine['cpu_count']} CPUs, torch "
        f"{machine['torch']} ({machine['device']}"
        + (f", {machine['gpu']}" if "gpu" in machine else "")
        + f"), lightly {machine.get('lightly', 'n/a')}. Seed {config['seed']}; "
        f"total wall time {result['wall_time_s']:.0f} s, CPU time {result['cpu_time_s']:.0f} s, "
        f"load average {result.get('load_before', '?')} before, "
        f"{result.get('load_after', '?')} after. Evaluated on the {config.get('split', 'test')} "
        "split. Run wall time = pretraining plus all "
        "evaluations of that implementation. kNN: k="
        f"{config['knn_k']}, t={config['knn_t']}; linear probe: "
        + (
            "full-batch L-BFGS to convergence (train_linear_probe's defaults)."
            if config.get("probe") == "default"
            else f"{config['probe_epochs']} epochs, LARS."
        ),
        "",
        "Command: `" + result["command"] + "`",
        "",
    ]
    return "\n".join(lines)


def plot_losses(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for run in result["runs"]:
        if "losses" not in run:
            continue
        losses = torch.tensor(run["losses"])
        steps = torch.arange(1, len(losses) + 1) / run["steps_per_epoch"]
        axis.plot(steps.numpy(), losses.numpy(), label=run["impl"], alpha=0.35, linewidth=0.8)
        window = max(1, min(25, len(losses) // 10))
        if window > 1:
            smooth = losses.unfold(0, window, 1).mean(dim=1)
            axis.plot(steps[window - 1 :].numpy(), smooth.numpy(), label=f"{run['impl']} (mean)")
    axis.set_xlabel("epoch")
    axis.set_ylabel("MAE loss (masked patches)")
    axis.set_title("Fashion-MNIST MAE pretraining loss: ours vs Lightly (same data and masks)")
    axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--impl",
        nargs="+",
        default=list(IMPLS),
        choices=[*IMPLS, "none"],
        help="MAE implementations to pretrain and evaluate ('none': only baselines)",
    )
    parser.add_argument(
        "--baseline",
        nargs="+",
        default=list(BASELINES),
        choices=[*BASELINES, "none"],
        help="feature baselines evaluated with the same kNN and linear probe",
    )
    parser.add_argument("--epochs", type=int, default=3, help="pretraining epochs")
    parser.add_argument(
        "--eval-epochs",
        type=int,
        nargs="*",
        default=[1, 2],
        help="also evaluate after these epochs (the last epoch is always evaluated)",
    )
    parser.add_argument(
        "--curve-impls",
        nargs="*",
        default=["ours"],
        choices=IMPLS,
        help="implementations evaluated at --eval-epochs (others only after the last epoch)",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="end pretraining (and its lr schedule) after this many steps (a compute budget)",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1.5e-3, help="peak AdamW learning rate")
    parser.add_argument("--min-lr", type=float, default=0.0)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-epochs", type=float, default=0.5)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument(
        "--norm-pix",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="per-patch normalised pixel targets (both implementations)",
    )
    parser.add_argument(
        "--min-scale", type=float, default=0.5, help="smallest random-resized-crop area"
    )
    parser.add_argument("--patch-size", type=int, default=7)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--decoder-dim", type=int, default=64)
    parser.add_argument("--decoder-depth", type=int, default=2)
    parser.add_argument("--decoder-heads", type=int, default=4)
    parser.add_argument(
        "--pools",
        nargs="+",
        default=list(POOLS),
        help="feature protocols: cls, mean, <cls|mean>-last<k>-<cat|avg>",
    )
    parser.add_argument(
        "--decode-ratio",
        type=float,
        default=1.0,
        help="share of the masked tokens the decoder predicts (ours; 1: all, as in MAE)",
    )
    parser.add_argument(
        "--optimizer-recipe",
        choices=OPTIMIZER_RECIPES,
        default="mae",
        help="mae: AdamW groups, betas (0.9, 0.95), --weight-decay, warmup + cosine; "
        "lightly-example: AdamW(model.parameters(), --lr) with torch defaults, constant lr",
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="test",
        help="evaluate on the official test split, or on the last --val-size training images "
        "(held out of pretraining; for choosing recipes)",
    )
    parser.add_argument("--val-size", type=int, default=10_000)
    parser.add_argument("--knn-k", type=int, default=200)
    parser.add_argument("--knn-t", type=float, default=0.07)
    parser.add_argument(
        "--probe",
        choices=("lars", "default"),
        default="lars",
        help="linear probe: 'lars' (--probe-epochs/--probe-batch-size/--probe-lr, the rows of "
        "docs/benchmarks.md) or 'default' (train_linear_probe's defaults: full-batch L-BFGS, "
        "what `ssl-mae evaluate --protocol linear` runs)",
    )
    parser.add_argument("--probe-epochs", type=int, default=30)
    parser.add_argument("--probe-batch-size", type=int, default=1024)
    parser.add_argument(
        "--probe-lr",
        type=float,
        default=None,
        help="LARS base lr per 256 samples (default: ssl_mae.evaluation's, 1.0)",
    )
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=0,
        help="also fine-tune a copy of each pretrained encoder end to end (0: skip)",
    )
    parser.add_argument("--finetune-lr", type=float, default=1e-3, help="base lr per 256")
    parser.add_argument("--finetune-layer-decay", type=float, default=0.75)
    parser.add_argument("--finetune-drop-path", type=float, default=0.1)
    parser.add_argument("--finetune-batch-size", type=int, default=256)
    parser.add_argument(
        "--finetune-min-scale",
        type=float,
        default=0.5,
        help="random-resized-crop area of the supervised runs (fine-tune and scratch)",
    )
    parser.add_argument(
        "--skip-frozen-eval",
        action="store_true",
        help="no kNN / linear probe of the pretrained encoder (e.g. when only fine-tuning)",
    )
    parser.add_argument(
        "--scratch-epochs",
        type=int,
        default=0,
        help="also train the same ViT from scratch with the supervised recipe (0: skip)",
    )
    parser.add_argument(
        "--finetune-max-steps", type=int, default=None, help="end fine-tuning after N steps"
    )
    parser.add_argument(
        "--scratch-max-steps", type=int, default=None, help="end the scratch run after N steps"
    )
    parser.add_argument(
        "--save-encoder", type=Path, default=None, help="save the pretrained encoder's weights"
    )
    parser.add_argument(
        "--reconstruction",
        type=Path,
        default=None,
        help="PNG of reconstructions of 8 evaluation images by the pretrained model (ours)",
    )
    parser.add_argument(
        "--train-subset", type=int, default=None, help="use the first N training images"
    )
    parser.add_argument("--test-subset", type=int, default=None, help="use the first N test images")
    parser.add_argument(
        "--data-root", default=None, help="directory with the Fashion-MNIST IDX files"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--name", default="fashion_mnist", help="stem of the JSON and Markdown files"
    )
    parser.add_argument(
        "--plot",
        default=str(REPO_ROOT / "docs" / "assets" / "fashion_mnist_loss_curves.png"),
        help="PNG of the pretraining loss curves ('' to skip)",
    )
    args = parser.parse_args(argv)
    args.impl = [i for i in args.impl if i != "none"]
    args.baseline = [b for b in args.baseline if b != "none"]
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if 28 % args.patch_size:
        parser.error(f"--patch-size must divide 28, got {args.patch_size}")
    if not 0.0 < args.mask_ratio < 1.0:
        parser.error(f"--mask-ratio must be in (0, 1), got {args.mask_ratio}")
    if not 0.0 < args.decode_ratio <= 1.0:
        parser.error(f"--decode-ratio must be in (0, 1], got {args.decode_ratio}")
    for name in args.pools:
        try:
            protocol = parse_protocol(name)
        except ValueError as error:
            parser.error(str(error))
        if protocol.layers > args.depth:
            parser.error(f"--pools {name}: the encoder has only {args.depth} blocks")
    if args.split == "val" and args.val_size < 1:
        parser.error(f"--val-size must be >= 1, got {args.val_size}")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    start = time.perf_counter()
    cpu_start = time.process_time()
    load_before = [round(value, 2) for value in os.getloadavg()]
    train, test = load_splits(args)
    runs = [run_impl(impl, train, test, args, device) for impl in args.impl]
    if args.scratch_epochs > 0:
        runs.append(run_scratch(train, test, args, device))
    runs += [run_pixels(train, test, args) for _ in args.baseline]
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    config["train_size"] = int(train.images.shape[0])
    config["test_size"] = int(test.images.shape[0])
    result: dict[str, Any] = {
        "benchmark": "fashion_mnist",
        "command": " ".join(["python benchmarks/fashion_mnist.py", *(argv or sys.argv[1:])]),
        "config": config,
        "machine": machine_info(device),
        "runs": runs,
        "wall_time_s": time.perf_counter() - start,
        "cpu_time_s": time.process_time() - cpu_start,
        "load_before": load_before,
        "load_after": [round(value, 2) for value in os.getloadavg()],
    }
    result["rows"] = table_rows(result)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.output_dir / f"{args.name}.md").write_text(markdown_table(result))
    if args.plot and any("losses" in run for run in runs):
        plot_losses(result, Path(args.plot))
    print(markdown_table(result))
    return result


if __name__ == "__main__":
    main()
