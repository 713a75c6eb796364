"""Low precision: a long bf16 autocast run stays finite and learns; fp16 autocast goes through
every scatter/gather of the MAE data path without dtype errors (Lightly's historic
``scatter(): Expected self.dtype to be equal to src.dtype`` under fp16 AMP must not exist here);
Lightning's ``bf16-mixed`` and (on CUDA) ``16-mixed`` train through ``ssl-mae pretrain``.

On a CPU Lightning silently turns ``16-mixed`` into ``bf16-mixed``, so the fp16 checks here use
``torch.autocast("cpu", dtype=torch.float16)`` with a ``GradScaler`` directly; the Lightning
``16-mixed`` run is checked where a CUDA device exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from ssl_mae import masking
from ssl_mae.hf import ViTMAEConfig, ViTMAEForPreTraining
from ssl_mae.loss import MAELoss
from ssl_mae.models import SimpleMAE, mae_vit_micro_patch4

from .conftest import TINY_RUN, checkpoint_weights, run_cli

BF16_STEPS = 250


def _smooth_images(count: int, size: int, seed: int) -> torch.Tensor:
    """Blurry blobs (not white noise), so that a tiny MAE can learn to fill in patches."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 1, size // 4, size // 4, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")


def _curve(autocast_dtype: torch.dtype | None, steps: int) -> tuple[torch.Tensor, torch.nn.Module]:
    torch.manual_seed(0)
    model = mae_vit_micro_patch4(img_size=16, depth=2, decoder_depth=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95))
    images = _smooth_images(16, 16, seed=0)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        with torch.autocast(
            "cpu", dtype=autocast_dtype or torch.float32, enabled=bool(autocast_dtype)
        ):
            loss, pred, _ = model(images, generator=generator)
        assert pred.dtype == (autocast_dtype or torch.float32) and loss.dtype == torch.float32
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return torch.tensor(losses), model


def test_long_bf16_autocast_run_stays_finite_and_tracks_float32() -> None:
    bf16, model = _curve(torch.bfloat16, BF16_STEPS)
    bad = (~bf16.isfinite()).nonzero()
    assert not len(bad), f"first non-finite bf16 loss at step {int(bad[0])}"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    fp32, _ = _curve(None, BF16_STEPS)
    first, last, last_fp32 = bf16[:25].mean(), bf16[-25:].mean(), fp32[-25:].mean()
    assert last < 0.5 * first, f"bf16 did not learn: {first:.4f} -> {last:.4f}"
    # bf16 rounding costs a little, not the run: the end of the curve stays near float32's.
    assert last < 1.15 * last_fp32, f"bf16 {last:.4f} vs float32 {last_fp32:.4f}"


# --- fp16: the scatter/gather paths ------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_index_helpers_accept_float32_values_into_half_tokens(dtype: torch.dtype) -> None:
    """Under AMP the activations are half while parameters (mask/class tokens) stay float32."""
    tokens = torch.randn(2, 6, 4, dtype=dtype)
    index = torch.tensor([[1, 3], [0, 5]])
    value = torch.randn(2, 2, 4)  # float32, like a parameter
    written = masking.set_at_index(tokens, index, value)
    assert written.dtype == dtype
    assert torch.equal(masking.get_at_index(written, index), value.to(dtype))
    mask_token = torch.randn(1, 1, 4)
    masked = masking.mask_at_index(tokens, index, mask_token)
    assert masked.dtype == dtype
    assert torch.equal(masked[0, 1], mask_token[0, 0].to(dtype))
    prefixed = masking.prepend_class_token(tokens, torch.randn(1, 1, 4))
    assert prefixed.dtype == dtype and prefixed.shape == (2, 7, 4)


def _fp16_step(model: torch.nn.Module, loss_of: object, steps: int = 3) -> list[float]:
    assert callable(loss_of)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu")
    losses = []
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.float16):
            loss = loss_of(model)
        assert loss.dtype == torch.float32  # the error is reduced in float32
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    return losses


def test_fp16_autocast_trains_every_model() -> None:
    torch.manual_seed(0)
    images = _smooth_images(4, 16, seed=1)
    rgb = images.expand(-1, 3, -1, -1).contiguous()

    mae = mae_vit_micro_patch4(img_size=16, depth=1, decoder_depth=1)
    losses = _fp16_step(mae, lambda m: m(images)[0])
    assert all(torch.isfinite(torch.tensor(losses)))

    vit = VisionTransformer(
        img_size=16, patch_size=4, in_chans=3, embed_dim=32, depth=1, num_heads=2, num_classes=0
    )
    simple = SimpleMAE(vit, decoder_dim=32)
    assert all(torch.isfinite(torch.tensor(_fp16_step(simple, lambda m: m(rgb)))))

    config = ViTMAEConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, decoder_hidden_size=32,
        decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=64,
    )  # fmt: skip
    hf = ViTMAEForPreTraining(config)
    assert all(torch.isfinite(torch.tensor(_fp16_step(hf, lambda m: m(rgb).loss))))


def test_fp16_decoder_matches_float32_closely() -> None:
    """The fp16 scatter of visible tokens and mask tokens puts every token where float32 does."""
    torch.manual_seed(0)
    model = mae_vit_micro_patch4(img_size=16, depth=1, decoder_depth=1).eval()
    images = _smooth_images(2, 16, seed=2)
    noise = torch.rand(2, 16)
    with torch.no_grad():
        full_loss, full_pred, full_mask = model(images, noise=noise)
        with torch.autocast("cpu", dtype=torch.float16):
            half_loss, half_pred, half_mask = model(images, noise=noise)
    assert torch.equal(full_mask, half_mask)
    torch.testing.assert_close(half_pred.float(), full_pred, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(half_loss, full_loss, atol=1e-2, rtol=1e-2)


def test_loss_does_not_overflow_for_large_fp16_errors() -> None:
    """Squared errors of fp16 predictions around 300 exceed fp16's range (65504); the loss
    squares in float32."""
    pred = torch.full((1, 2, 3), 300.0, dtype=torch.float16)
    target = torch.zeros(1, 2, 3, dtype=torch.float16)
    loss = MAELoss()(pred, target)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(90000.0)


# --- Lightning precision plugins through the CLI -----------------------------------------------
def _pretrain_with_precision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], precision: str, accelerator: str
) -> dict[str, object]:
    out_dir = tmp_path / precision
    argv = ["pretrain", *TINY_RUN, "--epochs", "1", "--precision", precision, "--logger", "none"]
    argv += ["--accelerator", accelerator, "--output-dir", str(out_dir)]  # overrides TINY_RUN's
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    metrics: dict[str, object] = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["steps"] == 4
    for key in ("train_loss", "val_loss"):
        value = metrics[key]
        assert isinstance(value, float) and value > 0, (key, value)  # None if non-finite
    weights = checkpoint_weights(out_dir / "last.ckpt")
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in weights.values())
    return metrics


def test_cli_trains_with_bf16_mixed_precision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _pretrain_with_precision(tmp_path, capsys, "bf16-mixed", "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 AMP needs a CUDA device")
def test_cli_trains_with_fp16_mixed_precision_on_cuda(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _pretrain_with_precision(tmp_path, capsys, "16-mixed", "cuda")
