"""CIFAR-10, CIFAR-100 and STL-10 through torchvision, with no download unless asked for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ssl_mae.data.locations import default_data_root

# name -> (torchvision class name, folder torchvision expects under root, where to get the files)
_SOURCES: dict[str, tuple[str, str, str]] = {
    "cifar10": (
        "CIFAR10",
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": (
        "CIFAR100",
        "cifar-100-python",
        "cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "stl10": (
        "STL10",
        "stl10_binary",
        "stl10_binary.tar.gz from https://cs.stanford.edu/~acoates/stl10/",
    ),
}

STL10_SPLITS = ("train", "test", "unlabeled", "train+unlabeled")


def build_torchvision_dataset(
    name: str,
    root: str | Path | None = None,
    train: bool = True,
    transform: Callable[[Any], Any] | None = None,
    *,
    download: bool = False,
    split: str | None = None,
) -> Dataset[Any]:
    """Construct a torchvision CIFAR-10, CIFAR-100 or STL-10 dataset.

    Samples are ``(PIL RGB image, int label)`` (32x32 for CIFAR, 96x96 for STL-10), or
    ``(transform(image), label)``. STL-10's unlabeled images have label -1.

    Args:
        name: ``"cifar10"``, ``"cifar100"`` or ``"stl10"``.
        root: Directory holding the extracted archive folder; defaults to ``default_data_root()``.
        train: Training split if True, test split if False (STL-10: ``"train"``/``"test"``).
        transform: Optional callable applied to each PIL image.
        download: Let torchvision download missing files (off by default: no surprise traffic).
        split: STL-10 only, overrides ``train``: one of ``STL10_SPLITS``.

    Raises:
        ValueError: For an unknown ``name`` or ``split``, or ``split`` given for CIFAR.
        FileNotFoundError: If the files are absent and ``download`` is False; the message says
            where to put them.
    """
    if name not in _SOURCES:
        raise ValueError(f"name must be one of {sorted(_SOURCES)}, got {name!r}")
    if root is not None and not isinstance(root, (str, Path)):
        raise TypeError(f"root must be a str, pathlib.Path or None, got {type(root).__name__}")
    class_name, folder, source = _SOURCES[name]
    root_path = Path(root).expanduser() if root is not None else default_data_root()

    import torchvision.datasets  # attribute looked up at call time, so tests can substitute it

    dataset_class = getattr(torchvision.datasets, class_name)
    kwargs: dict[str, Any] = {"transform": transform, "download": download}
    if name == "stl10":
        split = split if split is not None else ("train" if train else "test")
        if split not in STL10_SPLITS:
            raise ValueError(f"split must be one of {list(STL10_SPLITS)}, got {split!r}")
        kwargs["split"] = split
    else:
        if split is not None:
            raise ValueError(
                f"split is only used by 'stl10'; for {name!r} use train, got {split!r}"
            )
        kwargs["train"] = train

    if not download and not (root_path / folder).is_dir():
        raise FileNotFoundError(_missing_message(name, root_path, folder, source))
    try:
        dataset: Dataset[Any] = dataset_class(root=str(root_path), **kwargs)
    except RuntimeError as error:
        # torchvision reports missing or corrupt files as RuntimeError("Dataset not found ...").
        if download:
            raise
        raise FileNotFoundError(
            f"{_missing_message(name, root_path, folder, source)} (torchvision: {error})"
        ) from error
    return dataset


def _missing_message(name: str, root: Path, folder: str, source: str) -> str:
    return (
        f"{name} not found under root {str(root)!r}: expected the folder "
        f"{str(root / folder)!r}. Extract {source} into root, or pass download=True"
    )
