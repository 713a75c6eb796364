"""The ``ssl-mae`` command line: ``pretrain``, ``evaluate`` and ``reconstruct``.

::

    ssl-mae pretrain --output-dir runs/main          # Fashion-MNIST, 0.3 M-parameter ViT, CPU
    ssl-mae pretrain --preset mae_hivit_nano --output-dir runs/hivit  # HiViT, resized to 32x32
    ssl-mae pretrain --preset simple_mae_vit_tiny --output-dir runs/simple  # SimpleMAE(timm ViT)
    ssl-mae evaluate --checkpoint runs/main/last.ckpt
    ssl-mae reconstruct --checkpoint runs/main/last.ckpt --output runs/main/reconstruction.png

``--preset`` takes any name of :data:`ssl_mae.models.presets.PRETRAIN_PRESETS`: the seed MAE
(``mae_vit_*``), MAE-HiViT (``mae_hivit_*``) and SimpleMAE (``simple_mae_*``) presets. Images are
resized to the preset's ``img_size`` (HiViT needs multiples of 16, so 28×28 Fashion-MNIST becomes
32×32 for ``mae_hivit_nano``) and fed with one channel for Fashion-MNIST.

``pretrain`` writes ``last.ckpt`` (every ``--checkpoint-every-n-steps`` steps and after every
validation), ``best.ckpt`` (lowest ``val_loss``), CSV or TensorBoard logs and ``metrics.json``;
``--resume PATH`` continues a run from any of its checkpoints, also after the process was killed,
and reaches the same weights as an uninterrupted run (see :mod:`ssl_mae.training`).

Mistakes in the input (a missing path, an unknown preset, an image size the patch size does not
divide, ...) end with one line ``ssl-mae: error: ...`` on stderr and exit status 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

PROG = "ssl-mae"
EXIT_USAGE = 2
EXIT_FAILURE = 1

DEFAULT_PRESET = "mae_vit_micro_patch7"
DEFAULT_EPOCHS = 12
DEFAULT_BATCH_SIZE = 256
DEFAULT_BASE_LR = 1.5e-3

# Options that decide the model, the data order or the augmentation: a resumed run must use
# the values of the run that wrote the checkpoint, or it would not continue the same run.
RESUME_MUST_MATCH: tuple[str, ...] = (
    "dataset",
    "data_path",
    "preset",
    "img_size",
    "in_chans",
    "batch_size",
    "base_lr",
    "lr",
    "mask_ratio",
    "norm_pix",
    "min_scale",
    "seed",
    "limit_train_images",
)


class UsageError(ValueError):
    """A mistake in the command line (reported without a traceback, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``ssl-mae: error: ...`` and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see {self.prog} --help)\n")


# --- argument types ----------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def _devices(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be 'auto' or a positive number of devices, got {text!r}"
        ) from None


