"""Neural network blocks: the masked ViT encoders and the MAE decoder."""

from ssl_mae.modules.decoder import MAEDecoder
from ssl_mae.modules.encoder import (
    EncoderStates,
    MaskedEncoderBase,
    MaskedVisionTransformer,
    MaskedVisionTransformerTorchvision,
    block_forward_with_attention,
    wrap_vit,
)
from ssl_mae.modules.init import init_mae_weights

__all__ = [
    "EncoderStates",
    "MAEDecoder",
    "MaskedEncoderBase",
    "MaskedVisionTransformer",
    "MaskedVisionTransformerTorchvision",
    "block_forward_with_attention",
    "init_mae_weights",
    "wrap_vit",
]
