"""ssl_mae's MAEHiViT against mmpretrain 1.2.0's, on reference tensors stored in tests/data.

tests/data/make_mmpretrain_hivit_reference.py made the file with mmpretrain itself (weights,
images, masking noise and ids, and mmpretrain's outputs), so this test needs no mmpretrain.
Weights are stored as float16 values and images as uint8 codes; both are exact in float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from ssl_mae.hivit import HiViT, MAEHiViT

REFERENCE = Path(__file__).parent / "data" / "mmpretrain_hivit_reference.pt"
ATOL = 1e-5


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = torch.load(REFERENCE, map_location="cpu", weights_only=True)
    return data


def _images(reference: dict[str, Any]) -> Tensor:
    return (reference["images"].float() - 128) / 64


def _model(reference: dict[str, Any], rpe: bool) -> MAEHiViT:
    config = dict(reference["config"])
    arch = config.pop("arch")
    arch = {**arch, "depths": tuple(arch["depths"])}
    out_indices = tuple(config.pop("out_indices"))
    model = MAEHiViT(arch=arch, out_indices=out_indices, rpe=rpe, **config)
    state = reference["state_dict"]
    if not rpe:
        state = {k: v for k, v in state.items() if "relative_position" not in k}
    model.load_state_dict(state)  # float16 / int16 values copy exactly into float32 / int64
    return model.eval()


def _max_diff(a: Tensor, b: Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def _use_ids(model: MAEHiViT, reference: dict[str, Any]) -> None:
    """Makes ``model.forward(mask=True)`` use mmpretrain's ids instead of drawing new ones."""
    ids = (reference["ids_keep"], reference["ids_restore"], reference["mask"])
    model.masking_id = lambda *args, **kwargs: ids  # type: ignore[method-assign]


def test_reference_file_is_small_and_records_versions(reference: dict[str, Any]) -> None:
    assert REFERENCE.stat().st_size < 300_000
    assert reference["versions"]["mmpretrain"].startswith("1.")


def test_masking_id_matches_mmpretrain_for_the_same_noise(reference: dict[str, Any]) -> None:
    model = _model(reference, rpe=False)
    ids_keep, ids_restore, mask = model.masking_id(
        reference["noise"].shape[0], reference["config"]["mask_ratio"], noise=reference["noise"]
    )
    assert torch.equal(ids_keep, reference["ids_keep"])
    assert torch.equal(ids_restore, reference["ids_restore"])
    assert torch.equal(mask, reference["mask"])


@pytest.mark.parametrize("rpe", [False, True])
def test_unmasked_features_match_mmpretrain(reference: dict[str, Any], rpe: bool) -> None:
    model = _model(reference, rpe)
    expected = reference["outputs"][f"rpe_{str(rpe).lower()}"]["features"]  # (B, C, h, w)
    images = _images(reference)
    with torch.no_grad():
        (features,) = HiViT.forward(model, images)
        hidden, mask, _ = model(images, mask=None)
    assert _max_diff(features, expected) < ATOL
    assert _max_diff(hidden, expected.flatten(2).transpose(1, 2)) < ATOL
    assert mask.eq(0).all()


def test_masked_latent_matches_mmpretrain(reference: dict[str, Any]) -> None:
    model = _model(reference, rpe=False)
    expected = reference["outputs"]["rpe_false"]
    _use_ids(model, reference)
    images = _images(reference)
    with torch.no_grad():
        hidden, mask, ids_restore = model(images, mask=True)
        encoded = model.encode(images, idx_keep=reference["ids_keep"])
    assert _max_diff(hidden, expected["latent"]) < ATOL
    assert _max_diff(encoded, expected["latent"]) < ATOL
    assert torch.equal(mask, expected["mask"])
    assert torch.equal(ids_restore, expected["ids_restore"])


def test_masked_latent_with_rpe_matches_mmpretrain_without_the_bias(
    reference: dict[str, Any],
) -> None:
    # Documented deviation: mmpretrain's masked forward drops the relative position bias, ours
    # applies the kept units' bias. Without the bias tables both agree; with them they differ.
    model = _model(reference, rpe=True)
    expected = reference["outputs"]["rpe_true"]["latent"]
    _use_ids(model, reference)
    images = _images(reference)
    with torch.no_grad():
        with_bias, _, _ = model(images, mask=True)
        for block in model.main_blocks:
            block.attn.relative_position_bias_table = None
        without_bias, _, _ = model(images, mask=True)
    assert _max_diff(without_bias, expected) < ATOL
    assert _max_diff(with_bias, expected) > ATOL
