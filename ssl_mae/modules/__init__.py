"""Neural network blocks: the masked ViT encoders and the MAE decoder."""

from ssl_mae.modules.decoder import MAEDecoder
from ssl_mae.modules.masked_vision_transformer import (
    MaskedEncoderBase,
    MaskedVisionTransformer,
    MaskedVisionTransformerTorchvision,
    init_mae_weights,
    wrap_vit,
)

__all__ = [
    "MAEDecoder",
    "MaskedEncoderBase",
    "MaskedVisionTransformer",
    "MaskedVisionTransformerTorchvision",
    "init_mae_weights",
    "wrap_vit",
]
