"""Bad input, round two: malformed input that must end in a *clear error*.

Every case feeds one malformed value to a public entry point and checks the contract of
``docs/errors.md``: the exception type listed for the entry point, raised at the boundary, with a
message that names the argument (or the offending file). Many of these inputs used to return a
silently wrong number (NaN noise, an infinite epsilon, a NaN learning rate), hang, or fail deep
inside torch, timm, safetensors or pickle with a message that names nothing the user wrote.

The cases from issue 13 carry ``issue13`` in their id.
"""

from __future__ import annotations

import builtins
import functools
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch import nn

import ssl_mae
from ssl_mae import masking
from ssl_mae.convert import infer_official_architecture, unwrap_checkpoint
from ssl_mae.core import MaskedAutoencoder
from ssl_mae.data import GPUResidentLoader, TensorImageDataset, normalize_images, read_idx
from ssl_mae.evaluation import (
    LARS,
    FineTuneClassifier,
    evaluate_classifier,
    extract_features,
    finetune,
    knn_accuracy,
    knn_predict,
    param_groups_layer_decay,
    set_drop_path,
    topk_accuracy,
    train_linear_probe,
)
from ssl_mae.flops import flops_per_image, mae_flops
from ssl_mae.hf import ViTMAEConfig, ViTMAEForPreTraining
from ssl_mae.loss import MAELoss, normalize_patches
from ssl_mae.models import MAE, SimpleMAE, build_model, mae_vit_micro_patch4
from ssl_mae.models.hivit.pretraining import HiViTMAEForPreTraining
from ssl_mae.modules import MAEDecoder, MaskedVisionTransformer
from ssl_mae.pos_embed import get_2d_sincos_pos_embed, interpolate_pos_embed
from ssl_mae.training import PretrainModule
from ssl_mae.training.optim import build_adamw, scaled_lr, warmup_cosine
from ssl_mae.transforms import BatchedMAEAugment, MAETransform
from ssl_mae.visualize import denormalize, reconstruct, save_reconstruction_grid

from .test_bad_input import (
    Call,
    _case,
    _documented_errors,
    _hf,
    _images,
    _long,
    _mae,
    _simple_mae,
    _timm_vit,
)

NAN, INF = float("nan"), float("inf")


# --- inputs ------------------------------------------------------------------------------------
@functools.cache
def _hivit() -> HiViTMAEForPreTraining:
    """32x32 grayscale, 16-pixel units: 4 units, no prefix token."""
    torch.manual_seed(0)
    model = build_model("mae_hivit_nano", in_chans=1)
    assert isinstance(model, HiViTMAEForPreTraining)
    return model


_HIVIT_SMALL: dict[str, Any] = dict(
    arch={"embed_dims": 96, "depths": (1, 1, 4), "num_heads": 3}, img_size=32, in_chans=1,
    decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
)  # fmt: skip


