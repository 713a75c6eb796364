"""Checkpoint files that survive kills, bit flips and full disks.

* Every file is written to a temporary file in the same folder, flushed to disk and renamed into
  place (``os.replace``): a process killed mid-write leaves the previous file intact and at most a
  stray ``.NAME.*.tmp`` file, which :func:`remove_partial_writes` deletes on the next start.
* Beside every checkpoint :func:`save_atomic` writes ``NAME.sha256`` (``sha256sum`` format, so
  ``sha256sum -c last.ckpt.sha256`` works too); :func:`load_checkpoint` verifies it and names the
  damaged file instead of loading flipped bits as weights. The hash is computed while the bytes
  are written, so saving costs no second read.
* A write that fails because the disk is full (or a file-size limit is hit) raises
  :class:`CheckpointWriteError` naming the file and the reason, instead of torch's
  ``enforce fail ... unexpected pos``; the previous checkpoint is untouched.

:class:`AtomicCheckpointIO` makes Lightning save every checkpoint this way;
:func:`save_pretrain_checkpoint` writes a plain model in the layout of a ``PretrainModule``
checkpoint (what ``ssl-mae evaluate``/``export`` load), for training loops without Lightning.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import pickle
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, cast

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

__all__ = [
    "CHECKSUM_SUFFIX",
    "AtomicCheckpointIO",
    "CheckpointWriteError",
    "DamagedCheckpointError",
    "checksum_path",
    "load_checkpoint",
    "remove_partial_writes",
    "save_atomic",
    "save_pretrain_checkpoint",
    "verify_checksum",
    "write_json_atomic",
]

#: Suffix of the checksum file written beside every checkpoint (``last.ckpt.sha256``).
CHECKSUM_SUFFIX = ".sha256"
_TMP_SUFFIX = ".tmp"
# errno values that mean "the disk (or the quota, or RLIMIT_FSIZE) has no room for this file".
_NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_CHUNK = 1 << 20
_FILE_MODE = 0o644


class CheckpointWriteError(OSError):
    """A checkpoint (or report) could not be written; the message names the file and why, and
    the file previously under that name is intact. ``errno`` is the cause's."""

    def __str__(self) -> str:
        return str(self.strerror)


class DamagedCheckpointError(ValueError):
    """A checkpoint's bytes do not match the checksum written beside it (a bit flip, a
    truncated copy): loading it would give wrong weights silently."""


def checksum_path(path: str | os.PathLike[str]) -> Path:
    """``PATH.sha256``, the checksum file of ``path``."""
    target = Path(path)
    return target.with_name(target.name + CHECKSUM_SUFFIX)


class _HashingWriter(io.RawIOBase):
    """A write-only file object that hashes what passes through and keeps the first OSError
    (torch's zip writer replaces it with ``enforce fail ... unexpected pos``)."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__()
        self.file = file
        self.sha256 = hashlib.sha256()
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        try:
            written = self.file.write(data)
        except OSError as error:
            self.error = self.error or error
            raise
        self.sha256.update(memoryview(data)[:written])
        return written

    def flush(self) -> None:
        self.file.flush()

    def fileno(self) -> int:
        return self.file.fileno()


def _write_error(path: Path, error: BaseException) -> CheckpointWriteError:
    code = getattr(error, "errno", None)
    if code in _NO_SPACE:
        reason = f"no space left on device ({os.strerror(code or errno.ENOSPC)})"
    else:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CheckpointWriteError(
        code or errno.EIO, f"cannot write {str(path)!r}: {reason}; the previous file is intact"
    )


def _atomic_write(
    path: str | os.PathLike[str], write: Callable[[_HashingWriter], None], checksum: bool
) -> str:
    """Runs ``write`` into a temporary file beside ``path``, then renames it into place.

    Returns:
        The SHA-256 of the bytes written (hex).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=_TMP_SUFFIX, dir=target.parent
    )
    writer: _HashingWriter | None = None
    try:
        with os.fdopen(handle, "wb") as file:
            writer = _HashingWriter(file)
            write(writer)
            file.flush()
            os.fsync(file.fileno())  # the data must be on disk before the rename makes it live
        os.chmod(tmp_name, _FILE_MODE)  # mkstemp creates 0600 files
        digest = writer.sha256.hexdigest()
        if checksum:
            _write_checksums(target, [digest, *_previous_digests(target)])
        os.replace(tmp_name, target)
        if checksum:
            _write_checksums(target, [digest])
        return digest
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        cause = writer.error if writer is not None and writer.error is not None else error
        if isinstance(error, Exception) and isinstance(cause, OSError | RuntimeError):
            raise _write_error(target, cause) from error
        raise


