"""Evaluation protocols on labelled datasets of uint8 images: kNN, linear probe, fine-tuning.

The functions here take what a training run knows (the encoder, the datasets of stored uint8
images, the input normalisation and size) and run one protocol end to end; ``ssl-mae evaluate``
and ``ssl-mae pretrain`` call them.

Unreadable image files are never replaced by other images in evaluation: a dataset that returns
``None`` for a file (``ImageFolderDataset(on_error="skip")``) has it dropped from the batch and
counted, and the result reports ``skipped_files``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ssl_mae.data.factory import unwrap_subset
from ssl_mae.data.image_folder import collate_skip_none
from ssl_mae.data.normalize import normalize_images
from ssl_mae.evaluation.features import extract_features
from ssl_mae.evaluation.finetune import finetune
from ssl_mae.evaluation.knn import knn_accuracy, standardize_features
from ssl_mae.evaluation.linear_probe import train_linear_probe

__all__ = [
    "EvalBatches",
    "NormalizedImages",
    "default_knn_k",
    "finetune_evaluate",
    "frozen_features",
    "knn_evaluate",
    "linear_evaluate",
]

logger = logging.getLogger(__name__)

Normalize = Mapping[str, Sequence[float]] | None


def _skipped(dataset: Dataset[Any]) -> int:
    count = getattr(unwrap_subset(dataset), "num_skipped", 0)
    return int(count) if isinstance(count, int) else 0


class EvalBatches:
    """Iterable of ``(normalised images, labels)`` batches over a dataset of uint8 images.

    Samples the dataset returns as ``None`` (unreadable files) are dropped and counted in
    :attr:`skipped_files`.

    Args:
        dataset: Dataset of ``(uint8 image (C, H, W), label)`` or ``None``.
        batch_size: Images per batch.
        normalize: ``{"mean", "std"}`` of the model input, or None.
        size: Model input ``(height, width)``.
        num_workers: DataLoader workers.
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        batch_size: int,
        normalize: Normalize,
        size: tuple[int, int],
        num_workers: int = 0,
    ) -> None:
        self.dataset = dataset
        self.loader: DataLoader[Any] = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=collate_skip_none,
        )
        self.normalize = normalize
        self.size = size

    @property
    def skipped_files(self) -> int:
        """Unreadable files found in the dataset so far."""
        return _skipped(self.dataset)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for batch in self.loader:
            if batch is None:  # every file of the batch was unreadable
                continue
            images, labels = batch[0], batch[1]
            yield normalize_images(images, self.normalize, self.size), labels


def frozen_features(
    encoder: nn.Module,
    dataset: Dataset[Any],
    normalize: Normalize,
    img_size: tuple[int, int],
    pool: str = "mean",
    batch_size: int = 512,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    layers: int = 1,
) -> tuple[Tensor, Tensor, int]:
    """Features of every readable image of ``dataset``; ``layers > 1`` concatenates the pooled
    tokens of the last ``layers`` blocks (see :func:`~ssl_mae.evaluation.encode_layers`).

    Returns:
        ``(features (N, D), labels (N,), skipped files)``.
    """
    batches = EvalBatches(dataset, batch_size, normalize, img_size, num_workers)
    features, labels = extract_features(encoder, batches, pool=pool, device=device, layers=layers)
    return features, labels, batches.skipped_files


def _check_labelled(*labels: Tensor) -> None:
    if any(bool((y < 0).any()) for y in labels):
        raise ValueError(
            "evaluation needs labelled images; the dataset has unlabelled ones (a flat image "
            "folder); use a folder with one subfolder per class"
        )


