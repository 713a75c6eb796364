"""How fast ``ssl-mae --help`` answers, against ``python -c "import torch"``.

Each command is started as a fresh process ``--repeats`` times, interleaved (torch, then every
``--help``, then torch again, ...) so that a change in the machine's load affects all of them;
the table gives the median wall-clock time and its ratio to the median of ``import torch``. The
target is a ratio under 1.5: building the parser imports torch (the dataset and preset tables)
but no model code, Lightning, timm or torchvision.

Usage:
    python benchmarks/cli_help_time.py --repeats 7 --output help_time.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS: dict[str, list[str]] = {
    "import torch": ["-c", "import torch"],
    "ssl-mae --help": ["-m", "ssl_mae.cli", "--help"],
    **{
        f"ssl-mae {name} --help": ["-m", "ssl_mae.cli", name, "--help"]
        for name in ("pretrain", "evaluate", "export", "embed", "reconstruct", "presets")
    },
}


def _time(arguments: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *arguments], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (default 5)")
    parser.add_argument("--output", default=None, help="also write the table as JSON")
    args = parser.parse_args()
    _time(COMMANDS["import torch"])  # warm the file cache once
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, arguments in COMMANDS.items():
            times[name].append(_time(arguments))
    reference = statistics.median(times["import torch"])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append({"command": name, "median_s": median, "ratio": median / reference,
                     "min_s": min(values), "max_s": max(values)})  # fmt: skip
        print(f"{name:<32} {median:6.2f} s  ({median / reference:4.2f}x import torch; "
              f"min {min(values):.2f}, max {max(values):.2f})")  # fmt: skip
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