# --- the parser ---------------------------------------------------------------------------------
def _add_data_options(parser: argparse.ArgumentParser, defaults_from_checkpoint: bool) -> None:
    note = " (default: the one the checkpoint was trained on)" if defaults_from_checkpoint else ""
    from ssl_mae.data import DATASETS  # light import: no torch model code

    parser.add_argument(
        "--dataset",
        default=None if defaults_from_checkpoint else "fashion_mnist",
        help=f"one of {sorted(DATASETS)}{note or ' (default: fashion_mnist)'}",
    )
    parser.add_argument(
        "--data-path",
        default=None,
        help="data directory; for 'folder' the training images (one subfolder per class for "
        "kNN). Default for Fashion-MNIST: $SSL_MAE_FASHION_MNIST, the Debian package "
        f"(/usr/share/datasets/fashion-mnist), else a download{note}",
    )
    parser.add_argument(
        "--val-path",
        default=None,
        help=f"'folder' only: held-out images for val_loss and the kNN queries{note}",
    )
    parser.add_argument(
        "--num-workers",
        type=_nonnegative_int,
        default=0,
        help="DataLoader worker processes (default: 0; Fashion-MNIST lives in memory)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``ssl-mae`` argument parser with its three subcommands."""
    parser = _Parser(
        prog=PROG,
        description="Masked Autoencoder pre-training, kNN evaluation and reconstructions.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    # pretrain
    pre = sub.add_parser(
        "pretrain",
        help="pre-train an MAE, then report kNN top-1 on the test split",
        description="Pre-train a masked autoencoder (seed MAE, MAE-HiViT or SimpleMAE, chosen "
        "by --preset) with Lightning, save checkpoints and logs, evaluate kNN top-1 on the test "
        "split and write metrics.json. Images are resized to the preset's img_size (HiViT: a "
        "multiple of 16, so Fashion-MNIST's 28x28 becomes 32x32 for mae_hivit_nano) and have 1 "
        "channel for Fashion-MNIST. The defaults train on Fashion-MNIST and fit in about 10 "
        "minutes on a 2-core CPU.",
    )
    _add_data_options(pre, defaults_from_checkpoint=False)
    pre.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        help="model preset, one of " + _preset_names() + f" (default: {DEFAULT_PRESET})",
    )
    pre.add_argument(
        "--img-size",
        type=_positive_int,
        default=None,
        help="input size in pixels, a multiple of the patch size (16 for mae_hivit_*); images "
        "are resized to it, e.g. Fashion-MNIST's 28x28 to 32x32 for mae_hivit_nano (default: "
        "the preset's)",
    )
    pre.add_argument(
        "--in-chans",
        type=_positive_int,
        default=None,
        choices=(1, 3),
        help="image channels (default: 1 for Fashion-MNIST, 3 otherwise)",
    )
    pre.add_argument(
        "--epochs",
        type=_positive_int,
        default=DEFAULT_EPOCHS,
        help=f"training epochs (default: {DEFAULT_EPOCHS})",
    )
    pre.add_argument(
        "--batch-size",
        type=_positive_int,
        default=DEFAULT_BATCH_SIZE,
        help=f"images per device per step (default: {DEFAULT_BATCH_SIZE})",
    )
    lr = pre.add_mutually_exclusive_group()
    lr.add_argument(
        "--base-lr",
        type=_positive_float,
        default=DEFAULT_BASE_LR,
        help=f"peak lr per 256 images; lr = base_lr * batch / 256 (default: {DEFAULT_BASE_LR})",
    )
    lr.add_argument("--lr", type=_positive_float, default=None, help="absolute peak lr")
    pre.add_argument(
        "--mask-ratio",
        type=_ratio,
        default=0.75,
        help="fraction of patches removed (default: 0.75)",
    )
    pre.add_argument(
        "--norm-pix",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="predict per-patch normalised pixels (default: the preset's; on for mae_hivit_*, "
        "off for the others)",
    )
    pre.add_argument(
        "--min-scale",
        type=_scale,
        default=0.5,
        help="smallest random-resized-crop area fraction (default: 0.5)",
    )
    pre.add_argument(
        "--precision",
        default="32-true",
        help="Lightning precision: 32-true, bf16-mixed, 16-mixed, ... (default: 32-true)",
    )
    pre.add_argument(
        "--accelerator",
        default="auto",
        help="cpu, gpu, cuda, mps or auto (default: auto)",
    )
    pre.add_argument(
        "--devices",
        type=_devices,
        default="auto",
        help="number of devices or 'auto' (default: auto)",
    )
    pre.add_argument(
        "--output-dir",
        default="runs/mae",
        help="checkpoints, logs and metrics.json go here (default: runs/mae)",
    )
    pre.add_argument(
        "--resume",
        default=None,
        metavar="CHECKPOINT",
        help="continue the run saved in this checkpoint (e.g. OUTPUT_DIR/last.ckpt)",
    )
    pre.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh even if --output-dir already holds checkpoints (they are replaced)",
    )
    pre.add_argument(
        "--checkpoint-every-n-steps",
        type=_positive_int,
        default=100,
        help="also write last.ckpt every N optimiser steps (default: 100)",
    )
    pre.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    pre.add_argument(
        "--logger",
        choices=("csv", "tensorboard", "none"),
        default="csv",
        help="training log format (default: csv)",
    )
    pre.add_argument(
        "--log-every-n-steps",
        type=_positive_int,
        default=50,
        help="log the training loss every N steps (default: 50, at most once per epoch)",
    )
    pre.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show progress bars (default: on)",
    )
    pre.add_argument(
        "--limit-train-images",
        type=_positive_int,
        default=None,
        help="train on the first N training images only (quick runs)",
    )
    pre.add_argument(
        "--limit-test-images",
        type=_positive_int,
        default=None,
        help="validate and query kNN with the first N test images only",
    )
    pre.add_argument(
        "--knn",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="evaluate kNN on the test split after training (default: on)",
    )
    _add_knn_options(pre)
    pre.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    pre.set_defaults(func=run_pretrain)

    # evaluate
    ev = sub.add_parser(
        "evaluate",
        help="kNN top-1/top-5 of a checkpoint's encoder on the test split",
        description="Extract frozen features of the train split (the bank) and the test split "
        "(the queries) and report weighted-kNN accuracy.",
    )
    ev.add_argument("--checkpoint", required=True, help="checkpoint written by pretrain")
    _add_data_options(ev, defaults_from_checkpoint=True)
    _add_knn_options(ev)
    ev.add_argument(
        "--limit-train-images", type=_positive_int, default=None, help="use N bank images"
    )
    ev.add_argument(
        "--limit-test-images", type=_positive_int, default=None, help="use N query images"
    )
    ev.add_argument(
        "--device", default=None, help="cpu, cuda, ... (default: cuda if available, else cpu)"
    )
    ev.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    ev.set_defaults(func=run_evaluate)

    # reconstruct
    rec = sub.add_parser(
        "reconstruct",
        help="PNG grid: original | masked | reconstruction | reconstruction + visible",
        description="Reconstruct random test images with a checkpoint and write a PNG grid. "
        "Norm-pix models are mapped back to pixels with each target patch's mean and variance.",
    )
    rec.add_argument("--checkpoint", required=True, help="checkpoint written by pretrain")
    rec.add_argument(
        "--output", default="reconstruction.png", help="PNG file (default: reconstruction.png)"
    )
    rec.add_argument(
        "--num-images", type=_positive_int, default=8, help="rows of the grid (default: 8)"
    )
    rec.add_argument(
        "--mask-ratio",
        type=_ratio,
        default=None,
        help="fraction of patches removed (default: the checkpoint's)",
    )
    rec.add_argument("--seed", type=int, default=0, help="picks images and masks (default: 0)")
    _add_data_options(rec, defaults_from_checkpoint=True)
    rec.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    rec.set_defaults(func=run_reconstruct)
    return parser


