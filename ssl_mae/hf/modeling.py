"""Hugging Face–compatible ViTMAE models assembled from the ssl_mae blocks.

``ViTMAEModel`` and ``ViTMAEForPreTraining`` follow ``transformers``' ViTMAE call semantics
(``pixel_values``, ``noise``, ``interpolate_pos_encoding``, ``output_hidden_states``,
``output_attentions``; outputs with ``loss``, ``logits``, ``mask``, ``ids_restore``,
``last_hidden_state``, ``hidden_states``, ``attentions``) and read/write its checkpoint layout, but
the computation is the package's MAE data path:

    pixel_values ─ random_token_mask(noise) ─ MaskedVisionTransformer.encode(idx_keep)
        ─ MAEDecoder.predict_all(ids_restore) ─ MAELoss(mask)

The encoder is a timm ``VisionTransformer`` (fused ``qkv``, attention through
``F.scaled_dot_product_attention``); attention probabilities are computed explicitly only when
``output_attentions=True``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, TypeVar, cast

import torch
from torch import Tensor, nn

from ssl_mae import convert, masking
from ssl_mae._validation import check_tensor
from ssl_mae.core import MaskedAutoencoder, VisibleEncoding, encode_visible
from ssl_mae.hf.configuration import ViTMAEConfig, _as_dtype
from ssl_mae.hf.io import (
    CONFIG_NAME,
    load_state_dict_from_directory,
    resolve_pretrained_directory,
    save_state_dict_to_directory,
)
from ssl_mae.hf.keys import hf_to_official_state_dict, normalize_hf_key, official_to_hf_state_dict
from ssl_mae.loss import MAELoss
from ssl_mae.modules.decoder import MAEDecoder
from ssl_mae.modules.encoder import MaskedVisionTransformer, block_forward_with_attention
from ssl_mae.modules.init import init_affine, init_patch_projection
from ssl_mae.pos_embed import get_2d_sincos_pos_embed

__all__ = [
    "ModelOutput",
    "ViTMAEForPreTraining",
    "ViTMAEForPreTrainingOutput",
    "ViTMAEModel",
    "ViTMAEModelOutput",
    "ViTMAEPreTrainedModel",
    "activation_layer",
    "block_forward_with_attention",
    "config_from_official_state_dict",
]

_Model = TypeVar("_Model", bound="ViTMAEPreTrainedModel")


class _QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, the CLIP approximation of GELU (Hugging Face ``quick_gelu``)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


# Hugging Face ``hidden_act`` names → module factories with the same function.
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "gelu_new": partial(nn.GELU, approximate="tanh"),
    "gelu_pytorch_tanh": partial(nn.GELU, approximate="tanh"),
    "quick_gelu": _QuickGELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
}


def activation_layer(hidden_act: str) -> Callable[[], nn.Module]:
    """Module factory for a Hugging Face ``hidden_act`` name.

    Args:
        hidden_act: ``"gelu"`` (exact erf GELU), ``"gelu_new"``/``"gelu_pytorch_tanh"`` (tanh
            approximation), ``"quick_gelu"``, ``"relu"``, ``"silu"`` or ``"swish"``.

    Raises:
        ValueError: For other names.
    """
    if hidden_act not in _ACTIVATIONS:
        raise ValueError(
            f"config.hidden_act must be one of {sorted(_ACTIVATIONS)}, got {hidden_act!r}"
        )
    return _ACTIVATIONS[hidden_act]


def _mlp_ratio(dim: int, hidden: int) -> float:
    # timm and MAEDecoder size the MLP as int(dim * mlp_ratio); nudge the ratio so that float
    # rounding can never turn e.g. 3 * (7 / 3) into 6.
    ratio = hidden / dim
    return ratio if int(dim * ratio) == hidden else (hidden + 0.5) / dim


def _build_encoder(config: ViTMAEConfig) -> MaskedVisionTransformer:
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(
        img_size=config.image_hw,
        patch_size=config.patch_size,
        in_chans=config.num_channels,
        num_classes=0,
        global_pool="token",
        embed_dim=config.hidden_size,
        depth=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        mlp_ratio=_mlp_ratio(config.hidden_size, config.intermediate_size),
        qkv_bias=config.qkv_bias,
        class_token=True,
        drop_rate=0.0,
        proj_drop_rate=config.hidden_dropout_prob,
        attn_drop_rate=config.attention_probs_dropout_prob,
        norm_layer=partial(nn.LayerNorm, eps=config.layer_norm_eps),
        act_layer=activation_layer(config.hidden_act),
        weight_init="skip",  # the model initialises every weight (see _init_hf_weights)
    )
    # Hugging Face resizes position embeddings without antialiasing.
    return MaskedVisionTransformer(
        vit,
        weight_initialization="skip",
        antialias=False,
        pos_embed_initialization="sincos",
        use_mask_token=False,
    )


def _build_decoder(config: ViTMAEConfig) -> MAEDecoder:
    decoder = MAEDecoder(
        num_patches=config.num_patches,
        patch_size=config.patch_size,
        in_chans=config.num_channels,
        embed_dim=config.hidden_size,
        decoder_embed_dim=config.decoder_hidden_size,
        decoder_depth=config.decoder_num_hidden_layers,
        decoder_num_heads=config.decoder_num_attention_heads,
        num_prefix_tokens=1,
        mlp_ratio=_mlp_ratio(config.decoder_hidden_size, config.decoder_intermediate_size),
        proj_drop_rate=config.hidden_dropout_prob,
        attn_drop_rate=config.attention_probs_dropout_prob,
        norm_layer=partial(nn.LayerNorm, eps=config.layer_norm_eps),
        grid_size=config.grid_size,
        qkv_bias=config.qkv_bias,
        act_layer=activation_layer(config.hidden_act),
        pos_embed_resize="sequence",  # Hugging Face resizes the decoder table as a sequence
        initialize_weights=False,  # the model initialises every weight (see _init_hf_weights)
    )
    with torch.no_grad():  # the fixed sin-cos table, as the official and Hugging Face models
        table = get_2d_sincos_pos_embed(
            config.decoder_hidden_size, config.grid_size, decoder.num_prefix_tokens
        )
        decoder.decoder_pos_embed.copy_(table.unsqueeze(0))
    return decoder


def _set_attention(module: nn.Module, attn_implementation: str | None) -> None:
    """``"eager"`` runs every timm attention as explicit softmax, ``"sdpa"`` fused (the
    default); None leaves timm's choice."""
    if attn_implementation is None:
        return
    for attention in module.modules():
        if hasattr(attention, "fused_attn"):
            attention.fused_attn = attn_implementation == "sdpa"  # type: ignore[assignment]


