"""The ``ssl-mae`` command line: help and errors, a small end-to-end run, resuming with the options
stored in the checkpoint, exact resume after SIGKILL, corrupt image folders, reproducible loss
curves, the NaN stop, the derived defaults and the run report."""

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
COMMANDS = ["pretrain", "evaluate", "export", "embed", "reconstruct", "presets"]


def _run_main(argv: list[str], capsys: Any) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _subparser(command: str) -> Any:
    return build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]


# --- help and errors -----------------------------------------------------------------------------
@pytest.mark.parametrize("command", COMMANDS)
def test_help_documents_every_option_and_its_default(command: str, capsys: Any) -> None:
    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for action in _subparser(command)._actions:
        assert action.help, f"{command} {action.option_strings} has no help"
        for option in action.option_strings:
            assert option in text
        optional = action.option_strings and not action.required
        if optional and action.dest not in ("help", "debug", "overwrite", "json", "measure"):
            assert "default" in action.help, f"{command} {action.option_strings}: no default"


def test_help_imports_no_model_code() -> None:
    # --help must answer fast: no Lightning, timm or torchvision (benchmarks/cli_help_time.py
    # measures the time).
    code = (
        "import sys; from ssl_mae.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('pytorch_lightning', 'timm', 'torchvision', 'transformers', "
        "'matplotlib') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pretrain", "--data-path", "/no/such/dir"], "--data-path '/no/such/dir' does not exist"),
        (["pretrain", "--preset", "vit_giant"], "--preset must be one of"),
        (["pretrain", "--img-size", "30"], "img_size must be a multiple of patch_size=7, got 30"),
        (["pretrain", "--mask-ratio", "1.0"], "--mask-ratio: must be in (0, 1)"),
        (["pretrain", "--mask-ratio", "0"], "with 0 nothing is masked"),
        (["pretrain", "--dataset", "imagenet"], "name must be one of"),
        (["pretrain", "--epochs", "0"], "--epochs: must be a positive integer"),
        (["pretrain", "--dataset", "folder"], "--data-path is required for --dataset folder"),
        (["pretrain", "--val-path", "."], "--val-path is only used with --dataset folder"),
        (["pretrain", "--resume", "/no/such.ckpt"], "--resume checkpoint '/no/such.ckpt'"),
        (["pretrain", "--resume", "x.ckpt", "--overwrite"], "--overwrite and --resume"),
        (["pretrain", "--precision", "transformer-engine", "--epochs", "1", *TINY],
         "transformer_engine"),
        (["pretrain", "--base-lr", "1e-3", "--lr", "1e-3"], "not allowed with argument"),
        (["evaluate", "--checkpoint", "/no/such.ckpt"], "checkpoint '/no/such.ckpt' does not"),
        (["evaluate", "--checkpoint", "x.ckpt", "--epochs", "3"], "--epochs: only used by"),
        (["evaluate", "--checkpoint", "x.ckpt", "--protocol", "linear", "--knn-k", "3"],
         "--knn-k: only used by --protocol knn"),
        (["evaluate", "--checkpoint", "x.ckpt", "--protocol", "linear", "--knn-standardize"],
         "--knn-standardize: only used by --protocol knn"),
        (["evaluate", "--checkpoint", "x.ckpt", "--device", "nonsense"], "--device 'nonsense'"),
        (["export", "--checkpoint", "x.ckpt", "--format", "hf", "--pool", "cls"],
         "--pool: only used by --format timm"),
        (["reconstruct", "--checkpoint", "x.ckpt", "--output", "x.jpg"], "must be a .png"),
        (["reconstruct", "--checkpoint", "x.ckpt", "--images", "a.png", "--num-images", "2"],
         "--num-images: only used without --images"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)  # fmt: skip
