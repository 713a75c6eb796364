#!/usr/bin/env bash
# The fast path on one GPU (H100/H200), in one prepared run of under 9 minutes:
#
#   bash benchmarks/gpu_check.sh OUT            # CUDA: the real sizes
#   bash benchmarks/gpu_check.sh --smoke OUT    # CPU: the same code path, tiny sizes (tests)
#
# Writes OUT/gpu_check.json and OUT/gpu_check.md, plus each benchmark's own JSON/Markdown and
# logs in OUT. Every section calls an existing benchmark (benchmarks/speed.py,
# benchmarks/epoch_time.py, ssl-mae pretrain) under a time limit; a section that fails or runs
# out of time is reported as such and the others still run. Sections:
#
#   vit_b16         ViT-B/16 MAE training step at batch 256, interleaved: ours with the fast
#                   path (bf16 + fused AdamW + compile), ours eager fp32, Lightly's recipe,
#                   transformers ViTMAEForPreTraining (Lightly and HF under bf16 autocast):
#                   img/s, MFU (ssl_mae.flops), peak memory
#   ablation        ViT-B/16: eager fp32 -> +bf16 -> +fused AdamW -> +compile (speed.py
#                   --ablation), then the data path with that step: host DataLoader vs
#                   GPU-resident uint8 + on-device augmentation (epoch_time.py)
#   fashion_mnist   2 epochs of `ssl-mae pretrain` with its defaults (the second epoch's
#                   img/s, i.e. after compilation) vs the pure compute of the same model and
#                   batch on one fixed batch (epoch_time.py)
#   vit_l16         ViT-L/16 at batch 128: ours (fast path) vs Lightly (last: the least needed)
#
# GPU_CHECK_LIMIT=SECONDS caps each section on CUDA (default 170). The compiled sections share
# Inductor's on-disk cache (FX graph cache), so a later section reuses the kernels of a graph
# an earlier one compiled.
#
# Installs nothing: it uses $PYTHON, else .venv/bin/python (scripts/setup.sh creates it).
set -euo pipefail

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then
    SMOKE=1
    shift
fi
if [ $# -ne 1 ]; then
    echo "usage: bash benchmarks/gpu_check.sh [--smoke] OUT" >&2
    exit 2
fi
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
if [ ! -x "$PY" ]; then
    echo "gpu_check: no Python at $PY; run scripts/setup.sh first (or set PYTHON)" >&2
    exit 2
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

if [ "$SMOKE" = 1 ]; then
    DEVICE=cpu
    export OMP_NUM_THREADS=1  # a shared CPU: one thread per process avoids parked-thread barriers
    B16=tiny; L16=tiny; B16_BATCH=4; L16_BATCH=4
    TIMING=(--repeats 1 --steps 1 --warmup 1 --threads 1)
    COMPILE=off  # compiling on a CPU takes minutes; the fast rows run eagerly
    PRESET=mae_vit_micro_patch4; MODEL=micro
    FM=(--limit-train-images 256 --limit-test-images 64 --batch-size 32 --accelerator cpu
        --gpu-data on)
    EPOCH=(--num-images 256 --batch-size 32 --max-steps 8 --repeats 1 --warmup 1 --workers 0)
    LIMIT=600  # generous: a shared CPU can be many times slower than an idle one
else
    DEVICE=cuda
    B16=vit-b16-224; L16=vit-l16-224; B16_BATCH=256; L16_BATCH=128
    TIMING=(--repeats 3 --steps 8 --warmup 3)
    COMPILE=on
    PRESET=mae_vit_tiny_patch4; MODEL=tiny
    FM=(--batch-size 256)
    EPOCH=(--batch-size 256 --repeats 3 --warmup 3 --workers 8)
    LIMIT=${GPU_CHECK_LIMIT:-170}  # seconds per section; a lease of 15 minutes wants less
fi
STATUS="$OUT/status.txt"
: >"$STATUS"

# run NAME COMMAND...: runs one section under the time limit, records its exit status.
run() {
    local name=$1
    shift
    echo "[gpu_check] $name: $*" >&2
    local rc=0
    timeout "$LIMIT" "$@" >"$OUT/$name.log" 2>&1 || rc=$?
    echo "$name $rc" >>"$STATUS"
    [ "$rc" = 0 ] || echo "[gpu_check] $name failed with status $rc (see $OUT/$name.log)" >&2
}

SPEED=("$PY" benchmarks/speed.py --device "$DEVICE" --compile "$COMPILE" "${TIMING[@]}")
run vit_b16 "${SPEED[@]}" --configs "$B16" --batch-size "$B16_BATCH" \
    --impls ssl_mae+fast,ssl_mae-fp32,lightly,hf --json "$OUT/vit_b16.json"
run ablation "${SPEED[@]}" --configs "$B16" --batch-size "$B16_BATCH" --ablation \
    --json "$OUT/ablation.json"
run data_path "$PY" benchmarks/epoch_time.py --dataset fashion-mnist --model "$MODEL" \
    --device "$DEVICE" --compile "$COMPILE" --host-loader "${EPOCH[@]}" \
    --json "$OUT/data_path.json"
run pretrain "$PY" -m ssl_mae.cli pretrain --dataset fashion_mnist --preset "$PRESET" \
    --img-size 28 --epochs 2 --no-knn --no-report --no-progress --overwrite \
    --output-dir "$OUT/pretrain" "${FM[@]}"
run vit_l16 "${SPEED[@]}" --configs "$L16" --batch-size "$L16_BATCH" \
    --impls ssl_mae+fast,lightly --json "$OUT/vit_l16.json"

"$PY" - "$OUT" "$SMOKE" <<'PY'
"""Collects the sections' results into gpu_check.json and gpu_check.md."""
import csv
import json
import sys
from pathlib import Path

out, smoke = Path(sys.argv[1]), sys.argv[2] == "1"
status = dict(line.split() for line in (out / "status.txt").read_text().splitlines())


def load(name):
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if status.get(name) == "0" and path.exists() else None


def fmt(value, digits=3):
    return "n/a" if value is None else f"{value:.{digits}g}"


def speed_rows(result):
    rows = []
    for row in result["results"] if result else []:
        ratio = row["ratio_to_reference"]
        memory = row["peak_memory_mb"]
        rows.append({
            "config": row["config"],
            "row": row["implementation"],
            "precision": row["precision"],
            "batch": row["batch_size"],
            "img_per_s": row["img_per_s"]["median"],
            "mfu": row["mfu"],
            "peak_memory_mb": memory["median"] if memory else None,
            "ratio": ratio["median"] if ratio else None,
            "reference": row["reference"],
        })
    return rows


report = {"smoke": smoke, "status": status}
for name in ("vit_b16", "vit_l16", "ablation"):
    result = load(name)
    report[name] = {"machine": result["machine"] if result else None, "rows": speed_rows(result)}

data_path = load("data_path")
report["data_path"] = data_path
fashion = {"pretrain_img_per_s": None, "compute_img_per_s": None, "ratio": None}
metrics_csv = out / "pretrain" / "logs" / "version_0" / "metrics.csv"
if status.get("pretrain") == "0" and metrics_csv.exists():
    epochs = [r for r in csv.DictReader(metrics_csv.open()) if r.get("throughput")]
    if epochs:  # the last epoch's images per second: after compilation and warm-up
        fashion["pretrain_img_per_s"] = float(epochs[-1]["throughput"])
        fashion["epochs_logged"] = len(epochs)
    config = (out / "pretrain" / "config.yaml").read_text()
    fashion["config"] = {
        line.split(":")[0]: line.split(":", 1)[1].strip()
        for line in config.splitlines()
        if line.split(":")[0] in ("precision", "compile", "fused_adamw", "gpu_data",
                                  "check_loss_every_n_steps", "batch_size", "preset")
    }
if data_path:
    fashion["compute_img_per_s"] = data_path["compute_img_per_s"]
if fashion["pretrain_img_per_s"] and fashion["compute_img_per_s"]:
    fashion["ratio"] = fashion["compute_img_per_s"] / fashion["pretrain_img_per_s"]
report["fashion_mnist"] = fashion
(out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))

