"""Recipe search for Fashion-MNIST MAE on a small CPU budget, on a validation split.

Three steps, each writing to ``benchmarks/results/search/``:

1. ``throughput``: training steps per second of every candidate on one thread, measured
   interleaved (every round runs each candidate for a few steps, in rotating order, so the load
   of a shared machine hits them alike); also the supervised (fine-tuning) step of each encoder.
   Writes ``throughput.json``.
2. ``run``: pretrains candidates for an equal compute budget (``--budget-s`` seconds of one
   core, turned into whole epochs with the measured throughput: ``epochs = budget * img/s /
   training images``) through ``benchmarks/fashion_mnist.py --split val``: the last 10 000
   training images are held out and are the only images the choice is made on; the test split
   is never read. Writes ``<candidate>.json`` / ``.md``.
3. ``table``: one Markdown table of every finished candidate (``search.md``).

    python benchmarks/fashion_mnist_search.py throughput
    python benchmarks/fashion_mnist_search.py run --budget-s 240 base p4 p4_dec1
    python benchmarks/fashion_mnist_search.py table
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fashion_mnist as bench

from ssl_mae.evaluation import FineTuneClassifier
from ssl_mae.training.optim import build_adamw, param_groups_weight_decay

RESULTS = bench.REPO_ROOT / "benchmarks" / "results" / "search"
TRAIN_IMAGES = 50_000  # the training images of the validation split
PROTOCOLS = ("cls", "mean", "mean-last2-cat", "mean-last4-cat", "mean-last4-avg", "cls-last4-cat")

_BASE = {
    "--patch-size": "7",
    "--embed-dim": "128",
    "--depth": "4",
    "--num-heads": "4",
    "--decoder-dim": "64",
    "--decoder-depth": "2",
    "--decoder-heads": "4",
    "--mask-ratio": "0.75",
    "--lr": "1.5e-3",
    "--batch-size": "256",
    "--min-scale": "0.5",
    "--decode-ratio": "1.0",
}


def _config(**changes: str) -> dict[str, str]:
    return {**_BASE, **{"--" + key.replace("_", "-"): value for key, value in changes.items()}}


#: Candidates: each changes a few options of the current default (``base``).
CANDIDATES: dict[str, dict[str, str]] = {
    "base": _config(),
    "p4": _config(patch_size="4"),
    "p4_dec1": _config(patch_size="4", decoder_depth="1"),
    "p4_dec1_dr50": _config(patch_size="4", decoder_depth="1", decode_ratio="0.5"),
    "p4_w96_dec1": _config(patch_size="4", embed_dim="96", num_heads="3", decoder_depth="1"),
    "p4_w192_dec1": _config(patch_size="4", embed_dim="192", num_heads="6", decoder_depth="1"),
    "p2_dec1_dr25": _config(patch_size="2", decoder_depth="1", decode_ratio="0.25"),
    "p7_dec1": _config(decoder_depth="1"),
    "p7_w256": _config(embed_dim="256", num_heads="8"),
    "p7_w192_d6": _config(embed_dim="192", num_heads="6", depth="6"),
    "p7_dec128x4": _config(decoder_dim="128", decoder_depth="4"),
    "p7_mask60": _config(mask_ratio="0.6"),
    "p7_normpix": _config(norm_pix="true"),
    "p7_lr3e-3": _config(lr="3e-3"),
    "p7_b128": _config(batch_size="128", lr="7.5e-4"),
    "p7_b128_lr1.5e-3": _config(batch_size="128"),
    "p7_scale0.2": _config(min_scale="0.2"),
    "p7_scale0.8": _config(min_scale="0.8"),
}


#: Lightly's own example settings (``examples/pytorch/mae.py``: decoder 512 wide with 16 heads,
#: ``AdamW(model.parameters(), lr=1.5e-4)`` with torch's defaults and no schedule, batch 256,
#: ``MAETransform``'s crop scale 0.2-1, mask 0.75, pixel targets) on Lightly's wiring; the
#: example's ViT-B/32 does not fit 28-px images, so the encoder is the candidate's. Lightly's
#: example decoder has had 1 block and 8 blocks across versions; the cheaper one is used.
LIGHTLY_EXAMPLE = {
    "--impl": "lightly",
    "--optimizer-recipe": "lightly-example",
    "--lr": "1.5e-4",
    "--batch-size": "256",
    "--decoder-dim": "512",
    "--decoder-depth": "1",
    "--decoder-heads": "16",
    "--min-scale": "0.2",
    "--mask-ratio": "0.75",
    "--decode-ratio": "1.0",
}


def lightly_example(name: str) -> str:
    """Registers (and returns the name of) Lightly's example recipe on a candidate's encoder."""
    key = f"lightly_example_{name}"
    CANDIDATES[key] = {**CANDIDATES[name], **LIGHTLY_EXAMPLE}
    return key


def candidate_args(name: str, config: dict[str, str] | None = None) -> list[str]:
    """Command-line options of ``benchmarks/fashion_mnist.py`` for a candidate."""
    config = CANDIDATES[name] if config is None else config
    args: list[str] = []
    for key, value in config.items():
        if key == "--norm-pix":
            args.append("--norm-pix" if value == "true" else "--no-norm-pix")
        else:
            args += [key, value]
    return args


# --------------------------------------------------------------------------------------------
# Throughput.


def _pretrain_step(name: str) -> tuple[nn.Module, Any]:
    args = bench.parse_args(candidate_args(name))
    model = bench.build_model(args.impl[0], args)
    optimizer = build_adamw(param_groups_weight_decay(model, args.weight_decay), lr=args.lr)
    data = bench.Split(torch.randint(0, 256, (args.batch_size * 2, 1, 28, 28), dtype=torch.uint8),
                       torch.zeros(args.batch_size * 2, dtype=torch.long))  # fmt: skip
    sequence_length = (28 // args.patch_size) ** 2 + 1
    stream = bench.pretraining_stream(data, args, sequence_length, torch.device("cpu"))
    batches = [next(stream)[1:] for _ in range(2)]

    def step(index: int) -> int:
        images, idx_keep, idx_mask = batches[index % 2]
        loss = model(images, idx_keep, idx_mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return int(images.shape[0])

    return model, step


def _supervised_step(name: str) -> tuple[nn.Module, Any]:
    args = bench.parse_args(candidate_args(name))
    classifier = FineTuneClassifier(bench.build_model("ours", args).backbone, 10, pool="mean")
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=1e-3)
    images = torch.randn(args.finetune_batch_size, 1, 28, 28)
    labels = torch.randint(0, 10, (args.finetune_batch_size,))

    def step(index: int) -> int:
        loss = nn.functional.cross_entropy(classifier(images), labels, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        optimizer.step()
        return int(images.shape[0])

    return classifier, step


def measure_throughput(names: Sequence[str], rounds: int, steps: int) -> dict[str, Any]:
    """Median img/s over ``rounds`` of ``steps`` steps per candidate, interleaved."""
    torch.set_num_threads(1)
    runners = {f"{name}/pretrain": _pretrain_step(name)[1] for name in names}
    runners |= {f"{name}/supervised": _supervised_step(name)[1] for name in names}
    for step in runners.values():  # warm-up
        step(0)
    samples: dict[str, list[float]] = {key: [] for key in runners}
    load_before = os.getloadavg()
    cpu = time.process_time()
    keys = list(runners)
    for round_index in range(rounds):
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            tic = time.perf_counter()
            images = sum(runners[key](i) for i in range(steps))
            samples[key].append(images / (time.perf_counter() - tic))
        print(f"round {round_index + 1}/{rounds} done", flush=True)
    return {
        "img_per_s": {key: statistics.median(values) for key, values in samples.items()},
        "img_per_s_min_max": {key: [min(v), max(v)] for key, v in samples.items()},
        "rounds": rounds,
        "steps": steps,
        "threads": 1,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_s": time.process_time() - cpu,
        "machine": bench.machine_info(torch.device("cpu")),
    }


def load_throughput(path: Path = RESULTS / "throughput.json") -> dict[str, float]:
    if not path.exists():
        raise SystemExit(f"{path} is missing: run the 'throughput' step first")
    rates: dict[str, float] = json.loads(path.read_text())["img_per_s"]
    return rates


#: Options that change the compute of a pretraining step; candidates that differ from ``base``
#: only in others (lr, batch, targets, crops) share its measured rate, which averages out part
#: of the noise of a shared machine.
COMPUTE_OPTIONS = (
    "--patch-size", "--embed-dim", "--depth", "--num-heads", "--decoder-dim",
    "--decoder-depth", "--decoder-heads", "--mask-ratio", "--decode-ratio",
)  # fmt: skip


def pretrain_rate(name: str, rates: dict[str, float]) -> float:
    """Measured img/s of a candidate's pretraining step (its compute twin's, see above)."""
    twins = [
        other
        for other, config in CANDIDATES.items()
        if all(config[key] == CANDIDATES[name][key] for key in COMPUTE_OPTIONS)
        and f"{other}/pretrain" in rates
    ]
    return statistics.median(rates[f"{other}/pretrain"] for other in twins)


def steps_for_budget(name: str, budget_s: float, rates: dict[str, float]) -> int:
    """Pretraining steps that ``budget_s`` seconds of one core buy at the measured rate."""
    batch_size = int(CANDIDATES[name]["--batch-size"])
    return max(1, round(budget_s * pretrain_rate(name, rates) / batch_size))


# --------------------------------------------------------------------------------------------
# Table.


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """One search-table row: the candidate's change, budget and validation accuracies."""
    run = next(r for r in result["runs"] if r["impl"] == "ours")
    last = run["evaluations"][-1]
    protocols = [p for p in result["config"]["pools"] if p in last]
    best_knn = max(protocols, key=lambda p: last[p]["knn_top1"])
    best_linear = max(protocols, key=lambda p: last[p]["linear_top1"])
    return {
        "name": result["config"]["name"].removeprefix("search_"),
        "epochs": round(run["steps"] / run["steps_per_epoch"], 2),
        "steps": run["steps"],
        "pretrain_wall_s": run["pretrain_wall_s"],
        "pretrain_cpu_s": run.get("pretrain_cpu_s"),
        "load": result.get("load_before"),
        "mean": last["mean"],
        "cls": last["cls"],
        "best_knn": (best_knn, last[best_knn]["knn_top1"]),
        "best_linear": (best_linear, last[best_linear]["linear_top1"]),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| candidate | change from base | epochs (steps) | pretrain wall / CPU (s) | load (1 min) "
        "| kNN mean | linear mean | kNN cls | linear cls | best kNN (protocol) "
        "| best linear (protocol) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in sorted(rows, key=lambda r: -r["best_linear"][1]):
        config = CANDIDATES.get(row["name"], {})
        change = ", ".join(
            f"{k.removeprefix('--')} {v}" for k, v in config.items() if _BASE.get(k) != v
        )
        cpu = f"{row['pretrain_cpu_s']:.0f}" if row["pretrain_cpu_s"] is not None else "-"
        load = f"{row['load'][0]:.1f}" if row["load"] else "-"
        lines.append(
            f"| {row['name']} | {change or '-'} | {row['epochs']} ({row['steps']}) "
            f"| {row['pretrain_wall_s']:.0f} / {cpu} | {load} "
            f"| {row['mean']['knn_top1']:.2f} | {row['mean']['linear_top1']:.2f} "
            f"| {row['cls']['knn_top1']:.2f} | {row['cls']['linear_top1']:.2f} "
            f"| {row['best_knn'][1]:.2f} ({row['best_knn'][0]}) "
            f"| {row['best_linear'][1]:.2f} ({row['best_linear'][0]}) |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Final rows on the test split, at equal one-core budgets.


def run_final(args: argparse.Namespace) -> None:
    """The recommended candidate (pretraining ``--budget-s``, then fine-tuning for
    ``--finetune-budget-s``), Lightly's example recipe for the same pretraining budget, and the
    same ViT trained from scratch for the sum of both budgets; budgets are converted to steps
    with the rates measured interleaved in ``--throughput``."""
    rates = load_throughput(args.throughput)
    name = args.name
    lightly = lightly_example(name)
    needed = [f"{name}/pretrain", f"{name}/supervised"]
    needed += [f"{lightly}/pretrain"] if "lightly" in args.arms else []
    missing = [key for key in needed if key not in rates]
    if missing:
        raise SystemExit(
            f"{args.throughput} has no measured rate for {missing}: run the 'throughput' step "
            f"for {name}" + (" with --lightly-example" if "lightly" in args.arms else "")
        )
    batch = int(CANDIDATES[name]["--batch-size"])
    supervised_batch = 256
    supervised_rate = rates[f"{name}/supervised"]
    pretrain_steps = round(args.budget_s * rates[f"{name}/pretrain"] / batch)
    finetune_steps = round(args.finetune_budget_s * supervised_rate / supervised_batch)
    scratch_steps = round(
        (args.budget_s + args.finetune_budget_s) * supervised_rate / supervised_batch
    )
    lightly_steps = round(args.budget_s * rates.get(f"{lightly}/pretrain", 0.0) / batch)
    per_epoch = 60_000 // supervised_batch
    common = [
        *("--baseline", "none", "--threads", "1", "--seed", str(args.seed), "--plot", ""),
        *("--eval-epochs", "--pools", *args.pools, "--output-dir", str(args.output_dir)),
        *("--split", args.split, "--finetune-lr", args.finetune_lr),
        *args.extra,
    ]
    plans = {
        "ours": [
            *candidate_args(name), "--impl", "ours",
            *("--epochs", str(-(-pretrain_steps // (60_000 // batch)))),
            *("--max-steps", str(pretrain_steps)),
            *("--finetune-epochs", str(-(-finetune_steps // per_epoch))),
            *("--finetune-max-steps", str(finetune_steps)),
            *(("--reconstruction", args.reconstruction) if args.reconstruction else ()),
        ],
        # The "ours" run again, for fine-tuning only: pretraining is deterministic on a CPU, so
        # the encoder is the one whose frozen features the "ours" run evaluated.
        "finetune": [
            *candidate_args(name), "--impl", "ours", "--skip-frozen-eval",
            *("--epochs", str(-(-pretrain_steps // (60_000 // batch)))),
            *("--max-steps", str(pretrain_steps)),
            *("--finetune-epochs", str(-(-finetune_steps // per_epoch))),
            *("--finetune-max-steps", str(finetune_steps)),
        ],
        "lightly": [
            *candidate_args(lightly),
            *("--epochs", str(-(-lightly_steps // (60_000 // batch)))),
            *("--max-steps", str(lightly_steps)),
        ],
        "scratch": [
            *candidate_args(name), "--impl", "none",
            *("--scratch-epochs", str(-(-scratch_steps // per_epoch))),
            *("--scratch-max-steps", str(scratch_steps)),
        ],
    }  # fmt: skip
    for arm in args.arms:
        stem = f"final_{arm}_{name}_s{args.seed}"
        print(f"[final] {stem}: {plans[arm]}", flush=True)
        bench.main([*plans[arm], *common, "--name", stem])


def _final_runs(directory: Path, arm: str, name: str) -> dict[int, dict[str, Any]]:
    runs = {}
    for path in sorted(directory.glob(f"final_{arm}_{name}_s*.json")):
        result = json.loads(path.read_text())
        runs[int(result["config"]["seed"])] = result
    return runs


def _spread(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}" if values else "-"
    return f"{statistics.mean(values):.2f} (spread {max(values) - min(values):.2f})"


def final_report(directory: Path, name: str) -> str:
    """Markdown tables of the ``final`` runs: frozen features of ours and Lightly's example
    per protocol and seed, and fine-tuning vs from scratch."""
    lines = [
        "| implementation | protocol | seed | pretrain steps (epochs) | pretrain wall / CPU (s) "
        "| load (1 min) | kNN top-1 | linear top-1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    summary: dict[tuple[str, str], dict[str, list[float]]] = {}
    for arm in ("ours", "lightly"):
        for seed, result in _final_runs(directory, arm, name).items():
            run = next(r for r in result["runs"] if r["impl"] in ("ours", "lightly"))
            last = run["evaluations"][-1]
            for protocol in result["config"]["pools"]:
                metrics = last[protocol]
                cell = summary.setdefault((arm, protocol), {"knn": [], "linear": []})
                cell["knn"].append(metrics["knn_top1"])
                cell["linear"].append(metrics["linear_top1"])
                lines.append(
                    f"| {arm} | {protocol} | {seed} | {run['steps']} "
                    f"({run['steps'] / run['steps_per_epoch']:.2f}) "
                    f"| {run['pretrain_wall_s']:.0f} / {run['pretrain_cpu_s']:.0f} "
                    f"| {result['load_before'][0]:.1f} | {metrics['knn_top1']:.2f} "
                    f"| {metrics['linear_top1']:.2f} |"
                )
    lines += [
        "",
        "| implementation | protocol | kNN top-1, mean of seeds | linear top-1, mean of seeds |",
        "|---|---|---:|---:|",
    ]
    for (arm, protocol), cell in summary.items():
        lines.append(f"| {arm} | {protocol} | {_spread(cell['knn'])} | {_spread(cell['linear'])} |")
    lines += [
        "",
        "| run | seed | pretrain steps | supervised steps | supervised wall / CPU (s) "
        "| load (1 min) | test top-1 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for arm in ("finetune", "scratch"):
        for seed, result in _final_runs(directory, arm, name).items():
            if arm == "finetune":
                run = next(r for r in result["runs"] if r["impl"] == "ours")
                tuned = run["evaluations"][-1].get("finetune")
                if tuned is None:
                    continue
                label, pretrain_steps = "MAE pretraining + fine-tuning", str(run["steps"])
            else:
                tuned = next(r for r in result["runs"] if r["impl"] == "scratch")["scratch"]
                label, pretrain_steps = "from scratch", "0"
            lines.append(
                f"| {label} | {seed} | {pretrain_steps} | {tuned['max_steps']} "
                f"| {tuned['wall_s']:.0f} / {tuned['cpu_s']:.0f} "
                f"| {result['load_before'][0]:.1f} | {tuned['top1']:.2f} |"
            )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    through = sub.add_parser("throughput", help="img/s of the candidates on one thread")
    through.add_argument("names", nargs="*", default=list(CANDIDATES))
    through.add_argument("--rounds", type=int, default=3)
    through.add_argument("--steps", type=int, default=3)
    run = sub.add_parser("run", help="pretrain candidates for an equal budget, validate")
    run.add_argument("names", nargs="+", choices=list(CANDIDATES))
    run.add_argument("--budget-s", type=float, default=240.0, help="one-core seconds each")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--probe-epochs", type=int, default=30)
    run.add_argument("--train-subset", type=int, default=None, help="(smoke tests)")
    run.add_argument("--val-size", type=int, default=10_000)
    run.add_argument("--epochs", type=int, default=None, help="instead of --budget-s")
    run.add_argument("--output-dir", type=Path, default=RESULTS)
    through.add_argument("--lightly-example", action="store_true", help="add Lightly's")
    through.add_argument("--output", default="throughput.json")
    final = sub.add_parser(
        "final", help="test split: recipe + fine-tune vs Lightly's example vs scratch"
    )
    final.add_argument("name", choices=list(CANDIDATES), help="the recommended candidate")
    final.add_argument("--budget-s", type=float, required=True, help="pretraining, one core")
    final.add_argument("--finetune-budget-s", type=float, required=True)
    final.add_argument("--seed", type=int, default=0)
    final.add_argument("--arms", nargs="+", default=["ours", "lightly", "scratch"])
    final.add_argument("--throughput", type=Path, default=RESULTS / "throughput_final.json")
    final.add_argument("--pools", nargs="+", default=["cls", "mean", "mean-last4-cat"])
    final.add_argument("--output-dir", type=Path, default=RESULTS.parent)
    final.add_argument("--split", choices=("test", "val"), default="test")
    final.add_argument(
        "--finetune-lr", default="1e-3", help="base lr per 256 of fine-tuning and scratch"
    )
    final.add_argument(
        "--reconstruction", default=None, help="PNG of the recipe's reconstructions (ours arm)"
    )
    final.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more options")
    report = sub.add_parser("report", help="Markdown tables of the final runs")
    report.add_argument("name", choices=list(CANDIDATES))
    report.add_argument("--output-dir", type=Path, default=RESULTS.parent)
    table = sub.add_parser("table", help="Markdown table of the finished candidates")
    table.add_argument("--output-dir", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "throughput":
        names = list(args.names)
        if args.lightly_example:
            names += [lightly_example(name) for name in args.names]
        result = measure_throughput(names, args.rounds, args.steps)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / args.output).write_text(json.dumps(result, indent=1) + "\n")
        for key, value in result["img_per_s"].items():
            print(f"{key:36s} {value:8.1f} img/s")
        return
    if args.command == "run":
        rates = load_throughput() if args.epochs is None else {}
        for name in args.names:
            budget: list[str] = []
            if args.epochs is None:
                steps = steps_for_budget(name, args.budget_s, rates)
                steps_per_epoch = TRAIN_IMAGES // int(CANDIDATES[name]["--batch-size"])
                epochs = -(-steps // steps_per_epoch)
                budget = ["--max-steps", str(steps)]
            else:
                epochs = args.epochs
            options = [
                *budget,
                *candidate_args(name),
                *(() if "--impl" in CANDIDATES[name] else ("--impl", "ours")),
                *("--baseline", "none", "--split", "val"),
                *("--val-size", str(args.val_size), "--epochs", str(epochs), "--eval-epochs"),
                *("--pools", *PROTOCOLS, "--probe-epochs", str(args.probe_epochs)),
                *("--threads", "1", "--seed", str(args.seed), "--plot", ""),
                *("--name", f"search_{name}", "--output-dir", str(args.output_dir)),
            ]
            if args.train_subset is not None:
                options += ["--train-subset", str(args.train_subset)]
            print(f"[search] {name}: {epochs} epochs {budget}", flush=True)
            bench.main(options)
        return
    if args.command == "final":
        run_final(args)
        return
    if args.command == "report":
        text = final_report(args.output_dir, args.name)
        (args.output_dir / f"final_{args.name}.md").write_text(text)
        print(text)
        return
    rows = [
        summarize(json.loads(path.read_text()))
        for path in sorted(args.output_dir.glob("search_*.json"))
    ]
    text = markdown(rows)
    (args.output_dir / "search.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
