"""End-to-end epoch time of MAE pre-training against the pure compute of the same steps.

Runs the fast path (``ssl_mae.training.precision``, ``ssl_mae.training.optim``: bf16 autocast and
fused AdamW on CUDA, optional ``torch.compile``) over a dataset kept on the device
(``GPUResidentLoader`` with the batched random-resized-crop + flip of ``BatchedMAEAugment``), and
the same number of steps on one fixed, already augmented batch. The ratio end-to-end / compute
shows what the data path costs; 1.0 means nothing. With ``--host-loader`` the classic path is
timed too: a ``DataLoader`` with per-image ``MAETransform`` (PIL) in worker processes, pinned
memory and a non-blocking copy.

Datasets:
    fashion-mnist   the 60,000 training images (28 x 28 grayscale), ``mae_vit_tiny_patch4``
    synthetic       random uint8 images (3 x 256 x 256) cropped to ``--image-size`` (224) px,
                    ``mae_vit_base_patch16`` (an ImageNet-like epoch without needing ImageNet)

Usage:
    python benchmarks/epoch_time.py --dataset fashion-mnist --device cuda
    python benchmarks/epoch_time.py --dataset fashion-mnist --max-steps 20 --batch-size 128  # CPU
    python benchmarks/epoch_time.py --dataset synthetic --num-images 512 --batch-size 8 \\
        --max-steps 4 --host-loader

Timings repeat ``--repeats`` times, alternating end-to-end and compute runs; the report gives
medians and the min–max spread. With ``--max-steps`` only the first steps of an epoch are run and
the full-epoch time is extrapolated.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ssl_mae.data import GPUResidentLoader, TensorImageDataset, load_fashion_mnist
from ssl_mae.flops import flops_per_image
from ssl_mae.models.mae import MAE
from ssl_mae.models.presets import mae_vit_base_patch16, mae_vit_micro_patch4, mae_vit_tiny_patch4
from ssl_mae.training.optim import make_adamw
from ssl_mae.training.precision import autocast_context, compile_model, default_autocast_dtype
from ssl_mae.transforms import (
    FASHION_MNIST_NORMALIZE,
    IMAGENET_NORMALIZE,
    BatchedMAEAugment,
    MAETransform,
)

MODELS: dict[str, Callable[..., MAE]] = {
    "micro": mae_vit_micro_patch4,
    "tiny": mae_vit_tiny_patch4,
    "base": mae_vit_base_patch16,
}
DATASETS = ("fashion-mnist", "synthetic")


def load_images(args: argparse.Namespace) -> tuple[Tensor, int, dict[str, list[float]]]:
    """uint8 images (N, C, H, W) on the CPU, the model input size and the normalisation."""
    if args.dataset == "fashion-mnist":
        images, _ = load_fashion_mnist(train=True, download=False)
        images = images.unsqueeze(1)
        size, normalize = 28, FASHION_MNIST_NORMALIZE
    else:
        generator = torch.Generator().manual_seed(0)
        size, normalize = args.image_size, IMAGENET_NORMALIZE
        stored = round(size * 8 / 7)  # ImageNet-style: crops of 224 from ~256 px images
        images = torch.randint(
            0, 256, (args.num_images, 3, stored, stored), dtype=torch.uint8, generator=generator
        )
    if args.num_images:
        images = images[: args.num_images]
    return images, size, normalize


def build_model(args: argparse.Namespace, size: int, channels: int, device: torch.device) -> MAE:
    name = args.model or ("tiny" if args.dataset == "fashion-mnist" else "base")
    torch.manual_seed(0)
    model = MODELS[name](img_size=size, in_chans=channels, batch_size=args.batch_size)
    return model.to(device).train()


def make_step(
    model: MAE, device: torch.device, dtype: torch.dtype | None, fused: bool | None
) -> Callable[[Tensor], None]:
    optimizer = make_adamw(model, lr=1.5e-4 * 4, fused=fused)

    def step(images: Tensor) -> None:
        with autocast_context(device, dtype):
            loss = model(images)[0]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batches(
    batches: Iterable[Tensor], steps: int, step: Callable[[Tensor], None], device: torch.device
) -> float:
    """Seconds for ``steps`` training steps over ``batches`` (moved to ``device``)."""
    _sync(device)
    start = time.perf_counter()
    done = 0
    for batch in batches:
        step(batch.to(device, non_blocking=True))
        done += 1
        if done == steps:
            break
    _sync(device)
    if done < steps:
        raise ValueError(f"the loader gave only {done} batches, {steps} requested")
    return time.perf_counter() - start


class _FirstView:
    """MAETransform returns a list of views; the model takes the one view as a tensor."""

    def __init__(self, transform: MAETransform) -> None:
        self.transform = transform

    def __call__(self, image: Any) -> Tensor:
        return self.transform(image)[0]


def host_loader(
    images: Tensor, size: int, normalize: dict[str, list[float]], batch_size: int, workers: int
) -> torch.utils.data.DataLoader[Any]:
    """The classic path: per-image PIL MAETransform in DataLoader workers."""
    transform = _FirstView(MAETransform(input_size=size, normalize=normalize))
    dataset = TensorImageDataset(images, transform=transform)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    parser.add_argument("--model", choices=sorted(MODELS), default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=224, help="synthetic: model input size")
    parser.add_argument("--num-images", type=int, default=None, help="use the first N images")
    parser.add_argument(
        "--max-steps", type=int, default=None, help="steps per run (default: 1 epoch)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--fused", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--host-loader", action="store_true", help="also time a DataLoader path")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (host path)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.dataset == "synthetic" and args.num_images is None:
        args.num_images = 10_000
    if args.batch_size < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--batch-size and --repeats must be >= 1, --warmup >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    dtype = {"auto": default_autocast_dtype(device), "fp32": None, "bf16": torch.bfloat16}[
        args.precision
    ]
    compiled = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    fused = {"auto": None, "on": True, "off": False}[args.fused]
    images, size, normalize = load_images(args)
    model = build_model(args, size, images.shape[1], device)
    if compiled:
        compile_model(model)
    step = make_step(model, device, dtype, fused)
    augment = BatchedMAEAugment(input_size=size, normalize=normalize)
    loader = GPUResidentLoader(images, args.batch_size, augment, device=device, seed=0)
    steps = min(args.max_steps or len(loader), len(loader))
    fixed = next(iter(loader))  # one augmented batch, reused: compute only

    log(f"{args.dataset}: {loader.num_images} images, batch {args.batch_size}, {steps} steps/run")
    start = time.perf_counter()
    for _ in range(args.warmup):
        step(fixed)
    _sync(device)
    log(f"warm-up: {time.perf_counter() - start:.1f} s")

    paths: dict[str, Callable[[], float]] = {
        "compute": lambda: time_batches(iter(lambda: fixed, None), steps, step, device),
        "gpu_resident": lambda: time_batches(loader, steps, step, device),
    }
    if args.host_loader:
        classic = host_loader(images, size, normalize, args.batch_size, args.workers)
        paths["host_dataloader"] = lambda: time_batches(
            (batch[0] for batch in classic), steps, step, device
        )
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    for repeat in range(args.repeats):
        for name, run in paths.items():
            seconds[name].append(run())
        log(f"repeat {repeat + 1}: " + ", ".join(f"{n} {s[-1]:.2f} s" for n, s in seconds.items()))

    compute = statistics.median(seconds["compute"])
    images_per_run = steps * args.batch_size
    flops = flops_per_image(
        img_size=size, patch_size=model.patch_size, embed_dim=model.hparams["embed_dim"],
        depth=model.hparams["depth"], decoder_embed_dim=model.hparams["decoder_embed_dim"],
        decoder_depth=model.hparams["decoder_depth"], in_chans=images.shape[1],
    )  # fmt: skip
    rows = []
    for name, values in seconds.items():
        median = statistics.median(values)
        ratios = [v / c for v, c in zip(values, seconds["compute"], strict=True)]
        rows.append(
            {
                "path": name,
                "seconds": {"median": median, "min": min(values), "max": max(values)},
                "img_per_s": images_per_run / median,
                "ratio_to_compute": {
                    "median": statistics.median(ratios),
                    "min": min(ratios),
                    "max": max(ratios),
                },
                "epoch_seconds_projected": median * len(loader) / steps,
            }
        )
    lines = [
        "| path | s per run (median, min–max) | img/s | × compute (median, min–max) "
        "| projected epoch s |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        sec, ratio = row["seconds"], row["ratio_to_compute"]
        lines.append(
            f"| {row['path']} | {sec['median']:.2f} ({sec['min']:.2f}–{sec['max']:.2f}) "
            f"| {row['img_per_s']:.1f} | {ratio['median']:.2f} "
            f"({ratio['min']:.2f}–{ratio['max']:.2f}) | {row['epoch_seconds_projected']:.0f} |"
        )
    print("\n".join(lines))
    result = {
        "dataset": args.dataset,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "precision": str(dtype) if dtype else "float32",
        "compile": compiled,
        "batch_size": args.batch_size,
        "steps_per_run": steps,
        "steps_per_epoch": len(loader),
        "flops_per_image": flops,
        "compute_img_per_s": images_per_run / compute,
        "results": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
