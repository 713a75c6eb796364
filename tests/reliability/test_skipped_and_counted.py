"""Bad input, round two: hostile image folders whose bad entries must be *skipped and counted*.

A FIFO named ``x.png`` used to block the dataset (and ``ssl-mae pretrain``) forever; a folder
without read permission made its images vanish with ``num_skipped == 0``. Each case below builds
a folder of readable images plus one kind of hostile entry and checks that reading every sample
finishes, every readable image is returned, and every hostile entry is counted once in
``num_skipped`` and named in ``skipped_paths()``. Reads run in a watchdog thread, so a hang fails
the test instead of stalling the suite. The cases from issue 13 carry ``issue13`` in their id.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from torch.utils.data import DataLoader

from ssl_mae.data import ImageFolderDataset, collate_skip_none

from .conftest import finish, start

READ_TIMEOUT_S = 30
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass
class Hostile:
    """What a case built: the hostile entries (relative to the root) that must be counted, the
    folders to deny to ``os.scandir`` (a stand-in for mode 000 when running as root), and what
    to do after the dataset listed the folder (e.g. delete a file)."""

    skipped: set[str]
    denied: list[Path] = field(default_factory=list)
    after_listing: Callable[[], None] | None = None


def _png(path: Path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (value, value, value)).save(path, format="PNG")


def _good_images(root: Path) -> None:
    for index, name in enumerate(("a/0.png", "a/1.png", "b/2.png")):
        _png(root / name, 10 * index)


# --- the cases ------------------------------------------------------------------------------
Builder = Callable[[Path], Hostile]
SKIP_CASES: list[Any] = []


def skip_case(*marks: Any) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        SKIP_CASES.append(pytest.param(builder, id=builder.__name__.replace("_", "-"), marks=marks))
        return builder

    return register


@skip_case()
def issue13_fifo_named_like_an_image(root: Path) -> Hostile:
    os.mkfifo(root / "a" / "x.png")
    return Hostile({"a/x.png"})


@skip_case()
def fifo_in_a_nested_folder(root: Path) -> Hostile:
    (root / "b" / "deep").mkdir()
    os.mkfifo(root / "b" / "deep" / "pipe.jpg")
    return Hostile({"b/deep/pipe.jpg"})


@skip_case()
def symlink_to_a_fifo(root: Path) -> Hostile:
    os.mkfifo(root / "pipe")  # no image extension: not listed itself
    os.symlink(root / "pipe", root / "b" / "link.png")
    return Hostile({"b/link.png"})


@skip_case(pytest.mark.skipif(IS_ROOT, reason="root reads folders of mode 000"))
def issue13_folder_without_read_permission(root: Path) -> Hostile:
    _png(root / "a" / "locked" / "hidden.png")
    (root / "a" / "locked").chmod(0)
    return Hostile({"a/locked"})


@skip_case()
def issue13_folder_that_cannot_be_listed(root: Path) -> Hostile:
    """The same as mode 000, simulated: ``os.scandir`` raises ``PermissionError`` there."""
    _png(root / "a" / "locked" / "hidden.png")
    return Hostile({"a/locked"}, denied=[root / "a" / "locked"])


@skip_case()
def class_folder_that_cannot_be_listed(root: Path) -> Hostile:
    _png(root / "c" / "hidden.png")
    return Hostile({"c"}, denied=[root / "c"])


@skip_case(pytest.mark.skipif(IS_ROOT, reason="root reads files of mode 000"))
def file_without_read_permission(root: Path) -> Hostile:
    _png(root / "a" / "locked.png")
    (root / "a" / "locked.png").chmod(0)
    return Hostile({"a/locked.png"})


@skip_case()
def dangling_symlink(root: Path) -> Hostile:
    os.symlink(root / "nowhere.png", root / "a" / "gone.png")
    return Hostile({"a/gone.png"})


@skip_case()
def symlink_to_a_character_device(root: Path) -> Hostile:
    os.symlink(os.devnull, root / "a" / "null.png")
    return Hostile({"a/null.png"})


@skip_case()
def unix_socket_named_like_an_image(root: Path) -> Hostile:
    # AF_UNIX paths are limited to about 100 bytes; bind through a short relative path.
    cwd = os.getcwd()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.chdir(root / "b")
        server.bind("sock.png")
    finally:
        os.chdir(cwd)
        server.close()  # the socket file stays
    return Hostile({"b/sock.png"})


@skip_case()
def file_deleted_after_listing(root: Path) -> Hostile:
    _png(root / "b" / "doomed.png")
    return Hostile({"b/doomed.png"}, after_listing=(root / "b" / "doomed.png").unlink)


@skip_case()
def file_replaced_by_a_fifo_after_listing(root: Path) -> Hostile:
    path = root / "b" / "swapped.png"
    _png(path)

    def swap() -> None:
        path.unlink()
        os.mkfifo(path)

    return Hostile({"b/swapped.png"}, after_listing=swap)


# --- running a case --------------------------------------------------------------------------
@contextlib.contextmanager
def _denied(monkeypatch: pytest.MonkeyPatch, folders: list[Path]) -> Iterator[None]:
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if Path(path) in folders:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    with monkeypatch.context() as patch:
        if folders:
            patch.setattr(os, "scandir", scandir)
        yield


def _release_fifos(root: Path) -> None:
    """Opens every FIFO under ``root`` for writing once, so that a reader blocked in ``open``
    (the bug these tests catch) wakes up and the watchdog thread can end."""
    for path in root.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_fifo():
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def _read_all(dataset: ImageFolderDataset, root: Path) -> list[Any]:
    """Every sample, read in a watchdog thread: a read that blocks fails the test."""
    samples: list[Any] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            samples.extend(dataset[index] for index in range(len(dataset)))
        except BaseException as error:  # reported in the test's own thread
            errors.append(error)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(READ_TIMEOUT_S)
    if thread.is_alive():
        _release_fifos(root)
        thread.join(5)
        pytest.fail(f"reading the dataset blocked for {READ_TIMEOUT_S} s")
    if errors:
        raise errors[0]
    return samples


def _relative(root: Path, paths: list[Path]) -> set[str]:
    return {path.relative_to(root).as_posix() for path in paths}


@pytest.mark.parametrize("build", SKIP_CASES)
@pytest.mark.parametrize("on_error", ["skip", "replace"])
def test_hostile_entries_are_skipped_and_counted(
    build: Builder, on_error: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "images"
    _good_images(root)
    hostile = build(root)
    try:
        with _denied(monkeypatch, hostile.denied):
            dataset = ImageFolderDataset(root, on_error=on_error)  # type: ignore[arg-type]
        if hostile.after_listing is not None:
            hostile.after_listing()
        samples = _read_all(dataset, root)
    finally:
        for path in (root / "a" / "locked", root / "a" / "locked.png"):
            with contextlib.suppress(OSError):
                path.chmod(0o755)
    readable = [sample for sample in samples if sample is not None]
    if on_error == "skip":
        assert len(readable) == 3  # every good image, nothing else
    else:
        assert len(readable) == len(samples)  # every slot filled by a readable image
    assert all(tuple(image.shape) == (3, 4, 4) for image, _ in readable)
    assert dataset.num_skipped == len(hostile.skipped), dataset.skipped_paths()
    assert _relative(root, dataset.skipped_paths()) == hostile.skipped


def test_a_folder_that_cannot_be_listed_is_an_error_with_on_error_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "images"
    _good_images(root)
    with (
        _denied(monkeypatch, [root / "b"]),
        pytest.raises(OSError, match=r"cannot be listed .*images/b"),
    ):
        ImageFolderDataset(root, on_error="raise")


def test_a_root_that_cannot_be_listed_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "images"
    _good_images(root)
    monkeypatch.setattr(Path, "iterdir", _raise_permission_error)
    with pytest.raises(OSError, match=r"root .*images.* cannot be listed"):
        ImageFolderDataset(root)


def _raise_permission_error(self: Path) -> Iterator[Path]:
    raise PermissionError(13, "Permission denied", str(self))


def test_worker_processes_skip_fifos_without_blocking(tmp_path: Path) -> None:
    root = tmp_path / "images"
    _good_images(root)
    for name in ("a/x.png", "b/y.png"):
        os.mkfifo(root / name)
    dataset = ImageFolderDataset(root)
    loader = DataLoader(
        dataset, batch_size=2, num_workers=2, collate_fn=collate_skip_none, timeout=60
    )
    seen = sum(batch[0].shape[0] for batch in loader if batch is not None)
    assert seen == 3
    assert _relative(root, dataset.skipped_paths()) == {"a/x.png", "b/y.png"}


def test_pretrain_on_a_folder_with_a_fifo_finishes_and_counts_it(tmp_path: Path) -> None:
    """Issue 13: ``ssl-mae pretrain`` blocked forever on a FIFO named like an image."""
    root = tmp_path / "images"
    _good_images(root)
    for name in ("b/3.png", "b/4.png"):
        _png(root / name)
    os.mkfifo(root / "a" / "x.png")  # 6 entries, 3 batches of 2: every entry is read once
    out_dir = tmp_path / "run"
    argv = [
        "pretrain", "--preset", "mae_vit_micro_patch4", "--dataset", "folder",
        "--data-path", str(root), "--img-size", "8", "--batch-size", "2", "--epochs", "1",
        "--no-progress", "--accelerator", "cpu", "--devices", "1", "--no-knn",
        "--logger", "none", "--output-dir", str(out_dir),
    ]  # fmt: skip
    command = [sys.executable, "-c", "import sys; from ssl_mae.cli import main; "
               "sys.exit(main(sys.argv[1:]))", *argv]  # fmt: skip
    process = start(command, cwd=tmp_path)
    try:
        out, err = finish(process, timeout=240)
    finally:
        _release_fifos(root)
    assert process.returncode == 0, err
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["skipped_files"] == 1
    assert "skipped 1 unreadable image files" in out
