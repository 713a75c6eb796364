"""What the commands that start from a checkpoint share: loading it, the device, the data.

``evaluate``, ``export``, ``embed`` and ``reconstruct`` take the architecture and the
preprocessing (input size, channels, normalisation) from the checkpoint, and the dataset options
from the run that wrote it unless the command line says otherwise.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ssl_mae.cli import options as opt
from ssl_mae.cli.options import UsageError

__all__ = ["add_data_options", "data_options", "load", "resolve_device"]


def load(args: argparse.Namespace) -> Any:
    """The :class:`~ssl_mae.export.TrainedModel` of ``--checkpoint`` (with ``--normalize``)."""
    from ssl_mae.export import RECORDED, load_trained_model

    path = Path(args.checkpoint).expanduser()
    if not path.exists():
        raise UsageError(f"checkpoint {args.checkpoint!r} does not exist")
    normalize = opt.parse_normalization(args.normalize)
    return load_trained_model(path, normalize=RECORDED if normalize == "auto" else normalize)


def resolve_device(name: str) -> Any:
    """``--device``: ``auto`` (CUDA, then MPS, then CPU), ``gpu`` (= ``cuda``), or a torch
    device that must exist on this machine."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device("cuda" if name == "gpu" else name)
    except RuntimeError as error:
        raise UsageError(f"--device {name!r} is not a torch device: {error}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"--device {name}: no CUDA GPU is available on this machine")
        if device.index is not None and device.index >= count:
            raise UsageError(f"--device {name}: this machine has {count} CUDA GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: MPS is not available on this machine")
    return device


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """The dataset options; each defaults to the value of the checkpoint's run."""
    note = " (default: the checkpoint's run's)"
    opt.add_unset(parser, "--dataset", "fashion_mnist, folder, cifar10, cifar100 or stl10" + note)
    opt.add_unset(
        parser,
        "--data-path",
        "data directory; for 'folder' the training images, one subfolder per class" + note,
    )
    opt.add_unset(
        parser,
        "--val-path",
        "'folder' only: the labelled test images, the same class subfolders" + note,
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="let torchvision download a missing cifar10/cifar100/stl10 (default: off)",
    )
    opt.add_unset(
        parser,
        "--num-workers",
        "DataLoader workers (default: 0 for Fashion-MNIST, else one per CPU minus one, at most 8)",
        type=opt.nonnegative_int,
    )
    opt.add_unset(
        parser,
        "--limit-train-images",
        "use the first N training images only (default: all)",
        type=opt.positive_int,
    )
    opt.add_unset(
        parser,
        "--limit-test-images",
        "use the first N test images only (default: all)",
        type=opt.positive_int,
    )


def data_options(args: argparse.Namespace, trained: Any) -> dict[str, Any]:
    """Dataset, paths and workers: the command line, else the checkpoint's run."""
    from ssl_mae.cli.data import check_dir, dataset_key
    from ssl_mae.cli.defaults import default_num_workers

    recorded = {**trained.hyper_parameters, **trained.run_config}
    dataset = dataset_key(args.dataset or recorded.get("dataset") or "fashion_mnist")
    data_path = args.data_path if args.data_path is not None else recorded.get("data_path")
    val_path = args.val_path if args.val_path is not None else recorded.get("val_path")
    if args.val_path is not None and dataset != "folder":
        raise UsageError(f"--val-path is only used with --dataset folder, not {dataset}")
    if args.download and dataset == "folder":
        raise UsageError("--download: a 'folder' dataset cannot be downloaded")
    check_dir(data_path, "--data-path")
    check_dir(val_path, "--val-path")
    workers = args.num_workers if args.num_workers is not None else default_num_workers(dataset)
    return {
        "dataset": dataset,
        "data_path": data_path,
        "val_path": val_path if dataset == "folder" else None,
        "download": bool(args.download),
        "num_workers": workers,
    }


def evaluation_split(data: Mapping[str, Any], prep: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`ssl_mae.cli.data.load_split` for evaluating a trained
    model: the ``data`` of :func:`data_options` at the input size and channels of its
    preprocessing ``prep``, unreadable files skipped; add ``train`` and ``limit``."""
    return dict(
        dataset=data["dataset"],
        data_path=data["data_path"],
        val_path=data["val_path"],
        img_size=prep.image_size[0],
        in_chans=prep.in_chans,
        evaluation=True,
        download=data["download"],
    )
