"""Reading weight files: one place that turns a missing, misplaced or damaged file into an error
that names it.

``safetensors``, ``pickle`` and torch's zip reader each fail with their own exception types and
messages that do not say which file was bad (``SafetensorError: Error while deserializing
header``, ``PytorchStreamReader failed reading zip archive``); every loader of the package reads
through :func:`read_weights_file` instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["read_weights_file"]


def read_weights_file(path: str | os.PathLike[str], what: str = "weights file") -> object:
    """Decodes a ``.safetensors`` file or a torch pickle (``weights_only=True``) on the CPU.

    Args:
        path: The file.
        what: How the error messages call the file, e.g. ``"checkpoint file"``.

    Returns:
        Whatever the file holds (a dict of tensors for safetensors; any weights-only object for
        torch pickles); the caller checks its content.

    Raises:
        FileNotFoundError: The file does not exist.
        IsADirectoryError: The path is a directory.
        OSError: The file exists but cannot be decoded (truncated, damaged, not a weights file,
            not a regular file).
    """
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{what} {str(file)!r} does not exist")
    if file.is_dir():
        raise IsADirectoryError(
            f"{what} {str(file)!r} is a directory, not a file; pass the file inside it"
        )
    if not file.is_file():  # a FIFO or a device would block or stream forever
        raise OSError(f"{what} {str(file)!r} is not a regular file")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(file), device="cpu")
        return torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as error:  # each reader raises its own types; name the file instead
        raise OSError(
            f"cannot read {what} {str(file)!r} (truncated, damaged or not a weights file): "
            f"{type(error).__name__}: {error}"
        ) from error
