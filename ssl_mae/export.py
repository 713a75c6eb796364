"""Take a trained model out of a checkpoint, into the format another framework loads.

One loader for every checkpoint the package writes, and exporters that never guess::

    trained = load_trained_model("runs/mae/last.ckpt")   # module + preprocessing + preset
    export_hf(trained, "export/hf")            # config.json + model.safetensors + preprocessor
    export_timm(trained, "export/timm")        # timm.create_model("local-dir:export/timm")
    export_official(trained, "export/mae.pth") # {"model": official MAE state dict, "args": ...}
    export_safetensors(trained, "export/model.safetensors")  # our own layout + metadata

:func:`load_trained_model` reads Lightning checkpoints of ``ssl-mae pretrain`` and of the
examples (``preset`` + ``model_overrides`` hyper-parameters; the examples' ``encoder.*`` /
``decoder.*`` key layout is recognised) and of ``MAE``. The architecture comes from the
checkpoint's hyper-parameters (head counts included, they cannot be read off the weights) and
the preprocessing (input size, channels, mean/std) from the run it recorded; a checkpoint that
does not record its normalisation needs it passed explicitly.

Every exporter checks the result before writing it: the exported weights are loaded into the
target architecture and must give the features of the source encoder (and, with a decoder, the
same predictions), otherwise :class:`ExportError` says why. Models without an equivalent
(HiViT has no Hugging Face or timm counterpart, a decoder whose head width differs from
width / heads has no Hugging Face one) are refused with one clear line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ssl_mae.core import MaskedAutoencoder, as_masked_autoencoder
from ssl_mae.loss import MAELoss
from ssl_mae.modules.decoder import MAEDecoder
from ssl_mae.modules.encoder import MaskedVisionTransformer, MaskedVisionTransformerTorchvision

__all__ = [
    "EXPORT_FORMATS",
    "ExportError",
    "Preprocessing",
    "TrainedModel",
    "export",
    "export_hf",
    "export_official",
    "export_safetensors",
    "export_timm",
    "load_trained_model",
    "timm_vit_description",
]

#: The formats of :func:`export` (and ``ssl-mae export --format``).
EXPORT_FORMATS: tuple[str, ...] = ("hf", "timm", "official", "safetensors")
# Largest difference between source and exported features that counts as equal (float32).
_TOLERANCE = 1e-4
_HF_PREPROCESSOR = "preprocessor_config.json"
_PIL_BICUBIC = 3


class ExportError(ValueError):
    """The model cannot be expressed in the requested format (or the export would change its
    outputs); the message says which part and what to use instead."""


@dataclass(frozen=True)
class Preprocessing:
    """What an image must go through before the encoder, as the run that trained it did.

    Attributes:
        image_size: Input ``(height, width)``; images are resized to it (bicubic).
        in_chans: Channels (1: grayscale, 3: RGB).
        mean: Per-channel mean of ``Normalize`` (after scaling to [0, 1]), or None.
        std: Per-channel std of ``Normalize``, or None.
    """

    image_size: tuple[int, int]
    in_chans: int
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @property
    def normalize(self) -> dict[str, list[float]] | None:
        """``{"mean": [...], "std": [...]}`` or None."""
        if self.mean is None or self.std is None:
            return None
        return {"mean": list(self.mean), "std": list(self.std)}

    def to_dict(self) -> dict[str, Any]:
        """Plain-typed description (stored in exports)."""
        return {
            "image_size": list(self.image_size),
            "in_chans": self.in_chans,
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
            "interpolation": "bicubic",
        }


@dataclass
class TrainedModel:
    """A trained masked autoencoder with what is needed to use it.

    Attributes:
        module: The model (a :class:`~ssl_mae.training.PretrainModule` or ``MAE``), in eval mode.
        preprocessing: Input size, channels and normalisation of the run.
        preset: The preset it was built from (None when not recorded).
        hyper_parameters: The checkpoint's hyper-parameters.
        run_config: The options of the ``ssl-mae pretrain`` run (empty for other checkpoints).
        source: The checkpoint file, when loaded from one.
    """

    module: nn.Module
    preprocessing: Preprocessing
    preset: str | None = None
    hyper_parameters: dict[str, Any] = field(default_factory=dict)
    run_config: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    @property
    def core(self) -> MaskedAutoencoder:
        """The model's :class:`~ssl_mae.MaskedAutoencoder`."""
        return as_masked_autoencoder(self.module)

    @property
    def encoder(self) -> Any:
        """The encoder (``encode(images)``, ``num_prefix_tokens``)."""
        return self.core.encoder

    @property
    def name(self) -> str:
        """The checkpoint file (or the preset) for messages."""
        return repr(self.source) if self.source else f"preset {self.preset!r}"


