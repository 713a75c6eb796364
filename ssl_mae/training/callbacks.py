"""Lightning callbacks of a pre-training run.

* :class:`NonFiniteLossGuard`: a NaN/inf loss stops training before the bad step changes the
  weights or reaches a checkpoint.
* :class:`SkippedFilesReport`: counts unreadable image files (see
  :class:`~ssl_mae.data.ImageFolderDataset`) and warns once per epoch.
* :class:`LastCheckpoint`: the one ``last.ckpt`` of a run, always its newest state (every N
  steps, after every validation, at the end), so a kill loses at most N steps.
* :class:`StopAtStepBoundary`: turns a stop signal (see :mod:`ssl_mae.training.signals`) into a
  checkpoint after the current step and a :class:`~ssl_mae.training.signals.StopRequested`.
* :class:`LearningRateLog`, :class:`Throughput`, :class:`ProgressLog`: log the learning rate
  and images per second, and print one progress line every N steps when there is no progress bar.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar
from torch import Tensor

from ssl_mae.data.factory import unwrap_subset
from ssl_mae.training.signals import StopRequested

logger = logging.getLogger(__name__)

__all__ = [
    "LastCheckpoint",
    "LearningRateLog",
    "LossProgressBar",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "ProgressLog",
    "SkippedFilesReport",
    "StopAtStepBoundary",
    "Throughput",
    "count_skipped_files",
]


class _AfterEachTrainBatch(pl.Callback):
    """A callback that acts after every training batch: Lightning's ``on_train_batch_end``
    calls :meth:`after_train_batch` with the arguments these callbacks use."""

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Calls :meth:`after_train_batch`."""
        self.after_train_batch(trainer, pl_module, batch)

    def after_train_batch(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any
    ) -> None:
        """What the callback does after the training batch ``batch`` (its optimiser step)."""
        raise NotImplementedError


class NonFiniteLossError(RuntimeError):
    """Raised by :class:`NonFiniteLossGuard` when the training loss is NaN or infinite."""


class NonFiniteLossGuard(pl.Callback):
    """Stops training at a NaN/inf loss before it reaches a checkpoint, without per-step syncs.

    Every step adds "was this loss finite?" to a flag that stays on the device (with the step and
    value of the first bad loss); reading it is the only host synchronisation, and it happens
    every ``check_every_n_steps`` steps (in ``on_before_backward``), before every checkpoint
    save (``on_save_checkpoint``: the save is refused) and at the end of training. A checkpoint
    is therefore never written after a bad step, and ``last.ckpt`` keeps the last good state.

    With ``check_every_n_steps=1`` (the default, and the CLI's on a CPU, where a read costs
    nothing) the bad step itself is stopped before backward and the optimiser step, so it
    changes no weight. With N > 1 (the CLI's default on CUDA) up to N - 1 further steps run on
    the spoilt weights before the check stops the run; no checkpoint holds them. Under DDP the
    processes agree on the decision, so all stop together.

    Args:
        check_every_n_steps: Read the flag every this many training batches.
    """

    def __init__(self, check_every_n_steps: int = 1) -> None:
        self.check_every_n_steps = _positive_steps(check_every_n_steps, "check_every_n_steps")
        self._first_step: Tensor | None = None  # () int64 on the device: -1 while all finite
        self._first_value: Tensor | None = None  # () float32: the first non-finite loss
        self._unchecked = 0

    def record(self, loss: Tensor, step: int) -> None:
        """Adds ``loss`` of optimiser step ``step`` to the device-side flag (no host sync)."""
        loss = loss.detach()
        if self._first_step is None or self._first_step.device != loss.device:
            self._first_step = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._first_value = torch.zeros((), dtype=torch.float32, device=loss.device)
        assert self._first_value is not None
        new = torch.logical_and(~torch.isfinite(loss).all(), self._first_step < 0)
        self._first_step = torch.where(new, step, self._first_step)
        self._first_value = torch.where(new, loss.float().mean(), self._first_value)

    def check(self, trainer: pl.Trainer) -> None:
        """Reads the flag (one host sync) and raises :class:`NonFiniteLossError` if any loss
        since the start was NaN or infinite."""
        self._unchecked = 0
        first_step, first_value = self._first_step, self._first_value
        bad = first_step is not None and bool(first_step >= 0)
        if trainer.world_size > 1:
            bad = bool(trainer.strategy.reduce_boolean_decision(bad, all=False))
        if not bad:
            return
        last = ""
        for callback in trainer.checkpoint_callbacks:
            path = getattr(callback, "last_model_path", "")
            if path and os.path.exists(path):
                last = f"; last good checkpoint: {path}"
                break
        if first_step is None or first_value is None or int(first_step) < 0:
            what = "non-finite in another process"
        else:
            step = int(first_step)
            found = "" if step == trainer.global_step else f", found at step {trainer.global_step}"
            what = f"{float(first_value)} at step {step}{found}"
        raise NonFiniteLossError(
            f"training loss became {what} (epoch {trainer.current_epoch}); training "
            f"stopped{last}. Try a lower --lr/--base-lr, --precision 32-true or a longer warmup."
        )

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor
    ) -> None:
        """Records ``loss``; every ``check_every_n_steps`` batches checks the flag."""
        self.record(loss, trainer.global_step)
        self._unchecked += 1
        if self._unchecked >= self.check_every_n_steps:
            self.check(trainer)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Refuses to save (raises) when a loss since the last check was not finite."""
        self.check(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A run does not end as finished with unchecked non-finite losses."""
        self.check(trainer)


