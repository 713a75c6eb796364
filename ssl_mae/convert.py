"""Checkpoint converters: official MAE, Hugging Face, timm and Lightly layouts ↔ our blocks.

Our blocks were chosen so that most layouts are a renaming away:

* :class:`~ssl_mae.modules.MaskedVisionTransformer` wraps a timm ``VisionTransformer`` under
  ``vit.``; timm's names (``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.N.norm1``,
  ``blocks.N.attn.qkv``, ``blocks.N.attn.proj``, ``blocks.N.mlp.fc1`` …, ``norm``) are the official
  MAE encoder names, and Lightly's ``MaskedVisionTransformerTIMM`` uses the very same ``vit.*``
  keys.
* :class:`~ssl_mae.modules.MAEDecoder` uses the official decoder names (``decoder_embed``,
  ``mask_token``, ``decoder_pos_embed``, ``decoder_blocks.N``, ``decoder_norm``, ``decoder_pred``).

So the **official layout** (one flat dict, as in ``checkpoint["model"]`` of facebookresearch/mae)
is the hub of every conversion here:

    Hugging Face ──hf_to_official──▶ official ──load_official──▶ encoder + decoder
    timm encoder ──(same names)────▶ official encoder
    Lightly      ──strip "vit."────▶ official encoder

The one real difference is that Hugging Face splits the fused ``qkv`` projection into
``query``/``key``/``value``; they are concatenated (and split) along the output dimension.

Every loader checks the keys and shapes first and raises a ``ValueError`` that names the offending
keys in the layout the user gave, instead of a ``load_state_dict`` traceback.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from ssl_mae.modules.decoder import MAEDecoder
from ssl_mae.modules.masked_vision_transformer import MaskedVisionTransformer

__all__ = [
    "check_state_dict",
    "encoder_state_dict_from_lightly",
    "encoder_state_dict_from_timm",
    "export_timm_vit",
    "find_masked_vision_transformer",
    "hf_to_official_state_dict",
    "infer_official_architecture",
    "load_official",
    "load_timm_encoder",
    "normalize_hf_key",
    "official_state_dict",
    "official_to_hf_state_dict",
    "split_official_state_dict",
    "unwrap_checkpoint",
]

# Prefix under which MaskedVisionTransformer (and Lightly's MaskedVisionTransformerTIMM) keeps
# the wrapped timm VisionTransformer.
_VIT_PREFIX = "vit."
_CHECKPOINT_CONTAINER_KEYS = ("model", "state_dict", "model_state", "module")
_MAX_KEYS_IN_MESSAGE = 12


# --------------------------------------------------------------------------------------------
# Reading checkpoints and checking them against a model
# --------------------------------------------------------------------------------------------
def unwrap_checkpoint(
    checkpoint: Mapping[str, Any] | str | os.PathLike[str],
) -> dict[str, Tensor]:
    """Returns the flat tensor dict of a checkpoint, whatever it is wrapped in.

    Accepts a path (``.pth``/``.pt``/``.bin``/``.ckpt`` loaded with ``weights_only=True``, or
    ``.safetensors``) or an already loaded object. Nested containers (``"model"`` as in the
    official MAE checkpoints, ``"state_dict"`` as in Lightning checkpoints) are opened and a DDP
    ``module.`` prefix is removed.

    Args:
        checkpoint: A path or a mapping.

    Returns:
        Dict from parameter name to tensor.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: Any = load_file(str(path), device="cpu")
        else:
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    else:
        loaded = checkpoint
    if not isinstance(loaded, Mapping):
        raise TypeError(f"checkpoint must be a mapping of tensors, got {type(loaded).__name__}")
    # Open containers until the values are tensors.
    for _ in range(3):
        if any(isinstance(v, Tensor) for v in loaded.values()):
            break
        inner = next((loaded[k] for k in _CHECKPOINT_CONTAINER_KEYS if k in loaded), None)
        if not isinstance(inner, Mapping):
            raise ValueError(
                "checkpoint holds no tensors and none of the containers "
                f"{list(_CHECKPOINT_CONTAINER_KEYS)}; its keys are {sorted(loaded)[:10]}"
            )
        loaded = inner
    state_dict = {str(k): v for k, v in loaded.items() if isinstance(v, Tensor)}
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module.") :]: v for k, v in state_dict.items()}
    return state_dict


