"""Optimiser recipe of MAE pre-training: AdamW parameter groups and the per-step lr schedule.

The MAE paper (He et al. 2021, appendix A.1) trains with AdamW, betas (0.9, 0.95), weight decay
0.05 on weight matrices only, ``lr = base_lr * effective_batch_size / 256`` and a linear warmup
followed by a half-cosine decay. Every model and the command line build their optimiser from the
functions here, so the recipe lives in one place:

    groups = param_groups_weight_decay(model, weight_decay=0.05)
    optimizer = build_adamw(groups, lr=scaled_lr(1.5e-4, 4096))
    scheduler = warmup_cosine_scheduler(optimizer, total_steps, warmup_steps)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ssl_mae._validation import (
    check_float,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_int,
)

__all__ = [
    "DEFAULT_NO_WEIGHT_DECAY_NAMES",
    "build_adamw",
    "make_adamw",
    "param_groups_weight_decay",
    "scaled_lr",
    "warmup_cosine",
    "warmup_cosine_scheduler",
]

# Token-like parameters that never get weight decay (all 1-D parameters are excluded anyway).
DEFAULT_NO_WEIGHT_DECAY_NAMES: tuple[str, ...] = (
    "cls_token",
    "mask_token",
    "pos_embed",
    "reg_token",
    "dist_token",
)


def param_groups_weight_decay(
    model: nn.Module,
    weight_decay: float = 0.05,
    no_weight_decay_names: Sequence[str] = DEFAULT_NO_WEIGHT_DECAY_NAMES,
) -> list[dict[str, Any]]:
    """Splits the trainable parameters into a decayed and a non-decayed group.

    Weight matrices (and convolution kernels) are decayed; every 1-D parameter (biases, norm
    weights) and every parameter whose name contains one of ``no_weight_decay_names`` (class,
    mask and register tokens, position embeddings) is not. Frozen parameters
    (``requires_grad=False``, e.g. fixed sin-cos position embeddings) are left out.

    Args:
        model: The model whose ``named_parameters()`` are grouped.
        weight_decay: Weight decay of the decayed group, >= 0.
        no_weight_decay_names: Name fragments of parameters without weight decay.

    Returns:
        ``[{"params": decayed, "weight_decay": weight_decay},
        {"params": not_decayed, "weight_decay": 0.0}]``; empty groups are dropped.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    weight_decay = check_nonnegative_float(weight_decay, "weight_decay")
    if isinstance(no_weight_decay_names, str) or not all(
        isinstance(name, str) for name in no_weight_decay_names
    ):
        raise TypeError(
            f"no_weight_decay_names must be a sequence of strings, got {no_weight_decay_names!r}"
        )
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or any(fragment in name for fragment in no_weight_decay_names):
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def scaled_lr(base_lr: float, effective_batch_size: int, reference_batch_size: int = 256) -> float:
    """The linear scaling rule of MAE: ``base_lr * effective_batch_size / 256``.

    Args:
        base_lr: Learning rate for a batch of ``reference_batch_size`` images (1.5e-4 in MAE).
        effective_batch_size: Images per optimiser step over all devices and accumulation steps.
        reference_batch_size: Batch size ``base_lr`` refers to.
    """
    base_lr = check_nonnegative_float(base_lr, "base_lr")
    check_positive_int(effective_batch_size, "effective_batch_size")
    check_positive_int(reference_batch_size, "reference_batch_size")
    return base_lr * effective_batch_size / reference_batch_size


def warmup_cosine(
    step: float, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0
) -> float:
    """Learning rate at optimiser step ``step`` (counted from 0), as in the official MAE.

    Linear from 0 at step 0 to ``base_lr`` at ``warmup_steps``, then a half-cosine from
    ``base_lr`` down to ``min_lr`` at ``total_steps``; constant ``min_lr`` after that.
    For example with ``total_steps=100, warmup_steps=10``: step 0 → 0, step 5 → base_lr / 2,
    step 10 → base_lr, step 55 → (base_lr + min_lr) / 2, step 100 → min_lr.

    Args:
        step: Current step, may be fractional (the official code uses fractional epochs).
        total_steps: Length of the whole schedule, >= 1.
        warmup_steps: Length of the warmup, in [0, total_steps].
        base_lr: Peak learning rate.
        min_lr: Final learning rate.
    """
    check_positive_int(total_steps, "total_steps")
    check_nonnegative_int(warmup_steps, "warmup_steps")
    if warmup_steps > total_steps:
        raise ValueError(
            f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}"
        )
    step = check_nonnegative_float(step, "step")
    check_nonnegative_float(base_lr, "base_lr")
    check_nonnegative_float(min_lr, "min_lr")
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if total_steps == warmup_steps:
        return base_lr
    progress = min((step - warmup_steps) / (total_steps - warmup_steps), 1.0)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(
    optimizer: Optimizer, total_steps: int, warmup_steps: int, min_lr: float = 0.0
) -> LambdaLR:
    """A ``LambdaLR`` that follows :func:`warmup_cosine` for every parameter group.

    Each group peaks at the ``lr`` it was created with and decays to ``min_lr`` (an absolute
    learning rate, as in the official code). Call ``scheduler.step()`` after every optimiser
    step (Lightning: ``"interval": "step"``).

    Args:
        optimizer: The optimiser; its groups' ``lr`` are the peak learning rates.
        total_steps: Number of optimiser steps of the whole run.
        warmup_steps: Number of warmup steps, in [0, total_steps].
        min_lr: Learning rate at the end of the schedule, >= 0.
    """
    min_lr = check_nonnegative_float(min_lr, "min_lr")
    warmup_cosine(0, total_steps, warmup_steps, 1.0)  # validates the step counts up front

    def factor(peak_lr: float) -> Callable[[int], float]:
        # LambdaLR multiplies the peak lr by the returned factor, so min_lr becomes a ratio.
        min_ratio = min_lr / peak_lr if peak_lr > 0 else 0.0
        return lambda step: warmup_cosine(step, total_steps, warmup_steps, 1.0, min_ratio)

    lambdas = [factor(float(group["lr"])) for group in optimizer.param_groups]
    return LambdaLR(optimizer, lr_lambda=lambdas)


