"""Hugging Face–compatible ViTMAE (``ViTMAEConfig``, ``ViTMAEModel``, ``ViTMAEForPreTraining``).

Built from the ssl_mae blocks; reads and writes the Hugging Face checkpoint layout
(``config.json`` + ``model.safetensors``) without needing ``transformers``::

    from ssl_mae.hf import ViTMAEForPreTraining

    model = ViTMAEForPreTraining.from_pretrained("path/to/vit-mae-base")
    out = model(pixel_values, noise=noise)
    out.loss, out.logits, out.mask, out.ids_restore
    model.save_pretrained("out/")  # loads in transformers too
"""

from ssl_mae.hf import modeling
from ssl_mae.hf.configuration import ViTMAEConfig as ViTMAEConfig
from ssl_mae.hf.modeling import *  # noqa: F403

__all__ = sorted(["ViTMAEConfig", *modeling.__all__])