lines = ["# gpu_check" + (" (smoke run on the CPU: tiny sizes, numbers mean nothing)" if smoke else ""), ""]
machine = next((report[n]["machine"] for n in ("vit_b16", "vit_l16", "ablation") if report[n]["machine"]), None)
lines += [f"Machine: `{json.dumps(machine, default=str)}`", ""]
lines += ["Sections: " + ", ".join(f"{k} {'ok' if v == '0' else 'FAILED (' + v + ')'}" for k, v in status.items()), ""]
titles = {
    "vit_b16": "ViT-B/16 training step (interleaved)",
    "vit_l16": "ViT-L/16 training step, ours vs Lightly",
    "ablation": "Ablation of the training step",
}
for name, title in titles.items():
    lines += [f"## {title}", "", "| config | row | precision | batch | img/s | MFU | peak MB | × reference |", "|---|---|---|---|---|---|---|---|"]
    for r in report[name]["rows"]:
        ratio = f"{fmt(r['ratio'])} × {r['reference']}" if r["ratio"] is not None else "n/a"
        mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f} %"
        lines.append(f"| {r['config']} | {r['row']} | {r['precision']} | {r['batch']} | {fmt(r['img_per_s'])} | {mfu} | {fmt(r['peak_memory_mb'], 4)} | {ratio} |")
    lines.append("")
lines += ["## Data path with the fast step (Fashion-MNIST)", "", "| path | img/s | × compute time |", "|---|---|---|"]
for r in (data_path or {}).get("results", []):
    lines.append(f"| {r['path']} | {fmt(r['img_per_s'])} | {fmt(r['ratio_to_compute']['median'])} |")
lines += ["", "## Fashion-MNIST epoch through ssl-mae pretrain", "", "| measure | value |", "|---|---|"]
lines.append(f"| ssl-mae pretrain img/s (last epoch) | {fmt(fashion['pretrain_img_per_s'])} |")
lines.append(f"| pure compute img/s (same model and batch) | {fmt(fashion['compute_img_per_s'])} |")
lines.append(f"| epoch time / compute time | {fmt(fashion['ratio'])} |")
lines.append(f"| resolved fast path | `{json.dumps(fashion.get('config'))}` |")
(out / "gpu_check.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
