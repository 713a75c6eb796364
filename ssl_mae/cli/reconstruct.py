"""``ssl-mae reconstruct``: a PNG grid of what a checkpoint makes of masked images.

Rows are images (your own files with ``--images``, else random held-out images of the dataset),
columns: original | masked | reconstruction | reconstruction with the visible patches pasted.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ssl_mae.cli import options as opt
from ssl_mae.cli.options import UsageError

__all__ = ["add_parser", "run"]

DEFAULT_NUM_IMAGES = 8


def add_parser(subparsers: Any) -> None:
    """Adds ``reconstruct``."""
    from ssl_mae.cli.trained import add_data_options

    parser = subparsers.add_parser(
        "reconstruct",
        help="PNG grid: original | masked | reconstruction | reconstruction + visible",
        description="Reconstruct masked images with a checkpoint and write a PNG grid: your own "
        "image files (--images) or random held-out images of the checkpoint's dataset. Images "
        "are resized to the checkpoint's input size and normalised as in its run.",
    )
    opt.add_checkpoint(parser)
    opt.add_unset(
        parser,
        "--images",
        "image files to reconstruct (default: random images of the dataset)",
        nargs="+",
        metavar="FILE",
    )
    parser.add_argument(
        "--output", default="reconstruction.png", help="PNG file (default: reconstruction.png)"
    )
    opt.add_unset(
        parser,
        "--num-images",
        f"dataset images: rows of the grid (default: {DEFAULT_NUM_IMAGES})",
        type=opt.positive_int,
    )
    opt.add_unset(
        parser,
        "--mask-ratio",
        "fraction of patches removed, in [0, 1) (default: the checkpoint's)",
        type=opt.ratio,
    )
    parser.add_argument(
        "--norm-pix-stats",
        choices=("target", "visible", "none"),
        default="target",
        help="norm-pix models: map predictions back to pixels with each masked patch's own "
        "mean/variance (target, as the official demo), the visible patches' (visible), or not "
        "at all (none) (default: target)",
    )
    parser.add_argument("--seed", type=int, default=0, help="picks images and masks (default: 0)")
    add_data_options(parser)
    opt.add_device(parser)
    opt.add_debug(parser)
    parser.set_defaults(func=run)


def _own_images(files: list[str], size: tuple[int, int], in_chans: int) -> Any:
    import torch

    from ssl_mae.cli.data import ToUint8Tensor
    from ssl_mae.data import load_image

    resize = ToUint8Tensor(size)
    images = []
    for name in files:
        path = Path(name).expanduser()
        if not path.is_file():
            raise UsageError(f"--images: {name!r} is not a file")
        try:
            image = load_image(path, "L" if in_chans == 1 else "RGB")
        except Exception as error:  # Pillow raises many types for unreadable files
            raise UsageError(f"--images: {name!r} is not a readable image ({error})") from error
        images.append(resize(image))
    return torch.stack(images)


def _dataset_images(args: argparse.Namespace, trained: Any, generator: Any) -> Any:
    import torch

    from ssl_mae.cli.data import load_split
    from ssl_mae.cli.trained import data_options, evaluation_split

    data = data_options(args, trained)
    prep = trained.preprocessing
    split = evaluation_split(data, prep)
    images_set = load_split(**split, train=False, limit=args.limit_test_images)
    if images_set is None:  # a folder without --val-path: show training images
        images_set = load_split(**split, train=True, limit=args.limit_train_images)
    count = min(args.num_images or DEFAULT_NUM_IMAGES, len(images_set))
    picks = torch.randperm(len(images_set), generator=generator).tolist()
    samples = [s for s in (images_set[i] for i in picks[: 2 * count]) if s is not None][:count]
    if not samples:
        raise OSError("none of the picked images is readable")
    return torch.stack([s[0] for s in samples])


def run(args: argparse.Namespace) -> int:
    """``ssl-mae reconstruct``."""
    import torch

    from ssl_mae.cli.trained import load, resolve_device
    from ssl_mae.data import normalize_images
    from ssl_mae.visualize import reconstruct, save_reconstruction_grid

    output = Path(args.output).expanduser()
    if output.suffix.lower() != ".png":
        raise UsageError(f"--output must be a .png file, got {args.output!r}")
    if args.images is not None and args.num_images is not None:
        raise UsageError("--num-images: only used without --images (the grid shows every file)")
    device = resolve_device(args.device)
    trained = load(args)
    prep = trained.preprocessing
    generator = torch.Generator().manual_seed(args.seed)
    if args.images is not None:
        images = _own_images(args.images, prep.image_size, prep.in_chans)
    else:
        images = _dataset_images(args, trained, generator)
    inputs = normalize_images(images, prep.normalize, prep.image_size).to(device)
    model = trained.module.to(device)
    core = trained.core
    mask_ratio = core.mask_ratio if args.mask_ratio is None else args.mask_ratio
    num_patches = core.encoder.grid_size[0] * core.encoder.grid_size[1]
    noise = torch.rand(inputs.shape[0], num_patches, generator=generator).to(device)
    result = reconstruct(
        model, inputs, mask_ratio=mask_ratio, noise=noise, norm_pix_stats=args.norm_pix_stats
    )
    save_reconstruction_grid(result, output, normalize=prep.normalize)
    print(f"wrote {output} ({inputs.shape[0]} images, mask ratio {mask_ratio}, on {device})")
    return 0
