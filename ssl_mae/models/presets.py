"""Every pre-training model by name, as data: one registry, one vocabulary.

A preset is a family plus a configuration in one vocabulary shared by every family
(``img_size``, ``in_chans``, ``patch_size``, ``embed_dim``, ``depth``, ``num_heads``,
``mlp_ratio``, ``decoder_embed_dim``, ``decoder_depth``, ``decoder_num_heads``, ``mask_ratio``,
``norm_pix_loss``, plus a few family-specific keys such as HiViT's ``arch``). Each family has one
builder that turns that vocabulary into its model's constructor arguments::

    module = build_pretrain_module("mae_hivit_nano", in_chans=1)   # a LightningModule
    model = build_model("simple_mae_vit_tiny", mask_ratio=0.6)       # the bare model

Families:

* ``mae`` — the seed :class:`~ssl_mae.models.MAE` (itself a
  :class:`~ssl_mae.training.PretrainModule`);
* ``mae_hivit`` — :class:`~ssl_mae.hivit.HiViTMAEForPreTraining`;
* ``simple_mae`` — :class:`~ssl_mae.models.SimpleMAE` around a fresh timm or torchvision ViT
  (``backbone`` key);
* ``mae_variant`` — a :class:`~ssl_mae.MaskedAutoencoder` assembled from the blocks, where a
  variant is a choice of data: ``decoder`` (``"mae"`` or CrossMAE's ``"cross"``, with
  ``decode_ratio`` and ``encoder_layers``), ``masking`` (``"random"`` or ``"block"`` with
  ``block_size``), ``target`` (``"pixels"`` or ``"hog"`` with ``hog_bins``,
  ``hog_cell_size``) and ``reg_tokens`` (register tokens besides the class token). With every
  choice at its default it is the plain MAE of the ``mae`` family (see docs/variants.md).

The last three are trained inside a :class:`~ssl_mae.training.PretrainModule`, whose checkpoints
store the preset and the overrides, so :func:`pretrain_module_from_checkpoint` rebuilds the model
of any checkpoint. The Python modules of the models are imported when a preset is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from ssl_mae.models.mae import MAE
    from ssl_mae.training.module import PretrainModule

__all__ = [
    "HIVIT_MAE_PRESETS",
    "MAE_PRESETS",
    "PRESET_FAMILIES",
    "PRETRAIN_PRESETS",
    "VARIANT_OPTIONS",
    "PretrainPreset",
    "build_mae",
    "build_model",
    "build_pretrain_module",
    "describe_presets",
    "mae_vit_base_patch16",
    "mae_vit_huge_patch14",
    "mae_vit_large_patch16",
    "mae_vit_micro_patch4",
    "mae_vit_micro_patch7",
    "mae_vit_tiny_patch4",
    "pretrain_module_from_checkpoint",
]

PRESET_FAMILIES: tuple[str, ...] = ("mae", "mae_hivit", "simple_mae", "mae_variant")

#: The ``mae_variant`` family's own keys with their defaults (plain MAE).
VARIANT_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {
        "reg_tokens": 0,
        "decoder": "mae",
        "decode_ratio": 1.0,
        "encoder_layers": None,
        "masking": "random",
        "block_size": 2,
        "target": "pixels",
        "hog_bins": 9,
        "hog_cell_size": None,
    }
)


@dataclass(frozen=True)
class PretrainPreset:
    """One named pre-training model.

    Attributes:
        name: The preset's name.
        family: One of :data:`PRESET_FAMILIES`.
        config: The model configuration in the shared vocabulary (see the module docstring).
        description: One line on what the preset is for.
    """

    name: str
    family: str
    config: Mapping[str, Any]
    description: str


def _vit(**config: Any) -> Mapping[str, Any]:
    # Official MAE models use LayerNorm(eps=1e-6).
    return MappingProxyType({"layer_norm_eps": 1e-6, "mlp_ratio": 4.0, **config})


def _hivit_arch(embed_dims: int, depths: tuple[int, ...], num_heads: int) -> Mapping[str, Any]:
    return MappingProxyType({"embed_dims": embed_dims, "depths": depths, "num_heads": num_heads})


# Encoder and decoder sizes by position, so that each preset below reads as one row.
def _encoder(img_size: int, patch_size: int, in_chans: int, embed_dim: int, depth: int,
             num_heads: int) -> dict[str, Any]:  # fmt: skip
    return {"img_size": img_size, "patch_size": patch_size, "in_chans": in_chans,
            "embed_dim": embed_dim, "depth": depth, "num_heads": num_heads}  # fmt: skip


def _decoder(embed_dim: int, depth: int, num_heads: int) -> dict[str, Any]:
    return {"decoder_embed_dim": embed_dim, "decoder_depth": depth, "decoder_num_heads": num_heads}


def _simple_mae(backbone: str, embed_dim: int, depth: int, num_heads: int,
                decoder: Mapping[str, int], head_dim: int) -> Mapping[str, Any]:  # fmt: skip
    """A SimpleMAE preset for 28x28 grayscale images, patch 4."""
    return MappingProxyType({
        "img_size": 28, "patch_size": 4, "in_chans": 1, "mlp_ratio": 4.0, "backbone": backbone,
        "embed_dim": embed_dim, "depth": depth, "num_heads": num_heads, **decoder,
        "decoder_head_dim": head_dim,
    })  # fmt: skip


# The encoder of mae_vit_micro_patch7 (the CPU default), shared by the variants that keep it.
_MICRO7 = _encoder(28, 7, 1, 128, 4, 4)
_VIT_B16 = _encoder(224, 16, 3, 768, 12, 12)
_MICRO_DECODER = _decoder(64, 2, 4)
_TINY_DECODER = _decoder(128, 4, 4)
_DEC512D8B = _decoder(512, 8, 16)  # the official decoder of every ImageNet-size preset

_PRESETS: tuple[PretrainPreset, ...] = (
    PretrainPreset(
        "mae_vit_micro_patch4", "mae", _vit(**_encoder(28, 4, 1, 64, 4, 4), **_MICRO_DECODER),
        "tests and smoke runs: 28x28 grayscale, patch 4, width 64, 4 blocks (about 0.3 M)",
    ),
    PretrainPreset(
        "mae_vit_micro_patch7", "mae", _vit(**_MICRO7, **_MICRO_DECODER),
        "the CPU default for 28x28 grayscale (Fashion-MNIST): patch 7, width 128, 4 blocks",
    ),
    PretrainPreset(
        "mae_vit_micro_patch7_dec1", "mae", _vit(**_MICRO7, **_decoder(64, 1, 4)),
        "the Fashion-MNIST CPU recipe of docs/benchmarks.md: micro patch 7 with a one-block "
        "decoder (same accuracy on the validation split, cheaper steps)",
    ),
    PretrainPreset(
        "mae_vit_tiny_patch4", "mae", _vit(**_encoder(28, 4, 1, 192, 12, 3), **_TINY_DECODER),
        "ViT-Tiny for small images (28x28 grayscale; img_size=32, in_chans=3 for CIFAR)",
    ),
    PretrainPreset(
        "mae_vit_base_patch16", "mae", _vit(**_VIT_B16, **_DEC512D8B),
        "official mae_vit_base_patch16_dec512d8b (ImageNet-size images, GPU)",
    ),
    PretrainPreset(
        "mae_vit_large_patch16", "mae", _vit(**_encoder(224, 16, 3, 1024, 24, 16), **_DEC512D8B),
        "official mae_vit_large_patch16_dec512d8b (GPU)",
    ),
    PretrainPreset(
        "mae_vit_huge_patch14", "mae", _vit(**_encoder(224, 14, 3, 1280, 32, 16), **_DEC512D8B),
        "official mae_vit_huge_patch14_dec512d8b (GPU)",
    ),
    PretrainPreset("mae_hivit_t", "mae_hivit", MappingProxyType({"arch": "t"}),
                   "HiViT-T with the mmpretrain MAE recipe (6 x 512 decoder, norm-pix)"),
    PretrainPreset("mae_hivit_s", "mae_hivit", MappingProxyType({"arch": "s"}),
                   "HiViT-S with the mmpretrain MAE recipe"),
    PretrainPreset("mae_hivit_b", "mae_hivit", MappingProxyType({"arch": "b"}),
                   "HiViT-B (mmpretrain's, 24 main blocks) with the mmpretrain MAE recipe"),
    PretrainPreset("mae_hivit_b20", "mae_hivit", MappingProxyType({"arch": "b20"}),
                   "HiViT-B of the paper (20 main blocks) with the mmpretrain MAE recipe"),
    PretrainPreset("mae_hivit_l", "mae_hivit", MappingProxyType({"arch": "l"}),
                   "HiViT-L with the mmpretrain MAE recipe"),
    PretrainPreset(
        "mae_hivit_nano", "mae_hivit",
        MappingProxyType({"arch": _hivit_arch(96, (1, 1, 4), 3), "img_size": 32,
                          "decoder_embed_dim": 128, "decoder_depth": 2, "decoder_num_heads": 4}),
        "a CPU-sized HiViT for 32x32 images (e.g. resized Fashion-MNIST)",
    ),
    PretrainPreset(
        "simple_mae_vit_micro", "simple_mae", _simple_mae("timm", 64, 4, 4, _MICRO_DECODER, 16),
        "SimpleMAE around a very small timm ViT, for tests and smoke runs",
    ),
    PretrainPreset(
        "simple_mae_vit_tiny", "simple_mae", _simple_mae("timm", 192, 12, 3, _TINY_DECODER, 32),
        "SimpleMAE around a timm ViT-Tiny sized for Fashion-MNIST",
    ),
    PretrainPreset(
        "simple_mae_torchvision_vit_tiny", "simple_mae",
        _simple_mae("torchvision", 192, 12, 3, _TINY_DECODER, 32),
        "SimpleMAE around a torchvision VisionTransformer of ViT-Tiny size",
    ),
    PretrainPreset(
        "mae_crossmae_micro_patch7", "mae_variant",
        _vit(**_MICRO7, decoder="cross", **_MICRO_DECODER, decode_ratio=0.25,
             encoder_layers=(2, -1)),
        "CrossMAE on the mae_vit_micro_patch7 encoder: 2 cross-attention blocks reading "
        "encoder block 2 and the encoder output, decoding 25% of the masked patches",
    ),
    PretrainPreset(
        "mae_crossmae_base_patch16", "mae_variant",
        _vit(**_VIT_B16, decoder="cross", **_DEC512D8B, decode_ratio=0.25),
        "CrossMAE ViT-B/16 with an 8 x 512 cross-attention decoder at 25% decoding (GPU)",
    ),
    PretrainPreset(
        "mae_pixio_micro_patch4", "mae_variant",
        _vit(**_encoder(28, 4, 1, 128, 4, 4), reg_tokens=3, masking="block", block_size=2,
             **_decoder(32, 4, 4)),
        "Pixio-style for 28x28: 2x2-block masking, class + 3 register tokens (pool 'prefix'), "
        "a deeper, narrower decoder (4 x 32)",
    ),
    PretrainPreset(
        "mae_hog_micro_patch7", "mae_variant",
        _vit(**_MICRO7, target="hog", hog_bins=9, **_MICRO_DECODER),
        "MaskFeat-style: predicts 9-bin HOG histograms per patch on the mae_vit_micro_patch7 "
        "encoder",
    ),
)  # fmt: skip

#: Every preset the CLI knows, by name (the official long names of the ViT presets included).
PRETRAIN_PRESETS: Mapping[str, PretrainPreset] = MappingProxyType(
    {
        **{preset.name: preset for preset in _PRESETS},
        **{
            f"{name}_dec512d8b": next(p for p in _PRESETS if p.name == name)
            for name in ("mae_vit_base_patch16", "mae_vit_large_patch16", "mae_vit_huge_patch14")
        },
    }
)

#: The ``mae_hivit`` configurations by name (for ``HiViTMAEForPreTraining.from_preset``).
HIVIT_MAE_PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {p.name: p.config for p in _PRESETS if p.family == "mae_hivit"}
)


# --- one builder per family ----------------------------------------------------------------------
def _build_mae(config: Mapping[str, Any], training: Mapping[str, Any]) -> MAE:
    from ssl_mae.models.mae import MAE

    config = dict(config)
    if "norm_layer" in config:  # an explicit norm layer replaces the preset's LayerNorm(1e-6)
        config.pop("layer_norm_eps", None)
    return MAE(**config, **training)


def _build_hivit(config: Mapping[str, Any]) -> nn.Module:
    from ssl_mae.models.hivit.pretraining import HiViTMAEForPreTraining

    return HiViTMAEForPreTraining(**config)


def _build_simple_mae(config: Mapping[str, Any]) -> nn.Module:
    from ssl_mae.models.simple_mae import SimpleMAE, fresh_vit

    config = dict(config)
    encoder = fresh_vit(
        config.pop("backbone"),
        **{k: config.pop(k) for k in ("img_size", "patch_size", "in_chans", "embed_dim",
                                      "depth", "num_heads", "mlp_ratio")},
    )  # fmt: skip
    return SimpleMAE(
        encoder,
        decoder_dim=config.pop("decoder_embed_dim"),
        masking_ratio=config.pop("mask_ratio", 0.75),
        decoder_depth=config.pop("decoder_depth"),
        decoder_heads=config.pop("decoder_num_heads"),
        decoder_dim_head=config.pop("decoder_head_dim"),
        norm_pix=config.pop("norm_pix_loss", False),
        **config,
    )


def _build_variant(config: Mapping[str, Any]) -> nn.Module:
    """The ``mae_variant`` family: the core from a timm ViT, a decoder, a masking, a target."""
    from timm.models.vision_transformer import VisionTransformer

    from ssl_mae.core import MaskedAutoencoder
    from ssl_mae.loss import MAELoss
    from ssl_mae.masking import BlockMasking
    from ssl_mae.modules import CrossMAEDecoder, MAEDecoder, MaskedVisionTransformer
    from ssl_mae.targets import HOGTarget

    config = {**VARIANT_OPTIONS, "mask_ratio": 0.75, "norm_pix_loss": False, **config}
    choices = {"decoder": ("mae", "cross"), "masking": ("random", "block"),
               "target": ("pixels", "hog")}  # fmt: skip
    for key, allowed in choices.items():
        if config[key] not in allowed:
            raise ValueError(f"{key} must be one of {list(allowed)}, got {config[key]!r}")
    shared = ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads",
              "mlp_ratio", "layer_norm_eps", "decoder_embed_dim", "decoder_depth",
              "decoder_num_heads", "mask_ratio", "norm_pix_loss")  # fmt: skip
    unknown = sorted(set(config) - set(shared) - set(VARIANT_OPTIONS))
    if unknown:
        raise TypeError(
            f"mae_variant presets got unknown keys {unknown}; allowed are "
            f"{sorted([*shared, *VARIANT_OPTIONS])}"
        )
    norm_layer = partial(nn.LayerNorm, eps=config["layer_norm_eps"])
    patch_size, in_chans = config["patch_size"], config["in_chans"]
    vit = VisionTransformer(
        img_size=config["img_size"], patch_size=patch_size, in_chans=in_chans, num_classes=0,
        embed_dim=config["embed_dim"], depth=config["depth"], num_heads=config["num_heads"],
        mlp_ratio=config["mlp_ratio"], qkv_bias=True, norm_layer=norm_layer,
        reg_tokens=config["reg_tokens"], weight_init="skip",
    )  # fmt: skip
    encoder = MaskedVisionTransformer(vit, use_mask_token=False)
    target = None
    if config["target"] == "hog":
        target = HOGTarget(patch_size, in_chans, config["hog_bins"], config["hog_cell_size"])
    decoder_kwargs: dict[str, Any] = {}
    if config["decoder"] == "cross":
        decoder_kwargs["encoder_layers"] = config["encoder_layers"]
    elif config["encoder_layers"] is not None:
        raise ValueError("encoder_layers needs decoder='cross' (the MAE decoder reads one layer)")
    decoder = (CrossMAEDecoder if config["decoder"] == "cross" else MAEDecoder)(
        num_patches=encoder.num_patches, patch_size=patch_size, in_chans=in_chans,
        embed_dim=config["embed_dim"], decoder_embed_dim=config["decoder_embed_dim"],
        decoder_depth=config["decoder_depth"], decoder_num_heads=config["decoder_num_heads"],
        num_prefix_tokens=encoder.num_prefix_tokens, mlp_ratio=config["mlp_ratio"],
        norm_layer=norm_layer, target_dim=None if target is None else target.dim,
        **decoder_kwargs,
    )  # fmt: skip
    return MaskedAutoencoder(
        encoder,
        decoder,
        MAELoss(norm_pix=config["norm_pix_loss"]),
        config["mask_ratio"],
        target=target,
        masking=BlockMasking(config["block_size"]) if config["masking"] == "block" else None,
        decode_ratio=config["decode_ratio"],
    )


_MODEL_BUILDERS: Mapping[str, Callable[[Mapping[str, Any]], nn.Module]] = {
    "mae_hivit": _build_hivit,
    "simple_mae": _build_simple_mae,
    "mae_variant": _build_variant,
}


def describe_presets() -> str:
    """All preset names by family on one line, e.g. ``mae: [...]; mae_hivit: [...]; ...``."""
    parts = []
    for family in PRESET_FAMILIES:
        names = [p.name for p in _PRESETS if p.family == family]
        parts.append(f"{family}: {names}")
    return "; ".join(parts)


def _preset(name: str) -> PretrainPreset:
    if not isinstance(name, str) or name not in PRETRAIN_PRESETS:
        raise ValueError(f"preset must be one of {describe_presets()}, got {name!r}")
    return PRETRAIN_PRESETS[name]


def _split_training(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from ssl_mae.training.module import TRAINING_OPTIONS

    training = {k: v for k, v in overrides.items() if k in TRAINING_OPTIONS}
    model = {k: v for k, v in overrides.items() if k not in TRAINING_OPTIONS}
    return model, training


def build_model(preset: str, **overrides: Any) -> nn.Module:
    """Builds the model of a preset (for ``mae`` presets the ``MAE`` LightningModule itself).

    Args:
        preset: A name of :data:`PRETRAIN_PRESETS`.
        **overrides: Configuration keys replacing the preset's (``img_size``, ``in_chans``,
            ``mask_ratio``, ``norm_pix_loss``, ...).
    """
    entry = _preset(preset)
    config = {**entry.config, **overrides}
    if entry.family == "mae":
        return _build_mae(config, {})
    return _MODEL_BUILDERS[entry.family](config)


def build_pretrain_module(preset: str, **overrides: Any) -> PretrainModule:
    """Builds the LightningModule of a preset.

    Args:
        preset: A name of :data:`PRETRAIN_PRESETS`.
        **overrides: Configuration keys replacing the preset's (``img_size``, ``in_chans``,
            ``mask_ratio``, ``norm_pix_loss``, and each family's own) and training options
            (:data:`~ssl_mae.training.module.TRAINING_OPTIONS`: ``base_lr``, ``lr``, ...).

    Returns:
        An :class:`~ssl_mae.models.MAE` for the ``mae`` family, else a
        :class:`~ssl_mae.training.PretrainModule` around the model.

    Raises:
        ValueError: For an unknown preset (the message lists all, by family) or bad values.
    """
    from ssl_mae.training.module import PretrainModule

    entry = _preset(preset)
    model_overrides, training = _split_training(overrides)
    config = {**entry.config, **model_overrides}
    if entry.family == "mae":
        return _build_mae(config, training)
    model = _MODEL_BUILDERS[entry.family](config)
    return PretrainModule(model, preset=preset, model_overrides=model_overrides, **training)


def pretrain_module_from_checkpoint(checkpoint: Mapping[str, Any]) -> PretrainModule:
    """Rebuilds the module of a Lightning checkpoint of an ``MAE`` or a preset-built
    ``PretrainModule`` and loads its weights.

    Args:
        checkpoint: The loaded checkpoint dict (``hyper_parameters`` and ``state_dict``).

    Raises:
        ValueError: If the checkpoint does not say how to rebuild its model.
    """
    from ssl_mae.models.mae import MAE
    from ssl_mae.training.module import TRAINING_OPTIONS

    hparams = checkpoint.get("hyper_parameters")
    state_dict = checkpoint.get("state_dict")
    if not isinstance(hparams, Mapping) or not isinstance(state_dict, Mapping):
        raise ValueError("checkpoint must hold 'hyper_parameters' and 'state_dict'")
    module: PretrainModule
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


# --- the seed's preset functions -----------------------------------------------------------------
def _mae_preset(name: str, overrides: Mapping[str, Any]) -> MAE:
    return _build_mae({**PRETRAIN_PRESETS[name].config, **overrides}, {})


def mae_vit_micro_patch4(**overrides: Any) -> MAE:
    """A very small MAE for tests and smoke runs: 28×28 grayscale, patch 4, width 64, 4 blocks,
    decoder 64 wide and 2 deep (about 0.3 M parameters)."""
    return _mae_preset("mae_vit_micro_patch4", overrides)


def mae_vit_micro_patch7(**overrides: Any) -> MAE:
    """The CPU default for 28×28 grayscale (Fashion-MNIST): patch 7 (16 tokens), width 128,
    4 blocks, decoder 64 wide and 2 deep (about 0.9 M parameters)."""
    return _mae_preset("mae_vit_micro_patch7", overrides)


def mae_vit_tiny_patch4(**overrides: Any) -> MAE:
    """ViT-Tiny MAE for small images (default 28×28 grayscale, e.g. Fashion-MNIST; pass
    ``img_size=32, in_chans=3`` for CIFAR): patch 4, width 192, 12 blocks, 3 heads, decoder
    128 wide and 4 deep (about 6 M parameters)."""
    return _mae_preset("mae_vit_tiny_patch4", overrides)


def mae_vit_base_patch16(**overrides: Any) -> MAE:
    """Official ``mae_vit_base_patch16_dec512d8b``: ViT-B/16 encoder, 512-wide 8-deep decoder."""
    return _mae_preset("mae_vit_base_patch16", overrides)


def mae_vit_large_patch16(**overrides: Any) -> MAE:
    """Official ``mae_vit_large_patch16_dec512d8b``: ViT-L/16 encoder, 512-wide 8-deep decoder."""
    return _mae_preset("mae_vit_large_patch16", overrides)


def mae_vit_huge_patch14(**overrides: Any) -> MAE:
    """Official ``mae_vit_huge_patch14_dec512d8b``: ViT-H/14 encoder, 512-wide 8-deep decoder."""
    return _mae_preset("mae_vit_huge_patch14", overrides)


#: The seed's ``MAE`` presets by name (official long names included).
MAE_PRESETS: Mapping[str, Callable[..., MAE]] = MappingProxyType(
    {
        "mae_vit_micro_patch4": mae_vit_micro_patch4,
        "mae_vit_micro_patch7": mae_vit_micro_patch7,
        "mae_vit_micro_patch7_dec1": lambda **overrides: _mae_preset(
            "mae_vit_micro_patch7_dec1", overrides
        ),
        "mae_vit_tiny_patch4": mae_vit_tiny_patch4,
        "mae_vit_base_patch16": mae_vit_base_patch16,
        "mae_vit_large_patch16": mae_vit_large_patch16,
        "mae_vit_huge_patch14": mae_vit_huge_patch14,
        "mae_vit_base_patch16_dec512d8b": mae_vit_base_patch16,
        "mae_vit_large_patch16_dec512d8b": mae_vit_large_patch16,
        "mae_vit_huge_patch14_dec512d8b": mae_vit_huge_patch14,
    }
)


def build_mae(preset: str, **overrides: Any) -> MAE:
    """Builds a ``mae`` preset by name.

    Args:
        preset: One of :data:`MAE_PRESETS` (e.g. ``"mae_vit_base_patch16"``).
        **overrides: ``MAE`` arguments replacing the preset's (``img_size``, ``in_chans``,
            ``norm_pix_loss``, ``norm_layer``, training options, ...).
    """
    if preset not in MAE_PRESETS:
        raise ValueError(f"preset must be one of {sorted(MAE_PRESETS)}, got {preset!r}")
    return _mae_preset(preset, overrides)
