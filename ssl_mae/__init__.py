"""ssl_mae: Masked Autoencoder self-supervised learning blocks, models and benchmarks."""

from ssl_mae import data, evaluation, hf, models
from ssl_mae.hivit import HIVIT_MAE_PRESETS, HiViT, HiViTMAEForPreTraining, MAEHiViT
from ssl_mae.loss import MAELoss
from ssl_mae.masking import (
    get_at_index,
    mask_at_index,
    patchify,
    prepend_class_token,
    random_masking,
    random_token_mask,
    repeat_token,
    set_at_index,
    unpatchify,
)
from ssl_mae.models import MAE, MAE_PRESETS, SimpleMAE, build_mae
from ssl_mae.modules import MAEDecoder, MaskedVisionTransformer, MaskedVisionTransformerTorchvision
from ssl_mae.pos_embed import get_2d_sincos_pos_embed, interpolate_pos_embed
from ssl_mae.transforms import (
    FASHION_MNIST_NORMALIZE,
    IMAGENET_NORMALIZE,
    BatchedMAEAugment,
    MAETransform,
)

__version__ = "0.1.0"

__all__ = [
    "FASHION_MNIST_NORMALIZE",
    "HIVIT_MAE_PRESETS",
    "IMAGENET_NORMALIZE",
    "MAE",
    "MAE_PRESETS",
    "BatchedMAEAugment",
    "HiViT",
    "HiViTMAEForPreTraining",
    "MAEDecoder",
    "MAEHiViT",
    "MAELoss",
    "MAETransform",
    "MaskedVisionTransformer",
    "MaskedVisionTransformerTorchvision",
    "SimpleMAE",
    "__version__",
    "build_mae",
    "data",
    "evaluation",
    "get_2d_sincos_pos_embed",
    "get_at_index",
    "hf",
    "interpolate_pos_embed",
    "mask_at_index",
    "models",
    "patchify",
    "prepend_class_token",
    "random_masking",
    "random_token_mask",
    "repeat_token",
    "set_at_index",
    "unpatchify",
]
