"""``ViTMAEConfig``: the Hugging Face ViTMAE configuration, without ``transformers``.

Field names and defaults are those of ``transformers.ViTMAEConfig`` (the ``facebook/vit-mae-base``
architecture), and ``config.json`` files are read and written in the same format, so a directory
saved by either library is read by the other.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from ssl_mae._validation import (
    check_bool,
    check_float,
    check_mask_ratio,
    check_positive_float,
    check_positive_int,
    to_2tuple,
)
from ssl_mae.hf.io import CONFIG_NAME, resolve_pretrained_directory

__all__ = ["CONFIG_NAME", "ViTMAEConfig"]


# Keys of a config.json that describe the file, not the model; they are not kept when reading
# (``architectures`` and ``dtype`` are rewritten by ``save_pretrained``).
_FILE_KEYS = frozenset(
    {
        "architectures",
        "model_type",
        "transformers_version",
        "_name_or_path",
        "_commit_hash",
        "_attn_implementation_autoset",
        "use_return_dict",
    }
)
_ATTN_IMPLEMENTATIONS = (None, "eager", "sdpa")


def _as_dtype(value: object) -> torch.dtype | None:
    """``dtype``/``torch_dtype`` as transformers accepts it: None, a torch dtype or its name."""
    if value is None or isinstance(value, torch.dtype):
        return value
    if isinstance(value, str):
        dtype = getattr(torch, value.removeprefix("torch."), None)
        if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
            return dtype
    raise ValueError(
        f"dtype must be None, a floating torch.dtype or its name (e.g. 'float32', 'bfloat16'), "
        f"got {value!r}"
    )


@dataclass(init=False, eq=False)
class ViTMAEConfig:
    """Architecture and pretraining settings of a ViTMAE model (Hugging Face field names).

    Like ``transformers.PretrainedConfig`` it also takes the generic settings every Hugging Face
    config has (``output_hidden_states``, ``output_attentions``, ``return_dict``, ``dtype`` or
    ``torch_dtype``, ``attn_implementation``), which the models honour, and stores any other
    keyword (``is_decoder``, ``id2label``, ...) as an attribute that ``config.json`` keeps.

    Args:
        hidden_size: Encoder token dimension.
        num_hidden_layers: Number of encoder blocks.
        num_attention_heads: Attention heads per encoder block.
        intermediate_size: Hidden size of the encoder MLPs.
        hidden_act: MLP activation; ``"gelu"`` (exact), ``"gelu_new"``/``"gelu_pytorch_tanh"``
            (tanh approximation), ``"quick_gelu"``, ``"relu"``, ``"silu"``/``"swish"``.
        hidden_dropout_prob: Dropout after the attention and MLP projections.
        attention_probs_dropout_prob: Dropout on the attention probabilities.
        initializer_range: Std of the normal initialisation of the linear layers and of the
            class and mask tokens, as in transformers.
        layer_norm_eps: Epsilon of every LayerNorm.
        image_size: Image side length (or ``(height, width)``).
        patch_size: Patch side length.
        num_channels: Image channels.
        qkv_bias: Bias in the query/key/value projections.
        decoder_num_attention_heads: Attention heads per decoder block.
        decoder_hidden_size: Decoder token dimension.
        decoder_num_hidden_layers: Number of decoder blocks.
        decoder_intermediate_size: Hidden size of the decoder MLPs.
        mask_ratio: Fraction of patches removed before the encoder, in [0, 1).
        norm_pix_loss: Normalise target patches by their mean and variance.
        output_hidden_states: Models return the hidden states unless a call says otherwise.
        output_attentions: Models return the attention probabilities unless a call says
            otherwise.
        return_dict: Models return output objects (else tuples) unless a call says otherwise.
        dtype: Floating dtype ``from_pretrained`` loads the weights in (``torch_dtype`` is the
            older name); None keeps the checkpoint's.
        attn_implementation: ``"sdpa"`` (fused ``scaled_dot_product_attention``, the default
            when None) or ``"eager"`` (explicit softmax attention).
        extra: Further keys stored as attributes (the same as passing them as keywords).
        **kwargs: Any other key, stored as an attribute and written to ``config.json``.
    """

    model_type: ClassVar[str] = "vit_mae"

    # The fields; their defaults are those of __init__ (and of transformers.ViTMAEConfig).
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str
    hidden_dropout_prob: float
    attention_probs_dropout_prob: float
    initializer_range: float
    layer_norm_eps: float
    image_size: int | tuple[int, int]
    patch_size: int
    num_channels: int
    qkv_bias: bool
    decoder_num_attention_heads: int
    decoder_hidden_size: int
    decoder_num_hidden_layers: int
    decoder_intermediate_size: int
    mask_ratio: float
    norm_pix_loss: bool
    output_hidden_states: bool
    output_attentions: bool
    return_dict: bool
    dtype: torch.dtype | None
    attn_implementation: str | None

    def __init__(
        self,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        initializer_range: float = 0.02,
        layer_norm_eps: float = 1e-12,
        image_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        num_channels: int = 3,
        qkv_bias: bool = True,
        decoder_num_attention_heads: int = 16,
        decoder_hidden_size: int = 512,
        decoder_num_hidden_layers: int = 8,
        decoder_intermediate_size: int = 2048,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = False,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        return_dict: bool = True,
        dtype: torch.dtype | str | None = None,
        attn_implementation: str | None = None,
        extra: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.qkv_bias = qkv_bias
        self.decoder_num_attention_heads = decoder_num_attention_heads
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_hidden_layers = decoder_num_hidden_layers
        self.decoder_intermediate_size = decoder_intermediate_size
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.output_hidden_states = output_hidden_states
        self.output_attentions = output_attentions
        self.return_dict = return_dict
        # transformers' older name; when both are given, dtype wins (as there).
        torch_dtype = kwargs.pop("torch_dtype", None)
        self.dtype = _as_dtype(dtype if dtype is not None else torch_dtype)
        self.attn_implementation = kwargs.pop("_attn_implementation", attn_implementation)
        if extra is not None and not isinstance(extra, Mapping):
            raise TypeError(f"extra must be a dict of further keys, got {extra!r}")
        fields = {item.name for item in dataclasses.fields(self)}
        for name, value in {**(extra or {}), **kwargs}.items():
            if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
                raise ValueError(
                    f"ViTMAEConfig got the key {name!r}; further keys must be public attribute "
                    "names"
                )
            if name in _FILE_KEYS:
                continue
            if name in fields or hasattr(type(self), name):
                raise ValueError(
                    f"extra key {name!r} is an attribute of ViTMAEConfig itself; pass fields as "
                    "keywords"
                )
            setattr(self, name, value)
        self._validate()

    def _validate(self) -> None:
        for name in (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "num_channels",
            "decoder_num_attention_heads",
            "decoder_hidden_size",
            "decoder_num_hidden_layers",
            "decoder_intermediate_size",
        ):
            check_positive_int(getattr(self, name), name)
        if isinstance(self.patch_size, (list, tuple)):
            pair = to_2tuple(self.patch_size, "patch_size")
            if pair[0] != pair[1]:
                raise ValueError(f"patch_size must be square, got {self.patch_size!r}")
            self.patch_size = pair[0]
        check_positive_int(self.patch_size, "patch_size")
        if isinstance(self.image_size, (list, tuple)):
            pair = to_2tuple(self.image_size, "image_size")
            self.image_size = pair[0] if pair[0] == pair[1] else pair
        height, width = to_2tuple(self.image_size, "image_size")
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"image_size must be a multiple of patch_size={self.patch_size}, "
                f"got {self.image_size!r}"
            )
        for dim, heads in (
            ("hidden_size", "num_attention_heads"),
            ("decoder_hidden_size", "decoder_num_attention_heads"),
        ):
            if getattr(self, dim) % getattr(self, heads):
                raise ValueError(
                    f"{dim} ({getattr(self, dim)}) must be divisible by {heads} "
                    f"({getattr(self, heads)})"
                )
        for dim in ("hidden_size", "decoder_hidden_size"):
            if getattr(self, dim) % 4:
                raise ValueError(
                    f"{dim} must be a multiple of 4 for the 2-D sin-cos position table, got "
                    f"{getattr(self, dim)}"
                )
        check_mask_ratio(self.mask_ratio)
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            check_float(getattr(self, name), name, 0.0, 1.0, high_open=True)
        check_positive_float(self.layer_norm_eps, "layer_norm_eps")
        check_positive_float(self.initializer_range, "initializer_range")
        if not isinstance(self.hidden_act, str):
            raise TypeError(f"hidden_act must be a string, got {self.hidden_act!r}")
        for name in ("qkv_bias", "norm_pix_loss"):
            check_bool(getattr(self, name), name)
        for name in ("output_hidden_states", "output_attentions", "return_dict"):
            check_bool(getattr(self, name), name)
        if self.attn_implementation not in _ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation must be one of {list(_ATTN_IMPLEMENTATIONS)}, "
                f"got {self.attn_implementation!r}"
            )
        if not isinstance(self.extra, dict):
            raise TypeError(f"extra must be a dict, got {type(self.extra).__name__}")

    # --- derived sizes -------------------------------------------------------------------------
    @property
    def image_hw(self) -> tuple[int, int]:
        """``(height, width)`` of the native image size."""
        return to_2tuple(self.image_size, "image_size")

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid ``(h, w)`` at the native image size."""
        height, width = self.image_hw
        return height // self.patch_size, width // self.patch_size

    @property
    def num_patches(self) -> int:
        """Number of patches at the native image size."""
        grid_h, grid_w = self.grid_size
        return grid_h * grid_w

    # --- transformers' derived settings -------------------------------------------------------
    @property
    def use_return_dict(self) -> bool:
        """Whether models return output objects by default (transformers' name)."""
        return self.return_dict

    @property
    def torch_dtype(self) -> torch.dtype | None:
        """The older name of :attr:`dtype`."""
        return self.dtype

    @property
    def extra(self) -> dict[str, Any]:
        """The keys beyond the fields (``is_decoder``, ``id2label``, ...), as stored."""
        names = {item.name for item in dataclasses.fields(self)}
        return {k: v for k, v in vars(self).items() if k not in names and not k.startswith("_")}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ViTMAEConfig):
            return NotImplemented
        return (self.to_dict(), self.attn_implementation) == (
            other.to_dict(),
            other.attn_implementation,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like every config

    # --- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` content: further keys, the fields and ``model_type``.

        ``attn_implementation`` is a choice of the running process and is not written (as in
        transformers); ``dtype`` is written by name (``"float32"``) when set.
        """
        data: dict[str, Any] = dict(self.extra)
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name == "attn_implementation" or (item.name == "dtype" and value is None):
                continue
            if item.name == "dtype":
                value = str(value).removeprefix("torch.")
            data[item.name] = list(value) if isinstance(value, tuple) else value
        data["model_type"] = self.model_type
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ViTMAEConfig:
        """Builds a config from a ``config.json`` dict.

        Args:
            data: Parsed ``config.json``. ``model_type``, when present, must be ``"vit_mae"``;
                keys that describe the file (``architectures``, ``transformers_version``, ...)
                are dropped, any other key is kept.

        Raises:
            ValueError: For another ``model_type`` (e.g. a plain ``"vit"`` checkpoint).
        """
        if not isinstance(data, dict):
            raise TypeError(f"config must be a dict, got {type(data).__name__}")
        model_type = data.get("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ValueError(
                f"config model_type must be {cls.model_type!r} for ViTMAE, got {model_type!r}"
            )
        return cls(**{k: v for k, v in data.items() if k not in _FILE_KEYS})

    def to_json_string(self) -> str:
        """The config as pretty-printed JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(
        self, save_directory: str | os.PathLike[str], architectures: list[str] | None = None
    ) -> Path:
        """Writes ``config.json`` into a directory (created if needed).

        Args:
            save_directory: Target directory.
            architectures: Value of the ``architectures`` field, e.g. ``["ViTMAEForPreTraining"]``.

        Returns:
            Path of the written file.
        """
        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"save_directory {str(directory)!r} exists and is not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        if architectures is not None:
            data["architectures"] = list(architectures)
        path = directory / CONFIG_NAME
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> ViTMAEConfig:
        """Reads a ``config.json`` file."""
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"config file {str(file)!r} does not exist or is not a file")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{str(file)!r} is not valid UTF-8 JSON: {error}") from None
        if not isinstance(data, dict):
            raise ValueError(
                f"{str(file)!r} must hold a JSON object of config fields, got a JSON "
                f"{type(data).__name__}"
            )
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as error:  # name the file whose field is wrong
            kind = TypeError if isinstance(error, TypeError) else ValueError
            raise kind(f"{str(file)!r}: {error}") from None

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike[str],
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
    ) -> ViTMAEConfig:
        """Reads the config of a saved model: a local directory, a ``config.json`` file, or a
        Hugging Face Hub id (needs ``huggingface_hub``; offline, only cached files are used).

        Args:
            pretrained_model_name_or_path: Directory, file or hub id.
            revision: Hub revision (branch, tag or commit).
            cache_dir: Hub cache directory.
            local_files_only: Do not try the network.
        """
        path = Path(pretrained_model_name_or_path)
        if path.is_file():
            return cls.from_json_file(path)

        directory = resolve_pretrained_directory(
            pretrained_model_name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            config_only=True,
        )
        return cls.from_json_file(directory / CONFIG_NAME)
