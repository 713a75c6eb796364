"""``ssl-mae embed``: the encoder's features of every image in a folder, with file names.

Writes ``PREFIX.npy`` (N, D float32) and ``PREFIX.csv`` in the layout of Lightly's embedding
export (``filenames, embedding_0, ..., embedding_{D-1}, labels``; file names relative to the
folder; labels are the class index for a folder with class subfolders and -1 for a flat one).
The rows of both files are in the same order. Unreadable files are left out and listed in
``PREFIX.skipped.txt``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from ssl_mae.cli import options as opt
from ssl_mae.cli.options import UsageError

__all__ = ["IndexedImages", "add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Adds ``embed``."""
    parser = subparsers.add_parser(
        "embed",
        help="write the features of a folder of images (.npy + .csv with file names)",
        description="Encode every image of a folder (flat or one subfolder per class, searched "
        "recursively) with a checkpoint's encoder, without masking, at the checkpoint's input "
        "size and normalisation. Writes PREFIX.npy (N x D float32) and PREFIX.csv (filenames, "
        "embedding_0..embedding_{D-1}, labels: Lightly's layout; label -1 in a flat folder).",
    )
    opt.add_checkpoint(parser)
    parser.add_argument("--input", required=True, help="folder of images")
    parser.add_argument(
        "--output",
        default="embeddings",
        help="PREFIX of the files written: PREFIX.npy and PREFIX.csv (default: embeddings)",
    )
    opt.add_pool(parser)
    opt.add_eval_batch_size(parser)
    opt.add_unset(
        parser,
        "--num-workers",
        "DataLoader workers (default: one per available CPU minus one, at most 8)",
        type=opt.nonnegative_int,
    )
    opt.add_device(parser)
    opt.add_debug(parser)
    parser.set_defaults(func=run)


class IndexedImages:
    """``(image, label, index)`` samples of a dataset, ``None`` for unreadable files."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        sample = self.dataset[index]
        return None if sample is None else (sample[0], sample[1], index)


def run(args: argparse.Namespace) -> int:
    """``ssl-mae embed``."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from ssl_mae.cli.data import ToUint8Tensor, check_dir
    from ssl_mae.cli.defaults import default_num_workers
    from ssl_mae.cli.trained import load, resolve_device
    from ssl_mae.data import ImageFolderDataset, collate_skip_none, normalize_images
    from ssl_mae.evaluation import encode_pooled

    check_dir(args.input, "--input")
    prefix = Path(args.output).expanduser()
    if prefix.suffix in (".npy", ".csv"):
        prefix = prefix.with_suffix("")
    device = resolve_device(args.device)
    trained = load(args)
    if args.pool == "cls" and int(trained.encoder.num_prefix_tokens) == 0:
        raise UsageError("--pool cls needs a class token, but this model has none; use --pool mean")
    prep = trained.preprocessing
    folder = ImageFolderDataset(
        Path(args.input).expanduser(),
        transform=ToUint8Tensor(prep.image_size),
        mode="L" if prep.in_chans == 1 else "RGB",
        on_error="skip",
    )
    workers = args.num_workers if args.num_workers is not None else default_num_workers("folder")
    loader: DataLoader[Any] = DataLoader(
        IndexedImages(folder),  # type: ignore[arg-type]
        batch_size=args.eval_batch_size,
        num_workers=workers,
        collate_fn=collate_skip_none,
    )
    encoder = trained.encoder.to(device).eval()
    features, indices = [], []
    with torch.no_grad():
        for batch in loader:
            if batch is None:
                continue
            images = normalize_images(batch[0], prep.normalize, prep.image_size).to(device)
            features.append(encode_pooled(encoder, images, args.pool).float().cpu())
            indices += batch[2].tolist()
    skipped = folder.skipped_paths()
    if not features:
        raise OSError(f"none of the {len(folder)} image files under {args.input!r} is readable")
    matrix = torch.cat(features).numpy().astype(np.float32)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    np.save(prefix.with_suffix(".npy"), matrix)
    with prefix.with_suffix(".csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["filenames", *(f"embedding_{i}" for i in range(matrix.shape[1])), "labels"]
        )
        for row, index in zip(matrix, indices, strict=True):
            path, label = folder.samples[index]
            writer.writerow([path.relative_to(folder.root).as_posix(), *row.tolist(), label])
    written = f"wrote {prefix.with_suffix('.npy')} and {prefix.with_suffix('.csv')}"
    if skipped:
        listing = prefix.with_name(prefix.name + ".skipped.txt")
        listing.write_text("".join(f"{p.relative_to(folder.root).as_posix()}\n" for p in skipped))
        written += f"; skipped {len(skipped)} unreadable files (listed in {listing})"
    print(f"{written} ({matrix.shape[0]} images x {matrix.shape[1]} features, pool={args.pool})")
    return 0
