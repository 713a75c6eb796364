"""Argument checks shared by the public entry points.

Every check raises a ``ValueError`` or ``TypeError`` whose message names the argument, the value
that was received and what is allowed, so that a user never has to decode a shape error from deep
inside torch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

# Integer dtypes that gather/scatter/index_select take as indices.
INDEX_DTYPES = (torch.int64, torch.int32)


def check_mask_ratio(mask_ratio: float, name: str = "mask_ratio") -> float:
    """Checks that a masking ratio lies in [0, 1) and returns it as a float."""
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, numbers.Real):
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


def check_nonnegative_int(value: int, name: str) -> int:
    """Checks that ``value`` is an integer >= 0 (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


def _range_doc(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return "finite"


def check_float(
    value: float,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Checks that ``value`` is a finite real number in a range and returns it as a float.

    Bools and strings are a ``TypeError``; NaN, infinity and values outside the range a
    ``ValueError`` (a NaN learning rate or an infinite epsilon never fails later, it silently
    trains on garbage).

    Args:
        value: The number to check (Python or NumPy ints and floats are accepted).
        name: Argument name used in the error message.
        low: Smallest allowed value, or None.
        high: Largest allowed value, or None.
        low_open: Exclude ``low`` itself.
        high_open: Exclude ``high`` itself.
    """
    allowed = _range_doc(low, high, low_open, high_open)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite number {allowed}, got {value!r}")
    number = float(value)
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if not math.isfinite(number) or below or above:
        raise ValueError(f"{name} must be a finite number {allowed}, got {value!r}")
    return number


def check_positive_float(value: float, name: str) -> float:
    """Checks a finite number > 0 (bools rejected) and returns it as a float."""
    return check_float(value, name, low=0.0, low_open=True)


def check_nonnegative_float(value: float, name: str) -> float:
    """Checks a finite number >= 0 (bools rejected) and returns it as a float."""
    return check_float(value, name, low=0.0)


def check_bool(value: bool, name: str) -> bool:
    """Checks that ``value`` is a bool (``1`` or ``"yes"`` are not silently taken as True)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_generator(generator: object, name: str = "generator") -> torch.Generator | None:
    """Checks that ``generator`` is None or a ``torch.Generator`` (a seed is not one)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{name} must be a torch.Generator or None, got {generator!r}; for a seed use "
            f"torch.Generator().manual_seed(seed)"
        )
    return generator


def check_normalize(normalize: object, name: str = "normalize") -> tuple[list[float], list[float]]:
    """Checks a ``{"mean": [...], "std": [...]}`` normalisation and returns (mean, std) as float
    lists: non-empty, of equal length, finite, and std > 0."""
    if not isinstance(normalize, Mapping):
        raise TypeError(
            f'{name} must be None or a dict with keys "mean" and "std", got {normalize!r}'
        )
    missing = [key for key in ("mean", "std") if key not in normalize]
    if missing:
        raise ValueError(
            f'{name} must have keys "mean" and "std", missing {missing} in {normalize!r}'
        )
    values: dict[str, list[float]] = {}
    for key in ("mean", "std"):
        entries = normalize[key]
        if not isinstance(entries, Sequence) or isinstance(entries, str) or len(entries) == 0:
            raise TypeError(f'{name}["{key}"] must be a non-empty list of floats, got {entries!r}')
        # A NaN mean or an infinite std would turn every pixel into NaN or 0.
        values[key] = [check_float(v, f'{name}["{key}"] entries') for v in entries]
    mean, std = values["mean"], values["std"]
    if len(mean) != len(std):
        raise ValueError(
            f'{name}["mean"] and {name}["std"] must have the same length, got '
            f"{len(mean)} and {len(std)} entries ({normalize!r})"
        )
    if not all(s > 0 for s in std):
        raise ValueError(f'{name}["std"] must be positive, got {std}')
    return mean, std


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


def square_grid(num_patches: int, what: str, hint: str) -> tuple[int, int]:
    """The square patch grid ``(s, s)`` of ``num_patches`` patches.

    Args:
        num_patches: Number of patches.
        what: What holds the patches, for the error.
        hint: What to pass instead when the patches are not a square grid.

    Raises:
        ValueError: When ``num_patches`` is not a square number.
    """
    side = math.isqrt(max(num_patches, 0))
    if side * side != num_patches:
        raise ValueError(
            f"{num_patches} patches ({what}) are not a square grid, so no square patch grid can "
            f"be inferred; pass {hint}"
        )
    return side, side


def patch_grid(
    num_patches: int, grid: int | Sequence[int] | None, name: str, what: str
) -> tuple[int, int]:
    """The patch grid ``(h, w)`` of ``num_patches`` patches: ``grid`` when given (checked
    against the count), else the square one.

    Args:
        num_patches: Number of patches.
        grid: The grid passed as argument ``name``, or None.
        name: The argument's name, for errors.
        what: What holds the patches, for errors.
    """
    if grid is None:
        return square_grid(num_patches, what, f"{name}=(h, w)")
    grid_h, grid_w = to_2tuple(grid, name)
    if grid_h * grid_w != num_patches:
        raise ValueError(
            f"{name} {grid_h}x{grid_w} does not hold the {num_patches} patches ({what})"
        )
    return grid_h, grid_w


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


def reads_back(tensor: Tensor) -> bool:
    """Whether a check may read ``tensor``'s values back to the host.

    Only for CPU tensors outside ``torch.compile``: on an accelerator the read-back would stall
    the training loop every step, and under ``torch.compile`` it would split the graph. This is
    the one place that policy is written down.
    """
    return tensor.device.type == "cpu" and not torch.compiler.is_compiling()


def check_finite(tensor: Tensor, name: str) -> Tensor:
    """Rejects NaN and infinity in a CPU tensor (see :func:`reads_back`); a no-op elsewhere."""
    if tensor.numel() and reads_back(tensor) and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(
            f"{name} must be finite, got NaN or inf in {bad} of its {tensor.numel()} values"
        )
    return tensor


def check_index(index: object, name: str, sequence_length: int, batch_size: int) -> Tensor:
    """Checks a (B, K) int64/int32 index tensor against a sequence of ``sequence_length``
    tokens."""
    idx = check_tensor(index, name, ndim=2, shape_doc="(B, K)", integer=True)
    if idx.dtype not in INDEX_DTYPES:
        raise TypeError(
            f"{name} must have dtype torch.int64 or torch.int32 (torch indexes with those), "
            f"got {idx.dtype}; convert with .long()"
        )
    if idx.shape[0] != batch_size:
        raise ValueError(
            f"{name} must have batch size {batch_size} (its shape is (B, K)), "
            f"got shape {tuple(idx.shape)}"
        )
    # The range check reads values back to the host, so it runs for CPU tensors only (CUDA
    # gathers assert on their own).
    if reads_back(idx):
        check_range(idx, f"{name} values", sequence_length, f"sequence length {sequence_length}")
    return idx


def check_range(values: Tensor, subject: str, size: int, what: str) -> None:
    """Checks that the integers in ``values`` lie in ``[0, size)`` (reads them back to the host;
    an empty tensor passes).

    Args:
        values: Integer tensor.
        subject: What the error says must lie in the range (``"labels"``, ``"idx values"``).
        size: The number of valid values.
        what: What ``size`` is, for the error (``"num_classes=10"``).
    """
    if values.numel() > 0:
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= size:
            raise ValueError(
                f"{subject} must lie in [0, {size - 1}] ({what}), got values in [{low}, {high}]"
            )


def check_permutation(index: Tensor, name: str) -> Tensor:
    """Checks that every row of a (B, L) index tensor is a permutation of ``range(L)``.

    A repeated index in ``ids_restore`` would copy one token into two places and drop another
    without any error. The check sorts the values on the host, so it runs for CPU tensors only
    (see :func:`reads_back`).
    """
    if index.numel() and reads_back(index):
        expected = torch.arange(index.shape[1], device=index.device)
        if not bool((index.sort(dim=1).values == expected).all()):
            raise ValueError(
                f"{name} must hold every position of range({index.shape[1]}) exactly once per "
                "sample (a permutation); some are repeated or missing"
            )
    return index


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
