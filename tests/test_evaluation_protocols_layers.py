"""``layers`` of the frozen-feature protocols: the last blocks, pooled and concatenated."""

from __future__ import annotations

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
