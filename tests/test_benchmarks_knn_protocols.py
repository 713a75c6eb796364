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
