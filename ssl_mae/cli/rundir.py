"""The output folder of a run: one run per folder, locked while it runs, nothing stale left.

* :class:`OutputLock`: ``OUTPUT/.ssl-mae.lock`` holds the PID of the process that runs there and
  an exclusive ``flock`` on it. The kernel drops the lock when the process ends, however it ends,
  so a lock file left by a killed run is stale and taken over, while a live second run on the
  same folder is refused with the first one's PID.
* :func:`holds_run` / :func:`clear_run`: what counts as a run's files, and removing all of them
  (``--overwrite``), including ``last-vN.ckpt`` twins of older versions and checksum files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from types import TracebackType

from ssl_mae.cli.options import UsageError

__all__ = ["LOCK_NAME", "RUN_FILES", "OutputLock", "clear_run", "holds_run", "is_launcher_process"]

LOCK_NAME = ".ssl-mae.lock"
#: Files of a run (checksum files of the checkpoints are removed with them).
RUN_FILES: tuple[str, ...] = ("last.ckpt", "best.ckpt", "metrics.json", "config.yaml", "report.md")
RUN_DIRS: tuple[str, ...] = ("logs", "report")
_VERSIONED = ("last-v*.ckpt", "best-v*.ckpt", "step*.ckpt")


def is_launcher_process() -> bool:
    """True in the process the user started; False in the processes Lightning, torchrun or a
    cluster launched for the other devices and nodes (they must not touch the output folder)."""
    # Lightning's launcher sets LOCAL_RANK/NODE_RANK, torchrun RANK/LOCAL_RANK/GROUP_RANK, SLURM's
    # srun SLURM_PROCID for each of its tasks.
    ranks = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")
    return all(os.environ.get(name, "0") == "0" for name in ranks)


def _checkpoints(directory: Path) -> list[Path]:
    found = [directory / name for name in ("last.ckpt", "best.ckpt")]
    for pattern in _VERSIONED:
        found += sorted(directory.glob(pattern))
    return [path for path in found if path.exists()]


def holds_run(directory: Path) -> bool:
    """Whether ``directory`` holds checkpoints or results of a run."""
    if not directory.is_dir():
        return False
    return bool(_checkpoints(directory)) or any(
        (directory / name).exists() for name in ("metrics.json", "config.yaml")
    )


def clear_run(directory: Path) -> list[Path]:
    """Removes every file of a run from ``directory`` (``--overwrite``).

    Returns:
        What was removed.
    """
    removed = []
    candidates = [*_checkpoints(directory), *(directory / name for name in RUN_FILES)]
    for path in dict.fromkeys(candidates):
        for item in (path, path.with_name(path.name + ".sha256")):
            if item.is_file():
                item.unlink()
                removed.append(item)
    for name in RUN_DIRS:
        folder = directory / name
        if folder.is_dir():
            shutil.rmtree(folder)
            removed.append(folder)
    return removed


class OutputLock:
    """An exclusive lock on an output folder, held from ``__enter__`` to ``__exit__``.

    Args:
        directory: The folder (created if needed).

    Raises:
        UsageError: On ``__enter__``, when another live process holds the folder.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        import fcntl

        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UsageError(
                f"--output-dir {str(self.directory)!r} is in use by another ssl-mae run (PID "
                f"{owner}); wait for it to end or choose another --output-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
