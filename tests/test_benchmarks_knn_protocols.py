"""Smoke test of benchmarks/knn_protocols.py: the protocol is chosen on the validation split and
the test rows score exactly what they name."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from benchmark_scripts import load_benchmark, require_fashion_mnist

from ssl_mae.evaluation import knn_accuracy


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    require_fashion_mnist()
    return load_benchmark("knn_protocols.py", "benchmark_knn_protocols")


def test_pixel_rows_choose_on_validation_and_score_the_test_split(
    bench: ModuleType, tmp_path: Path
) -> None:
    output = tmp_path / "knn.json"
    argv = ["--limit", "700", "--num-validation", "200", "--k", "5", "200", "--temperatures",
            "0.02", "0.07", "--threads", "1", "--also", "center:3:0.1",
            "--output", str(output)]  # fmt: skip
    result = bench.main(argv)
    assert json.loads(output.read_text())["rows"] == result["rows"]
    validation = [row for row in result["rows"] if row["split"] == "validation"]
    test = {row["protocol"]: row for row in result["rows"] if row["split"] == "test"}
    assert len(validation) == 3 * 2 * 2 and {row["features"] for row in validation} == {"pixels"}
    best = max(validation, key=lambda row: row["top1"])
    chosen = test["best on validation"]
    assert (chosen["transform"], chosen["k"], chosen["temperature"]) == (
        best["transform"], best["k"], best["temperature"])  # fmt: skip
    # The fixed row is the earlier protocol, computed here independently on the same images.
    from ssl_mae.data import load_fashion_mnist

    train_x, train_y = load_fashion_mnist(train=True, download=False)
    test_x, test_y = load_fashion_mnist(train=False, download=False)
    bank, queries = bench.pixels(train_x[:700]), bench.pixels(test_x[:700])
    expected = knn_accuracy(bank, train_y[:700], queries, test_y[:700], 10, k=200, temperature=0.07)
    assert test["fixed"]["top1"] == pytest.approx(100 * float(expected["top1"]))
    also = test["--also center:3:0.1"]
    assert (also["transform"], also["k"], also["temperature"]) == ("center", 3, 0.1)
    with pytest.raises(SystemExit):
        bench.main(["--no-pixels"])  # nothing to score
    with pytest.raises(SystemExit):
        bench.main(["--also", "whiten:3:0.1"])


def test_block_tokens_keep_every_patch_of_the_named_block(bench: ModuleType) -> None:
    import torch

    from ssl_mae.models.presets import build_model

    encoder = build_model("mae_vit_micro_patch7", embed_dim=32, num_heads=2).masked_autoencoder
    encoder = encoder.encoder.eval()
    images = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    tokens = bench.block_tokens(encoder, images, [1, 4], batch_size=2)
    with torch.no_grad():
        _, per_block = encoder.forward_intermediates(images, norm=True)
    assert set(tokens) == {1, 4}
    for block in (1, 4):
        assert tokens[block].shape == (5, 16 * 32)  # 16 patches of width 32, no class token
        expected = per_block[block - 1][:, 1:].reshape(5, -1)
        torch.testing.assert_close(tokens[block], expected)
    assert not torch.equal(tokens[1], tokens[4])
    with pytest.raises(ValueError, match="block must be in"):
        bench.block_tokens(encoder, images, [5])
    with pytest.raises(SystemExit):
        bench.main(["--token-blocks", "1"])  # needs a checkpoint
