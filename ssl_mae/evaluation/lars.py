"""LARS optimiser (You et al. 2017) in the form the MAE linear probe uses.

Matrices get a layer-wise trust ratio: their update is rescaled to
``trust_coefficient * ||w|| / ||g + weight_decay * w||`` times its own size, so every layer moves
by a similar fraction of its weight norm whatever the gradient scale. One-dimensional parameters
(biases, norm weights) get neither weight decay nor the trust ratio, as in the official code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ssl_mae._validation import check_float, check_nonnegative_float, check_positive_float


class LARS(Optimizer):
    """SGD with momentum and a per-matrix trust ratio.

    Args:
        params: Parameters or parameter groups.
        lr: Learning rate.
        weight_decay: L2 penalty added to the gradient of parameters with more than one dim.
        momentum: Momentum factor (heavy ball, no dampening).
        trust_coefficient: Scale of the trust ratio (0.001 in MAE).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.0,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        trust_coefficient: float = 0.001,
    ) -> None:
        lr = check_nonnegative_float(lr, "lr")
        weight_decay = check_nonnegative_float(weight_decay, "weight_decay")
        momentum = check_float(momentum, "momentum", 0.0, 1.0, high_open=True)
        trust_coefficient = check_positive_float(trust_coefficient, "trust_coefficient")
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "trust_coefficient": trust_coefficient,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Performs one update; ``closure`` re-evaluates the loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                update = param.grad
                if param.ndim > 1:
                    update = update.add(param, alpha=group["weight_decay"])
                    param_norm = torch.linalg.vector_norm(param)
                    update_norm = torch.linalg.vector_norm(update)
                    # A zero norm (fresh zero-initialised weight, vanishing gradient) would make
                    # the ratio 0 or inf; fall back to a plain step then.
                    ratio = torch.where(
                        (param_norm > 0) & (update_norm > 0),
                        group["trust_coefficient"] * param_norm / update_norm,
                        torch.ones_like(param_norm),
                    )
                    update = update * ratio
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param)
                buffer = state["momentum_buffer"]
                buffer.mul_(group["momentum"]).add_(update)
                param.add_(buffer, alpha=-group["lr"])
        return loss