def _add_knn_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--knn-k", type=_positive_int, default=200, help="kNN neighbours (default: 200)"
    )
    parser.add_argument(
        "--knn-temperature",
        type=_positive_float,
        default=0.07,
        help="kNN vote temperature (default: 0.07)",
    )
    parser.add_argument(
        "--pool",
        choices=("mean", "cls"),
        default="mean",
        help="feature: mean of patch tokens or the class token (default: mean)",
    )
    parser.add_argument(
        "--eval-batch-size",
        type=_positive_int,
        default=512,
        help="images per forward pass when extracting features (default: 512)",
    )


def _preset_names() -> str:
    from ssl_mae.models.presets import describe_presets

    return describe_presets().replace("'", "")


def _version() -> str:
    from ssl_mae import __version__

    return __version__


# --- data ---------------------------------------------------------------------------------------
class ToUint8Tensor:
    """PIL image -> uint8 tensor (C, H, W), resized to ``size`` when given (bicubic).

    Picklable, so it works in DataLoader worker processes.

    Args:
        size: ``(height, width)`` or None to keep the size.
    """

    def __init__(self, size: tuple[int, int] | None) -> None:
        self.size = size

    def __call__(self, image: Any) -> Any:
        from PIL import Image

        from ssl_mae.data import pil_to_tensor

        if self.size is not None and image.size != (self.size[1], self.size[0]):
            image = image.resize((self.size[1], self.size[0]), Image.Resampling.BICUBIC)
        return pil_to_tensor(image)


def _dataset_key(name: str) -> str:
    from ssl_mae.data import dataset_info

    return dataset_info(name).name


