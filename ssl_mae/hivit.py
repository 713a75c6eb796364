"""``ssl_mae.hivit``: the public home of HiViT and its MAE pretrainer.

The code lives in :mod:`ssl_mae.models.hivit`; this module keeps the documented import path.
"""

from ssl_mae.models.hivit import (
    HIVIT_ARCHS,
    HIVIT_MAE_PRESETS,
    HiViT,
    HiViTAttention,
    HiViTBlock,
    HiViTMAEForPreTraining,
    HiViTPatchEmbed,
    MAEHiViT,
    PatchMerge,
)

__all__ = [
    "HIVIT_ARCHS",
    "HIVIT_MAE_PRESETS",
    "HiViT",
    "HiViTAttention",
    "HiViTBlock",
    "HiViTMAEForPreTraining",
    "HiViTPatchEmbed",
    "MAEHiViT",
    "PatchMerge",
]