def _ints(*shape: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(shape, dtype=dtype)


def _permutation(batch: int, length: int) -> torch.Tensor:
    return torch.stack([torch.randperm(length) for _ in range(batch)])


def _split(batch: int = 2, keep: int = 13, length: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """A valid Lightly-style split of a 1 + 49 token sequence: class token + 12 patches kept."""
    order = torch.stack([torch.randperm(length - 1) + 1 for _ in range(batch)])
    prefix = torch.zeros(batch, 1, dtype=torch.long)
    return torch.cat([prefix, order[:, : keep - 1]], dim=1), order[:, keep - 1 :]


def _duplicated_ids_restore() -> torch.Tensor:
    ids = _permutation(2, 49)
    ids[:, 1] = ids[:, 0]  # one token copied twice, another dropped
    return ids


def _nan_noise(*shape: int) -> torch.Tensor:
    return torch.full(shape, NAN)


def _hf_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "hf"
    _hf().save_pretrained(folder)
    return folder


def _hf_dir_with_config(tmp_path: Path, config: bytes) -> Path:
    folder = _hf_dir(tmp_path)
    (folder / "config.json").write_bytes(config)
    return folder


def _hf_config_with(tmp_path: Path, **fields: Any) -> Path:
    data = json.loads((_hf_dir(tmp_path) / "config.json").read_text())
    data.update(fields)
    return _hf_dir_with_config(tmp_path, json.dumps(data).encode())


def _hf_dir_with_truncated_weights(tmp_path: Path) -> Path:
    folder = _hf_dir(tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return folder


def _hf_dir_with_bin(tmp_path: Path, content: object) -> Path:
    folder = _hf_dir(tmp_path)
    (folder / "model.safetensors").unlink()
    torch.save(content, folder / "pytorch_model.bin")
    return folder


def _hf_dir_with_index(tmp_path: Path, shard: str | None, text: str | None = None) -> Path:
    """A model folder whose weights are announced by an index naming ``shard``; a real
    safetensors file lies at ``tmp_path/elsewhere/x.safetensors`` for traversal attempts."""
    folder = _hf_dir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / "model.safetensors").rename(elsewhere / "x.safetensors")
    index = text if text is not None else json.dumps({"weight_map": {"w": shard}})
    (folder / "model.safetensors.index.json").write_text(index)
    return folder


def _checkpoint_file(tmp_path: Path, content: object, truncate: bool = False) -> Path:
    path = tmp_path / "checkpoint.pth"
    torch.save(content, path)
    if truncate:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _fifo(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    os.mkfifo(path)
    return path


def _idx_file(tmp_path: Path) -> Path:
    path = tmp_path / "train-images-idx3-ubyte"
    header = (0x803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (10, 28, 28))
    path.write_bytes(header + bytes(100))  # 10 images declared, less than one stored
    return path


def _labelled(labels: torch.Tensor, channels: int = 1, size: int = 28) -> list[Any]:
    return [(_images(labels.shape[0], channels, size, size), labels)]


def _features(rows: int = 8, dim: int = 4, bad: float | None = None) -> torch.Tensor:
    features = torch.randn(rows, dim, generator=torch.Generator().manual_seed(rows))
    if bad is not None:
        features[1, 2] = bad
    return features


def _labels(rows: int = 8, classes: int = 2) -> torch.Tensor:
    return torch.arange(rows) % classes


def _probe(**kwargs: Any) -> Any:
    args = dict(epochs=1, warmup_epochs=0)
    args.update(kwargs)
    return train_linear_probe(_features(), _labels(), _features(4), _labels(4), 2, **args)


def _classifier() -> FineTuneClassifier:
    """A 3-class classifier over flattened (1, 4, 4) images."""
    return FineTuneClassifier(nn.Flatten(), 3, embed_dim=16)


class _FloatDataset(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """Float images (1, 4, 4) with the given labels, as a fine-tuning data set."""

    def __init__(self, labels: list[int]) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.rand(1, 4, 4), self.labels[index]


# --- the table ---------------------------------------------------------------------------------
ERROR_CASES = [
    # masking: index dtypes torch cannot index with, non-permutations, NaN noise, empty ratios
    _case("ssl_mae.get_at_index",
          lambda _: ssl_mae.get_at_index(_images(2, 5, 3), _ints(2, 2, dtype=torch.int16)),
          TypeError, "index", "issue13-get-at-index-int16-indices"),
    _case("ssl_mae.set_at_index",
          lambda _: ssl_mae.set_at_index(_images(2, 5, 3), _ints(2, 2, dtype=torch.uint8),
                                         _images(2, 2, 3)),
          TypeError, "index", "issue13-set-at-index-uint8-indices"),
    _case("ssl_mae.mask_at_index",
          lambda _: ssl_mae.mask_at_index(_images(2, 5, 3), _ints(2, 2, dtype=torch.int8),
                                          _images(1, 1, 3)),
          TypeError, "index", "mask-at-index-int8-indices"),
    _case("ssl_mae.get_at_index",
          lambda _: ssl_mae.get_at_index(_images(2, 5, 3), _long(2, 2, value=-1)),
          ValueError, "index", "get-at-index-negative-index"),
    _case("ssl_mae.get_at_index", lambda _: ssl_mae.get_at_index(_images(2, 5, 3), _long(3, 2)),
          ValueError, "index", "get-at-index-batch-mismatch"),
    _case("ssl_mae.get_at_index",
          lambda _: ssl_mae.get_at_index(_images(2, 5, 3), torch.zeros(2, 2, dtype=torch.bool)),
          TypeError, "index", "get-at-index-bool-indices"),
    _case("ssl_mae.masking.restore_index",
          lambda _: masking.restore_index(torch.tensor([[0, 0]]), torch.tensor([[1, 2]])),
          ValueError, "idx_keep and idx_mask", "issue13-restore-index-duplicates"),
    _case("ssl_mae.masking.restore_index",
          lambda _: masking.restore_index(torch.tensor([[0, 1]]), torch.tensor([[1, 3]])),
          ValueError, "idx_keep and idx_mask", "issue13-restore-index-overlap"),
    _case("ssl_mae.masking.restore_index",
          lambda _: masking.restore_index(torch.tensor([[0, 1]]), torch.tensor([[2, 7]])),
          ValueError, "idx_keep and idx_mask", "restore-index-out-of-range"),
    _case("ssl_mae.masking.restore_index",
          lambda _: masking.restore_index(torch.zeros(1, 2), torch.tensor([[2, 3]])),
          TypeError, "idx_keep", "restore-index-float-indices"),
    _case("ssl_mae.masking.restore_index",
          lambda _: masking.restore_index(_long(2, 2), _long(3, 2)),
          ValueError, "batch size", "restore-index-batch-mismatch"),
    _case("ssl_mae.random_token_mask",
          lambda _: ssl_mae.random_token_mask((2, 50), 0.75, noise=_nan_noise(2, 49)),
          ValueError, "noise", "issue13-token-mask-nan-noise"),
    _case("ssl_mae.random_token_mask",
          lambda _: ssl_mae.random_token_mask(
              (2, 5), 0.5, noise=torch.tensor([[0.1, INF, 0.3, 0.2], [0.4, 0.3, 0.2, 0.1]])),
          ValueError, "noise", "token-mask-inf-noise"),
    _case("ssl_mae.random_token_mask",
          lambda _: ssl_mae.random_token_mask((2, 50), 0.5, generator=42),  # type: ignore[arg-type]
          TypeError, "generator", "token-mask-generator-int"),
    _case("ssl_mae.random_token_mask",
          lambda _: ssl_mae.random_token_mask((2, 50), 0.5, device="gpu0"),
          ValueError, "device", "token-mask-unknown-device"),
    _case("ssl_mae.random_token_mask",
          lambda _: ssl_mae.random_token_mask((2, 50), 0.5, num_prefix_tokens=50),
          ValueError, "num_prefix_tokens", "token-mask-all-prefix"),
    _case("ssl_mae.random_token_mask", lambda _: ssl_mae.random_token_mask((2, 0), 0.5),
          ValueError, "size", "token-mask-empty-sequence"),
    _case("ssl_mae.random_token_mask",
          lambda _: ssl_mae.random_token_mask((2, 50), 0.5, noise=_images(2, 50)),
          ValueError, "noise", "token-mask-noise-covers-prefix"),
    _case("ssl_mae.random_masking", lambda _: ssl_mae.random_masking(_images(2, 49, 8), 0.99),
          ValueError, "mask_ratio", "issue13-random-masking-keeps-no-token"),
    _case("ssl_mae.random_masking",
          lambda _: ssl_mae.random_masking(_images(2, 49, 8), 0.5, noise=_nan_noise(2, 49)),
          ValueError, "noise", "random-masking-nan-noise"),
    _case("ssl_mae.random_masking",
          lambda _: ssl_mae.random_masking(_images(2, 49, 8), 0.5, generator="seed"),  # type: ignore[arg-type]
          TypeError, "generator", "random-masking-generator-str"),
    _case("ssl_mae.random_masking",
          lambda _: ssl_mae.random_masking(_images(2, 49, 8), 0.5, noise=_long(2, 49)),
          TypeError, "noise", "random-masking-integer-noise"),
    _case("ssl_mae.random_masking",
          lambda _: ssl_mae.random_masking(_images(2, 49, 8), 0.5, noise=_images(2, 48)),
          ValueError, "noise", "random-masking-noise-shape"),
    _case("ssl_mae.patchify", lambda _: ssl_mae.patchify(_images(1, 1, 0, 0), 4),
          ValueError, "images", "issue13-patchify-0x0-image"),
    _case("ssl_mae.patchify", lambda _: ssl_mae.patchify(_images(1, 0, 8, 8), 4),
          ValueError, "images", "patchify-zero-channels"),
    _case("ssl_mae.patchify", lambda _: ssl_mae.patchify(_images(1, 1, 8, 8), 0),
          ValueError, "patch_size", "patchify-patch-size-0"),
    _case("ssl_mae.patchify", lambda _: ssl_mae.patchify(_images(1, 1, 8, 8), True),
          TypeError, "patch_size", "patchify-patch-size-bool"),
    _case("ssl_mae.unpatchify", lambda _: ssl_mae.unpatchify(_images(1, 0, 16), 4),
          ValueError, "patches", "unpatchify-zero-patches"),
    _case("ssl_mae.unpatchify",
          lambda _: ssl_mae.unpatchify(_images(1, 12, 16), 4, image_size=(16, 16)),
          ValueError, "image_size", "unpatchify-image-size-mismatch"),
    _case("ssl_mae.unpatchify", lambda _: ssl_mae.unpatchify(_images(1, 12, 16), 4),
          ValueError, "image_size", "unpatchify-non-square-without-size"),
    _case("ssl_mae.unpatchify", lambda _: ssl_mae.unpatchify(_images(1, 4, 16), 4, channels=0),
          ValueError, "channels", "unpatchify-zero-channels"),
    _case("ssl_mae.prepend_class_token",
          lambda _: ssl_mae.prepend_class_token(_images(2, 5, 3), _images(2, 1, 3)),
          ValueError, "class_token", "prepend-class-token-batch-of-tokens"),
    # position embeddings
    _case("ssl_mae.interpolate_pos_embed", lambda _: interpolate_pos_embed(_images(2, 17, 32), 2),
          ValueError, "pos_embed", "issue13-interpolate-batch-of-2"),
    _case("ssl_mae.interpolate_pos_embed",
          lambda _: interpolate_pos_embed(_images(1, 17, 32), 2, num_prefix_tokens=100),
          ValueError, "num_prefix_tokens", "issue13-interpolate-100-prefix-tokens"),
    _case("ssl_mae.interpolate_pos_embed",
          lambda _: interpolate_pos_embed(_images(1, 17, 32), 2, num_prefix_tokens=-1),
          ValueError, "num_prefix_tokens", "interpolate-negative-prefix"),
    _case("ssl_mae.interpolate_pos_embed",
          lambda _: interpolate_pos_embed(_images(1, 17, 32).numpy(), 2),  # type: ignore[arg-type]
          TypeError, "pos_embed", "interpolate-numpy-array"),
    _case("ssl_mae.interpolate_pos_embed",
          lambda _: interpolate_pos_embed(_images(1, 17, 32), 2, old_grid=(2, 4)),
          ValueError, "old_grid", "interpolate-old-grid-mismatch"),
    _case("ssl_mae.interpolate_pos_embed",
          lambda _: interpolate_pos_embed(_images(1, 13, 32), 2),
          ValueError, "old_grid", "interpolate-non-square-without-old-grid"),
    _case("ssl_mae.interpolate_pos_embed",
          lambda _: interpolate_pos_embed(_long(1, 17, 32), 2),
          TypeError, "pos_embed", "interpolate-integer-table"),
    _case("ssl_mae.get_2d_sincos_pos_embed", lambda _: get_2d_sincos_pos_embed("64", 4),  # type: ignore[arg-type]
          TypeError, "embed_dim", "sincos-embed-dim-str"),
    _case("ssl_mae.get_2d_sincos_pos_embed", lambda _: get_2d_sincos_pos_embed(64, (0, 4)),
          ValueError, "grid_size", "sincos-grid-0"),
    _case("ssl_mae.get_2d_sincos_pos_embed",
          lambda _: get_2d_sincos_pos_embed(64, 4, num_prefix_tokens=-1),
          ValueError, "num_prefix_tokens", "sincos-negative-prefix"),
    # loss
    _case("ssl_mae.MAELoss", lambda _: MAELoss(norm_pix=True)(_images(2, 3, 1), _images(2, 3, 1)),
          ValueError, "norm_pix", "issue13-loss-norm-pix-one-pixel-patches"),
    _case("ssl_mae.MAELoss", lambda _: MAELoss(eps=INF),
          ValueError, "eps", "issue13-loss-eps-inf"),
    _case("ssl_mae.MAELoss", lambda _: MAELoss(eps=NAN), ValueError, "eps", "loss-eps-nan"),
    _case("ssl_mae.MAELoss", lambda _: MAELoss(eps=0.0), ValueError, "eps", "loss-eps-0"),
    _case("ssl_mae.MAELoss", lambda _: MAELoss(norm_pix=1),  # type: ignore[arg-type]
          TypeError, "norm_pix", "loss-norm-pix-int"),
    _case("ssl_mae.MAELoss", lambda _: MAELoss()(_images(2, 3, 0), _images(2, 3, 0)),
          ValueError, "pred", "loss-zero-width-patches"),
    _case("ssl_mae.MAELoss",
          lambda _: MAELoss()(_images(2, 3, 4), _images(2, 3, 4), torch.ones(2, 4)),
          ValueError, "mask", "loss-mask-shape"),
    _case("ssl_mae.MAELoss", lambda _: MAELoss()(_images(3, 4), _images(3, 4)),
          ValueError, "pred", "loss-wrong-rank"),
    _case("ssl_mae.loss.normalize_patches", lambda _: normalize_patches(_images(2, 3, 1)),
          ValueError, "patches", "normalize-patches-one-value"),
    # encoder
    _case("MaskedVisionTransformer.from_timm",
          lambda _: MaskedVisionTransformer.from_timm({"embed_dim": 30, "num_heads": 4}),
          ValueError, "name_or_kwargs", "issue13-from-timm-width-not-divisible-by-heads"),
    _case("MaskedVisionTransformer.from_timm",
          lambda _: MaskedVisionTransformer.from_timm({"embedding_dim": 64}),
          TypeError, "name_or_kwargs", "from-timm-unknown-argument"),
    _case("MaskedVisionTransformer.from_timm",
          lambda _: MaskedVisionTransformer.from_timm(42),  # type: ignore[arg-type]
          TypeError, "name_or_kwargs", "from-timm-int"),
    _case("MaskedVisionTransformer.from_timm",
          lambda _: MaskedVisionTransformer.from_timm("vit_not_a_model"),
          ValueError, "name_or_kwargs", "from-timm-unknown-name"),
    _case("ssl_mae.MaskedVisionTransformer",
          lambda _: MaskedVisionTransformer.from_timm(
              {"img_size": 16, "patch_size": 4, "embed_dim": 30, "num_heads": 3, "depth": 1}),
          ValueError, "pos_embed_initialization", "encoder-sincos-width-not-multiple-of-4"),
    _case("ssl_mae.MaskedVisionTransformer",
          lambda _: MaskedVisionTransformer(_timm_vit(), mask_token=nn.Parameter(_images(1, 1, 8))),
          ValueError, "mask_token", "encoder-mask-token-width"),
    _case("ssl_mae.MaskedVisionTransformer",
          lambda _: MaskedVisionTransformer(_timm_vit(), antialias="yes"),  # type: ignore[arg-type]
          TypeError, "antialias", "encoder-antialias-str"),
    _case("ssl_mae.MaskedVisionTransformer",
          lambda _: MaskedVisionTransformer(_timm_vit(), weight_initialization="xavier"),
          ValueError, "weight_initialization", "encoder-unknown-initialization"),
    _case("MaskedVisionTransformer.encode",
          lambda _: _mae().encoder.encode(_images(2, 1, 28, 28),
                                          idx_keep=_ints(2, 3, dtype=torch.uint8)),
          TypeError, "idx_keep", "issue13-encode-uint8-indices"),
    _case("MaskedVisionTransformer.encode",
          lambda _: _mae().encoder.encode(_images(2, 1, 28, 28, dtype=torch.float64)),
          TypeError, "images", "encode-float64"),
    _case("MaskedVisionTransformer.encode", lambda _: _mae().encoder.encode(_images(1, 28, 28)),
          ValueError, "images", "encode-wrong-rank"),
    _case("MaskedVisionTransformer.encode", lambda _: _mae().encoder.encode(_images(2, 3, 28, 28)),
          ValueError, "images", "encode-mismatched-channels"),
    _case("MaskedVisionTransformer.encode", lambda _: _mae().encoder.encode(_images(2, 1, 30, 30)),
          ValueError, "images", "encode-patch-does-not-divide"),
    _case("MaskedVisionTransformer.encode",
          lambda _: _mae().encoder.encode(_images(2, 1, 28, 28), idx_keep=_long(3, 4)),
          ValueError, "idx_keep", "encode-index-batch-mismatch"),
    _case("MaskedVisionTransformer.encode",
          lambda _: MaskedVisionTransformer(_timm_vit()).encode(
              _images(2, 3, 16, 16), idx_mask=_long(2, 2),
              mask=torch.zeros(2, 17, dtype=torch.bool)),
          ValueError, "idx_mask", "encode-idx-mask-and-mask"),
    _case("MaskedVisionTransformer.encode",
          lambda _: MaskedVisionTransformer(_timm_vit()).encode(
              _images(2, 3, 16, 16), mask=torch.zeros(2, 16, dtype=torch.bool)),
          ValueError, "mask", "encode-mask-shape"),
    # decoder
    _case("ssl_mae.MAEDecoder", lambda _: MAEDecoder(4, 4, embed_dim="64"),  # type: ignore[arg-type]
          TypeError, "embed_dim", "issue13-decoder-embed-dim-str"),
    _case("ssl_mae.MAEDecoder", lambda _: MAEDecoder(4, 4, mlp_ratio=-1),
          ValueError, "mlp_ratio", "issue13-decoder-mlp-ratio-negative"),
    _case("ssl_mae.MAEDecoder",
          lambda _: MAEDecoder(4, 4, decoder_embed_dim=30, decoder_num_heads=3),
          ValueError, "decoder_embed_dim", "issue13-decoder-width-30-heads-3"),
    _case("ssl_mae.MAEDecoder", lambda _: MAEDecoder(4, 4, decoder_depth=-1),
          ValueError, "decoder_depth", "issue13-decoder-depth-negative"),
    _case("ssl_mae.MAEDecoder", lambda _: MAEDecoder(4, 4, decoder_depth=2.0),  # type: ignore[arg-type]
          TypeError, "decoder_depth", "decoder-depth-float"),
    _case("ssl_mae.MAEDecoder", lambda _: MAEDecoder(4, 4, proj_drop_rate=1.0),
          ValueError, "proj_drop_rate", "decoder-dropout-1"),
    _case("ssl_mae.MAEDecoder", lambda _: MAEDecoder(4, 4, attn_drop_rate=NAN),
          ValueError, "attn_drop_rate", "decoder-attention-dropout-nan"),
    _case("ssl_mae.MAEDecoder",
          lambda _: MAEDecoder(4, 4, decoder_embed_dim=64, decoder_num_heads=4,
                               mask_token=nn.Parameter(_images(1, 1, 32))),
          ValueError, "mask_token", "decoder-mask-token-width"),
    _case("ssl_mae.MAEDecoder", lambda _: MAEDecoder(4, 4, num_prefix_tokens=-1),
          ValueError, "num_prefix_tokens", "decoder-negative-prefix"),
    _case("ssl_mae.MAEDecoder", lambda _: MAEDecoder(4, 4, pos_embed_resize="bilinear"),
          ValueError, "pos_embed_resize", "decoder-unknown-resize"),
    _case("ssl_mae.MAEDecoder", lambda _: MAEDecoder(4, 4, norm_layer="LayerNorm"),  # type: ignore[arg-type]
          TypeError, "norm_layer", "decoder-norm-layer-str"),
    _case("ssl_mae.MAEDecoder", lambda _: MAEDecoder(16, 4, grid_size=(3, 3)),
          ValueError, "grid_size", "decoder-grid-size-mismatch"),
    _case("ssl_mae.MAEDecoder", lambda _: MAEDecoder(4, 4, qkv_bias="no"),  # type: ignore[arg-type]
          TypeError, "qkv_bias", "decoder-qkv-bias-str"),
    _case("MAEDecoder.predict_masked",
          lambda _: _mae().decoder.predict_masked(_images(2, 13, 32), *_split()),
          ValueError, "x_encoded", "issue13-predict-masked-wrong-width"),
    _case("MAEDecoder.predict_masked",
          lambda _: _mae().decoder.predict_masked(_long(2, 13, 64), *_split()),
          TypeError, "x_encoded", "predict-masked-integer-tokens"),
    _case("MAEDecoder.predict_masked",
          lambda _: _mae().decoder.predict_masked(_images(2, 12, 64), *_split()),
          ValueError, "idx_keep", "predict-masked-count-mismatch"),
    _case("MAEDecoder.predict_masked",
          lambda _: _mae().decoder.predict_masked(
              _images(2, 13, 64), _split()[0], _split()[1].to(torch.int16)),
          TypeError, "idx_mask", "predict-masked-int16-indices"),
    _case("MAEDecoder.predict_all",
          lambda _: _mae().decoder.predict_all(_images(2, 13, 64), _duplicated_ids_restore()),
          ValueError, "ids_restore", "predict-all-ids-restore-not-a-permutation"),
    _case("MAEDecoder.predict_all",
          lambda _: _mae().decoder.predict_all(_images(2, 13, 48), _permutation(2, 49)),
          ValueError, "x_visible", "predict-all-wrong-width"),
    _case("MAEDecoder.predict_all",
          lambda _: _mae().decoder.predict_all(_images(2, 60, 64), _permutation(2, 49)),
          ValueError, "x_visible", "predict-all-more-tokens-than-patches"),
    _case("MAEDecoder.predict_all",
          lambda _: _mae().decoder.predict_all(_images(2, 13, 64), _permutation(2, 49).float()),
          TypeError, "ids_restore", "predict-all-float-ids-restore"),
    _case("MAEDecoder.predict_at",
          lambda _: _mae().decoder.predict_at(_images(2, 13, 64), _split()[0],
                                              _long(2, 3, value=50)),
          ValueError, "idx_decode", "predict-at-index-out-of-range"),
    _case("MAEDecoder.embed", lambda _: _mae().decoder.embed(_images(2, 13, 32)),
          ValueError, "input", "decoder-embed-wrong-width"),
    _case("MAEDecoder.decode", lambda _: _mae().decoder.decode(_images(2, 50, 32)),
          ValueError, "input", "decoder-decode-wrong-width"),
    # the core and the seed MAE
    _case("MAE.forward", lambda _: _mae()(_images(2, 1, 28, 28), generator=42),  # type: ignore[arg-type]
          TypeError, "generator", "issue13-mae-forward-generator-int"),
    _case("MAE.forward", lambda _: _mae()(_images(2, 1, 28, 28), noise=_nan_noise(2, 49)),
          ValueError, "noise", "mae-forward-nan-noise"),
    _case("MAE.forward", lambda _: _mae()(_images(2, 1, 28, 28), noise=_images(2, 50)),
          ValueError, "noise", "mae-forward-noise-shape"),
    _case("MAE.forward", lambda _: _mae()(_images(2, 1, 28, 28), noise=_images(49)),
          ValueError, "noise", "mae-forward-noise-wrong-rank"),
    _case("MAE.forward", lambda _: _mae()(_images(2, 1, 28, 28), mask_ratio=NAN),
          ValueError, "mask_ratio", "mae-forward-mask-ratio-nan"),
    _case("MAE.forward_decoder",
          lambda _: _mae().forward_decoder(_images(2, 13, 64), _duplicated_ids_restore()),
          ValueError, "ids_restore", "mae-forward-decoder-ids-restore-not-a-permutation"),
    _case("MAE.forward_loss",
          lambda _: _mae().forward_loss(_images(2, 1, 28, 28), _images(2, 49, 16),
                                        torch.ones(2, 48)),
          ValueError, "mask", "mae-forward-loss-mask-shape"),
    _case("ssl_mae.MaskedAutoencoder",
          lambda _: MaskedAutoencoder(_mae().encoder, _mae().decoder, mask_ratio=1.0),
          ValueError, "mask_ratio", "core-mask-ratio-1"),
    _case("ssl_mae.MaskedAutoencoder",
          lambda _: MaskedAutoencoder(nn.Linear(2, 2), _mae().decoder),
          TypeError, "encoder", "core-encoder-not-masked"),
    _case("ssl_mae.MaskedAutoencoder",
          lambda _: MaskedAutoencoder(_mae().encoder, _mae().decoder, decode_ratio=0.0),
          ValueError, "decode_ratio", "core-decode-ratio-0"),
    _case("ssl_mae.MaskedAutoencoder",
          lambda _: MaskedAutoencoder(_mae().encoder, _mae().decoder, loss=MAELoss),  # type: ignore[arg-type]
          TypeError, "loss", "core-loss-class-not-instance"),
    _case("MaskedAutoencoder.forward",
          lambda _: _mae().model(_images(2, 1, 28, 28), interpolate_pos_encoding="yes"),  # type: ignore[arg-type]
          TypeError, "interpolate_pos_encoding", "core-forward-flag-str"),
    _case("MaskedAutoencoder.forward",
          lambda _: _mae().model(_images(2, 1, 28, 28), decode_ratio=1.5),
          ValueError, "decode_ratio", "core-forward-decode-ratio-above-1"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(layer_norm_eps=-1),
          ValueError, "layer_norm_eps", "issue13-mae-layer-norm-eps-negative"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(layer_norm_eps=INF),
          ValueError, "layer_norm_eps", "mae-layer-norm-eps-inf"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(layer_norm_eps="1e-6"),
          TypeError, "layer_norm_eps", "mae-layer-norm-eps-str"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(lr=INF),
          ValueError, "lr", "issue13-mae-lr-inf"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(base_lr=NAN),
          ValueError, "base_lr", "issue13-mae-base-lr-nan"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(decoder_depth=-1),
          ValueError, "decoder_depth", "issue13-mae-decoder-depth-negative"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(weight_decay=-0.1),
          ValueError, "weight_decay", "mae-weight-decay-negative"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(min_lr="0"),
          TypeError, "min_lr", "mae-min-lr-str"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(betas=(0.9, 1.0)),
          ValueError, "betas", "mae-beta-1"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(betas=0.9),
          TypeError, "betas", "mae-betas-not-a-pair"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(betas=(0.9, NAN)),
          ValueError, "betas", "mae-beta-nan"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(warmup_epochs=INF),
          ValueError, "warmup_epochs", "mae-warmup-epochs-inf"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(warmup_steps=-1),
          ValueError, "warmup_steps", "mae-warmup-steps-negative"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(total_steps=0),
          ValueError, "total_steps", "mae-total-steps-0"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(norm_pix_loss="yes"),
          TypeError, "norm_pix_loss", "mae-norm-pix-loss-str"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(mlp_ratio=NAN),
          ValueError, "mlp_ratio", "mae-mlp-ratio-nan"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(embed_dim=30, num_heads=3),
          ValueError, "embed_dim", "mae-width-not-multiple-of-4"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(decoder_embed_dim=30, decoder_num_heads=3),
          ValueError, "decoder_embed_dim", "mae-decoder-width-not-multiple-of-4"),
    _case("MAE.load_official", lambda tmp: _mae().load_official(tmp),
          IsADirectoryError, "is a directory", "issue13-load-official-directory"),
    _case("MAE.load_official",
          lambda tmp: _mae().load_official(
              _checkpoint_file(tmp, _mae().to_official_state_dict(), truncate=True)),
          OSError, "checkpoint.pth", "load-official-truncated-file"),
    _case("MAE.load_official",
          lambda tmp: _mae().load_official(_checkpoint_file(tmp, [1, 2, 3])),
          TypeError, "checkpoint", "load-official-file-holds-a-list"),
    _case("MAE.load_official", lambda tmp: _mae().load_official(_fifo(tmp, "model.pth")),
          OSError, "not a regular file", "load-official-fifo"),
    _case("MAE.from_official", lambda tmp: MAE.from_official(tmp),
          IsADirectoryError, "is a directory", "from-official-directory"),
    _case("ssl_mae.convert.infer_official_architecture",
          lambda _: infer_official_architecture(
              {**_mae().to_official_state_dict(), "patch_embed.proj.weight": _images(64, 16)}),
          ValueError, "patch_embed.proj.weight", "infer-architecture-flat-patch-weight"),
    _case("ssl_mae.convert.infer_official_architecture",
          lambda _: infer_official_architecture(
              {**_mae().to_official_state_dict(), "pos_embed": _images(50, 64)}),
          ValueError, "pos_embed", "infer-architecture-2d-pos-embed"),
    # SimpleMAE and HiViT: errors name the façade's own arguments
    _case("ssl_mae.SimpleMAE", lambda _: SimpleMAE(_timm_vit(), decoder_dim=30),
          ValueError, "decoder_dim", "simple-mae-decoder-dim-not-multiple-of-4"),
    _case("ssl_mae.SimpleMAE", lambda _: SimpleMAE(_timm_vit(), 32, decoder_heads=0),
          ValueError, "decoder_heads", "simple-mae-decoder-heads-0"),
    _case("ssl_mae.SimpleMAE", lambda _: SimpleMAE(_timm_vit(), 32, masking_ratio=NAN),
          ValueError, "masking_ratio", "simple-mae-ratio-nan"),
    _case("SimpleMAE.forward", lambda _: _simple_mae()(_images(2, 3, 16, 16, dtype=torch.float64)),
          TypeError, "img", "simple-mae-forward-float64"),
    _case("SimpleMAE.forward", lambda _: _simple_mae()(_images(0, 3, 16, 16)),
          ValueError, "img", "simple-mae-forward-zero-size-batch"),
    _case("ssl_mae.HiViTMAEForPreTraining",
          lambda _: HiViTMAEForPreTraining(**{**_HIVIT_SMALL, "decoder_depth": -1}),
          ValueError, "decoder_depth", "issue13-hivit-decoder-depth-negative"),
    _case("ssl_mae.HiViTMAEForPreTraining",
          lambda _: HiViTMAEForPreTraining(**_HIVIT_SMALL, decoder_mlp_ratio=-1.0),
          ValueError, "decoder_mlp_ratio", "hivit-decoder-mlp-ratio-negative"),
    _case("ssl_mae.HiViTMAEForPreTraining",
          lambda _: HiViTMAEForPreTraining(**_HIVIT_SMALL, drop_path_rate="0.1"),  # type: ignore[arg-type]
          TypeError, "drop_path_rate", "hivit-drop-path-str"),
    _case("ssl_mae.HiViTMAEForPreTraining",
          lambda _: HiViTMAEForPreTraining(**_HIVIT_SMALL, layer_scale_init_value=NAN),
          ValueError, "layer_scale_init_value", "hivit-layer-scale-nan"),
    _case("ssl_mae.HiViTMAEForPreTraining",
          lambda _: HiViTMAEForPreTraining(**_HIVIT_SMALL, norm_pix_loss=1),  # type: ignore[arg-type]
          TypeError, "norm_pix_loss", "hivit-norm-pix-loss-int"),
    _case("ssl_mae.HiViTMAEForPreTraining",
          lambda _: HiViTMAEForPreTraining(**_HIVIT_SMALL, mask_ratio=1.0),
          ValueError, "mask_ratio", "hivit-mask-ratio-1"),
    _case("HiViTMAEForPreTraining.forward",
          lambda _: _hivit()(_images(2, 1, 32, 32, dtype=torch.float64)),
          TypeError, "images", "issue13-hivit-forward-float64"),
    _case("HiViTMAEForPreTraining.forward",
          lambda _: _hivit()(_images(2, 1, 32, 32), generator="seed"),  # type: ignore[arg-type]
          TypeError, "generator", "hivit-forward-generator-str"),
    _case("HiViTMAEForPreTraining.forward",
          lambda _: _hivit()(_images(2, 1, 32, 32), noise=_nan_noise(2, 4)),
          ValueError, "noise", "hivit-forward-nan-noise"),
    _case("HiViTMAEForPreTraining.forward", lambda _: _hivit()(_images(2, 3, 32, 32)),
          ValueError, "images", "hivit-forward-mismatched-channels"),
    # Hugging Face layout: hostile config.json, weights and index files
    _case("ViTMAEForPreTraining.from_pretrained",
          lambda tmp: ViTMAEForPreTraining.from_pretrained(
              _hf_dir_with_config(tmp, b'{"hidden_size": "\xff\xfe"}')),
          ValueError, "config.json", "issue13-from-pretrained-config-not-utf8"),
    _case("ViTMAEForPreTraining.from_pretrained",
          lambda tmp: ViTMAEForPreTraining.from_pretrained(
              _hf_config_with(tmp, layer_norm_eps="1e-12")),
          TypeError, "layer_norm_eps", "issue13-from-pretrained-layer-norm-eps-str"),
    _case("ViTMAEForPreTraining.from_pretrained",
          lambda tmp: ViTMAEForPreTraining.from_pretrained(_hf_dir_with_truncated_weights(tmp)),
          OSError, "model.safetensors", "issue13-from-pretrained-truncated-safetensors"),
    _case("ViTMAEForPreTraining.from_pretrained",
          lambda tmp: ViTMAEForPreTraining.from_pretrained(_hf_dir_with_bin(tmp, [1, 2])),
          ValueError, "pytorch_model.bin", "issue13-from-pretrained-bin-holds-a-list"),
    _case("ViTMAEForPreTraining.from_pretrained",
          lambda tmp: ViTMAEForPreTraining.from_pretrained(
              _hf_dir_with_index(tmp, "../elsewhere/x.safetensors")),
          ValueError, "../elsewhere/x.safetensors", "issue13-from-pretrained-shard-path-traversal"),
    _case("ViTMAEForPreTraining.from_pretrained",
          lambda tmp: ViTMAEForPreTraining.from_pretrained(
              _hf_dir_with_index(tmp, str(tmp / "elsewhere" / "x.safetensors"))),
          ValueError, "elsewhere", "issue13-from-pretrained-absolute-shard-path"),
    _case("ViTMAEForPreTraining.from_pretrained",
          lambda tmp: ViTMAEForPreTraining.from_pretrained(_hf_dir_with_index(tmp, None, "{")),
          ValueError, "model.safetensors.index.json", "from-pretrained-index-not-json"),
    _case("ViTMAEForPreTraining.from_pretrained",
          lambda tmp: ViTMAEForPreTraining.from_pretrained(
              _hf_dir_with_index(tmp, "model-00002-of-00002.safetensors")),
          FileNotFoundError, "model-00002-of-00002", "from-pretrained-missing-shard"),
    _case("ViTMAEForPreTraining.from_pretrained",
          lambda tmp: ViTMAEForPreTraining.from_pretrained(_hf_dir_with_config(tmp, b"[1, 2]")),
          ValueError, "config.json", "from-pretrained-config-is-a-list"),
    _case("ViTMAEForPreTraining.from_pretrained",
          lambda tmp: ViTMAEForPreTraining.from_pretrained(_hf_config_with(tmp, hidden_size=30)),
          ValueError, "hidden_size", "from-pretrained-config-hidden-size-30"),
    _case("ViTMAEForPreTraining.from_pretrained",
          lambda tmp: ViTMAEForPreTraining.from_pretrained(
              _hf_dir_with_bin(tmp, {"vit.embeddings.cls_token": "not a tensor"})),
          ValueError, "pytorch_model.bin", "from-pretrained-bin-holds-strings"),
    _case("ssl_mae.hf.ViTMAEConfig", lambda _: ViTMAEConfig(layer_norm_eps=-1.0),
          ValueError, "layer_norm_eps", "hf-config-layer-norm-eps-negative"),
    _case("ssl_mae.hf.ViTMAEConfig", lambda _: ViTMAEConfig(hidden_dropout_prob=NAN),
          ValueError, "hidden_dropout_prob", "hf-config-dropout-nan"),
    _case("ssl_mae.hf.ViTMAEConfig",
          lambda _: ViTMAEConfig(hidden_size=30, num_attention_heads=3),
          ValueError, "hidden_size", "hf-config-width-not-multiple-of-4"),
    _case("ssl_mae.hf.ViTMAEConfig", lambda _: ViTMAEConfig(qkv_bias="true"),  # type: ignore[arg-type]
          TypeError, "qkv_bias", "hf-config-qkv-bias-str"),
    _case("ssl_mae.hf.ViTMAEConfig", lambda _: ViTMAEConfig(initializer_range=INF),
          ValueError, "initializer_range", "hf-config-initializer-range-inf"),
    _case("ViTMAEConfig.from_pretrained",
          lambda tmp: ViTMAEConfig.from_pretrained(_hf_dir_with_config(tmp, b"\xff\xfe{}")),
          ValueError, "config.json", "hf-config-file-not-utf8"),
    _case("ViTMAEForPreTraining.forward",
          lambda _: _hf()(_images(2, 3, 16, 16), noise=_nan_noise(2, 16)),
          ValueError, "noise", "hf-forward-nan-noise"),
    _case("ViTMAEForPreTraining.forward",
          lambda _: _hf()(_images(2, 3, 16, 16), output_hidden_states="yes"),  # type: ignore[arg-type]
          TypeError, "output_hidden_states", "hf-forward-flag-str"),
    # transforms
    _case("ssl_mae.MAETransform",
          lambda _: MAETransform(normalize={"mean": [NAN], "std": [1.0]}),
          ValueError, "normalize", "issue13-transform-nan-mean"),
    _case("ssl_mae.MAETransform",
          lambda _: MAETransform(normalize={"mean": [0.5], "std": [INF]}),
          ValueError, "normalize", "issue13-transform-inf-std"),
    _case("ssl_mae.MAETransform",
          lambda _: MAETransform(normalize={"mean": ["0.5"], "std": [1.0]}),
          TypeError, "normalize", "transform-mean-str"),
    _case("ssl_mae.MAETransform",
          lambda _: MAETransform(8, normalize=None)(_images(1, 16, 16) * 255),
          ValueError, "image", "transform-float-image-in-0-255"),
    _case("ssl_mae.MAETransform",
          lambda _: MAETransform(8, normalize=None)(torch.full((1, 16, 16), NAN)),
          ValueError, "image", "transform-nan-image"),
    _case("ssl_mae.MAETransform",
          lambda _: MAETransform(8, normalize=None)(_images(3, 0, 16)),
          ValueError, "image", "transform-empty-tensor"),
    _case("ssl_mae.MAETransform",
          lambda _: MAETransform(8, normalize=None)(Image.new("RGB", (0, 0))),
          ValueError, "image", "transform-empty-pil-image"),
    _case("ssl_mae.BatchedMAEAugment",
          lambda _: BatchedMAEAugment(8, normalize={"mean": [0.5], "std": [INF]}),
          ValueError, "normalize", "augment-inf-std"),
    _case("ssl_mae.BatchedMAEAugment", lambda _: BatchedMAEAugment(8, hflip_prob=NAN),
          ValueError, "hflip_prob", "augment-flip-probability-nan"),
    _case("ssl_mae.BatchedMAEAugment",
          lambda _: BatchedMAEAugment(8, normalize=None)(_images(2, 1, 16, 16) - 0.5),
          ValueError, "images", "augment-normalised-float-images"),
    _case("ssl_mae.BatchedMAEAugment",
          lambda _: BatchedMAEAugment(8)(_images(2, 3, 16, 16), generator=1),  # type: ignore[arg-type]
          TypeError, "generator", "augment-generator-int"),
    _case("BatchedMAEAugment.sample_params",
          lambda _: BatchedMAEAugment(8).sample_params(2, 16, 16, device="nowhere"),
          ValueError, "device", "augment-sample-params-unknown-device"),
    _case("BatchedMAEAugment.sample_params",
          lambda _: BatchedMAEAugment(8).sample_params(2, 16.0, 16),  # type: ignore[arg-type]
          TypeError, "height", "augment-sample-params-float-height"),
    # data
    _case("ssl_mae.data.normalize_images",
          lambda _: normalize_images(torch.zeros(2, 1, 8, 8, dtype=torch.uint8),
                                     {"mean": [0.5] * 3, "std": [0.5] * 3}, (8, 8)),
          ValueError, "normalize", "normalize-images-mismatched-channels"),
    _case("ssl_mae.data.normalize_images",
          lambda _: normalize_images(torch.zeros(2, 1, 8, 8, dtype=torch.int16), None, (8, 8)),
          TypeError, "images", "normalize-images-int16"),
    _case("ssl_mae.data.normalize_images",
          lambda _: normalize_images(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), None, (0, 8)),
          ValueError, "size", "normalize-images-size-0"),
    _case("ssl_mae.data.normalize_images",
          lambda _: normalize_images(torch.zeros(2, 1, 8, 8, dtype=torch.uint8),
                                     {"mean": [NAN], "std": [1.0]}, (8, 8)),
          ValueError, "normalize", "normalize-images-nan-mean"),
    _case("ssl_mae.data.GPUResidentLoader",
          lambda _: GPUResidentLoader(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), 2,
                                      shuffle="yes"),  # type: ignore[arg-type]
          TypeError, "shuffle", "gpu-loader-shuffle-str"),
    _case("ssl_mae.data.GPUResidentLoader",
          lambda _: GPUResidentLoader(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), 8),
          ValueError, "batch_size", "gpu-loader-batch-larger-than-data"),
    _case("ssl_mae.data.GPUResidentLoader",
          lambda _: GPUResidentLoader(torch.zeros(4, 1, 8, 8), 2),
          ValueError, "images", "gpu-loader-float-images"),
    _case("ssl_mae.data.GPUResidentLoader",
          lambda _: GPUResidentLoader(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), 2,
                                      device="nowhere"),
          ValueError, "device", "gpu-loader-unknown-device"),
    _case("ssl_mae.data.TensorImageDataset",
          lambda _: TensorImageDataset(torch.zeros(3, 1, 8, 8, dtype=torch.uint8),
                                       torch.zeros(3)),
          ValueError, "labels", "tensor-dataset-float-labels"),
    _case("ssl_mae.data.read_idx", lambda tmp: read_idx(_idx_file(tmp)),
          ValueError, "train-images-idx3-ubyte", "read-idx-truncated-payload"),
    _case("ssl_mae.convert.unwrap_checkpoint",
          lambda tmp: unwrap_checkpoint(_fifo(tmp, "weights.pth")),
          OSError, "not a regular file", "unwrap-checkpoint-fifo"),
    _case("ssl_mae.convert.unwrap_checkpoint",
          lambda tmp: unwrap_checkpoint(_checkpoint_file(tmp, {"w": torch.zeros(100)}, True)),
          OSError, "checkpoint.pth", "unwrap-checkpoint-truncated"),
    # evaluation
    _case("ssl_mae.evaluation.topk_accuracy",
          lambda _: topk_accuracy(_images(3, 2), torch.tensor([0, 1, 0]), ()),
          TypeError, "topk", "issue13-topk-empty"),
    _case("ssl_mae.evaluation.topk_accuracy",
          lambda _: topk_accuracy(_images(3, 2), torch.tensor([0, 1, 0]), 5),  # type: ignore[arg-type]
          TypeError, "topk", "topk-int"),
    _case("ssl_mae.evaluation.topk_accuracy",
          lambda _: topk_accuracy(_images(3, 2), torch.tensor([0, 1, 0]), (0,)),
          ValueError, "topk", "topk-0"),
    _case("ssl_mae.evaluation.topk_accuracy",
          lambda _: topk_accuracy(torch.full((3, 2), NAN), torch.tensor([0, 1, 0])),
          ValueError, "scores", "topk-nan-scores"),
    _case("ssl_mae.evaluation.topk_accuracy",
          lambda _: topk_accuracy(_images(3, 2), torch.tensor([0, 2, 0])),
          ValueError, "labels", "topk-label-out-of-range"),
    _case("ssl_mae.evaluation.train_linear_probe", lambda _: _probe(batch_size=1),
          ValueError, "batch_size", "issue13-linear-probe-batch-size-1"),
    _case("ssl_mae.evaluation.train_linear_probe",
          lambda _: train_linear_probe(_features(1), _labels(1), _features(4), _labels(4), 2,
                                       epochs=1, warmup_epochs=0),
          ValueError, "train_features", "linear-probe-one-sample"),
    _case("ssl_mae.evaluation.train_linear_probe", lambda _: _probe(momentum=NAN),
          ValueError, "momentum", "linear-probe-momentum-nan"),
    _case("ssl_mae.evaluation.train_linear_probe", lambda _: _probe(lr=INF),
          ValueError, "lr", "linear-probe-lr-inf"),
    _case("ssl_mae.evaluation.train_linear_probe", lambda _: _probe(optimizer="adam"),
          ValueError, "optimizer", "linear-probe-unknown-optimizer"),
    _case("ssl_mae.evaluation.train_linear_probe",
          lambda _: train_linear_probe(_features(bad=NAN), _labels(), _features(4), _labels(4), 2),
          ValueError, "train_features", "linear-probe-nan-features"),
    _case("ssl_mae.evaluation.knn_accuracy",
          lambda _: knn_accuracy(_features(bad=NAN), _labels(), _features(4), _labels(4), 2),
          ValueError, "train_features", "issue13-knn-nan-in-bank"),
    _case("ssl_mae.evaluation.knn_accuracy",
          lambda _: knn_accuracy(_features(), _labels(), _features(4, bad=INF), _labels(4), 2),
          ValueError, "test_features", "knn-inf-query"),
    _case("ssl_mae.evaluation.knn_accuracy",
          lambda _: knn_accuracy(_features(), _labels(), _features(4), _labels(4), 2,
                                 temperature=NAN),
          ValueError, "temperature", "knn-temperature-nan"),
    _case("ssl_mae.evaluation.knn_accuracy",
          lambda _: knn_accuracy(_features(), _labels(classes=3), _features(4), _labels(4), 2),
          ValueError, "train_labels", "knn-label-out-of-range"),
    _case("ssl_mae.evaluation.knn_accuracy",
          lambda _: knn_accuracy(_features(), _labels(), _features(4), _labels(4), 2,
                                 device="nowhere"),
          ValueError, "device", "knn-unknown-device"),
    _case("ssl_mae.evaluation.knn_predict",
          lambda _: knn_predict(_features(), _labels(), _features(4), 2, chunk_size=0),
          ValueError, "chunk_size", "knn-chunk-size-0"),
    _case("ssl_mae.evaluation.knn_predict",
          lambda _: knn_predict(_features(0), _labels(0), _features(4), 2),
          ValueError, "train_features", "knn-empty-bank"),
    _case("ssl_mae.evaluation.LARS", lambda _: LARS(nn.Linear(2, 2).parameters(), lr=NAN),
          ValueError, "lr", "lars-lr-nan"),
    _case("ssl_mae.evaluation.LARS",
          lambda _: LARS(nn.Linear(2, 2).parameters(), trust_coefficient=NAN),
          ValueError, "trust_coefficient", "lars-trust-nan"),
    _case("ssl_mae.evaluation.extract_features",
          lambda _: extract_features(_mae().encoder, _labelled(torch.tensor([0.0, 1.0]))),
          TypeError, "labels", "extract-features-float-labels"),
    _case("ssl_mae.evaluation.extract_features",
          lambda _: extract_features(lambda x: x, _labelled(torch.tensor([0, 1]))),  # type: ignore[arg-type]
          TypeError, "encoder", "extract-features-function-encoder"),
    _case("ssl_mae.evaluation.extract_features",
          lambda _: extract_features(_mae().encoder, _labelled(torch.tensor([0, 1])), amp="yes"),  # type: ignore[arg-type]
          TypeError, "amp", "extract-features-amp-str"),
    _case("ssl_mae.evaluation.evaluate_classifier",
          lambda _: evaluate_classifier(_classifier(), _FloatDataset([0, 1, 3])),
          ValueError, "labels", "evaluate-classifier-label-out-of-range"),
    _case("ssl_mae.evaluation.finetune",
          lambda _: finetune(_classifier(), _FloatDataset([0, 5]), _FloatDataset([0, 1]), 3,
                             epochs=1, warmup_epochs=0, drop_path_rate=0.0),
          ValueError, "labels", "finetune-label-out-of-range"),
    _case("ssl_mae.evaluation.finetune",
          lambda _: finetune(_classifier(), _FloatDataset([0, 1]), _FloatDataset([0, 1]), 3,
                             betas=(0.9, NAN)),
          ValueError, "betas", "finetune-beta-nan"),
    _case("ssl_mae.evaluation.finetune",
          lambda _: finetune(_classifier(), _FloatDataset([0, 1]), _FloatDataset([0, 1]), 3,
                             label_smoothing=1.0),
          ValueError, "label_smoothing", "finetune-label-smoothing-1"),
    _case("ssl_mae.evaluation.set_drop_path", lambda _: set_drop_path(_timm_vit(), NAN),
          ValueError, "drop_path_rate", "set-drop-path-nan"),
    _case("ssl_mae.evaluation.param_groups_layer_decay",
          lambda _: param_groups_layer_decay(_timm_vit(), layer_decay=1.5),
          ValueError, "layer_decay", "layer-decay-above-1"),
    # training plumbing
    _case("ssl_mae.training.PretrainModule",
          lambda _: PretrainModule(_simple_mae(), lr=NAN),
          ValueError, "lr", "pretrain-module-lr-nan"),
    _case("ssl_mae.training.PretrainModule",
          lambda _: PretrainModule(_simple_mae(), fused_adamw="yes"),
          TypeError, "fused_adamw", "pretrain-module-fused-str"),
    _case("ssl_mae.training.optim.warmup_cosine",
          lambda _: warmup_cosine(3, 10, 2, base_lr=NAN),
          ValueError, "base_lr", "warmup-cosine-base-lr-nan"),
    _case("ssl_mae.training.optim.warmup_cosine", lambda _: warmup_cosine(NAN, 10, 2, 1.0),
          ValueError, "step", "warmup-cosine-step-nan"),
    _case("ssl_mae.training.optim.warmup_cosine", lambda _: warmup_cosine(3, 10, 11, 1.0),
          ValueError, "warmup_steps", "warmup-cosine-warmup-longer-than-run"),
    _case("ssl_mae.training.optim.build_adamw",
          lambda _: build_adamw([{"params": list(nn.Linear(2, 2).parameters())}], 1e-3,
                                betas=(0.9, NAN)),
          ValueError, "betas", "build-adamw-beta-nan"),
    _case("ssl_mae.training.optim.scaled_lr", lambda _: scaled_lr(INF, 256),
          ValueError, "base_lr", "scaled-lr-inf"),
    # visualisation and FLOPs
    _case("ssl_mae.visualize.reconstruct",
          lambda _: reconstruct(_mae(), _images(2, 1, 28, 28), generator=3),  # type: ignore[arg-type]
          TypeError, "generator", "reconstruct-generator-int"),
    _case("ssl_mae.visualize.reconstruct",
          lambda _: reconstruct(nn.Linear(2, 2), _images(2, 1, 28, 28)),
          TypeError, "model", "reconstruct-not-an-mae"),
    _case("ssl_mae.visualize.denormalize",
          lambda _: denormalize(_images(1, 1, 4, 4), {"mean": [NAN], "std": [1.0]}),
          ValueError, "normalize", "denormalize-nan-mean"),
    _case("ssl_mae.visualize.save_reconstruction_grid",
          lambda tmp: save_reconstruction_grid(reconstruct(_mae(), _images(1, 1, 28, 28)),
                                               tmp / "grid.png", dpi=0),
          ValueError, "dpi", "reconstruction-grid-dpi-0"),
    _case("ssl_mae.flops.mae_flops", lambda _: mae_flops(mlp_ratio=INF),
          ValueError, "mlp_ratio", "flops-mlp-ratio-inf"),
    _case("ssl_mae.flops.mae_flops", lambda _: mae_flops(mlp_ratio="4"),  # type: ignore[arg-type]
          TypeError, "mlp_ratio", "flops-mlp-ratio-str"),
    _case("ssl_mae.flops.flops_per_image", lambda _: flops_per_image(training="yes"),  # type: ignore[arg-type]
          TypeError, "training", "flops-training-str"),
]  # fmt: skip


def _documented_as(error: type[Exception], names: set[str]) -> bool:
    """Whether ``docs/errors.md`` lists ``error`` or one of its base classes (``OSError`` covers
    ``IsADirectoryError``)."""
    bases = [getattr(builtins, name, None) for name in names]
    return any(isinstance(base, type) and issubclass(error, base) for base in bases)


@pytest.mark.parametrize(("entry", "call", "error", "argument"), ERROR_CASES)
def test_bad_input_raises_a_documented_error_naming_the_argument(
    entry: str, call: Call, error: type[Exception], argument: str, tmp_path: Path
) -> None:
    documented = _documented_errors().get(entry)
    assert documented, f"docs/errors.md has no row for `{entry}`"
    assert _documented_as(error, documented), (
        f"docs/errors.md does not list {error.__name__} (or a base class) for {entry}"
    )
    with pytest.raises(Exception) as info:  # the type is checked below, with a clearer message
        call(tmp_path)
    assert isinstance(info.value, error), (
        f"{entry} raised {type(info.value).__name__}: {info.value}"
    )
    assert argument in str(info.value), f"message does not name {argument!r}: {info.value}"
