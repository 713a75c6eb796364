"""A dataset over any folder of images that survives unreadable files.

Layouts (``layout`` argument):

* ``"classes"``: every non-hidden subfolder of ``root`` is a class; labels are the indices of the
  folder names in sorted order; images are found recursively inside each class folder. Image
  files directly in ``root`` are ignored (a warning says how many).
* ``"flat"``: every image under ``root`` (recursively) is one sample with label ``UNLABELED``
  (-1): there are no classes, and -1 makes an accidental use as a classification target fail
  loudly instead of training on a fake class 0.
* ``"auto"`` (default): ``"flat"`` if ``root`` holds image files directly, else ``"classes"``.

Hidden folders (names starting with ``.``) are not searched; symlinked folders are followed (a
folder reached twice, e.g. through a symlink loop, is read once). Extensions match
case-insensitively.

Only regular files are read: a FIFO, socket or device named ``x.png`` is an unreadable file (it
is never opened for a blocking read, which would hang the loader forever). A folder that cannot
be listed (no permission) is counted and listed with the skipped files, never silently dropped;
with ``on_error="raise"`` it is an ``OSError`` when the dataset is built.

Unreadable files (corrupt, truncated, zero bytes, not an image despite the extension, an image mode
Pillow cannot convert, not a regular file) never crash a run. With ``on_error="skip"`` (default)
``dataset[i]`` returns ``None`` and ``collate_skip_none`` drops those samples from the batch. Which
files failed is stored in a boolean tensor in shared memory, one flag per sample: DataLoader
workers (forked or spawned processes) set the flags, the main process reads them, so
``num_skipped``, ``skipped_paths()`` and ``report_skipped()`` are correct with any ``num_workers``.
Flags are set once per file, so later epochs do not count a file twice, and a file found bad is not
decoded again. Under DDP every rank holds its own dataset and counts the files it read; sum
``num_skipped`` over ranks (e.g. ``all_reduce``) for a global count.
"""

from __future__ import annotations

import logging
import operator
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal

import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset, default_collate

from ssl_mae.data.image_modes import check_image_mode, convert_image_mode, pil_to_tensor
from ssl_mae.data.tensor_dataset import UNLABELED

logger = logging.getLogger(__name__)

#: File extensions treated as images (lower case, matched case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
    ".pnm",
)

FolderLayout = Literal["auto", "classes", "flat"]
OnError = Literal["skip", "replace", "raise"]
_LAYOUTS = ("auto", "classes", "flat")
_ON_ERROR = ("skip", "replace", "raise")


def load_image(path: str | Path, mode: str | None = "RGB") -> Image.Image:
    """Decode an image file completely, apply its EXIF orientation and convert its mode.

    Args:
        path: Image file.
        mode: ``"RGB"``, ``"L"`` or ``None``/``"auto"``; see ``ssl_mae.data.image_modes``.

    Returns:
        The decoded PIL image in ``mode``.

    Raises:
        Exception: Whatever Pillow raises for an unreadable file (``OSError`` for truncated or
            unidentified files, ``SyntaxError``/``ValueError``/``EOFError`` from some decoders,
            ``DecompressionBombError`` for huge images).
    """
    with _open_regular_file(path) as file, Image.open(file) as opened:
        opened.load()  # decode now: a truncated file fails here, not later inside a transform
        try:
            image = ImageOps.exif_transpose(opened)
        except Exception:  # a broken EXIF block must not cost us readable pixels
            image = opened.copy()
    return convert_image_mode(image, mode)


