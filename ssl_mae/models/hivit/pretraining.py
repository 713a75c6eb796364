"""MAE pre-training with a HiViT encoder: :class:`HiViTMAEForPreTraining` and its presets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from ssl_mae._validation import check_bool, check_positive_float
from ssl_mae.core import MAEOutput, MaskedAutoencoder
from ssl_mae.loss import MAELoss
from ssl_mae.models.hivit.backbone import MAEHiViT
from ssl_mae.models.layout import CoreFacade, decoder_for, install_layout, prefix_layout
from ssl_mae.models.presets import HIVIT_MAE_PRESETS

__all__ = ["HiViTMAEForPreTraining"]


class HiViTMAEForPreTraining(CoreFacade, nn.Module):
    """MAE pre-training with a HiViT encoder: ``MAEHiViT`` + ``MAEDecoder`` + ``MAELoss``.

    The encoder has no class token, so the decoder is built with ``num_prefix_tokens=0`` and
    the visible tokens land exactly at their units (mmpretrain's decoder assumes a class token
    and shifts HiViT's tokens by one slot; this model does not). Every step is one call of the
    package's :class:`~ssl_mae.MaskedAutoencoder` (``self.core``). The encoder is published as
    ``backbone`` (also in the state dict), so the ``backbone.*`` weights of an mmpretrain
    MAE-HiViT checkpoint load into ``model.backbone`` directly.

    Args:
        arch: HiViT architecture, see :class:`~ssl_mae.hivit.HiViT`.
        img_size: Training image size, a multiple of ``patch_size``.
        patch_size: Mask-unit size; also the size of the reconstructed patches.
        in_chans: Number of image channels.
        mask_ratio: Fraction of mask units removed, in [0, 1).
        norm_pix_loss: Normalise each target patch (the HiViT/mmpretrain recipe uses True).
        decoder_embed_dim: Decoder width.
        decoder_depth: Number of decoder blocks.
        decoder_num_heads: Decoder attention heads.
        decoder_mlp_ratio: Decoder MLP ratio.
        drop_path_rate: Encoder stochastic depth.
        rpe: Relative position bias in the encoder.
        layer_scale_init_value: Encoder layer scale; 0 disables it.
    """

    def __init__(
        self,
        arch: str | Mapping[str, Any] = "b",
        img_size: int | Sequence[int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 6,
        decoder_num_heads: int = 16,
        decoder_mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        rpe: bool = False,
        layer_scale_init_value: float = 0.0,
    ) -> None:
        super().__init__()
        # The decoder and the loss name these arguments differently; check them here.
        check_positive_float(decoder_mlp_ratio, "decoder_mlp_ratio")
        check_bool(norm_pix_loss, "norm_pix_loss")
        backbone = MAEHiViT(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            drop_path_rate=drop_path_rate,
            rpe=rpe,
            layer_scale_init_value=layer_scale_init_value,
            mask_ratio=mask_ratio,
            in_chans=in_chans,
        )
        decoder = decoder_for(
            backbone,
            backbone.embed_dims,
            decoder_embed_dim,
            decoder_depth,
            decoder_num_heads,
            mlp_ratio=decoder_mlp_ratio,
        )
        loss = MAELoss(norm_pix=norm_pix_loss)
        self.core = MaskedAutoencoder(backbone, decoder, loss, mask_ratio)
        install_layout(
            self, *prefix_layout([("core.encoder.", "backbone."), ("core.decoder.", "decoder.")])
        )

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> HiViTMAEForPreTraining:
        """Builds a model from :data:`HIVIT_MAE_PRESETS`, with keyword overrides.

        Args:
            name: Preset name, e.g. ``'mae_hivit_b'``.
            **overrides: Constructor arguments replacing the preset's values.
        """
        if name not in HIVIT_MAE_PRESETS:
            raise ValueError(f"name must be one of {sorted(HIVIT_MAE_PRESETS)}, got {name!r}")
        return cls(**{**HIVIT_MAE_PRESETS[name], **overrides})

    @property
    def backbone(self) -> MAEHiViT:
        """The HiViT encoder (mmpretrain's ``backbone``)."""
        return cast(MAEHiViT, self.core.encoder)

    @property
    def patch_size(self) -> int:
        """Mask-unit size: the size of the reconstructed patches."""
        return int(self.backbone.patch_size)

    def forward_with_predictions(
        self,
        images: Tensor,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Masks, encodes, decodes and scores one batch.

        Args:
            images: (B, C, H, W) of the training size.
            noise: Optional (B, L) masking noise (same noise, same mask).
            generator: Optional random generator for the mask.

        Returns:
            ``(loss, pred, mask)``: scalar loss over masked units, predictions (B, L, p*p*C) for
            every unit in :func:`ssl_mae.masking.patchify` layout, and the mask (B, L), 1 = masked.
        """
        out = self.core(images, noise=noise, generator=generator)
        return out.loss, out.pred, out.mask

    def forward(
        self,
        images: Tensor,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Returns the MAE loss of ``images`` (B, C, H, W); see :meth:`forward_with_predictions`."""
        out: MAEOutput = self.core(images, noise=noise, generator=generator)
        return out.loss
