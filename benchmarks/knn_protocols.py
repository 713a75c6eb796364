"""Which kNN protocol represents frozen features fairly: chosen on a validation split.

The grid (feature transform x k x temperature) is scored on the validation split of
Fashion-MNIST (bank: the first 50 000 training images, queries: the last 10 000); the official
test split is read only for the final rows: the fixed protocol of earlier rows (raw features,
k = 200, t = 0.07) and each feature set's best protocol on validation. The same grid runs on a
checkpoint's frozen encoder (``--layers`` blocks, mean pooled, concatenated) and on the raw
normalised pixels, so both rows get the same chance.

    python benchmarks/knn_protocols.py --checkpoint runs/main/last.ckpt --layers 4

Transforms: ``raw`` (cosine of the features), ``center`` (minus the bank mean), ``standardize``
(z-scored with the bank's mean and std, ``ssl_mae.evaluation.standardize_features``).

``--token-blocks 1 4`` adds feature sets that keep the spatial layout the pooling throws away:
the patch tokens of one block (after the encoder's final norm), flattened to (N, patches * D),
the way the pixels keep theirs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ssl_mae.data import TensorImageDataset, load_fashion_mnist
from ssl_mae.data.normalize import normalize_images
from ssl_mae.evaluation import knn_accuracy, standardize_features
from ssl_mae.evaluation.protocols import frozen_features
from ssl_mae.export import RECORDED, load_trained_model
from ssl_mae.modules.encoder import MaskedEncoderBase
from ssl_mae.transforms import FASHION_MNIST_NORMALIZE

TRANSFORMS = ("raw", "center", "standardize")
REPO_ROOT = Path(__file__).resolve().parent.parent


def transform(name: str, bank: Tensor, *queries: Tensor) -> tuple[Tensor, ...]:
    """The bank (N, D) and query sets (M, D) under one feature transform (bank statistics)."""
    if name == "raw":
        return (bank, *queries)
    if name == "center":
        mean = bank.mean(dim=0, keepdim=True)
        return tuple(x - mean for x in (bank, *queries))
    return standardize_features(bank, *queries)


def top1(bank: Tensor, bank_y: Tensor, queries: Tensor, query_y: Tensor, k: int, t: float) -> float:
    """kNN top-1 in percent."""
    result = knn_accuracy(bank, bank_y, queries, query_y, num_classes=10, k=k, temperature=t)
    return 100.0 * float(result["top1"])


def search(
    name: str, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """The validation grid of one feature set, then its two test rows."""
    (x, y), (test_x, test_y) = train, test
    split = x.shape[0] - args.num_validation
    rows: list[dict[str, Any]] = []
    for how in TRANSFORMS:
        bank, val = transform(how, x[:split], x[split:])
        for k in args.k:
            for t in args.temperatures:
                score = top1(bank, y[:split], val, y[split:], k, t)
                rows.append({"features": name, "split": "validation", "transform": how, "k": k,
                             "temperature": t, "top1": score})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    best = max(rows, key=lambda row: row["top1"])
    fixed: dict[str, Any] = {"transform": "raw", "k": 200, "temperature": 0.07}
    chosen: dict[str, Any] = {key: best[key] for key in fixed}
    extra = [(f"--also {spec}", parse_protocol(spec)) for spec in args.also]
    for label, protocol in [("fixed", fixed), ("best on validation", chosen), *extra]:
        bank, queries = transform(protocol["transform"], x, test_x)
        score = top1(bank, y, queries, test_y, int(protocol["k"]), float(protocol["temperature"]))
        rows.append({"features": name, "split": "test", "protocol": label, **protocol,
                     "top1": score})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def block_tokens(
    encoder: MaskedEncoderBase, images: Tensor, blocks: Sequence[int], batch_size: int = 1000
) -> dict[int, Tensor]:
    """Flattened patch tokens of the given blocks (1-based), after the final norm.

    Args:
        encoder: The project's masked ViT encoder (timm or torchvision based).
        images: (N, C, H, W) normalised images.
        blocks: Block numbers, 1 = the first block.

    Returns:
        ``{block: (N, patches * D)}``.
    """
    prefix = encoder.num_prefix_tokens
    chunks: dict[int, list[Tensor]] = {block: [] for block in blocks}
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size]
            _, per_block = encoder.forward_intermediates(batch, norm=True)
            for block in blocks:
                if not 1 <= block <= len(per_block):
                    raise ValueError(f"block must be in [1, {len(per_block)}], got {block}")
                chunks[block].append(per_block[block - 1][:, prefix:].flatten(1))
    return {block: torch.cat(parts) for block, parts in chunks.items()}


def parse_protocol(spec: str) -> dict[str, Any]:
    """``TRANSFORM:K:T`` (e.g. ``standardize:20:0.02``) -> a protocol dict."""
    how, k, t = spec.split(":")
    if how not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {how!r}")
    return {"transform": how, "k": int(k), "temperature": float(t)}


def pixels(images: Tensor) -> Tensor:
    """(N, 28, 28) uint8 -> (N, 784) normalised pixels, as every model sees them."""
    size = (images.shape[-2], images.shape[-1])
    return normalize_images(images.unsqueeze(1), FASHION_MNIST_NORMALIZE, size).flatten(1)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint `ssl-mae evaluate` loads")
    parser.add_argument("--layers", type=int, default=4, help="pooled blocks, concatenated")
    parser.add_argument("--k", type=int, nargs="+", default=[10, 20, 50, 200])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.02, 0.07, 0.2])
    parser.add_argument("--no-pixels", action="store_true", help="skip the raw-pixel rows")
    parser.add_argument(
        "--also",
        nargs="+",
        default=[],
        metavar="TRANSFORM:K:T",
        help="more protocols scored on the test split for every feature set (e.g. one set's "
        "choice applied to the other)",
    )
    parser.add_argument(
        "--token-blocks",
        type=int,
        nargs="*",
        default=[],
        metavar="BLOCK",
        help="also score the flattened patch tokens of these blocks (1-based)",
    )
    parser.add_argument("--limit", type=int, default=None, help="first N train/test images")
    parser.add_argument("--num-validation", type=int, default=10_000, help="last N train images")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "benchmarks" / "results"
                        / "knn_protocols.json")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        [parse_protocol(spec) for spec in args.also]
    except ValueError as error:
        parser.error(f"--also: {error}")
    if args.token_blocks and args.checkpoint is None:
        parser.error("--token-blocks needs --checkpoint")
    if args.checkpoint is None and args.no_pixels:
        parser.error("nothing to score: give --checkpoint or drop --no-pixels")
    if args.threads:
        torch.set_num_threads(args.threads)
    start, load_before = time.perf_counter(), os.getloadavg()
    train_images, train_y = load_fashion_mnist(train=True, download=False)
    test_images, test_y = load_fashion_mnist(train=False, download=False)
    if args.limit:
        train_images, train_y = train_images[: args.limit], train_y[: args.limit]
        test_images, test_y = test_images[: args.limit], test_y[: args.limit]
    if not 0 < args.num_validation < train_images.shape[0]:
        parser.error(f"--num-validation must be in (0, {train_images.shape[0]})")
    rows: list[dict[str, Any]] = []
    if args.checkpoint is not None:
        trained = load_trained_model(args.checkpoint, normalize=RECORDED)
        prep = trained.preprocessing

        def features(images: Tensor, labels: Tensor) -> Tensor:
            data = TensorImageDataset(images.unsqueeze(1), labels)
            encoder, size = trained.encoder, prep.image_size
            return frozen_features(encoder, data, prep.normalize, size, layers=args.layers)[0]

        train = (features(train_images, train_y), train_y)
        rows += search("mae", train, (features(test_images, test_y), test_y), args)
        if args.token_blocks:
            encoder = trained.encoder.eval()
            if not isinstance(encoder, MaskedEncoderBase):
                parser.error(f"--token-blocks needs a masked ViT encoder, got {type(encoder)}")

            def tokens(images: Tensor) -> dict[int, Tensor]:
                batch = normalize_images(images.unsqueeze(1), prep.normalize, prep.image_size)
                return block_tokens(encoder, batch, args.token_blocks)

            train_tokens, test_tokens = tokens(train_images), tokens(test_images)
            for block in args.token_blocks:
                train = (train_tokens[block], train_y)
                test = (test_tokens[block], test_y)
                rows += search(f"mae tokens of block {block}", train, test, args)
    if not args.no_pixels:
        rows += search(
            "pixels", (pixels(train_images), train_y), (pixels(test_images), test_y), args
        )
    result = {
        "benchmark": "knn_protocols",
        "checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "layers": args.layers,
        "token_blocks": args.token_blocks,
        "validation": f"last {args.num_validation} training images; bank: the others",
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "load_average_start": load_before, "load_average_end": os.getloadavg()},
        "wall_time_s": time.perf_counter() - start,
        "rows": rows,
    }  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
