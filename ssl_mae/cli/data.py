"""The datasets of the command line: every split as ``(uint8 image (C, H, W), label)`` samples
at the model's input size.

Training sets replace an unreadable file by the next readable one (batches keep their size; the
files are counted and reported). Evaluation sets (kNN, linear probe, fine-tuning, embeddings)
skip them instead, so no image is ever scored twice in place of another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssl_mae.cli.options import UsageError

__all__ = [
    "ToUint8Tensor",
    "check_dir",
    "check_same_classes",
    "dataset_key",
    "load_split",
    "num_classes_of",
]


class ToUint8Tensor:
    """PIL image -> uint8 tensor (C, H, W), resized to ``size`` when given (bicubic).

    Picklable, so it works in DataLoader worker processes.

    Args:
        size: ``(height, width)`` or None to keep the size.
    """

    def __init__(self, size: tuple[int, int] | None) -> None:
        self.size = size

    def __call__(self, image: Any) -> Any:
        from PIL import Image

        from ssl_mae.data import pil_to_tensor

        if self.size is not None and image.size != (self.size[1], self.size[0]):
            image = image.resize((self.size[1], self.size[0]), Image.Resampling.BICUBIC)
        return pil_to_tensor(image)


def dataset_key(name: str) -> str:
    """The canonical dataset name (``Fashion-MNIST`` -> ``fashion_mnist``)."""
    from ssl_mae.data import dataset_info

    try:
        return dataset_info(name).name
    except ValueError as error:
        raise UsageError(f"--dataset: {error}") from None


def check_dir(path: str | None, option: str) -> None:
    """Raises a :class:`UsageError` naming ``option`` unless ``path`` is None or a folder."""
    if path is not None and not Path(path).expanduser().is_dir():
        what = "is not a directory" if Path(path).expanduser().exists() else "does not exist"
        raise UsageError(f"{option} {path!r} {what}")


def load_split(
    dataset: str,
    data_path: str | None,
    val_path: str | None,
    train: bool,
    img_size: int,
    in_chans: int,
    limit: int | None = None,
    evaluation: bool = False,
    download: bool = False,
) -> Any:
    """One split of a dataset as ``(uint8 image (C, img_size, img_size), label)`` samples.

    Args:
        dataset: Dataset name (see ``ssl_mae.data.DATASETS``).
        data_path: Data directory (the training folder for ``"folder"``).
        val_path: ``"folder"`` only: the held-out folder, used for ``train=False``.
        train: Training or test split.
        img_size: Model input size; images of another size are resized when loaded.
        in_chans: 1 (grayscale) or 3 (RGB).
        limit: Keep only the first ``limit`` images.
        evaluation: Skip unreadable files (return None for them) instead of replacing them.
        download: Let Fashion-MNIST (with a ``data_path``) and the torchvision datasets
            download missing files.

    Returns:
        A dataset, or None for the test split of a folder without ``val_path``.
    """
    from torch.utils.data import Subset

    from ssl_mae.data import build_dataset

    key = dataset_key(dataset)
    size = (img_size, img_size)
    if key == "fashion_mnist":
        if in_chans != 1:
            raise UsageError(f"--in-chans must be 1 for fashion_mnist (grayscale), got {in_chans}")
        # The default location may always fall back to a download; an explicit --data-path
        # only with --download.
        try:
            data: Any = build_dataset(
                key, root=data_path, train=train, download=data_path is None or download
            )
        except FileNotFoundError as error:
            raise UsageError(f"{error} (pass --download to fetch it)") from None
        if img_size != 28:
            data.transform, data.to_pil = ToUint8Tensor(size), True
    elif key == "folder":
        if data_path is None:
            raise UsageError("--data-path is required for --dataset folder")
        root = data_path if train else val_path
        if root is None:
            return None
        data = build_dataset(
            key,
            root=root,
            transform=ToUint8Tensor(size),
            mode="L" if in_chans == 1 else "RGB",
            on_error="skip" if evaluation else "replace",
        )
    else:
        try:
            data = build_dataset(
                key, root=data_path, train=train, transform=ToUint8Tensor(size), download=download
            )
        except FileNotFoundError as error:
            message = str(error).replace("or pass download=True", "or pass --download")
            raise UsageError(message) from None
    if limit is not None and limit < len(data):
        data = Subset(data, range(limit))
    return data


def num_classes_of(dataset: str, train_set: Any) -> int | None:
    """Number of classes of a labelled split; None for unlabelled data (a flat folder)."""
    from ssl_mae.data import dataset_info, unwrap_subset

    known = dataset_info(dataset).num_classes
    if known is not None:
        return known
    classes = getattr(unwrap_subset(train_set), "classes", None)
    return len(classes) if classes else None


def check_same_classes(train_set: Any, test_set: Any) -> None:
    """Two class folders must name the same classes, or label ``i`` would mean different
    things in the two splits."""
    from ssl_mae.data import unwrap_subset

    train = getattr(unwrap_subset(train_set), "classes", None)
    test = getattr(unwrap_subset(test_set), "classes", None)
    if not train or not test or list(train) == list(test):
        return  # a flat folder has no labels to disagree with
    only_train = sorted(set(train) - set(test))
    only_test = sorted(set(test) - set(train))
    raise UsageError(
        "--data-path and --val-path must hold the same class folders (labels are their sorted "
        f"positions); only in --data-path: {only_train[:5]}, only in --val-path: {only_test[:5]}"
    )