def _open_regular_file(path: str | Path) -> BinaryIO:
    """Opens ``path`` for reading if it is a regular file.

    The file is opened without blocking and checked on its descriptor, so a FIFO named like an
    image (whose ``open`` would wait forever for a writer) or a device is refused, also when it
    replaced a regular file after the folder was listed.

    Raises:
        OSError: For anything but a regular file, or when it cannot be opened.
    """
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(f"{str(path)!r} is not a regular file")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _find_images(directory: Path, extensions: frozenset[str], unreadable: list[Path]) -> list[Path]:
    """Entries under ``directory`` with a matching extension, in sorted depth-first order.

    Hidden folders are skipped, symlinked folders followed (each folder is read once, so a
    symlink loop ends). Entries that are not folders are listed whatever their file type; the
    reader refuses the ones that are not regular files. Folders that cannot be listed are
    appended to ``unreadable``.
    """
    found: list[Path] = []
    visited: set[tuple[int, int]] = set()
    stack = [directory]
    while stack:
        folder = stack.pop()
        try:
            info = folder.stat()
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError:
            unreadable.append(folder)
            continue
        if (info.st_dev, info.st_ino) in visited:
            continue
        visited.add((info.st_dev, info.st_ino))
        subfolders = []
        for entry in entries:
            try:
                is_folder = entry.is_dir()  # follows symlinks
            except OSError:
                is_folder = False
            if is_folder:
                if not _is_hidden(entry.name):
                    subfolders.append(Path(entry.path))
            elif os.path.splitext(entry.name)[1].lower() in extensions:
                found.append(Path(entry.path))
        stack.extend(reversed(subfolders))
    return found


def _list_root(root: Path) -> list[Path]:
    """The sorted entries of the dataset's root; an ``OSError`` naming it when it cannot be
    listed (then nothing at all can be read)."""
    try:
        return sorted(root.iterdir())
    except OSError as error:
        raise OSError(f"root {str(root)!r} cannot be listed: {error}") from error


def _normalise_extensions(extensions: Iterable[str]) -> frozenset[str]:
    if isinstance(extensions, str):
        extensions = (extensions,)
    normalised = frozenset(
        (ext if ext.startswith(".") else f".{ext}").lower() for ext in extensions
    )
    if not normalised:
        raise ValueError("extensions must name at least one file extension, got none")
    return normalised


