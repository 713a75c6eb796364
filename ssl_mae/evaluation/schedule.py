"""Learning-rate schedule shared by the linear probe and fine-tuning: linear warmup, then cosine."""

from __future__ import annotations

import math

from torch.optim import Optimizer


def warmup_cosine_lr(
    step: float, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0
) -> float:
    """Learning rate at ``step``: linear from 0 to ``base_lr`` over ``warmup_steps``, then a
    half-cosine from ``base_lr`` down to ``min_lr`` at ``total_steps``.

    Args:
        step: Current (possibly fractional) step, counted from 0.
        total_steps: Length of the whole schedule.
        warmup_steps: Length of the warmup, 0 <= warmup_steps <= total_steps.
        base_lr: Peak learning rate.
        min_lr: Final learning rate.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, {total_steps}], got {warmup_steps}")
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if total_steps == warmup_steps:
        return base_lr
    progress = min((step - warmup_steps) / (total_steps - warmup_steps), 1.0)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: Optimizer, lr: float) -> None:
    """Sets ``lr`` on every parameter group, times the group's ``lr_scale`` (layer decay)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
