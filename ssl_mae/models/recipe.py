"""The MAE optimisation recipe shared by every pretraining LightningModule.

AdamW with betas (0.9, 0.95) and weight decay 0.05 without norms, biases, tokens and position
embeddings; lr = base_lr × effective batch / 256; a per-step linear warmup then cosine decay.
:class:`~ssl_mae.models.MAE` and :class:`~ssl_mae.models.pretrain_module.PretrainModule` both
inherit :class:`MAEOptimizerRecipe`, so the recipe is written once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
from torch import Tensor

from ssl_mae._validation import check_mask_ratio
from ssl_mae.optim import build_adamw, param_groups_weight_decay, scaled_lr, warmup_cosine_scheduler

__all__ = [
    "DEFAULT_WARMUP_FRACTION",
    "TRAINING_DEFAULTS",
    "MAEOptimizerRecipe",
    "check_training_options",
    "dataloader_batch_size",
    "images_from_batch",
    "load_train_data",
]

#: Training options (``**kwargs`` of :class:`~ssl_mae.models.MAE`) and their defaults.
TRAINING_DEFAULTS: dict[str, Any] = {
    "mask_ratio": 0.75,
    "base_lr": 1.5e-4,
    "lr": None,
    "min_lr": 0.0,
    "weight_decay": 0.05,
    "betas": (0.9, 0.95),
    "warmup_epochs": None,
    "warmup_steps": None,
    "batch_size": None,
    "total_steps": None,
    "fused_adamw": None,
    "layer_norm_eps": None,
}
# Without warmup_epochs/warmup_steps, warm up for the same share of the run as the official
# defaults (40 of 400 epochs).
DEFAULT_WARMUP_FRACTION = 0.1


def check_training_options(options: Mapping[str, Any]) -> None:
    """Validates the training options (see :data:`TRAINING_DEFAULTS`), naming the bad one."""
    check_mask_ratio(options["mask_ratio"])
    for name in ("base_lr", "min_lr", "weight_decay") + (
        ("lr",) if options["lr"] is not None else ()
    ):
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    betas = options["betas"]
    if (
        not isinstance(betas, Sequence)
        or len(betas) != 2
        or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)
    ):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    if options["warmup_epochs"] is not None and options["warmup_steps"] is not None:
        raise ValueError(
            f"pass warmup_epochs or warmup_steps, not both (got warmup_epochs="
            f"{options['warmup_epochs']!r}, warmup_steps={options['warmup_steps']!r})"
        )
    warmup_epochs = options["warmup_epochs"]
    if warmup_epochs is not None and (
        isinstance(warmup_epochs, bool)
        or not isinstance(warmup_epochs, (int, float))
        or warmup_epochs < 0
    ):
        raise ValueError(f"warmup_epochs must be a number >= 0, got {warmup_epochs!r}")
    for name, minimum in (("warmup_steps", 0), ("batch_size", 1), ("total_steps", 1)):
        value = options[name]
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < minimum
        ):
            raise ValueError(f"{name} must be None or an int >= {minimum}, got {value!r}")
    if options["fused_adamw"] is not None and not isinstance(options["fused_adamw"], bool):
        raise TypeError(f"fused_adamw must be a bool or None, got {options['fused_adamw']!r}")
    eps = options["layer_norm_eps"]
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float))):
        raise TypeError(f"layer_norm_eps must be None or a float, got {eps!r}")


def images_from_batch(batch: Any) -> Tensor:
    """The image tensor of a batch: a tensor, ``(images, labels, ...)``, Lightly's
    ``([view], labels, ...)`` or a dict with ``pixel_values``/``images``/``image``."""
    item = batch
    if isinstance(item, Mapping):
        for key in ("pixel_values", "images", "image"):
            if key in item:
                item = item[key]
                break
    if isinstance(item, (list, tuple)) and item:
        item = item[0]
        if isinstance(item, (list, tuple)) and item:  # Lightly: a list of views
            item = item[0]
    if not isinstance(item, Tensor):
        raise TypeError(
            "batch must be an image tensor (B, C, H, W), a tuple/list (images, labels, ...), "
            "a tuple ([images], labels, ...) or a dict with 'pixel_values'/'images', "
            f"got {type(batch).__name__}"
        )
    return item


def dataloader_batch_size(loader: Any) -> int | None:
    """Batch size of a dataloader (or of the first of several), None when it cannot be told."""
    if isinstance(loader, Mapping):
        loader = next(iter(loader.values()), None)
    if isinstance(loader, (list, tuple)):
        loader = loader[0] if loader else None
    if loader is None:
        return None
    batch_size = getattr(loader, "batch_size", None)
    if batch_size is None:
        batch_size = getattr(getattr(loader, "batch_sampler", None), "batch_size", None)
    return int(batch_size) if isinstance(batch_size, int) and batch_size > 0 else None


def load_train_data(trainer: pl.Trainer) -> None:
    """Makes the trainer load its training dataloader if it has not yet.

    ``configure_optimizers`` runs before the fit loop loads its data; this is what
    ``trainer.estimated_stepping_batches`` does too, and a no-op once the data is loaded.
    """
    if trainer.train_dataloader is None:
        trainer.fit_loop.setup_data()


class MAEOptimizerRecipe(pl.LightningModule):
    """Base LightningModule with the MAE optimisation recipe, driven by hyperparameters.

    Subclasses store the options of :data:`TRAINING_DEFAULTS` in ``self.hparams`` (with
    ``save_hyperparameters``) and provide the steps. ``configure_optimizers`` then builds AdamW
    (betas from ``betas``, weight decay ``weight_decay`` without norms, biases, tokens and
    position embeddings) with a per-step linear warmup (``warmup_steps``/``warmup_epochs``,
    default 10% of the run) and a cosine decay to ``min_lr``; the peak is ``lr`` or
    ``base_lr * effective_batch / 256``. These are the semantics of
    :meth:`ssl_mae.models.MAE.configure_optimizers`.
    """

    def effective_batch_size(self) -> int:
        """Images per optimiser step: ``batch_size * world_size * accumulate_grad_batches``,
        the per-device batch size from the ``batch_size`` hyperparameter or the trainer's
        training dataloader."""
        trainer = self._trainer
        per_device = self.hparams["batch_size"]
        if per_device is None and trainer is not None:
            load_train_data(trainer)
            per_device = dataloader_batch_size(trainer.train_dataloader)
        if per_device is None:
            raise ValueError(
                "batch_size is None and no trainer dataloader tells the batch size; pass "
                "batch_size=<images per device per step> or an absolute lr=..."
            )
        if trainer is None:
            return int(per_device)
        return int(per_device) * int(trainer.world_size) * int(trainer.accumulate_grad_batches)

    def total_training_steps(self) -> int:
        """Optimiser steps of the run: ``total_steps`` or ``trainer.estimated_stepping_batches``."""
        total = self.hparams["total_steps"]
        if total is not None:
            return int(total)
        trainer = self._trainer
        if trainer is None:
            raise ValueError(
                "total_steps is None and the module is not attached to a Trainer; pass "
                "total_steps=<number of optimiser steps>"
            )
        estimated = trainer.estimated_stepping_batches
        if not math.isfinite(estimated):
            raise ValueError(
                "the trainer runs for an unbounded number of steps (max_epochs=-1, "
                "max_steps=-1); set max_epochs/max_steps or pass total_steps=..."
            )
        return max(int(estimated), 1)

    def warmup_steps(self, total_steps: int) -> int:
        """Warmup length in optimiser steps for a run of ``total_steps``."""
        if self.hparams["warmup_steps"] is not None:
            return min(int(self.hparams["warmup_steps"]), total_steps)
        warmup_epochs = self.hparams["warmup_epochs"]
        if warmup_epochs is None:
            return int(total_steps * DEFAULT_WARMUP_FRACTION)
        trainer = self._trainer
        if trainer is None:
            raise ValueError(
                f"warmup_epochs={warmup_epochs} needs a Trainer to know the steps per epoch; "
                "pass warmup_steps=... instead"
            )
        load_train_data(trainer)
        batches_per_epoch = trainer.num_training_batches
        if not math.isfinite(batches_per_epoch):
            raise ValueError(
                f"warmup_epochs={warmup_epochs} needs epochs of known length, but the training "
                "data has no length; pass warmup_steps=... instead"
            )
        steps_per_epoch = math.ceil(
            batches_per_epoch / max(int(trainer.accumulate_grad_batches), 1)
        )
        return min(round(float(warmup_epochs) * steps_per_epoch), total_steps)

    def peak_lr(self) -> float:
        """``lr`` if given, else ``base_lr * effective_batch_size / 256``."""
        if self.hparams["lr"] is not None:
            return float(self.hparams["lr"])
        return scaled_lr(float(self.hparams["base_lr"]), self.effective_batch_size())

    def configure_optimizers(self) -> Any:
        """AdamW with per-step warmup + cosine decay (see the class docstring)."""
        total_steps = self.total_training_steps()  # first: makes the trainer set up its data
        groups = param_groups_weight_decay(self, float(self.hparams["weight_decay"]))
        beta1, beta2 = self.hparams["betas"]
        optimizer = build_adamw(
            groups, lr=self.peak_lr(), betas=(beta1, beta2), fused=self.hparams["fused_adamw"]
        )
        scheduler = warmup_cosine_scheduler(
            optimizer,
            total_steps=total_steps,
            warmup_steps=self.warmup_steps(total_steps),
            min_lr=float(self.hparams["min_lr"]),
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }
