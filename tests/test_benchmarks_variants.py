"""Smoke test of benchmarks/variants.py (equal wall-clock comparison of the MAE variants) on a
tiny subset of Fashion-MNIST."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
import torch
from benchmark_scripts import load_benchmark, require_fashion_mnist

TINY = [
    "--presets", "mae_vit_micro_patch4", "mae_pixio_micro_patch4",
    "mae_vit_micro_patch4@decode=0.25", "lightly_mae_micro_patch7_dec1", "--budget-s", "1",
    "--seeds", "0", "--train-subset", "256", "--test-subset", "64", "--batch-size", "64",
    "--calibration-rounds", "1", "--steps-per-round", "1", "--probe-epochs", "1",
    "--knn-k", "10", "--threads", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    require_fashion_mnist()
    return load_benchmark("variants.py", "benchmark_variants")


def test_equal_wall_clock_budget_follows_the_measured_throughput(
    bench: ModuleType, tmp_path: Path
) -> None:
    result = bench.main([*TINY, "--output-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "variants.json").read_text())
    assert saved["calibration_steps_per_s"] == result["calibration_steps_per_s"]
    rates = saved["calibration_steps_per_s"]
    runs = {run["preset"]: run for run in saved["runs"]}
    assert set(runs) == {
        "mae_vit_micro_patch4",
        "mae_pixio_micro_patch4",
        "mae_vit_micro_patch4@decode=0.25",
        "lightly_mae_micro_patch7_dec1",
    }
    for name, run in runs.items():
        assert run["steps"] == max(1, int(1.0 * rates[name]))  # budget x steps per second
        assert run["train_flops_per_image"] > 0 and run["images_per_s"] > 0
        for scores in run["evaluation"].values():
            assert 0 <= scores["knn_top1"] <= 100 and 0 <= scores["linear_top1"] <= 100
    # Pixio-style has class + 3 register tokens: its image feature is their mean.
    assert set(runs["mae_pixio_micro_patch4"]["evaluation"]) == {"cls", "mean", "prefix"}
    assert set(runs["mae_vit_micro_patch4"]["evaluation"]) == {"cls", "mean"}
    table = (tmp_path / "variants.md").read_text()
    assert table.count("| mae_pixio_micro_patch4 |") == 3
    # Partial decoding costs fewer FLOPs than decoding every masked token.
    partial = runs["mae_vit_micro_patch4@decode=0.25"]["train_flops_per_image"]
    assert partial < runs["mae_vit_micro_patch4"]["train_flops_per_image"]


def test_equal_epochs_gives_every_variant_the_same_steps(bench: ModuleType, tmp_path: Path) -> None:
    rows = ["mae_vit_micro_patch7", "mae_crossmae_micro_patch7"]
    tiny = [*TINY[TINY.index("--budget-s") :], "--presets", *rows, "--epochs", "2"]
    saved = bench.main([*tiny, "--output-dir", str(tmp_path)])
    # 256 images in batches of 64: 4 steps per epoch, 2 epochs, whatever each variant's speed.
    assert [run["steps"] for run in saved["runs"]] == [8, 8]
    assert saved["benchmark"] == "variants_equal_epochs" and not saved["calibration_steps_per_s"]
    assert (tmp_path / "variants.md").read_text().startswith("2 epochs of pretraining per run")
    with pytest.raises(SystemExit):
        bench.parse_args(["--epochs", "0"])


def test_rows_name_a_preset_a_decode_ratio_or_lightly(bench: ModuleType) -> None:
    assert bench.parse_row("mae_vit_micro_patch7") == ("mae_vit_micro_patch7", None, {})
    assert bench.parse_row("mae_vit_micro_patch7@decode=0.25").decode_ratio == 0.25
    for bad in ("0", "", "half"):
        with pytest.raises(ValueError, match="PRESET@decode=R"):
            bench.parse_row(f"mae_vit_micro_patch7@decode={bad}")
    with pytest.raises(SystemExit):
        bench.parse_args(["--presets", "no_such_preset"])
    # A preset keeps its own decoding share unless the row overrides it.
    assert bench.build_core("mae_crossmae_micro_patch7", 0).decode_ratio == 0.25
    assert bench.build_core("mae_crossmae_micro_patch7@decode=0.5", 0).decode_ratio == 0.5
    core = bench.build_core(bench.LIGHTLY, 0)
    images = torch.randn(2, 1, 28, 28)
    loss = core(images, generator=torch.Generator().manual_seed(0)).loss
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert core.encoder.encode(images).shape == (2, 17, 128)


def test_rows_choose_the_encoder_layers_crossmae_reads(bench: ModuleType) -> None:
    assert bench.build_core("mae_crossmae_micro_patch7", 0).decoder.encoder_layers == (2, -1)
    core = bench.build_core("mae_crossmae_micro_patch7@layers=3,-1", 0)
    assert core.decoder.encoder_layers == (3, -1) and core.decode_ratio == 0.25
    # Every block reading the encoder output is the decoder's default (no hidden states).
    assert (
        bench.build_core("mae_crossmae_micro_patch7@layers=-1,-1", 0).decoder.encoder_layers is None
    )
    both = bench.build_core("mae_crossmae_micro_patch7@decode=0.5@layers=none", 0)
    assert both.decoder.encoder_layers is None and both.decode_ratio == 0.5
    for bad in ("@layers=a,b", "@layer=-1,-1", "@layers=1"):
        with pytest.raises(ValueError):
            bench.build_core(f"mae_crossmae_micro_patch7{bad}", 0)
    with pytest.raises(SystemExit):
        bench.parse_args(["--presets", "mae_crossmae_micro_patch7@layers=x"])
    with pytest.raises(ValueError, match="needs a CrossMAE preset"):  # MAE's decoder reads one
        bench.build_core("mae_vit_micro_patch7@layers=-1,-1", 0)


def test_the_validation_split_holds_out_training_images_and_never_reads_the_test_split(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = []
    real_load = bench.fashion_mnist.load_fashion_mnist

    def recording_load(*args: object, **kwargs: object) -> object:
        loaded.append(kwargs.get("train"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(bench.fashion_mnist, "load_fashion_mnist", recording_load)
    tiny = [*TINY[TINY.index("--budget-s") :], "--presets", "mae_vit_micro_patch7_dec1"]
    result = bench.main([*tiny, "--epochs", "1", "--split", "val", "--val-size", "64",
                         "--output-dir", str(tmp_path)])  # fmt: skip
    assert loaded == [True]
    # 256 training images minus the 64 held out: 192 images, 3 steps of 64.
    assert result["train_images"] == 192 and result["evaluation_images"] == 64
    assert [run["steps"] for run in result["runs"]] == [3]
    assert "evaluated on the val split" in (tmp_path / "variants.md").read_text()
    with pytest.raises(SystemExit):
        bench.parse_args(["--split", "val", "--val-size", "0"])