# --- loading -----------------------------------------------------------------------------------
def _run_config(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    hparams = checkpoint.get("datamodule_hyper_parameters") or {}
    config = hparams.get("run_config") if isinstance(hparams, Mapping) else None
    return dict(config) if isinstance(config, Mapping) else {}


def _adapt_layout(state_dict: Mapping[str, Tensor], family: str | None) -> dict[str, Tensor]:
    """Maps the examples' ``encoder.vit.*`` / ``decoder.*`` keys (a ``MaskedVisionTransformer``
    and an ``MAEDecoder`` held as ``encoder`` and ``decoder``) to the layout of the preset's
    module: the official layout for ``MAE``, ``model.*`` for the other families."""
    keys = list(state_dict)
    if not keys or not all(k.startswith(("encoder.", "decoder.")) for k in keys):
        return dict(state_dict)
    if family == "mae":
        adapted = {}
        for key, value in state_dict.items():
            if key.startswith("encoder.vit."):
                adapted[key[len("encoder.vit.") :]] = value
            elif key.startswith("decoder."):
                adapted[key[len("decoder.") :]] = value
            # an encoder mask token is not part of the MAE model (it drops masked tokens)
        return adapted
    return {f"model.{k}": v for k, v in state_dict.items()}


RECORDED = "recorded"


def _normalize_of(
    run_config: Mapping[str, Any],
    hparams: Mapping[str, Any],
    normalize: Mapping[str, Sequence[float]] | str | None,
    in_chans: int,
    source: str,
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    if normalize != RECORDED:
        recorded: Any = normalize
    elif "normalize" in run_config:
        recorded = run_config["normalize"]
    elif "normalize" in hparams:
        recorded = hparams["normalize"]
    else:
        raise ValueError(
            f"checkpoint {source} does not record the input normalisation of its run; pass it "
            "(normalize={'mean': [...], 'std': [...]} or None; --normalize on the command line)"
        )
    if recorded is None:
        return None, None
    if not isinstance(recorded, Mapping) or not {"mean", "std"} <= set(recorded):
        raise ValueError(
            f"normalize must be None or {{'mean': [...], 'std': [...]}}, got {recorded!r}"
        )
    mean = tuple(float(v) for v in recorded["mean"])
    std = tuple(float(v) for v in recorded["std"])
    if len(mean) != len(std) or len(mean) not in (1, in_chans) or not all(s > 0 for s in std):
        raise ValueError(
            f"normalize must give 1 or {in_chans} means and positive stds of the same length, "
            f"got {recorded!r}"
        )
    return mean, std


def load_trained_model(
    checkpoint: str | os.PathLike[str] | Mapping[str, Any],
    normalize: Mapping[str, Sequence[float]] | str | None = RECORDED,
    verify: bool = True,
) -> TrainedModel:
    """Rebuilds the model of a checkpoint and what its run fed it.

    Args:
        checkpoint: A checkpoint file (verified against ``FILE.sha256`` when present) or the
            loaded dict.
        normalize: ``"recorded"`` (the normalisation the checkpoint's run recorded), a
            ``{"mean", "std"}`` mapping to use instead (needed for checkpoints that record
            none), or None for no normalisation.
        verify: Check the checksum file beside ``checkpoint``.

    Returns:
        The :class:`TrainedModel`, in eval mode on the CPU.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the checkpoint cannot be read, is damaged
            (:class:`~ssl_mae.training.checkpoints.DamagedCheckpointError`), does not say how to
            rebuild its model, does not fit it, or records no normalisation and none is given.
    """
    from ssl_mae.models.presets import PRETRAIN_PRESETS, pretrain_module_from_checkpoint
    from ssl_mae.training.checkpoints import load_checkpoint

    source: str | None = None
    if isinstance(checkpoint, (str, os.PathLike)):
        source = str(checkpoint)
        loaded: Mapping[str, Any] = load_checkpoint(checkpoint, verify=verify)
    else:
        loaded = checkpoint
    name = repr(source) if source else "the checkpoint"
    hparams = loaded.get("hyper_parameters")
    state_dict = loaded.get("state_dict")
    if not isinstance(hparams, Mapping) or not isinstance(state_dict, Mapping):
        raise ValueError(
            f"checkpoint {name} is not a Lightning checkpoint of this package (it needs "
            "'hyper_parameters' and 'state_dict')"
        )
    preset = hparams.get("preset")
    family = (
        PRETRAIN_PRESETS[preset].family
        if isinstance(preset, str) and preset in PRETRAIN_PRESETS
        else None
    )
    adapted = {**loaded, "state_dict": _adapt_layout(state_dict, family)}
    try:
        module = pretrain_module_from_checkpoint(adapted)
    except (RuntimeError, TypeError, ValueError, KeyError) as error:
        # load_state_dict puts its reason ("size mismatch for ...") on the second line.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = " ".join(lines[:2]) or type(error).__name__
        raise ValueError(
            f"checkpoint {name} does not hold a model ssl-mae can rebuild: {reason}"
        ) from error
    module.eval()
    run_config = _run_config(loaded)
    core = as_masked_autoencoder(module)
    in_chans = int(core.encoder.in_chans)
    mean, std = _normalize_of(run_config, hparams, normalize, in_chans, name)
    preprocessing = Preprocessing(tuple(core.image_size), in_chans, mean, std)  # type: ignore[arg-type]
    return TrainedModel(
        module=module,
        preprocessing=preprocessing,
        preset=None if preset is None else str(preset),
        hyper_parameters=dict(hparams),
        run_config=run_config,
        source=source,
    )


# --- the encoder as a timm VisionTransformer ---------------------------------------------------
def _layer_norm_eps(module: nn.Module, what: str) -> float:
    if not isinstance(module, nn.LayerNorm):
        raise ExportError(f"{what} is {type(module).__name__}, not a LayerNorm")
    return float(module.eps)


def _check_gelu(module: nn.Module, what: str) -> None:
    if not isinstance(module, nn.GELU) or module.approximate != "none":
        raise ExportError(f"{what} uses {module!r}; the export needs the exact GELU")


def _torchvision_to_timm(vit: Any) -> tuple[dict[str, Any], dict[str, Tensor]]:
    layers = list(vit.encoder.layers)
    first = layers[0]
    state = {
        "cls_token": vit.class_token,
        "pos_embed": vit.encoder.pos_embedding,
        "patch_embed.proj.weight": vit.conv_proj.weight,
        "patch_embed.proj.bias": vit.conv_proj.bias,
        "norm.weight": vit.encoder.ln.weight,
        "norm.bias": vit.encoder.ln.bias,
    }
    eps = _layer_norm_eps(vit.encoder.ln, "the final norm")
    for index, layer in enumerate(layers):
        attention = layer.self_attention
        if attention.in_proj_bias is None:
            raise ExportError("the torchvision encoder has attention without bias")
        _check_gelu(layer.mlp[1], f"block {index}'s MLP")
        for norm_name in ("ln_1", "ln_2"):
            if _layer_norm_eps(getattr(layer, norm_name), f"block {index} {norm_name}") != eps:
                raise ExportError("the torchvision encoder mixes LayerNorm epsilons")
        prefix = f"blocks.{index}."
        state.update(
            {
                prefix + "norm1.weight": layer.ln_1.weight,
                prefix + "norm1.bias": layer.ln_1.bias,
                prefix + "attn.qkv.weight": attention.in_proj_weight,
                prefix + "attn.qkv.bias": attention.in_proj_bias,
                prefix + "attn.proj.weight": attention.out_proj.weight,
                prefix + "attn.proj.bias": attention.out_proj.bias,
                prefix + "norm2.weight": layer.ln_2.weight,
                prefix + "norm2.bias": layer.ln_2.bias,
                prefix + "mlp.fc1.weight": layer.mlp[0].weight,
                prefix + "mlp.fc1.bias": layer.mlp[0].bias,
                prefix + "mlp.fc2.weight": layer.mlp[3].weight,
                prefix + "mlp.fc2.bias": layer.mlp[3].bias,
            }
        )
    image_size = int(vit.image_size)
    description = {
        "img_size": image_size,
        "patch_size": int(vit.patch_size),
        "in_chans": int(vit.conv_proj.in_channels),
        "embed_dim": int(vit.hidden_dim),
        "depth": len(layers),
        "num_heads": int(first.self_attention.num_heads),
        "mlp_hidden": int(first.mlp[0].out_features),
        "qkv_bias": True,
        "layer_norm_eps": eps,
    }
    return description, {k: v.detach() for k, v in state.items()}


def _timm_to_description(vit: Any) -> tuple[dict[str, Any], dict[str, Tensor]]:
    unsupported = []
    if getattr(vit, "cls_token", None) is None or int(getattr(vit, "num_prefix_tokens", 1)) != 1:
        unsupported.append("exactly one class token and no register tokens")
    if getattr(vit, "no_embed_class", False):
        unsupported.append("a position embedding that covers the class token")
    if not isinstance(getattr(vit, "norm_pre", nn.Identity()), nn.Identity):
        unsupported.append("no pre-norm")
    if not isinstance(getattr(vit, "fc_norm", nn.Identity()), nn.Identity):
        unsupported.append("no fc_norm")
    blocks = list(vit.blocks)
    for index, block in enumerate(blocks):
        for name in ("ls1", "ls2", "drop_path1", "drop_path2"):
            if name.startswith("ls") and not isinstance(
                getattr(block, name, nn.Identity()), nn.Identity
            ):
                unsupported.append(f"no layer scale (block {index})")
        attention = block.attn
        for name in ("q_norm", "k_norm"):
            if not isinstance(getattr(attention, name, nn.Identity()), nn.Identity):
                unsupported.append(f"no query/key norm (block {index})")
        if getattr(attention, "head_dim", None) not in (
            None,
            attention.qkv.in_features // attention.num_heads,
        ):
            unsupported.append(f"head width = width / heads (block {index})")
        _check_gelu(block.mlp.act, f"block {index}'s MLP")
    if unsupported:
        raise ExportError(
            "the encoder has features the export formats cannot describe; they need "
            + ", ".join(dict.fromkeys(unsupported))
        )
    eps = _layer_norm_eps(vit.norm, "the final norm")
    for index, block in enumerate(blocks):
        for name in ("norm1", "norm2"):
            if _layer_norm_eps(getattr(block, name), f"block {index} {name}") != eps:
                raise ExportError("the encoder mixes LayerNorm epsilons")
    grid = tuple(vit.patch_embed.grid_size)
    patch = tuple(vit.patch_embed.patch_size)
    if grid[0] != grid[1] or patch[0] != patch[1]:
        raise ExportError(f"the encoder is not square (grid {grid}, patch {patch})")
    first = blocks[0]
    description = {
        "img_size": int(grid[0] * patch[0]),
        "patch_size": int(patch[0]),
        "in_chans": int(vit.patch_embed.proj.in_channels),
        "embed_dim": int(vit.embed_dim),
        "depth": len(blocks),
        "num_heads": int(first.attn.num_heads),
        "mlp_hidden": int(first.mlp.fc1.out_features),
        "qkv_bias": first.attn.qkv.bias is not None,
        "layer_norm_eps": eps,
    }
    state = {k: v.detach() for k, v in vit.state_dict().items() if not k.startswith("head.")}
    return description, state


def timm_vit_description(encoder: nn.Module) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The encoder as a plain ViT: its architecture and its weights in timm/official names.

    Args:
        encoder: A :class:`~ssl_mae.modules.MaskedVisionTransformer` (timm) or
            :class:`~ssl_mae.modules.MaskedVisionTransformerTorchvision`.

    Returns:
        ``(description, state_dict)``: ``img_size``, ``patch_size``, ``in_chans``,
        ``embed_dim``, ``depth``, ``num_heads``, ``mlp_hidden``, ``qkv_bias``,
        ``layer_norm_eps``, and the encoder weights (``cls_token``, ``pos_embed``,
        ``patch_embed.proj.*``, ``blocks.N.*``, ``norm.*``).

    Raises:
        ExportError: For other encoders (HiViT) or ViT features without a plain-ViT equivalent.
    """
    if isinstance(encoder, MaskedVisionTransformerTorchvision):
        return _torchvision_to_timm(encoder.vit)
    if isinstance(encoder, MaskedVisionTransformer):
        return _timm_to_description(encoder.vit)
    raise ExportError(
        f"the encoder is a {type(encoder).__name__}, which has no Hugging Face ViTMAE or timm "
        "VisionTransformer equivalent; export it with --format official or safetensors"
    )


def _decoder_description(decoder: nn.Module, eps: float) -> dict[str, Any]:
    if not isinstance(decoder, MAEDecoder):
        raise ExportError(f"the decoder is a {type(decoder).__name__}, not an MAEDecoder")
    blocks: list[Any] = list(decoder.decoder_blocks)
    width = int(decoder.decoder_embed.out_features)
    for index, block in enumerate(blocks):
        attention = block.attn
        head_dim = getattr(attention, "head_dim", width // attention.num_heads)
        if head_dim * attention.num_heads != width:
            raise ExportError(
                f"decoder block {index} has {attention.num_heads} heads of width {head_dim}, "
                f"not {width} / {attention.num_heads}; Hugging Face ViTMAE cannot express it "
                "(export the encoder with --format timm or the model with safetensors)"
            )
        _check_gelu(block.mlp.act, f"decoder block {index}'s MLP")
        for name in ("norm1", "norm2"):
            if _layer_norm_eps(getattr(block, name), f"decoder block {index} {name}") != eps:
                raise ExportError(
                    "the decoder's LayerNorm epsilon differs from the encoder's; Hugging Face "
                    "ViTMAE has one layer_norm_eps"
                )
    if _layer_norm_eps(decoder.decoder_norm, "the decoder norm") != eps:
        raise ExportError("the decoder's final LayerNorm epsilon differs from the encoder's")
    first = blocks[0]
    return {
        "decoder_hidden_size": width,
        "decoder_num_hidden_layers": len(blocks),
        "decoder_num_attention_heads": int(first.attn.num_heads),
        "decoder_intermediate_size": int(first.mlp.fc1.out_features),
        "decoder_qkv_bias": first.attn.qkv.bias is not None,
    }


# --- checks --------------------------------------------------------------------------------------
def _probe_inputs(trained: TrainedModel) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    height, width = trained.preprocessing.image_size
    images = torch.randn(2, trained.preprocessing.in_chans, height, width, generator=generator)
    core = trained.core
    num_patches = core.encoder.grid_size[0] * core.encoder.grid_size[1]
    noise = torch.rand(2, num_patches, generator=generator)
    return images, noise


def _check_close(expected: Tensor, actual: Tensor, what: str) -> None:
    if expected.shape != actual.shape:
        raise ExportError(
            f"export self-check failed: {what} has shape {tuple(actual.shape)} instead of "
            f"{tuple(expected.shape)}"
        )
    difference = float((expected.float() - actual.float()).abs().max())
    if not difference <= _TOLERANCE:
        raise ExportError(
            f"export self-check failed: {what} differ by {difference:.3g} from the checkpoint's "
            "model; nothing was written"
        )


# --- Hugging Face --------------------------------------------------------------------------------
def _official_weights(trained: TrainedModel) -> tuple[dict[str, Any], dict[str, Tensor], bool]:
    """Encoder description and the official-layout weights (with the decoder when it fits)."""
    description, state = timm_vit_description(trained.encoder)
    decoder = trained.core.decoder
    if isinstance(decoder, MAEDecoder):
        state.update({k: v.detach() for k, v in decoder.state_dict().items()})
    return description, state, isinstance(decoder, MAEDecoder)


def _hf_model(trained: TrainedModel) -> nn.Module:
    """Our ``ssl_mae.hf.ViTMAEForPreTraining`` holding the checkpoint's weights, checked."""
    from ssl_mae.hf import ViTMAEConfig, ViTMAEForPreTraining

    description, state, _ = _official_weights(trained)
    eps = description["layer_norm_eps"]
    decoder = _decoder_description(trained.core.decoder, eps)
    if decoder.pop("decoder_qkv_bias") != description["qkv_bias"]:
        raise ExportError("encoder and decoder differ in qkv bias; Hugging Face ViTMAE has one")
    loss = trained.core.loss
    config = ViTMAEConfig(
        hidden_size=description["embed_dim"],
        num_hidden_layers=description["depth"],
        num_attention_heads=description["num_heads"],
        intermediate_size=description["mlp_hidden"],
        hidden_act="gelu",
        layer_norm_eps=eps,
        image_size=description["img_size"],
        patch_size=description["patch_size"],
        num_channels=description["in_chans"],
        qkv_bias=description["qkv_bias"],
        mask_ratio=float(trained.core.mask_ratio),
        norm_pix_loss=bool(isinstance(loss, MAELoss) and loss.norm_pix),
        **decoder,
    )
    model = ViTMAEForPreTraining(config).eval()
    model.load_official_state_dict(state, strict=True)
    images, noise = _probe_inputs(trained)
    with torch.no_grad():
        _check_close(
            trained.encoder.encode(images),
            model.vit.encoder.encode(images),
            "the encoder features",
        )
        expected = trained.core(images, noise=noise).pred
        actual = model.masked_autoencoder(images, noise=noise).pred
    _check_close(expected, actual, "the decoder predictions")
    return model


def export_hf(trained: TrainedModel, directory: str | os.PathLike[str]) -> Path:
    """Writes a Hugging Face ``ViTMAEForPreTraining`` folder that ``transformers`` loads.

    ``config.json`` (architecture from the checkpoint, head counts included),
    ``model.safetensors`` and ``preprocessor_config.json`` (a ``ViTImageProcessor`` with the
    run's size and mean/std). ``transformers.ViTMAEModel.from_pretrained(directory)`` gives the
    encoder; pass ``mask_ratio=0.0`` to encode every patch.

    Args:
        trained: The model (see :func:`load_trained_model`).
        directory: Target folder (created).

    Returns:
        The folder.

    Raises:
        ExportError: For HiViT and other models without a ViTMAE equivalent.
    """
    model = _hf_model(trained)
    target = Path(directory)
    model.save_pretrained(target)  # type: ignore[operator]
    prep = trained.preprocessing
    processor = {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": prep.image_size[0], "width": prep.image_size[1]},
        "resample": _PIL_BICUBIC,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": prep.normalize is not None,
        "image_mean": None if prep.mean is None else list(prep.mean),
        "image_std": None if prep.std is None else list(prep.std),
    }
    (target / _HF_PREPROCESSOR).write_text(json.dumps(processor, indent=2) + "\n")
    return target


# --- timm ----------------------------------------------------------------------------------------
def _timm_config(
    trained: TrainedModel, description: Mapping[str, Any], pool: str
) -> dict[str, Any]:
    if description["layer_norm_eps"] != 1e-6:
        raise ExportError(
            f"the encoder's LayerNorm epsilon is {description['layer_norm_eps']}; timm's "
            "VisionTransformer config can only describe 1e-6 (use --format hf or official)"
        )
    dim, hidden = description["embed_dim"], description["mlp_hidden"]
    model_args = {
        "img_size": description["img_size"],
        "patch_size": description["patch_size"],
        "in_chans": description["in_chans"],
        "embed_dim": dim,
        "depth": description["depth"],
        "num_heads": description["num_heads"],
        "mlp_ratio": hidden / dim if int(dim * (hidden / dim)) == hidden else (hidden + 0.5) / dim,
        "qkv_bias": description["qkv_bias"],
        "class_token": True,
        "global_pool": "avg" if pool == "mean" else "token",
        "fc_norm": False,  # the final norm on every token, then the pool, as ssl-mae's features
    }
    prep = trained.preprocessing
    channels = description["in_chans"]
    pretrained_cfg = {
        "input_size": [channels, *prep.image_size],
        "fixed_input_size": True,
        "interpolation": "bicubic",
        "crop_pct": 1.0,
        "crop_mode": "center",
        "mean": list(prep.mean) if prep.mean is not None else [0.0] * channels,
        "std": list(prep.std) if prep.std is not None else [1.0] * channels,
        "num_classes": 0,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        "tag": "ssl_mae",
    }
    if prep.mean is not None and len(prep.mean) == 1 < channels:
        pretrained_cfg["mean"] = list(prep.mean) * channels
        pretrained_cfg["std"] = list(prep.std or ()) * channels
    return {
        "architecture": "vit_base_patch16_224",
        "num_classes": 0,
        "num_features": dim,
        "global_pool": model_args["global_pool"],
        "model_args": model_args,
        "pretrained_cfg": pretrained_cfg,
    }


def _pooled(trained: TrainedModel, images: Tensor, pool: str) -> Tensor:
    from ssl_mae.evaluation.features import encode_pooled

    return encode_pooled(trained.encoder, images, pool)


def export_timm(
    trained: TrainedModel, directory: str | os.PathLike[str], pool: str = "mean"
) -> Path:
    """Writes the encoder as a timm ``VisionTransformer`` folder (timm's hub layout).

    ``config.json`` holds the architecture (``model_args``) and the ``pretrained_cfg`` (input
    size, interpolation, mean/std), ``model.safetensors`` the weights;
    ``timm.create_model("local-dir:DIRECTORY", pretrained=True)`` builds it, and its pooled
    output (``model(x)``) equals the features ``ssl-mae embed`` writes with the same ``pool``.

    Args:
        trained: The model (see :func:`load_trained_model`).
        directory: Target folder (created).
        pool: ``"mean"`` (timm ``global_pool="avg"`` without ``fc_norm``) or ``"cls"``
            (``global_pool="token"``).

    Returns:
        The folder.

    Raises:
        ExportError: For HiViT and encoders timm's config cannot describe.
    """
    from safetensors.torch import save_file
    from timm.models.vision_transformer import VisionTransformer

    if pool not in ("mean", "cls"):
        raise ValueError(f"pool must be 'mean' or 'cls', got {pool!r}")
    description, state = timm_vit_description(trained.encoder)
    config = _timm_config(trained, description, pool)
    vit = VisionTransformer(num_classes=0, **config["model_args"]).eval()
    vit.load_state_dict(state, strict=True)
    images, _ = _probe_inputs(trained)
    with torch.no_grad():
        _check_close(trained.encoder.encode(images), vit.forward_features(images), "the tokens")
        _check_close(_pooled(trained, images, pool), vit(images), "the pooled features")
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous().clone() for k, v in vit.state_dict().items()}
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return target


# --- official and safetensors -------------------------------------------------------------------
def export_official(trained: TrainedModel, path: str | os.PathLike[str]) -> Path:
    """Writes an official-layout checkpoint: ``{"model": state_dict, "args": {...}}``.

    For ViT encoders ``model`` is the facebookresearch/mae ``MaskedAutoencoderViT`` state dict
    (encoder and decoder, the layout ``mae_visualize_vit_*.pth`` uses); ``args`` records what
    the weights cannot tell (head counts, input size, mean/std, norm-pix). For HiViT ``model``
    is the mmpretrain backbone (``backbone.*`` keys, as mmpretrain's ``state_dict``).

    Args:
        trained: The model (see :func:`load_trained_model`).
        path: Target ``.pth`` file.

    Returns:
        The file.
    """
    from ssl_mae.training.checkpoints import save_atomic

    loss = trained.core.loss
    args: dict[str, Any] = {
        "preset": trained.preset,
        "input_size": list(trained.preprocessing.image_size),
        "preprocessing": trained.preprocessing.to_dict(),
        "mask_ratio": float(trained.core.mask_ratio),
        "norm_pix_loss": bool(isinstance(loss, MAELoss) and loss.norm_pix),
    }
    backbone = getattr(trained.module, "model", None)
    if not isinstance(
        trained.encoder, (MaskedVisionTransformer, MaskedVisionTransformerTorchvision)
    ):
        hivit = getattr(backbone, "backbone", None)
        if not isinstance(hivit, nn.Module):
            raise ExportError(
                f"the encoder {type(trained.encoder).__name__} has no official layout"
            )
        state = {f"backbone.{k}": v.detach().clone() for k, v in hivit.state_dict().items()}
        save_atomic({"state_dict": state, "meta": {"ssl_mae": args}}, path, checksum=False)
        return Path(path)
    hf = _hf_model(trained)  # checks that the official weights give the same outputs
    description, _, _ = _official_weights(trained)
    args.update(
        {
            "num_heads": description["num_heads"],
            "decoder_num_heads": hf.config.decoder_num_attention_heads,  # type: ignore[union-attr]
            "layer_norm_eps": description["layer_norm_eps"],
        }
    )
    state = {k: v.detach().clone() for k, v in hf.official_state_dict().items()}  # type: ignore[operator]
    save_atomic({"model": state, "args": args}, path, checksum=False)
    return Path(path)


def export_safetensors(trained: TrainedModel, path: str | os.PathLike[str]) -> Path:
    """Writes the whole model in this package's layout as one ``.safetensors`` file.

    The metadata (``ssl_mae.hyper_parameters``, ``ssl_mae.preprocessing``, ``ssl_mae.preset``,
    JSON strings) is what :func:`load_trained_model` needs to rebuild it: load the tensors with
    ``safetensors.torch.load_file`` and the metadata with ``safe_open(...).metadata()``.

    Args:
        trained: The model (see :func:`load_trained_model`).
        path: Target ``.safetensors`` file.

    Returns:
        The file.
    """
    from safetensors.torch import save_file

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: v.detach().cpu().contiguous().clone() for k, v in trained.module.state_dict().items()
    }
    metadata = {
        "format": "pt",
        "ssl_mae.preset": json.dumps(trained.preset),
        "ssl_mae.hyper_parameters": json.dumps(trained.hyper_parameters, default=str),
        "ssl_mae.preprocessing": json.dumps(trained.preprocessing.to_dict()),
    }
    save_file(tensors, str(target), metadata=metadata)
    return target


def export(
    trained: TrainedModel, output: str | os.PathLike[str], format: str, **options: Any
) -> Path:
    """One call for every format: ``hf`` and ``timm`` write folders, ``official`` a ``.pth``,
    ``safetensors`` a ``.safetensors`` file.

    Args:
        trained: The model (see :func:`load_trained_model`).
        output: Target folder or file.
        format: One of :data:`EXPORT_FORMATS`.
        **options: ``pool`` for ``timm``.

    Returns:
        What was written.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    if format == "hf":
        return export_hf(trained, output)
    if format == "timm":
        return export_timm(trained, output, **options)
    if format == "official":
        return export_official(trained, output)
    return export_safetensors(trained, output)