def _init_hf_weights(
    module: nn.Module,
    std: float,
    encoder: MaskedVisionTransformer,
    decoder: MAEDecoder | None,
) -> None:
    """transformers' ViTMAE initialisation: N(0, ``initializer_range``) linear layers with zero
    bias, unit LayerNorms, the patch projection xavier-uniform over the flattened patch, and
    N(0, ``initializer_range``) class and mask tokens. The position tables keep their fixed
    sin-cos values."""
    with torch.no_grad():
        init_normal = partial(nn.init.normal_, mean=0.0, std=std)
        for layer in module.modules():
            init_affine(layer, init_normal, (nn.Linear, nn.Conv2d))
        init_patch_projection(encoder.vit.patch_embed.proj.weight)
        nn.init.normal_(encoder.vit.cls_token, std=std)
        if decoder is not None:
            nn.init.normal_(decoder.mask_token, std=std)


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------
@dataclass
class ModelOutput(Mapping[str, Any]):
    """Output container that behaves like transformers' ``ModelOutput``.

    Fields are attributes; the fields that are set (not None) also form an ordered mapping:
    ``out["loss"]``, ``"loss" in out``, ``len(out)``, ``keys()``, ``values()``, ``items()``,
    ``dict(out)``, and a tuple: ``out[0]``, ``out[1:3]``, ``to_tuple()``.
    """

    def _set_names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def to_tuple(self) -> tuple[Any, ...]:
        """The set fields in declaration order."""
        return tuple(getattr(self, name) for name in self._set_names())

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            if key not in self._set_names():
                raise KeyError(f"output has no field {key!r}; set fields: {self._set_names()}")
            return getattr(self, key)
        return self.to_tuple()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in {f.name for f in dataclasses.fields(self)}:
            raise KeyError(f"output has no field {key!r}")
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._set_names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._set_names())

    def __len__(self) -> int:
        return len(self._set_names())


