#!/usr/bin/env bash
# The main job: pre-train the default MAE on Fashion-MNIST (CPU friendly; the recipe chosen on a
# validation split, docs/benchmarks.md), evaluate it on the official test split with kNN and a
# linear probe on the concatenated features of the last 4 blocks, and draw reconstructions.
# Run after scripts/setup.sh:
#
#     bash scripts/setup.sh && bash scripts/main_job.sh
#
# Output in runs/main (or $1): config.yaml, last.ckpt, best.ckpt (with .sha256 checksums), logs/,
# metrics.json, report.md with report/*.png, knn.json, linear.json, reconstruction.png.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${1:-runs/main}"
if [ -x .venv/bin/ssl-mae ]; then
    SSL_MAE=.venv/bin/ssl-mae
else
    SSL_MAE=ssl-mae
fi

start=$(date +%s)
"$SSL_MAE" pretrain --output-dir "$OUT" --overwrite
"$SSL_MAE" evaluate --checkpoint "$OUT/last.ckpt" --protocol knn --layers 4 --output "$OUT/knn.json"
"$SSL_MAE" evaluate --checkpoint "$OUT/last.ckpt" --protocol linear --layers 4 \
    --output "$OUT/linear.json"
"$SSL_MAE" reconstruct --checkpoint "$OUT/last.ckpt" --output "$OUT/reconstruction.png"
echo "[main_job] done in $(( $(date +%s) - start )) s; results in $OUT"