def default_in_chans(dataset: str) -> int:
    """Channels the CLI feeds the model: 1 for Fashion-MNIST, 3 for the rest (folders as RGB)."""
    return 1 if _dataset_key(dataset) == "fashion_mnist" else 3


def default_normalize(dataset: str, in_chans: int) -> dict[str, list[float]]:
    """Input normalisation per dataset: Fashion-MNIST's own statistics, ImageNet's for RGB."""
    from ssl_mae.transforms import FASHION_MNIST_NORMALIZE, IMAGENET_NORMALIZE

    if _dataset_key(dataset) == "fashion_mnist":
        return {k: list(v) for k, v in FASHION_MNIST_NORMALIZE.items()}
    if in_chans == 3:
        return {k: list(v) for k, v in IMAGENET_NORMALIZE.items()}
    return {"mean": [0.5] * in_chans, "std": [0.5] * in_chans}


def _check_dir(path: str | None, option: str) -> None:
    if path is not None and not Path(path).expanduser().is_dir():
        what = "is not a directory" if Path(path).expanduser().exists() else "does not exist"
        raise UsageError(f"{option} {path!r} {what}")


def load_split(
    dataset: str,
    data_path: str | None,
    val_path: str | None,
    train: bool,
    img_size: int,
    in_chans: int,
    limit: int | None = None,
) -> Any:
    """One split of a dataset as ``(uint8 image (C, img_size, img_size), label)`` samples.

    Args:
        dataset: Dataset name (see ``ssl_mae.data.DATASETS``).
        data_path: Data directory (the training folder for ``"folder"``).
        val_path: ``"folder"`` only: the held-out folder, used for ``train=False``.
        train: Training or test split.
        img_size: Model input size; images of another size are resized when loaded.
        in_chans: 1 (grayscale) or 3 (RGB).
        limit: Keep only the first ``limit`` images.

    Returns:
        A dataset, or None for the test split of a folder without ``val_path``.
    """
    from torch.utils.data import Subset

    from ssl_mae.data import build_dataset

    key = _dataset_key(dataset)
    size = (img_size, img_size)
    if key == "fashion_mnist":
        if in_chans != 1:
            raise UsageError(f"--in-chans must be 1 for fashion_mnist (grayscale), got {in_chans}")
        # Only the default location may fall back to a download; an explicit --data-path must
        # hold the files.
        data: Any = build_dataset(key, root=data_path, train=train, download=data_path is None)
        if img_size != 28:
            data.transform, data.to_pil = ToUint8Tensor(size), True
    elif key == "folder":
        if data_path is None:
            raise UsageError("--data-path is required for --dataset folder")
        root = data_path if train else val_path
        if root is None:
            return None
        data = build_dataset(
            key,
            root=root,
            transform=ToUint8Tensor(size),
            mode="L" if in_chans == 1 else "RGB",
            on_error="replace",  # unreadable files are counted and replaced by the next image
        )
    else:
        try:
            data = build_dataset(
                key, root=data_path, train=train, transform=ToUint8Tensor(size), download=False
            )
        except RuntimeError as error:  # torchvision: "Dataset not found or corrupted"
            raise UsageError(f"{key}: {error} (--data-path {data_path!r})") from error
    if limit is not None and limit < len(data):
        data = Subset(data, range(limit))
    return data


# --- checkpoints --------------------------------------------------------------------------------
def read_checkpoint(path: str) -> dict[str, Any]:
    """Loads a checkpoint written by ``pretrain`` (on the CPU, plain types only).

    Raises:
        UsageError: If the file is missing or not a checkpoint of this tool.
    """
    import pickle

    import torch

    file = Path(path).expanduser()
    if not file.is_file():
        raise UsageError(f"checkpoint {path!r} does not exist")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise UsageError(f"checkpoint {path!r} cannot be read: {_first_line(error)}") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UsageError(f"checkpoint {path!r} is not a Lightning checkpoint (no 'state_dict')")
    if "hyper_parameters" not in checkpoint:
        raise UsageError(f"checkpoint {path!r} has no model hyperparameters")
    return checkpoint


