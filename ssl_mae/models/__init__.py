"""MAE models assembled from the shared blocks."""

from ssl_mae.models.mae import (
    MAE,
    MAE_PRESETS,
    build_mae,
    mae_vit_base_patch16,
    mae_vit_huge_patch14,
    mae_vit_large_patch16,
    mae_vit_micro_patch4,
    mae_vit_micro_patch7,
    mae_vit_tiny_patch4,
)
from ssl_mae.models.simple_mae import SimpleMAE, SimpleMAEOutput

__all__ = [
    "MAE",
    "MAE_PRESETS",
    "SimpleMAE",
    "SimpleMAEOutput",
    "build_mae",
    "mae_vit_base_patch16",
    "mae_vit_huge_patch14",
    "mae_vit_large_patch16",
    "mae_vit_micro_patch4",
    "mae_vit_micro_patch7",
    "mae_vit_tiny_patch4",
]
