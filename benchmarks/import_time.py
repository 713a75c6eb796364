"""How long importing ``ssl_mae`` takes, as a ratio to importing torch, measured in one run.

Each statement runs in a fresh interpreter (``python -X importtime`` is not used: it slows the
imports it measures). The statements are interleaved — every repeat runs each of them once, in
a rotating order — so a busy machine slows them alike, and the report gives per statement the
median and the spread of the wall-clock time and the median ratio to ``import torch``.

Usage:
    python benchmarks/import_time.py                       # 7 repeats, the default statements
    python benchmarks/import_time.py --repeats 11 --json benchmarks/results/import_time.json

Target (issue: one MAE core): ``import ssl_mae`` within 1.3x of ``import torch``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Label → Python statement. ``import torch`` is the reference every ratio divides by.
STATEMENTS: dict[str, str] = {
    "import torch": "import torch",
    "import ssl_mae": "import ssl_mae",
    "from ssl_mae import blocks": (
        "from ssl_mae import patchify, MaskedVisionTransformer, MAEDecoder, MAELoss"
    ),
    "from ssl_mae import MaskedAutoencoder": "from ssl_mae import MaskedAutoencoder",
    "import ssl_mae.cli": "import ssl_mae.cli",
}


def time_statement(statement: str) -> float:
    """Wall-clock seconds of a fresh ``python -c statement``."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - started


def measure(repeats: int) -> dict[str, Any]:
    """Interleaved timings of :data:`STATEMENTS`, ``repeats`` rounds."""
    labels = list(STATEMENTS)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for statement in STATEMENTS.values():  # warm the file cache once, untimed
        time_statement(statement)
    for round_index in range(repeats):
        shift = round_index % len(labels)
        for label in labels[shift:] + labels[:shift]:
            times[label].append(time_statement(STATEMENTS[label]))
    reference = times["import torch"]
    rows = {}
    for label in labels:
        ratios = [value / ref for value, ref in zip(times[label], reference, strict=True)]
        rows[label] = {
            "statement": STATEMENTS[label],
            "median_s": statistics.median(times[label]),
            "min_s": min(times[label]),
            "max_s": max(times[label]),
            "median_ratio_to_torch": statistics.median(ratios),
        }
    return rows


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints a Markdown table (and writes JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="rounds (default: 7)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be at least 5 (the median of fewer is not worth reporting)")
    started = time.perf_counter()
    load_before = os.getloadavg()
    rows = measure(args.repeats)
    report = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": os.getloadavg(),
        },
        "repeats": args.repeats,
        "wall_clock_s": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    print("| statement | median s | min–max s | median ratio to `import torch` |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows.values():
        print(
            f"| `{row['statement']}` | {row['median_s']:.2f} | {row['min_s']:.2f}–"
            f"{row['max_s']:.2f} | {row['median_ratio_to_torch']:.2f} |"
        )
    print(f"load before/after: {load_before} / {report['machine']['load_after']}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
