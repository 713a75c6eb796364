"""SimpleMAE: turn any existing ViT into a masked autoencoder in one line (vit-pytorch style)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, cast

import torch
from torch import Tensor, nn

from ssl_mae._validation import check_positive_int
from ssl_mae.core import MAEOutput, MaskedAutoencoder
from ssl_mae.loss import MAELoss
from ssl_mae.masking import get_at_index
from ssl_mae.models.layout import CoreFacade, decoder_for, install_layout, prefix_layout
from ssl_mae.modules import MaskedEncoderBase, wrap_vit

__all__ = ["SimpleMAE", "SimpleMAEOutput", "fresh_vit"]


class SimpleMAEOutput(NamedTuple):
    """Everything a SimpleMAE step computed, for visualisation and debugging.

    Attributes:
        loss: Scalar reconstruction loss.
        pred: (B, K_mask, p * p * C) predicted pixels of the masked patches.
        target: (B, K_mask, p * p * C) target pixels (before norm-pix normalisation).
        idx_keep: (B, K_keep) kept positions over the full token sequence.
        idx_mask: (B, K_mask) masked positions over the full token sequence.
    """

    loss: Tensor
    pred: Tensor
    target: Tensor
    idx_keep: Tensor
    idx_mask: Tensor


class SimpleMAE(CoreFacade, nn.Module):
    """Masked autoencoder around an existing ViT encoder (the lucidrains ``MAE`` wrapper).

    The encoder keeps its weights (they are shared, not copied: a training step updates the
    model passed in) and only ever sees the visible tokens; a light decoder predicts the pixels
    of the masked patches. Works with a timm ``VisionTransformer`` (class token or mean pool,
    with or without register tokens), a torchvision ``VisionTransformer`` and our
    :class:`~ssl_mae.modules.MaskedVisionTransformer`; non-square images and any channel count.
    The step is the package's :class:`~ssl_mae.MaskedAutoencoder` (``self.core``); the state
    dict keeps the ``encoder.*`` / ``decoder.*`` names.

    Args:
        encoder: The ViT to pretrain.
        decoder_dim: Width of the decoder.
        masking_ratio: Fraction of patches to mask, strictly between 0 and 1.
        decoder_depth: Number of decoder blocks.
        decoder_heads: Attention heads of the decoder.
        decoder_dim_head: Width of one decoder attention head.
        norm_pix: Normalise every target patch by its own mean and variance.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder_dim: int,
        masking_ratio: float = 0.75,
        decoder_depth: int = 1,
        decoder_heads: int = 8,
        decoder_dim_head: int = 64,
        norm_pix: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(masking_ratio, bool) or not isinstance(masking_ratio, (int, float)):
            raise TypeError(f"masking_ratio must be a float in (0, 1), got {masking_ratio!r}")
        if not 0.0 < masking_ratio < 1.0:
            raise ValueError(f"masking_ratio must be in (0, 1), got {masking_ratio!r}")
        check_positive_int(decoder_dim, "decoder_dim")
        check_positive_int(decoder_depth, "decoder_depth")
        check_positive_int(decoder_heads, "decoder_heads")
        check_positive_int(decoder_dim_head, "decoder_dim_head")
        if decoder_dim % 4:  # checked here so that the error names this argument
            raise ValueError(
                f"decoder_dim must be a multiple of 4 for the decoder's 2-D sin-cos position "
                f"table, got {decoder_dim}"
            )
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be a ViT nn.Module, got {type(encoder).__name__}")
        try:
            # The user's weights are the point: no re-initialisation, position embedding kept.
            wrapped = wrap_vit(
                encoder,
                weight_initialization="skip",
                pos_embed_initialization="skip",
                use_mask_token=False,
            )
        except TypeError as error:
            raise TypeError(
                "encoder must be a timm or torchvision VisionTransformer (with a patch "
                f"embedding) or a MaskedVisionTransformer: {error}"
            ) from None
        decoder = decoder_for(
            wrapped,
            wrapped.embed_dim,
            decoder_dim,
            decoder_depth,
            decoder_heads,
            decoder_head_dim=decoder_dim_head,
        )
        self.core = MaskedAutoencoder(wrapped, decoder, MAELoss(norm_pix=norm_pix), masking_ratio)
        install_layout(
            self, *prefix_layout([("core.encoder.", "encoder."), ("core.decoder.", "decoder.")])
        )

    @property
    def encoder(self) -> MaskedEncoderBase:
        """The wrapped encoder (its ``vit`` is the model passed in)."""
        return cast(MaskedEncoderBase, self.core.encoder)

    @property
    def masking_ratio(self) -> float:
        """Fraction of patches masked per image."""
        return self.core.mask_ratio

    def forward_with_outputs(
        self,
        img: Tensor,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SimpleMAEOutput:
        """One MAE step returning loss, predictions, targets and the masks.

        Args:
            img: (B, C, H, W) images at the encoder's native size.
            noise: Optional (B, L_patches) masking noise (smallest values are kept).
            generator: Random generator for the masking noise.
        """
        out = self.core(img, noise=noise, generator=generator, input_name="img")
        masked = out.idx_mask - self.encoder.num_prefix_tokens
        return SimpleMAEOutput(
            out.loss,
            get_at_index(out.pred, masked),
            get_at_index(out.target, masked),
            out.idx_keep,
            out.idx_mask,
        )

    def forward(self, img: Tensor) -> Tensor:
        """Returns the reconstruction loss of a batch of images (B, C, H, W)."""
        out: MAEOutput = self.core(img, input_name="img")
        return out.loss


def fresh_vit(
    backbone: str,
    img_size: int,
    patch_size: int,
    in_chans: int,
    embed_dim: int,
    depth: int,
    num_heads: int,
    mlp_ratio: float = 4.0,
    norm_layer: Callable[..., nn.Module] | None = None,
) -> MaskedEncoderBase:
    """A new, MAE-initialised ViT to pre-train with :class:`SimpleMAE` (the presets' encoder,
    and :class:`~ssl_mae.models.MAE`'s).

    Args:
        backbone: ``"timm"`` (``timm.models.VisionTransformer``) or ``"torchvision"``
            (``torchvision.models.VisionTransformer``; its patch projection is replaced by one
            with ``in_chans`` inputs when that is not 3).
        img_size: Square input size, a multiple of ``patch_size``.
        patch_size: Patch size.
        in_chans: Image channels.
        embed_dim: Width.
        depth: Blocks.
        num_heads: Attention heads.
        mlp_ratio: MLP hidden size ratio.
        norm_layer: Normalisation layer factory; None keeps the library's default
            (``LayerNorm(eps=1e-6)`` in both).

    Returns:
        The ViT wrapped as a masked encoder with the MAE initialisation and a fixed sin-cos
        position embedding (SimpleMAE itself keeps whatever weights it is given).
    """
    if backbone not in ("timm", "torchvision"):
        raise ValueError(f"backbone must be 'timm' or 'torchvision', got {backbone!r}")
    check_positive_int(img_size, "img_size")
    check_positive_int(patch_size, "patch_size")
    if img_size % patch_size:
        raise ValueError(f"img_size must be a multiple of patch_size={patch_size}, got {img_size}")
    vit: nn.Module
    if backbone == "timm":
        from timm.models.vision_transformer import VisionTransformer

        vit = VisionTransformer(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=0,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=True,
            norm_layer=norm_layer,
            weight_init="skip",  # the wrapper applies the MAE initialisation
        )
    else:
        from torchvision.models import VisionTransformer as TorchvisionViT

        vit = TorchvisionViT(
            image_size=img_size,
            patch_size=patch_size,
            num_layers=depth,
            num_heads=num_heads,
            hidden_dim=embed_dim,
            mlp_dim=int(embed_dim * mlp_ratio),
            **({} if norm_layer is None else {"norm_layer": norm_layer}),
        )
        if in_chans != 3:
            vit.conv_proj = nn.Conv2d(
                in_chans, embed_dim, kernel_size=patch_size, stride=patch_size
            )
    # MAE drops the masked tokens: a mask token in the encoder would get no gradient.
    return wrap_vit(
        vit, weight_initialization="", pos_embed_initialization="sincos", use_mask_token=False
    )
