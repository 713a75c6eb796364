"""Turn PIL images of any mode into the channel layout a model expects.

Rules, applied in this order when a target mode is requested:

* 16-bit and 32-bit single-band images (``I;16*``, ``I``) are scaled from [0, 65535] to
  [0, 255] (values are rounded, ``I`` values outside the 16-bit range are clipped); float images
  (``F``) are taken as [0, 1] when their maximum is <= 1, else clipped to [0, 255]. Pillow's own
  ``convert`` would clip these to 255, turning most 16-bit images white.
* Images with transparency (``RGBA``, ``LA``, ``PA``, premultiplied ``RGBa``/``La``, or palette/
  ``L``/``RGB`` images with a ``transparency`` entry) are composited on a white background, as
  image viewers and browsers show them. Dropping alpha instead would expose whatever colour the
  transparent pixels happen to store, often black or noise.
* Everything else goes through Pillow's ``convert``: palette (``P``) through its palette, ``CMYK``
  with Pillow's plain formula (embedded ICC profiles are ignored), ``RGB`` to ``L`` with the
  ITU-R 601-2 luma weights, ``1`` (bilevel) to 0/255.

``None`` or ``"auto"`` keeps the image as decoded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

#: Target modes accepted by ``convert_image_mode`` and the image-folder dataset.
IMAGE_MODES: tuple[str | None, ...] = ("RGB", "L", "auto", None)

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


def check_image_mode(mode: Any, name: str = "mode") -> str | None:
    """Validate a target mode and normalise ``"auto"`` to ``None``.

    Args:
        mode: The requested mode.
        name: Argument name used in the error message.

    Returns:
        ``"RGB"``, ``"L"`` or ``None`` (keep as decoded).

    Raises:
        ValueError: If ``mode`` is not one of ``IMAGE_MODES``.
    """
    if mode is None or mode == "auto":
        return None
    if mode in ("RGB", "L"):
        return str(mode)
    raise ValueError(f"{name} must be one of {list(IMAGE_MODES)}, got {mode!r}")


def mode_channels(mode: str | None) -> int | None:
    """Number of channels a target mode produces: 3 for ``"RGB"``, 1 for ``"L"``, else None.

    Args:
        mode: A value accepted by ``check_image_mode``.
    """
    normalised = check_image_mode(mode)
    if normalised is None:
        return None
    return 3 if normalised == "RGB" else 1


def has_alpha(image: Image.Image) -> bool:
    """Whether ``image`` carries transparency (an alpha band or a ``transparency`` entry)."""
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """Scale an ``I;16*``, ``I`` or ``F`` image to 8-bit ``L`` (rules in the module docstring)."""
    values = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        if values.size and values.max() <= 1.0:
            values = values * 255.0
    else:
        values = values / 257.0  # 65535 / 255: maps the 16-bit range exactly onto 0..255
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def convert_image_mode(image: Image.Image, mode: str | None) -> Image.Image:
    """Convert ``image`` to ``mode`` following the rules in the module docstring.

    Args:
        image: A decoded PIL image of any mode.
        mode: ``"RGB"``, ``"L"``, or ``None``/``"auto"`` to return ``image`` unchanged.

    Returns:
        A PIL image of mode ``mode`` (3 or 1 channels, 8 bits each).

    Raises:
        ValueError: If ``mode`` is not supported, or Pillow cannot convert this image mode
            (e.g. ``LAB``).
    """
    target = check_image_mode(mode)
    if target is None:
        return image
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _high_bit_depth_to_l(image)
    if has_alpha(image):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image if image.mode == target else image.convert(target)


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """Convert a PIL image to a tensor ``(C, H, W)`` without rescaling.

    Args:
        image: PIL image. 8-bit modes give uint8; bilevel ``1`` gives uint8 0/255; 16-bit gives
            int32; ``F`` gives float32.

    Returns:
        Tensor ``(C, H, W)``, C = number of bands.
    """
    array = np.array(image)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype.kind == "u" and array.dtype.itemsize == 2:
        array = array.astype(np.int32)  # torch has limited uint16 support
    elif array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
