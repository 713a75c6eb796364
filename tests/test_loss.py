"""MAELoss against the official forward_loss formula, written out independently."""

from __future__ import annotations

import pytest
import torch

from ssl_mae import masking
from ssl_mae.loss import MAELoss, masked_patch_targets


def official_forward_loss(
    imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, p: int, norm_pix: bool
) -> torch.Tensor:
    # Official models_mae.forward_loss: per-patch MSE, averaged over removed patches; with
    # norm_pix_loss the target is (x - mean) / (var + 1e-6) ** .5 with torch's unbiased var.
    n, c, h, w = imgs.shape
    target = imgs.reshape(n, c, h // p, p, w // p, p)
    target = torch.einsum("nchpwq->nhwpqc", target).reshape(n, (h // p) * (w // p), p * p * c)
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(dim=-1)
    return (loss * mask).sum() / mask.sum()


@pytest.mark.parametrize("norm_pix", [False, True])
def test_mask_style_equals_official(norm_pix: bool) -> None:
    imgs = torch.randn(3, 3, 16, 16)
    pred = torch.randn(3, 16, 48)
    _, mask, _ = masking.random_masking(torch.zeros(3, 16, 1), 0.75)
    expected = official_forward_loss(imgs, pred, mask, 4, norm_pix)
    got = MAELoss(norm_pix=norm_pix)(pred, masking.patchify(imgs, 4), mask)
    diff = float((got - expected).abs())
    print(f"PARITY MAELoss(norm_pix={norm_pix}) vs official: max abs diff {diff:.3e}")
    assert diff < 1e-6


@pytest.mark.parametrize("norm_pix", [False, True])
def test_index_style_equals_mask_style(norm_pix: bool) -> None:
    imgs = torch.randn(2, 1, 12, 12)
    noise = torch.rand(2, 9)
    _idx_keep, idx_mask = masking.random_token_mask((2, 10), 0.5, noise=noise)
    _, mask, _ = masking.random_masking(torch.zeros(2, 9, 1), 0.5, noise=noise)
    pred_all = torch.randn(2, 9, 16)
    pred_masked = masking.get_at_index(pred_all, idx_mask - 1)
    loss = MAELoss(norm_pix=norm_pix)
    by_index = loss(pred_masked, masked_patch_targets(imgs, 4, idx_mask, num_prefix_tokens=1))
    by_mask = loss(pred_all, masking.patchify(imgs, 4), mask)
    assert torch.allclose(by_index, by_mask, atol=1e-6)


def test_targets_respect_prefix_count() -> None:
    imgs = torch.randn(1, 3, 8, 8)
    patches = masking.patchify(imgs, 4)
    idx_mask = torch.tensor([[4 + 2, 4 + 0]])  # 4 register/class tokens in front
    assert torch.equal(
        masked_patch_targets(imgs, 4, idx_mask, num_prefix_tokens=4), patches[:, [2, 0]]
    )


def test_loss_is_float32_under_bf16_and_zero_without_masked_patches() -> None:
    pred = torch.randn(2, 4, 8, dtype=torch.bfloat16)
    target = torch.randn(2, 4, 8)
    assert MAELoss()(pred, target).dtype == torch.float32
    assert MAELoss()(pred, target.bfloat16(), torch.zeros(2, 4)) == 0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="same shape"):
        MAELoss()(torch.randn(2, 4, 8), torch.randn(2, 4, 9))
    with pytest.raises(ValueError, match="mask must have shape"):
        MAELoss()(torch.randn(2, 4, 8), torch.randn(2, 4, 8), torch.ones(2, 5))
    with pytest.raises(TypeError, match="norm_pix"):
        MAELoss(norm_pix="yes")  # type: ignore[arg-type]
