"""``ssl-mae pretrain``: train a masked autoencoder, checkpoint it, evaluate it, report on it.

A run lives in its output folder: ``config.yaml`` (every option, defaults resolved),
``last.ckpt`` (the newest state: every N steps, after every validation, at the end and when
stopped by a signal), ``best.ckpt`` (lowest ``val_loss``), a ``NAME.sha256`` beside each
checkpoint, ``logs/`` (CSV, and TensorBoard when asked), ``metrics.json`` and ``report.md``
with its pictures in ``report/``. ``--resume OUTPUT/last.ckpt`` alone continues the run with
the options stored in the checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ssl_mae.cli import options as opt
from ssl_mae.cli.defaults import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_PRESET
from ssl_mae.cli.options import UsageError
from ssl_mae.cli.run_config import MAY_CHANGE, STATIC_DEFAULTS, option_name
from ssl_mae.training.fast import DEFAULT_GPU_DATA_MAX_MB, SWITCHES

__all__ = ["add_parser", "run"]

logger = logging.getLogger("ssl_mae.cli")

PRECISIONS = (
    "32-true",
    "32",
    "bf16-mixed",
    "bf16",
    "16-mixed",
    "16",
    "bf16-true",
    "16-true",
    "64-true",
    "64",
    "transformer-engine",
    "transformer-engine-float16",
)
RUN_ID_ENV = "SSL_MAE_RUN_ID"


# --- the parser ---------------------------------------------------------------------------------
def add_parser(subparsers: Any) -> None:
    """Adds ``pretrain``. Every option defaults to None: the run resolves it (see
    :mod:`ssl_mae.cli.run_config`) and ``--resume`` takes it from the checkpoint."""
    from ssl_mae.data.factory import DATASETS  # torch, but no model code
    from ssl_mae.models.presets import describe_presets

    parser = subparsers.add_parser(
        "pretrain",
        help="pre-train an MAE on a dataset or a folder of images",
        description="Pre-train a masked autoencoder (seed MAE, MAE-HiViT or SimpleMAE, chosen by "
        "--preset) with Lightning. Writes OUTPUT/config.yaml (every option, defaults resolved), "
        "last.ckpt (newest state) and best.ckpt (lowest val_loss) with a .sha256 beside each, "
        "logs/ (CSV; TensorBoard with --logger tensorboard), metrics.json and report.md; "
        "evaluates kNN on labelled held-out images. Defaults come from the preset and the data "
        "(see 'ssl-mae presets'); --resume CHECKPOINT alone continues a run with its options.",
    )
    # The groups, in the order --help lists them.
    data = parser.add_argument_group("data")
    model = parser.add_argument_group("model")
    optim = parser.add_argument_group("optimisation")
    hardware = parser.add_argument_group("hardware (Lightning)")
    fast = parser.add_argument_group(
        "fast path",
        "'auto' resolves from the training device: every part is on for a CUDA GPU and off on a "
        "CPU, where float32 eager training is both faster and the reference numbers; config.yaml "
        "records the resolved values (see docs/performance.md)",
    )
    output = parser.add_argument_group("output")
    evaluation = parser.add_argument_group("evaluation after training")
    opt.add_unset(data, "--dataset", f"one of {sorted(DATASETS)} (default: fashion_mnist)")
    opt.add_unset(
        data,
        "--data-path",
        "data directory; for 'folder' the training images, either flat or one subfolder "
        "per class (labels for kNN). Fashion-MNIST default: $SSL_MAE_FASHION_MNIST, the Debian "
        "package (/usr/share/datasets/fashion-mnist), else a download",
    )
    opt.add_unset(
        data,
        "--val-path",
        "'folder' only: held-out images for val_loss, the report's reconstructions and, "
        "with class subfolders, the kNN queries (default: none)",
    )
    opt.add_unset(
        data,
        "--download",
        "let torchvision download cifar10/cifar100/stl10 (and Fashion-MNIST into "
        "--data-path) when the files are missing (default: off)",
        action=argparse.BooleanOptionalAction,
    )
    opt.add_unset(
        data,
        "--num-workers",
        "DataLoader worker processes (default: 0 for Fashion-MNIST, which is held in "
        "memory; otherwise one per available CPU minus one, at most 8)",
        type=opt.nonnegative_int,
    )
    opt.add_unset(
        data,
        "--limit-train-images",
        "train on the first N training images only (default: all)",
        type=opt.positive_int,
    )
    opt.add_unset(
        data,
        "--limit-test-images",
        "validate and query kNN with the first N held-out images only (default: all)",
        type=opt.positive_int,
    )
    opt.add_unset(
        model,
        "--preset",
        "model preset, one of "
        + describe_presets().replace("'", "")
        + f" (default: {DEFAULT_PRESET}); 'ssl-mae presets' shows their sizes and defaults",
    )
    opt.add_unset(
        model,
        "--img-size",
        "input size in pixels, a multiple of the patch size (16 for mae_hivit_*); images "
        "are resized to it (default: the preset's: 224 for mae_vit_base_patch16, 28 for the "
        "micro presets, 32 for mae_hivit_nano, so Fashion-MNIST's 28x28 becomes 32x32)",
        type=opt.positive_int,
    )
    opt.add_unset(
        model,
        "--in-chans",
        "image channels (default: 1 for Fashion-MNIST, 3 otherwise; folders are read as RGB)",
        type=opt.positive_int,
        choices=(1, 3),
    )
    opt.add_unset(
        model,
        "--mask-ratio",
        "fraction of patches removed, in (0, 1) (default: the preset's, 0.75)",
        type=opt.mask_ratio,
    )
    opt.add_unset(
        model,
        "--norm-pix",
        "predict per-patch normalised pixels (default: the preset's; on for mae_hivit_*, "
        "off for the others)",
        action=argparse.BooleanOptionalAction,
    )
    opt.add_unset(
        optim, "--epochs", f"training epochs (default: {DEFAULT_EPOCHS})", type=opt.positive_int
    )
    opt.add_unset(
        optim,
        "--max-steps",
        "stop after N optimiser steps, even mid-epoch; the lr schedule spans the shorter "
        "of --epochs and --max-steps (default: no limit)",
        type=opt.positive_int,
    )
    opt.add_unset(
        optim,
        "--batch-size",
        f"images per device per step (default: {DEFAULT_BATCH_SIZE}, or for small training "
        "sets the largest power of two that gives 4 steps per epoch)",
        type=opt.positive_int,
    )
    lr = optim.add_mutually_exclusive_group()
    opt.add_unset(
        lr,
        "--base-lr",
        "peak lr per 256 images: lr = base_lr * batch * devices * nodes * accumulation / "
        "256 (default: the preset's: 1.5e-4 for ViT-B/L/H and HiViT-T/S/B/L as in the papers, "
        "1.5e-3 for the small presets; see 'ssl-mae presets')",
        type=opt.positive_float,
    )
    opt.add_unset(lr, "--lr", "absolute peak lr (default: unset)", type=opt.positive_float)
    opt.add_unset(
        optim,
        "--warmup-epochs",
        "epochs of linear lr warmup before the cosine decay (default: 10%% of the run's steps)",
        type=opt.nonnegative_float,
    )
    opt.add_unset(
        optim,
        "--weight-decay",
        "AdamW weight decay on weight matrices (default: 0.05)",
        type=opt.nonnegative_float,
    )
    opt.add_unset(
        optim,
        "--accumulate-grad-batches",
        "optimiser step every N batches (default: 1)",
        type=opt.positive_int,
    )
    opt.add_unset(
        optim,
        "--min-scale",
        "smallest random-resized-crop area fraction (default: the preset's: 0.2, 0.5 for the "
        "mae_vit_micro_patch7* presets)",
        type=opt.scale,
    )
    opt.add_unset(
        optim, "--seed", "seeds weights, data order, crops and masks (default: 0)", type=int
    )
    opt.add_unset(hardware, "--accelerator", "cpu, gpu, cuda, mps or auto (default: auto)")
    opt.add_unset(
        hardware,
        "--devices",
        "devices per node, or 'auto' (default: auto = all of the accelerator's)",
        type=opt.devices,
    )
    opt.add_unset(
        hardware,
        "--num-nodes",
        "machines taking part (default: 1); start the command on each node with "
        "MASTER_ADDR, MASTER_PORT, NODE_RANK set (or under SLURM/torchrun)",
        type=opt.positive_int,
    )
    opt.add_unset(
        hardware,
        "--strategy",
        "Lightning strategy: auto, ddp, ddp_spawn, fsdp, deepspeed, ... (default: auto = "
        "ddp with more than one device)",
    )
    opt.add_unset(
        fast,
        "--precision",
        "Lightning precision (default: bf16-mixed on a CUDA GPU with bf16, else 32-true)",
        choices=PRECISIONS,
    )
    opt.add_unset(
        fast,
        "--compile",
        "torch.compile the model; a compilation failure runs it eagerly with one warning "
        "(default: auto = on for CUDA, off on CPU)",
        choices=SWITCHES,
    )
    opt.add_unset(
        fast,
        "--fused-adamw",
        "the fused AdamW kernel (default: auto = on for CUDA, off on CPU)",
        choices=SWITCHES,
    )
    opt.add_unset(
        fast,
        "--gpu-data",
        "decode the training images once, keep them on the device as uint8 and crop, "
        "flip and normalise them there; the same batches as the host loader (default: auto = "
        "on for CUDA when they fit --gpu-data-max-mb and a quarter of the free GPU memory, "
        "off on CPU)",
        choices=SWITCHES,
    )
    opt.add_unset(
        fast,
        "--gpu-data-max-mb",
        f"largest decoded training set --gpu-data auto keeps on the GPU, in MiB (default: "
        f"{DEFAULT_GPU_DATA_MAX_MB})",
        type=opt.positive_float,
    )
    opt.add_unset(
        fast,
        "--check-loss-every-n-steps",
        "read the non-finite-loss flag, which accumulates on the device, every N steps; "
        "it is also read before every checkpoint, so a NaN never reaches one (default: 1 on "
        "CPU, where a read costs nothing; --log-every-n-steps on CUDA, so no step waits for "
        "the GPU)",
        type=opt.positive_int,
    )
    opt.add_unset(
        output,
        "--output-dir",
        "the run's folder (default: runs/mae; with --resume the checkpoint's folder)",
    )
    opt.add_unset(
        output,
        "--resume",
        "continue the run saved in CHECKPOINT (e.g. runs/mae/last.ckpt) with its options; "
        "only " + ", ".join(option_name(k) for k in MAY_CHANGE) + " may be given differently "
        "(default: a new run)",
        metavar="CHECKPOINT",
    )
    output.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an --output-dir that holds a run (all its checkpoints, logs and "
        "results are removed first)",
    )
    opt.add_unset(
        output,
        "--checkpoint-every-n-steps",
        "also write last.ckpt every N optimiser steps (default: 100)",
        type=opt.positive_int,
    )
    opt.add_unset(
        output,
        "--logger",
        "training logs in OUTPUT/logs: csv, tensorboard (CSV and TensorBoard; needs "
        "'pip install tensorboard') or none (default: csv)",
        choices=("csv", "tensorboard", "none"),
    )
    opt.add_unset(
        output,
        "--log-every-n-steps",
        "log loss and lr every N steps, and print a line every N steps with --no-progress "
        "(default: 50, at most once per epoch)",
        type=opt.positive_int,
    )
    opt.add_unset(
        output,
        "--progress",
        "progress bars (default: on); --no-progress prints one line every "
        "--log-every-n-steps steps instead",
        action=argparse.BooleanOptionalAction,
    )
    opt.add_unset(
        output,
        "--report",
        "write report.md with curves and reconstructions at the end (default: on)",
        action=argparse.BooleanOptionalAction,
    )
    opt.add_unset(
        evaluation,
        "--knn",
        "kNN top-1/top-5 on the held-out images (default: when they are labelled; a flat "
        "folder or a folder without --val-path is skipped with a note)",
        action=argparse.BooleanOptionalAction,
    )
    opt.add_unset(
        evaluation,
        "--knn-k",
        "kNN neighbours (default: 200, at most the mean number of images per class; a "
        "larger k than the bank holds is clamped with a warning)",
        type=opt.positive_int,
    )
    opt.add_unset(
        evaluation,
        "--knn-temperature",
        "kNN vote temperature (default: 0.07)",
        type=opt.positive_float,
    )
    opt.add_pool(evaluation, default=None)
    opt.add_eval_batch_size(evaluation, default=None)
    opt.add_debug(parser)
    parser.set_defaults(func=run)


# --- resolving the run's options ------------------------------------------------------------------
def _device_type(accelerator: str) -> str:
    """The device type Lightning will train on for ``--accelerator``."""
    import torch

    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if accelerator in ("auto", "gpu", "mps") and mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _resolve_fast_path(config: dict[str, Any], num_images: int) -> None:
    """Fills the fast-path options still "auto" (or unset) in ``config`` from the device."""
    from ssl_mae.training.fast import device_facts, resolve_fast_defaults

    device_type = _device_type(str(config["accelerator"]))
    facts = device_facts(device_type)
    dataset_bytes = num_images * int(config["in_chans"]) * int(config["img_size"]) ** 2
    free = facts["free_memory"]
    if config["gpu_data"] == "on" and free is not None and dataset_bytes > free:
        raise UsageError(
            f"--gpu-data on: the decoded training images need {dataset_bytes / 2**20:.0f} "
            f"MiB but the GPU has {facts['free_memory'] / 2**20:.0f} MiB free; use "
            "--gpu-data off or --limit-train-images"
        )
    fast = resolve_fast_defaults(
        device_type,
        dataset_bytes,
        facts["free_memory"],
        bf16_supported=facts["bf16_supported"],
        compile_supported=facts["compile_supported"],
        precision=config.get("precision"),
        compile=config["compile"],
        fused_adamw=config["fused_adamw"],
        gpu_data=config["gpu_data"],
        gpu_data_max_mb=float(config["gpu_data_max_mb"]),
        log_every_n_steps=int(config["log_every_n_steps"]),
        check_loss_every_n_steps=config["check_loss_every_n_steps"],
    )
    config.update(fast.as_config())


def _fresh_config(given: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a new run that do not need the model or the data."""
    from ssl_mae.cli.data import dataset_key
    from ssl_mae.cli.defaults import (
        default_in_chans,
        default_normalize,
        default_num_workers,
        preset_defaults,
    )
    from ssl_mae.models.presets import PRETRAIN_PRESETS, describe_presets

    preset = given.get("preset", DEFAULT_PRESET)
    if preset not in PRETRAIN_PRESETS:
        raise UsageError(f"--preset must be one of {describe_presets()}, got {preset!r}")
    recipe = preset_defaults(preset)
    dataset = dataset_key(given.get("dataset", "fashion_mnist"))
    in_chans = given.get("in_chans", default_in_chans(dataset))
    config: dict[str, Any] = {**STATIC_DEFAULTS}
    config.update(
        preset=preset,
        dataset=dataset,
        in_chans=in_chans,
        img_size=None,  # the preset's, known once the model is built
        mask_ratio=None,
        norm_pix=None,
        epochs=DEFAULT_EPOCHS,
        batch_size=None,  # known once the data is loaded
        base_lr=None if "lr" in given else recipe.base_lr,
        lr=None,
        min_scale=recipe.min_scale,
        seed=0,
        num_workers=default_num_workers(dataset),
        normalize=default_normalize(dataset, in_chans),
    )
    config.update(given)
    if config["val_path"] is not None and dataset != "folder":
        raise UsageError(
            f"--val-path is only used with --dataset folder; {dataset} has its own test split"
        )
    if config["download"] and dataset == "folder":
        raise UsageError("--download: a 'folder' dataset cannot be downloaded")
    return config