def default_knn_k(num_train: int, num_classes: int, k_max: int = 200) -> int:
    """The kNN ``k`` when none is given: 200 (InstDisc) but at most the mean class size.

    More neighbours than a class holds must include other classes, which turns the vote
    towards the class frequencies (a 304-image bank with k=200 votes at chance).
    """
    return max(1, min(k_max, num_train // max(num_classes, 1)))


def knn_evaluate(
    encoder: nn.Module,
    train_set: Dataset[Any],
    test_set: Dataset[Any],
    normalize: Normalize,
    img_size: tuple[int, int],
    num_classes: int,
    k: int | None = 200,
    temperature: float = 0.07,
    pool: str = "mean",
    batch_size: int = 512,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    layers: int = 1,
    standardize: bool = False,
) -> dict[str, float]:
    """kNN top-1/top-5 of a frozen encoder: features of the whole train split as the bank,
    the test split as queries.

    Args:
        encoder: Encoder with ``encode`` + ``num_prefix_tokens`` (e.g. ``MAE.encoder``) or any
            backbone :func:`~ssl_mae.evaluation.extract_features` accepts.
        train_set: Labelled dataset of uint8 images (the bank).
        test_set: Labelled dataset of uint8 images (the queries).
        normalize: Normalisation of the model input, as in training.
        img_size: Model input ``(height, width)``.
        num_classes: Number of classes.
        k: Neighbours; None picks :func:`default_knn_k`. A ``k`` larger than the bank is
            clamped to its size with a logged warning.
        temperature: Vote temperature.
        pool: ``"mean"`` (patch tokens) or ``"cls"``.
        batch_size: Images per forward pass.
        device: Where to run the encoder (default: where it is).
        num_workers: DataLoader workers.
        layers: Pool the last ``layers`` blocks and concatenate them (1: the output only).
        standardize: Z-score every feature dimension with the bank's mean and std before the
            cosine similarity (:func:`~ssl_mae.evaluation.knn.standardize_features`).

    Returns:
        ``{"top1": %, "top5": %, "k": k used, "temperature": t, "standardize": 0 or 1,
        "num_train": N, "num_test": M, "skipped_files": unreadable files}`` with accuracies in
        percent.
    """
    train_x, train_y, skipped_train = frozen_features(
        encoder, train_set, normalize, img_size, pool, batch_size, device, num_workers, layers
    )
    test_x, test_y, skipped_test = frozen_features(
        encoder, test_set, normalize, img_size, pool, batch_size, device, num_workers, layers
    )
    _check_labelled(train_y, test_y)
    num_train = train_x.shape[0]
    if k is None:
        k_used = default_knn_k(num_train, num_classes)
    else:
        k_used = min(k, num_train)
        if k_used < k:
            logger.warning(
                "kNN k=%d is larger than the bank of %d images; using k=%d", k, num_train, k_used
            )
    if standardize:
        train_x, test_x = standardize_features(train_x, test_x)
    result = knn_accuracy(
        train_x, train_y, test_x, test_y, num_classes=num_classes, k=k_used, temperature=temperature
    )
    return {
        "top1": 100.0 * float(result["top1"]),
        "top5": 100.0 * float(result["top5"]),
        "k": float(k_used),
        "temperature": float(temperature),
        "standardize": float(standardize),
        "num_train": float(num_train),
        "num_test": float(test_x.shape[0]),
        "skipped_files": float(skipped_train + skipped_test),
    }


def linear_evaluate(
    encoder: nn.Module,
    train_set: Dataset[Any],
    test_set: Dataset[Any],
    normalize: Normalize,
    img_size: tuple[int, int],
    num_classes: int,
    pool: str = "mean",
    batch_size: int = 512,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    probe_options: Mapping[str, Any] | None = None,
    layers: int = 1,
) -> dict[str, Any]:
    """Linear-probe top-1/top-5 of a frozen encoder (features extracted once, then
    :func:`~ssl_mae.evaluation.train_linear_probe` with its size-derived defaults).

    Args:
        encoder: The frozen encoder.
        train_set: Labelled dataset of uint8 images the probe trains on.
        test_set: Labelled dataset of uint8 images it is tested on.
        normalize: Normalisation of the model input.
        img_size: Model input ``(height, width)``.
        num_classes: Number of classes.
        pool: ``"mean"`` or ``"cls"``.
        batch_size: Images per forward pass of the feature extraction.
        device: Where to run.
        num_workers: DataLoader workers.
        probe_options: Arguments of :func:`~ssl_mae.evaluation.train_linear_probe`
            (``epochs``, ``batch_size``, ``base_lr``, ``seed``, ...); unset ones take its
            defaults, which are derived from the size of the training set.
        layers: Pool the last ``layers`` blocks and concatenate them (1: the output only).

    Returns:
        ``{"top1": %, "top5": %, "optimizer", "epochs", "batch_size", "lr", "weight_decay",
        "num_train", "num_test", "skipped_files"}``.
    """
    train_x, train_y, skipped_train = frozen_features(
        encoder, train_set, normalize, img_size, pool, batch_size, device, num_workers, layers
    )
    test_x, test_y, skipped_test = frozen_features(
        encoder, test_set, normalize, img_size, pool, batch_size, device, num_workers, layers
    )
    _check_labelled(train_y, test_y)
    result = train_linear_probe(
        train_x, train_y, test_x, test_y, num_classes, device=device, **dict(probe_options or {})
    )
    settings = result["settings"]
    return {
        "top1": 100.0 * float(result["top1"]),
        "top5": 100.0 * float(result["top5"]),
        "optimizer": str(settings["optimizer"]),
        "epochs": float(settings["epochs"]),
        "batch_size": float(settings["batch_size"]),
        "lr": float(settings["lr"]),
        "weight_decay": float(settings["weight_decay"]),
        "num_train": float(train_x.shape[0]),
        "num_test": float(test_x.shape[0]),
        "skipped_files": float(skipped_train + skipped_test),
    }


class NormalizedImages(Dataset[Any]):
    """A dataset of uint8 images as normalised float images (``None`` samples pass through).

    Args:
        dataset: Dataset of ``(uint8 image (C, H, W), label)`` or ``None``.
        normalize: ``{"mean", "std"}`` or None.
        size: Model input ``(height, width)``.
    """

    def __init__(self, dataset: Dataset[Any], normalize: Normalize, size: tuple[int, int]) -> None:
        self.dataset = dataset
        self.normalize = normalize
        self.size = size

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        sample = self.dataset[index]
        if sample is None:
            return None
        image, label = sample[0], sample[1]
        return normalize_images(image.unsqueeze(0), self.normalize, self.size)[0], label


def finetune_evaluate(
    encoder: nn.Module,
    train_set: Dataset[Any],
    test_set: Dataset[Any],
    normalize: Normalize,
    img_size: tuple[int, int],
    num_classes: int,
    pool: str = "mean",
    epochs: int = 10,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    **finetune_kwargs: Any,
) -> dict[str, float]:
    """Fine-tunes a copy of ``encoder`` with a linear head end to end (MAE recipe, see
    :func:`~ssl_mae.evaluation.finetune`) and reports test accuracy. Images are only resized and
    normalised (no augmentation).

    Args:
        encoder: The pre-trained encoder; it is copied, not changed.
        train_set: Labelled dataset of uint8 images to fine-tune on.
        test_set: Labelled dataset of uint8 images to test on.
        normalize: Normalisation of the model input.
        img_size: Model input ``(height, width)``.
        num_classes: Number of classes.
        pool: Pooling in front of the head, ``"mean"`` or ``"cls"``.
        epochs: Passes over the training set.
        batch_size: Images per step.
        seed: Seeds the head and the shuffling.
        device: Where to train.
        num_workers: DataLoader workers.
        **finetune_kwargs: Further arguments of :func:`~ssl_mae.evaluation.finetune`.

    Returns:
        ``{"top1": %, "top5": %, "loss", "epochs", "batch_size", "num_train", "num_test",
        "skipped_files"}``.
    """
    train = NormalizedImages(train_set, normalize, img_size)
    test = NormalizedImages(test_set, normalize, img_size)
    size = len(train)
    generator = torch.Generator().manual_seed(seed)
    train_loader: DataLoader[Any] = DataLoader(
        train,
        batch_size=batch_size,
        shuffle=True,
        drop_last=size > batch_size,
        generator=generator,
        collate_fn=collate_skip_none,
        num_workers=num_workers,
    )
    test_loader: DataLoader[Any] = DataLoader(
        test, batch_size=batch_size, collate_fn=collate_skip_none, num_workers=num_workers
    )
    result = finetune(
        copy.deepcopy(encoder),
        train_loader,
        test_loader,
        num_classes,
        pool=pool,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        device=device,
        **finetune_kwargs,
    )
    return {
        "top1": 100.0 * float(result["top1"]),
        "top5": 100.0 * float(result["top5"]),
        "loss": float(result["loss"]),
        "epochs": float(epochs),
        "batch_size": float(batch_size),
        "num_train": float(size - _skipped(train_set)),
        "num_test": float(len(test) - _skipped(test_set)),
        "skipped_files": float(_skipped(train_set) + _skipped(test_set)),
    }
