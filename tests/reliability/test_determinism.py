"""Same seed, same loss curve on CPU, bit for bit: in a plain loop over the blocks, through
``ssl-mae pretrain`` whatever the number of DataLoader workers, and across the PyTorch and
Lightning example flavours with options ``tests/test_examples.py`` does not exercise
(norm-pix targets, another mask ratio, worker processes on one side only).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from examples_harness import run_lightning, run_pytorch
from timm.models.vision_transformer import VisionTransformer

from ssl_mae.models import SimpleMAE, mae_vit_micro_patch4

from .conftest import TINY_RUN, one_thread, run_cli


# --- a plain loop over the blocks --------------------------------------------------------------
def _mae_curve(seed: int, steps: int = 6) -> list[float]:
    torch.manual_seed(seed)
    model = mae_vit_micro_patch4(img_size=16, depth=2, decoder_depth=1, norm_pix_loss=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        loss, _, _ = model(images, mask_ratio=0.6, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _simple_mae_curve(seed: int, steps: int = 4) -> list[float]:
    torch.manual_seed(seed)
    vit = VisionTransformer(
        img_size=16, patch_size=4, in_chans=3, embed_dim=32, depth=1, num_heads=2, num_classes=0,
        reg_tokens=2,
    )  # fmt: skip
    model = SimpleMAE(vit, decoder_dim=32, masking_ratio=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        loss = model.forward_with_outputs(images, generator=generator).loss
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("curve", [_mae_curve, _simple_mae_curve], ids=["MAE", "SimpleMAE"])
def test_same_seed_same_curve_in_a_plain_loop(curve: object) -> None:
    assert callable(curve)
    with one_thread():  # two threads on two shared cores mostly wait for each other
        first, second, other = curve(0), curve(0), curve(1)
    assert first == second
    assert first != other
    assert all(torch.isfinite(torch.tensor(first)))


# --- the CLI with and without worker processes -------------------------------------------------
def _logged_losses(out_dir: Path) -> list[float]:
    (metrics_csv,) = (out_dir / "logs").glob("version_*/metrics.csv")
    with metrics_csv.open() as file:
        return [float(row["train_loss"]) for row in csv.DictReader(file) if row["train_loss"]]


def test_cli_loss_curve_does_not_depend_on_the_number_of_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)  # seed_everything sets it
    curves = {}
    for workers in ("0", "2"):
        out_dir = tmp_path / f"workers{workers}"
        argv = ["pretrain", *TINY_RUN, "--epochs", "2", "--seed", "5", "--log-every-n-steps", "1"]
        argv += ["--num-workers", workers, "--mask-ratio", "0.6", "--output-dir", str(out_dir)]
        with one_thread():
            code, _, err = run_cli(argv, capsys)
        assert code == 0, err
        curves[workers] = _logged_losses(out_dir)
    assert len(curves["0"]) == 8
    assert curves["0"] == curves["2"]


# --- the PyTorch and Lightning example flavours ------------------------------------------------
# 24 images in batches of 8 for 3 epochs: the curves cross two epoch boundaries.
_TINY_EXAMPLE = [
    "--patch-size", "7", "--embed-dim", "32", "--depth", "2", "--num-heads", "2",
    "--decoder-embed-dim", "32", "--decoder-depth", "1", "--decoder-num-heads", "2",
    "--limit-images", "24", "--batch-size", "8", "--epochs", "3",
    "--base-lr", "0.05", "--norm-pix-loss", "--mask-ratio", "0.6",
]  # fmt: skip


def _example_losses(name: str, out_dir: Path, *extra: str) -> list[float]:
    args = [*_TINY_EXAMPLE, "--output-dir", str(out_dir), *extra]
    with one_thread():
        if name == "pytorch":
            return run_pytorch([*args, "--device", "cpu"])
        return run_lightning(name, [*args, "--accelerator", "cpu"], out_dir / "record").losses


def test_pytorch_and_lightning_flavours_agree_bit_for_bit_with_norm_pix_and_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")  # seed_everything sets it: removed afterwards
    monkeypatch.delenv("PL_GLOBAL_SEED")
    monkeypatch.chdir(tmp_path)
    plain = _example_losses("pytorch", tmp_path / "pt", "--num-workers", "2", "--seed", "3")
    lightning = _example_losses("lightning", tmp_path / "pl", "--num-workers", "0", "--seed", "3")
    other_seed = _example_losses("pytorch", tmp_path / "pt4", "--num-workers", "0", "--seed", "4")
    capsys.readouterr()
    assert len(plain) == 9
    assert all(torch.isfinite(torch.tensor(plain)))
    assert plain == lightning
    assert plain != other_seed
