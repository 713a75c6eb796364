"""What a ``pretrain`` run leaves behind: ``metrics.json`` and ``report.md``.

Both are written at the end of the run and when it is stopped by a signal. The report holds the
loss and learning-rate curves (``report/curves.png``, from the CSV logs of every session of the
run, so a resumed run shows one continuous curve), reconstructions of the same held-out images
every time (``report/reconstruction.png``; for norm-pix models mapped back to pixels with the
visible patches' statistics, next to the raw prediction in ``report/reconstruction_raw.png``),
the throughput, the evaluation results and every option.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunResults", "read_curves", "write_results"]

logger = logging.getLogger("ssl_mae.cli")

REPORT_IMAGES = 8
_CURVES = ("train_loss", "val_loss", "lr")


@dataclass
class RunResults:
    """Everything the results of a run are made of.

    Attributes:
        config: The run's options.
        output_dir: Its folder.
        resumed_from: The checkpoint it continued, if any.
        trainer: The Lightning trainer.
        callbacks: The run's callbacks by role (``last``, ``best``, ``throughput``, ...).
        model: The trained module.
        images: The dataset the report's reconstructions come from (held-out when there is one).
        started: ``time.perf_counter()`` at the start of the command.
        training_started: ``time.perf_counter()`` when training started.
        train_seconds: Wall-clock seconds of ``trainer.fit``.
        knn: The kNN result, or ``{"skipped": reason}``.
    """

    config: dict[str, Any]
    output_dir: Path
    resumed_from: str | None
    trainer: Any
    callbacks: dict[str, Any]
    model: Any
    images: Any
    started: float
    training_started: float = field(default_factory=time.perf_counter)
    train_seconds: float | None = None
    knn: dict[str, Any] | None = None

    def metric(self, key: str) -> float | None:
        """A logged metric of the last step/epoch as a float (None when absent or not finite)."""
        value = self.trainer.callback_metrics.get(key)
        return _finite(value)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _metrics(results: RunResults, status: str) -> dict[str, Any]:
    trainer, named = results.trainer, results.callbacks
    train_seconds = results.train_seconds
    if train_seconds is None:
        train_seconds = time.perf_counter() - results.training_started
    best = named.get("best")
    config = results.config
    metrics: dict[str, Any] = {
        "status": status,
        "train_seconds": round(train_seconds, 2),
        "epochs": int(trainer.current_epoch),
        "steps": int(trainer.global_step),
        "train_loss": results.metric("train_loss"),
        "val_loss": results.metric("val_loss"),
        "best_val_loss": _finite(best.best_model_score) if best is not None else None,
        "skipped_files": int(named["skipped"].num_skipped),
        "images_per_second": _round(named["throughput"].images_per_second),
        "last_checkpoint": str(results.output_dir / "last.ckpt"),
        "best_checkpoint": str(results.output_dir / "best.ckpt") if best is not None else None,
        "resumed_from": results.resumed_from,
        "changed_on_resume": config.get("changed_on_resume", {}),
        "config": {k: v for k, v in config.items() if k != "changed_on_resume"},
        "device": str(trainer.strategy.root_device),
        "world_size": int(trainer.world_size),
        "total_seconds": round(time.perf_counter() - results.started, 2),
    }
    if results.knn is not None:
        metrics["knn"] = results.knn
        if "top1" in results.knn:
            metrics["knn_top1"], metrics["knn_top5"] = results.knn["top1"], results.knn["top5"]
            metrics["knn_seconds"] = results.knn.get("seconds")
    return metrics


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def read_curves(log_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """Loss and lr curves from the CSV logs of every session of a run (``logs/version_N``).

    A session that was killed logged steps after its last checkpoint; the session that resumed
    from that checkpoint logs them again. Each session's points from the next session's first
    step on are dropped, so the curve is the one of the weights that survived.

    Returns:
        ``{"train_loss": [(step, value), ...], "val_loss": [...], "lr": [...]}``.
    """
    sessions = []
    for folder in sorted(log_dir.glob("version_*"), key=lambda p: int(p.name.split("_")[-1] or 0)):
        path = folder / "metrics.csv"
        if not path.is_file():
            continue
        with path.open(newline="") as file:
            rows = list(csv.DictReader(file))
        points: dict[str, list[tuple[float, float]]] = {name: [] for name in _CURVES}
        for row in rows:
            for name in _CURVES:
                if row.get(name):
                    points[name].append((float(row["step"]), float(row[name])))
        sessions.append(points)
    curves: dict[str, list[tuple[float, float]]] = {name: [] for name in _CURVES}
    for index, points in enumerate(sessions):
        later = [p[0] for s in sessions[index + 1 :] for values in s.values() for p in values]
        cut = min(later) if later else math.inf
        for name in _CURVES:
            curves[name] += [p for p in points[name] if p[0] < cut]
    return curves


def _reconstructions(results: RunResults, folder: Path) -> list[tuple[str, str]]:
    """Reconstruction grids of the first images of the report's dataset (same masks every
    time); returns ``(title, file name)`` pairs."""
    import torch

    from ssl_mae.data import normalize_images
    from ssl_mae.visualize import reconstruct, save_reconstruction_grid

    config, model = results.config, results.model
    count = min(REPORT_IMAGES, len(results.images))
    samples = [results.images[i] for i in range(count)]
    images = torch.stack([s[0] for s in samples if s is not None])
    size = (int(config["img_size"]), int(config["img_size"]))
    device = next(model.parameters()).device
    inputs = normalize_images(images, config["normalize"], size).to(device)
    noise = torch.rand(
        inputs.shape[0],
        model.masked_autoencoder.encoder.grid_size[0]
        * model.masked_autoencoder.encoder.grid_size[1],
        generator=torch.Generator().manual_seed(0),
    ).to(device)
    grids = []
    variants = [("visible", "reconstruction.png"), ("none", "reconstruction_raw.png")]
    if not config["norm_pix"]:
        variants = variants[:1]
    for stats, name in variants:
        result = reconstruct(
            model, inputs, float(config["mask_ratio"]), noise=noise, norm_pix_stats=stats
        )
        save_reconstruction_grid(result, folder / name, normalize=config["normalize"])
        if not config["norm_pix"]:
            title = "original | masked | reconstruction | reconstruction + visible patches"
        elif stats == "visible":
            title = (
                "norm-pix predictions mapped back to pixels with the mean and variance of the "
                "image's visible patches"
            )
        else:
            title = "raw norm-pix predictions (each patch standardised), shown as model inputs"
        grids.append((title, name))
    return grids


def _report(results: RunResults, metrics: Mapping[str, Any]) -> Path:
    from ssl_mae.visualize import save_training_curves

    output_dir = results.output_dir
    folder = output_dir / "report"
    folder.mkdir(exist_ok=True)
    lines = [
        "# ssl-mae pretrain report",
        "",
        f"Status: **{metrics['status']}** after {metrics['steps']} steps "
        f"({metrics['epochs']} complete epochs) on {metrics['device']} "
        f"(world size {metrics['world_size']}).",
        "",
        f"Continue or extend the run: `ssl-mae pretrain --resume {output_dir / 'last.ckpt'}`.",
        "",
        "## Results",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    for key in ("train_loss", "val_loss", "best_val_loss", "images_per_second", "train_seconds",
                "skipped_files"):  # fmt: skip
        lines.append(f"| {key} | {metrics[key]} |")
    knn = metrics.get("knn") or {}
    if "top1" in knn:
        lines.append(f"| kNN top-1 / top-5 | {knn['top1']:.2f}% / {knn['top5']:.2f}% "
                     f"(k={int(knn['k'])}, {int(knn['num_train'])} bank / "
                     f"{int(knn['num_test'])} query images) |")  # fmt: skip
    elif knn.get("skipped"):
        lines.append(f"| kNN | skipped: {knn['skipped']} |")
    curves = read_curves(output_dir / "logs")
    if any(curves.values()):
        save_training_curves(curves, folder / "curves.png")
        lines += ["", "## Curves", "", "![loss and learning rate](report/curves.png)"]
    else:
        lines += ["", "## Curves", "", "No curves: the run logged nothing (`--logger none`)."]
    lines += ["", "## Reconstructions", ""]
    for title, name in _reconstructions(results, folder):
        lines += [f"{title}:", "", f"![{title}](report/{name})", ""]
    lines += ["## Options", "", "| option | value |", "| --- | --- |"]
    for key, value in sorted(metrics["config"].items()):
        lines.append(f"| {key} | `{value}` |")
    path = output_dir / "report.md"
    tmp = path.with_name(".report.md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def write_results(results: RunResults, status: str) -> dict[str, Any]:
    """Writes ``metrics.json`` and (unless ``--no-report``) ``report.md``.

    A report that cannot be drawn is logged as a warning; ``metrics.json`` is always written.

    Returns:
        The metrics.
    """
    from ssl_mae.training.checkpoints import write_json_atomic

    metrics = _metrics(results, status)
    if results.config.get("report", True):
        try:
            metrics["report"] = str(_report(results, metrics))
        except Exception as error:  # the results must not be lost to a plotting problem
            logger.warning("report.md not written: %s: %s", type(error).__name__, error)
    write_json_atomic(metrics, results.output_dir / "metrics.json")
    return metrics
