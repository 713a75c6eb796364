"""HiViT (Zhang et al. 2023): the hierarchical backbone and its MAE pretrainer."""

from ssl_mae.models.hivit.backbone import (
    HIVIT_ARCHS,
    HiViT,
    HiViTAttention,
    HiViTBlock,
    HiViTPatchEmbed,
    MAEHiViT,
    PatchMerge,
)
from ssl_mae.models.hivit.pretraining import HiViTMAEForPreTraining
from ssl_mae.models.presets import HIVIT_MAE_PRESETS

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
