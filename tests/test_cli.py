"""The ``ssl-mae`` command line: errors, a small end-to-end run, exact resume after SIGKILL,
corrupt image folders, reproducible loss curves and the NaN stop."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from ssl_mae.cli import build_parser, main

# A tiny, fast run: 96 Fashion-MNIST images, 6 steps per epoch.
TINY = [
    "--preset", "mae_vit_micro_patch4",
    "--limit-train-images", "96", "--limit-test-images", "48", "--batch-size", "16",
    "--no-progress", "--accelerator", "cpu", "--devices", "1",
]  # fmt: skip


def _run_main(argv: list[str], capsys: Any) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- help and errors -----------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["pretrain", "evaluate", "reconstruct"])
def test_help_documents_every_option(command: str, capsys: Any) -> None:
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    subparser = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    for action in subparser._actions:
        assert action.help, f"{command} {action.option_strings} has no help"
        for option in action.option_strings:
            assert option in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pretrain", "--data-path", "/no/such/dir"], "--data-path '/no/such/dir' does not exist"),
        (["pretrain", "--preset", "vit_giant"], "--preset must be one of"),
        (["pretrain", "--img-size", "30"], "img_size must be a multiple of patch_size=7, got 30"),
        (["pretrain", "--mask-ratio", "1.0"], "--mask-ratio: must be in [0, 1)"),
        (["pretrain", "--dataset", "imagenet"], "name must be one of"),
        (["pretrain", "--epochs", "0"], "--epochs: must be a positive integer"),
        (["pretrain", "--dataset", "folder"], "--data-path is required for --dataset folder"),
        (["pretrain", "--resume", "/no/such.ckpt"], "--resume checkpoint '/no/such.ckpt'"),
        (["evaluate", "--checkpoint", "/no/such.ckpt"], "checkpoint '/no/such.ckpt' does not"),
        (["reconstruct", "--checkpoint", "x.ckpt", "--output", "x.jpg"], "must be a .png"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_input_gives_one_line_and_exit_status_2(
    argv: list[str], message: str, capsys: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = _run_main(argv, capsys)
    assert code == 2
    assert err.startswith("ssl-mae: error: ") and err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err + out


def test_console_script_reports_errors_without_traceback(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("ssl-mae")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "ssl_mae.cli"]
    result = subprocess.run(
        [*command, "pretrain", "--img-size", "30", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "ssl-mae: error: img_size must be a multiple of patch_size=7, got 30"
    ]


def test_debug_shows_the_traceback(capsys: Any) -> None:
    with pytest.raises(ValueError, match="img_size must be a multiple"):
        main(["pretrain", "--img-size", "30", "--debug"])


# --- end to end ----------------------------------------------------------------------------------
def test_pretrain_evaluate_reconstruct(tmp_path: Path, capsys: Any) -> None:
    out_dir = tmp_path / "run"
    argv = ["pretrain", *TINY, "--epochs", "2", "--output-dir", str(out_dir), "--norm-pix"]
    code, out, err = _run_main([*argv, "--checkpoint-every-n-steps", "4"], capsys)
    assert code == 0, err
    assert "kNN top-1: " in out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["steps"] == 12
    assert metrics["skipped_files"] == 0
    assert 0 <= metrics["knn_top1"] <= metrics["knn_top5"] <= 100
    assert f"kNN top-1: {metrics['knn_top1']:.2f}%" in out
    assert metrics["knn"]["k"] == 96 and metrics["knn"]["num_test"] == 48
    assert metrics["train_loss"] > 0 and metrics["best_val_loss"] <= metrics["val_loss"] + 1e-9
    last = torch.load(out_dir / "last.ckpt", weights_only=True)
    assert last["global_step"] == 12  # refreshed after the final validation
    assert (out_dir / "best.ckpt").is_file()
    assert list((out_dir / "logs").glob("version_*/metrics.csv"))

    # Running again into the same folder needs --resume or --overwrite.
    code, _, err = _run_main(argv, capsys)
    assert code == 2 and "already holds a run" in err
    # Resuming with other data options would not continue the same run.
    code, _, err = _run_main(
        [*argv, "--resume", str(out_dir / "last.ckpt"), "--batch-size", "8"], capsys
    )
    assert code == 2 and "--batch-size 16" in err

    code, out, err = _run_main(
        ["evaluate", "--checkpoint", str(out_dir / "last.ckpt"), "--limit-train-images", "96",
         "--limit-test-images", "48"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert f"kNN top-1: {metrics['knn_top1']:.2f}%" in out  # same model, same data: same number

    png = tmp_path / "grid.png"
    code, out, err = _run_main(
        ["reconstruct", "--checkpoint", str(out_dir / "best.ckpt"), "--output", str(png),
         "--num-images", "3"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    with Image.open(png) as image:
        assert image.format == "PNG" and image.height > image.width / 4 * 2  # 3 rows, 4 columns


def _train_losses(out_dir: Path) -> list[float]:
    (metrics_csv,) = (out_dir / "logs").glob("version_*/metrics.csv")
    with metrics_csv.open() as file:
        return [float(row["train_loss"]) for row in csv.DictReader(file) if row["train_loss"]]


def test_same_seed_gives_the_same_loss_curve(tmp_path: Path, capsys: Any) -> None:
    curves = []
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        argv = ["pretrain", *TINY, "--epochs", "1", "--no-knn", "--seed", seed]
        argv += ["--log-every-n-steps", "1"]
        argv += ["--output-dir", str(tmp_path / name), "--limit-test-images", "16"]
        assert main(argv) == 0
        curves.append(_train_losses(tmp_path / name))
    capsys.readouterr()
    assert len(curves[0]) == 6
    assert curves[0] == curves[1]
    assert curves[0] != curves[2]


def test_nan_loss_stops_with_a_clear_message(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    from ssl_mae.core import MAEOutput
    from ssl_mae.training import PretrainModule

    original = PretrainModule.mae_step

    def nan_from_step_3(self: PretrainModule, *args: Any, **kwargs: Any) -> MAEOutput:
        out = original(self, *args, **kwargs)
        if self.training and self.global_step >= 3:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(PretrainModule, "mae_step", nan_from_step_3)
    out_dir = tmp_path / "nan"
    argv = ["pretrain", *TINY, "--epochs", "1", "--output-dir", str(out_dir)]
    code, _, err = _run_main([*argv, "--checkpoint-every-n-steps", "1"], capsys)
    assert code == 1
    assert err.count("\n") == 1 and "training loss became nan at step 3" in err
    assert "last good checkpoint" in err and "Traceback" not in err
    checkpoint = torch.load(out_dir / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())


# --- corrupt image folders -----------------------------------------------------------------------
def test_folder_with_corrupt_files_trains_and_reports_them(tmp_path: Path, capsys: Any) -> None:
    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", 8), ("val", 3)):
        for label in ("shirt", "shoe"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = torch.randint(0, 256, (12, 12, 3), generator=generator, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")
    (tmp_path / "train" / "shirt" / "broken.png").write_bytes(b"\x89PNG garbage")
    (tmp_path / "train" / "shoe" / "empty.jpg").write_bytes(b"")
    out_dir = tmp_path / "run"
    code, out, err = _run_main(
        ["pretrain", "--preset", "mae_vit_micro_patch4",
         "--dataset", "folder", "--data-path", str(tmp_path / "train"),
         "--val-path", str(tmp_path / "val"), "--img-size", "16", "--batch-size", "9",
         "--epochs", "1", "--no-progress", "--knn-k", "5", "--output-dir", str(out_dir)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "skipped 2 unreadable image files" in out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["skipped_files"] == 2 and metrics["steps"] == 2
    assert metrics["knn"]["num_train"] == 18 and metrics["knn"]["num_test"] == 6


# --- resume after SIGKILL ------------------------------------------------------------------------
# Every step sleeps a little so that the run is still going when the test kills it.
_RUNNER = """
import sys, time, torch
torch.set_num_threads(1)
from ssl_mae.models import MAE
step = MAE.training_step
def slow_step(self, batch, batch_idx):
    time.sleep(float(sys.argv[1]))
    return step(self, batch, batch_idx)
