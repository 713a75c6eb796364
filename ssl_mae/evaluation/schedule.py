"""Learning-rate helpers for the linear probe and fine-tuning.

The warmup + cosine schedule itself lives once, in :func:`ssl_mae.training.optim.warmup_cosine`
(pretraining uses it too); ``warmup_cosine_lr`` is that function under the name the evaluation
code has always used.
"""

from __future__ import annotations

from torch.optim import Optimizer

from ssl_mae.training.optim import warmup_cosine as warmup_cosine_lr

__all__ = ["set_learning_rate", "warmup_cosine_lr"]


def set_learning_rate(optimizer: Optimizer, lr: float) -> None:
    """Sets ``lr`` on every parameter group, times the group's ``lr_scale`` (layer decay)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
