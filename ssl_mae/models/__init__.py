"""MAE models: thin façades over :class:`ssl_mae.MaskedAutoencoder`, and the preset registry.

Names load on first use, so ``from ssl_mae.models import SimpleMAE`` does not import Lightning
(which ``MAE``, a LightningModule, needs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ssl_mae._lazy import lazy_exports

_PRESETS = "ssl_mae.models.presets"
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    globals(),
    {
        "MAE": "ssl_mae.models.mae",
        "MAE_PRESETS": _PRESETS,
        "PRETRAIN_PRESETS": _PRESETS,
        "SimpleMAE": "ssl_mae.models.simple_mae",
        "SimpleMAEOutput": "ssl_mae.models.simple_mae",
        "build_mae": _PRESETS,
        "build_model": _PRESETS,
        "build_pretrain_module": _PRESETS,
        "mae_vit_base_patch16": _PRESETS,
        "mae_vit_huge_patch14": _PRESETS,
        "mae_vit_large_patch16": _PRESETS,
        "mae_vit_micro_patch4": _PRESETS,
        "mae_vit_micro_patch7": _PRESETS,
        "mae_vit_tiny_patch4": _PRESETS,
    },
    submodules=("hivit", "layout", "mae", "presets", "simple_mae"),
)

if TYPE_CHECKING:
    from ssl_mae.models.mae import MAE
    from ssl_mae.models.presets import (
        MAE_PRESETS,
        PRETRAIN_PRESETS,
        build_mae,
        build_model,
        build_pretrain_module,
        mae_vit_base_patch16,
        mae_vit_huge_patch14,
        mae_vit_large_patch16,
        mae_vit_micro_patch4,
        mae_vit_micro_patch7,
        mae_vit_tiny_patch4,
    )
    from ssl_mae.models.simple_mae import SimpleMAE, SimpleMAEOutput
