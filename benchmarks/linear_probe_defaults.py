"""The linear probe's defaults against scikit-learn's ``LogisticRegression`` on the same features.

Frozen features of one encoder (a checkpoint of ``ssl-mae pretrain``, mean-pooled as ``ssl-mae
evaluate`` does) on Fashion-MNIST are split into random subsets of a small and a large size;
on each subset ``train_linear_probe`` runs with its defaults (batch size and epochs derived from
the set size), with the former fixed defaults (30 epochs, batch 1024) and with any settings given
by ``--variant``, and scikit-learn's ``LogisticRegression`` (lbfgs, ``max_iter=1000``) runs on the
raw and on the standardised features. The table gives mean and spread of test top-1 over the
subsets.

Usage:
    python benchmarks/linear_probe_defaults.py --checkpoint runs/main/last.ckpt
    python benchmarks/linear_probe_defaults.py --features feats.pt --sizes 2000:500 \\
        --repeats 5 --variant '{"optimizer": "sgd", "lr": 0.1}'

``--features`` reads (and ``--save-features`` writes) ``{"train": (x, y), "test": (x, y)}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# One BLAS thread: scikit-learn's lbfgs with many threads on a shared machine is slower, and the
# timings should compare like with like.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

Features = dict[str, tuple[Tensor, Tensor]]


def fashion_mnist_features(checkpoint: str, batch_size: int = 1000) -> Features:
    """Mean-pooled features of the Fashion-MNIST splits, preprocessed as the checkpoint's run."""
    from ssl_mae.data import load_fashion_mnist, normalize_images
    from ssl_mae.evaluation import encode_pooled
    from ssl_mae.export import load_trained_model

    trained = load_trained_model(checkpoint)
    prep = trained.preprocessing
    features: Features = {}
    for split in ("train", "test"):
        images, labels = load_fashion_mnist(train=split == "train", download=False)
        images = images.unsqueeze(1) if images.ndim == 3 else images
        parts = []
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                batch = normalize_images(
                    images[start : start + batch_size], prep.normalize, prep.image_size
                )
                parts.append(encode_pooled(trained.encoder.eval(), batch, "mean"))
        features[split] = (torch.cat(parts), labels.long())
    return features


def _subsets(
    features: Features, n_train: int, n_test: int, repeats: int
) -> list[tuple[Tensor, ...]]:
    (x_train, y_train), (x_test, y_test) = features["train"], features["test"]
    subsets: list[tuple[Tensor, ...]] = []
    for repeat in range(repeats):
        generator = torch.Generator().manual_seed(repeat)
        i = torch.randperm(x_train.shape[0], generator=generator)[:n_train]
        j = torch.randperm(x_test.shape[0], generator=generator)[:n_test]
        subsets.append((x_train[i], y_train[i], x_test[j], y_test[j]))
    return subsets


def _sklearn(scaled: bool) -> Callable[..., float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def fit(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> float:
        model = LogisticRegression(max_iter=1000)
        pipeline = make_pipeline(StandardScaler(), model) if scaled else model
        pipeline.fit(a.numpy(), b.numpy())
        return 100.0 * float(pipeline.score(c.numpy(), d.numpy()))

    return fit


def _probe(**kwargs: Any) -> Callable[..., float]:
    from ssl_mae.evaluation import train_linear_probe

    def fit(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> float:
        return 100.0 * train_linear_probe(a, b, c, d, int(b.max()) + 1, **kwargs)["top1"]

    return fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint whose encoder gives the features")
    source.add_argument("--features", help="features saved with --save-features")
    parser.add_argument("--save-features", default=None, help="write the features here")
    parser.add_argument(
        "--sizes", nargs="+", default=["2000:500", "60000:10000"], help="TRAIN:TEST sizes"
    )
    parser.add_argument("--repeats", type=int, default=3, help="random subsets per size")
    parser.add_argument("--variant", action="append", default=[], help="JSON probe settings")
    parser.add_argument("--output", default=None, help="also write the table as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)

    if args.features:
        features: Features = torch.load(args.features, weights_only=True)
    else:
        features = fashion_mnist_features(args.checkpoint)
    if args.save_features:
        torch.save(features, args.save_features)
    methods: dict[str, Callable[..., float]] = {
        "scikit-learn LogisticRegression": _sklearn(scaled=False),
        "scikit-learn StandardScaler + LogisticRegression": _sklearn(scaled=True),
        "train_linear_probe defaults": _probe(),
        "train_linear_probe, former defaults (30 epochs, batch 1024)": _probe(
            epochs=30, batch_size=1024
        ),
    }
    for variant in args.variant:
        methods[f"train_linear_probe {variant}"] = _probe(**json.loads(variant))
    rows = []
    for size in args.sizes:
        n_train, n_test = (int(v) for v in size.split(":"))
        subsets = _subsets(features, n_train, n_test, args.repeats)
        for name, fit in methods.items():
            started = time.perf_counter()
            scores = [fit(*subset) for subset in subsets]
            seconds = (time.perf_counter() - started) / len(subsets)
            spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
            mean = statistics.mean(scores)
            rows.append(
                {"train": n_train, "test": n_test, "method": name, "top1": scores, "mean": mean,
                 "std": spread, "seconds": seconds}
            )  # fmt: skip
            print(
                f"{n_train:>6} / {n_test:<6} {name:<62} {statistics.mean(scores):6.2f} "
                f"± {spread:4.2f}  ({seconds:.1f} s per fit)",
                flush=True,
            )
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
