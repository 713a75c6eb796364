"""``layers`` of the frozen-feature protocols: the last blocks, pooled and concatenated."""

from __future__ import annotations

from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer

from ssl_mae.data import TensorImageDataset
from ssl_mae.evaluation.protocols import frozen_features
from ssl_mae.modules import MaskedVisionTransformer


def test_frozen_features_with_layers_pool_each_block_output() -> None:
    torch.manual_seed(0)
    vit = VisionTransformer(
        img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=3, num_heads=2, num_classes=0
    )
    encoder = MaskedVisionTransformer(vit, use_mask_token=False).eval()
    images = torch.randint(0, 256, (5, 1, 16, 16), dtype=torch.uint8)
    dataset = TensorImageDataset(images, torch.arange(5) % 2)
    normalize = {"mean": [0.5], "std": [0.25]}
    features, labels, skipped = frozen_features(
        encoder, dataset, normalize, (16, 16), pool="mean", batch_size=2, layers=2
    )
    assert features.shape == (5, 64) and skipped == 0 and labels.tolist() == [0, 1, 0, 1, 0]
    with torch.no_grad():
        tokens = (images.float() / 255 - 0.5) / 0.25
        _, blocks = encoder.forward_intermediates(tokens, norm=True)
    expected = torch.cat([b[:, 1:].mean(dim=1) for b in blocks[-2:]], dim=1)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-5)


def test_standardize_features_uses_the_bank_statistics_for_every_set() -> None:
    from ssl_mae.evaluation import standardize_features

    torch.manual_seed(0)
    bank = torch.randn(200, 3) * torch.tensor([1.0, 50.0, 0.01]) + torch.tensor([2.0, -3.0, 7.0])
    bank[:, 2] = 7.0  # a constant dimension stays 0 instead of dividing by 0
    queries = torch.randn(10, 3)
    z_bank, z_queries = standardize_features(bank, queries)
    assert torch.allclose(z_bank[:, :2].mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(z_bank[:, :2].std(0), torch.ones(2), atol=1e-5)
    assert torch.equal(z_bank[:, 2], torch.zeros(200))
    mean, std = bank.mean(0), bank.std(0)  # the queries' own statistics are not used
    torch.testing.assert_close(z_queries[:, :2], (queries[:, :2] - mean[:2]) / std[:2])


def test_knn_evaluate_standardize_lets_small_informative_dimensions_vote() -> None:
    """Labels live in 8 dimensions of tiny variance next to 6 of large noise: the cosine kNN
    on raw features follows the noise (near chance), on standardised features the labels."""
    from ssl_mae.evaluation import knn_evaluate

    class Pixels(torch.nn.Module):
        num_prefix_tokens = 0

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return images.flatten(1) - 0.5

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(400) % 2
    images = torch.empty(400, 1, 1, 14, dtype=torch.uint8)
    images[..., :6] = torch.randint(0, 256, (400, 1, 1, 6), generator=generator).to(torch.uint8)
    images[..., 6:] = (127 + labels).to(torch.uint8).view(400, 1, 1, 1)  # 127 or 128 of 255
    train = TensorImageDataset(images[:300], labels[:300])
    test = TensorImageDataset(images[300:], labels[300:])
    common: dict[str, Any] = dict(normalize=None, img_size=(1, 14), num_classes=2, k=5)
    raw = knn_evaluate(Pixels(), train, test, **common)
    scaled = knn_evaluate(Pixels(), train, test, **common, standardize=True)
    assert scaled["top1"] == 100.0 and raw["top1"] < 75.0
    assert (scaled["standardize"], raw["standardize"], scaled["temperature"]) == (1.0, 0.0, 0.07)
