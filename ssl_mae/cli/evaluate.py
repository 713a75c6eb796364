"""``ssl-mae evaluate``: kNN, linear probe or fine-tuning of a checkpoint's encoder.

The training split (``--data-path``) trains the probe (or is the kNN bank), the test split
(Fashion-MNIST's and CIFAR's own, ``--val-path`` for a class folder) scores it. Unreadable files
are skipped and counted, never replaced by other images. ``--output`` writes the result as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ssl_mae.cli import options as opt
from ssl_mae.cli.options import UsageError

__all__ = ["PROTOCOLS", "add_parser", "run"]

PROTOCOLS: tuple[str, ...] = ("knn", "linear", "finetune")
_LABELS = {"knn": "kNN", "linear": "linear", "finetune": "finetune"}
FINETUNE_EPOCHS = 10
# Options that train something: only for --protocol linear/finetune.
_TRAINING_OPTIONS = ("epochs", "batch_size", "base_lr")


def add_parser(subparsers: Any) -> None:
    """Adds ``evaluate``."""
    from ssl_mae.cli.trained import add_data_options

    parser = subparsers.add_parser(
        "evaluate",
        help="kNN, linear-probe or fine-tuning accuracy of a checkpoint's encoder",
        description="Score a checkpoint's encoder on a labelled dataset: frozen-feature kNN "
        "(bank: the training split), a linear probe on frozen features (BatchNorm + Linear fitted "
        "to convergence with full-batch L-BFGS and L2 1/N, i.e. scikit-learn's "
        "LogisticRegression on standardised features; LARS on mini-batches for sets too large "
        "or when a mini-batch option is given) or end-to-end "
        "fine-tuning (AdamW, layer-wise lr decay). Input size, channels and normalisation come "
        "from the checkpoint, the dataset from its run unless given.",
    )
    opt.add_checkpoint(parser)
    parser.add_argument(
        "--protocol", choices=PROTOCOLS, default="knn", help="evaluation protocol (default: knn)"
    )
    add_data_options(parser)
    opt.add_unset(
        parser,
        "--knn-k",
        "knn: neighbours (default: 200, at most the mean number of images per class)",
        type=opt.positive_int,
    )
    parser.add_argument(
        "--knn-temperature",
        type=opt.positive_float,
        default=0.07,
        help="knn: vote temperature (default: 0.07)",
    )
    parser.add_argument(
        "--knn-standardize",
        action="store_true",
        help="knn: z-score every feature dimension with the training split's mean and std "
        "before the cosine similarity (default: off; with --knn-k 20 --knn-temperature 0.02 "
        "it is the kNN protocol chosen on a validation split, docs/benchmarks.md)",
    )
    opt.add_unset(
        parser,
        "--epochs",
        "linear/finetune: training epochs (default linear: full-batch L-BFGS to "
        "convergence, at most 1000 iterations; giving --epochs, --batch-size or --base-lr trains "
        f"LARS on mini-batches instead, for at least 3000 steps and 30 epochs; finetune: "
        f"{FINETUNE_EPOCHS})",
        type=opt.positive_int,
    )
    opt.add_unset(
        parser,
        "--batch-size",
        "linear/finetune: samples per step (default linear: the whole set with L-BFGS; with "
        "LARS the set size / 8 rounded down to a power of two, in [16, 1024]; finetune: 64, at "
        "most the set size)",
        type=opt.positive_int,
    )
    opt.add_unset(
        parser,
        "--base-lr",
        "linear/finetune: peak lr per 256 samples (default linear: none with L-BFGS, 1.0 "
        "with LARS; finetune: 1e-3 with AdamW)",
        type=opt.positive_float,
    )
    parser.add_argument("--seed", type=int, default=0, help="linear/finetune: seed (default: 0)")
    opt.add_pool(parser)
    parser.add_argument(
        "--layers",
        type=opt.positive_int,
        default=1,
        help="knn/linear: features of the last K blocks, each pooled with --pool, concatenated "
        "(default: 1, the encoder's output; 4 gives MAE encoders better frozen features, see "
        "docs/benchmarks.md)",
    )
    opt.add_eval_batch_size(parser)
    opt.add_device(parser)
    opt.add_unset(parser, "--output", "also write the result to this JSON file (default: none)")
    opt.add_debug(parser)
    parser.set_defaults(func=run)


def _check_protocol_options(args: argparse.Namespace) -> None:
    if args.protocol == "knn":
        given = [opt_ for opt_ in _TRAINING_OPTIONS if getattr(args, opt_) is not None]
        if given:
            names = ", ".join("--" + name.replace("_", "-") for name in given)
            raise UsageError(f"{names}: only used by --protocol linear or finetune")
    else:
        flags = {"--knn-k": args.knn_k is not None, "--knn-standardize": args.knn_standardize}
        if given := [flag for flag, used in flags.items() if used]:
            raise UsageError(f"{', '.join(given)}: only used by --protocol knn")
    if args.protocol == "finetune" and args.layers != 1:
        raise UsageError("--layers: only used by --protocol knn or linear (frozen features)")


def run(args: argparse.Namespace) -> int:
    """``ssl-mae evaluate``."""
    from ssl_mae.cli.data import check_same_classes, load_split, num_classes_of
    from ssl_mae.cli.trained import data_options, evaluation_split, load, resolve_device

    _check_protocol_options(args)
    output = Path(args.output).expanduser() if args.output else None
    device = resolve_device(args.device)
    trained = load(args)
    if args.pool == "cls" and int(trained.encoder.num_prefix_tokens) == 0:
        raise UsageError("--pool cls needs a class token, but this model has none; use --pool mean")
    depth = _encoder_depth(trained.encoder)
    if args.layers > 1 and (depth is None or args.layers > depth):
        raise UsageError(
            f"--layers {args.layers}: this encoder has "
            + ("no per-block outputs" if depth is None else f"{depth} blocks")
        )
    data = data_options(args, trained)
    prep = trained.preprocessing
    split = evaluation_split(data, prep)
    train_set = load_split(**split, train=True, limit=args.limit_train_images)
    test_set = load_split(**split, train=False, limit=args.limit_test_images)
    if test_set is None:
        raise UsageError("--val-path (labelled test images) is required to evaluate a 'folder'")
    num_classes = num_classes_of(data["dataset"], train_set)
    if num_classes is None or num_classes_of(data["dataset"], test_set) is None:
        raise UsageError(
            "evaluation needs labelled images: --data-path and --val-path must hold one "
            "subfolder per class"
        )
    check_same_classes(train_set, test_set)
    common = dict(
        normalize=prep.normalize,
        img_size=prep.image_size,
        num_classes=num_classes,
        pool=args.pool,
        batch_size=args.eval_batch_size,
        device=device,
        num_workers=data["num_workers"],
    )
    started = time.perf_counter()
    if args.protocol != "finetune":
        common["layers"] = args.layers
    result = _evaluate(args, trained.encoder, train_set, test_set, common)
    result.update(
        layers=args.layers,
        protocol=args.protocol,
        checkpoint=str(args.checkpoint),
        dataset=data["dataset"],
        pool=args.pool,
        seconds=round(time.perf_counter() - started, 2),
    )
    details = ", ".join(
        f"{key}={_plain(result[key])}"
        for key in ("k", "optimizer", "epochs", "batch_size", "lr")
        if key in result
    )
    print(
        f"{_LABELS[args.protocol]} top-1: {result['top1']:.2f}%  top-5: {result['top5']:.2f}%  "
        f"({details}{', ' if details else ''}pool={args.pool}, layers={args.layers}, "
        f"{int(result['num_train'])} train / "
        f"{int(result['num_test'])} test images)"
    )
    if result["skipped_files"]:
        print(f"skipped {int(result['skipped_files'])} unreadable image files")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        print(f"wrote {output}")
    return 0


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _encoder_depth(encoder: Any) -> int | None:
    """Blocks whose outputs ``--layers`` can pool; None when the encoder offers none."""
    if not callable(getattr(encoder, "forward_intermediates", None)):
        return None
    blocks = getattr(encoder, "blocks", None) or getattr(
        getattr(encoder, "vit", None), "blocks", None
    )
    return None if blocks is None else len(blocks)


def _evaluate(
    args: argparse.Namespace, encoder: Any, train_set: Any, test_set: Any, common: dict[str, Any]
) -> dict[str, Any]:
    from ssl_mae.evaluation import finetune_evaluate, knn_evaluate, linear_evaluate

    if args.protocol == "knn":
        return dict(
            knn_evaluate(
                encoder,
                train_set,
                test_set,
                k=args.knn_k,
                temperature=args.knn_temperature,
                standardize=args.knn_standardize,
                **common,
            )
        )
    if args.protocol == "linear":
        probe = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed}
        if args.base_lr is not None:
            probe["base_lr"] = args.base_lr
        return dict(linear_evaluate(encoder, train_set, test_set, **common, probe_options=probe))
    batch_size = args.batch_size or min(64, len(train_set))
    tune: dict[str, Any] = {"epochs": args.epochs or FINETUNE_EPOCHS, "seed": args.seed}
    if args.base_lr is not None:
        tune["base_lr"] = args.base_lr
    common = {**common, "batch_size": batch_size}
    return dict(finetune_evaluate(encoder, train_set, test_set, **common, **tune))
