"""``benchmarks/gpu_check.sh --smoke`` runs every section of the GPU check on the CPU with tiny
sizes and writes the JSON and Markdown reports with the expected rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # five benchmark processes: 1-2 minutes on 2 idle cores, far more when shared
def test_gpu_check_smoke_writes_every_section(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    process = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--smoke", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["smoke"] is True
    assert report["status"] == {
        name: "0" for name in ("vit_b16", "vit_l16", "ablation", "data_path", "pretrain")
    }, process.stderr[-3000:]
    rows = {name: [r["row"] for r in report[name]["rows"]] for name in ("vit_b16", "vit_l16")}
    assert rows == {
        "vit_b16": ["ssl_mae+fast", "ssl_mae-fp32", "lightly", "hf"],
        "vit_l16": ["ssl_mae+fast", "lightly"],
    }
    ablation = [r["row"] for r in report["ablation"]["rows"]]
    assert ablation == ["eager-fp32", "+bf16", "+bf16+fused"]  # no compile row on the CPU
    for row in report["vit_b16"]["rows"] + report["ablation"]["rows"]:
        assert row["img_per_s"] > 0 and row["peak_memory_mb"] is not None
    paths = [r["path"] for r in report["data_path"]["results"]]
    assert paths == ["compute", "gpu_resident", "host_dataloader"]
    fashion = report["fashion_mnist"]
    assert fashion["pretrain_img_per_s"] > 0 and fashion["compute_img_per_s"] > 0
    assert fashion["epochs_logged"] == 2
    assert fashion["config"]["gpu_data"] == "'on'" and fashion["config"]["compile"] == "'off'"
    markdown = (tmp_path / "gpu_check.md").read_text()
    for heading in (
        "## ViT-B/16 training step (interleaved)",
        "## ViT-L/16 training step, ours vs Lightly",
        "## Ablation of the training step",
        "## Data path with the fast step (Fashion-MNIST)",
        "## Fashion-MNIST epoch through ssl-mae pretrain",
    ):
        assert heading in markdown
    assert "| tiny | ssl_mae+fast | torch.bfloat16 | 4 |" in markdown
    assert "| gpu_resident |" in markdown and "FAILED" not in markdown
