"""Time and accuracy of every preset through ``ssl-mae pretrain``, on the machine it runs on.

Small presets (28-32 px) pretrain on Fashion-MNIST for a fixed budget (``--train-images`` for
one epoch) and report the run's wall time, training images per second and kNN top-1 on
``--test-images`` test images (k = 200 at most the mean class size, as the CLI does). The
ImageNet-size presets (224 px) run ``--big-steps`` optimiser steps of ``--big-batch`` images
(Fashion-MNIST resized to 224, one channel) and report images per second only: a CPU cannot
pretrain them to a meaningful accuracy.

Every run is a fresh ``ssl-mae pretrain`` process with the CLI's defaults except the budget;
results go to ``--output`` (JSON) and a Markdown table on stdout.

Usage:
    python benchmarks/cli_presets.py --output benchmarks/results/cli_presets.json
    python benchmarks/cli_presets.py --presets mae_vit_micro_patch7 --train-images 2000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SMALL = (
    "mae_vit_micro_patch4",
    "mae_vit_micro_patch7",
    "mae_vit_tiny_patch4",
    "mae_hivit_nano",
    "simple_mae_vit_micro",
    "simple_mae_vit_tiny",
    "simple_mae_torchvision_vit_tiny",
    "mae_vit_micro_patch7_dec1",
    "mae_crossmae_micro_patch7",
    "mae_hog_micro_patch7",
    "mae_pixio_micro_patch4",
)
BIG = (
    "mae_vit_base_patch16",
    "mae_vit_large_patch16",
    "mae_vit_huge_patch14",
    "mae_hivit_t",
    "mae_hivit_s",
    "mae_hivit_b",
    "mae_hivit_b20",
    "mae_hivit_l",
    "mae_crossmae_base_patch16",
)


def _pretrain(preset: str, folder: Path, budget: list[str], threads: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "ssl_mae.cli", "pretrain", "--preset", preset,
               "--output-dir", str(folder), "--no-progress", "--accelerator", "cpu",
               "--devices", "1", "--no-report", *budget]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        return {"preset": preset, "error": result.stderr.strip().splitlines()[-1:], "wall_s": wall}
    metrics = json.loads((folder / "metrics.json").read_text())
    knn = metrics.get("knn") or {}
    return {
        "preset": preset,
        "wall_s": round(wall, 1),
        "train_s": metrics["train_seconds"],
        "steps": metrics["steps"],
        "images_per_second": metrics["images_per_second"],
        "knn_top1": knn.get("top1"),
        "knn_k": knn.get("k"),
        "train_loss": metrics["train_loss"],
        "batch_size": metrics["config"]["batch_size"],
        "img_size": metrics["config"]["img_size"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=[*SMALL, *BIG], help="presets to run")
    parser.add_argument("--train-images", type=int, default=10_000, help="small presets' epoch")
    parser.add_argument("--test-images", type=int, default=2_000, help="kNN queries")
    parser.add_argument("--big-steps", type=int, default=3, help="steps of the 224 px presets")
    parser.add_argument("--big-batch", type=int, default=8, help="batch of the 224 px presets")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--output", default=None, help="JSON file for the results")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for preset in args.presets:
            if preset in BIG:
                budget = ["--max-steps", str(args.big_steps), "--batch-size", str(args.big_batch),
                          "--limit-train-images", str(args.big_steps * args.big_batch),
                          "--limit-test-images", str(args.big_batch), "--no-knn",
                          "--checkpoint-every-n-steps", str(10 * args.big_steps)]  # fmt: skip
            else:
                budget = ["--epochs", "1", "--limit-train-images", str(args.train_images),
                          "--limit-test-images", str(args.test_images)]  # fmt: skip
            row = _pretrain(preset, Path(scratch) / preset, budget, args.threads)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.output:
        Path(args.output).write_text(
            json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n"
        )
    print("\n| preset | input | batch | steps | train s | img/s | kNN top-1 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        if "error" in row:
            print(f"| {row['preset']} | error: {row['error']} | | | | | |")
            continue
        knn = "–" if row["knn_top1"] is None else f"{row['knn_top1']:.2f}"
        print(f"| {row['preset']} | {row['img_size']} px | {row['batch_size']} | {row['steps']} | "
              f"{row['train_s']} | {row['images_per_second']} | {knn} |")  # fmt: skip


if __name__ == "__main__":
    main()