def _resume(args: argparse.Namespace, given: Mapping[str, Any]) -> tuple[dict[str, Any], Path]:
    """The config of a resumed run and its output folder."""
    from ssl_mae.cli.run_config import merge_resume, read_config_yaml, run_config_of
    from ssl_mae.cli.rundir import holds_run
    from ssl_mae.training.checkpoints import load_checkpoint

    if args.overwrite:
        raise UsageError("--overwrite and --resume contradict each other: pass one of them")
    path = Path(args.resume).expanduser()
    if not path.is_file():
        raise UsageError(f"--resume checkpoint {args.resume!r} does not exist")
    try:
        checkpoint = load_checkpoint(path)
    except ValueError as error:
        raise UsageError(f"--resume: {error}") from error
    stored = run_config_of(checkpoint)
    if not stored:
        raise UsageError(
            f"--resume {args.resume!r} was not written by 'ssl-mae pretrain' (it records no run "
            "options); use ssl-mae evaluate/export with it, or train a new run"
        )
    config, changes = merge_resume(stored, given, args.resume)
    home = path.resolve().parent
    output_dir = Path(args.output_dir).expanduser().resolve() if args.output_dir else home
    if output_dir != home and holds_run(output_dir):
        other = read_config_yaml(output_dir / "config.yaml").get("run_id")
        if other is None or other != config.get("run_id"):
            raise UsageError(
                f"--output-dir {str(output_dir)!r} holds another run; --resume {args.resume!r} "
                "would mix the two. Resume into the checkpoint's own folder (leave out "
                "--output-dir) or into an empty one"
            )
    config["output_dir"] = str(output_dir)
    for key, (old, new) in changes.items():
        note = (
            " (the lr schedule is recomputed for the new length)"
            if key in ("epochs", "max_steps")
            else ""
        )
        print(f"resuming with {option_name(key)} {new!r} instead of {old!r}{note}")
    config["changed_on_resume"] = {k: [old, new] for k, (old, new) in changes.items()}
    return config, output_dir


