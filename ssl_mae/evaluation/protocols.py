"""Evaluation protocols on labelled image datasets: the frozen-feature kNN of ``ssl-mae``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ssl_mae.data.normalize import normalize_images
from ssl_mae.evaluation.features import extract_features
from ssl_mae.evaluation.knn import knn_accuracy

__all__ = ["knn_evaluate"]


class _EvalBatches:
    """Iterable of ``(normalised images, labels)`` over a uint8 dataset, for feature extraction."""

    def __init__(
        self,
        dataset: Dataset[Any],
        batch_size: int,
        normalize: Mapping[str, Sequence[float]] | None,
        size: tuple[int, int],
        num_workers: int,
    ) -> None:
        self.loader: DataLoader[Any] = DataLoader(
            dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers
        )
        self.normalize = normalize
        self.size = size

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for images, labels, *_ in self.loader:
            yield normalize_images(images, self.normalize, self.size), labels


def knn_evaluate(
    encoder: nn.Module,
    train_set: Dataset[Any],
    test_set: Dataset[Any],
    normalize: Mapping[str, Sequence[float]] | None,
    img_size: tuple[int, int],
    num_classes: int,
    k: int = 200,
    temperature: float = 0.07,
    pool: str = "mean",
    batch_size: int = 512,
    device: torch.device | str | None = None,
    num_workers: int = 0,
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
        k: Neighbours; clamped to the size of the bank.
        temperature: Vote temperature.
        pool: ``"mean"`` (patch tokens) or ``"cls"``.
        batch_size: Images per forward pass.
        device: Where to run the encoder (default: where it is).
        num_workers: DataLoader workers.

    Returns:
        ``{"top1": %, "top5": %, "k": k used, "num_train": N, "num_test": M}`` with accuracies
        in percent.
    """
    train_x, train_y = extract_features(
        encoder,
        _EvalBatches(train_set, batch_size, normalize, img_size, num_workers),
        pool=pool,
        device=device,
    )
    test_x, test_y = extract_features(
        encoder,
        _EvalBatches(test_set, batch_size, normalize, img_size, num_workers),
        pool=pool,
        device=device,
    )
    if bool((train_y < 0).any()) or bool((test_y < 0).any()):
        raise ValueError(
            "kNN evaluation needs labelled images; the dataset has unlabelled ones (a flat "
            "image folder); use a folder with one subfolder per class"
        )
    k_used = min(k, train_x.shape[0])
    result = knn_accuracy(
        train_x, train_y, test_x, test_y, num_classes=num_classes, k=k_used, temperature=temperature
    )
    return {
        "top1": 100.0 * float(result["top1"]),
        "top5": 100.0 * float(result["top5"]),
        "k": float(k_used),
        "num_train": float(train_x.shape[0]),
        "num_test": float(test_x.shape[0]),
    }
