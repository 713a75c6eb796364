"""From stored uint8 images to model inputs: scale, resize, normalise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_mae._validation import check_normalize, check_tensor, to_2tuple

__all__ = ["normalize_images"]


def normalize_images(
    images: Tensor, normalize: Mapping[str, Sequence[float]] | None, size: tuple[int, int]
) -> Tensor:
    """uint8 images to the model's input: float in [0, 1], resized, then normalised.

    Args:
        images: (B, C, H, W) uint8 (or float in [0, 1]) images.
        normalize: ``{"mean": [...], "std": [...]}`` with 1 or C entries, or None.
        size: Model input ``(height, width)``; other sizes are resized (bilinear, antialiased).

    Returns:
        (B, C, height, width) float32 images.
    """
    check_tensor(images, "images", ndim=4, shape_doc="(B, C, H, W)")
    if not (images.dtype == torch.uint8 or images.is_floating_point()):
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
    size = to_2tuple(size, "size")
    if normalize is not None:
        entries = len(check_normalize(normalize)[0])
        if entries not in (1, images.shape[1]):
            raise ValueError(
                f"normalize has {entries} mean/std entries but images have {images.shape[1]} "
                "channels; give 1 or C entries"
            )
    pixels = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    if tuple(pixels.shape[-2:]) != tuple(size):
        pixels = F.interpolate(pixels, size=size, mode="bilinear", antialias=True).clamp(0, 1)
    if normalize is None:
        return pixels
    mean = torch.tensor(normalize["mean"], device=pixels.device).view(-1, 1, 1)
    std = torch.tensor(normalize["std"], device=pixels.device).view(-1, 1, 1)
    return (pixels - mean) / std