# --- the run --------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    """``ssl-mae pretrain``: resolve the options, train, evaluate, write results and report."""
    from ssl_mae.cli.data import check_dir, check_same_classes, num_classes_of
    from ssl_mae.cli.defaults import default_batch_size
    from ssl_mae.cli.run_config import given_options, new_run_id
    from ssl_mae.cli.rundir import OutputLock, is_launcher_process
    from ssl_mae.evaluation.protocols import default_knn_k

    started = time.perf_counter()
    given = given_options(args)
    if args.resume is not None:
        config, output_dir = _resume(args, given)
    else:
        config = _fresh_config(given)
        output_dir = Path(args.output_dir or "runs/mae").expanduser().resolve()
        config["output_dir"] = str(output_dir)
        # The processes Lightning starts for the other devices share the launcher's run id.
        inherited = None if is_launcher_process() else os.environ.get(RUN_ID_ENV)
        config["run_id"] = inherited or new_run_id()
    config.setdefault("run_id", new_run_id())
    check_dir(config["data_path"], "--data-path")
    check_dir(config["val_path"], "--val-path")
    if config["logger"] == "tensorboard":
        _check_tensorboard()

    import pytorch_lightning as pl

    from ssl_mae.models.presets import build_pretrain_module

    pl.seed_everything(int(config["seed"]), verbose=False)
    # Bad sizes raise ValueError here, before any data is loaded.
    model = build_pretrain_module(config["preset"], **_model_overrides(config))
    config["img_size"] = int(model.img_size)
    config["mask_ratio"] = float(model.masked_autoencoder.mask_ratio)
    config["norm_pix"] = bool(model.norm_pix_loss)
    encoder: Any = model.feature_encoder()
    if config["pool"] == "cls" and int(encoder.num_prefix_tokens) == 0:
        raise UsageError("--pool cls needs a class token, but this model has none; use --pool mean")

    train_set, val_set = _load_splits(config, download=bool(config["download"]))
    if config["batch_size"] is None:
        config["batch_size"] = default_batch_size(len(train_set))
    num_classes = num_classes_of(config["dataset"], train_set)
    knn_skipped = _knn_skip_reason(config, val_set, num_classes)
    if knn_skipped is None:
        check_same_classes(train_set, val_set)
        if config["knn_k"] is None:  # recorded resolved; clamped again if files are unreadable
            config["knn_k"] = default_knn_k(len(train_set), int(num_classes or 1))
    if config["knn"] is None:
        config["knn"] = knn_skipped is None
    steps_per_epoch = max(len(train_set) // int(config["batch_size"]), 1)
    if config.get("warmup_steps") is None:
        config["warmup_steps"] = _warmup_steps(config, steps_per_epoch)
    # The schedule's warmup is fixed in steps when the run starts (a resumed run with more
    # epochs keeps it); PretrainModule reads it from its hyper-parameters.
    model.hparams["warmup_steps"] = int(config["warmup_steps"])
    _resolve_fast_path(config, len(train_set))
    model.hparams["compile"] = config["compile"] == "on"
    model.hparams["fused_adamw"] = config["fused_adamw"] == "on"

    results, datamodule = _build_run(args, config, model, train_set, val_set, output_dir, started)
    if not is_launcher_process():  # a process Lightning started for another device or node
        return _fit_and_report(args, results, datamodule, num_classes, knn_skipped)
    os.environ[RUN_ID_ENV] = str(config["run_id"])  # for the processes of the other devices
    with OutputLock(output_dir):
        _prepare_output_dir(output_dir, config, args)
        return _fit_and_report(args, results, datamodule, num_classes, knn_skipped)


def _model_overrides(config: Mapping[str, Any]) -> dict[str, Any]:
    overrides: dict[str, Any] = {"in_chans": config["in_chans"]}
    for key, name in (
        ("img_size", "img_size"),
        ("mask_ratio", "mask_ratio"),
        ("norm_pix", "norm_pix_loss"),
    ):
        if config.get(key) is not None:
            overrides[name] = config[key]
    if config["lr"] is not None:
        overrides["lr"] = config["lr"]
    else:
        overrides["base_lr"] = config["base_lr"]
    overrides["weight_decay"] = config["weight_decay"]
    return overrides


def _warmup_steps(config: Mapping[str, Any], batches_per_epoch: int) -> int:
    steps_per_epoch = math.ceil(batches_per_epoch / int(config["accumulate_grad_batches"]))
    total = int(config["epochs"]) * steps_per_epoch
    if config["max_steps"] is not None:
        total = min(total, int(config["max_steps"]))
    if config["warmup_epochs"] is not None:
        return min(round(float(config["warmup_epochs"]) * steps_per_epoch), total)
    from ssl_mae.training.module import DEFAULT_WARMUP_FRACTION

    return int(total * DEFAULT_WARMUP_FRACTION)


def _check_tensorboard() -> None:
    import importlib.util

    if (
        importlib.util.find_spec("tensorboard") is None
        and importlib.util.find_spec("tensorboardX") is None
    ):
        raise UsageError(
            "--logger tensorboard needs TensorBoard, which is not installed: pip install "
            "tensorboard (or pip install 'ssl-mae[tensorboard]'), or use --logger csv"
        )


def _knn_skip_reason(
    config: Mapping[str, Any], val_set: Any, num_classes: int | None
) -> str | None:
    """Why kNN cannot run (None when it can); an explicit --knn that cannot run is an error."""
    from ssl_mae.cli.data import num_classes_of

    reason = None
    if config["knn"] is False:
        reason = "--no-knn"
    elif val_set is None:
        reason = "no held-out images (--val-path)"
    elif num_classes is None:
        reason = "the training folder has no class subfolders (labels)"
    elif num_classes_of(config["dataset"], val_set) is None:
        reason = "the --val-path folder has no class subfolders (labels)"
    if reason is not None and config["knn"] is True:
        raise UsageError(f"--knn cannot run: {reason}")
    return reason


def _prepare_output_dir(output_dir: Path, config: dict[str, Any], args: argparse.Namespace) -> None:
    """Checks or clears what the (locked) output folder holds and writes ``config.yaml``."""
    from ssl_mae.cli.run_config import write_config_yaml
    from ssl_mae.cli.rundir import clear_run, holds_run
    from ssl_mae.training.checkpoints import remove_partial_writes

    if args.resume is None and holds_run(output_dir):
        if not args.overwrite:
            raise UsageError(
                f"--output-dir {str(output_dir)!r} already holds a run; pass --resume "
                f"{output_dir / 'last.ckpt'} to continue it or --overwrite to start afresh"
            )
        clear_run(output_dir)
    remove_partial_writes(output_dir)
    header = (
        "ssl-mae pretrain: every option of this run, defaults resolved.\n"
        f"Continue it with: ssl-mae pretrain --resume {output_dir / 'last.ckpt'}"
    )
    write_config_yaml(config, output_dir / "config.yaml", header)


def _callbacks(
    config: Mapping[str, Any],
    args: argparse.Namespace,
    output_dir: Path,
    datasets: list[Any],
    has_val: bool,
    steps_per_epoch: int,
) -> dict[str, Any]:
    from pytorch_lightning.callbacks import ModelCheckpoint

    from ssl_mae.training.callbacks import (
        LastCheckpoint,
        LearningRateLog,
        LossProgressBar,
        NonFiniteLossGuard,
        ProgressLog,
        SkippedFilesReport,
        StopAtStepBoundary,
        Throughput,
    )

    last = LastCheckpoint(output_dir, int(config["checkpoint_every_n_steps"]))
    throughput = Throughput()
    named: dict[str, Any] = {
        "last": last,
        "stop": StopAtStepBoundary(args.stop_request, last),
        "guard": NonFiniteLossGuard(int(config["check_loss_every_n_steps"])),
        "skipped": SkippedFilesReport(datasets),
        "lr": LearningRateLog(),
        "throughput": throughput,
    }
    if has_val:
        named["best"] = ModelCheckpoint(
            dirpath=output_dir,
            filename="best",
            monitor="val_loss",
            mode="min",
            save_top_k=1,
            save_last=False,
            enable_version_counter=False,
        )
    if config["progress"]:
        named["progress"] = LossProgressBar(refresh_rate=20)
    else:
        # As Lightning's log interval: at least one line per epoch.
        every = min(int(config["log_every_n_steps"]), steps_per_epoch)
        named["progress"] = ProgressLog(every, throughput)
    return named


def _trainer(
    config: Mapping[str, Any], callbacks: list[Any], output_dir: Path, steps_per_epoch: int
) -> Any:
    import pytorch_lightning as pl
    from lightning_fabric.utilities.exceptions import MisconfigurationException
    from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger

    from ssl_mae.training.checkpoints import AtomicCheckpointIO

    loggers: list[Logger] = []
    if config["logger"] in ("csv", "tensorboard"):
        loggers.append(CSVLogger(output_dir, name="logs"))
    if config["logger"] == "tensorboard":
        loggers.append(TensorBoardLogger(output_dir, name="logs", version=loggers[0].version))
    _quiet_lightning()
    hardware = {
        k: config[k] for k in ("accelerator", "devices", "num_nodes", "strategy", "precision")
    }
    try:
        return pl.Trainer(
            max_epochs=int(config["epochs"]),
            max_steps=-1 if config["max_steps"] is None else int(config["max_steps"]),
            accumulate_grad_batches=int(config["accumulate_grad_batches"]),
            callbacks=callbacks,
            logger=loggers or False,
            plugins=[AtomicCheckpointIO()],
            default_root_dir=output_dir,
            enable_progress_bar=bool(config["progress"]),
            num_sanity_val_steps=0,
            log_every_n_steps=min(int(config["log_every_n_steps"]), steps_per_epoch),
            use_distributed_sampler=False,  # ResumableSampler shards the data itself
            enable_model_summary=bool(config["progress"]),
            **hardware,
        )
    except (ValueError, ImportError, MisconfigurationException) as error:
        given = " ".join(f"{option_name(k)} {v}" for k, v in hardware.items())
        reason = str(error).strip().splitlines()[0]
        raise UsageError(f"cannot set up training with {given}: {reason}") from error


def _quiet_lightning() -> None:
    # After a resume the best-checkpoint callback looks for val_loss before the first
    # validation has run; best.ckpt is updated at that validation.
    warnings.filterwarnings("ignore", message=r".*could not find the monitored key.*")
    # Lightning sets its loggers to INFO when imported and then announces devices and data
    # loading on stderr; stderr is for warnings and the one-line error.
    for name in ("lightning.pytorch", "pytorch_lightning", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Lightning's hints about worker counts and log intervals do not apply to in-memory data.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*log_every_n_steps.*")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # A run without held-out images has an empty list of validation loaders, on purpose.
    warnings.filterwarnings("ignore", message=r"Total length of .* across ranks is zero")


def _build_run(
    args: argparse.Namespace,
    config: dict[str, Any],
    model: Any,
    train_set: Any,
    val_set: Any,
    output_dir: Path,
    started: float,
) -> tuple[Any, Any]:
    """The data module and the results holder (with the trainer); nothing is written yet, so
    a bad --strategy or --precision leaves the output folder untouched."""
    from ssl_mae.cli.report import RunResults
    from ssl_mae.training.data import PretrainDataModule

    datamodule = PretrainDataModule(
        train_set,
        val_set,
        batch_size=int(config["batch_size"]),
        img_size=(config["img_size"], config["img_size"]),
        normalize=config["normalize"],
        min_scale=float(config["min_scale"]),
        seed=int(config["seed"]),
        num_workers=int(config["num_workers"]),
        run_config={k: v for k, v in config.items() if k != "changed_on_resume"},
        gpu_data=config["gpu_data"] == "on",
    )
    steps_per_epoch = max(len(train_set) // int(config["batch_size"]), 1)
    named = _callbacks(
        config, args, output_dir, [train_set, val_set], val_set is not None, steps_per_epoch
    )
    trainer = _trainer(config, list(named.values()), output_dir, steps_per_epoch)
    results = RunResults(
        config=config,
        output_dir=output_dir,
        resumed_from=args.resume,
        trainer=trainer,
        callbacks=named,
        model=model,
        images=val_set if val_set is not None else train_set,
        started=started,
    )
    return results, datamodule


def _fit_and_report(
    args: argparse.Namespace,
    results: Any,
    datamodule: Any,
    num_classes: int | None,
    knn_skipped: str | None,
) -> int:
    from ssl_mae.cli.report import write_results
    from ssl_mae.training.signals import StopRequested

    trainer, model, config = results.trainer, results.model, results.config
    results.training_started = time.perf_counter()
    try:
        with args.stop_request.graceful():
            trainer.fit(model, datamodule=datamodule, ckpt_path=args.resume)
    except StopRequested as stopped:
        if trainer.is_global_zero:
            write_results(results, status=f"interrupted by {stopped.signal_name}")
        raise
    except Exception as error:
        if trainer.is_global_zero:
            _record_failure(results, f"failed: {type(error).__name__}")
        raise
    results.train_seconds = time.perf_counter() - results.training_started
    if not trainer.is_global_zero:
        return 0
    print(
        f"trained {trainer.current_epoch} epochs ({trainer.global_step} steps) in "
        f"{results.train_seconds:.1f} s; train_loss {results.metric('train_loss')}, "
        f"val_loss {results.metric('val_loss')}"
    )
    skipped = results.callbacks["skipped"].num_skipped
    if skipped:
        print(f"skipped {skipped} unreadable image files")
    if knn_skipped is None and num_classes is not None:
        try:
            results.knn = _knn(config, model, num_classes, trainer)
        except StopRequested as stopped:
            write_results(results, status=f"trained; kNN interrupted by {stopped.signal_name}")
            raise
    else:
        results.knn = {"skipped": knn_skipped}
        if knn_skipped != "--no-knn":
            print(f"kNN skipped: {knn_skipped}")
    write_results(results, status="finished")
    output_dir = results.output_dir
    print(
        f"wrote {output_dir / 'metrics.json'}"
        + ("" if not config["report"] else f" and {output_dir / 'report.md'}")
    )
    return 0


def _load_splits(config: Mapping[str, Any], **settings: Any) -> tuple[Any, Any]:
    """The training and held-out splits of the run's data at its input size and channels, each
    limited as ``--limit-train-images`` / ``--limit-test-images`` say; ``settings`` are further
    arguments of :func:`ssl_mae.cli.data.load_split` (``download``, ``evaluation``)."""
    from ssl_mae.cli.data import load_split

    split = dict(
        dataset=config["dataset"],
        data_path=config["data_path"],
        val_path=config["val_path"],
        img_size=config["img_size"],
        in_chans=config["in_chans"],
        **settings,
    )
    train = load_split(**split, train=True, limit=config["limit_train_images"])
    held_out = load_split(**split, train=False, limit=config["limit_test_images"])
    return train, held_out


def _record_failure(results: Any, status: str) -> None:
    """Writes ``metrics.json`` of a failed run (no report); a second failure, e.g. the same full
    disk, must not hide the first one."""
    from ssl_mae.cli.report import write_results

    results.config["report"] = False
    try:
        write_results(results, status=status)
    except Exception as error:
        logger.debug("metrics.json not written: %s", error)  # the run's own error follows


def _knn(config: Mapping[str, Any], model: Any, num_classes: int, trainer: Any) -> dict[str, Any]:
    from ssl_mae.evaluation import knn_evaluate

    started = time.perf_counter()
    bank, queries = _load_splits(config, evaluation=True)
    result: dict[str, Any] = knn_evaluate(
        model.feature_encoder(),
        bank,
        queries,
        normalize=config["normalize"],
        img_size=(config["img_size"], config["img_size"]),
        num_classes=num_classes,
        k=config["knn_k"],
        temperature=float(config["knn_temperature"]),
        pool=config["pool"],
        batch_size=int(config["eval_batch_size"]),
        device=trainer.strategy.root_device,
        num_workers=int(config["num_workers"]),
    )
    result.update(temperature=config["knn_temperature"], pool=config["pool"])
    result["seconds"] = round(time.perf_counter() - started, 2)
    print(
        f"kNN top-1: {result['top1']:.2f}%  top-5: {result['top5']:.2f}%  (k={int(result['k'])}, "
        f"t={config['knn_temperature']}, pool={config['pool']}, {int(result['num_train'])} train / "
        f"{int(result['num_test'])} test images)"
    )
    return result
