"""Bad input table: malformed input to every public entry point and to the ``ssl-mae`` CLI.

Each Python case must raise the exception type that ``docs/errors.md`` documents for its entry
point, with a message that names the argument. Each CLI case must exit with status 2 and one line
``ssl-mae: error: ...`` on stderr that names the option, without a traceback.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from timm.models.vision_transformer import VisionTransformer
from torch import nn

import ssl_mae
from ssl_mae import masking
from ssl_mae.data import ImageFolderDataset, TensorImageDataset, build_dataset
from ssl_mae.evaluation import extract_features, knn_accuracy
from ssl_mae.hf import ViTMAEConfig, ViTMAEForPreTraining
from ssl_mae.loss import MAELoss
from ssl_mae.models import MAE, SimpleMAE, mae_vit_micro_patch4
from ssl_mae.modules import MAEDecoder, MaskedVisionTransformer
from ssl_mae.pos_embed import get_2d_sincos_pos_embed, interpolate_pos_embed
from ssl_mae.training import ResumableDataLoader
from ssl_mae.transforms import BatchedMAEAugment, MAETransform

from .conftest import ERRORS_PAGE, assert_one_line_error, run_cli


# --- tiny models, built once -------------------------------------------------------------------
@functools.cache
def _mae() -> MAE:
    """28x28 grayscale, patch 4: 49 patches + class token."""
    torch.manual_seed(0)
    return mae_vit_micro_patch4()


_HF_SMALL = dict(
    image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=1,
    num_attention_heads=2, intermediate_size=64, decoder_hidden_size=32,
    decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=64,
)  # fmt: skip


@functools.cache
def _hf() -> ViTMAEForPreTraining:
    torch.manual_seed(0)
    return ViTMAEForPreTraining(ViTMAEConfig(**_HF_SMALL))  # type: ignore[arg-type]


def _timm_vit() -> VisionTransformer:
    return VisionTransformer(
        img_size=16, patch_size=4, in_chans=3, embed_dim=32, depth=1, num_heads=2, num_classes=0
    )


@functools.cache
def _simple_mae() -> SimpleMAE:
    torch.manual_seed(0)
    return SimpleMAE(_timm_vit(), decoder_dim=32)


def _images(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(*shape).to(dtype)


def _long(*shape: int, value: int = 0) -> torch.Tensor:
    return torch.full(shape, value, dtype=torch.long)


def _different_official_weights() -> dict[str, torch.Tensor]:
    """The official-layout weights of another architecture (width 32 instead of 64)."""
    return mae_vit_micro_patch4(embed_dim=32, num_heads=2).to_official_state_dict()


def _hf_dir_with_wrong_weights(tmp_path: Path) -> Path:
    """A save_pretrained folder whose config.json describes another model than its weights."""
    other = ViTMAEForPreTraining(ViTMAEConfig(**{**_HF_SMALL, "hidden_size": 64}))  # type: ignore[arg-type]
    other.save_pretrained(tmp_path / "hf")
    ViTMAEConfig(**_HF_SMALL).save_pretrained(tmp_path / "hf")  # type: ignore[arg-type]
    return tmp_path / "hf"


def _folder_with(tmp_path: Path, files: dict[str, bytes]) -> Path:
    root = tmp_path / "folder"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    root.mkdir(exist_ok=True)
    return root


# --- the Python API table ----------------------------------------------------------------------
# (entry point as written in docs/errors.md, call taking tmp_path, exception type, argument name)
Call = Callable[[Path], Any]


def _case(
    entry: str, call: Call, error: type[Exception], argument: str, id: str, *marks: Any
) -> Any:
    return pytest.param(entry, call, error, argument, id=id, marks=marks)


API_CASES = [
    # masking: ranks, dtypes, ratios, indices
    _case("ssl_mae.patchify", lambda _: ssl_mae.patchify(_images(1, 28, 28), 4),
          ValueError, "images", "patchify-wrong-rank"),
    _case("ssl_mae.patchify", lambda _: ssl_mae.patchify(_images(1, 1, 30, 30), 4),
          ValueError, "patch_size", "patchify-patch-does-not-divide"),
    _case("ssl_mae.patchify", lambda _: ssl_mae.patchify(_images(1, 1, 8, 8), 4.0),  # type: ignore[arg-type]
          TypeError, "patch_size", "patchify-float-patch-size"),
    _case("ssl_mae.patchify", lambda _: ssl_mae.patchify(_images(1, 1, 8, 8).numpy(), 4),  # type: ignore[arg-type]
          TypeError, "images", "patchify-numpy-array"),
    _case("ssl_mae.unpatchify", lambda _: ssl_mae.unpatchify(_images(1, 49, 16), 4, channels=3),
          ValueError, "patches", "unpatchify-mismatched-channels"),
    _case("ssl_mae.random_token_mask", lambda _: ssl_mae.random_token_mask((2, 50), 1.5),
          ValueError, "mask_ratio", "token-mask-ratio-above-1"),
    _case("ssl_mae.random_token_mask", lambda _: ssl_mae.random_token_mask((2, 50), -0.1),
          ValueError, "mask_ratio", "token-mask-ratio-negative"),
    _case("ssl_mae.random_token_mask", lambda _: ssl_mae.random_token_mask((2, 50), float("nan")),
          ValueError, "mask_ratio", "token-mask-ratio-nan"),
    _case("ssl_mae.random_token_mask", lambda _: ssl_mae.random_token_mask((2, 50), "0.5"),  # type: ignore[arg-type]
          TypeError, "mask_ratio", "token-mask-ratio-str"),
    _case("ssl_mae.random_token_mask", lambda _: ssl_mae.random_token_mask((2.0, 50)),  # type: ignore[arg-type]
          TypeError, "size", "token-mask-float-size"),
    _case("ssl_mae.random_token_mask",
          lambda _: ssl_mae.random_token_mask((2, 50), noise=_long(2, 49)),
          TypeError, "noise", "token-mask-integer-noise"),
    _case("ssl_mae.random_masking", lambda _: ssl_mae.random_masking(_images(2, 49, 8), 1.5),
          ValueError, "mask_ratio", "random-masking-ratio-above-1"),
    _case("ssl_mae.random_masking", lambda _: ssl_mae.random_masking(_images(49, 8), 0.5),
          ValueError, "x", "random-masking-wrong-rank"),
    _case("ssl_mae.get_at_index",
          lambda _: ssl_mae.get_at_index(_images(2, 5, 3), torch.zeros(2, 2)),
          TypeError, "index", "get-at-index-float-indices"),
    _case("ssl_mae.get_at_index",
          lambda _: ssl_mae.get_at_index(_images(2, 5, 3), _long(2, 2, value=5)),
          ValueError, "index", "get-at-index-out-of-range"),
    _case("ssl_mae.set_at_index",
          lambda _: ssl_mae.set_at_index(_images(2, 5, 3), _long(2, 2), _images(2, 3, 3)),
          ValueError, "value", "set-at-index-value-shape"),
    _case("ssl_mae.mask_at_index",
          lambda _: ssl_mae.mask_at_index(_images(2, 5, 3), _long(2, 2), _images(1, 1, 4)),
          ValueError, "mask_token", "mask-at-index-token-width"),
    _case("ssl_mae.prepend_class_token",
          lambda _: ssl_mae.prepend_class_token(_images(2, 5, 3), _images(1, 1, 4)),
          ValueError, "class_token", "prepend-class-token-width"),
    _case("ssl_mae.repeat_token", lambda _: masking.repeat_token(_images(1, 1, 3), (2.5, 3)),  # type: ignore[arg-type]
          TypeError, "size", "repeat-token-float-size"),
    # position embeddings
    _case("ssl_mae.get_2d_sincos_pos_embed", lambda _: get_2d_sincos_pos_embed(30, 4),
          ValueError, "embed_dim", "sincos-embed-dim-not-multiple-of-4"),
    _case("ssl_mae.interpolate_pos_embed",
          lambda _: interpolate_pos_embed(_images(1, 17, 32), 0),
          ValueError, "new_grid", "interpolate-grid-0"),
    # loss
    _case("ssl_mae.MAELoss", lambda _: MAELoss()(_images(2, 3, 4), _images(2, 3, 5)),
          ValueError, "pred", "loss-shape-mismatch"),
    _case("ssl_mae.MAELoss", lambda _: MAELoss()(_long(2, 3, 4), _images(2, 3, 4)),
          TypeError, "pred", "loss-integer-pred"),
    _case("ssl_mae.MAELoss", lambda _: MAELoss(norm_pix="yes"),  # type: ignore[arg-type]
          TypeError, "norm_pix", "loss-norm-pix-str"),
    _case("ssl_mae.MAELoss", lambda _: MAELoss(eps="1e-6"),  # type: ignore[arg-type]
          TypeError, "eps", "loss-eps-str"),
    # encoder / decoder blocks
    _case("MaskedVisionTransformer.encode",
          lambda _: _mae().encoder.encode(_images(2, 1, 28, 28), idx_keep=torch.zeros(2, 3)),
          TypeError, "idx_keep", "encode-float-indices"),
    _case("MaskedVisionTransformer.encode",
          lambda _: _mae().encoder.encode(_images(2, 1, 28, 28), idx_keep=_long(2, 3, value=99)),
          ValueError, "idx_keep", "encode-index-out-of-range"),
    _case("MaskedVisionTransformer.encode",
          lambda _: _mae().encoder.encode(_images(2, 1, 28, 28, dtype=torch.uint8)),
          TypeError, "images", "encode-uint8-images"),
    _case("ssl_mae.MaskedVisionTransformer", lambda _: MaskedVisionTransformer(nn.Linear(2, 2)),
          TypeError, "vit", "encoder-not-a-vit"),
    _case("ssl_mae.MAEDecoder",
          lambda _: MAEDecoder(num_patches=4, patch_size=4, decoder_embed_dim=30,
                               decoder_num_heads=4),
          ValueError, "decoder_embed_dim", "decoder-width-not-divisible-by-heads"),
    _case("MAEDecoder.predict_masked",
          lambda _: _mae().decoder.predict_masked(_images(2, 13, 64), _long(2, 13), _long(2, 10)),
          ValueError, "idx_mask", "predict-masked-indices-do-not-cover"),
    # the seed MAE: constructor (wrong config types) and forward
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(img_size=30),
          ValueError, "img_size", "mae-patch-does-not-divide-img-size"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(img_size="28"),
          TypeError, "img_size", "mae-img-size-str"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(mask_ratio=1.0),
          ValueError, "mask_ratio", "mae-mask-ratio-1"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(learning_rate=1e-3),
          TypeError, "learning_rate", "mae-unknown-option"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(in_chans="1"),
          TypeError, "in_chans", "mae-in-chans-str"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(embed_dim=64.0),
          TypeError, "embed_dim", "mae-embed-dim-float"),
    _case("ssl_mae.MAE", lambda _: mae_vit_micro_patch4(mlp_ratio="4"),
          TypeError, "mlp_ratio", "mae-mlp-ratio-str"),
    _case("MAE.forward", lambda _: _mae()(_images(2, 1, 32, 32)),
          ValueError, "imgs", "mae-forward-other-image-size"),
    _case("MAE.forward", lambda _: _mae()(_images(2, 1, 28, 28), mask_ratio=1.0),
          ValueError, "mask_ratio", "mae-forward-mask-ratio-1"),
    _case("MAE.forward", lambda _: _mae()(_images(2, 1, 28, 28), mask_ratio=-0.25),
          ValueError, "mask_ratio", "mae-forward-mask-ratio-negative"),
    _case("MAE.forward", lambda _: _mae()(_images(1, 28, 28)),
          ValueError, "imgs", "mae-forward-wrong-rank"),
    _case("MAE.forward", lambda _: _mae()(_images(2, 3, 28, 28)),
          ValueError, "imgs", "mae-forward-mismatched-channels"),
    _case("MAE.forward", lambda _: _mae()(_images(2, 1, 28, 28, dtype=torch.float64)),
          TypeError, "imgs", "mae-forward-float64"),
    _case("MAE.forward", lambda _: _mae()(_images(0, 1, 28, 28)),
          ValueError, "imgs", "mae-forward-zero-size-batch"),
    _case("MAE.training_step", lambda _: _mae().training_step("images", 0),
          TypeError, "batch", "mae-training-step-bad-batch"),
    _case("MAE.load_official", lambda _: _mae().load_official(_different_official_weights()),
          ValueError, "checkpoint", "mae-load-official-different-model"),
    _case("MAE.load_official", lambda _: _mae().load_official(_hf().state_dict()),
          ValueError, "checkpoint", "mae-load-official-hf-layout"),
    # SimpleMAE
    _case("ssl_mae.SimpleMAE", lambda _: SimpleMAE(_timm_vit(), 32, masking_ratio=1.0),
          ValueError, "masking_ratio", "simple-mae-ratio-1"),
    _case("ssl_mae.SimpleMAE", lambda _: SimpleMAE(nn.Linear(2, 2), 32),
          TypeError, "encoder", "simple-mae-not-a-vit"),
    _case("SimpleMAE.forward", lambda _: _simple_mae()(_images(2, 3, 20, 20)),
          ValueError, "img", "simple-mae-other-image-size"),
    _case("SimpleMAE.forward", lambda _: _simple_mae()(_images(2, 1, 16, 16)),
          ValueError, "img", "simple-mae-mismatched-channels"),
    # Hugging Face style models
    _case("ssl_mae.hf.ViTMAEConfig", lambda _: ViTMAEConfig(mask_ratio=1.0),
          ValueError, "mask_ratio", "hf-config-mask-ratio-1"),
    _case("ssl_mae.hf.ViTMAEConfig", lambda _: ViTMAEConfig(image_size=30, patch_size=16),
          ValueError, "image_size", "hf-config-patch-does-not-divide"),
    _case("ssl_mae.hf.ViTMAEConfig", lambda _: ViTMAEConfig(hidden_size="768"),  # type: ignore[arg-type]
          TypeError, "hidden_size", "hf-config-str-width"),
    _case("ssl_mae.hf.ViTMAEForPreTraining", lambda _: ViTMAEForPreTraining({"hidden_size": 32}),  # type: ignore[arg-type]
          TypeError, "config", "hf-model-dict-config"),
    _case("ViTMAEForPreTraining.forward", lambda _: _hf()(_images(2, 3, 20, 20)),
          ValueError, "pixel_values", "hf-forward-other-size"),
    _case("ViTMAEForPreTraining.forward", lambda _: _hf()(_long(2, 3, 16, 16)),
          TypeError, "pixel_values", "hf-forward-integer-pixels"),
    _case("ViTMAEForPreTraining.forward",
          lambda _: _hf()(_images(2, 3, 16, 16), noise=_images(2, 15)),
          ValueError, "noise", "hf-forward-noise-shape"),
    _case("ViTMAEForPreTraining.forward", lambda _: _hf()(_images(2, 1, 16, 16)),
          ValueError, "pixel_values", "hf-forward-mismatched-channels"),
    _case("ViTMAEForPreTraining.forward",
          lambda _: _hf()(_images(2, 3, 16, 16, dtype=torch.float64)),
          TypeError, "pixel_values", "hf-forward-float64"),
    _case("ViTMAEForPreTraining.forward", lambda _: _hf()(_images(0, 3, 16, 16)),
          ValueError, "pixel_values", "hf-forward-zero-size-batch"),
    _case("ViTMAEForPreTraining.from_pretrained",
          lambda tmp: ViTMAEForPreTraining.from_pretrained(tmp),
          FileNotFoundError, "config.json", "hf-from-pretrained-empty-folder"),
    _case("ViTMAEForPreTraining.from_pretrained",
          lambda tmp: ViTMAEForPreTraining.from_pretrained(_hf_dir_with_wrong_weights(tmp)),
          ValueError, "checkpoint", "hf-from-pretrained-weights-of-another-model"),
    # transforms
    _case("ssl_mae.MAETransform", lambda _: MAETransform(min_scale=0),
          ValueError, "min_scale", "transform-min-scale-0"),
    _case("ssl_mae.MAETransform", lambda _: MAETransform(input_size="224"),  # type: ignore[arg-type]
          TypeError, "input_size", "transform-input-size-str"),
    _case("ssl_mae.BatchedMAEAugment", lambda _: BatchedMAEAugment(8)(_images(0, 3, 8, 8)),
          ValueError, "images", "augment-zero-size-batch"),
    _case("ssl_mae.BatchedMAEAugment",
          lambda _: BatchedMAEAugment(8, normalize={"mean": [0.5] * 3, "std": [0.5] * 3})(
              _images(2, 1, 8, 8)),
          ValueError, "normalize", "augment-mismatched-channels"),
    # data
    _case("ssl_mae.data.ImageFolderDataset", lambda tmp: ImageFolderDataset(tmp / "missing"),
          ValueError, "root", "folder-missing"),
    _case("ssl_mae.data.ImageFolderDataset", lambda tmp: ImageFolderDataset(tmp),
          ValueError, "root", "folder-empty"),
    _case("ssl_mae.data.ImageFolderDataset",
          lambda tmp: ImageFolderDataset(_folder_with(tmp, {"a/notes.txt": b"x", "b.csv": b""})),
          ValueError, "root", "folder-without-images"),
    _case("ssl_mae.data.ImageFolderDataset",
          lambda tmp: ImageFolderDataset(_folder_with(tmp, {"a.png": b"x"}) / "a.png"),
          ValueError, "root", "folder-is-a-file"),
    _case("ssl_mae.data.ImageFolderDataset",
          lambda tmp: ImageFolderDataset(tmp, mode="CMYK"),
          ValueError, "mode", "folder-unsupported-mode"),
    _case("ssl_mae.data.ImageFolderDataset",
          lambda tmp: ImageFolderDataset(
              _folder_with(tmp, {"bad.png": b"x", "empty.jpg": b""}), on_error="replace")[0],
          OSError, "root", "folder-nothing-readable"),
    _case("ssl_mae.data.build_dataset", lambda _: build_dataset("imagenet"),
          ValueError, "name", "build-dataset-unknown-name"),
    _case("ssl_mae.data.build_dataset",
          lambda tmp: build_dataset("fashion_mnist", root=tmp, download=False),
          FileNotFoundError, "root", "build-dataset-empty-fashion-mnist-folder"),
    _case("ssl_mae.data.TensorImageDataset",
          lambda _: TensorImageDataset(_images(3, 1, 8, 8)),
          ValueError, "images", "tensor-dataset-float-images"),
    # evaluation and training plumbing
    _case("ssl_mae.evaluation.knn_accuracy",
          lambda _: knn_accuracy(_images(5, 4), torch.zeros(5), _images(2, 4), _long(2),
                                 num_classes=2),
          TypeError, "train_labels", "knn-float-labels"),
    _case("ssl_mae.evaluation.knn_accuracy",
          lambda _: knn_accuracy(_images(5, 4), _long(5), _images(2, 3), _long(2), num_classes=2),
          ValueError, "test_features", "knn-mismatched-feature-dims"),
    _case("ssl_mae.evaluation.extract_features",
          lambda _: extract_features(_mae().encoder, [(_images(2, 1, 28, 28), _long(2))],
                                     pool="max"),
          ValueError, "pool", "extract-features-unknown-pool"),
    _case("ssl_mae.training.ResumableDataLoader",
          lambda _: ResumableDataLoader(
              TensorImageDataset(torch.zeros(3, 1, 8, 8, dtype=torch.uint8)), 0),
          ValueError, "batch_size", "loader-batch-size-0"),
]  # fmt: skip


def _documented_errors() -> dict[str, set[str]]:
    """``docs/errors.md`` table rows ``| `entry` | `ValueError`, ... | ...`` as a dict."""
    documented: dict[str, set[str]] = {}
    for line in ERRORS_PAGE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`"):
            names = set(re.findall(r"`(\w+(?:Error|Exception))`", cells[1]))
            for entry in re.findall(r"`([\w.]+)`", cells[0]):
                documented.setdefault(entry, set()).update(names)
    return documented


def test_the_table_is_large_and_covers_the_required_kinds_of_bad_input() -> None:
    ids = [param.id or "" for param in API_CASES] + [param.id or "" for param in CLI_CASES]
    assert len(set(ids)) == len(ids) >= 30
    for kind in ("wrong-rank", "float64", "zero-size-batch", "does-not-divide", "ratio-1",
                 "negative", "float-indices", "mismatched-channels", "str", "folder-empty",
                 "different-model"):  # fmt: skip
        assert any(kind in name for name in ids), f"no bad-input case of kind {kind!r}"


@pytest.mark.parametrize(("entry", "call", "error", "argument"), API_CASES)
def test_bad_input_raises_a_documented_error_naming_the_argument(
    entry: str, call: Call, error: type[Exception], argument: str, tmp_path: Path
) -> None:
    documented = _documented_errors().get(entry)
    assert documented, f"docs/errors.md has no row for `{entry}`"
    assert error.__name__ in documented, (
        f"docs/errors.md does not list {error.__name__} for {entry}"
    )
    with pytest.raises(Exception) as info:  # the type is checked below, with a clearer message
        call(tmp_path)
    assert isinstance(info.value, error), (
        f"{entry} raised {type(info.value).__name__}: {info.value}"
    )
    assert argument in str(info.value), f"message does not name {argument!r}: {info.value}"


# --- the CLI table -----------------------------------------------------------------------------
def _checkpoint_of_another_architecture(tmp_path: Path) -> Path:
    """A Lightning-style checkpoint whose hyperparameters describe one MAE and whose weights
    belong to a wider one."""
    model = mae_vit_micro_patch4()
    hyper_parameters = {**dict(model.hparams), "embed_dim": 32, "num_heads": 2}
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hyper_parameters}, path)
    return path


def _checkpoint_of_another_module(tmp_path: Path) -> Path:
    """A Lightning checkpoint of some other LightningModule (different hyperparameters)."""
    path = tmp_path / "classifier.ckpt"
    state = {"state_dict": {"head.weight": torch.zeros(2, 2)}, "hyper_parameters": {"lr": 0.1,
             "num_classes": 2}}  # fmt: skip
    torch.save(state, path)
    return path


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _unreadable_image_folder(tmp_path: Path) -> Path:
    return _folder_with(tmp_path, {"a/broken.png": b"\x89PNG garbage", "a/empty.jpg": b""})


def _image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "images" / "a"
    root.mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (8, 8), (i, 2 * i, 3 * i)).save(root / f"{i}.png")
    return root.parent


ArgvBuilder = Callable[[Path], list[str]]
_QUICK = [
    "--preset",
    "mae_vit_micro_patch4",
    "--no-progress",
    "--accelerator",
    "cpu",
    "--devices",
    "1",
    "--no-knn",
    "--epochs",
    "1",
]


def _cli_case(build: ArgvBuilder, names: str, id: str, *marks: Any) -> Any:
    """``names``: what the one-line message must contain to identify the bad input (the option,
    or the offending value; ``{tmp}`` stands for the test's folder)."""
    return pytest.param(build, names, id=id, marks=marks)


CLI_CASES = [
    _cli_case(lambda _: ["pretrain", "--mask-ratio", "-0.1"], "--mask-ratio",
              "cli-mask-ratio-negative"),
    _cli_case(lambda _: ["pretrain", "--mask-ratio", "abc"], "--mask-ratio", "cli-mask-ratio-str"),
    _cli_case(lambda _: ["pretrain", "--batch-size", "1.5"], "--batch-size",
              "cli-batch-size-float"),
    _cli_case(lambda _: ["pretrain", "--lr", "nan"], "--lr", "cli-lr-nan"),
    _cli_case(lambda _: ["pretrain", "--in-chans", "2"], "--in-chans", "cli-in-chans-2"),
    _cli_case(lambda t: ["pretrain", "--in-chans", "3", "--output-dir", str(t / "o")],
              "--in-chans", "cli-mismatched-channels"),
    _cli_case(lambda t: ["pretrain", "--dataset", "folder", "--data-path", str(t),
                         "--output-dir", str(t / "o")], "'{tmp}' contains no image files",
              "cli-folder-empty"),
    _cli_case(lambda t: ["pretrain", "--dataset", "folder", "--data-path",
                         str(_file(t, "notes.txt", b"x"))], "--data-path",
              "cli-data-path-is-a-file"),
    _cli_case(lambda t: ["pretrain", "--data-path", str(t), "--output-dir", str(t / "o")],
              "not found in '{tmp}'", "cli-fashion-mnist-folder-empty"),
    _cli_case(lambda t: ["pretrain", *_QUICK, "--dataset", "folder", "--img-size", "8",
                         "--batch-size", "1", "--data-path", str(_unreadable_image_folder(t)),
                         "--output-dir", str(t / "o")], "{tmp}",
              "cli-folder-nothing-readable"),
    _cli_case(lambda t: ["pretrain", *_QUICK, "--dataset", "folder", "--img-size", "8",
                         "--batch-size", "4", "--data-path", str(_image_folder(t)),
                         "--output-dir", str(t / "o")], "batch_size", "cli-batch-larger-than-data"),
    _cli_case(lambda t: ["pretrain", "--precision", "17-weird", "--limit-train-images", "8",
                         "--batch-size", "8", "--output-dir", str(t / "o")], "17-weird",
              "cli-unknown-precision"),
    _cli_case(lambda t: ["pretrain", "--resume", str(_file(t, "zero.ckpt", b"")),
                         "--output-dir", str(t / "o")], "zero.ckpt", "cli-resume-zero-byte-file"),
    _cli_case(lambda t: ["pretrain", "--resume", str(_checkpoint_of_another_architecture(t)),
                         "--output-dir", str(t / "o")], "--resume",
              "cli-resume-different-model"),
    _cli_case(lambda t: ["evaluate", "--checkpoint", str(_file(t, "junk.ckpt", b"not a ckpt"))],
              "junk.ckpt", "cli-evaluate-junk-file"),
    _cli_case(lambda t: ["evaluate", "--checkpoint", str(t)], "checkpoint '{tmp}'",
              "cli-evaluate-checkpoint-is-a-folder"),
    _cli_case(lambda t: ["evaluate", "--checkpoint", str(_checkpoint_of_another_architecture(t))],
              "other.ckpt", "cli-evaluate-different-model"),
    _cli_case(lambda t: ["evaluate", "--checkpoint", str(_checkpoint_of_another_module(t))],
              "classifier.ckpt", "cli-evaluate-checkpoint-of-another-module"),
    _cli_case(lambda _: ["reconstruct", "--checkpoint", "x.ckpt", "--mask-ratio", "1"],
              "--mask-ratio", "cli-reconstruct-mask-ratio-1"),
    _cli_case(lambda _: ["evaluate", "--checkpoint", "x.ckpt", "--pool", "max"], "--pool",
              "cli-evaluate-unknown-pool"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "names"), CLI_CASES)
def test_cli_bad_input_exits_2_with_one_line_naming_the_input(
    build: ArgvBuilder,
    names: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = build(tmp_path)
    code, out, err = run_cli(argv, capsys)
    message = assert_one_line_error(code, out, err)
    expected = names.replace("{tmp}", str(tmp_path))
    assert expected in message, f"message does not name {expected!r}: {message}"


def test_the_errors_page_documents_every_cli_exit_status() -> None:
    text = ERRORS_PAGE.read_text()
    for needle in ("exit status 2", "exit status 1", "exit status 130", "--debug"):
        assert needle in text, needle
