"""Hugging Face ViTMAE key names ↔ the official MAE layout.

Hugging Face splits the fused ``qkv`` projection into ``query``/``key``/``value`` and renames every
module (``vit.embeddings.patch_embeddings.projection``, ``vit.encoder.layer.N.attention...``,
``decoder.decoder_layers.N...``); these maps translate both ways, accepting the spellings of
transformers 4.x and 5.x.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from ssl_mae.convert import format_keys

__all__ = ["hf_to_official_state_dict", "normalize_hf_key", "official_to_hf_state_dict"]


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
            f"{format_keys(unknown)}"
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
