"""``ViTMAEConfig``: the Hugging Face ViTMAE configuration, without ``transformers``.

Field names and defaults are those of ``transformers.ViTMAEConfig`` (the ``facebook/vit-mae-base``
architecture), and ``config.json`` files are read and written in the same format, so a directory
saved by either library is read by the other.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

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


# Keys every Hugging Face config carries that say nothing about the architecture; they are not
# kept when reading (``architectures`` is rewritten by ``save_pretrained``).
_GENERIC_KEYS = frozenset(
    {"architectures", "model_type", "transformers_version", "_name_or_path", "dtype", "torch_dtype"}
)


@dataclass
class ViTMAEConfig:
    """Architecture and pretraining settings of a ViTMAE model (Hugging Face field names).

    Args:
        hidden_size: Encoder token dimension.
        num_hidden_layers: Number of encoder blocks.
        num_attention_heads: Attention heads per encoder block.
        intermediate_size: Hidden size of the encoder MLPs.
        hidden_act: MLP activation; ``"gelu"`` (exact), ``"gelu_new"``/``"gelu_pytorch_tanh"``
            (tanh approximation), ``"quick_gelu"``, ``"relu"``, ``"silu"``/``"swish"``.
        hidden_dropout_prob: Dropout after the attention and MLP projections.
        attention_probs_dropout_prob: Dropout on the attention probabilities.
        initializer_range: Std of normal initialisations (kept for compatibility; our models use
            the MAE initialisation).
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
        extra: Other keys found in a ``config.json`` (e.g. ``id2label``); written back unchanged.
    """

    model_type: ClassVar[str] = "vit_mae"

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    image_size: int | tuple[int, int] = 224
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True
    decoder_num_attention_heads: int = 16
    decoder_hidden_size: int = 512
    decoder_num_hidden_layers: int = 8
    decoder_intermediate_size: int = 2048
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
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

    # --- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` content: extra keys, the fields and ``model_type``."""
        data: dict[str, Any] = dict(self.extra)
        for item in dataclasses.fields(self):
            if item.name != "extra":
                value = getattr(self, item.name)
                data[item.name] = list(value) if isinstance(value, tuple) else value
        data["model_type"] = self.model_type
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ViTMAEConfig:
        """Builds a config from a ``config.json`` dict.

        Args:
            data: Parsed ``config.json``. ``model_type``, when present, must be ``"vit_mae"``.

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
        names = {item.name for item in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k not in _GENERIC_KEYS}
        return cls(**known, extra=extra)

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
