"""One Lightning module for every MAE-style model, and the uniform view of those models.

The project has three masked autoencoders with three slightly different interfaces:

* :class:`~ssl_mae.models.MAE` (official ``models_mae`` interface, already a LightningModule):
  ``forward(imgs, mask_ratio, noise=, generator=) -> (loss, pred, mask)``;
* :class:`~ssl_mae.hivit.HiViTMAEForPreTraining`: ``forward(images) -> loss`` and
  ``forward_with_predictions(images, noise=, generator=) -> (loss, pred, mask)``, mask ratio
  fixed in the encoder;
* :class:`~ssl_mae.models.SimpleMAE`: ``forward(img) -> loss``, predictions of the masked
  patches only.

The functions here give all of them (and :class:`PretrainModule` around any of them) one view:

* :func:`masked_predictions` -> ``(loss, pred (B, L, p*p*C) for *every* patch, mask (B, L))``,
  the official convention that :func:`ssl_mae.visualize.reconstruct` draws;
* :func:`feature_encoder` -> an encoder that :func:`ssl_mae.evaluation.extract_features`
  turns into (B, D) features without masking (kNN, linear probe);
* :func:`input_spec` -> image size, channels and patch size;
* :func:`reconstruction_criterion` -> the :class:`~ssl_mae.loss.MAELoss` (norm-pix or not).

:class:`MAEOptimizerRecipe` is the MAE optimisation recipe as a LightningModule base (AdamW
betas (0.9, 0.95), no weight decay on norms/biases/tokens, ``lr = base_lr * batch / 256``,
per-step warmup + cosine, all from :mod:`ssl_mae.optim`); :class:`PretrainModule` is that recipe
around a model whose ``forward(images)`` returns the loss.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor, nn

from ssl_mae._validation import check_mask_ratio, check_tensor
from ssl_mae.hivit import HiViTMAEForPreTraining, MAEHiViT
from ssl_mae.loss import MAELoss
from ssl_mae.masking import patchify, random_token_mask, restore_index
from ssl_mae.models.mae import MAE
from ssl_mae.models.recipe import (
    TRAINING_DEFAULTS,
    MAEOptimizerRecipe,
    check_training_options,
    images_from_batch,
)
from ssl_mae.models.simple_mae import SimpleMAE

__all__ = [
    "TRAINING_OPTIONS",
    "HiViTFeatureEncoder",
    "InputSpec",
    "MAEOptimizerRecipe",
    "PretrainModule",
    "default_mask_ratio",
    "feature_encoder",
    "input_spec",
    "masked_predictions",
    "reconstruction_criterion",
]

#: Optimisation options of :class:`PretrainModule` and their defaults: the same names and
#: values as the training options of :class:`~ssl_mae.models.MAE` (without the model-side
#: ``mask_ratio`` and ``layer_norm_eps``).
TRAINING_OPTIONS: Mapping[str, Any] = {
    key: value
    for key, value in TRAINING_DEFAULTS.items()
    if key not in ("mask_ratio", "layer_norm_eps")
}


class InputSpec(NamedTuple):
    """What a model expects: square ``img_size`` images with ``in_chans`` channels, cut into
    ``patch_size`` patches (HiViT: mask units)."""

    img_size: int
    in_chans: int
    patch_size: int


def _unwrap(model: nn.Module) -> nn.Module:
    return model.model if isinstance(model, PretrainModule) else model


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(
            "model must be an nn.Module (MAE, HiViTMAEForPreTraining, SimpleMAE or "
            f"PretrainModule), got {type(model).__name__}"
        )
    return model


def input_spec(model: nn.Module) -> InputSpec:
    """Image size, channels and patch size of an MAE, a HiViT MAE, a SimpleMAE or a
    :class:`PretrainModule` around one.

    Args:
        model: The model.

    Returns:
        :class:`InputSpec`.
    """
    model = _unwrap(_check_model(model))
    if isinstance(model, MAE):
        return InputSpec(int(model.img_size), int(model.in_chans), int(model.patch_size))
    if isinstance(model, HiViTMAEForPreTraining):
        embed = model.backbone.patch_embed
        height, width = embed.img_size
        if height != width:
            raise ValueError(f"model must take square images, got img_size {(height, width)}")
        return InputSpec(int(height), int(embed.proj.in_channels), int(model.patch_size))
    if isinstance(model, SimpleMAE):
        encoder = model.encoder
        grid_h, grid_w = encoder.grid_size
        if grid_h != grid_w:
            raise ValueError(f"model must take square images, got a {grid_h}x{grid_w} grid")
        return InputSpec(grid_h * encoder.patch_size, encoder.in_chans, encoder.patch_size)
    raise TypeError(
        "model must be an MAE, HiViTMAEForPreTraining, SimpleMAE or PretrainModule, got "
        f"{type(model).__name__}"
    )


def reconstruction_criterion(model: nn.Module) -> MAELoss | None:
    """The model's :class:`~ssl_mae.loss.MAELoss` (it tells ``norm_pix`` and ``eps``), or None
    for models without one."""
    criterion = getattr(_unwrap(_check_model(model)), "criterion", None)
    return criterion if isinstance(criterion, MAELoss) else None


def default_mask_ratio(model: nn.Module) -> float:
    """The mask ratio a model trains with."""
    model = _unwrap(_check_model(model))
    if isinstance(model, MAE):
        return float(model.hparams["mask_ratio"])
    if isinstance(model, HiViTMAEForPreTraining):
        return float(model.backbone.mask_ratio)
    if isinstance(model, SimpleMAE):
        return float(model.masking_ratio)
    raise TypeError(
        "model must be an MAE, HiViTMAEForPreTraining, SimpleMAE or PretrainModule, got "
        f"{type(model).__name__}"
    )


@contextlib.contextmanager
def _hivit_mask_ratio(backbone: MAEHiViT, mask_ratio: float) -> Iterator[None]:
    # MAEHiViT draws its masks with its own mask_ratio; swap it for one call so the model's own
    # forward_with_predictions (the training path) produces the predictions.
    previous = backbone.mask_ratio
    backbone.mask_ratio = mask_ratio
    try:
        yield
    finally:
        backbone.mask_ratio = previous


def _simple_mae_predictions(
    model: SimpleMAE,
    images: Tensor,
    mask_ratio: float,
    noise: Tensor | None,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor, Tensor]:
    encoder = model.encoder
    grid = encoder.check_images(images)
    if grid != encoder.grid_size:
        side_h, side_w = (g * encoder.patch_size for g in encoder.grid_size)
        raise ValueError(
            f"images must be {side_h}x{side_w} (the encoder's image size), got "
            f"{images.shape[-2]}x{images.shape[-1]}"
        )
    num_prefix = encoder.num_prefix_tokens
    idx_keep, idx_mask = random_token_mask(
        (images.shape[0], encoder.sequence_length),
        mask_ratio=mask_ratio,
        num_prefix_tokens=num_prefix,
        device=images.device,
        generator=generator,
        noise=noise,
    )
    encoded = encoder.encode(images, idx_keep=idx_keep)
    # Over patch positions: kept patches (prefix dropped) first, then the masked ones.
    ids_restore = restore_index(idx_keep[:, num_prefix:] - num_prefix, idx_mask - num_prefix)
    pred = model.decoder.predict_all(encoded, ids_restore)
    mask = torch.zeros(pred.shape[:2], device=pred.device)
    mask.scatter_(1, idx_mask - num_prefix, 1.0)
    loss = model.criterion(pred, patchify(images, encoder.patch_size), mask)
    return loss, pred, mask


def masked_predictions(
    model: nn.Module,
    images: Tensor,
    mask_ratio: float | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Masks, encodes and decodes a batch; predictions for every patch (official convention).

    Works for :class:`~ssl_mae.models.MAE` (and any module with its
    ``forward(imgs, mask_ratio, noise=, generator=) -> (loss, pred, mask)`` interface),
    :class:`~ssl_mae.hivit.HiViTMAEForPreTraining`, :class:`~ssl_mae.models.SimpleMAE` and a
    :class:`PretrainModule` around any of them. The loss is the training loss for the drawn mask.

    Args:
        model: The model.
        images: (B, C, H, W) model inputs.
        mask_ratio: Fraction of patches removed, in [0, 1) (SimpleMAE: in (0, 1)); None uses
            the model's training ratio.
        noise: Optional (B, L) noise fixing the mask (lowest noise stays visible).
        generator: Random generator used when ``noise`` is None.

    Returns:
        ``(loss, pred, mask)``: scalar loss, (B, L, p * p * C) predictions of every patch and the
        (B, L) mask with 1 for removed patches.
    """
    model = _unwrap(_check_model(model))
    check_tensor(images, "images", ndim=4, shape_doc="(B, C, H, W)", floating=True)
    if mask_ratio is not None:
        mask_ratio = check_mask_ratio(mask_ratio)
    if isinstance(model, HiViTMAEForPreTraining):
        ratio = model.backbone.mask_ratio if mask_ratio is None else mask_ratio
        with _hivit_mask_ratio(model.backbone, ratio):
            return model.forward_with_predictions(images, noise=noise, generator=generator)
    if isinstance(model, SimpleMAE):
        ratio = model.masking_ratio if mask_ratio is None else mask_ratio
        if ratio == 0.0:
            raise ValueError("mask_ratio must be in (0, 1) for a SimpleMAE, got 0.0")
        return _simple_mae_predictions(model, images, ratio, noise, generator)
    if mask_ratio is None:
        mask_ratio = default_mask_ratio(model)
    outputs = model(images, mask_ratio=mask_ratio, noise=noise, generator=generator)
    return cast(tuple[Tensor, Tensor, Tensor], tuple(outputs))


