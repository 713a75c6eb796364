"""Hugging Face–compatible ViTMAE (``ViTMAEConfig``, ``ViTMAEModel``, ``ViTMAEForPreTraining``).

Built from the ssl_mae blocks; reads and writes the Hugging Face checkpoint layout
(``config.json`` + ``model.safetensors``) without needing ``transformers``::

    from ssl_mae.hf import ViTMAEForPreTraining

    model = ViTMAEForPreTraining.from_pretrained("path/to/vit-mae-base")
    out = model(pixel_values, noise=noise)
    out.loss, out.logits, out.mask, out.ids_restore
    model.save_pretrained("out/")  # loads in transformers too
"""

from ssl_mae.hf.configuration import ViTMAEConfig
from ssl_mae.hf.modeling import (
    ModelOutput,
    ViTMAEForPreTraining,
    ViTMAEForPreTrainingOutput,
    ViTMAEModel,
    ViTMAEModelOutput,
    ViTMAEPreTrainedModel,
    activation_layer,
    block_forward_with_attention,
    config_from_official_state_dict,
)

__all__ = [
    "ModelOutput",
    "ViTMAEConfig",
    "ViTMAEForPreTraining",
    "ViTMAEForPreTrainingOutput",
    "ViTMAEModel",
    "ViTMAEModelOutput",
    "ViTMAEPreTrainedModel",
    "activation_layer",
    "block_forward_with_attention",
    "config_from_official_state_dict",
]
