"""What an MAE reconstructs and how it is scored: pixel targets and the masked MSE loss.

A *target* maps images (B, C, H, W) to one vector per patch (B, L, T); :class:`PixelTarget`
(the patch's pixels, the MAE target) is the default of :class:`~ssl_mae.MaskedAutoencoder`.
:class:`MAELoss` scores predictions against targets on the masked patches only, optionally
normalising each target patch first (``norm_pix``).
"""

from __future__ import annotations

from torch import Tensor, nn

from ssl_mae import masking
from ssl_mae._validation import check_bool, check_positive_float, check_positive_int, check_tensor

__all__ = ["MAELoss", "PixelTarget", "masked_patch_targets", "normalize_patches"]


class PixelTarget(nn.Module):
    """The MAE target: the raw pixels of every patch, ``patchify(images, patch_size)``.

    Args:
        patch_size: Patch side length p.
    """

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        self.patch_size = check_positive_int(patch_size, "patch_size")

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W) images → (B, H/p * W/p, p * p * C) patches (official layout)."""
        return masking.patchify(images, self.patch_size)


def normalize_patches(patches: Tensor, eps: float = 1e-6) -> Tensor:
    """Normalises every patch by its own mean and variance (the official ``norm_pix_loss``).

    The variance is the unbiased one, ``(x - mean) / sqrt(var + eps)``, as in the official code.

    Args:
        patches: (..., P) patches, P >= 2 (the unbiased variance of one value is undefined).
        eps: Added to the variance.

    Returns:
        (..., P) normalised patches.

    Raises:
        ValueError: For patches of fewer than two values.
    """
    if patches.shape[-1] < 2:
        raise ValueError(
            f"norm_pix needs patches of at least 2 values (P >= 2) to normalise them by their "
            f"variance, got P={patches.shape[-1]} (shape {tuple(patches.shape)}); use "
            f"norm_pix=False or larger patches"
        )
    if patches.numel() == 0:  # no patch at all: nothing to normalise (and no variance warning)
        return patches
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps) ** 0.5


def masked_patch_targets(
    images: Tensor, patch_size: int, idx_mask: Tensor, num_prefix_tokens: int = 1
) -> Tensor:
    """Pixel targets of the masked patches for the ``idx_mask`` convention.

    ``idx_mask`` indexes the full token sequence, so the prefix tokens are subtracted here once
    (Lightly's examples hard-code ``idx_mask - 1``, which breaks without a class token or with
    register tokens).

    Args:
        images: (B, C, H, W) images.
        patch_size: Patch size p.
        idx_mask: (B, K) masked positions over the full sequence.
        num_prefix_tokens: Number of prefix tokens in that sequence.

    Returns:
        (B, K, p * p * C) target patches in ``idx_mask`` order.
    """
    patches = masking.patchify(images, patch_size)
    return masking.get_at_index(patches, idx_mask - num_prefix_tokens)


class MAELoss(nn.Module):
    """Mean squared error over masked patches, optionally with per-patch normalised targets.

    Two call styles:

    * ``loss(pred, target)`` with predictions and targets of the masked patches only
      (B, K, P): the mean over all of them.
    * ``loss(pred, target, mask)`` with all patches (B, L, P) and the official binary mask
      (B, L), 1 = masked: the per-patch error averaged over masked patches only.

    The error is computed in float32 even under fp16/bf16 autocast.

    Args:
        norm_pix: Normalise each target patch by its mean and variance (official formula).
        eps: Added to the patch variance when ``norm_pix`` is set.
    """

    def __init__(self, norm_pix: bool = False, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm_pix = check_bool(norm_pix, "norm_pix")
        self.eps = check_positive_float(eps, "eps")

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """Computes the loss.

        Args:
            pred: (B, K, P) predicted patches.
            target: (B, K, P) target patches (raw pixels; normalised here if ``norm_pix``).
            mask: Optional (B, K) mask, 1 for patches that count.

        Returns:
            Scalar loss tensor (float32).
        """
        check_tensor(pred, "pred", ndim=3, shape_doc="(B, K, P)", floating=True)
        check_tensor(target, "target", ndim=3, shape_doc="(B, K, P)", floating=True)
        if pred.shape != target.shape:
            raise ValueError(
                f"pred and target must have the same shape (B, K, P), got {tuple(pred.shape)} "
                f"and {tuple(target.shape)}"
            )
        if pred.shape[-1] == 0:
            raise ValueError(
                f"pred and target must hold at least one value per patch (P >= 1), got shape "
                f"{tuple(pred.shape)}"
            )
        target = target.float()
        if self.norm_pix:
            target = normalize_patches(target, self.eps)
        per_patch = (pred.float() - target).pow(2).mean(dim=-1)
        if mask is None:
            # No patch to score (B or K is 0, e.g. mask ratio 0): 0 rather than the mean of
            # nothing, NaN, as the masked form below does.
            return per_patch.mean() if per_patch.numel() else per_patch.sum()
        check_tensor(mask, "mask", ndim=2, shape_doc="(B, K)")
        if tuple(mask.shape) != tuple(per_patch.shape):
            raise ValueError(
                f"mask must have shape (B, K) = {tuple(per_patch.shape)}, got {tuple(mask.shape)}"
            )
        mask = mask.to(per_patch.dtype)
        # With mask ratio 0 there is nothing to reconstruct: return 0 rather than 0/0.
        return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)
