"""SimpleMAE trains around timm, torchvision and our own encoders, sharing their weights."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torchvision.models import VisionTransformer as TorchvisionViT

from ssl_mae.models.simple_mae import SimpleMAE
from ssl_mae.modules import MaskedVisionTransformer


def timm_vit(**overrides: object) -> nn.Module:
    kwargs: dict[str, object] = dict(
        img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=0
    )
    kwargs.update(overrides)
    return VisionTransformer(**kwargs)  # type: ignore[arg-type]


ENCODERS: dict[str, Callable[[], nn.Module]] = {
    "timm-cls": timm_vit,
    "timm-meanpool": lambda: timm_vit(class_token=False, global_pool="avg"),
    "timm-registers": lambda: timm_vit(reg_tokens=2),
    "torchvision": lambda: TorchvisionViT(
        image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
    ),
    "ours": lambda: MaskedVisionTransformer(timm_vit()),
}


@pytest.mark.parametrize("kind", list(ENCODERS))
def test_trains_and_updates_the_wrapped_encoder(kind: str) -> None:
    torch.manual_seed(0)
    encoder = ENCODERS[kind]()
    mae = SimpleMAE(encoder, decoder_dim=32, decoder_depth=1, decoder_heads=4, decoder_dim_head=8)
    before = {name: p.detach().clone() for name, p in encoder.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(mae.parameters(), lr=3e-3)
    images = torch.rand(8, 3, 16, 16)
    noise = torch.rand(8, 16)  # fixed masks: a clean overfit check
    losses = []
    for _ in range(25):
        loss = mae.forward_with_outputs(images, noise=noise).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    changed = [
        n for n, p in encoder.named_parameters() if n in before and not torch.equal(p, before[n])
    ]
    assert changed, "training must update the encoder that was passed in"


def test_outputs_non_square_one_channel_and_custom_head_dim() -> None:
    encoder = timm_vit(img_size=(8, 20), in_chans=1)
    mae = SimpleMAE(
        encoder, decoder_dim=24, masking_ratio=0.5, decoder_heads=2, decoder_dim_head=16
    )
    out = mae.forward_with_outputs(torch.rand(3, 1, 8, 20))
    assert out.pred.shape == (3, 5, 16) and out.target.shape == (3, 5, 16)
    assert out.idx_keep.shape == (3, 1 + 5) and torch.isfinite(out.loss)
    assert mae.decoder.decoder_blocks[0].attn.qkv.out_features == 3 * 2 * 16


def test_encoder_weights_are_not_reinitialised() -> None:
    encoder = timm_vit()
    snapshot = {k: v.clone() for k, v in encoder.state_dict().items()}
    SimpleMAE(encoder, decoder_dim=32)
    assert all(torch.equal(v, snapshot[k]) for k, v in encoder.state_dict().items())


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.5, 1.5])
def test_masking_ratio_outside_open_interval(ratio: float) -> None:
    with pytest.raises(ValueError, match=r"masking_ratio must be in \(0, 1\)"):
        SimpleMAE(timm_vit(), decoder_dim=32, masking_ratio=ratio)


def test_bad_encoder_and_images() -> None:
    with pytest.raises(TypeError, match="encoder must be a timm or torchvision VisionTransformer"):
        SimpleMAE(nn.Sequential(nn.Flatten(), nn.Linear(10, 10)), decoder_dim=32)
    mae = SimpleMAE(timm_vit(), decoder_dim=32)
    with pytest.raises(ValueError, match="img must be 16x16"):
        mae(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="img must have 3 channels"):
        mae(torch.rand(2, 1, 16, 16))
