"""SimpleMAE: turn any existing ViT into a masked autoencoder in one line (vit-pytorch style)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ssl_mae import masking
from ssl_mae._validation import check_positive_int
from ssl_mae.loss import MAELoss, masked_patch_targets
from ssl_mae.modules import MAEDecoder, MaskedEncoderBase, wrap_vit

__all__ = ["SimpleMAE", "SimpleMAEOutput"]


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


class SimpleMAE(nn.Module):
    """Masked autoencoder around an existing ViT encoder (the lucidrains ``MAE`` wrapper).

    The encoder keeps its weights (they are shared, not copied: a training step updates the
    model passed in) and only ever sees the visible tokens; a light decoder predicts the pixels
    of the masked patches. Works with a timm ``VisionTransformer`` (class token or mean pool,
    with or without register tokens), a torchvision ``VisionTransformer`` and our
    :class:`~ssl_mae.modules.MaskedVisionTransformer`; non-square images and any channel count.

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
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be a ViT nn.Module, got {type(encoder).__name__}")
        try:
            # The user's weights are the point: no re-initialisation, position embedding kept.
            self.encoder: MaskedEncoderBase = wrap_vit(
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
        self.masking_ratio = float(masking_ratio)
        self.decoder = MAEDecoder(
            num_patches=self.encoder.num_patches,
            patch_size=self.encoder.patch_size,
            in_chans=self.encoder.in_chans,
            embed_dim=self.encoder.embed_dim,
            decoder_embed_dim=decoder_dim,
            decoder_depth=decoder_depth,
            decoder_num_heads=decoder_heads,
            num_prefix_tokens=self.encoder.num_prefix_tokens,
            grid_size=self.encoder.grid_size,
            decoder_head_dim=decoder_dim_head,
        )
        self.criterion = MAELoss(norm_pix=norm_pix)

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
        grid = self.encoder.check_images(img, name="img")
        if grid != self.encoder.grid_size:
            raise ValueError(
                f"img must be {self.encoder.grid_size[0] * self.encoder.patch_size}x"
                f"{self.encoder.grid_size[1] * self.encoder.patch_size} (the encoder's image "
                f"size), got {img.shape[-2]}x{img.shape[-1]}"
            )
        num_prefix = self.encoder.num_prefix_tokens
        idx_keep, idx_mask = masking.random_token_mask(
            (img.shape[0], self.encoder.sequence_length),
            mask_ratio=self.masking_ratio,
            num_prefix_tokens=num_prefix,
            device=img.device,
            generator=generator,
            noise=noise,
        )
        encoded = self.encoder.encode(img, idx_keep=idx_keep)
        pred = self.decoder.predict_masked(encoded, idx_keep, idx_mask)
        target = masked_patch_targets(img, self.encoder.patch_size, idx_mask, num_prefix)
        return SimpleMAEOutput(self.criterion(pred, target), pred, target, idx_keep, idx_mask)

    def forward(self, img: Tensor) -> Tensor:
        """Returns the reconstruction loss of a batch of images (B, C, H, W)."""
        return self.forward_with_outputs(img).loss
