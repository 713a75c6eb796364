"""MAE variants on Fashion-MNIST at equal wall-clock: kNN and linear top-1, img/s, FLOPs per image.

Every variant is a preset of the registry (``ssl_mae.models.presets``), trained through the one
core (``MaskedAutoencoder``) with the same recipe (AdamW betas (0.9, 0.95), weight decay 0.05
without norms/biases/tokens, warmup + cosine per step), the same batches, crops and flips (one
generator seeded with the seed draws order, augmentation and masks), and evaluated the same way
(frozen features, kNN with k=200 and t=0.07, linear probe with BatchNorm + Linear and LARS).

Equal wall-clock, not equal epochs: first the training throughput of every variant is measured
*interleaved* (round-robin bursts of steps on the same batches, so that load changes on a shared
machine hit every variant alike); then each variant trains for ``budget × its steps per second``
steps. A fixed step count keeps the learning-rate schedule exact and runs reproducible; the
pretraining time each run really took is reported beside the budget. FLOPs per image are
counted by ``torch.utils.flop_counter`` on one training step (forward and backward, math
attention kernel).

``--epochs E`` compares at equal epochs instead: every variant trains ``E × (images // batch)``
steps and no throughput is calibrated (the CrossMAE target "accuracy within 0.5 point of MAE at
equal epochs").

Default run: ``python benchmarks/variants.py --budget-s 600 --seeds 0 1``. Smoke run:
``python benchmarks/variants.py --budget-s 2 --train-subset 256 --test-subset 128
--probe-epochs 1 --calibration-rounds 1``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fashion_mnist

from ssl_mae.core import MaskedAutoencoder, as_masked_autoencoder
from ssl_mae.evaluation import knn_accuracy, pool_tokens, train_linear_probe
from ssl_mae.masking import random_token_mask
from ssl_mae.models.presets import PRETRAIN_PRESETS, build_model
from ssl_mae.training.optim import build_adamw, param_groups_weight_decay, warmup_cosine_scheduler
from ssl_mae.transforms import FASHION_MNIST_NORMALIZE, BatchedMAEAugment

#: Lightly's MAE wiring (its examples/pytorch/mae.py: MaskedVisionTransformerTIMM, a
#: MaskedVisionTransformerDecoderTIMM, a linear head, MSE on pixels) around the architecture of
#: ``mae_vit_micro_patch7_dec1``, trained with the same recipe and batches as every other row.
LIGHTLY = "lightly_mae_micro_patch7_dec1"

VARIANTS = (
    "mae_vit_micro_patch7_dec1",
    "mae_vit_micro_patch7_dec1@decode=0.25",
    "mae_crossmae_micro_patch7",
    "mae_pixio_micro_patch4",
    "mae_hog_micro_patch7",
    LIGHTLY,
)
NUM_CLASSES = 10
REPO_ROOT = Path(__file__).resolve().parent.parent


class _LightlyOutput(NamedTuple):
    loss: Tensor


class _LightlyEncoder(nn.Module):
    """Lightly's ``MaskedVisionTransformerTIMM`` seen through ``encode`` + ``num_prefix_tokens``."""

    def __init__(self, backbone: nn.Module, num_prefix_tokens: int) -> None:
        super().__init__()
        self.backbone: Any = backbone  # Lightly's MaskedVisionTransformerTIMM
        self.num_prefix_tokens = num_prefix_tokens

    def encode(self, images: Tensor) -> Tensor:
        return cast(Tensor, self.backbone.encode(images=images))