def _positive_steps(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


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


# --- checkpoints and stopping --------------------------------------------------------------------
class LastCheckpoint(_AfterEachTrainBatch, pl.callbacks.Checkpoint):
    """Writes ``dirpath/last.ckpt``, the run's newest state, and nothing else.

    Saved after every ``every_n_steps`` optimiser steps, after every validation and at the end
    of training (or of a training epoch when there is no validation). One callback owns the file,
    so there are no ``last-v1.ckpt`` twins and the file is never older than N steps.

    Args:
        dirpath: The run's output folder.
        every_n_steps: Save every this many optimiser steps.
        filename: File name inside ``dirpath``.
    """

    def __init__(
        self, dirpath: str | os.PathLike[str], every_n_steps: int, filename: str = "last.ckpt"
    ) -> None:
        self.path = Path(dirpath) / filename
        self.every_n_steps = _positive_steps(every_n_steps, "every_n_steps")
        self.saved_step: int | None = None

    @property
    def last_model_path(self) -> str:
        """The checkpoint file once it has been written this run, else ``""``."""
        return str(self.path) if self.saved_step is not None else ""

    def save(self, trainer: pl.Trainer) -> None:
        """Saves the trainer's current state to :attr:`path` (call on every rank)."""
        trainer.save_checkpoint(self.path)
        self.saved_step = trainer.global_step

    def save_if_new(self, trainer: pl.Trainer) -> None:
        """Saves unless this optimiser step is already saved."""
        if self.saved_step != trainer.global_step:
            self.save(trainer)

    def after_train_batch(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any
    ) -> None:
        """Saves every ``every_n_steps`` optimiser steps."""
        step = trainer.global_step
        if step > 0 and step % self.every_n_steps == 0:
            self.save_if_new(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Saves the state after the epoch's validation (not during the sanity check)."""
        if not trainer.sanity_checking:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Without validation, saves at the end of every training epoch."""
        if not _has_validation(trainer):
            self.save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Saves the final state unless it is saved already."""
        self.save_if_new(trainer)


def _has_validation(trainer: pl.Trainer) -> bool:
    batches = trainer.num_val_batches
    total = sum(batches) if isinstance(batches, list) else batches
    return bool(trainer.enable_validation and total)


class _PendingStop(Protocol):
    pending: int | None


class StopAtStepBoundary(_AfterEachTrainBatch):
    """Stops training cleanly after the current step when a stop signal is pending.

    After the step (or the validation) in which the signal arrived, ``last.ckpt`` is saved and
    :class:`~ssl_mae.training.signals.StopRequested` is raised; Lightning then finalises its
    loggers (the CSV log is flushed) and re-raises it to the caller. Under DDP the ranks agree on
    the decision first, so all of them stop at the same step.

    Args:
        request: Anything with a ``pending`` signal number (a
            :class:`~ssl_mae.training.signals.StopRequest`).
        checkpoint: The run's :class:`LastCheckpoint`.
    """

    def __init__(self, request: _PendingStop, checkpoint: LastCheckpoint) -> None:
        self.request = request
        self.checkpoint = checkpoint

    def _stop_if_requested(self, trainer: pl.Trainer, after_validation: bool) -> None:
        signum = self.request.pending
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(signum is not None, all=False)
        else:
            stop = signum is not None
        if not stop:
            return
        if after_validation:  # same step as the last batch, but the epoch is now complete
            self.checkpoint.save(trainer)
        else:
            self.checkpoint.save_if_new(trainer)
        raise StopRequested(signum or 15, str(self.checkpoint.path))

    def after_train_batch(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any
    ) -> None:
        """Checks for a pending stop after every training step."""
        self._stop_if_requested(trainer, after_validation=False)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Checks for a pending stop after every validation."""
        if not trainer.sanity_checking:
            self._stop_if_requested(trainer, after_validation=True)


# --- what a run logs -----------------------------------------------------------------------------
def _optimizer_lr(trainer: pl.Trainer) -> float | None:
    for optimizer in trainer.optimizers:
        for group in optimizer.param_groups:
            return float(group["lr"])
    return None


class LearningRateLog(_AfterEachTrainBatch):
    """Logs ``lr``, the learning rate of the step just taken (first parameter group; the MAE
    recipe gives every group the same schedule)."""

    def after_train_batch(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any
    ) -> None:
        """Logs the learning rate the optimiser used for this step."""
        lr = _optimizer_lr(trainer)
        if lr is not None:
            # A float would become torch.tensor(lr, device=...), a blocking host-to-device copy
            # every step; torch.full writes the value from the kernel's arguments.
            value = torch.full((), lr, device=pl_module.device)
            pl_module.log("lr", value, on_step=True, on_epoch=False, batch_size=1)


def _batch_images(batch: Any) -> int:
    images = batch[0] if isinstance(batch, list | tuple) and batch else batch
    return int(images.shape[0]) if isinstance(images, torch.Tensor) and images.ndim > 0 else 0


class Throughput(_AfterEachTrainBatch):
    """Measures training images per second (data loading included, validation excluded) and
    logs ``throughput`` once per epoch.

    Attributes:
        images: Training images seen by this process so far (all ranks: times ``world_size``).
        seconds: Wall-clock seconds spent in training steps so far.
    """

    def __init__(self) -> None:
        self.images = 0
        self.seconds = 0.0
        self._epoch_images = 0
        self._epoch_seconds = 0.0
        self._last: float | None = None

    @property
    def images_per_second(self) -> float | None:
        """Images per second over the whole run so far, None before the first step."""
        return self.images / self.seconds if self.seconds > 0 else None

    @property
    def epoch_images_per_second(self) -> float | None:
        """Images per second in the current epoch so far."""
        return self._epoch_images / self._epoch_seconds if self._epoch_seconds > 0 else None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Starts the clock of the epoch."""
        self._epoch_images, self._epoch_seconds = 0, 0.0
        self._last = time.perf_counter()

    def after_train_batch(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any
    ) -> None:
        """Adds the time since the previous step (loading included) and the batch's images."""
        now = time.perf_counter()
        if self._last is not None:
            count = _batch_images(batch) * int(trainer.world_size)
            self.images += count
            self._epoch_images += count
            self.seconds += now - self._last
            self._epoch_seconds += now - self._last
        self._last = now

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Logs the epoch's images per second."""
        rate = self.epoch_images_per_second
        if rate is not None:
            # Every rank measures the same global rate (its time, all ranks' images).
            pl_module.log(
                "throughput", rate, on_step=False, on_epoch=True, batch_size=1, sync_dist=True
            )

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Validation time is not training time."""
        self._last = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Restarts the clock after validation."""
        self._last = time.perf_counter()


class ProgressLog(_AfterEachTrainBatch):
    """Prints one line every ``every_n_steps`` optimiser steps (for runs without progress bars):
    ``epoch 2/12  step 400/2808  train_loss 0.4123  lr 1.20e-03  1843 img/s``.

    Args:
        every_n_steps: Print every this many steps (and after the last step).
        throughput: The run's :class:`Throughput` meter, for the images per second.
        stream: Where to print (default: ``sys.stdout``).
    """

    def __init__(
        self, every_n_steps: int, throughput: Throughput | None = None, stream: Any = None
    ) -> None:
        self.every_n_steps = _positive_steps(every_n_steps, "every_n_steps")
        self.throughput = throughput
        self.stream = stream

    def after_train_batch(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any
    ) -> None:
        """Prints the progress line on global rank 0."""
        step = trainer.global_step
        total = trainer.estimated_stepping_batches
        last = math.isfinite(total) and step >= int(total)
        if not trainer.is_global_zero or step == 0 or (step % self.every_n_steps and not last):
            return
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        parts.append(f"step {step}/{int(total)}" if math.isfinite(total) else f"step {step}")
        loss = trainer.callback_metrics.get("train_loss")
        if loss is not None:
            parts.append(f"train_loss {float(loss):.4f}")
        lr = _optimizer_lr(trainer)
        if lr is not None:
            parts.append(f"lr {lr:.2e}")
        rate = self.throughput.images_per_second if self.throughput is not None else None
        if rate is not None:
            parts.append(f"{rate:.0f} img/s")
        print("  ".join(parts), file=self.stream or sys.stdout, flush=True)


class LossProgressBar(TQDMProgressBar):
    """Lightning's progress bar, showing ``train_loss`` even when it is not logged with
    ``prog_bar=True`` (which would read it to the host after every batch): the loss is read only
    when the bar refreshes, every ``refresh_rate`` batches."""

    def get_metrics(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        """The bar's metrics plus ``train_loss`` from the callback metrics."""
        metrics = super().get_metrics(trainer, pl_module)
        loss = trainer.callback_metrics.get("train_loss")
        if loss is not None and "train_loss" not in metrics:
            metrics["train_loss"] = float(loss)
        return metrics
