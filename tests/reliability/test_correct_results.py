"""Bad input, round two: unusual or malformed input that must give the *correct result*.

Each case is one function that feeds an input a careful user or a hostile file might produce
(an overflow-prone temperature, a loss over zero patches, a 16-bit or float PIL image, int32
indices, a shard in a subfolder, NumPy scalars as options, ...) and checks the value that comes
out against what it must be, not merely that no exception was raised. Several of these used to
return NaN, a wrong number or an unscaled image. The cases from issue 13 carry ``issue13`` in
their id.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import ssl_mae
from ssl_mae import masking
from ssl_mae.data import ImageFolderDataset
from ssl_mae.evaluation import (
    extract_features,
    knn_accuracy,
    knn_predict,
    topk_accuracy,
    train_linear_probe,
)
from ssl_mae.hf import ViTMAEConfig, ViTMAEForPreTraining
from ssl_mae.hf.io import load_state_dict_from_directory
from ssl_mae.loss import MAELoss
from ssl_mae.models import mae_vit_micro_patch4
from ssl_mae.pos_embed import interpolate_pos_embed
from ssl_mae.training.optim import warmup_cosine
from ssl_mae.transforms import BatchedMAEAugment, MAETransform

from .test_bad_input import _hf, _images, _mae

Case = Callable[[Path], None]
RESULT_CASES: list[Any] = []


def result_case(function: Case) -> Case:
    """Registers ``function`` as one correct-result case; its name (dashes for underscores) is
    the case id."""
    RESULT_CASES.append(pytest.param(function, id=function.__name__.replace("_", "-")))
    return function


# --- kNN: stable votes, clamped k, odd dtypes ---------------------------------------------------
def _clusters(per_class: int = 10, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Well separated clusters around the unit axes, with a little noise."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.eye(4)[:classes] * 10
    labels = torch.arange(classes).repeat_interleave(per_class)
    features = centres[labels] + 0.1 * torch.randn(labels.shape[0], 4, generator=generator)
    return features, labels


@result_case
def issue13_knn_small_temperature_keeps_the_ranking(_: Path) -> None:
    train, labels = _clusters()
    # exp(sim / 1e-3) overflowed to inf for every neighbour: all classes tied, class 0 won (0%).
    for temperature in (1e-2, 1e-3, 1e-4):
        result = knn_accuracy(train, labels, train, labels, 3, k=5, temperature=temperature)
        assert result["top1"] == 1.0, (temperature, result)


@result_case
def issue13_knn_k_larger_than_the_bank_is_clamped(_: Path) -> None:
    train, labels = _clusters(per_class=2)
    with pytest.warns(UserWarning, match="k=50 is larger than the bank of 6"):
        clamped = knn_predict(train, labels, train, 3, k=50)
    torch.testing.assert_close(clamped, knn_predict(train, labels, train, 3, k=6))


@result_case
def knn_half_precision_features_vote_like_float32(_: Path) -> None:
    train, labels = _clusters()
    half = knn_predict(train.half(), labels, train.half(), 3, k=5)
    full = knn_predict(train, labels, train, 3, k=5)
    assert torch.equal(half.argmax(dim=1), full.argmax(dim=1))


@result_case
def topk_larger_than_the_number_of_classes_is_capped(_: Path) -> None:
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    top1, top5 = topk_accuracy(scores, torch.tensor([1, 2]), (1, 5))
    assert (top1, top5) == (0.5, 1.0)


@result_case
def linear_probe_on_two_samples_with_a_large_batch_size(_: Path) -> None:
    features, labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    result = train_linear_probe(features, labels, features, labels, 2, epochs=30, warmup_epochs=0)
    assert result["top1"] == 1.0  # one batch of two; BatchNorm has what it needs


@result_case
def extract_features_returns_int64_labels_for_int32_input(_: Path) -> None:
    batches = [(_images(2, 1, 28, 28), torch.tensor([3, 1], dtype=torch.int32))]
    features, labels = extract_features(_mae().encoder, batches)
    assert labels.dtype == torch.int64 and labels.tolist() == [3, 1]
    assert features.shape == (2, 64) and torch.isfinite(features).all()


# --- the loss: empty selections score 0, constant patches stay finite --------------------------
@result_case
def issue13_loss_over_zero_patches_is_0(_: Path) -> None:
    pred = torch.zeros(2, 0, 16, requires_grad=True)
    loss = MAELoss()(pred, torch.zeros(2, 0, 16))
    assert loss.item() == 0.0  # the mean of nothing used to be NaN
    loss.backward()
    assert pred.grad is not None and pred.grad.shape == pred.shape


@result_case
def loss_over_an_empty_batch_is_0(_: Path) -> None:
    assert MAELoss(norm_pix=True)(torch.zeros(0, 5, 16), torch.zeros(0, 5, 16)).item() == 0.0


@result_case
def loss_with_nothing_masked_is_0(_: Path) -> None:
    loss = MAELoss()(_images(2, 4, 16), _images(2, 4, 16), torch.zeros(2, 4))
    assert loss.item() == 0.0


@result_case
def loss_with_a_bool_mask_equals_the_float_mask(_: Path) -> None:
    pred, target = _images(2, 4, 16), _images(2, 4, 16)
    mask = torch.tensor([[True, False, True, False], [False, False, True, True]])
    criterion = MAELoss()
    assert criterion(pred, target, mask).item() == criterion(pred, target, mask.float()).item()


@result_case
def norm_pix_loss_on_constant_patches_is_finite(_: Path) -> None:
    pred = _images(2, 3, 16)
    target = torch.full((2, 3, 16), 0.7)  # variance 0: normalised to 0, not 0/0
    loss = MAELoss(norm_pix=True)(pred, target)
    # float32 rounding of the mean leaves targets of about 1e-4 after dividing by sqrt(eps)
    torch.testing.assert_close(loss, pred.pow(2).mean(), atol=1e-3, rtol=0)


@result_case
def loss_of_half_predictions_against_float_targets_is_float32(_: Path) -> None:
    pred, target = _images(1, 2, 4), _images(1, 2, 4)
    loss = MAELoss()(pred.half(), target)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, (pred.half().float() - target).pow(2).mean())


# --- transforms: 16/32-bit and float PIL images are scaled like the image folder does ----------
def _constant_view(image: Image.Image) -> torch.Tensor:
    (view,) = MAETransform(8, normalize=None)(image)
    return view


@result_case
def issue13_transform_scales_float_pil_images_of_200(_: Path) -> None:
    view = _constant_view(Image.fromarray(np.full((16, 16), 200.0, dtype=np.float32)))
    torch.testing.assert_close(view, torch.full_like(view, 200 / 255), atol=1e-6, rtol=0)


@result_case
def transform_takes_float_pil_images_in_0_1_as_fractions(_: Path) -> None:
    view = _constant_view(Image.fromarray(np.full((16, 16), 0.5, dtype=np.float32)))
    torch.testing.assert_close(view, torch.full_like(view, 128 / 255), atol=1e-6, rtol=0)


@result_case
def transform_scales_16_bit_pil_images(_: Path) -> None:
    view = _constant_view(Image.fromarray(np.full((16, 16), 32896, dtype=np.uint16)))
    torch.testing.assert_close(view, torch.full_like(view, 128 / 255), atol=1e-6, rtol=0)


@result_case
def transform_scales_32_bit_integer_pil_images(_: Path) -> None:
    image = Image.fromarray(np.full((16, 16), 65535, dtype=np.int32))
    assert image.mode == "I"  # ToDtype(scale=True) divided these by 2**31: a black image
    view = _constant_view(image)
    torch.testing.assert_close(view, torch.ones_like(view))


@result_case
def transform_accepts_numpy_scalars_in_normalize(_: Path) -> None:
    normalize = {"mean": (np.float32(0.5),), "std": (np.float64(0.25),)}
    (view,) = MAETransform(8, normalize=normalize)(Image.new("L", (16, 16), 255))  # type: ignore[arg-type]
    torch.testing.assert_close(view, torch.full_like(view, 2.0))


@result_case
def batched_augment_keeps_half_precision_images_finite(_: Path) -> None:
    out = BatchedMAEAugment(8, normalize=None)(_images(2, 3, 16, 16).half())
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


# --- masking and indices: int32 works, odd ratios follow the rules -----------------------------
@result_case
def int32_indices_gather_like_int64(_: Path) -> None:
    tokens = _images(2, 6, 3)
    index = torch.tensor([[5, 0], [2, 3]])
    expected = ssl_mae.get_at_index(tokens, index)
    assert torch.equal(ssl_mae.get_at_index(tokens, index.int()), expected)
    written = ssl_mae.set_at_index(tokens, index.int(), expected * 2)
    assert torch.equal(written, ssl_mae.set_at_index(tokens, index, expected * 2))


@result_case
def restore_index_takes_int32_and_inverts(_: Path) -> None:
    keep = torch.tensor([[0, 3], [2, 1]], dtype=torch.int32)
    mask = torch.tensor([[2, 1], [0, 3]], dtype=torch.int32)
    restored = masking.restore_index(keep, mask)
    order = torch.cat([keep, mask], dim=1).long()
    assert torch.equal(torch.gather(order, 1, restored), torch.arange(4).expand(2, 4))


@result_case
def encode_with_int32_idx_keep_equals_int64(_: Path) -> None:
    images = _images(2, 1, 28, 28)
    keep = torch.tensor([[0, 4, 9], [0, 1, 49]])
    encoder = _mae().encoder.eval()
    with torch.no_grad():
        expected = encoder.encode(images, idx_keep=keep)
        torch.testing.assert_close(encoder.encode(images, idx_keep=keep.int()), expected)


@result_case
def predict_masked_with_int32_indices_equals_int64(_: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    keep, mask = ssl_mae.random_token_mask((2, 50), 0.75, generator=generator)
    encoded = _images(2, keep.shape[1], 64)
    decoder = _mae().decoder.eval()
    with torch.no_grad():
        expected = decoder.predict_masked(encoded, keep, mask)
        torch.testing.assert_close(
            decoder.predict_masked(encoded, keep.int(), mask.int()), expected
        )


@result_case
def random_masking_at_ratio_0_keeps_every_token(_: Path) -> None:
    x = _images(2, 9, 4)
    kept, mask, ids_restore = ssl_mae.random_masking(x, 0.0)
    assert mask.sum().item() == 0
    restored = torch.gather(kept, 1, ids_restore.unsqueeze(-1).expand(-1, -1, 4))
    assert torch.equal(restored, x)


@result_case
def token_mask_at_a_high_ratio_keeps_the_prefix_tokens(_: Path) -> None:
    keep, mask = ssl_mae.random_token_mask((2, 50), 0.99)
    assert keep.tolist() == [[0], [0]]  # int(49 * 0.01) = 0 patches, the class token stays
    assert sorted(mask[0].tolist()) == list(range(1, 50))


@result_case
def float64_noise_gives_the_same_mask_as_float32(_: Path) -> None:
    noise = torch.rand(2, 49, generator=torch.Generator().manual_seed(3))
    keep64, mask64 = ssl_mae.random_token_mask((2, 50), 0.75, noise=noise.double())
    keep32, mask32 = ssl_mae.random_token_mask((2, 50), 0.75, noise=noise)
    assert torch.equal(keep64, keep32) and torch.equal(mask64, mask32)


@result_case
def unpatchify_takes_an_int_image_size(_: Path) -> None:
    images = _images(2, 3, 8, 8)
    patches = ssl_mae.patchify(images, 4)
    assert torch.equal(ssl_mae.unpatchify(patches, 4, channels=3, image_size=8), images)


@result_case
def interpolate_to_the_same_grid_is_the_identity(_: Path) -> None:
    table = _images(1, 17, 8)
    assert torch.equal(interpolate_pos_embed(table, 4, num_prefix_tokens=1), table)


@result_case
def interpolate_keeps_a_2d_table_2d(_: Path) -> None:
    resized = interpolate_pos_embed(_images(17, 8), 2, num_prefix_tokens=1)
    assert resized.shape == (5, 8)


# --- models and training options ----------------------------------------------------------------
@result_case
def mae_stores_numpy_learning_rates_as_plain_floats(tmp_path: Path) -> None:
    model = mae_vit_micro_patch4(lr=np.float32(1e-3), base_lr=np.float64(2e-4))
    assert type(model.hparams["lr"]) is float and model.hparams["lr"] == pytest.approx(1e-3)
    path = tmp_path / "hparams.pt"
    torch.save(dict(model.hparams), path)  # checkpoints load with weights_only=True
    assert torch.load(path, weights_only=True)["base_lr"] == pytest.approx(2e-4)


@result_case
def warmup_cosine_takes_fractional_steps(_: Path) -> None:
    assert warmup_cosine(2.5, 100, 10, 1.0) == pytest.approx(0.25)


@result_case
def hf_forward_treats_none_flags_as_false(_: Path) -> None:
    out = _hf()(_images(2, 3, 16, 16), output_hidden_states=None, output_attentions=None)  # type: ignore[arg-type]
    assert out.hidden_states is None and out.attentions is None
    assert torch.isfinite(out.loss)


# --- the Hugging Face layout: legal but unusual folders load -------------------------------------
def _saved(tmp_path: Path) -> Path:
    folder = tmp_path / "hf"
    _hf().save_pretrained(folder)
    return folder


def _index(folder: Path, shard: str) -> None:
    names = load_state_dict_from_directory(folder).keys()
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": dict.fromkeys(names, shard)})
    )


def _same_weights(folder: Path) -> None:
    loaded = ViTMAEForPreTraining.from_pretrained(folder)
    for key, value in _hf().state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@result_case
def hf_shard_in_a_subfolder_loads(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    _index(folder, "shards/model-00001-of-00001.safetensors")
    (folder / "shards").mkdir()
    (folder / "model.safetensors").rename(folder / "shards" / "model-00001-of-00001.safetensors")
    _same_weights(folder)


@result_case
def hf_shard_symlinked_into_a_blob_store_loads(tmp_path: Path) -> None:
    """The Hugging Face cache keeps snapshot files as symlinks into ``../../blobs``."""
    folder = _saved(tmp_path)
    _index(folder, "model-00001-of-00001.safetensors")
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (folder / "model.safetensors").rename(blobs / "0123abcd")
    os.symlink(Path("..") / "blobs" / "0123abcd", folder / "model-00001-of-00001.safetensors")
    _same_weights(folder)


@result_case
def hf_legacy_pytorch_model_bin_loads(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    weights = load_state_dict_from_directory(folder)
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")
    _same_weights(folder)


@result_case
def hf_config_keeps_unknown_keys(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    data = json.loads((folder / "config.json").read_text())
    data["id2label"] = {"0": "cat"}
    (folder / "config.json").write_text(json.dumps(data))
    config = ViTMAEConfig.from_pretrained(folder)
    assert config.extra["id2label"] == {"0": "cat"}
    config.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["id2label"] == {"0": "cat"}


# --- image folders: legal oddities are read ------------------------------------------------------
def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 4), value).save(path, format="PNG")


@result_case
def folder_reads_upper_case_extensions(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "IMAGE.PNG", 7)
    dataset = ImageFolderDataset(tmp_path, mode="L")
    sample = dataset[0]
    assert sample is not None and int(sample[0][0, 0, 0]) == 7 and dataset.num_skipped == 0


@result_case
def folder_follows_a_symlinked_class_folder(tmp_path: Path) -> None:
    _png(tmp_path / "outside" / "x.png", 9)
    (tmp_path / "root" / "a").mkdir(parents=True)
    _png(tmp_path / "root" / "a" / "y.png", 1)
    os.symlink(tmp_path / "outside", tmp_path / "root" / "b")
    dataset = ImageFolderDataset(tmp_path / "root", mode="L")
    assert dataset.classes == ["a", "b"] and len(dataset) == 2
    sample = dataset[1]
    assert sample is not None and sample[1] == 1 and int(sample[0][0, 0, 0]) == 9


@result_case
def folder_with_a_symlink_loop_lists_each_image_once(tmp_path: Path) -> None:
    _png(tmp_path / "root" / "x.png", 3)
    (tmp_path / "root" / "sub").mkdir()
    _png(tmp_path / "root" / "sub" / "y.png", 4)
    os.symlink(tmp_path / "root", tmp_path / "root" / "sub" / "loop")  # root/sub/loop -> root
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = ImageFolderDataset(tmp_path / "root", mode="L")
    assert sorted(path.name for path, _ in dataset.samples) == ["x.png", "y.png"]
    assert dataset.num_skipped == 0


@pytest.mark.parametrize("case", RESULT_CASES)
def test_unusual_input_gives_the_correct_result(case: Case, tmp_path: Path) -> None:
    case(tmp_path)


def test_the_cases_check_values() -> None:
    """Every case is registered once and compares an outcome (no case only calls)."""
    import inspect

    ids = [param.id for param in RESULT_CASES]
    assert len(ids) == len(set(ids)) >= 30
    for param in RESULT_CASES:
        source = inspect.getsource(param.values[0])
        assert "assert" in source or "_same_weights" in source, param.id
