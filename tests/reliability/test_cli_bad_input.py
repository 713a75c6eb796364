"""Bad input to the ``ssl-mae`` commands added for your own images (evaluate, export, embed,
reconstruct, presets, the new pretrain options): each case exits with status 2 and one line
``ssl-mae: error: ...`` naming the option or the offending value, without a traceback, and
without writing anything.

Cases that need a checkpoint share one tiny one (written by the fixture below, not trained).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from .conftest import assert_one_line_error, run_cli

Build = Callable[[Path, Path], list[str]]  # (tmp folder, checkpoint) -> argv


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint as ``ssl-mae pretrain`` writes it (untrained micro model on a folder)."""
    from ssl_mae.models.presets import build_pretrain_module
    from ssl_mae.training.checkpoints import save_atomic

    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    module = build_pretrain_module("mae_vit_micro_patch4", in_chans=3, img_size=8)
    path = folder / "last.ckpt"
    run_config = {"dataset": "folder", "normalize": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    save_atomic(
        {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(),
         "datamodule_hyper_parameters": {"run_config": run_config}},
        path,
    )  # fmt: skip
    return path


def _hivit_checkpoint(tmp: Path) -> Path:
    from ssl_mae.models.presets import build_pretrain_module
    from ssl_mae.training.checkpoints import save_atomic

    module = build_pretrain_module("mae_hivit_nano", in_chans=1)
    path = tmp / "hivit.ckpt"
    run_config = {"normalize": {"mean": [0.5], "std": [0.5]}}
    save_atomic({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(),
                 "datamodule_hyper_parameters": {"run_config": run_config}}, path)  # fmt: skip
    return path


def _unlabelled_checkpoint(tmp: Path, checkpoint: Path) -> Path:
    """The checkpoint without the record of its normalisation (as Python-trained MAEs)."""
    state = torch.load(checkpoint, weights_only=True)
    del state["datamodule_hyper_parameters"]
    path = tmp / "bare.ckpt"
    torch.save(state, path)
    return path


def _flat(tmp: Path) -> Path:
    folder = tmp / "flat"
    folder.mkdir(exist_ok=True)
    for i in range(3):
        Image.new("RGB", (9, 9), (i, 3, 5)).save(folder / f"{i}.png")
    return folder


def _classes(tmp: Path, name: str, labels: tuple[str, ...]) -> Path:
    for label in labels:
        (tmp / name / label).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            Image.new("RGB", (9, 9), (i, 7, 1)).save(tmp / name / label / f"{i}.png")
    return tmp / name


def _file(tmp: Path, name: str, data: bytes = b"x") -> Path:
    (tmp / name).write_bytes(data)
    return tmp / name


def _case(build: Build, expected: str, id: str) -> Any:
    return pytest.param(build, expected, id=id)


CASES = [
    # pretrain: the new options and option combinations
    _case(lambda t, c: ["pretrain", "--mask-ratio", "0"], "--mask-ratio", "pretrain-mask-ratio-0"),
    _case(lambda t, c: ["pretrain", "--mask-ratio", "1"], "--mask-ratio", "pretrain-mask-ratio-1"),
    _case(lambda t, c: ["pretrain", "--max-steps", "0"], "--max-steps", "pretrain-max-steps-0"),
    _case(lambda t, c: ["pretrain", "--warmup-epochs", "-1"], "--warmup-epochs",
          "pretrain-warmup-negative"),
    _case(lambda t, c: ["pretrain", "--weight-decay", "inf"], "--weight-decay",
          "pretrain-weight-decay-inf"),
    _case(lambda t, c: ["pretrain", "--accumulate-grad-batches", "0"], "--accumulate-grad-batches",
          "pretrain-accumulate-0"),
    _case(lambda t, c: ["pretrain", "--num-nodes", "x"], "--num-nodes", "pretrain-num-nodes-str"),
    _case(lambda t, c: ["pretrain", "--devices", "-2"], "--devices", "pretrain-devices-negative"),
    _case(lambda t, c: ["pretrain", "--strategy", "fsdpx", "--output-dir", str(t / "o"),
                        "--limit-train-images", "8", "--batch-size", "8"], "fsdpx",
          "pretrain-unknown-strategy"),
    _case(lambda t, c: ["pretrain", "--precision", "bf17"], "--precision",
          "pretrain-unknown-precision"),
    _case(lambda t, c: ["pretrain", "--logger", "wandb"], "--logger", "pretrain-unknown-logger"),
    _case(lambda t, c: ["pretrain", "--val-path", str(t)], "--val-path is only used with",
          "pretrain-val-path-with-fashion-mnist"),
    _case(lambda t, c: ["pretrain", "--dataset", "folder", "--data-path", str(_flat(t)),
                        "--download"], "--download", "pretrain-download-folder"),
    _case(lambda t, c: ["pretrain", "--resume", str(c), "--overwrite"], "--overwrite and --resume",
          "pretrain-resume-and-overwrite"),
    _case(lambda t, c: ["pretrain", "--resume", str(c)], "not written by 'ssl-mae pretrain'",
          "pretrain-resume-foreign-checkpoint"),
    _case(lambda t, c: ["pretrain", "--resume", str(t)], "--resume checkpoint",
          "pretrain-resume-folder"),
    _case(lambda t, c: ["pretrain", "--dataset", "folder", "--data-path", str(_flat(t)),
                        "--preset", "mae_vit_micro_patch4", "--img-size", "8", "--knn",
                        "--output-dir", str(t / "o")],
          "--knn cannot run", "pretrain-knn-without-labels"),
    _case(lambda t, c: ["pretrain", "--dataset", "cifar10", "--data-path", str(t),
                        "--output-dir", str(t / "o")], "--download", "pretrain-cifar-missing"),
    # evaluate
    _case(lambda t, c: ["evaluate", "--checkpoint", str(c), "--protocol", "svm"], "--protocol",
          "evaluate-unknown-protocol"),
    _case(lambda t, c: ["evaluate", "--checkpoint", str(c), "--data-path",
                        str(_classes(t, "tr", ("a", "b")))], "--val-path",
          "evaluate-folder-without-val-path"),
    _case(lambda t, c: ["evaluate", "--checkpoint", str(c), "--data-path", str(_flat(t)),
                        "--val-path", str(_flat(t))], "labelled images",
          "evaluate-flat-folders"),
    _case(lambda t, c: ["evaluate", "--checkpoint", str(c),
                        "--data-path", str(_classes(t, "tr", ("a", "b"))),
                        "--val-path", str(_classes(t, "va", ("a", "c")))],
          "same class folders", "evaluate-different-classes"),
    _case(lambda t, c: ["evaluate", "--checkpoint", str(c), "--device", "cuda:99"], "--device",
          "evaluate-missing-gpu-index"),
    _case(lambda t, c: ["evaluate", "--checkpoint", str(c), "--device", "tpu"], "--device 'tpu'",
          "evaluate-unknown-device"),
    _case(lambda t, c: ["evaluate", "--checkpoint", str(c), "--knn-temperature", "0"],
          "--knn-temperature", "evaluate-zero-temperature"),
    _case(lambda t, c: ["evaluate", "--checkpoint", str(c), "--batch-size", "4"],
          "--batch-size: only used by", "evaluate-knn-with-batch-size"),
    _case(lambda t, c: ["evaluate", "--checkpoint", str(c), "--normalize", "0.5/0"],
          "--normalize", "evaluate-normalize-zero-std"),
    _case(lambda t, c: ["evaluate", "--checkpoint", str(c), "--normalize", "0.5,0.5/0.2"],
          "--normalize", "evaluate-normalize-length-mismatch"),
    _case(lambda t, c: ["evaluate", "--checkpoint", str(_unlabelled_checkpoint(t, c))],
          "does not record the input normalisation", "evaluate-no-recorded-normalisation"),
    _case(lambda t, c: ["evaluate", "--checkpoint", str(c), "--dataset", "folder",
                        "--download"], "--download", "evaluate-download-folder"),
    # export
    _case(lambda t, c: ["export", "--checkpoint", str(c), "--format", "onnx"], "--format",
          "export-unknown-format"),
    _case(lambda t, c: ["export", "--checkpoint", str(c)], "--format", "export-no-format"),
    _case(lambda t, c: ["export", "--checkpoint", str(_hivit_checkpoint(t)), "--format", "hf",
                        "--output", str(t / "hf")], "no Hugging Face ViTMAE or timm",
          "export-hivit-to-hf"),
    _case(lambda t, c: ["export", "--checkpoint", str(_hivit_checkpoint(t)), "--format", "timm",
                        "--output", str(t / "timm")], "no Hugging Face ViTMAE or timm",
          "export-hivit-to-timm"),
    _case(lambda t, c: ["export", "--checkpoint", str(c), "--format", "hf", "--output",
                        str(_file(t, "taken"))], "is a file", "export-folder-onto-a-file"),
    _case(lambda t, c: ["export", "--checkpoint", str(c), "--format", "official", "--output",
                        str(t)], "is a folder", "export-file-onto-a-folder"),
    _case(lambda t, c: ["export", "--checkpoint", str(c), "--format", "official", "--output",
                        str(_file(t, "old.pth"))], "--overwrite", "export-existing-file"),
    _case(lambda t, c: ["export", "--checkpoint", str(c), "--format", "safetensors", "--pool",
                        "mean"], "--pool", "export-pool-for-safetensors"),
    _case(lambda t, c: ["export", "--checkpoint", str(_file(t, "junk.ckpt", b"no zip")),
                        "--format", "hf"], "junk.ckpt", "export-junk-checkpoint"),
    # embed
    _case(lambda t, c: ["embed", "--checkpoint", str(c), "--input", str(t / "missing")],
          "--input", "embed-missing-folder"),
    _case(lambda t, c: ["embed", "--checkpoint", str(c), "--input", str(_file(t, "a.png"))],
          "--input", "embed-input-is-a-file"),
    _case(lambda t, c: ["embed", "--checkpoint", str(c), "--input", str(t)],
          "contains no image files", "embed-folder-without-images"),
    _case(lambda t, c: ["embed", "--checkpoint", str(c), "--input", str(_flat(t)), "--pool",
                        "max"], "--pool", "embed-unknown-pool"),
    _case(lambda t, c: ["embed", "--checkpoint", str(_hivit_checkpoint(t)), "--input",
                        str(_flat(t)), "--pool", "cls"], "--pool cls needs a class token",
          "embed-cls-pool-without-class-token"),
    _case(lambda t, c: ["embed", "--checkpoint", str(c), "--input", str(_flat(t)),
                        "--eval-batch-size", "0"], "--eval-batch-size", "embed-batch-0"),
    # reconstruct
    _case(lambda t, c: ["reconstruct", "--checkpoint", str(c), "--images",
                        str(t / "nope.png")], "'", "reconstruct-missing-image"),
    _case(lambda t, c: ["reconstruct", "--checkpoint", str(c), "--images",
                        str(_file(t, "fake.png", b"not png"))], "fake.png",
          "reconstruct-unreadable-image"),
    _case(lambda t, c: ["reconstruct", "--checkpoint", str(c), "--images", str(_flat(t)
                        / "0.png"), "--norm-pix-stats", "mean"], "--norm-pix-stats",
          "reconstruct-unknown-norm-pix-stats"),
    _case(lambda t, c: ["reconstruct", "--checkpoint", str(c), "--mask-ratio", "-0.5"],
          "--mask-ratio", "reconstruct-negative-mask-ratio"),
    # presets
    _case(lambda t, c: ["presets", "--format", "xml"], "unrecognized arguments",
          "presets-unknown-option"),
]  # fmt: skip


def test_there_are_many_cli_cases() -> None:
    assert len(CASES) >= 45


@pytest.mark.parametrize(("build", "expected"), CASES)
def test_cli_bad_input_is_one_line_naming_it(
    build: Build,
    expected: str,
    checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = build(tmp_path, checkpoint)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run_cli(argv, capsys)
    message = assert_one_line_error(code, out, err)
    assert expected in message, f"message does not name {expected!r}: {message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