def _format_keys(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(repr(k) for k in keys[:_MAX_KEYS_IN_MESSAGE])
    more = len(keys) - _MAX_KEYS_IN_MESSAGE
    return f"[{shown}{f', ... ({more} more)' if more > 0 else ''}]"


def check_state_dict(
    expected: Mapping[str, Tensor],
    provided: Mapping[str, Tensor],
    source: str,
    strict: bool = True,
    ignore_unexpected: Iterable[str] = (),
) -> list[str]:
    """Compares a checkpoint with what a model needs and raises a clear error on mismatch.

    Args:
        expected: Keys and tensors (for their shapes) the model needs, in the checkpoint layout.
        provided: The checkpoint, in the same layout.
        source: Name of the layout/file for the message, e.g. ``"Hugging Face checkpoint"``.
        strict: Raise on missing and unexpected keys; otherwise only on shape mismatches, and
            the missing keys are returned (they keep their initial values).
        ignore_unexpected: Key prefixes that may be present without being used (e.g. the
            decoder when loading an encoder).

    Returns:
        Sorted list of the missing keys (empty under ``strict=True``).
    """
    ignored = tuple(ignore_unexpected)
    missing = [k for k in expected if k not in provided]
    unexpected = [k for k in provided if k not in expected and not k.startswith(ignored or ("\0",))]
    mismatched = [
        f"{k!r}: checkpoint {tuple(provided[k].shape)}, model {tuple(expected[k].shape)}"
        for k in expected
        if k in provided and tuple(provided[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if mismatched:
        problems.append(
            f"{len(mismatched)} weight(s) have the wrong shape: " + "; ".join(mismatched[:12])
        )
    if strict and missing:
        problems.append(f"{len(missing)} weight(s) are missing: {_format_keys(missing)}")
    if strict and unexpected:
        problems.append(
            f"{len(unexpected)} weight(s) are not used by the model: {_format_keys(unexpected)}"
        )
    if problems:
        hint = " (pass strict=False to keep the model's own values for missing weights)"
        raise ValueError(
            f"{source} does not match the model: "
            + "; ".join(problems)
            + (hint if missing and strict and not mismatched else "")
        )
    return sorted(missing)


# --------------------------------------------------------------------------------------------
# Official layout ↔ our modules
# --------------------------------------------------------------------------------------------
def _is_official_decoder_key(key: str) -> bool:
    return key.startswith("decoder_") or key == "mask_token"


def split_official_state_dict(
    state_dict: Mapping[str, Tensor],
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Splits an official MAE state dict into its encoder and decoder parts.

    Args:
        state_dict: Official layout (``cls_token``, ``pos_embed``, ``blocks.N.*``, ``norm.*``,
            ``mask_token``, ``decoder_*``), e.g. ``torch.load(path)["model"]``.

    Returns:
        ``(encoder, decoder)``: the encoder in timm ``VisionTransformer`` names (load it into
        ``MaskedVisionTransformer.vit``) and the decoder in :class:`MAEDecoder` names.
    """
    encoder = {k: v for k, v in state_dict.items() if not _is_official_decoder_key(k)}
    decoder = {k: v for k, v in state_dict.items() if _is_official_decoder_key(k)}
    return encoder, decoder


def official_state_dict(
    encoder: MaskedVisionTransformer, decoder: MAEDecoder | None = None
) -> dict[str, Tensor]:
    """Exports our encoder (and decoder) in the official MAE layout.

    The encoder's own mask token (if it has one) is not part of the official layout and is left
    out; the official ``mask_token`` is the decoder's.

    Args:
        encoder: The masked ViT encoder.
        decoder: The MAE decoder, or None for an encoder-only checkpoint.

    Returns:
        Dict in the official layout (detached tensors sharing memory with the modules).
    """
    if not isinstance(encoder, MaskedVisionTransformer):
        raise TypeError(f"encoder must be a MaskedVisionTransformer, got {type(encoder).__name__}")
    state = {k: v for k, v in encoder.vit.state_dict().items() if not k.startswith("head.")}
    if decoder is not None:
        if not isinstance(decoder, MAEDecoder):
            raise TypeError(f"decoder must be an MAEDecoder, got {type(decoder).__name__}")
        state.update(decoder.state_dict())
    return state


def load_official(
    encoder: MaskedVisionTransformer,
    decoder: MAEDecoder | None,
    checkpoint: Mapping[str, Any] | str | os.PathLike[str],
    strict: bool = True,
) -> list[str]:
    """Loads an official facebookresearch/mae checkpoint into our encoder and decoder.

    Works for the full pretraining checkpoints (``mae_visualize_vit_*.pth``, with decoder) and,
    with ``decoder=None`` or ``strict=False``, for the encoder-only ones
    (``mae_pretrain_vit_*.pth``). A classifier head (``head.*``, ``fc_norm.*``) of fine-tuned
    checkpoints is ignored.

    Args:
        encoder: Target encoder; its timm ViT must have the checkpoint's shapes.
        decoder: Target decoder, or None to load the encoder only (the decoder keys of the
            checkpoint are then ignored).
        checkpoint: Path, full checkpoint (``{"model": ...}``) or flat state dict.
        strict: Raise on missing/unexpected keys (shape mismatches always raise).

    Returns:
        Official-layout names of the weights the checkpoint lacked (only with ``strict=False``).
    """
    state_dict = unwrap_checkpoint(checkpoint)
    expected = official_state_dict(encoder, decoder)
    ignore = ["head.", "fc_norm."]
    if decoder is None:
        ignore += ["decoder_", "mask_token"]
    missing = check_state_dict(
        expected, state_dict, "official MAE checkpoint", strict=strict, ignore_unexpected=ignore
    )
    encoder_part, decoder_part = split_official_state_dict(
        {k: v for k, v in state_dict.items() if k in expected}
    )
    with torch.no_grad():
        encoder.vit.load_state_dict(encoder_part, strict=False)
        if decoder is not None:
            decoder.load_state_dict(decoder_part, strict=False)
    return missing


def infer_official_architecture(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    """Reads the architecture sizes off an official-layout (or timm) state dict.

    The number of attention heads cannot be read from the weights; callers must supply it.

    Args:
        state_dict: Official-layout state dict (decoder optional).

    Returns:
        Dict with ``embed_dim``, ``depth``, ``mlp_hidden``, ``patch_size``, ``in_chans``,
        ``grid_size``, ``qkv_bias`` and, when a decoder is present, ``decoder_embed_dim``,
        ``decoder_depth``, ``decoder_mlp_hidden``.
    """
    needed = ("pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight")
    absent = [k for k in needed if k not in state_dict]
    if absent:
        raise ValueError(
            f"state_dict is not an official MAE / timm ViT state dict: missing {absent}"
        )
    embed_dim, in_chans, patch_size, _ = state_dict["patch_embed.proj.weight"].shape
    num_tokens = state_dict["pos_embed"].shape[1]
    has_cls = "cls_token" in state_dict
    num_patches = num_tokens - (1 if has_cls else 0)
    side = round(num_patches**0.5)
    if side * side != num_patches:
        raise ValueError(f"pos_embed holds {num_patches} patches, not a square grid")

    def depth(prefix: str) -> int:
        pattern = re.compile(rf"^{re.escape(prefix)}(\d+)\.")
        indices = {int(m.group(1)) for k in state_dict if (m := pattern.match(k))}
        return max(indices) + 1 if indices else 0

    info: dict[str, Any] = {
        "embed_dim": int(embed_dim),
        "depth": depth("blocks."),
        "mlp_hidden": int(state_dict["blocks.0.mlp.fc1.weight"].shape[0]),
        "patch_size": int(patch_size),
        "in_chans": int(in_chans),
        "grid_size": (side, side),
        "qkv_bias": "blocks.0.attn.qkv.bias" in state_dict,
    }
    if "decoder_embed.weight" in state_dict:
        info["decoder_embed_dim"] = int(state_dict["decoder_embed.weight"].shape[0])
        info["decoder_depth"] = depth("decoder_blocks.")
        fc1 = state_dict.get("decoder_blocks.0.mlp.fc1.weight")
        info["decoder_mlp_hidden"] = int(fc1.shape[0]) if fc1 is not None else 0
    return info


# --------------------------------------------------------------------------------------------
# Hugging Face layout ↔ official layout
# --------------------------------------------------------------------------------------------
# Hugging Face checkpoints exist with three spellings of the same weights: the hub layout written
# by transformers 4.x (``encoder.layer.N.attention.attention.query``), the module names of
# transformers 5.x (``layers.N.attention.q_proj``), and what transformers 5.x writes back
# (``decoder.decoder_encoder.layer.N``, its reverse renaming of ``layers.`` applied to the
# decoder). All are read; the hub layout is written.
_HF_KEY_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"^decoder\.decoder_encoder\.layer\.", "decoder.decoder_layers."),
        (r"^(vit\.)?layers\.", r"\1encoder.layer."),
        (r"\.attention\.q_proj\.", ".attention.attention.query."),
        (r"\.attention\.k_proj\.", ".attention.attention.key."),
        (r"\.attention\.v_proj\.", ".attention.attention.value."),
        (r"\.attention\.o_proj\.", ".attention.output.dense."),
        (r"\.mlp\.fc1\.", ".intermediate.dense."),
        (r"\.mlp\.fc2\.", ".output.dense."),
    )
)

# Per-layer names: Hugging Face (hub layout) → timm/official.
_HF_LAYER_NAMES = {
    "layernorm_before": "norm1",
    "attention.output.dense": "attn.proj",
    "layernorm_after": "norm2",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
}
_HF_QKV = ("query", "key", "value")
_HF_ENCODER_NAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_HF_DECODER_NAMES = {
    "mask_token": "mask_token",
    "decoder_pos_embed": "decoder_pos_embed",
    "decoder_embed.weight": "decoder_embed.weight",
    "decoder_embed.bias": "decoder_embed.bias",
    "decoder_norm.weight": "decoder_norm.weight",
    "decoder_norm.bias": "decoder_norm.bias",
    "decoder_pred.weight": "decoder_pred.weight",
    "decoder_pred.bias": "decoder_pred.bias",
}
_HF_LAYER_KEY = re.compile(
    r"^(?P<stack>encoder\.layer|decoder_layers)\.(?P<index>\d+)\.(?P<name>.+)\.(?P<param>weight|bias)$"
)


def normalize_hf_key(key: str) -> str:
    """Rewrites a Hugging Face ViTMAE parameter name in the hub layout of transformers 4.x.

    Args:
        key: A name such as ``vit.layers.0.attention.q_proj.weight`` (transformers 5 modules).

    Returns:
        The hub-layout name, e.g. ``vit.encoder.layer.0.attention.attention.query.weight``.
    """
    for pattern, replacement in _HF_KEY_RULES:
        key = pattern.sub(replacement, key)
    return key


def _hf_to_official_key(key: str) -> tuple[str, str | None] | None:
    """Maps a normalised HF key without model prefix to (official key, qkv part or None)."""
    if key in _HF_ENCODER_NAMES:
        return _HF_ENCODER_NAMES[key], None
    match = _HF_LAYER_KEY.match(key)
    if match is None:
        return None
    stack = "blocks" if match["stack"] == "encoder.layer" else "decoder_blocks"
    prefix, name, param = f"{stack}.{match['index']}.", match["name"], match["param"]
    if name in _HF_LAYER_NAMES:
        return f"{prefix}{_HF_LAYER_NAMES[name]}.{param}", None
    for part in _HF_QKV:
        if name == f"attention.attention.{part}":
            return f"{prefix}attn.qkv.{param}", part
    return None


def hf_to_official_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Converts a Hugging Face ViTMAE state dict into the official MAE layout.

    Accepts ``ViTMAEForPreTraining`` checkpoints (``vit.*`` and ``decoder.*``) and ``ViTMAEModel``
    ones (no ``vit.`` prefix), in any of the spellings of :func:`normalize_hf_key`. The separate
    query/key/value projections are concatenated into timm's fused ``qkv``.

    Args:
        state_dict: Hugging Face state dict.

    Returns:
        Official-layout state dict.

    Raises:
        ValueError: For keys that are not ViTMAE weights, or an incomplete query/key/value set.
    """
    official: dict[str, Tensor] = {}
    qkv_parts: dict[str, dict[str, Tensor]] = {}
    unknown: list[str] = []
    for original_key, value in state_dict.items():
        key = normalize_hf_key(original_key)
        if key.startswith("vit."):
            key = key[len("vit.") :]
        if key.startswith("decoder."):
            inner = key[len("decoder.") :]
            mapped: tuple[str, str | None] | None
            mapped = (_HF_DECODER_NAMES[inner], None) if inner in _HF_DECODER_NAMES else None
            if mapped is None and inner.startswith("decoder_layers."):
                mapped = _hf_to_official_key(inner)
        else:
            mapped = _hf_to_official_key(key)
        if mapped is None:
            unknown.append(original_key)
            continue
        official_key, part = mapped
        if part is None:
            official[official_key] = value
        else:
            qkv_parts.setdefault(official_key, {})[part] = value
    if unknown:
        raise ValueError(
            f"state_dict has {len(unknown)} key(s) that are not ViTMAE weights: "
            f"{_format_keys(unknown)}"
        )
    for official_key, parts in qkv_parts.items():
        absent = [p for p in _HF_QKV if p not in parts]
        if absent:
            raise ValueError(
                f"state_dict has an incomplete query/key/value set for {official_key!r}: "
                f"missing {absent}"
            )
        official[official_key] = torch.cat([parts[p] for p in _HF_QKV], dim=0)
    return official


def _official_to_hf_key(key: str) -> str | list[str]:
    if key in _HF_DECODER_NAMES.values() and (key.startswith("decoder_") or key == "mask_token"):
        return f"decoder.{key}"
    inverse = {v: k for k, v in _HF_ENCODER_NAMES.items()}
    if key in inverse:
        return inverse[key]
    match = re.match(r"^(blocks|decoder_blocks)\.(\d+)\.(.+)\.(weight|bias)$", key)
    if match is None:
        raise ValueError(f"state_dict key {key!r} is not an official MAE weight")
    stack, index, name, param = match.groups()
    prefix = f"encoder.layer.{index}." if stack == "blocks" else f"decoder.decoder_layers.{index}."
    if name == "attn.qkv":
        return [f"{prefix}attention.attention.{part}.{param}" for part in _HF_QKV]
    inverse_layer = {v: k for k, v in _HF_LAYER_NAMES.items()}
    if name not in inverse_layer:
        raise ValueError(f"state_dict key {key!r} is not an official MAE weight")
    return f"{prefix}{inverse_layer[name]}.{param}"


def official_to_hf_state_dict(
    state_dict: Mapping[str, Tensor], base_model_prefix: str = "vit."
) -> dict[str, Tensor]:
    """Converts an official-layout state dict into the Hugging Face ViTMAE hub layout.

    Args:
        state_dict: Official-layout state dict (decoder optional).
        base_model_prefix: Prefix of the encoder weights: ``"vit."`` for ``ViTMAEForPreTraining``,
            ``""`` for ``ViTMAEModel``.

    Returns:
        Hugging Face state dict with independent, contiguous tensors (ready for safetensors).
    """
    hf: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        target = _official_to_hf_key(key)
        if isinstance(target, list):
            for name, chunk in zip(target, value.chunk(3, dim=0), strict=True):
                prefix = "" if name.startswith("decoder.") else base_model_prefix
                hf[prefix + name] = chunk.detach().clone().contiguous()
        else:
            prefix = "" if target.startswith("decoder.") else base_model_prefix
            hf[prefix + target] = value.detach().clone().contiguous()
    return hf


# --------------------------------------------------------------------------------------------
# timm and Lightly encoders
# --------------------------------------------------------------------------------------------
def encoder_state_dict_from_timm(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Converts a timm ``VisionTransformer`` state dict (e.g. ``vit_base_patch16_224.mae``)
    into :class:`MaskedVisionTransformer` keys.

    The classifier head (``head.*``, present only for fine-tuned models) is dropped.

    Args:
        state_dict: timm state dict (``cls_token``, ``pos_embed``, ``blocks.N.*``, ``norm.*``).

    Returns:
        State dict with ``vit.`` prefixed keys.
    """
    return {
        _VIT_PREFIX + k: v
        for k, v in unwrap_checkpoint(state_dict).items()
        if not k.startswith("head.")
    }


def encoder_state_dict_from_lightly(
    state_dict: Mapping[str, Tensor], prefix: str = ""
) -> dict[str, Tensor]:
    """Converts a Lightly ``MaskedVisionTransformerTIMM`` state dict into our encoder's keys.

    Both wrap a timm ViT under ``vit.``, so only the prefix of the surrounding model (e.g.
    ``"backbone."`` in Lightly's MAE examples) is removed. Lightly's encoder mask token is kept
    under ``mask_token``; drop it when loading into an encoder built with
    ``use_mask_token=False`` (MAE drops tokens and never uses it).

    Args:
        state_dict: Lightly state dict (of the encoder, or of a whole model with ``prefix``).
        prefix: Prefix of the encoder inside the saved model, e.g. ``"backbone."``.

    Returns:
        State dict with ``vit.*`` (and ``mask_token``) keys.
    """
    flat = unwrap_checkpoint(state_dict)
    selected = {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}
    encoder = {k: v for k, v in selected.items() if k.startswith(_VIT_PREFIX) or k == "mask_token"}
    if not encoder:
        raise ValueError(
            f"state_dict has no Lightly encoder weights under prefix {prefix!r} "
            f"(expected keys like {prefix + 'vit.cls_token'!r}); its keys start with "
            f"{sorted({k.split('.')[0] for k in flat})[:10]}"
        )
    return encoder


def load_timm_encoder(
    encoder: MaskedVisionTransformer,
    state_dict: Mapping[str, Tensor],
    strict: bool = True,
) -> list[str]:
    """Loads a timm ``VisionTransformer`` state dict into our encoder, with clear errors.

    Args:
        encoder: Target encoder.
        state_dict: timm (or official encoder) state dict; a classifier head is ignored.
        strict: Raise on missing/unexpected keys (shape mismatches always raise).

    Returns:
        Names of weights the state dict lacked (only with ``strict=False``).
    """
    return load_official(encoder, None, unwrap_checkpoint(state_dict), strict=strict)


def find_masked_vision_transformer(model: nn.Module) -> MaskedVisionTransformer:
    """Returns the (first) :class:`MaskedVisionTransformer` inside a model.

    Args:
        model: An encoder, or any model that contains one (our ``ViTMAEForPreTraining``, ``MAE``).
    """
    if isinstance(model, MaskedVisionTransformer):
        return model
    for module in model.modules():
        if isinstance(module, MaskedVisionTransformer):
            return module
    raise TypeError(f"model ({type(model).__name__}) contains no MaskedVisionTransformer encoder")


def export_timm_vit(model: nn.Module, num_classes: int = 0) -> VisionTransformer:
    """Exports the encoder as a plain, independent timm ``VisionTransformer`` for downstream use.

    The returned ViT holds a copy of the encoder weights (no mask token, no decoder) and works
    with timm's ``forward_features``/``forward_head``, ``create_model``-style fine-tuning code and
    ``timm.models.load_checkpoint``.

    Args:
        model: Our encoder or a model containing one.
        num_classes: Size of a freshly initialised classifier head; 0 for none.

    Returns:
        A timm ``VisionTransformer``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
    vit: VisionTransformer = copy.deepcopy(find_masked_vision_transformer(model).vit)
    vit.reset_classifier(num_classes)
    # The frozen sin-cos table is an ordinary weight for downstream fine-tuning code.
    vit.requires_grad_(True)
    return vit
