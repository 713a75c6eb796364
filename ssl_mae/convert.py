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

import argparse
import copy
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from ssl_mae._io import read_weights_file
from ssl_mae._validation import square_grid
from ssl_mae.modules.decoder import MAEDecoder
from ssl_mae.modules.encoder import MaskedVisionTransformer

__all__ = [
    "OFFICIAL_MODELS",
    "Checkpoint",
    "check_state_dict",
    "checkpoint_head_counts",
    "checkpoint_loss_options",
    "encoder_state_dict_from_lightly",
    "encoder_state_dict_from_timm",
    "export_timm_vit",
    "find_masked_vision_transformer",
    "format_keys",
    "infer_official_architecture",
    "load_official",
    "load_timm_encoder",
    "official_state_dict",
    "read_checkpoint",
    "split_official_state_dict",
    "unwrap_checkpoint",
]

# Prefix under which MaskedVisionTransformer (and Lightly's MaskedVisionTransformerTIMM) keeps
# the wrapped timm VisionTransformer.
_VIT_PREFIX = "vit."
_CHECKPOINT_CONTAINER_KEYS = ("model", "state_dict", "model_state", "module")
_MAX_KEYS_IN_MESSAGE = 12


def _official(patch: int, dim: int, depth: int, heads: int) -> Mapping[str, int]:
    return MappingProxyType(
        {"patch_size": patch, "embed_dim": dim, "depth": depth, "num_heads": heads,
         "decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16}
    )  # fmt: skip


#: The models of facebookresearch/mae (``models_mae.py``) by the names its ``main_pretrain.py``
#: stores in ``checkpoint["args"].model``. Their attention heads are the one part of the
#: architecture that the weights do not show.
OFFICIAL_MODELS: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {
        f"{name}{suffix}": config
        for name, config in (
            ("mae_vit_base_patch16", _official(16, 768, 12, 12)),
            ("mae_vit_large_patch16", _official(16, 1024, 24, 16)),
            ("mae_vit_huge_patch14", _official(14, 1280, 32, 16)),
        )
        for suffix in ("", "_dec512d8b")
    }
)


# --------------------------------------------------------------------------------------------
# Reading checkpoints and checking them against a model
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's weights and the hyper-parameters saved next to them.

    Attributes:
        state_dict: Flat dict from parameter name to tensor.
        hyperparameters: ``vars(checkpoint["args"])`` of checkpoints saved by the official
            ``main_pretrain.py``, Lightning's ``checkpoint["hyper_parameters"]``, or empty.
    """

    state_dict: dict[str, Tensor]
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)


def _hyperparameters(loaded: Mapping[str, Any]) -> dict[str, Any]:
    """The hyper-parameters stored next to the weights (official ``args``, Lightning's)."""
    args = loaded.get("args")
    if isinstance(args, argparse.Namespace):
        return dict(vars(args))
    if isinstance(args, Mapping):
        return dict(args)
    hyperparameters = loaded.get("hyper_parameters")
    return dict(hyperparameters) if isinstance(hyperparameters, Mapping) else {}


def read_checkpoint(
    checkpoint: Checkpoint | Mapping[str, Any] | str | os.PathLike[str],
) -> Checkpoint:
    """Reads a checkpoint's weights and hyper-parameters, whatever they are wrapped in.

    Accepts a path (``.pth``/``.pt``/``.bin``/``.ckpt`` loaded with ``weights_only=True``, or
    ``.safetensors``) or an already loaded object. Nested containers (``"model"`` as in the
    official MAE checkpoints, ``"state_dict"`` as in Lightning checkpoints) are opened and a DDP
    ``module.`` prefix is removed.

    Args:
        checkpoint: A path, a mapping, or a :class:`Checkpoint` (returned as it is).

    Returns:
        The :class:`Checkpoint`.
    """
    if isinstance(checkpoint, Checkpoint):
        return checkpoint
    if isinstance(checkpoint, (str, os.PathLike)):
        # Official main_pretrain.py checkpoints store their arguments as a Namespace.
        loaded: Any = read_weights_file(
            checkpoint, "checkpoint file", allowed_globals=(argparse.Namespace,)
        )
    else:
        loaded = checkpoint
    if not isinstance(loaded, Mapping):
        raise TypeError(f"checkpoint must be a mapping of tensors, got {type(loaded).__name__}")
    hyperparameters = _hyperparameters(loaded)
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
    return Checkpoint(state_dict, hyperparameters)


def unwrap_checkpoint(
    checkpoint: Checkpoint | Mapping[str, Any] | str | os.PathLike[str],
) -> dict[str, Tensor]:
    """Returns the flat tensor dict of a checkpoint (see :func:`read_checkpoint`).

    Args:
        checkpoint: A path, a mapping or a :class:`Checkpoint`.

    Returns:
        Dict from parameter name to tensor.
    """
    return read_checkpoint(checkpoint).state_dict


def format_keys(keys: Iterable[str]) -> str:
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
        problems.append(f"{len(missing)} weight(s) are missing: {format_keys(missing)}")
    if strict and unexpected:
        problems.append(
            f"{len(unexpected)} weight(s) are not used by the model: {format_keys(unexpected)}"
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
    for key, ndim, layout in (
        ("pos_embed", 3, "(1, N, D)"),
        ("patch_embed.proj.weight", 4, "(D, C, p, p)"),
        ("blocks.0.mlp.fc1.weight", 2, "(hidden, D)"),
    ):
        value = state_dict[key]
        if not isinstance(value, Tensor) or value.ndim != ndim:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"state_dict[{key!r}] must be a tensor of shape {layout}, got {shape}; this is "
                "not an official MAE / timm ViT state dict"
            )
    embed_dim, in_chans, patch_size, _ = state_dict["patch_embed.proj.weight"].shape
    num_tokens = state_dict["pos_embed"].shape[1]
    has_cls = "cls_token" in state_dict
    num_patches = num_tokens - (1 if has_cls else 0)
    grid_size = square_grid(num_patches, "pos_embed", "the state dict of a model for square images")

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
        "grid_size": grid_size,
        "qkv_bias": "blocks.0.attn.qkv.bias" in state_dict,
    }
    if "decoder_embed.weight" in state_dict:
        info["decoder_embed_dim"] = int(state_dict["decoder_embed.weight"].shape[0])
        info["decoder_depth"] = depth("decoder_blocks.")
        fc1 = state_dict.get("decoder_blocks.0.mlp.fc1.weight")
        info["decoder_mlp_hidden"] = int(fc1.shape[0]) if fc1 is not None else 0
    return info


