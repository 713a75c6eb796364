"""Every pre-training model by name: MAE, MAE-HiViT and SimpleMAE presets in one registry.

``ssl-mae pretrain --preset NAME`` and the examples build their model here::

    module = build_pretrain_module("mae_hivit_nano", in_chans=1)   # a LightningModule
    module = build_pretrain_module("simple_mae_vit_tiny", base_lr=1.5e-3)

Families:

* ``mae`` — :data:`ssl_mae.models.MAE_PRESETS`, built as :class:`~ssl_mae.models.MAE` (already a
  LightningModule, checkpoints unchanged);
* ``mae_hivit`` — :data:`ssl_mae.hivit.HIVIT_MAE_PRESETS`, a
  :class:`~ssl_mae.hivit.HiViTMAEForPreTraining` inside a
  :class:`~ssl_mae.models.pretrain_module.PretrainModule`;
* ``simple_mae`` — :data:`SIMPLE_MAE_PRESETS`, a timm or torchvision ViT wrapped by
  :class:`~ssl_mae.models.SimpleMAE`, inside a ``PretrainModule``.

Every family takes the same model overrides ``img_size``, ``in_chans``, ``mask_ratio`` and
``norm_pix_loss`` (plus its own constructor arguments) and the training options of
:data:`~ssl_mae.models.pretrain_module.TRAINING_OPTIONS`. ``PretrainModule`` checkpoints store
the preset and the model overrides, so :func:`pretrain_module_from_checkpoint` rebuilds the
model of any checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import pytorch_lightning as pl
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torchvision.models import VisionTransformer as TorchvisionViT

from ssl_mae.hivit import HIVIT_MAE_PRESETS, HiViTMAEForPreTraining
from ssl_mae.models.mae import MAE, MAE_PRESETS, build_mae
from ssl_mae.models.pretrain_module import TRAINING_OPTIONS, PretrainModule
from ssl_mae.models.simple_mae import SimpleMAE
from ssl_mae.modules import MaskedVisionTransformer, MaskedVisionTransformerTorchvision

__all__ = [
    "PRESET_FAMILIES",
    "PRETRAIN_PRESETS",
    "SIMPLE_MAE_PRESETS",
    "PretrainPreset",
    "build_pretrain_module",
    "describe_presets",
    "pretrain_module_from_checkpoint",
    "simple_mae_torchvision_vit_tiny",
    "simple_mae_vit_micro",
    "simple_mae_vit_tiny",
]

PRESET_FAMILIES: tuple[str, ...] = ("mae", "mae_hivit", "simple_mae")


# --- SimpleMAE presets ---------------------------------------------------------------------------
def _simple_mae(
    encoder: nn.Module,
    decoder_dim: int,
    decoder_depth: int,
    decoder_heads: int,
    decoder_dim_head: int,
    mask_ratio: float,
    norm_pix_loss: bool,
) -> SimpleMAE:
    return SimpleMAE(
        encoder,
        decoder_dim=decoder_dim,
        masking_ratio=mask_ratio,
        decoder_depth=decoder_depth,
        decoder_heads=decoder_heads,
        decoder_dim_head=decoder_dim_head,
        norm_pix=norm_pix_loss,
    )


def _timm_simple_mae(
    img_size: int,
    patch_size: int,
    in_chans: int,
    embed_dim: int,
    depth: int,
    num_heads: int,
    mlp_ratio: float,
    decoder_dim: int,
    decoder_depth: int,
    decoder_heads: int,
    decoder_dim_head: int,
    mask_ratio: float,
    norm_pix_loss: bool,
) -> SimpleMAE:
    if img_size % patch_size:
        raise ValueError(f"img_size must be a multiple of patch_size={patch_size}, got {img_size}")
    vit = VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        in_chans=in_chans,
        num_classes=0,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        qkv_bias=True,
        weight_init="skip",
    )
    # A fresh encoder gets the MAE initialisation and a fixed sin-cos position embedding;
    # SimpleMAE itself keeps whatever weights it is given.
    encoder = MaskedVisionTransformer(
        vit, weight_initialization="", pos_embed_initialization="sincos", use_mask_token=False
    )
    return _simple_mae(
        encoder, decoder_dim, decoder_depth, decoder_heads, decoder_dim_head, mask_ratio,
        norm_pix_loss,
    )  # fmt: skip


def simple_mae_vit_micro(
    img_size: int = 28,
    patch_size: int = 4,
    in_chans: int = 1,
    embed_dim: int = 64,
    depth: int = 4,
    num_heads: int = 4,
    mlp_ratio: float = 4.0,
    decoder_dim: int = 64,
    decoder_depth: int = 2,
    decoder_heads: int = 4,
    decoder_dim_head: int = 16,
    mask_ratio: float = 0.75,
    norm_pix_loss: bool = False,
) -> SimpleMAE:
    """SimpleMAE around a very small timm ViT for tests and smoke runs: 28×28 grayscale,
    patch 4, width 64, 4 blocks; decoder 64 wide, 2 deep (about 0.3 M parameters).

    Args:
        img_size: Square input size, a multiple of ``patch_size``.
        patch_size: Patch size.
        in_chans: Image channels.
        embed_dim: Encoder width.
        depth: Encoder blocks.
        num_heads: Encoder attention heads.
        mlp_ratio: Encoder MLP ratio.
        decoder_dim: Decoder width.
        decoder_depth: Decoder blocks.
        decoder_heads: Decoder attention heads.
        decoder_dim_head: Width of one decoder head.
        mask_ratio: Fraction of patches masked, in (0, 1).
        norm_pix_loss: Per-patch normalised pixel targets.
    """
    return _timm_simple_mae(
        img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, decoder_dim,
        decoder_depth, decoder_heads, decoder_dim_head, mask_ratio, norm_pix_loss,
    )  # fmt: skip


def simple_mae_vit_tiny(
    img_size: int = 28,
    patch_size: int = 4,
    in_chans: int = 1,
    embed_dim: int = 192,
    depth: int = 12,
    num_heads: int = 3,
    mlp_ratio: float = 4.0,
    decoder_dim: int = 128,
    decoder_depth: int = 4,
    decoder_heads: int = 4,
    decoder_dim_head: int = 32,
    mask_ratio: float = 0.75,
    norm_pix_loss: bool = False,
) -> SimpleMAE:
    """SimpleMAE around a timm ViT-Tiny sized for Fashion-MNIST: 28×28 grayscale, patch 4
    (a 7×7 grid), width 192, 12 blocks, 3 heads; decoder 128 wide, 4 deep (about 6 M
    parameters). Arguments as in :func:`simple_mae_vit_micro`.
    """
    return _timm_simple_mae(
        img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, decoder_dim,
        decoder_depth, decoder_heads, decoder_dim_head, mask_ratio, norm_pix_loss,
    )  # fmt: skip


def simple_mae_torchvision_vit_tiny(
    img_size: int = 28,
    patch_size: int = 4,
    in_chans: int = 1,
    embed_dim: int = 192,
    depth: int = 12,
    num_heads: int = 3,
    mlp_ratio: float = 4.0,
    decoder_dim: int = 128,
    decoder_depth: int = 4,
    decoder_heads: int = 4,
    decoder_dim_head: int = 32,
    mask_ratio: float = 0.75,
    norm_pix_loss: bool = False,
) -> SimpleMAE:
    """SimpleMAE around a torchvision ``VisionTransformer`` of ViT-Tiny size for Fashion-MNIST
    (as :func:`simple_mae_vit_tiny`, torchvision parameter names under ``encoder.vit``).
    torchvision's patch projection always takes 3 channels; for ``in_chans != 3`` it is
    replaced by one with ``in_chans`` inputs. Arguments as in :func:`simple_mae_vit_micro`.
    """
    if img_size % patch_size:
        raise ValueError(f"img_size must be a multiple of patch_size={patch_size}, got {img_size}")
    vit = TorchvisionViT(
        image_size=img_size,
        patch_size=patch_size,
        num_layers=depth,
        num_heads=num_heads,
        hidden_dim=embed_dim,
        mlp_dim=int(embed_dim * mlp_ratio),
    )
    if in_chans != 3:
        vit.conv_proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
    encoder = MaskedVisionTransformerTorchvision(
        vit, weight_initialization="", pos_embed_initialization="sincos", use_mask_token=False
    )
    return _simple_mae(
        encoder, decoder_dim, decoder_depth, decoder_heads, decoder_dim_head, mask_ratio,
        norm_pix_loss,
    )  # fmt: skip


#: SimpleMAE presets by name (keyword overrides as in :func:`simple_mae_vit_micro`).
SIMPLE_MAE_PRESETS: Mapping[str, Callable[..., SimpleMAE]] = MappingProxyType(
    {
        "simple_mae_vit_micro": simple_mae_vit_micro,
        "simple_mae_vit_tiny": simple_mae_vit_tiny,
        "simple_mae_torchvision_vit_tiny": simple_mae_torchvision_vit_tiny,
    }
)


# --- the registry --------------------------------------------------------------------------------
@dataclass(frozen=True)
class PretrainPreset:
    """One named pre-training model.

    Attributes:
        name: The preset's name.
        family: One of :data:`PRESET_FAMILIES`.
        build_model: Builds the model from keyword overrides (for ``mae`` also the training
            options; the result is then the LightningModule itself).
    """

    name: str
    family: str
    build_model: Callable[..., nn.Module]


def _hivit_builder(name: str) -> Callable[..., HiViTMAEForPreTraining]:
    def build(**overrides: Any) -> HiViTMAEForPreTraining:
        return HiViTMAEForPreTraining.from_preset(name, **overrides)

    return build


def _mae_builder(name: str) -> Callable[..., MAE]:
    def build(**overrides: Any) -> MAE:
        return build_mae(name, **overrides)

    return build


def _registry() -> Mapping[str, PretrainPreset]:
    presets: dict[str, PretrainPreset] = {}
    for name in MAE_PRESETS:
        presets[name] = PretrainPreset(name, "mae", _mae_builder(name))
    for name in HIVIT_MAE_PRESETS:
        presets[name] = PretrainPreset(name, "mae_hivit", _hivit_builder(name))
    for name, builder in SIMPLE_MAE_PRESETS.items():
        presets[name] = PretrainPreset(name, "simple_mae", builder)
    return MappingProxyType(presets)


#: Every preset the CLI knows, by name.
PRETRAIN_PRESETS: Mapping[str, PretrainPreset] = _registry()


def describe_presets() -> str:
    """All preset names by family on one line, e.g. ``mae: [...]; mae_hivit: [...]; ...``."""
    parts = []
    for family in PRESET_FAMILIES:
        names = [p.name for p in PRETRAIN_PRESETS.values() if p.family == family]
        parts.append(f"{family}: {names}")
    return "; ".join(parts)


def build_pretrain_module(preset: str, **overrides: Any) -> pl.LightningModule:
    """Builds the LightningModule of a preset.

    Args:
        preset: A name of :data:`PRETRAIN_PRESETS`.
        **overrides: Model arguments replacing the preset's (``img_size``, ``in_chans``,
            ``mask_ratio``, ``norm_pix_loss``, and each family's own) and training options
            (:data:`~ssl_mae.models.pretrain_module.TRAINING_OPTIONS`: ``base_lr``, ``lr``, ...).

    Returns:
        An :class:`~ssl_mae.models.MAE` for the ``mae`` family, else a
        :class:`~ssl_mae.models.pretrain_module.PretrainModule` around the model.

    Raises:
        ValueError: For an unknown preset (the message lists all, by family) or bad values.
    """
    if not isinstance(preset, str) or preset not in PRETRAIN_PRESETS:
        raise ValueError(f"preset must be one of {describe_presets()}, got {preset!r}")
    entry = PRETRAIN_PRESETS[preset]
    if entry.family == "mae":
        module = entry.build_model(**overrides)
        assert isinstance(module, MAE)
        return module
    training = {k: v for k, v in overrides.items() if k in TRAINING_OPTIONS}
    model_overrides = {k: v for k, v in overrides.items() if k not in TRAINING_OPTIONS}
    model = entry.build_model(**model_overrides)
    return PretrainModule(model, preset=preset, model_overrides=model_overrides, **training)


def pretrain_module_from_checkpoint(checkpoint: Mapping[str, Any]) -> pl.LightningModule:
    """Rebuilds the module of a Lightning checkpoint of an ``MAE`` or a preset-built
    ``PretrainModule`` and loads its weights.

    Args:
        checkpoint: The loaded checkpoint dict (``hyper_parameters`` and ``state_dict``).

    Raises:
        ValueError: If the checkpoint does not say how to rebuild its model.
    """
    hparams = checkpoint.get("hyper_parameters")
    state_dict = checkpoint.get("state_dict")
    if not isinstance(hparams, Mapping) or not isinstance(state_dict, Mapping):
        raise ValueError("checkpoint must hold 'hyper_parameters' and 'state_dict'")
    module: pl.LightningModule
    if "model_overrides" in hparams:  # a PretrainModule
        preset = hparams.get("preset")
        if preset is None:
            raise ValueError(
                "checkpoint holds a PretrainModule built without a preset; rebuild the model "
                "yourself and call load_state_dict"
            )
        training = {k: hparams[k] for k in TRAINING_OPTIONS if k in hparams}
        module = build_pretrain_module(str(preset), **dict(hparams["model_overrides"]), **training)
    else:
        module = MAE(**dict(hparams))
    module.load_state_dict(state_dict)
    return module
