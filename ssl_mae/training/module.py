"""The one LightningModule that pre-trains every masked autoencoder of the package.

:class:`PretrainModule` trains any model built on :class:`~ssl_mae.MaskedAutoencoder` (the core
itself, ``SimpleMAE``, the HiViT pretrainer, ``ViTMAEForPreTraining``); the seed
:class:`~ssl_mae.models.MAE` is a thin subclass. A training step is one call of the core::

    out = self.masked_autoencoder(images)     # mask → encode visible → decode → loss
    return out.loss

The optimisation is the MAE recipe, written once: AdamW with betas (0.9, 0.95) and weight decay
0.05 without norms, biases, tokens and position embeddings; ``lr = base_lr × effective batch /
256``; a per-step linear warmup then cosine decay (:mod:`ssl_mae.training.optim`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from ssl_mae._validation import (
    check_float,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_int,
)
from ssl_mae.core import MAEOutput, MaskedAutoencoder, as_masked_autoencoder
from ssl_mae.loss import MAELoss
from ssl_mae.training.optim import (
    build_adamw,
    param_groups_weight_decay,
    scaled_lr,
    warmup_cosine_scheduler,
)
from ssl_mae.training.precision import compile_available, compile_model

__all__ = [
    "DEFAULT_WARMUP_FRACTION",
    "TRAINING_OPTIONS",
    "PretrainModule",
    "check_training_options",
    "dataloader_batch_size",
    "images_from_batch",
    "load_train_data",
]

#: Optimisation options of :class:`PretrainModule` (and ``**kwargs`` of ``MAE``) with defaults.
TRAINING_OPTIONS: Mapping[str, Any] = {
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
    "compile": None,
}
# Without warmup_epochs/warmup_steps, warm up for the same share of the run as the official
# defaults (40 of 400 epochs).
DEFAULT_WARMUP_FRACTION = 0.1


def check_training_options(options: Mapping[str, Any]) -> None:
    """Validates the training options (see :data:`TRAINING_OPTIONS`), naming the bad one.

    Numbers must be finite: a NaN or infinite learning rate would train without an error and
    reach the non-finite-loss guard only after it spoiled the weights.
    """
    for name in ("base_lr", "min_lr", "weight_decay") + (
        ("lr",) if options["lr"] is not None else ()
    ):
        check_nonnegative_float(options[name], name)
    betas = options["betas"]
    if isinstance(betas, str) or not isinstance(betas, Sequence) or len(betas) != 2:
        raise TypeError(f"betas must be two numbers in [0, 1), got {betas!r}")
    for beta in betas:
        check_float(beta, "betas", 0.0, 1.0, high_open=True)
    if options["warmup_epochs"] is not None and options["warmup_steps"] is not None:
        raise ValueError(
            f"pass warmup_epochs or warmup_steps, not both (got warmup_epochs="
            f"{options['warmup_epochs']!r}, warmup_steps={options['warmup_steps']!r})"
        )
    if options["warmup_epochs"] is not None:
        check_nonnegative_float(options["warmup_epochs"], "warmup_epochs")
    if options["warmup_steps"] is not None:
        check_nonnegative_int(options["warmup_steps"], "warmup_steps")
    for name in ("batch_size", "total_steps"):
        if options[name] is not None:
            check_positive_int(options[name], name)
    for name in ("fused_adamw", "compile"):
        if options[name] is not None and not isinstance(options[name], bool):
            raise TypeError(f"{name} must be a bool or None, got {options[name]!r}")


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


def _plain(value: Any, name: str) -> Any:
    """Checks that a hyperparameter is made of plain types (checkpoints load weights-only)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item, name) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item, name) for key, item in value.items()}
    raise TypeError(
        f"{name} must hold plain values (numbers, strings, lists, dicts) so that checkpoints "
        f"load with weights_only=True, got {type(value).__name__}"
    )