def _all_on_cuda(groups: Iterable[dict[str, Any]]) -> bool:
    params = [p for group in groups for p in group["params"]]
    return bool(params) and all(p.device.type == "cuda" for p in params)


def build_adamw(
    param_groups: list[dict[str, Any]],
    lr: float,
    betas: tuple[float, float] = (0.9, 0.95),
    fused: bool | None = None,
) -> AdamW:
    """AdamW with the MAE betas; the fused kernel is used on CUDA unless told otherwise.

    Args:
        param_groups: Groups as from :func:`param_groups_weight_decay`.
        lr: Peak learning rate.
        betas: Adam coefficients.
        fused: Use the fused implementation. None picks it when every parameter lives on a
            CUDA device (one kernel launch per step instead of one per tensor).
    """
    lr = check_nonnegative_float(lr, "lr")
    if isinstance(betas, str) or not isinstance(betas, Sequence) or len(betas) != 2:
        raise TypeError(f"betas must be two numbers in [0, 1), got {betas!r}")
    for beta in betas:
        check_float(beta, "betas", 0.0, 1.0, high_open=True)
    if fused is not None and not isinstance(fused, bool):
        raise TypeError(f"fused must be a bool or None, got {fused!r}")
    if fused is None:
        fused = torch.cuda.is_available() and _all_on_cuda(param_groups)
    return AdamW(param_groups, lr=lr, betas=(float(betas[0]), float(betas[1])), fused=fused)


# --- optimiser -----------------------------------------------------------------------------------
def make_adamw(
    params: nn.Module | Iterable[Tensor] | Iterable[dict[str, Any]],
    lr: float,
    betas: tuple[float, float] = (0.9, 0.95),
    weight_decay: float = 0.05,
    fused: bool | None = None,
) -> AdamW:
    """AdamW with the MAE recipe, using the fused kernel on CUDA.

    The fused kernel updates every parameter in one launch instead of one (or a few, ``foreach``)
    per tensor; it computes the same update up to float rounding, so it is the default wherever
    it exists (CUDA). On CPU it is opt-in (``fused=True``).

    Args:
        params: A module (split into decayed weight matrices and non-decayed norms, biases, tokens
            and position embeddings, as in MAE), an iterable of parameters (all decayed) or of
            parameter-group dicts (used as they are; groups without ``weight_decay`` get
            ``weight_decay``).
        lr: Peak learning rate.
        betas: Adam coefficients.
        weight_decay: Weight decay of weight matrices, >= 0.
        fused: Fused implementation; None picks it when every parameter is on a CUDA device.

    Returns:
        The optimiser.
    """
    check_nonnegative_float(weight_decay, "weight_decay")
    if isinstance(params, nn.Module):
        groups = param_groups_weight_decay(params, float(weight_decay))
    elif isinstance(params, Tensor):
        raise TypeError("params must be a module or an iterable of parameters, got one Tensor")
    else:
        items = list(params)
        if not items:
            raise ValueError("params is empty; pass a module or a non-empty list of parameters")
        if all(isinstance(item, dict) for item in items):
            groups = [
                {"weight_decay": float(weight_decay), **cast(dict[str, Any], item)}
                for item in items
            ]
        elif all(isinstance(item, Tensor) for item in items):
            groups = [{"params": items, "weight_decay": float(weight_decay)}]
        else:
            kinds = sorted({type(item).__name__ for item in items})
            raise TypeError(
                "params must be a module, an iterable of tensors or an iterable of "
                f"parameter-group dicts, got elements of types {kinds}"
            )
    return build_adamw(groups, lr=lr, betas=betas, fused=fused)
