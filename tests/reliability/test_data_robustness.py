"""A hostile image folder: truncated JPEGs, zero-byte files, non-images with image extensions,
AppleDouble files, and every awkward image mode (CMYK, palette with transparency, 16-bit,
float, RGBA, LA, bilevel).

What must hold: every decodable image is converted to the requested channels with sensible
pixels, every undecodable file is skipped and counted exactly once (also from DataLoader worker
processes), and ``ssl-mae pretrain`` trains on such a folder and reports the count.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ssl_mae.data import ImageFolderDataset, collate_skip_none

from .conftest import run_cli

SIZE = 12


def _save(image: Image.Image, path: Path, **kwargs: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)


def _noise_jpeg(size: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _hostile_folder(root: Path) -> tuple[dict[str, tuple[int, int, int]], set[str]]:
    """Writes the folder; returns {readable file: expected RGB of its pixel (0, 0)} and the
    names of the unreadable files."""
    readable: dict[str, tuple[int, int, int]] = {}

    def add(name: str, image: Image.Image, rgb: tuple[int, int, int], **kwargs: Any) -> None:
        _save(image, root / name, **kwargs)
        readable[name] = rgb

    add("a/rgb.png", Image.new("RGB", (SIZE, SIZE), (10, 20, 30)), (10, 20, 30))
    add("a/gray.jpg", Image.new("L", (SIZE, SIZE), 90), (90, 90, 90))
    add("a/cmyk.jpg", Image.new("CMYK", (SIZE, SIZE), (255, 0, 0, 0)), (0, 255, 255))
    palette = Image.new("P", (SIZE, SIZE), 0)
    palette.putpalette([0, 0, 0] + [200, 0, 0] * 255)
    palette.putpixel((1, 1), 1)
    # Index 0 is transparent: shown on white, as viewers do, not as the black stored there.
    add("a/palette.png", palette, (255, 255, 255), transparency=0)
    sixteen = Image.fromarray(np.full((SIZE, SIZE), 32896, dtype=np.uint16))
    add("a/gray16.png", sixteen, (128, 128, 128))  # 32896 / 257 = 128, not clipped to white
    add("b/float.tif", Image.fromarray(np.full((SIZE, SIZE), 0.5, dtype=np.float32)),
        (128, 128, 128))  # fmt: skip
    add("b/rgba.png", Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0)), (255, 255, 255))
    add("b/la.png", Image.new("LA", (SIZE, SIZE), (0, 255)), (0, 0, 0))
    add("b/bilevel.png", Image.new("1", (SIZE, SIZE), 1), (255, 255, 255))
    # A folder whose name looks like an image is searched, not opened.
    add("b/nested.png/inside.bmp", Image.new("RGB", (SIZE, SIZE), (1, 2, 3)), (1, 2, 3))

    unreadable = {
        "a/truncated.jpg": _noise_jpeg(64, 0)[:1500],
        "a/zero_bytes.png": b"",
        "b/text.jpg": b"this is a text file with an image extension\n",
        "b/page.png": b"<!doctype html><html><body>404 not found</body></html>",
        "b/._rgb.png": b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ",  # AppleDouble
    }
    for name, data in unreadable.items():
        (root / name).write_bytes(data)
    (root / "a" / "notes.txt").write_text("not an image extension: not even listed\n")
    (root / "a" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return readable, set(unreadable)


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, dict[str, tuple[int, int, int]], set[str]]:
    root = tmp_path / "images"
    readable, unreadable = _hostile_folder(root)
    return root, readable, unreadable


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_every_readable_image_is_converted_and_every_bad_file_counted(
    hostile: tuple[Path, dict[str, tuple[int, int, int]], set[str]], mode: str
) -> None:
    root, readable, unreadable = hostile
    dataset = ImageFolderDataset(root, mode=mode)
    listed = {_relative(root, path) for path, _ in dataset.samples}
    assert listed == set(readable) | unreadable  # .txt and .DS_Store are not even listed
    assert dataset.classes == ["a", "b"]

    loaded = {}
    for index, (path, label) in enumerate(dataset.samples):
        sample = dataset[index]
        name = _relative(root, path)
        if name in unreadable:
            assert sample is None, name
            continue
        assert sample is not None, f"{name} could not be read"
        image, sample_label = sample
        assert sample_label == label
        assert image.dtype == torch.uint8, name
        assert tuple(image.shape) == ((3 if mode == "RGB" else 1), SIZE, SIZE), name
        loaded[name] = image[:, 0, 0].tolist()
    assert set(loaded) == set(readable)
    for name, rgb in readable.items():
        if mode == "RGB":
            assert loaded[name] == pytest.approx(list(rgb), abs=3), name
        else:  # ITU-R 601-2 luma
            luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
            assert loaded[name] == pytest.approx([luma], abs=3), name

    assert dataset.num_skipped == len(unreadable)
    assert {_relative(root, p) for p in dataset.skipped_paths()} == unreadable
    for index in range(len(dataset)):  # a second epoch neither re-decodes nor re-counts
        dataset[index]
    assert dataset.num_skipped == len(unreadable)


def test_worker_processes_skip_and_count_the_bad_files(
    hostile: tuple[Path, dict[str, tuple[int, int, int]], set[str]],
) -> None:
    root, readable, unreadable = hostile
    resize = lambda image: torch.from_numpy(np.asarray(image.resize((8, 8)))).permute(2, 0, 1)  # noqa: E731
    dataset = ImageFolderDataset(root, transform=resize)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_skip_none)
    seen = 0
    for batch in loader:
        if batch is not None:  # a batch of only unreadable files
            images, _ = batch
            assert images.shape[1:] == (3, 8, 8)
            seen += images.shape[0]
    assert seen == len(readable)
    assert dataset.num_skipped == len(unreadable)  # flags set in the workers, read here


def test_replace_mode_keeps_batches_full(
    hostile: tuple[Path, dict[str, tuple[int, int, int]], set[str]],
) -> None:
    root, _, unreadable = hostile
    dataset = ImageFolderDataset(root, on_error="replace")
    samples = [dataset[i] for i in range(len(dataset))]
    assert all(sample is not None for sample in samples)
    assert dataset.num_skipped == len(unreadable)


def test_pretrain_on_the_hostile_folder_trains_and_reports_the_skipped_files(
    tmp_path: Path,
    hostile: tuple[Path, dict[str, tuple[int, int, int]], set[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, readable, unreadable = hostile
    out_dir = tmp_path / "run"
    code, out, err = run_cli(
        ["pretrain", "--preset", "mae_vit_micro_patch4",
         "--dataset", "folder", "--data-path", str(root), "--val-path", str(root),
         "--img-size", "8", "--batch-size", "5", "--epochs", "1", "--no-progress",
         "--accelerator", "cpu", "--devices", "1", "--knn-k", "3", "--logger", "none",
         "--output-dir", str(out_dir)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((out_dir / "metrics.json").read_text())
    total = len(readable) + len(unreadable)
    assert metrics["steps"] == total // 5
    # The training and the validation dataset each find the same bad files.
    assert metrics["skipped_files"] == 2 * len(unreadable)
    assert f"skipped {2 * len(unreadable)} unreadable image files" in out
    # kNN skips the bad files (and counts them) instead of scoring readable ones in their place.
    assert metrics["knn"]["num_train"] == len(readable)
    assert metrics["knn"]["skipped_files"] == 2 * len(unreadable)
    assert metrics["train_loss"] is not None and metrics["train_loss"] > 0