class PretrainModule(pl.LightningModule):
    """Pre-trains a masked autoencoder with the MAE recipe.

    ``training_step`` calls the model's core (masks from the global torch generator, which the
    CLI seeds per batch); ``validation_step`` draws its masks from a generator seeded with the
    batch index, so the validation loss of different epochs compares the same masks.

    Args:
        model: A :class:`~ssl_mae.MaskedAutoencoder` or a model built on one (stored as
            ``self.model``; its weights are shared, not copied).
        preset: Name of the preset the model was built from, stored in checkpoints so that
            :func:`ssl_mae.models.presets.pretrain_module_from_checkpoint` can rebuild it.
        model_overrides: The keyword overrides the preset was built with (plain values).
        hparams: What to store instead of ``preset`` and ``model_overrides``, for subclasses
            that rebuild the model from their own arguments (``MAE``).
        **training_options: Any of :data:`TRAINING_OPTIONS`: ``base_lr`` (1.5e-4, scaled by
            ``effective_batch / 256``), ``lr`` (an absolute peak lr overriding the scaling),
            ``min_lr``, ``weight_decay``, ``betas``, ``warmup_epochs`` or ``warmup_steps``
            (None: 10% of the run), ``batch_size`` (images per device per step; read from the
            trainer's dataloader when None), ``total_steps`` (from the trainer when None),
            ``fused_adamw`` (None: fused on CUDA), ``compile`` (None: ``torch.compile`` the core
            on CUDA when the fit starts, eager with one warning if compilation fails).

    Raises:
        TypeError: For a model without a core or unknown options.
    """

    #: Keep ``train_loss`` out of the per-step progress-bar metrics (which Lightning reads to
    #: the host after every batch); None: on accelerators only. See :meth:`sync_free_logging`.
    sync_free: bool | None = None

    def __init__(
        self,
        model: nn.Module,
        preset: str | None = None,
        model_overrides: Mapping[str, Any] | None = None,
        *,
        hparams: Mapping[str, Any] | None = None,
        **training_options: Any,
    ) -> None:
        super().__init__()
        core = as_masked_autoencoder(model)
        unknown = sorted(set(training_options) - set(TRAINING_OPTIONS))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown keyword arguments {unknown}; allowed are "
                f"{sorted(TRAINING_OPTIONS)}"
            )
        if preset is not None and not isinstance(preset, str):
            raise TypeError(f"preset must be a str or None, got {preset!r}")
        options = {**TRAINING_OPTIONS, **training_options}
        check_training_options(options)
        # Plain floats (not NumPy scalars), so checkpoints load with weights_only=True.
        for name in ("base_lr", "lr", "min_lr", "weight_decay", "warmup_epochs"):
            if options[name] is not None and type(options[name]) not in (int, float):
                options[name] = float(options[name])
        options["betas"] = [float(b) for b in options["betas"]]
        self.model = model
        if hparams is None:
            hparams = {
                "preset": preset,
                "model_overrides": _plain(dict(model_overrides or {}), "model_overrides"),
            }
        self.save_hyperparameters({**hparams, "mask_ratio": core.mask_ratio, **options})

    # --- what the trainer, the evaluation and the CLI read -----------------------------------
    @property
    def masked_autoencoder(self) -> MaskedAutoencoder:
        """The core that is trained (shares its weights with ``self.model``)."""
        return as_masked_autoencoder(self.model)

    @property
    def img_size(self) -> int:
        """Native input size (square models)."""
        height, width = self.masked_autoencoder.image_size
        if height != width:
            raise ValueError(f"the model takes {height}x{width} images; img_size needs square")
        return height

    @property
    def in_chans(self) -> int:
        """Input channels."""
        return int(self.masked_autoencoder.encoder.in_chans)

    @property
    def patch_size(self) -> int:
        """Patch size (HiViT: mask-unit size) of the targets."""
        return int(self.masked_autoencoder.encoder.patch_size)

    @property
    def criterion(self) -> nn.Module:
        """The core's loss module."""
        return self.masked_autoencoder.loss

    @property
    def norm_pix_loss(self) -> bool:
        """Whether the targets are per-patch normalised pixels."""
        criterion = self.criterion
        return bool(isinstance(criterion, MAELoss) and criterion.norm_pix)

    def feature_encoder(self) -> nn.Module:
        """The encoder, for frozen features (``encode(images)`` + ``num_prefix_tokens``)."""
        return self.masked_autoencoder.encoder

    # --- computation --------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the wrapped model with its own interface."""
        return self.model(*args, **kwargs)

    def mae_step(
        self,
        images: Tensor,
        mask_ratio: float | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> MAEOutput:
        """One MAE step of the core (see :meth:`ssl_mae.MaskedAutoencoder.forward`)."""
        core = self.masked_autoencoder
        # A torch.Generator cannot enter a compiled graph, so seeded calls (validation) run the
        # eager forward; without compilation both calls are the same.
        call = core.forward if generator is not None else core
        out: MAEOutput = call(images, mask_ratio, noise, generator)
        return out

    def on_fit_start(self) -> None:
        """Compiles the core with ``torch.compile`` (``compile=True``, or None on CUDA).

        In place (:func:`~ssl_mae.training.precision.compile_model`): the state-dict keys and
        methods stay those of the model; when compilation fails the core runs eagerly and one
        warning says why.
        """
        wanted = self.hparams.get("compile")
        if wanted is None:
            wanted = self.device.type == "cuda" and compile_available()
        core = self.masked_autoencoder
        if wanted and getattr(core, "_compiled_call_impl", None) is None:
            compile_model(core)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """One pre-training step; logs ``train_loss``.

        Args:
            batch: Images (B, C, H, W), ``(images, labels, ...)`` or ``([images], labels, ...)``.
            batch_idx: Index of the batch.
        """
        images = images_from_batch(batch)
        loss = self.mae_step(images).loss
        # Lightning converts progress-bar values to Python numbers after every batch, a host
        # sync; without it the loss stays a device tensor until the logger writes it.
        prog_bar = not self.sync_free_logging(images.device)
        self.log("train_loss", loss, prog_bar=prog_bar, batch_size=images.shape[0])
        return loss

    def sync_free_logging(self, device: torch.device) -> bool:
        """Whether logging must avoid per-step host reads on ``device``: :attr:`sync_free`, or
        when that is None, on every device but the CPU (where a read costs nothing)."""
        if self.sync_free is not None:
            return self.sync_free
        return device.type != "cpu"

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Loss on held-out images with masks seeded by ``batch_idx``; logs ``val_loss``.

        Args:
            batch: As in :meth:`training_step`.
            batch_idx: Index of the batch.
        """
        images = images_from_batch(batch)
        generator = torch.Generator(device=images.device).manual_seed(batch_idx)
        loss = self.mae_step(images, generator=generator).loss
        self.log("val_loss", loss, prog_bar=True, sync_dist=True, batch_size=images.shape[0])
        return loss

    # --- the MAE optimisation recipe ----------------------------------------------------------
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