def _head_count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def checkpoint_head_counts(
    checkpoint: Checkpoint,
    architecture: Mapping[str, Any],
    num_heads: int | None,
    decoder_num_heads: int | None,
    names: tuple[str, str] = ("num_heads", "decoder_num_heads"),
) -> tuple[int, int | None]:
    """The attention heads of a checkpoint's encoder and decoder, which its weights do not show.

    Each count comes from the caller, else from the checkpoint's hyper-parameters: the
    ``num_heads``/``decoder_num_heads`` a Lightning checkpoint of ``ssl_mae.MAE`` stores, or the
    official model named by ``args.model`` (see :data:`OFFICIAL_MODELS`) when its sizes match
    the weights. A count that none of them gives raises; nothing is guessed.

    Args:
        checkpoint: The checkpoint (see :func:`read_checkpoint`).
        architecture: Its sizes, from :func:`infer_official_architecture`; the decoder count is
            only needed when they include ``decoder_embed_dim``.
        num_heads: The caller's encoder heads, or None.
        decoder_num_heads: The caller's decoder heads, or None.
        names: The caller's names of the two arguments, for the error message.

    Returns:
        ``(num_heads, decoder_num_heads)``; the second is None for a checkpoint without decoder
        weights whose heads nobody gave.

    Raises:
        ValueError: When a needed count is neither given nor stored, naming the argument.
    """
    hparams = checkpoint.hyperparameters
    stored_encoder = _head_count(hparams.get("num_heads"))
    stored_decoder = _head_count(hparams.get("decoder_num_heads"))
    model_name = hparams.get("model")
    note = ""
    if isinstance(model_name, str) and model_name in OFFICIAL_MODELS:
        official = OFFICIAL_MODELS[model_name]
        mismatched = sorted(
            key for key in official if key in architecture and architecture[key] != official[key]
        )
        if mismatched:
            note = (
                f"; the checkpoint's args.model is {model_name!r}, but its weights differ from "
                f"that model in {mismatched}"
            )
        else:
            stored_encoder = stored_encoder or official["num_heads"]
            stored_decoder = stored_decoder or official["decoder_num_heads"]
    elif model_name is not None:
        note = f"; the checkpoint's args.model {model_name!r} is no official MAE model"
    encoder_heads = num_heads if num_heads is not None else stored_encoder
    decoder_heads = decoder_num_heads if decoder_num_heads is not None else stored_decoder
    wanted = [(names[0], encoder_heads)]
    if "decoder_embed_dim" in architecture:
        wanted.append((names[1], decoder_heads))
    missing = [name for name, value in wanted if value is None]
    if missing or encoder_heads is None:
        raise ValueError(
            f"{' and '.join(missing)} cannot be read from the weights (attention heads leave no "
            "trace in them) and the checkpoint's hyper-parameters do not give them"
            f"{note}; pass {', '.join(f'{name}=...' for name in missing)}"
        )
    return encoder_heads, decoder_heads


def checkpoint_loss_options(checkpoint: Checkpoint) -> dict[str, Any]:
    """``norm_pix_loss`` and ``mask_ratio`` as the checkpoint's hyper-parameters store them.

    Neither shows in the weights; official ``args`` and Lightning checkpoints of ``MAE`` hold
    both. Values of another type are left out.
    """
    hparams = checkpoint.hyperparameters
    options: dict[str, Any] = {}
    if isinstance(hparams.get("norm_pix_loss"), bool):
        options["norm_pix_loss"] = hparams["norm_pix_loss"]
    ratio = hparams.get("mask_ratio")
    if isinstance(ratio, float) and 0.0 <= ratio < 1.0:
        options["mask_ratio"] = ratio
    return options


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
