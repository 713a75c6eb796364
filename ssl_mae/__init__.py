"""ssl_mae: Masked Autoencoder self-supervised learning blocks, models and benchmarks.

``import ssl_mae`` loads nothing but torch: every name below is imported from its module on
first use (PEP 562), so ``from ssl_mae import patchify`` costs the masking module alone and
Lightning, transformers-compatible I/O, scipy and matplotlib load only when a model, trainer or
plot needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ssl_mae._lazy import lazy_exports

__version__ = "0.1.0"

# Public name → the module that defines it.
_EXPORTS: dict[str, str] = {
    "FASHION_MNIST_NORMALIZE": "ssl_mae.transforms",
    "HIVIT_MAE_PRESETS": "ssl_mae.models.presets",
    "IMAGENET_NORMALIZE": "ssl_mae.transforms",
    "MAE": "ssl_mae.models.mae",
    "MAE_PRESETS": "ssl_mae.models.presets",
    "BatchedMAEAugment": "ssl_mae.transforms",
    "BlockMasking": "ssl_mae.masking",
    "CrossMAEDecoder": "ssl_mae.modules.cross_decoder",
    "HOGTarget": "ssl_mae.targets",
    "HiViT": "ssl_mae.models.hivit.backbone",
    "HiViTMAEForPreTraining": "ssl_mae.models.hivit.pretraining",
    "MAEDecoder": "ssl_mae.modules.decoder",
    "MAEHiViT": "ssl_mae.models.hivit.backbone",
    "MAELoss": "ssl_mae.loss",
    "MAEOutput": "ssl_mae.core",
    "MAETransform": "ssl_mae.transforms",
    "MaskedAutoencoder": "ssl_mae.core",
    "MaskedVisionTransformer": "ssl_mae.modules.encoder",
    "MaskedVisionTransformerTorchvision": "ssl_mae.modules.encoder",
    "PixelTarget": "ssl_mae.loss",
    "PretrainModule": "ssl_mae.training.module",
    "SimpleMAE": "ssl_mae.models.simple_mae",
    "build_mae": "ssl_mae.models.presets",
    "get_2d_sincos_pos_embed": "ssl_mae.pos_embed",
    "get_at_index": "ssl_mae.masking",
    "interpolate_pos_embed": "ssl_mae.pos_embed",
    "mask_at_index": "ssl_mae.masking",
    "patchify": "ssl_mae.masking",
    "prepend_class_token": "ssl_mae.masking",
    "random_masking": "ssl_mae.masking",
    "random_token_mask": "ssl_mae.masking",
    "repeat_token": "ssl_mae.masking",
    "set_at_index": "ssl_mae.masking",
    "unpatchify": "ssl_mae.masking",
}
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    globals(),
    _EXPORTS,
    submodules=("data", "evaluation", "hf", "models", "modules", "training"),
)
__all__ += ["__version__"]

if TYPE_CHECKING:  # what type checkers and IDEs see; nothing of this runs
    from ssl_mae import data as data
    from ssl_mae import evaluation as evaluation
    from ssl_mae import hf as hf
    from ssl_mae import models as models
    from ssl_mae import modules as modules
    from ssl_mae import training as training
    from ssl_mae.core import MAEOutput as MAEOutput
    from ssl_mae.core import MaskedAutoencoder as MaskedAutoencoder
    from ssl_mae.loss import MAELoss as MAELoss
    from ssl_mae.loss import PixelTarget as PixelTarget
    from ssl_mae.masking import (
        BlockMasking as BlockMasking,
    )
    from ssl_mae.masking import (
        get_at_index as get_at_index,
    )
    from ssl_mae.masking import (
        mask_at_index as mask_at_index,
    )
    from ssl_mae.masking import (
        patchify as patchify,
    )
    from ssl_mae.masking import (
        prepend_class_token as prepend_class_token,
    )
    from ssl_mae.masking import (
        random_masking as random_masking,
    )
    from ssl_mae.masking import (
        random_token_mask as random_token_mask,
    )
    from ssl_mae.masking import (
        repeat_token as repeat_token,
    )
    from ssl_mae.masking import (
        set_at_index as set_at_index,
    )
    from ssl_mae.masking import (
        unpatchify as unpatchify,
    )
    from ssl_mae.models.hivit.backbone import HiViT as HiViT
    from ssl_mae.models.hivit.backbone import MAEHiViT as MAEHiViT
    from ssl_mae.models.hivit.pretraining import HiViTMAEForPreTraining as HiViTMAEForPreTraining
    from ssl_mae.models.mae import MAE as MAE
    from ssl_mae.models.presets import HIVIT_MAE_PRESETS as HIVIT_MAE_PRESETS
    from ssl_mae.models.presets import MAE_PRESETS as MAE_PRESETS
    from ssl_mae.models.presets import build_mae as build_mae
    from ssl_mae.models.simple_mae import SimpleMAE as SimpleMAE
    from ssl_mae.modules.cross_decoder import CrossMAEDecoder as CrossMAEDecoder
    from ssl_mae.modules.decoder import MAEDecoder as MAEDecoder
    from ssl_mae.modules.encoder import MaskedVisionTransformer as MaskedVisionTransformer
    from ssl_mae.modules.encoder import (
        MaskedVisionTransformerTorchvision as MaskedVisionTransformerTorchvision,
    )
    from ssl_mae.pos_embed import get_2d_sincos_pos_embed as get_2d_sincos_pos_embed
    from ssl_mae.pos_embed import interpolate_pos_embed as interpolate_pos_embed
    from ssl_mae.targets import HOGTarget as HOGTarget
    from ssl_mae.training.module import PretrainModule as PretrainModule
    from ssl_mae.transforms import (
        FASHION_MNIST_NORMALIZE as FASHION_MNIST_NORMALIZE,
    )
    from ssl_mae.transforms import (
        IMAGENET_NORMALIZE as IMAGENET_NORMALIZE,
    )
    from ssl_mae.transforms import (
        BatchedMAEAugment as BatchedMAEAugment,
    )
    from ssl_mae.transforms import (
        MAETransform as MAETransform,
    )
