"""``ssl-mae export``: a checkpoint as a Hugging Face folder, a timm folder, an official ``.pth``
or a ``.safetensors`` file (see :mod:`ssl_mae.export`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ssl_mae.cli import options as opt
from ssl_mae.cli.options import UsageError

__all__ = ["add_parser", "default_output", "run"]

FORMATS: tuple[str, ...] = ("hf", "timm", "official", "safetensors")


def add_parser(subparsers: Any) -> None:
    """Adds ``export``."""
    parser = subparsers.add_parser(
        "export",
        help="write a checkpoint as Hugging Face, timm, official MAE or safetensors weights",
        description="Export a checkpoint of ssl-mae pretrain (every preset) or of the examples. "
        "hf: a transformers ViTMAEForPreTraining folder (config.json, model.safetensors, "
        "preprocessor_config.json); timm: a timm VisionTransformer folder for "
        "timm.create_model('local-dir:FOLDER', pretrained=True) with its pretrained_cfg (input "
        "size, mean/std); official: a facebookresearch/mae .pth ({'model': ..., 'args': ...}; "
        "HiViT: the mmpretrain backbone); safetensors: the whole model in this package's layout "
        "with its hyper-parameters as metadata. Architecture (head counts included) and "
        "preprocessing come from the checkpoint, and every export is checked against the "
        "checkpoint's model before it is written. HiViT has no hf/timm equivalent.",
    )
    opt.add_checkpoint(parser)
    parser.add_argument("--format", choices=FORMATS, required=True, help="what to write")
    opt.add_unset(
        parser,
        "--output",
        "target folder (hf, timm) or file (official, safetensors) (default: beside the "
        "checkpoint: CHECKPOINT_STEM-hf/, CHECKPOINT_STEM-timm/, CHECKPOINT_STEM.pth, "
        "CHECKPOINT_STEM.safetensors)",
    )
    opt.add_unset(
        parser,
        "--pool",
        "timm only: the pooling of model(x): mean (global_pool='avg' without fc_norm, as "
        "ssl-mae's features) or cls (global_pool='token') (default: mean)",
        choices=opt.POOL_CHOICES,
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing export at --output"
    )
    opt.add_debug(parser)
    parser.set_defaults(func=run)


def default_output(checkpoint: Path, format: str) -> Path:
    """Where an export goes when ``--output`` is not given."""
    stem = checkpoint.with_suffix("")
    return {
        "hf": stem.with_name(stem.name + "-hf"),
        "timm": stem.with_name(stem.name + "-timm"),
        "official": checkpoint.with_suffix(".pth"),
        "safetensors": checkpoint.with_suffix(".safetensors"),
    }[format]


def _check_output(output: Path, format: str, overwrite: bool) -> None:
    folder = format in ("hf", "timm")
    if folder and output.exists() and not output.is_dir():
        raise UsageError(f"--output {str(output)!r} is a file; --format {format} writes a folder")
    if not folder and output.is_dir():
        raise UsageError(f"--output {str(output)!r} is a folder; --format {format} writes a file")
    if output.exists() and (not folder or any(output.iterdir())) and not overwrite:
        raise UsageError(f"--output {str(output)!r} already exists; pass --overwrite to replace it")


def run(args: argparse.Namespace) -> int:
    """``ssl-mae export``."""
    import shutil

    from ssl_mae.cli.trained import load
    from ssl_mae.export import export

    if args.pool is not None and args.format != "timm":
        raise UsageError(f"--pool: only used by --format timm, not {args.format}")
    checkpoint = Path(args.checkpoint).expanduser()
    output = (
        Path(args.output).expanduser() if args.output else default_output(checkpoint, args.format)
    )
    _check_output(output, args.format, args.overwrite)
    trained = load(args)
    options = {"pool": args.pool or "mean"} if args.format == "timm" else {}
    # Written beside the target first: a failed export (e.g. its self-check) leaves any previous
    # export in place.
    partial = output.with_name(f".{output.name}.partial")
    if partial.is_dir():
        shutil.rmtree(partial)
    partial.unlink(missing_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    export(trained, partial, args.format, **options)
    if output.is_dir():
        shutil.rmtree(output)
    partial.replace(output)
    prep = trained.preprocessing
    print(
        f"wrote {output} ({args.format}; input {prep.image_size[0]}x{prep.image_size[1]}, "
        f"{prep.in_chans} channel(s), mean {list(prep.mean) if prep.mean else None}, "
        f"std {list(prep.std) if prep.std else None})"
    )
    return 0
