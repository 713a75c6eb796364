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
    from ssl_mae.models.mae import MAE as MAE
    from ssl_mae.models.presets import (
        MAE_PRESETS as MAE_PRESETS,
    )
    from ssl_mae.models.presets import (
        PRETRAIN_PRESETS as PRETRAIN_PRESETS,
    )
    from ssl_mae.models.presets import (
        build_mae as build_mae,
    )
    from ssl_mae.models.presets import (
        build_model as build_model,
    )
    from ssl_mae.models.presets import (
        build_pretrain_module as build_pretrain_module,
    )
    from ssl_mae.models.presets import (
        mae_vit_base_patch16 as mae_vit_base_patch16,
    )
    from ssl_mae.models.presets import (
        mae_vit_huge_patch14 as mae_vit_huge_patch14,
    )
    from ssl_mae.models.presets import (
        mae_vit_large_patch16 as mae_vit_large_patch16,
    )
    from ssl_mae.models.presets import (
        mae_vit_micro_patch4 as mae_vit_micro_patch4,
    )
    from ssl_mae.models.presets import (
        mae_vit_micro_patch7 as mae_vit_micro_patch7,
    )
    from ssl_mae.models.presets import (
        mae_vit_tiny_patch4 as mae_vit_tiny_patch4,
    )
    from ssl_mae.models.simple_mae import SimpleMAE as SimpleMAE
    from ssl_mae.models.simple_mae import SimpleMAEOutput as SimpleMAEOutput