class HiViTFeatureEncoder(nn.Module):
    """A :class:`~ssl_mae.hivit.MAEHiViT` seen as a plain token encoder, for frozen features.

    ``encode`` runs the backbone without masking (``mask=False``); HiViT has no class token, so
    :func:`ssl_mae.evaluation.extract_features` mean-pools the unit tokens (``pool="mean"``).
    The backbone is shared, not copied.

    Args:
        backbone: The HiViT encoder.
    """

    num_prefix_tokens = 0

    def __init__(self, backbone: MAEHiViT) -> None:
        super().__init__()
        if not isinstance(backbone, MAEHiViT):
            raise TypeError(f"backbone must be an MAEHiViT, got {type(backbone).__name__}")
        self.backbone = backbone

    def encode(self, images: Tensor) -> Tensor:
        """Tokens of every mask unit.

        Args:
            images: (B, C, H, W) images.

        Returns:
            (B, L, D) tokens, row-major unit order.
        """
        tokens: Tensor = self.backbone(images, mask=False)[0]
        return tokens

    def forward(self, images: Tensor) -> Tensor:
        """(B, D) mean of the unit tokens of ``images`` (B, C, H, W)."""
        return self.encode(images).mean(dim=1)


def feature_encoder(model: nn.Module) -> nn.Module:
    """The encoder of a model in a form :func:`ssl_mae.evaluation.extract_features` accepts
    (``encode(images) -> (B, L, D)`` + ``num_prefix_tokens``); it encodes without masking.

    MAE: its :class:`~ssl_mae.modules.MaskedVisionTransformer`; HiViT MAE: a
    :class:`HiViTFeatureEncoder` around its backbone; SimpleMAE: its wrapped encoder. The
    weights are shared with the model.

    Args:
        model: The model (or a :class:`PretrainModule` around it).
    """
    model = _unwrap(_check_model(model))
    if isinstance(model, MAE):
        return model.encoder
    if isinstance(model, HiViTMAEForPreTraining):
        return HiViTFeatureEncoder(model.backbone)
    if isinstance(model, SimpleMAE):
        return model.encoder
    raise TypeError(
        "model must be an MAE, HiViTMAEForPreTraining, SimpleMAE or PretrainModule, got "
        f"{type(model).__name__}"
    )


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


