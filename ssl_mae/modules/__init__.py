"""Neural network blocks: the masked ViT encoders, the MAE decoder and the CrossMAE decoder."""

from ssl_mae.modules.cross_decoder import CrossAttention, CrossAttentionBlock, CrossMAEDecoder
from ssl_mae.modules.decoder import MAEDecoder, MaskedDecoderBase
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
    "CrossAttention",
    "CrossAttentionBlock",
    "CrossMAEDecoder",
    "EncoderStates",
    "MAEDecoder",
    "MaskedDecoderBase",
    "MaskedEncoderBase",
    "MaskedVisionTransformer",
    "MaskedVisionTransformerTorchvision",
    "block_forward_with_attention",
    "init_mae_weights",
    "wrap_vit",
]