@dataclass
class ViTMAEModelOutput(ModelOutput):
    """Output of :class:`ViTMAEModel`.

    Attributes:
        last_hidden_state: (B, 1 + L_keep, D) encoded class token and visible patches (after
            the final LayerNorm), in ascending-noise order.
        mask: (B, L) float, 1 for removed patches, 0 for visible ones.
        ids_restore: (B, L) int64 permutation that restores the patch order.
        hidden_states: With ``output_hidden_states``: the embedding output and the output of every
            encoder block (before the final norm), each (B, 1 + L_keep, D).
        attentions: With ``output_attentions``: per block (B, heads, 1 + L_keep, 1 + L_keep).
    """

    last_hidden_state: Tensor | None = None
    mask: Tensor | None = None
    ids_restore: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class ViTMAEForPreTrainingOutput(ModelOutput):
    """Output of :class:`ViTMAEForPreTraining`.

    Attributes:
        loss: Scalar reconstruction loss on the removed patches.
        logits: (B, L, p * p * C) predicted pixels of every patch.
        mask: (B, L) float, 1 for removed patches.
        ids_restore: (B, L) int64 permutation that restores the patch order.
        hidden_states: Encoder hidden states, see :class:`ViTMAEModelOutput`.
        attentions: Encoder attention probabilities, see :class:`ViTMAEModelOutput`.
    """

    loss: Tensor | None = None
    logits: Tensor | None = None
    mask: Tensor | None = None
    ids_restore: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------
def config_from_official_state_dict(
    state_dict: convert.Checkpoint | Mapping[str, Any] | str | os.PathLike[str],
    num_attention_heads: int | None = None,
    decoder_num_attention_heads: int | None = None,
    layer_norm_eps: float = 1e-6,
    **overrides: Any,
) -> ViTMAEConfig:
    """Builds a :class:`ViTMAEConfig` that fits an official MAE or timm ViT state dict.

    Sizes are read from the weights. Head counts are not in the weights and are never guessed:
    they come from the arguments, else from the checkpoint's hyper-parameters (``args.model``
    of files saved by the official ``main_pretrain.py``, ``num_heads``/``decoder_num_heads`` of
    Lightning checkpoints of ``ssl_mae.MAE``), else a ``ValueError`` asks for them. The decoder
    count is only needed when the state dict holds a decoder (otherwise the config's default
    decoder is built fresh). ``norm_pix_loss`` and ``mask_ratio`` are read from those
    hyper-parameters too. The official models use LayerNorm epsilon 1e-6.

    Args:
        state_dict: Official-layout state dict, a checkpoint holding one, or its path.
        num_attention_heads: Encoder heads.
        decoder_num_attention_heads: Decoder heads.
        layer_norm_eps: LayerNorm epsilon.
        **overrides: Any other :class:`ViTMAEConfig` field.

    Raises:
        ValueError: When a needed head count is neither given nor stored in the checkpoint.
    """
    checkpoint = convert.read_checkpoint(state_dict)
    info = convert.infer_official_architecture(checkpoint.state_dict)
    heads, decoder_heads = convert.checkpoint_head_counts(
        checkpoint,
        info,
        num_attention_heads,
        decoder_num_attention_heads,
        names=("num_attention_heads", "decoder_num_attention_heads"),
    )
    fields: dict[str, Any] = {
        "hidden_size": info["embed_dim"],
        "num_hidden_layers": info["depth"],
        "num_attention_heads": heads,
        "intermediate_size": info["mlp_hidden"],
        "image_size": info["grid_size"][0] * info["patch_size"],
        "patch_size": info["patch_size"],
        "num_channels": info["in_chans"],
        "qkv_bias": info["qkv_bias"],
        "layer_norm_eps": layer_norm_eps,
        **convert.checkpoint_loss_options(checkpoint),
    }
    if "decoder_embed_dim" in info:
        fields.update(
            decoder_hidden_size=info["decoder_embed_dim"],
            decoder_num_hidden_layers=max(info["decoder_depth"], 1),
            decoder_intermediate_size=info["decoder_mlp_hidden"] or 4 * info["decoder_embed_dim"],
        )
    if decoder_heads is not None:
        fields["decoder_num_attention_heads"] = decoder_heads
    fields.update(overrides)
    return ViTMAEConfig(**fields)