class PretrainModule(MAEOptimizerRecipe):
    """Pre-trains any masked autoencoder whose ``forward(images)`` returns the loss.

    Made for :class:`~ssl_mae.hivit.HiViTMAEForPreTraining` and
    :class:`~ssl_mae.models.SimpleMAE` (``ssl_mae.models.presets`` builds both by name); the
    optimisation is :class:`MAEOptimizerRecipe`, the same as :class:`~ssl_mae.models.MAE`'s.
    ``training_step`` calls ``model(images)`` (masks from the global torch generator, which the
    CLI seeds per batch); ``validation_step`` uses :func:`masked_predictions` with masks seeded
    by the batch index, so the validation loss of different epochs compares the same masks.

    Args:
        model: The wrapped model (stored as ``self.model``; its weights are shared).
        preset: Name of the preset the model was built from, stored in checkpoints so that
            :func:`ssl_mae.models.presets.pretrain_module_from_checkpoint` can rebuild it.
        model_overrides: The keyword overrides the preset was built with (plain values).
        **training_options: Any of :data:`TRAINING_OPTIONS` (``base_lr``, ``lr``, ``min_lr``,
            ``weight_decay``, ``betas``, ``warmup_epochs``, ``warmup_steps``, ``batch_size``,
            ``total_steps``, ``fused_adamw``), with the meaning they have for ``MAE``.

    Raises:
        TypeError: For a model that is not an nn.Module or unknown options.
    """

    def __init__(
        self,
        model: nn.Module,
        preset: str | None = None,
        model_overrides: Mapping[str, Any] | None = None,
        **training_options: Any,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model must be an nn.Module whose forward(images) returns the loss, got "
                f"{type(model).__name__}"
            )
        unknown = sorted(set(training_options) - set(TRAINING_OPTIONS))
        if unknown:
            raise TypeError(
                f"PretrainModule got unknown keyword arguments {unknown}; allowed are "
                f"{sorted(TRAINING_OPTIONS)}"
            )
        if preset is not None and not isinstance(preset, str):
            raise TypeError(f"preset must be a str or None, got {preset!r}")
        options = {**TRAINING_OPTIONS, **training_options}
        # MAE's option checks, with the model-side options it also expects.
        check_training_options({**options, "mask_ratio": 0.0, "layer_norm_eps": None})
        options["betas"] = [float(b) for b in options["betas"]]
        self.model = model
        mask_ratio = default_mask_ratio(model) if _is_known(model) else None
        self.save_hyperparameters(
            {
                "preset": preset,
                "model_overrides": _plain(dict(model_overrides or {}), "model_overrides"),
                "mask_ratio": mask_ratio,
                **options,
            }
        )

    # --- the uniform view, as attributes ------------------------------------------------------
    @property
    def img_size(self) -> int:
        """Input image size (square)."""
        return input_spec(self.model).img_size

    @property
    def in_chans(self) -> int:
        """Input channels."""
        return input_spec(self.model).in_chans

    @property
    def patch_size(self) -> int:
        """Patch (HiViT: mask-unit) size."""
        return input_spec(self.model).patch_size

    @property
    def criterion(self) -> MAELoss | None:
        """The wrapped model's loss."""
        return reconstruction_criterion(self.model)

    @property
    def norm_pix_loss(self) -> bool:
        """Whether the targets are per-patch normalised pixels."""
        criterion = self.criterion
        return bool(criterion is not None and criterion.norm_pix)

    def feature_encoder(self) -> nn.Module:
        """See :func:`feature_encoder`."""
        return feature_encoder(self.model)

    # --- computation --------------------------------------------------------------------------
    def forward(self, images: Tensor) -> Tensor:
        """The wrapped model's loss for ``images`` (B, C, H, W)."""
        loss: Tensor = self.model(images)
        return loss

    def forward_with_predictions(
        self,
        images: Tensor,
        mask_ratio: float | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(loss, pred (B, L, p*p*C), mask (B, L))``, see :func:`masked_predictions`."""
        return masked_predictions(self.model, images, mask_ratio, noise, generator)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """One pre-training step; logs ``train_loss``.

        Args:
            batch: Images (B, C, H, W), ``(images, labels, ...)`` or ``([images], labels, ...)``.
            batch_idx: Index of the batch.
        """
        images = images_from_batch(batch)
        loss: Tensor = self(images)
        self.log("train_loss", loss, prog_bar=True, batch_size=images.shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Loss on held-out images with masks seeded by ``batch_idx``; logs ``val_loss``.

        Args:
            batch: As in :meth:`training_step`.
            batch_idx: Index of the batch.
        """
        images = images_from_batch(batch)
        generator = torch.Generator(device=images.device).manual_seed(batch_idx)
        loss = self.forward_with_predictions(images, generator=generator)[0]
        self.log("val_loss", loss, prog_bar=True, sync_dist=True, batch_size=images.shape[0])
        return loss


def _is_known(model: nn.Module) -> bool:
    return isinstance(model, (MAE, HiViTMAEForPreTraining, SimpleMAE))