class ImageFolderDataset(Dataset[tuple[Any, int] | None]):
    """Images from a folder tree, labelled by class subfolder or unlabelled (see module docs).

    ``dataset[i]`` is ``(image, label)`` or, for an unreadable file with ``on_error="skip"``,
    ``None``. Without a transform ``image`` is a tensor ``(C, H, W)`` (uint8 for ``"RGB"``/``"L"``,
    see ``pil_to_tensor`` for kept modes); with one, the transform receives the PIL image.

    Args:
        root: The folder.
        transform: Optional callable applied to each PIL image.
        mode: Channel mode every image is converted to: ``"RGB"`` (default, 3 channels), ``"L"``
            (1 channel), or ``None``/``"auto"`` to keep each image's decoded mode (a batch may
            then mix channel counts).
        layout: ``"auto"``, ``"classes"`` or ``"flat"``.
        extensions: File extensions that count as images.
        on_error: For an unreadable file: ``"skip"`` returns ``None`` (use ``collate_skip_none``),
            ``"replace"`` returns the next readable sample (index + 1, + 2, ... wrapping around),
            which keeps batch sizes constant, ``"raise"`` raises ``OSError``.
    """

    def __init__(
        self,
        root: str | Path,
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        mode: str | None = "RGB",
        layout: FolderLayout = "auto",
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        on_error: OnError = "skip",
    ) -> None:
        if root is None or not isinstance(root, (str, Path)):
            raise ValueError(
                f"root must be the path of an image folder (str or Path), got {root!r}"
            )
        root_path = Path(root).expanduser()
        if not root_path.exists():
            raise ValueError(f"root {str(root)!r} does not exist")
        if not root_path.is_dir():
            raise ValueError(f"root {str(root)!r} is not a directory")
        if layout not in _LAYOUTS:
            raise ValueError(f"layout must be one of {list(_LAYOUTS)}, got {layout!r}")
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be one of {list(_ON_ERROR)}, got {on_error!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        self.mode = check_image_mode(mode)
        self.extensions = _normalise_extensions(extensions)

        root_entries = _list_root(root_path)
        top_level_images = [
            entry
            for entry in root_entries
            if not entry.is_dir() and entry.suffix.lower() in self.extensions
        ]
        if layout == "auto":
            layout = "flat" if top_level_images else "classes"
        self.layout: FolderLayout = layout

        self.classes: list[str] = []
        self.samples: list[tuple[Path, int]] = []
        unreadable: list[Path] = []
        if layout == "flat":
            self.samples = [
                (path, UNLABELED) for path in _find_images(root_path, self.extensions, unreadable)
            ]
        else:
            self.classes = sorted(
                entry.name
                for entry in root_entries
                if entry.is_dir() and not _is_hidden(entry.name)
            )
            for label, name in enumerate(self.classes):
                self.samples.extend(
                    (path, label)
                    for path in _find_images(root_path / name, self.extensions, unreadable)
                )
            if top_level_images:
                logger.warning(
                    "layout='classes' ignores %d image files directly in %s",
                    len(top_level_images),
                    root_path,
                )
        if unreadable and on_error == "raise":
            raise OSError(
                f"{len(unreadable)} folder(s) under root {str(root)!r} cannot be listed "
                f"(first: {str(unreadable[0])!r}); fix their permissions"
            )
        if unreadable:
            logger.warning(
                "%d folder(s) under %s cannot be listed and are skipped (first: %s)",
                len(unreadable),
                root_path,
                unreadable[0],
            )
        #: Folders that could not be listed; counted in ``num_skipped``.
        self.unreadable_folders: list[Path] = unreadable
        if not self.samples:
            unlisted = f"; {len(unreadable)} folder(s) cannot be listed" if unreadable else ""
            raise ValueError(
                f"root {str(root)!r} contains no image files (layout={layout!r}, extensions "
                f"{sorted(self.extensions)}){unlisted}"
            )
        self.class_to_idx: dict[str, int] = {name: i for i, name in enumerate(self.classes)}
        self.root = root_path
        self.transform = transform
        self.on_error: OnError = on_error
        # One flag per sample in shared memory: workers write, the main process reads.
        skipped = torch.zeros(len(self.samples), dtype=torch.bool)
        self._skipped = skipped.share_memory_()  # type: ignore[no-untyped-call]  # torch lacks hints

    @property
    def targets(self) -> list[int]:
        """Label of every sample, in sample order."""
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int] | None:
        size = len(self.samples)
        index = operator.index(index)
        if not -size <= index < size:
            raise IndexError(f"index {index} is out of range for a dataset of {size} images")
        index %= size
        attempts = size if self.on_error == "replace" else 1
        for offset in range(attempts):
            position = (index + offset) % size
            if self._skipped[position]:
                continue
            path, label = self.samples[position]
            try:
                image = load_image(path, self.mode)
            except Exception as error:  # corrupt files raise all sorts of errors from Pillow
                if self.on_error == "raise":
                    raise OSError(f"unreadable image file {str(path)!r}: {error}") from error
                self._skipped[position] = True
                logger.debug("skipping unreadable image %s: %s", path, error)
                continue
            # The transform runs outside the try: an error there is a bug to see, not a bad file.
            sample = pil_to_tensor(image) if self.transform is None else self.transform(image)
            return sample, label
        if self.on_error == "replace":
            raise OSError(
                f"none of the {size} image files under root {str(self.root)!r} is readable"
            )
        return None

    @property
    def num_skipped(self) -> int:
        """Number of distinct files found unreadable so far (in any process), plus the folders
        that could not be listed."""
        return len(self.unreadable_folders) + int(self._skipped.sum())

    def skipped_paths(self) -> list[Path]:
        """The folders that could not be listed, then the files found unreadable so far, in
        sample order."""
        files = [self.samples[int(i)][0] for i in torch.nonzero(self._skipped).flatten()]
        return [*self.unreadable_folders, *files]

    def report_skipped(self, log: logging.Logger | None = None) -> int:
        """Log ``"skipped N unreadable files (first: PATH)"`` as a warning if any were skipped.

        Call it in the main process, e.g. at the end of an epoch.

        Args:
            log: Logger to use; defaults to this module's logger.

        Returns:
            The number of skipped files.
        """
        paths = self.skipped_paths()
        if paths:
            (log or logger).warning("skipped %d unreadable files (first: %s)", len(paths), paths[0])
        return len(paths)


def collate_skip_none(batch: Sequence[Any]) -> Any:
    """``default_collate`` after dropping ``None`` samples (unreadable files).

    Args:
        batch: Samples as returned by a dataset, some possibly ``None``.

    Returns:
        The collated batch of the remaining samples (e.g. ``[images (B', C, H, W), labels (B',)]``
        with B' <= B), or ``None`` when every sample of the batch was unreadable — a training
        loop must skip such a batch.
    """
    kept = [sample for sample in batch if sample is not None]
    if not kept:
        return None
    return default_collate(kept)
