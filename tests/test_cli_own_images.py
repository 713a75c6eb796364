"""From "I have images" to "I have an encoder in my framework" with the ``ssl-mae`` commands.

A generated folder of mixed images (sizes, modes, a corrupt file, an empty file, a non-image
file) goes through ``pretrain`` -> interrupt -> ``--resume`` alone -> ``evaluate --protocol
linear`` -> ``export --format hf`` (loaded by ``transformers``, features equal to ours) ->
``export --format timm`` (``timm.create_model``) -> ``embed`` -> ``reconstruct`` on two image
files (the full chain is one slow test; each command also has a fast test on a shared tiny
checkpoint).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_mae.cli import main

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("cat", "dog")
# Every image mode a photo folder may hold, at different sizes.
_MODES = ("RGB", "L", "RGBA", "P", "CMYK", "I;16", "LA", "1")


def make_photo_folder(root: Path, per_class: int = 8, val_per_class: int = 3) -> Path:
    """``root/train/{cat,dog}`` and ``root/val/{cat,dog}``: mixed sizes and modes, plus one
    corrupt PNG, one empty JPEG and one text file among the training images."""
    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                height, width = 12 + 5 * i, 40 - 3 * i
                pixels = torch.randint(0, 256, (height, width, 3), generator=generator)
                pixels[..., label] = 255 * (i % 2)  # a little signal for the probe
                image = Image.fromarray(pixels.to(torch.uint8).numpy())
                mode = _MODES[(i + label) % len(_MODES)]
                image = (
                    image.convert(mode) if mode != "I;16" else image.convert("L").convert("I;16")
                )
                suffix = ".jpg" if mode in ("RGB", "L", "CMYK") else ".png"
                image.save(folder / f"{split}_{i}{suffix}")
    (root / "train" / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "train" / "dog" / "empty.jpg").write_bytes(b"")
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    return root


PRETRAIN = [
    "--preset", "mae_vit_micro_patch4", "--img-size", "16", "--epochs", "2",
    "--batch-size", "4", "--no-progress", "--accelerator", "cpu", "--devices", "1",
    "--num-workers", "0", "--checkpoint-every-n-steps", "1", "--log-every-n-steps", "1",
]  # fmt: skip


def _pretrain_argv(root: Path, out_dir: Path) -> list[str]:
    return [
        "pretrain", "--dataset", "folder", "--data-path", str(root / "train"),
        "--val-path", str(root / "val"), *PRETRAIN, "--output-dir", str(out_dir),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A tiny run on the photo folder: ``(image root, last.ckpt)``."""
    root = make_photo_folder(tmp_path_factory.mktemp("photos"))
    out_dir = root / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*_pretrain_argv(root, out_dir), "--no-report"]) == 0
    finally:
        torch.set_num_threads(threads)
    yield root, out_dir / "last.ckpt"


def _features(checkpoint: Path, images: torch.Tensor) -> torch.Tensor:
    from ssl_mae.export import load_trained_model

    with torch.no_grad():
        return load_trained_model(checkpoint).encoder.encode(images)


# --- each command on the shared checkpoint -------------------------------------------------------
def test_the_run_skipped_the_bad_files_and_resized_every_image(
    trained: tuple[Path, Path],
) -> None:
    _, checkpoint = trained
    metrics = json.loads((checkpoint.parent / "metrics.json").read_text())
    assert metrics["skipped_files"] == 2  # the corrupt and the empty file; the .txt is no image
    assert metrics["knn"]["num_train"] == 16 and metrics["knn"]["num_test"] == 6
    assert metrics["config"]["img_size"] == 16 and metrics["config"]["in_chans"] == 3