def _previous_digests(target: Path) -> list[str]:
    try:
        return _read_checksums(target)
    except (OSError, ValueError):
        return []


def _write_checksums(target: Path, digests: list[str]) -> None:
    """Writes ``target.sha256`` atomically. During a checkpoint replacement it lists the new and
    the old digest, so a kill between the two renames never makes a good file look damaged."""
    lines = "".join(f"{digest}  {target.name}\n" for digest in dict.fromkeys(digests))
    side = checksum_path(target)
    handle, tmp_name = tempfile.mkstemp(
        prefix=f".{side.name}.", suffix=_TMP_SUFFIX, dir=side.parent
    )
    try:
        with os.fdopen(handle, "w", encoding="ascii") as file:
            file.write(lines)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp_name, _FILE_MODE)
        os.replace(tmp_name, side)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def _read_checksums(target: Path) -> list[str]:
    text = checksum_path(target).read_text(encoding="ascii")
    digests = [line.split()[0].lower() for line in text.splitlines() if line.strip()]
    if not digests or any(len(d) != 64 for d in digests):
        raise ValueError(f"{str(checksum_path(target))!r} is not a sha256sum file")
    return digests


def save_atomic(obj: Any, path: str | os.PathLike[str], checksum: bool = True) -> None:
    """``torch.save(obj, path)`` through a temporary file and ``os.replace``, with a checksum.

    Args:
        obj: Anything ``torch.save`` accepts.
        path: Destination file; its folder is created if needed.
        checksum: Also write ``PATH.sha256`` (see :func:`verify_checksum`).

    Raises:
        CheckpointWriteError: When the file cannot be written (e.g. no space left on device);
            the file previously at ``path`` and its checksum are untouched.
    """
    _atomic_write(path, lambda file: torch.save(obj, cast(IO[bytes], file)), checksum)


def save_pretrain_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    preset: str,
    model_overrides: Mapping[str, Any],
    normalize: Mapping[str, Sequence[float]] | None,
) -> None:
    """Saves ``model`` as Lightning saves a ``PretrainModule`` built from ``preset``.

    The file holds what :func:`ssl_mae.export.load_trained_model` (``ssl-mae evaluate``,
    ``export``, ``reconstruct``) reads: ``state_dict`` with the module's keys
    (``model.encoder.vit.*``, ``model.decoder.*``), ``hyper_parameters`` naming the preset and
    its overrides, and the input normalisation the model was trained with as
    ``datamodule_hyper_parameters["run_config"]["normalize"]`` (as ``PretrainDataModule``
    records it). Written with :func:`save_atomic`, checksum included.

    Args:
        path: Destination file, e.g. ``OUTPUT_DIR/last.ckpt``.
        model: The trained model, e.g. a :class:`~ssl_mae.MaskedAutoencoder`.
        preset: Name of the preset whose model ``model`` is (with the overrides).
        model_overrides: Plain keyword values the preset is rebuilt with (``embed_dim``...).
        normalize: Per-channel ``{"mean": [...], "std": [...]}`` of the inputs, or None.

    Raises:
        CheckpointWriteError: When the file cannot be written.
    """
    recorded = (
        None if normalize is None else {k: [float(x) for x in v] for k, v in normalize.items()}
    )
    checkpoint = {
        "state_dict": {f"model.{key}": value for key, value in model.state_dict().items()},
        "hyper_parameters": {"preset": preset, "model_overrides": dict(model_overrides)},
        "datamodule_hyper_parameters": {"run_config": {"normalize": recorded}},
    }
    save_atomic(checkpoint, path)