class LightlyMAECore(nn.Module):
    """Lightly's MAE example wiring with the ``core(images, generator=...).loss`` interface."""

    def __init__(self) -> None:
        super().__init__()
        from lightly.models.modules import (
            MaskedVisionTransformerDecoderTIMM,
            MaskedVisionTransformerTIMM,
        )
        from timm.models.vision_transformer import VisionTransformer

        vit = VisionTransformer(
            img_size=28, patch_size=7, in_chans=1, embed_dim=128, depth=4, num_heads=4,
            num_classes=0,
        )  # fmt: skip
        self.encoder = _LightlyEncoder(MaskedVisionTransformerTIMM(vit=vit), vit.num_prefix_tokens)
        self.sequence_length = int(self.encoder.backbone.sequence_length)
        self.decoder_embed = nn.Linear(128, 64)
        self.decoder = MaskedVisionTransformerDecoderTIMM(
            num_patches=16, embed_dim=64, depth=1, num_heads=4
        )
        self.prediction_head = nn.Linear(64, 7 * 7)

    def forward(self, images: Tensor, generator: torch.Generator) -> _LightlyOutput:
        from lightly.models import utils

        batch = images.shape[0]
        idx_keep, idx_mask = random_token_mask(
            (batch, self.sequence_length), mask_ratio=0.75, generator=generator
        )
        encoded = self.encoder.backbone.encode(images=images, idx_keep=idx_keep)
        x = self.decoder_embed(encoded)
        tokens = utils.repeat_token(self.decoder.mask_token, (batch, self.sequence_length))
        tokens = utils.set_at_index(tokens, idx_keep, x.type_as(tokens))
        pred = self.prediction_head(utils.get_at_index(self.decoder(tokens), idx_mask))
        target = utils.get_at_index(utils.patchify(images, 7), idx_mask - 1)
        return _LightlyOutput(F.mse_loss(pred, target))


#: What a row trains: the one core of a preset, or Lightly's wiring.
Core = MaskedAutoencoder | LightlyMAECore


class Row(NamedTuple):
    """What a ``--presets`` entry asks for: a preset, a decoding share and preset options."""

    preset: str
    decode_ratio: float | None = None  # None: the preset's own share (CrossMAE: 0.25)
    model_overrides: Mapping[str, Any] = MappingProxyType({})  # preset keys the row replaces


def _parse_decode(name: str, value: str) -> float:
    try:
        ratio = float(value)
    except ValueError:
        ratio = math.nan
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"row {name!r}: expected PRESET@decode=R with R in (0, 1]")
    return ratio


def _parse_layers(name: str, value: str) -> tuple[int, ...] | None:
    if value == "none":
        return None
    try:
        return tuple(int(part) for part in value.split(","))
    except ValueError:
        raise ValueError(
            f"row {name!r}: expected @layers=none or comma-separated encoder layers, e.g. -1,-1"
        ) from None


def parse_row(name: str) -> Row:
    """``"PRESET"`` plus any of ``"@decode=R"`` (decode a share R of the masked tokens) and
    ``"@layers=I,J"`` / ``"@layers=none"`` (the encoder layer each CrossMAE decoder block reads;
    none: all read the encoder output) -> :class:`Row`. What a row does not name stays as the
    preset says."""
    preset, *options = name.split("@")
    decode_ratio, overrides = None, {}
    for option in options:
        key, _, value = option.partition("=")
        if key == "decode":
            decode_ratio = _parse_decode(name, value)
        elif key == "layers":
            overrides["encoder_layers"] = _parse_layers(name, value)
        else:
            raise ValueError(f"row {name!r}: unknown option {key!r}; known: decode, layers")
    return Row(preset, decode_ratio, MappingProxyType(overrides))


def build_core(name: str, seed: int) -> Core:
    """The core of a row for 28x28 grayscale images, initialised from ``seed``: a registry
    preset (with the row's overrides, see :func:`parse_row`) or :data:`LIGHTLY`."""
    torch.manual_seed(seed)
    if name == LIGHTLY:
        return LightlyMAECore()
    row = parse_row(name)
    reads_layers = "encoder_layers" in row.model_overrides
    if reads_layers and PRETRAIN_PRESETS[row.preset].config.get("decoder") != "cross":
        raise ValueError(f"row {name!r}: @layers needs a CrossMAE preset (decoder='cross')")
    core = as_masked_autoencoder(
        build_model(row.preset, img_size=28, in_chans=1, **row.model_overrides)
    )
    if row.decode_ratio is not None:
        core.decode_ratio = row.decode_ratio
    return core