@pytest.mark.parametrize("protocol", ["knn", "linear", "finetune"])
def test_evaluate_writes_json(
    protocol: str, trained: tuple[Path, Path], tmp_path: Path, capsys: Any
) -> None:
    _, checkpoint = trained
    output = tmp_path / f"{protocol}.json"
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--protocol", protocol]
    argv += ["--output", str(output), "--device", "cpu", "--num-workers", "0"]
    if protocol == "finetune":
        argv += ["--epochs", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    result = json.loads(output.read_text())
    assert result["protocol"] == protocol and 0 <= result["top1"] <= 100
    assert result["num_train"] == 16 and result["num_test"] == 6 and result["skipped_files"] == 2
    label = {"knn": "kNN"}.get(protocol, protocol)
    assert f"{label} top-1: {result['top1']:.2f}%" in out
    if protocol == "linear":  # full-batch L-BFGS, as scikit-learn's LogisticRegression
        assert result["optimizer"] == "lbfgs" and result["batch_size"] == 16


def test_embed_writes_npy_and_csv_with_file_names(
    trained: tuple[Path, Path], tmp_path: Path, capsys: Any
) -> None:
    from ssl_mae.data import load_image
    from ssl_mae.export import load_trained_model

    root, checkpoint = trained
    prefix = tmp_path / "emb"
    argv = ["embed", "--checkpoint", str(checkpoint), "--input", str(root / "train")]
    assert main([*argv, "--output", str(prefix), "--device", "cpu", "--num-workers", "0"]) == 0
    assert "skipped 2 unreadable files" in capsys.readouterr().out
    matrix = np.load(prefix.with_suffix(".npy"))
    with prefix.with_suffix(".csv").open() as file:
        rows = list(csv.reader(file))
    assert rows[0][0] == "filenames" and rows[0][-1] == "labels" and len(rows[0]) == 64 + 2
    assert matrix.shape == (16, 64) and len(rows) == 17
    assert sorted(prefix.with_name("emb.skipped.txt").read_text().split()) == [
        "cat/broken.png",
        "dog/empty.jpg",
    ]
    # Row i is the file it names, preprocessed as in training, mean-pooled.
    name, label = rows[5][0], int(rows[5][-1])
    assert label == CLASSES.index(name.split("/")[0])
    np.testing.assert_allclose(np.array(rows[5][1:-1], dtype=np.float32), matrix[4], rtol=1e-6)
    from ssl_mae.cli.data import ToUint8Tensor
    from ssl_mae.data import normalize_images

    model = load_trained_model(checkpoint)
    prep = model.preprocessing
    image = ToUint8Tensor(prep.image_size)(load_image(root / "train" / name))
    inputs = normalize_images(image.unsqueeze(0), prep.normalize, prep.image_size)
    expected = _features(checkpoint, inputs)[:, 1:].mean(dim=1)
    np.testing.assert_allclose(matrix[4], expected[0].numpy(), atol=1e-5)


def test_reconstruct_own_image_files(trained: tuple[Path, Path], tmp_path: Path) -> None:
    root, checkpoint = trained
    files = sorted((root / "val" / "cat").iterdir())[:2]
    png = tmp_path / "rec.png"
    argv = ["reconstruct", "--checkpoint", str(checkpoint), "--output", str(png)]
    assert main([*argv, "--images", *map(str, files), "--device", "cpu"]) == 0
    with Image.open(png) as image:
        assert image.format == "PNG" and image.height < image.width  # 2 rows, 4 columns
    code = main([*argv, "--images", str(root / "train" / "cat" / "broken.png")])
    assert code == 2


@pytest.mark.parametrize("format", ["hf", "timm", "official", "safetensors"])
def test_export_every_format_from_the_command_line(
    format: str, trained: tuple[Path, Path], tmp_path: Path, capsys: Any
) -> None:
    _, checkpoint = trained
    output = tmp_path / f"export-{format}"
    argv = ["export", "--checkpoint", str(checkpoint), "--format", format, "--output", str(output)]
    assert main(argv) == 0
    assert f"wrote {output} ({format}; input 16x16, 3 channel(s)" in capsys.readouterr().out
    assert main(argv) == 2  # an existing export is not replaced without --overwrite
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


# --- the whole chain -----------------------------------------------------------------------------
_SLOW_STEPS = r"""
import sys, time
from ssl_mae.training.module import PretrainModule
step = PretrainModule.training_step
def slow(self, batch, batch_idx):
    time.sleep(0.3)
    return step(self, batch, batch_idx)
PretrainModule.training_step = slow
from ssl_mae.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli(*argv: str, slow: bool = False) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", _SLOW_STEPS] if slow else [sys.executable, "-m", "ssl_mae.cli"]
    return subprocess.Popen(
        [*command, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    return int(process.returncode), out, err


@pytest.mark.slow  # seven processes: a few minutes on two shared cores
def test_from_a_photo_folder_to_transformers_and_timm(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    import timm

    root = make_photo_folder(tmp_path / "photos")
    out_dir = tmp_path / "run"
    last = out_dir / "last.ckpt"

    # pretrain, interrupted with Ctrl-C after a few steps ...
    process = _cli(*_pretrain_argv(root, out_dir), slow=True)
    deadline = time.monotonic() + 300
    while not (last.is_file() and torch.load(last, weights_only=True)["global_step"] >= 3):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    code, _, err = _finish(process)
    assert code == 130 and err.strip().endswith(f"--resume {last}"), err
    # ... and resumed with no other option.
    code, _, err = _finish(_cli("pretrain", "--resume", str(last)))
    assert code == 0, err
    assert torch.load(last, weights_only=True)["global_step"] == 2 * 4  # 16 images, batch 4
    assert (out_dir / "report.md").is_file() and (out_dir / "config.yaml").is_file()

    code, _, err = _finish(
        _cli("evaluate", "--checkpoint", str(last), "--protocol", "linear", "--output",
             str(tmp_path / "linear.json"))
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((tmp_path / "linear.json").read_text())["num_train"] == 16

    for format in ("hf", "timm"):
        code, _, err = _finish(
            _cli("export", "--checkpoint", str(last), "--format", format, "--output",
                 str(tmp_path / format))
        )  # fmt: skip
        assert code == 0, err
    images = torch.rand(3, 3, 16, 16)
    ours = _features(last, images)
    with torch.no_grad():
        hf = transformers.ViTMAEModel.from_pretrained(tmp_path / "hf", mask_ratio=0.0).eval()
        order = torch.arange(16).expand(3, -1)
        theirs = hf(pixel_values=images, noise=order).last_hidden_state
        torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
        vit = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True).eval()
        torch.testing.assert_close(vit.forward_features(images), ours, atol=1e-5, rtol=0)

    code, _, err = _finish(
        _cli("embed", "--checkpoint", str(last), "--input", str(root / "train"), "--output",
             str(tmp_path / "emb"))
    )  # fmt: skip
    assert code == 0, err
    assert np.load(tmp_path / "emb.npy").shape == (16, 64)
    assert (tmp_path / "emb.csv").is_file()

    files = [str(p) for p in sorted((root / "val" / "dog").iterdir())[:2]]
    code, _, err = _finish(
        _cli("reconstruct", "--checkpoint", str(last), "--images", *files, "--output",
             str(tmp_path / "rec.png"))
    )  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "rec.png").is_file()


def test_evaluate_layers_concatenates_the_last_blocks(
    trained: tuple[Path, Path], tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ssl_mae.evaluation import protocols

    _, checkpoint = trained
    seen: list[torch.Tensor] = []
    extract = protocols.extract_features

    def recording(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        features, labels = extract(*args, **kwargs)
        seen.append(features)
        return features, labels

    monkeypatch.setattr(protocols, "extract_features", recording)
    output = tmp_path / "knn2.json"
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--device", "cpu", "--num-workers", "0"]
    assert main([*argv, "--layers", "2", "--output", str(output)]) == 0
    assert json.loads(output.read_text())["layers"] == 2
    assert "layers=2" in capsys.readouterr().out
    assert [tuple(f.shape) for f in seen] == [(16, 2 * 64), (6, 2 * 64)]
    # The last block's half is the usual (layers=1) feature.
    assert main(argv) == 0
    torch.testing.assert_close(seen[0][:, 64:], seen[2], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layers", "99"], "--layers 99: this encoder has"),
        (["--layers", "2", "--protocol", "finetune"], "--layers: only used by --protocol knn"),
        (["--layers", "0"], "--layers"),
    ],
)
def test_evaluate_layers_errors(
    trained: tuple[Path, Path], extra: list[str], message: str, capsys: Any
) -> None:
    _, checkpoint = trained
    assert main(["evaluate", "--checkpoint", str(checkpoint), *extra]) == 2
    assert message in capsys.readouterr().err