MAE.training_step = slow_step
from ssl_mae.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _command(delay: float, out_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-c", _RUNNER, str(delay), "pretrain", *TINY, "--epochs", "3",
        "--no-knn", "--logger", "none", "--checkpoint-every-n-steps", "1",
        "--output-dir", str(out_dir), *extra,
    ]  # fmt: skip


def _step_of(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["global_step"])
    except (FileNotFoundError, EOFError, RuntimeError):  # not written yet
        return -1


def _kill_after_step(command: list[str], checkpoint: Path, step: int) -> int:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while _step_of(checkpoint) < step:
            assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    return _step_of(checkpoint)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["global_step"] == 18
    return checkpoint["state_dict"]  # type: ignore[no-any-return]


@pytest.mark.slow  # five training processes: about a minute on two idle cores
def test_resume_after_sigkill_reaches_the_weights_of_an_uninterrupted_run(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    subprocess.run(_command(0.0, reference), check=True, capture_output=True, timeout=300)

    interrupted = tmp_path / "interrupted"
    last = interrupted / "last.ckpt"
    # Killed mid-epoch 0 (step 4 of 6), resumed, killed again mid-epoch 2 (step 14), resumed.
    killed_at = _kill_after_step(_command(0.3, interrupted), last, 4)
    assert 4 <= killed_at < 18
    killed_at = _kill_after_step(_command(0.3, interrupted, "--resume", str(last)), last, 14)
    assert 14 <= killed_at < 18
    subprocess.run(
        _command(0.0, interrupted, "--resume", str(last)),
        check=True,
        capture_output=True,
        timeout=300,
    )

    expected, actual = _weights(reference / "last.ckpt"), _weights(last)
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        assert torch.equal(value, actual[key]), key


# --- checkpoints that do not rebuild -------------------------------------------------------------
def test_checkpoints_that_do_not_rebuild_give_one_line_naming_the_file(
    tmp_path: Path, capsys: Any
) -> None:
    from ssl_mae.models import mae_vit_micro_patch4

    model = mae_vit_micro_patch4()
    wider = {**dict(model.hparams), "embed_dim": 32, "num_heads": 2}
    mismatch = tmp_path / "mismatch.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": wider}, mismatch)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"num_classes": 2}}, foreign)
    for path, reason in ((mismatch, "size mismatch for"), (foreign, "num_classes")):
        code, out, err = _run_main(["evaluate", "--checkpoint", str(path)], capsys)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err + out
        assert f"checkpoint {str(path)!r} does not hold a model ssl-mae can rebuild" in err
        assert reason in err
