"""ssl_mae: Masked Autoencoder self-supervised learning blocks, models and benchmarks."""

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
from ssl_mae.modules import MAEDecoder, MaskedVisionTransformer, MaskedVisionTransformerTorchvision
from ssl_mae.pos_embed import get_2d_sincos_pos_embed, interpolate_pos_embed

__version__ = "0.1.0"

__all__ = [
    "MAEDecoder",
    "MAELoss",
    "MaskedVisionTransformer",
    "MaskedVisionTransformerTorchvision",
    "__version__",
    "get_2d_sincos_pos_embed",
    "get_at_index",
    "interpolate_pos_embed",
    "mask_at_index",
    "patchify",
    "prepend_class_token",
    "random_masking",
    "random_token_mask",
    "repeat_token",
    "set_at_index",
    "unpatchify",
]
