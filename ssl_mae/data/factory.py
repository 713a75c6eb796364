"""One entry point for every supported dataset, plus what a model needs to know about each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ssl_mae.data.fashion_mnist import FashionMNISTDataset
from ssl_mae.data.image_folder import ImageFolderDataset
from ssl_mae.data.image_modes import mode_channels
from ssl_mae.data.torchvision_datasets import build_torchvision_dataset


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a named dataset.

    Attributes:
        name: Canonical name accepted by ``build_dataset``.
        channels: Image channels (the model's ``in_chans``); ``None`` when it depends on
            arguments (an image folder's ``mode``).
        image_size: Native ``(H, W)``, ``None`` when the images vary.
        num_classes: Number of labels, ``None`` when unknown in advance.
    """

    name: str
    channels: int | None
    image_size: tuple[int, int] | None
    num_classes: int | None


DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo("fashion_mnist", 1, (28, 28), 10),
    "folder": DatasetInfo("folder", None, None, None),
    "cifar10": DatasetInfo("cifar10", 3, (32, 32), 10),
    "cifar100": DatasetInfo("cifar100", 3, (32, 32), 100),
    "stl10": DatasetInfo("stl10", 3, (96, 96), 10),
}


def _canonical_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {sorted(DATASETS)}, got {name!r}")
    # Accept the spellings people type: "Fashion-MNIST", "CIFAR10", "stl-10".
    key = name.strip().lower().replace("-", "_")
    key = {"fashionmnist": "fashion_mnist", "cifar_10": "cifar10", "cifar_100": "cifar100"}.get(
        key, key
    )
    key = "stl10" if key == "stl_10" else key
    if key not in DATASETS:
        raise ValueError(f"name must be one of {sorted(DATASETS)}, got {name!r}")
    return key


def dataset_info(name: str) -> DatasetInfo:
    """Return the ``DatasetInfo`` of a dataset name accepted by ``build_dataset``.

    Args:
        name: Dataset name (case and ``-``/``_`` insensitive).

    Raises:
        ValueError: For an unknown name; the message lists the allowed ones.
    """
    return DATASETS[_canonical_name(name)]


def dataset_channels(name: str, mode: str | None = "RGB") -> int:
    """Number of image channels ``build_dataset(name, ...)`` yields, i.e. the model's ``in_chans``.

    Args:
        name: Dataset name.
        mode: Only for ``"folder"``: the ``mode`` the folder dataset converts to (``"RGB"`` -> 3,
            ``"L"`` -> 1).

    Raises:
        ValueError: For an unknown name, or a folder with ``mode`` None/"auto" (images keep their
            own channel count, so there is no single answer).
    """
    info = dataset_info(name)
    if info.channels is not None:
        return info.channels
    channels = mode_channels(mode)
    if channels is None:
        raise ValueError(
            f"mode must be 'RGB' or 'L' to know the channels of a 'folder' dataset, got {mode!r}"
        )
    return channels


def build_dataset(
    name: str,
    root: str | Path | None = None,
    train: bool = True,
    transform: Callable[[Any], Any] | None = None,
    **kwargs: Any,
) -> Dataset[Any]:
    """Build a dataset by name.

    Every dataset yields ``(image, label)``; the transform receives a PIL image (mode ``"L"`` for
    Fashion-MNIST, ``"RGB"`` otherwise unless a folder ``mode`` says else).

    Args:
        name: ``"fashion_mnist"``, ``"folder"``, ``"cifar10"``, ``"cifar100"`` or ``"stl10"``.
        root: Data directory. Optional for all but ``"folder"`` (see each dataset for defaults).
        train: Training or test split. Ignored by ``"folder"``: point ``root`` at the split.
        transform: Optional callable applied to each PIL image.
        **kwargs: Passed on: ``download`` (fashion_mnist, default True, and the torchvision
            datasets, default False), ``split`` (stl10), ``mode``/``layout``/``extensions``/
            ``on_error`` (folder).

    Returns:
        ``FashionMNISTDataset``, ``ImageFolderDataset`` or the torchvision dataset.

    Raises:
        ValueError: For an unknown name (the message lists the allowed names), or ``"folder"``
            without a usable ``root``.
    """
    key = _canonical_name(name)
    if key == "fashion_mnist":
        return FashionMNISTDataset(root=root, train=train, transform=transform, **kwargs)
    if key == "folder":
        if root is None:
            raise ValueError("root must be given for the 'folder' dataset, got None")
        return ImageFolderDataset(root, transform=transform, **kwargs)
    return build_torchvision_dataset(key, root=root, train=train, transform=transform, **kwargs)


def unwrap_subset(dataset: Any) -> Any:
    """The dataset inside any number of ``torch.utils.data.Subset`` wrappers."""
    from torch.utils.data import Subset

    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset
