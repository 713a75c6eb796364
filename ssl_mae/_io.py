"""Reading weight files: one place that turns a missing, misplaced or damaged file into an error
that names it.

``safetensors``, ``pickle`` and torch's zip reader each fail with their own exception types and
messages that do not say which file was bad (``SafetensorError: Error while deserializing
header``, ``PytorchStreamReader failed reading zip archive``); every loader of the package reads
through :func:`read_weights_file` instead.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["read_weights_file"]


def read_weights_file(
    path: str | os.PathLike[str],
    what: str = "weights file",
    allowed_globals: Sequence[type] = (),
) -> object:
    """Decodes a ``.safetensors`` file or a torch pickle (``weights_only=True``) on the CPU.

    Args:
        path: The file.
        what: How the error messages call the file, e.g. ``"checkpoint file"``.
        allowed_globals: Plain classes the pickle may hold besides tensors and containers
            (e.g. the ``argparse.Namespace`` that official MAE checkpoints store as ``args``);
            needs torch >= 2.5, older versions load without them.

    Returns:
        Whatever the file holds (a dict of tensors for safetensors; any weights-only object for
        torch pickles); the caller checks its content.

    Raises:
        FileNotFoundError: The file does not exist.
        IsADirectoryError: The path is a directory.
        OSError: The file exists but cannot be decoded (truncated, damaged, not a weights file,
            not a regular file).
        ValueError: The pickle holds Python objects that ``weights_only`` loading refuses.
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
        safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
        if safe_globals is None or not allowed_globals:
            return torch.load(str(file), map_location="cpu", weights_only=True)
        with safe_globals(list(allowed_globals)):
            return torch.load(str(file), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" not in str(error).lower():
            raise OSError(
                f"cannot read {what} {str(file)!r} (truncated, damaged or not a weights file): "
                f"{type(error).__name__}: {error}"
            ) from error
        raise ValueError(
            f"{what} {str(file)!r} holds Python objects that are not loaded without running "
            f"their code ({str(error).splitlines()[0]}); if you trust the file, load it with "
            "torch.load(path, weights_only=False) and pass the loaded dict"
        ) from None
    except Exception as error:  # each reader raises its own types; name the file instead
        raise OSError(
            f"cannot read {what} {str(file)!r} (truncated, damaged or not a weights file): "
            f"{type(error).__name__}: {error}"
        ) from error
