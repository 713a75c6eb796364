"""The speed benchmarks run end to end on a tiny configuration (CPU, two repeats)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from benchmark_scripts import load_benchmark


def _load(name: str) -> ModuleType:
    return load_benchmark(f"{name}.py", f"_bench_{name}")


@pytest.fixture(scope="module")
def speed() -> ModuleType:
    return _load("speed")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny steps: starting a second thread would cost more than it saves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_speed_benchmark_runs_end_to_end(
    speed: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "speed.json"
    table = tmp_path / "speed.md"
    result = speed.main(
        ["--device", "cpu", "--configs", "tiny", "--repeats", "2", "--steps", "1",
         "--warmup", "1", "--json", str(out), "--markdown", str(table), "--quiet"]
    )  # fmt: skip
    assert json.loads(out.read_text())["results"] == json.loads(json.dumps(result["results"]))
    rows = {row["implementation"]: row for row in result["results"]}
    installed = [name for name in speed.IMPLEMENTATIONS if speed._available(name)]
    assert list(rows) == [name for name in installed if name != "ssl_mae+compile"]
    for row in rows.values():
        assert len(row["img_per_s_samples"]) == 2
        assert all(sample > 0 for sample in row["img_per_s_samples"])
        assert row["flops_per_image"] > 0 and row["mfu"] is None  # no MFU on a CPU
        if row["peak_memory_mb"] is not None:
            assert row["peak_memory_mb"]["median"] > 0
    lightly = rows["lightly"]
    assert all(row["reference"] == "lightly" for row in rows.values())
    assert lightly["ratio_to_reference"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    ours = rows["ssl_mae"]
    ratios = [
        a / b for a, b in zip(ours["img_per_s_samples"], lightly["img_per_s_samples"], strict=True)
    ]
    assert ours["ratio_to_reference"]["median"] == pytest.approx(sum(ratios) / 2)
    # Same architecture, so the same parameters receive gradients.
    assert ours["params_trained"] == lightly["params_trained"] == rows["hf"]["params_trained"]
    printed = capsys.readouterr().out
    assert printed.strip() == table.read_text().strip()
    assert printed.count("| tiny |") == len(rows)


@pytest.mark.usefixtures("one_thread")
def test_speed_benchmark_ablation(speed: ModuleType) -> None:
    result = speed.main(
        ["--device", "cpu", "--configs", "tiny", "--repeats", "1", "--steps", "1",
         "--warmup", "1", "--ablation", "--quiet"]
    )  # fmt: skip
    rows = [row["implementation"] for row in result["results"]]
    assert rows == ["eager-fp32", "+bf16", "+bf16+fused"]  # no compile row on a CPU by default
    assert result["results"][0]["ratio_to_reference"]["median"] == 1.0
    assert all(row["reference"] == "eager-fp32" for row in result["results"])


def test_speed_benchmark_rejects_unknown_names(speed: ModuleType) -> None:
    with pytest.raises(SystemExit, match="unknown"):
        speed.main(["--device", "cpu", "--configs", "vit-huge", "--quiet"])
    with pytest.raises(SystemExit, match="unknown"):
        speed.main(["--device", "cpu", "--configs", "tiny", "--impls", "timm", "--quiet"])
    with pytest.raises(SystemExit):  # argparse error: at least one warm-up step
        speed.main(["--device", "cpu", "--configs", "tiny", "--warmup", "0", "--quiet"])


@pytest.mark.usefixtures("one_thread")
def test_epoch_time_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    epoch_time = _load("epoch_time")
    out = tmp_path / "epoch.json"
    result = epoch_time.main(
        ["--device", "cpu", "--dataset", "synthetic", "--image-size", "16", "--model", "micro",
         "--num-images", "12", "--batch-size", "4", "--max-steps", "2", "--warmup", "1",
         "--repeats", "1", "--host-loader", "--workers", "0", "--json", str(out), "--quiet"]
    )  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    paths = {row["path"]: row for row in result["results"]}
    assert list(paths) == ["compute", "gpu_resident", "host_dataloader"]
    assert paths["compute"]["ratio_to_compute"]["median"] == 1.0
    assert result["steps_per_run"] == 2 and result["steps_per_epoch"] == 3
    for row in paths.values():
        assert row["img_per_s"] > 0
        assert row["epoch_seconds_projected"] == pytest.approx(row["seconds"]["median"] * 3 / 2)
