"""Fashion-MNIST: read the official IDX files, fall back to torchvision when they are absent.

Lookup order for the directory holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``:

1. the ``root`` argument, else ``$SSL_MAE_FASHION_MNIST``: only that directory (and its
   torchvision-style ``FashionMNIST/raw`` subfolder) is searched;
2. otherwise the Debian package directory ``/usr/share/datasets/fashion-mnist`` and then
   ``default_data_root()/FashionMNIST/raw`` (where a previous fallback download landed).

If no directory holds the files of the requested split, torchvision's ``FashionMNIST`` downloads
them (``download=True``) into the explicit root, or into ``default_data_root()``.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_mae.data.locations import DEBIAN_FASHION_MNIST_DIR, FASHION_MNIST_ENV, default_data_root
from ssl_mae.data.tensor_dataset import TensorImageDataset

logger = logging.getLogger(__name__)

#: Class names in label order (index 0 = "T-shirt/top").
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: IDX magic numbers: two zero bytes, a type code (0x08 = unsigned byte) and the number of dims.
IDX_MAGIC_IMAGES = 0x00000803
IDX_MAGIC_LABELS = 0x00000801

# IDX type code -> big-endian numpy dtype (see the format description on the MNIST page).
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

_SPLIT_PREFIX = {True: "train", False: "t10k"}


def read_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray[Any, Any]:
    """Parse one IDX file (optionally gzip-compressed, detected by the ``.gz`` suffix).

    Args:
        path: The ``.gz`` or uncompressed IDX file.
        expected_magic: If given, the file's 4-byte magic number must equal it, e.g.
            ``IDX_MAGIC_IMAGES`` (0x00000803) for an unsigned-byte 3-D array.

    Returns:
        An array of the shape stored in the header, e.g. images ``(N, 28, 28)`` uint8 or labels
        ``(N,)`` uint8, in native byte order and writable.

    Raises:
        ValueError: If the file is not valid gzip, the magic number is wrong or unknown, or the
            payload size does not match the header (truncated file or trailing bytes).
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                buffer = bytearray(stream.read())
        else:
            buffer = bytearray(path.read_bytes())
    except (OSError, EOFError) as error:  # BadGzipFile is an OSError; EOFError = truncated gzip
        raise ValueError(f"cannot read IDX file {str(path)!r}: {error}") from error

    if len(buffer) < 4:
        raise ValueError(
            f"IDX file {str(path)!r} has {len(buffer)} bytes; expected at least a 4-byte header"
        )
    magic = int.from_bytes(buffer[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(
            f"IDX file {str(path)!r} has magic number 0x{magic:08X}; expected "
            f"0x{expected_magic:08X}. The file is corrupt or is not the file its name says."
        )
    type_code, ndim = buffer[2], buffer[3]
    if buffer[0] != 0 or buffer[1] != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"IDX file {str(path)!r} has invalid magic number 0x{magic:08X}: expected two zero "
            f"bytes, a type code in {sorted(hex(code) for code in _IDX_DTYPES)} and ndim >= 1"
        )
    header_size = 4 + 4 * ndim
    if len(buffer) < header_size:
        raise ValueError(
            f"IDX file {str(path)!r} is truncated inside its header ({len(buffer)} bytes, "
            f"header needs {header_size})"
        )
    shape = tuple(
        int.from_bytes(buffer[4 + 4 * axis : 8 + 4 * axis], "big") for axis in range(ndim)
    )
    dtype = np.dtype(_IDX_DTYPES[type_code])
    payload_size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(buffer) != header_size + payload_size:
        raise ValueError(
            f"IDX file {str(path)!r} holds {len(buffer) - header_size} data bytes but its header "
            f"declares shape {shape} ({payload_size} bytes): the file is truncated or corrupt"
        )
    array = np.frombuffer(buffer, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def find_fashion_mnist_files(directory: str | Path, train: bool = True) -> tuple[Path, Path] | None:
    """Locate the images and labels IDX files of one split inside ``directory``.

    Looks in ``directory`` and in its torchvision layout ``directory/FashionMNIST/raw``, for the
    ``.gz`` file first and the uncompressed one second.

    Args:
        directory: Directory to search.
        train: ``True`` for the 60k training split (``train-*``), ``False`` for the 10k test
            split (``t10k-*``).

    Returns:
        ``(images_path, labels_path)``, or ``None`` if either file is missing.
    """
    prefix = _SPLIT_PREFIX[bool(train)]
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    base = Path(directory)
    for candidate in (base, base / "FashionMNIST" / "raw"):
        found: list[Path] = []
        for stem in stems:
            for name in (f"{stem}.gz", stem):
                if (candidate / name).is_file():
                    found.append(candidate / name)
                    break
        if len(found) == 2:
            return found[0], found[1]
    return None


def read_fashion_mnist_files(
    images_path: str | Path, labels_path: str | Path
) -> tuple[torch.Tensor, torch.Tensor]:
    """Parse and validate a Fashion-MNIST images/labels file pair.

    Args:
        images_path: IDX file with magic 0x00000803 and shape ``(N, 28, 28)``.
        labels_path: IDX file with magic 0x00000801 and shape ``(N,)``, values in 0..9.

    Returns:
        ``images`` ``(N, 28, 28)`` uint8 and ``labels`` ``(N,)`` int64.

    Raises:
        ValueError: On a wrong magic number, a wrong image size, differing counts or labels
            outside 0..9.
    """
    images = read_idx(images_path, expected_magic=IDX_MAGIC_IMAGES)
    labels = read_idx(labels_path, expected_magic=IDX_MAGIC_LABELS)
    if images.shape[1:] != (28, 28):
        raise ValueError(
            f"Fashion-MNIST images in {str(images_path)!r} have shape {images.shape}; "
            "expected (N, 28, 28)"
        )
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"Fashion-MNIST files disagree: {images.shape[0]} images in {str(images_path)!r} but "
            f"{labels.shape[0]} labels in {str(labels_path)!r}"
        )
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise ValueError(
            f"Fashion-MNIST labels in {str(labels_path)!r} must lie in 0..9, found "
            f"{int(labels.max())}"
        )
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def load_fashion_mnist(
    train: bool = True, root: str | Path | None = None, *, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one Fashion-MNIST split as tensors.

    Args:
        train: ``True`` for the official 60000-image training split, ``False`` for the 10000-image
            test split.
        root: Directory with the IDX files. Defaults to ``$SSL_MAE_FASHION_MNIST``, then the
            Debian package directory (see the module docstring for the full lookup order).
        download: Allow the torchvision fallback to download the files when no directory holds
            them. With ``False`` a missing dataset raises ``FileNotFoundError`` instead.

    Returns:
        ``images`` ``(N, 28, 28)`` uint8 in [0, 255] and ``labels`` ``(N,)`` int64 in 0..9.

    Raises:
        TypeError: If ``root`` is not a str or Path.
        ValueError: If ``root`` is a file, or the files found are corrupt (see ``read_idx``).
        FileNotFoundError: If the files are absent and ``download`` is False.
    """
    if root is not None and not isinstance(root, (str, Path)):
        raise TypeError(f"root must be a str, pathlib.Path or None, got {type(root).__name__}")
    explicit = root if root is not None else (os.environ.get(FASHION_MNIST_ENV) or None)
    if explicit is not None:
        explicit_dir = Path(explicit).expanduser()
        if explicit_dir.exists() and not explicit_dir.is_dir():
            raise ValueError(f"root must be a directory, got the file {str(explicit_dir)!r}")
        search_dirs = [explicit_dir]
        download_dir = explicit_dir
    else:
        download_dir = default_data_root()
        search_dirs = [DEBIAN_FASHION_MNIST_DIR, download_dir]

    for directory in search_dirs:
        files = find_fashion_mnist_files(directory, train)
        if files is not None:
            logger.debug("reading Fashion-MNIST from %s and %s", *files)
            return read_fashion_mnist_files(*files)

    searched = ", ".join(repr(str(directory)) for directory in search_dirs)
    if not download:
        raise FileNotFoundError(
            f"Fashion-MNIST ({_SPLIT_PREFIX[bool(train)]}) not found in {searched}: install the "
            "Debian package 'fashion-mnist', place the IDX .gz files in root (or "
            f"${FASHION_MNIST_ENV}), or pass download=True"
        )
    logger.info(
        "Fashion-MNIST IDX files not found in %s; falling back to torchvision download into %s",
        searched,
        download_dir,
    )
    # Looked up at call time so that tests (and users) can substitute the class.
    import torchvision.datasets

    fallback = torchvision.datasets.FashionMNIST(root=str(download_dir), train=train, download=True)
    images = torch.as_tensor(fallback.data, dtype=torch.uint8)
    labels = torch.as_tensor(fallback.targets, dtype=torch.int64)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise ValueError(
            f"torchvision FashionMNIST in {str(download_dir)!r} returned images of shape "
            f"{tuple(images.shape)} and labels of shape {tuple(labels.shape)}; expected "
            "(N, 28, 28) and (N,)"
        )
    return images, labels


class FashionMNISTDataset(TensorImageDataset):
    """Fashion-MNIST as a map-style dataset of 1-channel 28x28 images.

    ``dataset[i]`` is ``(image, label)``: without a transform ``image`` is a uint8 tensor
    ``(1, 28, 28)``; with one, the transform receives a PIL image of mode ``"L"`` (grayscale stays
    one channel). ``label`` is an int in 0..9, see ``FASHION_MNIST_CLASSES``.

    Args:
        root: Directory with the IDX files; see ``load_fashion_mnist``.
        train: Training (60000) or test (10000) split.
        transform: Optional callable applied to each PIL image.
        download: Allow the torchvision download fallback.
    """

    classes: tuple[str, ...] = FASHION_MNIST_CLASSES

    def __init__(
        self,
        root: str | Path | None = None,
        train: bool = True,
        transform: Callable[[Any], Any] | None = None,
        *,
        download: bool = True,
    ) -> None:
        images, labels = load_fashion_mnist(train=train, root=root, download=download)
        super().__init__(images.unsqueeze(1), labels, transform=transform)
        self.train = train
