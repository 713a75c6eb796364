"""Features of several blocks: pool_layers, encode_layers and extract_features(layers=...)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from ssl_mae.evaluation import encode_layers, encode_pooled, extract_features, pool_layers
from ssl_mae.modules import MaskedVisionTransformer


def _encoder() -> MaskedVisionTransformer:
    torch.manual_seed(0)
    return MaskedVisionTransformer.from_timm(
        {"img_size": 28, "patch_size": 7, "in_chans": 1, "embed_dim": 16, "depth": 3,
         "num_heads": 2},
        use_mask_token=False,
    )  # fmt: skip


def test_pool_layers_concatenates_or_averages_the_pooled_layers() -> None:
    layers = [torch.randn(2, 5, 4), torch.randn(2, 5, 4)]
    concat = pool_layers(layers, "mean", num_prefix_tokens=1)
    assert concat.shape == (2, 8)
    torch.testing.assert_close(concat[:, :4], layers[0][:, 1:].mean(dim=1))
    torch.testing.assert_close(concat[:, 4:], layers[1][:, 1:].mean(dim=1))
    average = pool_layers(layers, "cls", num_prefix_tokens=1, combine="mean")
    torch.testing.assert_close(average, (layers[0][:, 0] + layers[1][:, 0]) / 2)


def test_pool_layers_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="combine"):
        pool_layers([torch.randn(2, 5, 4)], "mean", 1, combine="sum")
    with pytest.raises(ValueError, match="at least one"):
        pool_layers([], "mean", 1)


def test_one_layer_equals_the_usual_features_and_more_layers_widen_them() -> None:
    encoder = _encoder().eval()
    images = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        for pool in ("cls", "mean"):
            torch.testing.assert_close(
                encode_layers(encoder, images, pool, layers=1), encode_pooled(encoder, images, pool)
            )
        assert encode_pooled(encoder, images, "mean", layers=3).shape == (3, 48)
        assert encode_pooled(encoder, images, "mean", layers=2, combine="mean").shape == (3, 16)
    with pytest.raises(ValueError, match="layers must be in"):
        encode_layers(encoder, images, "mean", layers=4)


def test_extract_features_with_layers() -> None:
    data = TensorDataset(torch.randn(5, 1, 28, 28), torch.arange(5))
    features, labels = extract_features(_encoder(), data, pool="mean", layers=2, batch_size=2)
    assert features.shape == (5, 32) and labels.tolist() == [0, 1, 2, 3, 4]