def test_bad_input_gives_one_line_and_exit_status_2(
    argv: list[str], message: str, capsys: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = _run_main(argv, capsys)
    assert code == 2
    assert err.startswith("ssl-mae: error: ") and err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err + out


def test_tensorboard_logger_without_tensorboard_is_one_line_with_an_install_hint(
    capsys: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        pytest.skip("tensorboard is installed here")
    code, _, err = _run_main(
        ["pretrain", "--logger", "tensorboard", "--output-dir", str(tmp_path)], capsys
    )
    assert code == 2 and err.count("\n") == 1
    assert "pip install tensorboard" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_missing_gpu_is_one_line(capsys: Any) -> None:
    code, _, err = _run_main(["evaluate", "--checkpoint", "x.ckpt", "--device", "cuda"], capsys)
    assert code == 2 and err.strip() == (
        "ssl-mae: error: --device cuda: no CUDA GPU is available on this machine"
    )


def test_console_script_reports_errors_without_traceback(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("ssl-mae")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "ssl_mae.cli"]
    result = subprocess.run(
        [*command, "pretrain", "--img-size", "30", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "ssl-mae: error: img_size must be a multiple of patch_size=7, got 30"
    ]


def test_debug_shows_the_traceback(capsys: Any) -> None:
    with pytest.raises(ValueError, match="img_size must be a multiple"):
        main(["pretrain", "--img-size", "30", "--debug"])


def test_an_unexpected_error_is_one_line_with_status_1(capsys: Any, monkeypatch: Any) -> None:
    from ssl_mae.cli import presets

    def broken(args: Any) -> int:
        raise KeyError("boom")

    monkeypatch.setattr(presets, "_rows", broken)
    code, _, err = _run_main(["presets"], capsys)
    assert code == 1
    assert err.strip().splitlines() == [
        "ssl-mae: error: unexpected KeyError: 'boom' (run again with --debug for the traceback)"
    ]


# --- the derived defaults ------------------------------------------------------------------------
def test_every_preset_has_defaults_and_facts() -> None:
    from ssl_mae.cli.defaults import PRESET_DEFAULTS, preset_defaults
    from ssl_mae.cli.presets import PRESET_FACTS
    from ssl_mae.models.presets import PRETRAIN_PRESETS

    names = {name for name in PRETRAIN_PRESETS if not name.endswith("_dec512d8b")}
    assert set(PRESET_DEFAULTS) == names and set(PRESET_FACTS) == names
    # The official recipe for the big presets, 10x for the small ones; crops down to 20 %.
    assert preset_defaults("mae_vit_base_patch16_dec512d8b").base_lr == 1.5e-4
    assert preset_defaults("mae_vit_huge_patch14").base_lr == 1.5e-4
    assert preset_defaults("mae_vit_micro_patch4").base_lr == 1.5e-3
    assert preset_defaults("mae_vit_base_patch16").min_scale == 0.2


@pytest.mark.parametrize("name", ["mae_vit_micro_patch4", "mae_hivit_nano", "simple_mae_vit_micro"])
def test_the_facts_table_is_what_the_models_measure(name: str) -> None:
    from ssl_mae.cli.presets import PRESET_FACTS, measure_preset

    assert measure_preset(name) == PRESET_FACTS[name]


@pytest.mark.slow  # builds every preset on the meta device: about a minute
def test_the_facts_table_is_what_every_model_measures() -> None:
    from ssl_mae.cli.presets import PRESET_FACTS, measure_preset

    for name, facts in PRESET_FACTS.items():
        assert measure_preset(name) == facts, name


def test_presets_lists_every_preset_with_its_numbers(capsys: Any) -> None:
    from ssl_mae.cli.presets import PRESET_FACTS

    code, out, _ = _run_main(["presets"], capsys)
    assert code == 0
    for name in PRESET_FACTS:
        assert f"\n{name} " in out
    (row,) = [
        line.split()[:8] for line in out.splitlines() if line.startswith("mae_vit_base_patch16 ")
    ]
    assert row == [
        "mae_vit_base_patch16",
        "111.9M",
        "85.8M",
        "19.6",
        "3x224x224",
        "16",
        "0.00015",
        "0.2",
    ]
    code, out, _ = _run_main(["presets", "--json"], capsys)
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["mae_vit_huge_patch14"]["img_size"] == 224
    assert rows["mae_vit_micro_patch7"]["min_scale"] == 0.5


def test_data_derived_defaults() -> None:
    from ssl_mae.cli.defaults import default_batch_size, default_num_workers
    from ssl_mae.evaluation.protocols import default_knn_k

    assert default_batch_size(60_000) == 256
    assert default_batch_size(300) == 64 and default_batch_size(10) == 2
    assert default_batch_size(3) == 1
    assert default_num_workers("fashion_mnist") == 0
    cpus = len(os.sched_getaffinity(0))
    assert default_num_workers("folder") == max(0, min(8, cpus - 1))
    assert default_knn_k(60_000, 10) == 200
    assert default_knn_k(304, 2) == 152 and default_knn_k(304, 10) == 30
    assert default_knn_k(5, 10) == 1


# --- end to end ----------------------------------------------------------------------------------
def test_pretrain_evaluate_reconstruct(tmp_path: Path, capsys: Any) -> None:
    out_dir = tmp_path / "run"
    argv = ["pretrain", *TINY, "--epochs", "2", "--output-dir", str(out_dir), "--norm-pix"]
    code, out, err = _run_main([*argv, "--checkpoint-every-n-steps", "4"], capsys)
    assert code == 0, err
    assert "kNN top-1: " in out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["status"] == "finished"
    assert metrics["epochs"] == 2 and metrics["steps"] == 12
    assert metrics["skipped_files"] == 0 and metrics["images_per_second"] > 0
    assert 0 <= metrics["knn_top1"] <= metrics["knn_top5"] <= 100
    assert f"kNN top-1: {metrics['knn_top1']:.2f}%" in out
    # 96 images of 10 classes: k = 200 is cut to the mean class size.
    assert metrics["knn"]["k"] == 9 and metrics["knn"]["num_test"] == 48
    assert metrics["train_loss"] > 0 and metrics["best_val_loss"] <= metrics["val_loss"] + 1e-9
    last = torch.load(out_dir / "last.ckpt", weights_only=True)
    assert last["global_step"] == 12  # refreshed after the final validation
    assert (out_dir / "best.ckpt").is_file()
    assert sorted(p.name for p in out_dir.glob("*.ckpt")) == ["best.ckpt", "last.ckpt"]
    assert list((out_dir / "logs").glob("version_*/metrics.csv"))

    # Every option, defaults included, is in config.yaml and in the checkpoint.
    import yaml

    config = yaml.safe_load((out_dir / "config.yaml").read_text())
    assert config == metrics["config"]
    assert config["base_lr"] == 1.5e-3 and config["min_scale"] == 0.2 and config["img_size"] == 28
    assert config["num_workers"] == 0 and config["warmup_steps"] == 1 and config["norm_pix"]
    assert last["datamodule_hyper_parameters"]["run_config"]["run_id"] == config["run_id"]

    # The report: curves and reconstructions (raw and with the visible patches' statistics).
    report = (out_dir / "report.md").read_text()
    assert "Status: **finished** after 12 steps" in report and "kNN top-1 / top-5" in report
    for name in ("curves.png", "reconstruction.png", "reconstruction_raw.png"):
        assert f"report/{name}" in report
        with Image.open(out_dir / "report" / name) as image:
            assert image.format == "PNG"
    rows = list(csv.DictReader((next((out_dir / "logs").glob("version_*")) / "metrics.csv").open()))
    assert any(row.get("lr") for row in rows)  # the learning rate is logged

    # Running again into the same folder needs --resume or --overwrite.
    code, _, err = _run_main(argv, capsys)
    assert code == 2 and "already holds a run" in err

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


def test_resume_restores_every_option_and_reports_all_conflicts_at_once(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    out_dir = tmp_path / "run"
    argv = ["pretrain", *TINY, "--epochs", "1", "--no-knn", "--seed", "3", "--logger", "none"]
    code, _, err = _run_main([*argv, "--output-dir", str(out_dir), "--min-scale", "0.4"], capsys)
    assert code == 0, err
    last = out_dir / "last.ckpt"

    # Options that decide the run cannot change: every conflict is named in one line.
    code, _, err = _run_main(
        ["pretrain", "--resume", str(last), "--batch-size", "8", "--seed", "4", "--epochs", "2"],
        capsys,
    )
    assert code == 2 and err.count("\n") == 1
    assert "--batch-size 16 (given 8)" in err and "--seed 3 (given 4)" in err
    assert "--epochs" in err  # listed among the options that may change

    # --resume alone, from another working folder: every option and the folder come back.
    monkeypatch.chdir(tmp_path)
    code, out, err = _run_main(["pretrain", "--resume", str(last), "--epochs", "2"], capsys)
    assert code == 0, err
    assert "resuming with --epochs 2 instead of 1" in out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["steps"] == 12 and metrics["resumed_from"] == str(last)
    assert metrics["changed_on_resume"] == {"epochs": [1, 2]}
    config = metrics["config"]
    assert config["seed"] == 3 and config["min_scale"] == 0.4 and config["batch_size"] == 16
    assert not (tmp_path / "runs").exists()  # nothing went to the default runs/mae


def _train_losses(out_dir: Path) -> list[float]:
    (metrics_csv,) = (out_dir / "logs").glob("version_*/metrics.csv")
    with metrics_csv.open() as file:
        return [float(row["train_loss"]) for row in csv.DictReader(file) if row["train_loss"]]


def test_same_seed_gives_the_same_loss_curve(tmp_path: Path, capsys: Any) -> None:
    curves = []
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        argv = ["pretrain", *TINY, "--epochs", "1", "--no-knn", "--seed", seed, "--no-report"]
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
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["status"] == "failed: NonFiniteLossError" and metrics["steps"] == 3


# --- image folders -------------------------------------------------------------------------------
def _class_folders(root: Path, count: int, size: int = 12) -> None:
    generator = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for label in ("shirt", "shoe"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count if split == "train" else 3):
                pixels = torch.randint(
                    0, 256, (size, size, 3), generator=generator, dtype=torch.uint8
                )
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")


def test_folder_with_corrupt_files_trains_and_reports_them(tmp_path: Path, capsys: Any) -> None:
    _class_folders(tmp_path, 8)
    (tmp_path / "train" / "shirt" / "broken.png").write_bytes(b"\x89PNG garbage")
    (tmp_path / "train" / "shoe" / "empty.jpg").write_bytes(b"")
    out_dir = tmp_path / "run"
    code, out, err = _run_main(
        ["pretrain", "--preset", "mae_vit_micro_patch4",
         "--dataset", "folder", "--data-path", str(tmp_path / "train"),
         "--val-path", str(tmp_path / "val"), "--img-size", "16", "--batch-size", "9",
         "--epochs", "1", "--no-progress", "--knn-k", "5", "--num-workers", "0",
         "--output-dir", str(out_dir)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "skipped 2 unreadable image files" in out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["skipped_files"] == 2 and metrics["steps"] == 2
    # kNN skips the unreadable files instead of scoring another image in their place.
    assert metrics["knn"]["num_train"] == 16 and metrics["knn"]["num_test"] == 6
    assert metrics["knn"]["skipped_files"] == 2


def test_flat_folder_skips_knn_with_a_note_and_refuses_an_explicit_knn(
    tmp_path: Path, capsys: Any
) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(8):
        Image.new("RGB", (10 + i, 12), (20 * i, 5, 9)).save(flat / f"{i}.jpg")
    argv = ["pretrain", "--preset", "mae_vit_micro_patch4", "--dataset", "folder",
            "--data-path", str(flat), "--img-size", "8", "--epochs", "1", "--no-progress",
            "--num-workers", "0", "--no-report"]  # fmt: skip
    code, _, err = _run_main([*argv, "--knn", "--output-dir", str(tmp_path / "a")], capsys)
    assert code == 2 and "--knn cannot run: no held-out images (--val-path)" in err
    code, out, err = _run_main([*argv, "--output-dir", str(tmp_path / "b")], capsys)
    assert code == 0, err
    assert "kNN skipped: no held-out images (--val-path)" in out
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["knn"] == {"skipped": "no held-out images (--val-path)"}
    assert metrics["config"]["batch_size"] == 2  # 8 images: 4 steps per epoch


def test_train_and_val_folders_must_name_the_same_classes(tmp_path: Path, capsys: Any) -> None:
    _class_folders(tmp_path, 2)
    (tmp_path / "val" / "shoe").rename(tmp_path / "val" / "sock")
    code, _, err = _run_main(
        ["pretrain", "--preset", "mae_vit_micro_patch4", "--dataset", "folder",
         "--data-path", str(tmp_path / "train"), "--val-path", str(tmp_path / "val"),
         "--img-size", "8", "--output-dir", str(tmp_path / "o")],
        capsys,
    )  # fmt: skip
    assert code == 2 and "only in --data-path: ['shoe'], only in --val-path: ['sock']" in err


def test_images_are_resized_to_the_presets_size(tmp_path: Path, capsys: Any) -> None:
    """A folder of photos for ViT-B is read at 224 px, with the official learning rate."""
    from ssl_mae.cli import pretrain

    flat = tmp_path / "photos"
    flat.mkdir()
    Image.new("RGB", (640, 480)).save(flat / "a.jpg")
    given = {"preset": "mae_vit_base_patch16", "dataset": "folder", "data_path": str(flat)}
    config = pretrain._fresh_config(given)
    assert config["base_lr"] == 1.5e-4 and config["min_scale"] == 0.2 and config["in_chans"] == 3
    from ssl_mae.cli.data import load_split

    images = load_split("folder", str(flat), None, True, img_size=224, in_chans=3)
    assert tuple(images[0][0].shape) == (3, 224, 224)


# --- CIFAR-style torchvision datasets ------------------------------------------------------------
class _FakeCIFAR10:
    """Stands in for ``torchvision.datasets.CIFAR10`` (no download in tests): 40 train and 20
    test 32x32 RGB images of 10 classes."""

    def __init__(self, root: str, train: bool, transform: Any, download: bool) -> None:
        generator = torch.Generator().manual_seed(0 if train else 1)
        count = 40 if train else 20
        self.images = torch.randint(0, 256, (count, 32, 32, 3), generator=generator)
        self.targets = [i % 10 for i in range(count)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = Image.fromarray(self.images[index].to(torch.uint8).numpy())
        return self.transform(image), self.targets[index]


def test_cifar_style_datasets_pretrain_and_evaluate(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    import torchvision

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _FakeCIFAR10)
    (tmp_path / "data" / "cifar-10-batches-py").mkdir(parents=True)
    out_dir = tmp_path / "run"
    argv = ["pretrain", "--dataset", "CIFAR-10", "--data-path", str(tmp_path / "data"),
            "--preset", "mae_vit_micro_patch4", "--img-size", "32", "--epochs", "1",
            "--no-progress", "--accelerator", "cpu", "--devices", "1", "--num-workers", "0",
            "--no-report", "--output-dir", str(out_dir)]  # fmt: skip
    code, out, err = _run_main(argv, capsys)
    assert code == 0, err
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["config"]["in_chans"] == 3 and metrics["config"]["batch_size"] == 8
    assert metrics["knn"]["num_train"] == 40 and metrics["knn"]["k"] == 4  # 40 images, 10 classes
    result = tmp_path / "linear.json"
    code, out, err = _run_main(
        ["evaluate", "--checkpoint", str(out_dir / "last.ckpt"), "--protocol", "linear",
         "--output", str(result), "--num-workers", "0"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(result.read_text())["dataset"] == "cifar10"
    assert "linear top-1" in out


# --- several processes -------------------------------------------------------------------------
@pytest.mark.slow  # two DDP processes on the CPU: about a minute
def test_ddp_on_two_cpu_processes_writes_one_run(tmp_path: Path) -> None:
    out_dir = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "ssl_mae.cli", "pretrain", *TINY, "--limit-train-images", "64",
         "--batch-size", "8", "--devices", "2", "--strategy", "ddp", "--epochs", "1", "--knn",
         "--output-dir", str(out_dir)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4  # 64 images / (8 x 2)
    assert metrics["knn"]["num_train"] == 64
    assert sorted(p.name for p in out_dir.glob("*.ckpt")) == ["best.ckpt", "last.ckpt"]
    assert len(list((out_dir / "logs").iterdir())) == 1  # one session, written by rank 0


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
        "--no-knn", "--logger", "none", "--checkpoint-every-n-steps", "1", "--no-report",
        "--output-dir", str(out_dir), *extra,
    ]  # fmt: skip


def _resume_command(delay: float, last: Path) -> list[str]:
    return [sys.executable, "-c", _RUNNER, str(delay), "pretrain", "--resume", str(last)]


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
    # Killed mid-epoch 0 (step 4 of 6), resumed, killed again mid-epoch 2 (step 14), resumed,
    # each time with --resume alone.
    killed_at = _kill_after_step(_command(0.3, interrupted), last, 4)
    assert 4 <= killed_at < 18
    killed_at = _kill_after_step(_resume_command(0.3, last), last, 14)
    assert 14 <= killed_at < 18
    subprocess.run(_resume_command(0.0, last), check=True, capture_output=True, timeout=300)

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