def _encoding_fields(visible: VisibleEncoding) -> dict[str, Any]:
    """The output fields that both models take from the step as they are."""
    return {
        "mask": visible.mask,
        "ids_restore": visible.ids_restore,
        "hidden_states": visible.hidden_states,
        "attentions": visible.attentions,
    }


class ViTMAEPreTrainedModel(nn.Module):
    """Shared loading and saving of the Hugging Face checkpoint layout.

    Attributes:
        config: The model's :class:`ViTMAEConfig`.
    """

    # Prefix of the encoder weights in this model's Hugging Face checkpoints.
    base_model_prefix: ClassVar[str] = ""
    config: ViTMAEConfig

    def __init__(self, config: ViTMAEConfig) -> None:
        super().__init__()
        if not isinstance(config, ViTMAEConfig):
            raise TypeError(f"config must be a ViTMAEConfig, got {type(config).__name__}")
        self.config = config

    # --- subclasses say where the blocks are ---------------------------------------------------
    def _modules_for_official(self) -> tuple[MaskedVisionTransformer, MAEDecoder | None]:
        raise NotImplementedError

    # --- transformers' model API ------------------------------------------------------------
    def post_init(self) -> None:
        """Initialises the weights and applies ``config.attn_implementation`` (subclasses call
        it at the end of ``__init__``, as in transformers)."""
        self.init_weights()
        _set_attention(self, self.config.attn_implementation)

    def init_weights(self) -> None:
        """(Re-)initialises the weights as transformers' ViTMAE does, with
        ``config.initializer_range``: N(0, std) linear layers, zero biases, unit LayerNorms, a
        xavier-uniform patch projection, N(0, std) class and mask tokens; the position tables
        keep their fixed 2-D sin-cos values. (``ssl_mae.MAE`` keeps the official MAE
        initialisation.)"""
        encoder, decoder = self._modules_for_official()
        _init_hf_weights(self, self.config.initializer_range, encoder, decoder)

    def get_input_embeddings(self) -> nn.Module:
        """The patch embedding (a timm ``PatchEmbed``; its conv is ``.proj``)."""
        encoder, _ = self._modules_for_official()
        return cast(nn.Module, encoder.vit.patch_embed)

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Number of parameters, as transformers counts them.

        Args:
            only_trainable: Count only the parameters that require gradients (the fixed
                position tables do not).
            exclude_embeddings: Leave out ``nn.Embedding`` weights (this model has none).
        """
        embeddings = {
            id(module.weight) for module in self.modules() if isinstance(module, nn.Embedding)
        }
        return sum(
            parameter.numel()
            for parameter in self.parameters()
            if (parameter.requires_grad or not only_trainable)
            and not (exclude_embeddings and id(parameter) in embeddings)
        )

    def _step_options(
        self,
        interpolate_pos_encoding: bool | None,
        output_attentions: bool | None,
        output_hidden_states: bool | None,
        return_dict: bool | None,
    ) -> tuple[dict[str, Any], bool]:
        """The MAE step's keyword arguments for these call arguments, and whether to return an
        output object; None means "as ``self.config`` says" (as in transformers)."""
        config = self.config
        if output_hidden_states is None:
            output_hidden_states = config.output_hidden_states
        if output_attentions is None:
            output_attentions = config.output_attentions
        options = {
            "interpolate_pos_encoding": bool(interpolate_pos_encoding),
            "output_hidden_states": output_hidden_states,
            "output_attentions": output_attentions,
            "input_name": "pixel_values",
        }
        return options, config.use_return_dict if return_dict is None else return_dict

    # --- official layout ----------------------------------------------------------------------
    def official_state_dict(self) -> dict[str, Tensor]:
        """The weights in the official MAE layout (``blocks.N.attn.qkv``, ``decoder_*``)."""
        encoder, decoder = self._modules_for_official()
        return convert.official_state_dict(encoder, decoder)

    def load_official_state_dict(
        self, checkpoint: Mapping[str, Any] | str | os.PathLike[str], strict: bool = True
    ) -> list[str]:
        """Loads an official facebookresearch/mae checkpoint (path, ``{"model": ...}`` or flat).

        Args:
            checkpoint: The checkpoint.
            strict: Raise on missing/unexpected keys (shape mismatches always raise).

        Returns:
            Names of weights the checkpoint lacked (only with ``strict=False``).
        """
        encoder, decoder = self._modules_for_official()
        return convert.load_official(encoder, decoder, checkpoint, strict=strict)

    # --- Hugging Face layout ------------------------------------------------------------------
    def hf_state_dict(self) -> dict[str, Tensor]:
        """The weights with Hugging Face ViTMAE names (hub layout, separate query/key/value)."""
        return official_to_hf_state_dict(
            self.official_state_dict(), base_model_prefix=self.base_model_prefix
        )

    def load_hf_state_dict(
        self, state_dict: Mapping[str, Tensor], strict: bool = True
    ) -> list[str]:
        """Loads Hugging Face ViTMAE weights (any transformers 4.x/5.x spelling).

        ``ViTMAEModel`` accepts the encoder part of a ``ViTMAEForPreTraining`` checkpoint;
        ``ViTMAEForPreTraining`` accepts a ``ViTMAEModel`` checkpoint with ``strict=False`` (the
        decoder keeps its initialisation).

        Args:
            state_dict: Hugging Face state dict.
            strict: Raise on missing/unexpected keys (shape mismatches always raise).

        Returns:
            Hugging Face names of the weights that were missing (only with ``strict=False``).

        Raises:
            ValueError: Naming the missing, unexpected or mis-shaped keys.
        """
        provided = {normalize_hf_key(k): v for k, v in state_dict.items()}
        has_prefix = any(k.startswith("vit.") for k in provided)
        prefix = self.base_model_prefix
        if has_prefix and not prefix:
            provided = {k[len("vit.") :]: v for k, v in provided.items() if k.startswith("vit.")}
        elif prefix and not has_prefix:
            provided = {
                (k if k.startswith("decoder.") else prefix + k): v for k, v in provided.items()
            }
        expected = self.hf_state_dict()
        missing = convert.check_state_dict(
            expected,
            provided,
            "Hugging Face checkpoint",
            strict=strict,
            ignore_unexpected=() if prefix else ("decoder.",),
        )
        official = hf_to_official_state_dict({k: v for k, v in provided.items() if k in expected})
        encoder, decoder = self._modules_for_official()
        convert.load_official(encoder, decoder, official, strict=False)
        return missing

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> None:
        """Writes ``config.json`` and ``model.safetensors`` in the Hugging Face layout.

        The directory loads with ``transformers``' ``from_pretrained`` and with ours.

        Args:
            save_directory: Target directory (created if needed).
        """
        config = copy.copy(self.config)
        weight = next(self.parameters(), None)
        config.dtype = None if weight is None else weight.dtype  # as transformers writes it
        config.save_pretrained(save_directory, architectures=[type(self).__name__])
        save_state_dict_to_directory(self.hf_state_dict(), save_directory)

    @classmethod
    def from_pretrained(
        cls: type[_Model],
        pretrained_model_name_or_path: str | os.PathLike[str],
        config: ViTMAEConfig | None = None,
        strict: bool = True,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        dtype: torch.dtype | str | None = "auto",
    ) -> _Model:
        """Loads a model saved in the Hugging Face layout, without ``transformers``.

        Args:
            pretrained_model_name_or_path: Local directory (``config.json`` + weights) or hub id
                (needs ``huggingface_hub``; offline, cached files are used).
            config: Use this config instead of the directory's ``config.json``.
            strict: Raise on missing/unexpected weights (shape mismatches always raise); with
                False, missing weights keep their initialisation and a warning names them.
            revision: Hub revision.
            cache_dir: Hub cache directory.
            local_files_only: Do not try the network.
            dtype: Floating dtype of the returned weights; ``"auto"`` (transformers' default)
                takes ``config.dtype``, else the dtype of the saved weights; None keeps float32.

        Returns:
            The model in eval mode (as ``transformers`` returns it).
        """
        directory = resolve_pretrained_directory(
            pretrained_model_name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
        if config is None:
            config = ViTMAEConfig.from_json_file(directory / CONFIG_NAME)
        state_dict = load_state_dict_from_directory(directory)
        model = cls(config)
        missing = model.load_hf_state_dict(state_dict, strict)
        if dtype == "auto":
            stored = next((v.dtype for v in state_dict.values() if v.is_floating_point()), None)
            target = config.dtype or stored
        else:
            target = _as_dtype(dtype)
        if target is not None:
            model.to(target)
            model.config.dtype = target
        if missing:
            warnings.warn(
                f"{len(missing)} weight(s) were not in {str(pretrained_model_name_or_path)!r} "
                f"and keep their initial values: {missing[:12]}",
                stacklevel=2,
            )
        return model.eval()


class ViTMAEModel(ViTMAEPreTrainedModel):
    """The ViTMAE encoder: masks patches and encodes the visible ones (Hugging Face semantics).

    Args:
        config: Model configuration.

    Attributes:
        encoder: The :class:`~ssl_mae.modules.MaskedVisionTransformer` (a timm ViT under
            ``encoder.vit``).
    """

    base_model_prefix = ""

    def __init__(self, config: ViTMAEConfig) -> None:
        super().__init__(config)
        self.encoder = _build_encoder(config)
        self.post_init()

    def _modules_for_official(self) -> tuple[MaskedVisionTransformer, MAEDecoder | None]:
        return self.encoder, None

    def gradient_checkpointing_enable(self) -> None:
        """Recompute encoder block activations in the backward pass to save memory."""
        self.encoder.set_grad_checkpointing(True)

    def forward(
        self,
        pixel_values: Tensor,
        noise: Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> ViTMAEModelOutput | tuple[Any, ...]:
        """Masks ``config.mask_ratio`` of the patches and encodes the rest (the first half of
        the package's MAE step, :func:`ssl_mae.core.encode_visible`).

        Args:
            pixel_values: (B, C, H, W) images of ``config.image_size`` (any multiple of the
                patch size with ``interpolate_pos_encoding``).
            noise: Optional (B, L) noise; the patches with the smallest noise are kept, so the
                same noise gives the same mask as ``transformers``.
            interpolate_pos_encoding: Resize the position embedding for other image sizes.
            output_attentions: Also return the attention probabilities of every block; None
                follows ``config.output_attentions``.
            output_hidden_states: Also return the embedding output and every block's output;
                None follows ``config.output_hidden_states``.
            return_dict: Return a :class:`ViTMAEModelOutput` (else its tuple of set fields);
                None follows ``config.return_dict``.

        Returns:
            :class:`ViTMAEModelOutput`.
        """
        options, return_dict = self._step_options(
            interpolate_pos_encoding, output_attentions, output_hidden_states, return_dict
        )
        visible = encode_visible(
            self.encoder, pixel_values, self.config.mask_ratio, noise=noise, **options
        )
        output = ViTMAEModelOutput(last_hidden_state=visible.latent, **_encoding_fields(visible))
        return output if return_dict else output.to_tuple()


class ViTMAEForPreTraining(ViTMAEPreTrainedModel):
    """ViTMAE encoder + decoder with the pixel reconstruction loss (Hugging Face semantics).

    Args:
        config: Model configuration.

    Attributes:
        vit: The :class:`ViTMAEModel` encoder.
        decoder: The :class:`~ssl_mae.modules.MAEDecoder`.
        loss_fn: The :class:`~ssl_mae.loss.MAELoss` (``norm_pix=config.norm_pix_loss``).
    """

    base_model_prefix = "vit."

    def __init__(self, config: ViTMAEConfig) -> None:
        super().__init__(config)
        self.vit = ViTMAEModel(config)
        self.decoder = _build_decoder(config)
        self.loss_fn = MAELoss(norm_pix=config.norm_pix_loss)
        # The MAE step over the blocks registered above. It is held without registering it a
        # second time, so the module tree and the state dict keep this model's own layout.
        object.__setattr__(
            self,
            "_core",
            MaskedAutoencoder(self.vit.encoder, self.decoder, self.loss_fn, config.mask_ratio),
        )
        self.post_init()

    @property
    def masked_autoencoder(self) -> MaskedAutoencoder:
        """The core that runs every step (sharing this model's encoder, decoder and loss)."""
        core: MaskedAutoencoder = self.__dict__["_core"]
        return core

    def _modules_for_official(self) -> tuple[MaskedVisionTransformer, MAEDecoder | None]:
        return self.vit.encoder, self.decoder

    def gradient_checkpointing_enable(self) -> None:
        """Recompute encoder block activations in the backward pass to save memory."""
        self.vit.gradient_checkpointing_enable()

    # --- converters from other layouts ----------------------------------------------------------
    @classmethod
    def from_official(
        cls,
        checkpoint: Mapping[str, Any] | str | os.PathLike[str],
        config: ViTMAEConfig | None = None,
        strict: bool = True,
        **config_kwargs: Any,
    ) -> ViTMAEForPreTraining:
        """Builds a model from an official facebookresearch/mae checkpoint.

        Args:
            checkpoint: Path, ``{"model": ...}`` or flat official state dict. Encoder-only
                checkpoints need ``strict=False`` (the decoder is then freshly initialised).
            config: Architecture; read from the weights when None (see
                :func:`config_from_official_state_dict`, which takes ``config_kwargs``: the
                head counts ``num_attention_heads`` and ``decoder_num_attention_heads`` are
                required unless the checkpoint's hyper-parameters give them).
            strict: Raise on missing/unexpected keys.
            **config_kwargs: Passed to :func:`config_from_official_state_dict`.
        """
        read = convert.read_checkpoint(checkpoint)
        if config is None:
            config = config_from_official_state_dict(read, **config_kwargs)
        model = cls(config)
        model.load_official_state_dict(read.state_dict, strict=strict)
        return model

    @classmethod
    def from_timm_encoder(
        cls,
        state_dict: Mapping[str, Tensor],
        config: ViTMAEConfig | None = None,
        **config_kwargs: Any,
    ) -> ViTMAEForPreTraining:
        """Builds a model from a timm ``vit_*.mae`` encoder state dict; the decoder is freshly
        initialised (MAE initialisation).

        Args:
            state_dict: timm ``VisionTransformer`` state dict (a classifier head is ignored).
            config: Architecture; read from the weights when None, with
                ``num_attention_heads`` from ``config_kwargs`` (timm state dicts do not hold
                it).
            **config_kwargs: Passed to :func:`config_from_official_state_dict`.
        """
        flat = convert.unwrap_checkpoint(state_dict)
        if config is None:
            config = config_from_official_state_dict(flat, **config_kwargs)
        model = cls(config)
        convert.load_timm_encoder(model.vit.encoder, flat, strict=True)
        return model

    @classmethod
    def from_lightly(
        cls,
        state_dict: Mapping[str, Tensor],
        config: ViTMAEConfig | None = None,
        prefix: str = "",
        decoder_prefix: str | None = None,
        **config_kwargs: Any,
    ) -> ViTMAEForPreTraining:
        """Builds a model from a Lightly ``MaskedVisionTransformerTIMM`` state dict.

        Args:
            state_dict: Lightly state dict of the encoder (or of a model, with ``prefix``).
            config: Architecture; inferred from the encoder weights when None.
            prefix: Prefix of the encoder in ``state_dict``, e.g. ``"backbone."``.
            decoder_prefix: Prefix of a Lightly ``MAEDecoderTIMM`` in ``state_dict`` (e.g.
                ``"decoder."``) to load it too; None keeps a fresh decoder.
            **config_kwargs: Passed to :func:`config_from_official_state_dict`; when ``config``
                is None they must give ``num_attention_heads`` (and, with ``decoder_prefix``,
                ``decoder_num_attention_heads``), which Lightly state dicts do not hold.
        """
        encoder_state = convert.encoder_state_dict_from_lightly(state_dict, prefix=prefix)
        official = {k[len("vit.") :]: v for k, v in encoder_state.items() if k.startswith("vit.")}
        if decoder_prefix is not None:
            flat = convert.unwrap_checkpoint(state_dict)
            official.update(
                {
                    k[len(decoder_prefix) :]: v
                    for k, v in flat.items()
                    if k.startswith(decoder_prefix)
                }
            )
        if config is None:
            config = config_from_official_state_dict(official, **config_kwargs)
        model = cls(config)
        if decoder_prefix is None:
            convert.load_timm_encoder(model.vit.encoder, official, strict=True)
        else:
            model.load_official_state_dict(official, strict=True)
        return model

    # --- the MAE steps ----------------------------------------------------------------------------
    def patchify(self, pixel_values: Tensor, interpolate_pos_encoding: bool = False) -> Tensor:
        """Cuts images into flattened patches (official/HF layout).

        Args:
            pixel_values: (B, C, H, W) images; square (or ``config.image_size`` when that is
                non-square) unless ``interpolate_pos_encoding``.
            interpolate_pos_encoding: Allow any (non-square) image size.

        Returns:
            (B, L, p * p * C) patches.
        """
        check_tensor(pixel_values, "pixel_values", ndim=4, shape_doc="(B, C, H, W)")
        channels, height, width = pixel_values.shape[1:]
        if channels != self.config.num_channels:
            raise ValueError(
                f"pixel_values must have {self.config.num_channels} channels "
                f"(config.num_channels), got {channels}"
            )
        native = (height, width) == tuple(self.config.image_hw)
        if not interpolate_pos_encoding and height != width and not native:
            raise ValueError(
                f"pixel_values must be square or config.image_size {self.config.image_hw} unless "
                f"interpolate_pos_encoding=True, got {height}x{width}"
            )
        return masking.patchify(pixel_values, self.config.patch_size)

    def unpatchify(
        self, patchified_pixel_values: Tensor, original_image_size: tuple[int, int] | None = None
    ) -> Tensor:
        """Puts flattened patches back into images.

        Args:
            patchified_pixel_values: (B, L, p * p * C) patches.
            original_image_size: ``(H, W)``; ``config.image_size`` when None.

        Returns:
            (B, C, H, W) images.
        """
        size = self.config.image_hw if original_image_size is None else original_image_size
        return masking.unpatchify(
            patchified_pixel_values,
            self.config.patch_size,
            channels=self.config.num_channels,
            image_size=size,
        )

    def forward_decoder(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """Predicts the pixels of every patch from the encoder output.

        Args:
            latent: (B, 1 + L_keep, D) encoder output (class token first).
            ids_restore: (B, L) permutation restoring the patch order; another L than the
                configured one resizes the decoder's position table as a sequence, as
                Hugging Face does.

        Returns:
            (B, L, p * p * C) logits.
        """
        check_tensor(ids_restore, "ids_restore", ndim=2, shape_doc="(B, L)", integer=True)
        num_patches = ids_restore.shape[1]
        grid = None if num_patches == self.decoder.num_patches else (1, num_patches)
        return self.decoder.predict_all(latent, ids_restore, grid_size=grid)

    def forward(
        self,
        pixel_values: Tensor,
        noise: Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> ViTMAEForPreTrainingOutput | tuple[Any, ...]:
        """Masks, encodes, decodes and computes the reconstruction loss: one call of the
        package's MAE step (:class:`~ssl_mae.MaskedAutoencoder`).

        Args:
            pixel_values: (B, C, H, W) images.
            noise: Optional (B, L) masking noise (see :meth:`ViTMAEModel.forward`).
            interpolate_pos_encoding: Resize the position embeddings for other image sizes.
            output_attentions: Also return the encoder attention probabilities; None follows
                ``config.output_attentions``.
            output_hidden_states: Also return the encoder hidden states; None follows
                ``config.output_hidden_states``.
            return_dict: Return a :class:`ViTMAEForPreTrainingOutput` (else its tuple); None
                follows ``config.return_dict``.

        Returns:
            :class:`ViTMAEForPreTrainingOutput` with ``loss`` (scalar), ``logits``
            (B, L, p * p * C), ``mask`` (B, L), ``ids_restore`` (B, L), and optionally
            ``hidden_states`` and ``attentions``.
        """
        options, return_dict = self._step_options(
            interpolate_pos_encoding, output_attentions, output_hidden_states, return_dict
        )
        out = self.masked_autoencoder(pixel_values, self.config.mask_ratio, noise, **options)
        output = ViTMAEForPreTrainingOutput(loss=out.loss, logits=out.pred, **_encoding_fields(out))
        return output if return_dict else output.to_tuple()
