"""The MAE weight initialisation, written once for every block that uses it.

The official recipe (``models_mae.py``): xavier-uniform linear layers with zero bias, unit
LayerNorms, N(0, 0.02) class/register/mask tokens, and the patch projection initialised like a
linear layer over the flattened patch (xavier-uniform on the conv kernel viewed as a matrix).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from torch import Tensor, nn

__all__ = ["init_affine", "init_mae_weights", "init_patch_projection", "init_tokens"]


def init_affine(
    module: nn.Module,
    init_weight: Callable[[Tensor], object],
    layers: tuple[type[nn.Module], ...] = (nn.Linear,),
) -> None:
    """Initialises one module: ``init_weight`` on the weight of ``layers`` with zero bias, unit
    LayerNorm; other modules are left alone."""
    if isinstance(module, layers):
        init_weight(cast(Tensor, module.weight))
        if module.bias is not None:
            nn.init.zeros_(cast(Tensor, module.bias))
    elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
        nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def init_mae_weights(module: nn.Module) -> None:
    """MAE initialisation of one module (for ``model.apply``): xavier-uniform Linear with zero
    bias, unit LayerNorm; other modules are left alone."""
    init_affine(module, nn.init.xavier_uniform_)


def init_patch_projection(weight: Tensor) -> None:
    """Xavier-uniform init of a conv patch projection (D, C, p, p), treated as a (D, C*p*p)
    linear layer as in the official code."""
    nn.init.xavier_uniform_(weight.data.view(weight.shape[0], -1))


def init_tokens(*tokens: Tensor | None) -> None:
    """N(0, 0.02) init of class, register and mask tokens (None entries are skipped)."""
    for token in tokens:
        if token is not None:
            nn.init.normal_(token, std=0.02)
