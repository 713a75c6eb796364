"""Weighted k-nearest-neighbour classifier on frozen features (Wu et al. 2018, InstDisc).

Each test sample looks up its ``k`` most cosine-similar training samples; neighbour ``j`` votes
for its own class with weight ``exp(sim_j / temperature)``, and the class with the largest sum of
votes wins. This is the same rule as ``lightly.utils.benchmarking.knn_predict`` (which returns
the ranking of the classes rather than their scores). The weights are computed relative to the
nearest neighbour, ``exp((sim_j - sim_max) / temperature)``: the same ranking, but no overflow to
inf for small temperatures.

:func:`standardize_features` is the optional step before it: z-scoring every feature dimension
with the bank's statistics, so that a few dimensions of large variance (common in MAE features)
do not decide the cosine similarity alone.
"""

from __future__ import annotations

import warnings
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_mae._validation import check_positive_int
from ssl_mae.evaluation.metrics import (
    check_features,
    check_labels,
    check_positive_float,
    check_same_dim,
    resolve_device,
    topk_accuracy,
)


class KNNResult(TypedDict, total=False):
    """Accuracies in [0, 1]; ``predictions`` (M,) only when asked for."""

    top1: float
    top5: float
    predictions: Tensor


def knn_predict(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.07,
    chunk_size: int = 1024,
    normalize: bool = True,
    device: torch.device | str | None = None,
) -> Tensor:
    """Class scores of the temperature-weighted kNN vote.

    Test samples are processed ``chunk_size`` at a time, so the largest intermediate is a
    (chunk_size, N) similarity matrix: 1024 x 60000 float32 is 0.25 GB.

    Args:
        train_features: (N, D) features of the labelled bank.
        train_labels: (N,) integer labels in [0, num_classes).
        test_features: (M, D) features to classify.
        num_classes: Number of classes C.
        k: Number of neighbours, >= 1; larger than N is clamped to N with a warning.
        temperature: Softness of the votes, > 0; smaller means nearer neighbours count more.
        chunk_size: Number of test samples compared to the bank at once.
        normalize: L2-normalise both feature sets first, so that dot products are cosine
            similarities. Turn off only for features that are already normalised.
        device: Where to compute; defaults to the device of ``train_features``.

    Returns:
        (M, C) float64 scores on ``device``: for every class the sum of
        ``exp((sim - sim_max) / temperature)`` over the neighbours of that class, where
        ``sim_max`` is the similarity of the query's nearest neighbour. Each row is the classic
        ``exp(sim / t)`` vote divided by one positive constant, so the ranking is the same, and
        every score lies in [0, k] for any temperature.

    Raises:
        ValueError: For non-finite features and other bad arguments (naming the argument).
    """
    train_features = check_features(train_features, "train_features")
    test_features = check_features(test_features, "test_features")
    check_same_dim(train_features, "train_features", test_features, "test_features")
    check_positive_int(num_classes, "num_classes")
    train_labels = check_labels(train_labels, "train_labels", num_classes, train_features.shape[0])
    check_positive_int(k, "k")
    temperature = check_positive_float(temperature, "temperature")
    check_positive_int(chunk_size, "chunk_size")
    run_device = resolve_device(device, train_features.device)
    if k > train_features.shape[0]:  # warned only once every argument is known to be good
        warnings.warn(
            f"k={k} is larger than the bank of {train_features.shape[0]} training samples; "
            f"using k={train_features.shape[0]}",
            stacklevel=2,
        )
        k = train_features.shape[0]

    bank = train_features.to(run_device, torch.float32)
    if normalize:
        bank = F.normalize(bank, dim=1)
    bank_labels = train_labels.to(run_device, torch.long)

    all_scores = []
    for start in range(0, test_features.shape[0], chunk_size):
        queries = test_features[start : start + chunk_size].to(run_device, torch.float32)
        if normalize:
            queries = F.normalize(queries, dim=1)
        similarity = queries @ bank.T  # (chunk, N)
        top_similarity, top_index = similarity.topk(k, dim=1)  # (chunk, k)
        # Relative to the nearest neighbour (column 0 of topk): exp(0) = 1 for it, never inf.
        top_similarity = top_similarity.double()
        weights = ((top_similarity - top_similarity[:, :1]) / temperature).exp()
        scores = torch.zeros(queries.shape[0], num_classes, dtype=torch.float64, device=run_device)
        # Scatter the votes straight into (chunk, C): a one-hot (chunk, k, C) tensor would need
        # k times more memory, which matters for many classes.
        scores.scatter_add_(1, bank_labels[top_index], weights)
        all_scores.append(scores)
    return torch.cat(all_scores)


def standardize_features(bank: Tensor, *queries: Tensor, eps: float = 1e-6) -> tuple[Tensor, ...]:
    """Z-scores the bank (N, D) and every query set (M, D) with the bank's per-dimension mean and
    standard deviation (constant dimensions are divided by ``eps`` after centring, i.e. stay 0).

    Returns:
        ``(standardised bank, *standardised queries)``, float32.
    """
    bank = check_features(bank, "bank").float()
    mean = bank.mean(dim=0, keepdim=True)
    std = bank.std(dim=0, keepdim=True).clamp_min(eps)
    out = [(bank - mean) / std]
    for index, query in enumerate(queries):
        query = check_features(query, f"queries[{index}]").float()
        check_same_dim(bank, "bank", query, f"queries[{index}]")
        out.append((query.to(bank.device) - mean) / std)
    return tuple(out)


def knn_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.07,
    chunk_size: int = 1024,
    normalize: bool = True,
    device: torch.device | str | None = None,
    return_predictions: bool = False,
) -> KNNResult:
    """Top-1 and top-5 accuracy of the weighted kNN classifier (see :func:`knn_predict`).

    Args:
        train_features: (N, D) features of the labelled bank.
        train_labels: (N,) integer labels in [0, num_classes).
        test_features: (M, D) features to classify.
        test_labels: (M,) integer labels in [0, num_classes).
        num_classes: Number of classes C.
        k: Number of neighbours, >= 1 (clamped to N with a warning).
        temperature: Vote temperature, > 0.
        chunk_size: Number of test samples compared to the bank at once.
        normalize: L2-normalise the features first.
        device: Where to compute; defaults to the device of ``train_features``.
        return_predictions: Also return the (M,) top-1 predicted classes (on the CPU).

    Returns:
        ``{"top1": ..., "top5": ...}`` as fractions in [0, 1], plus ``"predictions"`` when asked.
    """
    check_positive_int(num_classes, "num_classes")
    test_features = check_features(test_features, "test_features")
    test_labels = check_labels(test_labels, "test_labels", num_classes, test_features.shape[0])
    scores = knn_predict(
        train_features,
        train_labels,
        test_features,
        num_classes,
        k=k,
        temperature=temperature,
        chunk_size=chunk_size,
        normalize=normalize,
        device=device,
    )
    top1, top5 = topk_accuracy(scores, test_labels, (1, 5))
    result = KNNResult(top1=top1, top5=top5)
    if return_predictions:
        result["predictions"] = scores.argmax(dim=1).cpu()
    return result
