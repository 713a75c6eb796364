"""Checkpoint files that survive a kill: write to a temporary file, then ``os.replace``.

:class:`AtomicCheckpointIO` makes Lightning write every checkpoint that way; :func:`save_atomic`
and :func:`write_json_atomic` do the same for any object and for JSON reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "save_atomic", "write_json_atomic"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes checkpoints atomically: a temporary file in the same folder, then ``os.replace``.

    A process killed mid-write leaves at most a stray ``*.tmp`` file; the previous checkpoint
    under the final name stays intact and loadable.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any = None
    ) -> None:
        """Saves ``checkpoint`` to ``path`` atomically.

        Args:
            checkpoint: The checkpoint dict.
            path: Final file path (local file system).
            storage_options: Not supported; must be None.
        """
        if storage_options is not None:
            raise TypeError(
                f"AtomicCheckpointIO takes no storage_options, got {type(storage_options)}"
            )
        save_atomic(checkpoint, path)


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)`` through a temporary file and ``os.replace``.

    Args:
        obj: Anything ``torch.save`` accepts.
        path: Destination file; its folder is created if needed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())  # the data must be on disk before the rename makes it live
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def write_json_atomic(data: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Writes ``data`` as indented JSON through a temporary file and ``os.replace``.

    Args:
        data: JSON-serialisable mapping.
        path: Destination file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
