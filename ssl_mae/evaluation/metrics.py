"""Top-k accuracy and the argument checks shared by the evaluation protocols."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ssl_mae._validation import (
    as_device,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_range,
    check_tensor,
)

__all__ = [
    "check_features",
    "check_labels",
    "check_nonnegative_float",
    "check_positive_float",
    "check_same_dim",
    "resolve_device",
    "topk_accuracy",
]


def topk_accuracy(scores: Tensor, labels: Tensor, topk: tuple[int, ...] = (1, 5)) -> list[float]:
    """Fraction of samples whose label is among the ``k`` highest scores, for each ``k``.

    ``k`` larger than the number of classes is capped (top-5 of a 3-class problem is 1.0).

    Args:
        scores: (M, C) class scores or logits; higher means more likely.
        labels: (M,) integer labels in [0, C).
        topk: The ``k`` values to report.

    Returns:
        One accuracy in [0, 1] per entry of ``topk``.
    """
    check_tensor(scores, "scores", ndim=2, shape_doc="(M, C)")
    check_labels(labels, "labels", scores.shape[1], scores.shape[0])
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(
            f"scores must hold at least one sample and one class, got shape {tuple(scores.shape)}"
        )
    if scores.is_floating_point() and bool(scores.isnan().any()):
        # topk ranks NaN above every number: a NaN score must not turn into a hit.
        raise ValueError("scores must not contain NaN; check the model or the features")
    if isinstance(topk, (str, bytes)) or not isinstance(topk, Sequence) or len(topk) == 0:
        raise TypeError(f"topk must be a non-empty tuple of positive ints, got {topk!r}")
    for k in topk:
        check_positive_int(k, "topk entries")
    max_k = min(max(topk), scores.shape[1])
    ranked = scores.topk(max_k, dim=1).indices
    hits = ranked == labels.to(ranked.device).unsqueeze(1)
    return [hits[:, : min(k, max_k)].any(dim=1).float().mean().item() for k in topk]


def check_features(features: object, name: str) -> Tensor:
    """Checks an (N, D) floating point feature tensor with at least one row and only finite
    values (evaluation may sync the host: a NaN feature must never turn into a score)."""
    tensor = check_tensor(features, name, ndim=2, shape_doc="(N, D)", floating=True)
    if tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(tensor.shape)}")
    finite = torch.isfinite(tensor).all(dim=1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten()
        raise ValueError(
            f"{name} must be finite, got NaN or inf in {bad.numel()} of {tensor.shape[0]} rows "
            f"(first: row {int(bad[0])}); check the encoder's weights and inputs"
        )
    return tensor


def check_labels(labels: object, name: str, num_classes: int, length: int | None = None) -> Tensor:
    """Checks a (N,) integer label tensor whose values lie in [0, num_classes)."""
    tensor = check_tensor(labels, name, ndim=1, shape_doc="(N,)", integer=True)
    if length is not None and tensor.shape[0] != length:
        raise ValueError(
            f"{name} must have one label per sample ({length}), got {tensor.shape[0]} labels"
        )
    check_range(tensor, name, num_classes, f"num_classes={num_classes}")
    return tensor


def check_same_dim(a: Tensor, a_name: str, b: Tensor, b_name: str) -> None:
    """Checks that two (N, D) feature tensors share the feature dimension D."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{a_name} and {b_name} must have the same feature dimension, got {a.shape[1]} and "
            f"{b.shape[1]}"
        )


def resolve_device(device: torch.device | str | None, default: torch.device) -> torch.device:
    """``device`` as a ``torch.device``, or ``default`` when it is None."""
    return default if device is None else as_device(device)