def write_json_atomic(data: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Writes ``data`` as indented JSON through a temporary file and ``os.replace``.

    Args:
        data: JSON-serialisable mapping.
        path: Destination file.

    Raises:
        CheckpointWriteError: When the file cannot be written.
    """
    text = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    def write(file: _HashingWriter) -> None:
        file.write(text)

    _atomic_write(path, write, checksum=False)


def verify_checksum(path: str | os.PathLike[str]) -> bool:
    """Checks ``path`` against ``PATH.sha256`` when that file exists.

    Args:
        path: The checkpoint.

    Returns:
        True when a checksum file exists and matches, False when there is none (checkpoints of
        other tools).

    Raises:
        DamagedCheckpointError: When the bytes do not match the recorded checksum, or the
            checksum file itself is unreadable.
    """
    target = Path(path)
    if not checksum_path(target).is_file():
        return False
    try:
        expected = _read_checksums(target)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise DamagedCheckpointError(
            f"checkpoint {str(target)!r}: its checksum file {str(checksum_path(target))!r} is "
            f"unreadable ({error})"
        ) from error
    digest = hashlib.sha256()
    with target.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() not in expected:
        raise DamagedCheckpointError(
            f"checkpoint {str(target)!r} is damaged: its SHA-256 does not match "
            f"{checksum_path(target).name} (the file changed after it was written: a bit flip, "
            "a truncated copy or an edit)"
        )
    return True


def load_checkpoint(path: str | os.PathLike[str], verify: bool = True) -> dict[str, Any]:
    """Loads a checkpoint on the CPU with ``weights_only=True``, after verifying its checksum.

    Args:
        path: The file.
        verify: Check ``PATH.sha256`` when it exists.

    Returns:
        The checkpoint dict.

    Raises:
        FileNotFoundError: If the file does not exist.
        DamagedCheckpointError: If the checksum does not match.
        ValueError: If the file is not a torch checkpoint holding a dict (the message names it).
    """
    target = Path(path).expanduser()
    if not target.is_file():
        what = "is not a file" if target.exists() else "does not exist"
        raise FileNotFoundError(f"checkpoint {str(path)!r} {what}")
    if verify:
        verify_checksum(target)
    try:
        checkpoint = torch.load(target, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"checkpoint {str(path)!r} cannot be read: {reason}") from error
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"checkpoint {str(path)!r} holds a {type(checkpoint).__name__}, not a checkpoint dict"
        )
    return checkpoint


def remove_partial_writes(directory: str | os.PathLike[str]) -> list[Path]:
    """Deletes the ``.NAME.*.tmp`` files a killed write left in ``directory``.

    Call it only while no other process writes there (the CLI holds the output folder's lock).

    Returns:
        The files removed.
    """
    folder = Path(directory)
    removed = []
    if folder.is_dir():
        for stray in folder.glob(f".*{_TMP_SUFFIX}"):
            if stray.is_file():
                with contextlib.suppress(FileNotFoundError):
                    stray.unlink()
                    removed.append(stray)
    return removed


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes checkpoints atomically with a checksum beside them (see :func:`save_atomic`).

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

    def load_checkpoint(
        self,
        path: str | os.PathLike[str],
        map_location: Any = None,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Loads a checkpoint after verifying its checksum (Lightning's resume goes here)."""
        verify_checksum(path)
        loaded: dict[str, Any] = super().load_checkpoint(
            Path(path), map_location=map_location, weights_only=weights_only
        )
        return loaded

    def remove_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Removes a checkpoint and its checksum file."""
        super().remove_checkpoint(Path(path))
        with contextlib.suppress(FileNotFoundError):
            checksum_path(path).unlink()
