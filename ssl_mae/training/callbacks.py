"""Lightning callbacks of a pre-training run: stop on a non-finite loss, report skipped files.

* :class:`NonFiniteLossGuard`: a NaN/inf loss stops training before the bad step changes the
  weights or reaches a checkpoint.
* :class:`SkippedFilesReport`: counts unreadable image files (see
  :class:`~ssl_mae.data.ImageFolderDataset`) and warns once per epoch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from ssl_mae.data.factory import unwrap_subset

logger = logging.getLogger(__name__)

__all__ = ["NonFiniteLossError", "NonFiniteLossGuard", "SkippedFilesReport", "count_skipped_files"]


class NonFiniteLossError(RuntimeError):
    """Raised by :class:`NonFiniteLossGuard` when the training loss is NaN or infinite."""


class NonFiniteLossGuard(pl.Callback):
    """Stops training at the first NaN/inf loss, before backward and the optimiser step.

    Raising in ``on_before_backward`` means the bad step never updates the weights, the
    optimiser state or the lr schedule, and no checkpoint is written after it: ``last.ckpt``
    keeps the last good state.
    """

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor
    ) -> None:
        """Checks ``loss`` (one device sync per step)."""
        if bool(torch.isfinite(loss.detach()).all()):
            return
        last = ""
        for callback in trainer.checkpoint_callbacks:
            path = getattr(callback, "last_model_path", "")
            if path and os.path.exists(path):
                last = f"; last good checkpoint: {path}"
                break
        raise NonFiniteLossError(
            f"training loss became {float(loss.detach().float().mean())} at step "
            f"{trainer.global_step} (epoch {trainer.current_epoch}); training stopped{last}. "
            "Try a lower --lr/--base-lr, --precision 32-true or a longer warmup."
        )


def count_skipped_files(datasets: Iterable[Any]) -> int:
    """Sum of ``num_skipped`` over the datasets that count unreadable files (others add 0).

    ``Subset`` wrappers are looked through.
    """
    total = 0
    for dataset in datasets:
        skipped = getattr(unwrap_subset(dataset), "num_skipped", None)
        if isinstance(skipped, int):
            total += skipped
    return total


class SkippedFilesReport(pl.Callback):
    """Warns at the end of each training epoch how many unreadable files were skipped so far.

    Counts are per process (each DDP rank reads its own share of the files).

    Args:
        datasets: Datasets with a ``num_skipped`` count (e.g. ``ImageFolderDataset``); others
            are ignored.
    """

    def __init__(self, datasets: Iterable[Any]) -> None:
        self.datasets = [d for d in datasets if d is not None]
        self._reported = 0

    @property
    def num_skipped(self) -> int:
        """Unreadable files found so far in all datasets."""
        return count_skipped_files(self.datasets)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Logs a warning when new unreadable files were found in this epoch."""
        count = self.num_skipped
        if count > self._reported:
            first = ""
            for dataset in self.datasets:
                paths: list[Path] = getattr(unwrap_subset(dataset), "skipped_paths", list)()
                if paths:
                    first = f" (first: {paths[0]})"
                    break
            logger.warning("skipped %d unreadable image files so far%s", count, first)
            self._reported = count
