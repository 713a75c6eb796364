"""Argument checks shared by the public entry points.

Every check raises a ``ValueError`` or ``TypeError`` whose message names the argument, the value
that was received and what is allowed, so that a user never has to decode a shape error from deep
inside torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def check_mask_ratio(mask_ratio: float, name: str = "mask_ratio") -> float:
    """Checks that a masking ratio lies in [0, 1) and returns it as a float."""
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1), got {mask_ratio!r}")
    if not 0.0 <= float(mask_ratio) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {mask_ratio!r}")
    return float(mask_ratio)


def check_positive_int(value: int, name: str) -> int:
    """Checks that ``value`` is a positive integer (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def to_2tuple(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """Turns an int or a pair of ints into a validated ``(height, width)`` tuple."""
    if isinstance(value, int) and not isinstance(value, bool):
        pair: tuple[int, ...] = (value, value)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        pair = tuple(value)
    else:
        raise TypeError(f"{name} must be an int or a (height, width) pair, got {value!r}")
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"{name} must be an int or a (height, width) pair of ints, got {value!r}")
    if pair[0] < 1 or pair[1] < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return pair[0], pair[1]


def check_tensor(
    tensor: object,
    name: str,
    ndim: int,
    shape_doc: str,
    floating: bool = False,
    integer: bool = False,
) -> Tensor:
    """Checks type, rank and dtype family of a tensor argument.

    Args:
        tensor: The object to check.
        name: Argument name used in the error message.
        ndim: Required number of dimensions.
        shape_doc: Human readable expected shape, e.g. ``"(B, C, H, W)"``.
        floating: Require a floating point dtype.
        integer: Require an integer dtype.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape_doc}, got {type(tensor)}")
    if tensor.ndim != ndim:
        raise ValueError(
            f"{name} must have shape {shape_doc} ({ndim} dims), got shape {tuple(tensor.shape)}"
        )
    if floating and not tensor.is_floating_point():
        raise TypeError(f"{name} must have a floating point dtype, got {tensor.dtype}")
    if integer and (
        tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool
    ):
        raise TypeError(f"{name} must have an integer dtype (e.g. torch.long), got {tensor.dtype}")
    return tensor


def check_index(index: object, name: str, sequence_length: int, batch_size: int) -> Tensor:
    """Checks a (B, K) integer index tensor against a sequence of ``sequence_length`` tokens."""
    idx = check_tensor(index, name, ndim=2, shape_doc="(B, K)", integer=True)
    if idx.shape[0] != batch_size:
        raise ValueError(
            f"{name} must have batch size {batch_size} (its shape is (B, K)), "
            f"got shape {tuple(idx.shape)}"
        )
    # The range check reads values back to the host; on accelerators that would stall the
    # training loop every step, so it only runs for CPU tensors (CUDA gathers assert on their own).
    # Under torch.compile the read-back would split the graph, so it is skipped there too.
    if idx.numel() > 0 and idx.device.type == "cpu" and not torch.compiler.is_compiling():
        low, high = int(idx.min()), int(idx.max())
        if low < 0 or high >= sequence_length:
            raise ValueError(
                f"{name} values must lie in [0, {sequence_length - 1}] (sequence length "
                f"{sequence_length}), got values in [{low}, {high}]"
            )
    return idx


def check_images(
    images: object,
    name: str,
    in_chans: int,
    patch_size: int,
    native_grid: tuple[int, int] | None = None,
    dtype: torch.dtype | None = None,
    size_hint: str = "",
) -> tuple[int, int]:
    """Checks an image batch against a model and returns its patch grid ``(h, w)``.

    Args:
        images: The object to check: (B, C, H, W) floating point images, B >= 1.
        name: The caller's name for the argument, used in error messages.
        in_chans: Channels C the model takes.
        patch_size: H and W must be multiples of it.
        native_grid: When given, the only patch grid the model accepts (its training size).
        dtype: The model's weight dtype; other float dtypes are accepted only under autocast.
        size_hint: Appended to the error for a batch that is not of the native size.

    Raises:
        TypeError / ValueError: Naming ``name``, the value received and what is allowed.
    """
    tensor = check_tensor(images, name, ndim=4, shape_doc="(B, C, H, W)", floating=True)
    batch_size, channels, height, width = tensor.shape
    if batch_size == 0:
        raise ValueError(f"{name} must hold at least one image, got shape {tuple(tensor.shape)}")
    if channels != in_chans:
        raise ValueError(
            f"{name} must have {in_chans} channels (the model's in_chans), got {channels} "
            f"(shape {tuple(tensor.shape)})"
        )
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"{name} height and width must be multiples of the patch size {patch_size}, "
            f"got {height}x{width}"
        )
    grid = (height // patch_size, width // patch_size)
    if native_grid is not None and grid != tuple(native_grid):
        native_h, native_w = (side * patch_size for side in native_grid)
        raise ValueError(
            f"{name} must be {native_h}x{native_w} (the model's image size, img_size), "
            f"got {height}x{width}{size_hint}"
        )
    if (
        dtype is not None
        and tensor.dtype != dtype
        and not torch.is_autocast_enabled(tensor.device.type)
    ):
        raise TypeError(
            f"{name} must have the model's dtype {dtype} (or run under autocast), "
            f"got {tensor.dtype}; convert with .to({dtype})"
        )
    return grid


def as_device(device: torch.device | str, name: str = "device") -> torch.device:
    """``device`` as a ``torch.device``; a clear error for anything else."""
    if isinstance(device, torch.device):
        return device
    if isinstance(device, str):
        try:
            return torch.device(device)
        except RuntimeError as error:
            raise ValueError(f"{name} must be a torch device such as 'cuda', got {device!r}") from (
                error
            )
    raise TypeError(f"{name} must be a torch.device or a string, got {type(device).__name__}")