def run_config_of(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The ``pretrain`` options stored in a checkpoint (empty for foreign checkpoints)."""
    hparams = checkpoint.get("datamodule_hyper_parameters") or {}
    config = hparams.get("run_config") if isinstance(hparams, Mapping) else None
    return dict(config) if isinstance(config, Mapping) else {}


def model_from_checkpoint(checkpoint: Mapping[str, Any], path: str | None = None) -> Any:
    """Rebuilds the model of a checkpoint (an ``MAE`` or a preset's ``PretrainModule``) and
    loads its weights.

    Args:
        checkpoint: The loaded checkpoint.
        path: Its file, named in errors.

    Raises:
        UsageError: If the hyperparameters do not describe a model of this tool or the weights
            do not fit it (one line naming the checkpoint).
    """
    from ssl_mae.models.presets import pretrain_module_from_checkpoint

    try:
        return pretrain_module_from_checkpoint(checkpoint)
    except (RuntimeError, TypeError, ValueError) as error:
        # load_state_dict puts its reason ("size mismatch for ...") on the second line.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = " ".join(lines[:2]) or type(error).__name__
        name = "the checkpoint" if path is None else f"checkpoint {path!r}"
        raise UsageError(f"{name} does not hold a model ssl-mae can rebuild: {reason}") from error


# --- pretrain -----------------------------------------------------------------------------------
def _run_config(
    args: argparse.Namespace, img_size: int, in_chans: int, norm_pix: bool
) -> dict[str, Any]:
    return {
        "dataset": _dataset_key(args.dataset),
        "data_path": None if args.data_path is None else str(Path(args.data_path).resolve()),
        "val_path": None if args.val_path is None else str(Path(args.val_path).resolve()),
        "preset": args.preset,
        "img_size": img_size,
        "in_chans": in_chans,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "base_lr": None if args.lr is not None else args.base_lr,
        "lr": args.lr,
        "mask_ratio": args.mask_ratio,
        "norm_pix": norm_pix,
        "min_scale": args.min_scale,
        "seed": args.seed,
        "limit_train_images": args.limit_train_images,
        "limit_test_images": args.limit_test_images,
        "normalize": default_normalize(args.dataset, in_chans),
    }


def _check_resume(checkpoint: Mapping[str, Any], config: Mapping[str, Any], path: str) -> None:
    stored = run_config_of(checkpoint)
    if not stored:
        raise UsageError(f"--resume {path!r} was not written by 'ssl-mae pretrain'")
    for key in RESUME_MUST_MATCH:
        if stored.get(key) != config.get(key):
            option = "--" + key.replace("_", "-")
            raise UsageError(
                f"--resume {path!r} was trained with {option} {stored.get(key)!r}, this run has "
                f"{config.get(key)!r}; pass the options of the original run"
            )


def _prepare_output_dir(output_dir: Path, resume: str | None, overwrite: bool) -> None:
    existing = [output_dir / name for name in ("last.ckpt", "best.ckpt")]
    if resume is None and any(path.exists() for path in existing):
        if not overwrite:
            raise UsageError(
                f"--output-dir {str(output_dir)!r} already holds a run; pass --resume "
                f"{output_dir / 'last.ckpt'} to continue it or --overwrite to start afresh"
            )
        for path in [*existing, output_dir / "metrics.json"]:
            path.unlink(missing_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)


def _quiet_lightning() -> None:
    # Lightning's hints about worker counts and log intervals do not apply to in-memory data.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*log_every_n_steps.*")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    # --overwrite/--resume already decide what happens to an existing output folder.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def run_pretrain(args: argparse.Namespace) -> int:
    """``ssl-mae pretrain``: train, checkpoint, evaluate kNN and write ``metrics.json``."""
    from ssl_mae.models.presets import PRETRAIN_PRESETS, describe_presets

    if args.preset not in PRETRAIN_PRESETS:
        raise UsageError(f"--preset must be one of {describe_presets()}, got {args.preset!r}")
    _dataset_key(args.dataset)  # unknown names fail before anything is loaded
    _check_dir(args.data_path, "--data-path")
    _check_dir(args.val_path, "--val-path")
    if args.resume is not None and not Path(args.resume).expanduser().is_file():
        raise UsageError(f"--resume checkpoint {args.resume!r} does not exist")

    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
    from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger

    from ssl_mae.evaluation import knn_evaluate
    from ssl_mae.models.presets import build_pretrain_module
    from ssl_mae.training.callbacks import NonFiniteLossGuard, SkippedFilesReport
    from ssl_mae.training.checkpoints import AtomicCheckpointIO, write_json_atomic
    from ssl_mae.training.data import PretrainDataModule

    run_started = time.perf_counter()
    in_chans = args.in_chans or default_in_chans(args.dataset)
    overrides: dict[str, Any] = {"in_chans": in_chans, "mask_ratio": args.mask_ratio}
    if args.norm_pix is not None:
        overrides["norm_pix_loss"] = args.norm_pix
    if args.img_size is not None:
        overrides["img_size"] = args.img_size
    if args.lr is not None:
        overrides["lr"] = args.lr
    else:
        overrides["base_lr"] = args.base_lr
    pl.seed_everything(args.seed, verbose=False)
    # Bad sizes raise ValueError here, before any data is loaded.
    model = build_pretrain_module(args.preset, **overrides)
    img_size = model.img_size
    norm_pix = model.norm_pix_loss
    _check_pool(model, args.pool, args.knn)
    config = _run_config(args, img_size, in_chans, norm_pix)
    output_dir = Path(args.output_dir).expanduser()
    if args.resume is not None:
        _check_resume(read_checkpoint(args.resume), config, args.resume)
    _prepare_output_dir(output_dir, args.resume, args.overwrite)

    train_set = load_split(
        args.dataset, args.data_path, args.val_path, True, img_size, in_chans,
        args.limit_train_images,
    )  # fmt: skip
    test_set = load_split(
        args.dataset, args.data_path, args.val_path, False, img_size, in_chans,
        args.limit_test_images,
    )  # fmt: skip
    datamodule = PretrainDataModule(
        train_set,
        test_set,
        batch_size=args.batch_size,
        img_size=(img_size, img_size),
        normalize=config["normalize"],
        min_scale=args.min_scale,
        seed=args.seed,
        num_workers=args.num_workers,
        run_config=config,
    )
    steps_per_epoch = len(train_set) // args.batch_size
    last = ModelCheckpoint(
        dirpath=output_dir,
        filename="step{step}",
        every_n_train_steps=args.checkpoint_every_n_steps,
        save_top_k=0,
        save_last=True,
    )
    callbacks: list[pl.Callback] = [last, NonFiniteLossGuard()]
    if test_set is not None:
        # Also refreshes last.ckpt after every validation, i.e. at the end of every epoch.
        best = ModelCheckpoint(
            dirpath=output_dir,
            filename="best",
            monitor="val_loss",
            mode="min",
            save_top_k=1,
            save_last=True,
            enable_version_counter=False,
        )
        callbacks.append(best)
    skipped = SkippedFilesReport([train_set, test_set])
    callbacks.append(skipped)
    if args.progress:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, min(20, steps_per_epoch // 10))))
    loggers: list[Logger] = []
    if args.logger == "csv":
        loggers.append(CSVLogger(output_dir, name="logs"))
    elif args.logger == "tensorboard":
        loggers.append(TensorBoardLogger(output_dir, name="logs"))

    _quiet_lightning()
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator=args.accelerator,
        devices=args.devices,
        precision=args.precision,
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=output_dir,
        enable_progress_bar=args.progress,
        num_sanity_val_steps=0,
        log_every_n_steps=min(args.log_every_n_steps, max(1, steps_per_epoch)),
        use_distributed_sampler=False,  # ResumableSampler shards the data itself
        enable_model_summary=args.progress,
    )
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=args.resume)
    train_seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return 0

    metrics: dict[str, Any] = {
        "train_seconds": round(train_seconds, 2),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "train_loss": _metric(trainer.callback_metrics, "train_loss"),
        "val_loss": _metric(trainer.callback_metrics, "val_loss"),
        "best_val_loss": _metric_of_callbacks(callbacks),
        "skipped_files": skipped.num_skipped,
        "last_checkpoint": str(output_dir / "last.ckpt"),
        "best_checkpoint": str(output_dir / "best.ckpt") if test_set is not None else None,
        "resumed_from": args.resume,
        "config": config,
        "device": str(trainer.strategy.root_device),
        "torch_threads": torch.get_num_threads(),
    }
    if skipped.num_skipped:
        print(f"skipped {skipped.num_skipped} unreadable image files")
    print(
        f"trained {metrics['epochs']} epochs ({metrics['steps']} steps) in "
        f"{train_seconds:.1f} s; train_loss {metrics['train_loss']}, val_loss {metrics['val_loss']}"
    )
    if args.knn and test_set is not None:
        started = time.perf_counter()
        knn = knn_evaluate(
            model.feature_encoder(),
            train_set,
            test_set,
            normalize=config["normalize"],
            img_size=(img_size, img_size),
            num_classes=_num_classes(args.dataset, train_set),
            k=args.knn_k,
            temperature=args.knn_temperature,
            pool=args.pool,
            batch_size=args.eval_batch_size,
            device=trainer.strategy.root_device,
            num_workers=args.num_workers,
        )
        metrics["knn"] = {**knn, "temperature": args.knn_temperature, "pool": args.pool}
        metrics["knn_top1"], metrics["knn_top5"] = knn["top1"], knn["top5"]
        metrics["knn_seconds"] = round(time.perf_counter() - started, 2)
        _print_knn(knn, args.knn_temperature, args.pool)
    metrics["total_seconds"] = round(time.perf_counter() - run_started, 2)
    write_json_atomic(metrics, output_dir / "metrics.json")
    print(f"wrote {output_dir / 'metrics.json'}")
    return 0


def _check_pool(model: Any, pool: str, knn: bool) -> None:
    """``--pool cls`` needs a class token; HiViT (and mean-pooled ViTs) have none."""
    if knn and pool == "cls" and int(model.feature_encoder().num_prefix_tokens) == 0:
        raise UsageError("--pool cls needs a class token, but this model has none; use --pool mean")


def _metric(values: Mapping[str, Any], key: str) -> float | None:
    value = values.get(key)
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _metric_of_callbacks(callbacks: Sequence[Any]) -> float | None:
    from pytorch_lightning.callbacks import ModelCheckpoint

    for callback in callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor == "val_loss":
            return _metric({"v": callback.best_model_score}, "v")
    return None


def _num_classes(dataset: str, train_set: Any) -> int:
    from ssl_mae.data import dataset_info, unwrap_subset

    known = dataset_info(dataset).num_classes
    if known is not None:
        return known
    classes = getattr(unwrap_subset(train_set), "classes", None)
    if not classes:
        raise UsageError(
            "kNN needs labelled images: give a --data-path folder with one subfolder per class, "
            "or pass --no-knn"
        )
    return len(classes)


def _print_knn(knn: Mapping[str, float], temperature: float, pool: str) -> None:
    print(
        f"kNN top-1: {knn['top1']:.2f}%  top-5: {knn['top5']:.2f}%  (k={int(knn['k'])}, "
        f"t={temperature}, pool={pool}, {int(knn['num_train'])} train / "
        f"{int(knn['num_test'])} test images)"
    )


# --- evaluate / reconstruct ---------------------------------------------------------------------
def _data_args(args: argparse.Namespace, stored: Mapping[str, Any]) -> dict[str, Any]:
    """Data options of evaluate/reconstruct: the command line, else the checkpoint's run."""
    dataset = args.dataset or stored.get("dataset") or "fashion_mnist"
    _dataset_key(dataset)
    data_path = args.data_path if args.data_path is not None else stored.get("data_path")
    val_path = args.val_path if args.val_path is not None else stored.get("val_path")
    _check_dir(data_path, "--data-path")
    _check_dir(val_path, "--val-path")
    return {"dataset": dataset, "data_path": data_path, "val_path": val_path}


def _model_and_data(args: argparse.Namespace) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    checkpoint = read_checkpoint(args.checkpoint)
    stored = run_config_of(checkpoint)
    data = _data_args(args, stored)
    model = model_from_checkpoint(checkpoint, args.checkpoint)
    in_chans = model.in_chans
    normalize = stored.get("normalize") or default_normalize(data["dataset"], in_chans)
    return model, data, {"normalize": normalize, "in_chans": in_chans}


def _device(name: str | None) -> Any:
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise UsageError(f"--device {name!r} is not a torch device: {error}") from error


def run_evaluate(args: argparse.Namespace) -> int:
    """``ssl-mae evaluate``: kNN top-1/top-5 of a checkpoint on the test split."""
    from ssl_mae.evaluation import knn_evaluate

    model, data, extra = _model_and_data(args)
    _check_pool(model, args.pool, knn=True)
    img_size = model.img_size
    common = (data["dataset"], data["data_path"], data["val_path"])
    train_set = load_split(*common, True, img_size, extra["in_chans"], args.limit_train_images)
    test_set = load_split(*common, False, img_size, extra["in_chans"], args.limit_test_images)
    if test_set is None:
        raise UsageError("--val-path is required to evaluate a 'folder' dataset")
    knn = knn_evaluate(
        model.feature_encoder(),
        train_set,
        test_set,
        normalize=extra["normalize"],
        img_size=(img_size, img_size),
        num_classes=_num_classes(data["dataset"], train_set),
        k=args.knn_k,
        temperature=args.knn_temperature,
        pool=args.pool,
        batch_size=args.eval_batch_size,
        device=_device(args.device),
        num_workers=args.num_workers,
    )
    _print_knn(knn, args.knn_temperature, args.pool)
    return 0


def run_reconstruct(args: argparse.Namespace) -> int:
    """``ssl-mae reconstruct``: a PNG grid of reconstructions of random test images."""
    import torch

    from ssl_mae.data import normalize_images
    from ssl_mae.visualize import reconstruct, save_reconstruction_grid

    output = Path(args.output).expanduser()
    if output.suffix.lower() != ".png":
        raise UsageError(f"--output must be a .png file, got {args.output!r}")
    model, data, extra = _model_and_data(args)
    img_size = model.img_size
    common = (data["dataset"], data["data_path"], data["val_path"])
    images_set = load_split(*common, False, img_size, extra["in_chans"])
    if images_set is None:  # a folder without --val-path: show training images
        images_set = load_split(*common, True, img_size, extra["in_chans"])
    generator = torch.Generator().manual_seed(args.seed)
    count = min(args.num_images, len(images_set))
    picks = torch.randperm(len(images_set), generator=generator)[:count].tolist()
    images = torch.stack([images_set[i][0] for i in picks])
    inputs = normalize_images(images, extra["normalize"], (img_size, img_size))
    mask_ratio = model.masked_autoencoder.mask_ratio if args.mask_ratio is None else args.mask_ratio
    result = reconstruct(model, inputs, mask_ratio=mask_ratio, generator=generator)
    save_reconstruction_grid(result, output, normalize=extra["normalize"])
    print(f"wrote {output} ({count} images, mask ratio {mask_ratio})")
    return 0


# --- entry point --------------------------------------------------------------------------------
def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _user_errors() -> tuple[type[BaseException], ...]:
    # OSError covers unreadable inputs (no readable image in a folder, permission denied):
    # problems with what the user pointed us at, not bugs; --debug still shows the traceback.
    errors: list[type[BaseException]] = [ValueError, TypeError, OSError]
    try:
        from lightning_fabric.utilities.exceptions import MisconfigurationException

        errors.append(MisconfigurationException)
    except ImportError:  # pragma: no cover - lightning always ships it
        pass
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``ssl-mae`` with ``argv`` (default: ``sys.argv[1:]``) and returns the exit status.

    Args:
        argv: Command-line arguments without the program name.

    Returns:
        0 on success, 2 for mistakes in the input, 1 when training fails (a NaN loss).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(levelname)s: %(message)s")
    # Lightning announces devices and data loading at INFO on stderr; keep stderr for our own
    # warnings and the one-line error.
    for name in ("lightning.pytorch", "pytorch_lightning", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        from ssl_mae.training.callbacks import NonFiniteLossError

        if args.debug:
            raise
        if isinstance(error, NonFiniteLossError):
            print(f"{PROG}: error: {_first_line(error)}", file=sys.stderr)
            return EXIT_FAILURE
        if isinstance(error, _user_errors()):
            print(f"{PROG}: error: {_first_line(error)}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