def normalize(images: Tensor) -> Tensor:
    """uint8 (B, 1, 28, 28) → float, normalised with the Fashion-MNIST mean and std."""
    mean, std = FASHION_MNIST_NORMALIZE["mean"][0], FASHION_MNIST_NORMALIZE["std"][0]
    return (images.float() / 255.0 - mean) / std


def batches(
    images: Tensor, args: argparse.Namespace, generator: torch.Generator
) -> Iterator[Tensor]:
    """Endless augmented batches (B, 1, 28, 28): shuffled epochs, random crops and flips."""
    augment = BatchedMAEAugment(28, min_scale=args.min_scale, normalize=FASHION_MNIST_NORMALIZE)
    batch_size = min(args.batch_size, images.shape[0])
    while True:
        order = torch.randperm(images.shape[0], generator=generator)
        for step in range(images.shape[0] // batch_size):
            picked = images[order[step * batch_size : (step + 1) * batch_size]]
            yield augment(picked, generator=generator)


def make_optimizer(
    core: Core, args: argparse.Namespace, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = build_adamw(param_groups_weight_decay(core, args.weight_decay), lr=args.lr)
    warmup = int(total_steps * args.warmup_fraction)
    return optimizer, warmup_cosine_scheduler(optimizer, total_steps, warmup, args.min_lr)


def train_step(
    core: Core,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    generator: torch.Generator,
) -> float:
    loss = core(images, generator=generator).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.item())


def measure_throughput(
    presets: Sequence[str], images: Tensor, args: argparse.Namespace
) -> dict[str, float]:
    """Training steps per second of every preset, measured in interleaved rounds.

    Every preset trains a throw-away copy on the same pre-drawn batches; one warm-up step each,
    then ``calibration_rounds`` rounds in which each preset in turn times ``steps_per_round``
    steps. A load change on a shared machine thus falls on every preset alike.
    """
    generator = torch.Generator().manual_seed(12345)
    stream = batches(images, args, generator)
    fixed = [next(stream) for _ in range(args.steps_per_round)]
    cores = {name: build_core(name, 0) for name in presets}
    optimizers = {name: make_optimizer(core, args, 1)[0] for name, core in cores.items()}
    elapsed = dict.fromkeys(presets, 0.0)
    for name in presets:  # warm-up: allocator, lazy imports
        train_step(cores[name], optimizers[name], fixed[0], generator)
    for _ in range(args.calibration_rounds):
        for name in presets:
            tic = time.perf_counter()
            for batch in fixed:
                train_step(cores[name], optimizers[name], batch, generator)
            elapsed[name] += time.perf_counter() - tic
    steps = args.calibration_rounds * len(fixed)
    return {name: steps / elapsed[name] for name in presets}


def count_train_flops(core: Core, images: Tensor) -> float:
    """FLOPs per image of one training step (forward + backward) of a copy of ``core``."""
    probe = copy.deepcopy(core)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        probe(images, generator=torch.Generator().manual_seed(0)).loss.backward()
    return float(counter.get_total_flops()) / images.shape[0]


@torch.no_grad()
def features(core: Core, images: Tensor, pools: Sequence[str]) -> dict[str, Tensor]:
    """Frozen, unmasked encoder features {pool: (N, D)}."""
    encoder = core.encoder
    was_training = encoder.training
    encoder.eval()
    out: dict[str, list[Tensor]] = {pool: [] for pool in pools}
    for start in range(0, images.shape[0], 512):
        tokens = encoder.encode(normalize(images[start : start + 512]))
        for pool in pools:
            out[pool].append(pool_tokens(tokens, pool, encoder.num_prefix_tokens).float())
    encoder.train(was_training)
    return {pool: torch.cat(parts) for pool, parts in out.items()}


def evaluate(
    core: Core,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    args: argparse.Namespace,
) -> dict[str, dict[str, float]]:
    """kNN and linear-probe top-1 (percent) for every pooling the encoder allows."""
    pools = ["cls", "mean"] + (["prefix"] if core.encoder.num_prefix_tokens > 1 else [])
    train_x, test_x = features(core, train[0], pools), features(core, test[0], pools)
    result = {}
    for pool in pools:
        knn = knn_accuracy(
            train_x[pool], train[1], test_x[pool], test[1], NUM_CLASSES,
            k=min(args.knn_k, train[0].shape[0]), temperature=args.knn_t,
        )  # fmt: skip
        probe = train_linear_probe(
            train_x[pool], train[1], test_x[pool], test[1], NUM_CLASSES,
            epochs=args.probe_epochs, warmup_epochs=min(3, args.probe_epochs), seed=args.seed_probe,
        )  # fmt: skip
        result[pool] = {"knn_top1": 100.0 * knn["top1"], "linear_top1": 100.0 * probe["top1"]}
    return result


def run_variant(
    preset: str,
    seed: int,
    steps: int,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Pretrains one preset for ``steps`` steps and evaluates its frozen encoder."""
    core = build_core(preset, seed)
    core.train()
    generator = torch.Generator().manual_seed(seed)
    stream = batches(train[0], args, generator)
    optimizer, scheduler = make_optimizer(core, args, steps)
    flops = count_train_flops(core, next(stream))
    losses = []
    tic = time.perf_counter()
    for _ in range(steps):
        value = train_step(core, optimizer, next(stream), generator)
        scheduler.step()
        if not math.isfinite(value):
            raise RuntimeError(f"{preset}: loss became {value}")
        losses.append(value)
    pretrain_s = time.perf_counter() - tic
    images = steps * min(args.batch_size, train[0].shape[0])
    print(f"[{preset} seed {seed}] {steps} steps in {pretrain_s:.0f}s", flush=True)
    return {
        "preset": preset,
        "seed": seed,
        "steps": steps,
        "pretrain_s": pretrain_s,
        "images_per_s": images / pretrain_s,
        "train_flops_per_image": flops,
        "final_loss": losses[-1],
        "evaluation": evaluate(core, train, test, args),
    }


def markdown_table(result: dict[str, Any]) -> str:
    """One row per (variant, pool): mean over seeds and the seed-to-seed spread (max - min)."""
    epochs = result["config"].get("epochs")
    budget = f"{epochs} epochs" if epochs else f"Budget {result['config']['budget_s']} s"
    lines = [
        f"{budget} of pretraining per run, seeds "
        f"{result['config']['seeds']}; spread = max - min over seeds; evaluated on the "
        f"{result['config'].get('split', 'test')} split.",
        "",
        "| variant | pool | steps | pretrain s | img/s | train GFLOP/img | kNN top-1 | "
        "linear top-1 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for preset in result["config"]["presets"]:
        runs = [run for run in result["runs"] if run["preset"] == preset]
        for pool in runs[0]["evaluation"]:
            cells = []
            for metric in ("knn_top1", "linear_top1"):
                values = [run["evaluation"][pool][metric] for run in runs]
                cells.append(f"{statistics.mean(values):.2f} ± {max(values) - min(values):.2f}")
            lines.append(
                f"| {preset} | {pool} | {runs[0]['steps']} | "
                f"{statistics.mean(r['pretrain_s'] for r in runs):.0f} | "
                f"{statistics.mean(r['images_per_s'] for r in runs):.0f} | "
                f"{runs[0]['train_flops_per_image'] / 1e9:.4f} | {cells[0]} | {cells[1]} |"
            )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--presets",
        nargs="+",
        default=list(VARIANTS),
        help=f"rows: registry names, NAME@decode=R (partial decoding) or {LIGHTLY}",
    )
    parser.add_argument("--budget-s", type=float, default=600.0, help="pretraining s per run")
    parser.add_argument(
        "--epochs", type=int, default=None, help="equal epochs instead of equal --budget-s"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--calibration-rounds", type=int, default=5)
    parser.add_argument("--steps-per-round", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1.5e-3, help="peak AdamW learning rate")
    parser.add_argument("--min-lr", type=float, default=0.0)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-fraction", type=float, default=0.1)
    parser.add_argument("--min-scale", type=float, default=0.5)
    parser.add_argument("--knn-k", type=int, default=200)
    parser.add_argument("--knn-t", type=float, default=0.07)
    parser.add_argument("--probe-epochs", type=int, default=30)
    parser.add_argument("--seed-probe", type=int, default=0, help="seed of the linear probe")
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--test-subset", type=int, default=None)
    parser.add_argument("--data-root", default=None)
    parser.add_argument(
        "--split",
        choices=("test", "val"),
        default="test",
        help="evaluate on the official test split, or on the last --val-size training images "
        "held out of pretraining (to choose a variant's options without reading the test split)",
    )
    parser.add_argument("--val-size", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="variants", help="stem of the JSON and Markdown files")
    args = parser.parse_args(argv)
    try:
        rows = [parse_row(p) for p in args.presets if p != LIGHTLY]
    except ValueError as error:
        parser.error(f"--presets: {error}")
    unknown = [row.preset for row in rows if row.preset not in PRETRAIN_PRESETS]
    if unknown:
        parser.error(f"--presets: unknown presets {unknown}")
    if args.split == "val" and args.val_size < 1:
        parser.error(f"--val-size must be >= 1, got {args.val_size}")
    if not args.budget_s > 0:
        parser.error(f"--budget-s must be > 0, got {args.budget_s}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    return args


def load_data(args: argparse.Namespace) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """``(train, evaluation)`` as (images (N, 1, 28, 28) uint8, labels (N,)): the official split,
    or (``--split val``) the training images minus the last ``--val-size`` and those held-out
    images, the same cut as ``fashion_mnist.py --split val`` (the test split is then not read)."""
    train, evaluation = fashion_mnist.load_splits(args)
    return (train.images, train.labels), (evaluation.images, evaluation.labels)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    train, test = load_data(args)
    if args.epochs is None:
        steps_per_s = measure_throughput(args.presets, train[0], args)
        steps = {name: max(1, int(args.budget_s * rate)) for name, rate in steps_per_s.items()}
        print(f"steps per {args.budget_s:.0f}s budget: {steps}", flush=True)
    else:  # equal epochs: the same number of steps for every variant, nothing to calibrate
        steps_per_epoch = train[0].shape[0] // min(args.batch_size, train[0].shape[0])
        steps_per_s = {}
        steps = dict.fromkeys(args.presets, args.epochs * steps_per_epoch)
        print(f"steps for {args.epochs} epochs: {steps}", flush=True)
    runs = [
        run_variant(preset, seed, steps[preset], train, test, args)
        for seed in args.seeds
        for preset in args.presets
    ]
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result: dict[str, Any] = {
        "benchmark": "variants_equal_epochs" if args.epochs else "variants_equal_wall_clock",
        "command": " ".join(["python benchmarks/variants.py", *(argv or sys.argv[1:])]),
        "config": config,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "load_average_start": load_before,
            "load_average_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
        "train_images": train[0].shape[0],
        "evaluation_images": test[0].shape[0],
        "calibration_steps_per_s": steps_per_s,
        "runs": runs,
        "wall_time_s": time.perf_counter() - start,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown_table(result)
    (args.output_dir / f"{args.name}.md").write_text(table)
    print(table)
    return result


if __name__ == "__main__":
    main()
