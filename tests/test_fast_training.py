"""The fast path is the default on a GPU, proven on the CPU: the device defaults as a pure
function, the CLI recording them, a Lightning training loop without host syncs, the device-resident
data path giving the host path's batches, and a NaN that never reaches a checkpoint."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from host_sync import HOST_READS
from torch import Tensor
from torch.overrides import TorchFunctionMode

import ssl_mae._validation
from ssl_mae.core import MAEOutput
from ssl_mae.data import TensorImageDataset
from ssl_mae.models.presets import build_pretrain_module
from ssl_mae.training.callbacks import (
    LastCheckpoint,
    LearningRateLog,
    NonFiniteLossError,
    NonFiniteLossGuard,
    ProgressLog,
    Throughput,
)
from ssl_mae.training.data import PretrainDataModule, ResidentDataLoader, decode_images
from ssl_mae.training.fast import resolve_fast_defaults
from ssl_mae.training.module import PretrainModule

MiB = 2**20
#: The resolved fast path of a CPU run, and of a CUDA run that turns every part off.
EVERY_PART_OFF = {
    "precision": "32-true",
    "compile": "off",
    "fused_adamw": "off",
    "gpu_data": "off",
    "check_loss_every_n_steps": 1,
}
NORMALIZE = {"mean": [0.5], "std": [0.25]}


# --- defaults per device ------------------------------------------------------------------------
def test_cuda_defaults_turn_every_part_of_the_fast_path_on() -> None:
    fast = resolve_fast_defaults("cuda", 47 * MiB, 80 * 2**30, log_every_n_steps=50)
    assert fast.as_config() == {
        "precision": "bf16-mixed",
        "compile": "on",
        "fused_adamw": "on",
        "gpu_data": "on",
        "check_loss_every_n_steps": 50,
    }
    assert set(fast.reasons) == {
        "precision",
        "compile",
        "fused_adamw",
        "gpu_data",
        "check_loss_every_n_steps",
    }


def test_cpu_defaults_are_float32_eager_with_a_per_step_check() -> None:
    fast = resolve_fast_defaults("cpu", 47 * MiB, None)
    assert fast.as_config() == EVERY_PART_OFF


@pytest.mark.parametrize(
    ("dataset_bytes", "free", "limit_mb", "expected"),
    [
        (150 * MiB, 80 * 2**30, 4096, True),  # CIFAR-10
        (5000 * MiB, 80 * 2**30, 4096, False),  # over the size limit
        (5000 * MiB, 80 * 2**30, 8192, True),  # a larger limit
        (3000 * MiB, 8 * 2**30, 4096, False),  # more than a quarter of the free memory
        (None, 80 * 2**30, 4096, False),  # size unknown
    ],
)
def test_gpu_data_auto_needs_the_images_to_fit(
    dataset_bytes: int | None, free: int, limit_mb: int, expected: bool
) -> None:
    fast = resolve_fast_defaults("cuda", dataset_bytes, free, gpu_data_max_mb=limit_mb)
    assert fast.gpu_data is expected


def test_given_choices_win_over_the_device_defaults() -> None:
    fast = resolve_fast_defaults(
        "cuda",
        47 * MiB,
        80 * 2**30,
        precision="32-true",
        compile="off",
        fused_adamw=False,
        gpu_data="off",
        check_loss_every_n_steps=1,
    )
    assert fast.as_config() == EVERY_PART_OFF
    assert fast.reasons == {}
    on_cpu = resolve_fast_defaults("cpu", 1, None, gpu_data="on", fused_adamw="on")
    assert on_cpu.gpu_data and on_cpu.fused_adamw and not on_cpu.compile


def test_cuda_without_bf16_or_compile_falls_back() -> None:
    fast = resolve_fast_defaults("cuda", 1, 2**30, bf16_supported=False, compile_supported=False)
    assert fast.precision == "32-true" and not fast.compile and fast.fused_adamw


def test_bad_fast_path_values_are_named() -> None:
    with pytest.raises(
        ValueError, match=r"compile must be one of \['auto', 'on', 'off'\], got 'yes'"
    ):
        resolve_fast_defaults("cuda", 1, 1, compile="yes")
    with pytest.raises(ValueError, match="check_loss_every_n_steps must be a positive int, got 0"):
        resolve_fast_defaults("cuda", 1, 1, check_loss_every_n_steps=0)
    with pytest.raises(ValueError, match=r"gpu_data='on' needs 2 MiB .* only 1 MiB are free"):
        resolve_fast_defaults("cuda", 2 * MiB, MiB, gpu_data="on")


def test_the_cli_resolves_and_records_cuda_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    from ssl_mae.cli import pretrain
    from ssl_mae.cli.run_config import STATIC_DEFAULTS
    from ssl_mae.training import fast

    monkeypatch.setattr(pretrain, "_device_type", lambda accelerator: "cuda")
    facts = {"bf16_supported": True, "compile_supported": True, "free_memory": 80 * 2**30}
    monkeypatch.setattr(fast, "device_facts", lambda device_type: facts)
    config = {**STATIC_DEFAULTS, "in_chans": 1, "img_size": 28}
    pretrain._resolve_fast_path(config, 60000)  # Fashion-MNIST: 47 MB
    assert {k: config[k] for k in ("precision", "compile", "fused_adamw", "gpu_data")} == {
        "precision": "bf16-mixed",
        "compile": "on",
        "fused_adamw": "on",
        "gpu_data": "on",
    }
    assert config["check_loss_every_n_steps"] == config["log_every_n_steps"] == 50
    facts["free_memory"] = 10 * MiB
    config = {**STATIC_DEFAULTS, "in_chans": 1, "img_size": 28, "gpu_data": "on"}
    with pytest.raises(pretrain.UsageError, match=r"--gpu-data on: .* 45 MiB .* 10 MiB free"):
        pretrain._resolve_fast_path(config, 60000)


def test_pretrain_help_shows_the_fast_path_switches(capsys: pytest.CaptureFixture[str]) -> None:
    from ssl_mae.cli.app import main

    try:
        main(["pretrain", "--help"])
    except SystemExit as exit_:  # argparse's help exits; ssl-mae's main returns its code
        assert exit_.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in (
        "--compile {auto,on,off}",
        "--fused-adamw {auto,on,off}",
        "--gpu-data {auto,on,off}",
    ):
        assert flag in text
    assert "--check-loss-every-n-steps" in text and "--gpu-data-max-mb" in text
    assert "auto = on for CUDA, off on CPU" in text


# --- the same batches from the device-resident path -------------------------------------------
def _dataset(n: int = 40, size: int = 12) -> TensorImageDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=generator)
    return TensorImageDataset(images, torch.arange(n) % 3)


class _Training:
    """What ``on_after_batch_transfer`` reads of a trainer during training."""

    training = True
    world_size = 1
    global_rank = 0

    class strategy:
        root_device = torch.device("cpu")


def _augmented_epoch(gpu_data: bool, epoch: int, resume_after: int = 0) -> list[tuple[Any, ...]]:
    data = PretrainDataModule(
        _dataset(), None, 8, (12, 12), NORMALIZE, min_scale=0.3, seed=5, gpu_data=gpu_data
    )
    data.trainer = _Training()  # type: ignore[assignment]
    if resume_after:
        data.load_state_dict({"train_position": {"epoch": epoch, "batches_done": resume_after}})
    loader = data.train_dataloader()
    loader.sampler.set_epoch(epoch)
    batches = []
    for batch in loader:
        seed = batch[2]
        images, labels = data.on_after_batch_transfer(batch, 0)
        batches.append((images, labels, seed, torch.rand(3)))  # rand: the seeded global state
    assert isinstance(loader, ResidentDataLoader) is gpu_data
    return batches


@pytest.mark.parametrize(("epoch", "resume_after"), [(0, 0), (3, 0), (1, 2)])
def test_resident_batches_equal_the_host_loaders_bit_for_bit(epoch: int, resume_after: int) -> None:
    host = _augmented_epoch(False, epoch, resume_after)
    resident = _augmented_epoch(True, epoch, resume_after)
    assert len(host) == len(resident) == 5 - resume_after
    for (h_images, h_labels, h_seed, h_rand), (r_images, r_labels, r_seed, r_rand) in zip(
        host, resident, strict=True
    ):
        assert h_images.dtype == torch.float32 and h_images.shape == (8, 1, 12, 12)
        assert torch.equal(h_images, r_images)  # crops, flips and normalisation: identical
        assert torch.equal(h_labels, r_labels) and h_seed == r_seed
        assert torch.equal(h_rand, r_rand)  # the masks' generator is seeded alike


def test_decode_images_reads_a_transformed_dataset_once() -> None:
    dataset = _dataset(10)
    flipped = TensorImageDataset(
        dataset.images, dataset.labels, lambda image: image.flip(-1), to_pil=False
    )
    images, labels = decode_images(flipped)
    assert torch.equal(images, dataset.images.flip(-1))  # through the per-sample transform
    assert torch.equal(labels, dataset.labels)


# --- a Lightning training loop without host syncs -----------------------------------------------
# Operations that read a device tensor's value on the host (each waits for the GPU's queue to
# drain), and factories that copy host data to a device (blocking unless pinned).
_SYNCING: dict[Callable[..., Any], str] = {
    **HOST_READS,
    torch.tensor: "torch.tensor",
    torch.as_tensor: "torch.as_tensor",
}


class _StepSyncRecorder(TorchFunctionMode, pl.Callback):
    """Records every syncing operation on any tensor between the start of the second training
    batch and the end of the second-last one (data loading, the step, the callbacks and the
    logging in between), with where it came from. On the CPU every tensor counts, so the test
    sees what would wait for the GPU."""

    def __init__(self, first: int, last: int) -> None:
        super().__init__()
        self.first, self.last = first, last
        self.active = False
        self.calls: list[str] = []

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        name = _SYNCING.get(func)
        if self.active and name is not None:
            where = traceback.extract_stack(limit=3)[0]
            self.calls.append(f"{name} in {Path(where.filename).name}:{where.lineno}")
        return func(*args, **(kwargs or {}))

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if args[-1] == self.first:
            self.active = True

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if args[-1] == self.last:
            self.active = False


def _fast_fit(
    tmp_path: Path, guard_every: int, steps: int = 6, nan_at: int | None = None
) -> tuple[_StepSyncRecorder, PretrainModule]:
    torch.manual_seed(0)
    model = build_pretrain_module(
        "mae_vit_micro_patch7", in_chans=1, depth=1, decoder_depth=1, fused_adamw=True
    )
    model.sync_free = True  # the accelerator's logging, on this CPU
    if nan_at is not None:
        step = model.mae_step

        def nan_from(images: Tensor, *args: Any, **kwargs: Any) -> MAEOutput:
            out = step(images, *args, **kwargs)
            if model.trainer.global_step >= nan_at:
                out.loss = out.loss * float("nan")
            return out

        model.mae_step = nan_from  # type: ignore[method-assign]
    data = PretrainDataModule(
        _dataset(64, 28), None, 8, (28, 28), NORMALIZE, min_scale=0.3, gpu_data=True
    )
    recorder = _StepSyncRecorder(first=1, last=steps - 2)
    throughput = Throughput()
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=pl.loggers.CSVLogger(tmp_path),
        log_every_n_steps=100,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            NonFiniteLossGuard(guard_every),
            LastCheckpoint(tmp_path, 3 if nan_at is not None else 100),
            LearningRateLog(),
            throughput,
            ProgressLog(100, throughput),
            recorder,
        ],
    )
    with recorder:
        trainer.fit(model, data)
    return recorder, model


@pytest.fixture
def device_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The index checks that read values back run on CPU tensors only (``reads_back``); a GPU
    run skips them, and so does this one."""
    monkeypatch.setattr(ssl_mae._validation, "reads_back", lambda tensor: False)


@pytest.mark.usefixtures("device_policy")
def test_fast_training_loop_never_synchronises_the_host(tmp_path: Path) -> None:
    recorder, model = _fast_fit(tmp_path, guard_every=100)
    assert recorder.calls == []
    assert model.trainer.global_step == 6  # the loop ran, and the window covered steps 2-5


@pytest.mark.usefixtures("device_policy")
def test_a_per_step_loss_check_is_seen_as_a_sync(tmp_path: Path) -> None:
    # The test above can fail: the guard of a CPU run reads its flag every step.
    recorder, _ = _fast_fit(tmp_path, guard_every=1)
    assert recorder.calls and all(
        call.startswith("__bool__ in callbacks.py") for call in recorder.calls
    )
    assert len(recorder.calls) == 4  # one per step in the window


def test_a_deferred_nan_never_reaches_a_checkpoint(tmp_path: Path) -> None:
    # The loss turns NaN at step 4; the flag is read every 100 steps, but the checkpoint due
    # after step 6 reads it first and refuses: last.ckpt stays the one of step 3.
    with pytest.raises(
        NonFiniteLossError, match=r"became nan at step 4, found at step 6 .*last good checkpoint"
    ):
        _fast_fit(tmp_path, guard_every=100, steps=8, nan_at=4)
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())


def test_the_guard_checks_at_its_interval(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError, match=r"became nan at step 1, found at step 3 "):
        _fast_fit(tmp_path / "a", guard_every=4, steps=8, nan_at=1)
    with pytest.raises(ValueError, match="check_every_n_steps must be a positive int, got 0"):
        NonFiniteLossGuard(0)


def test_the_examples_options_resolve_with_the_devices_facts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import argparse

    from ssl_mae.training import fast

    parser = argparse.ArgumentParser()
    fast.add_fast_path_arguments(parser)
    facts = {"bf16_supported": True, "compile_supported": True, "free_memory": 80 * 2**30}
    monkeypatch.setattr(fast, "device_facts", lambda device_type: facts)
    auto = fast.fast_path_from_args(parser.parse_args([]), "cuda", 47 * MiB)
    assert (auto.precision, auto.compile, auto.fused_adamw, auto.gpu_data) == (
        "bf16-mixed",
        True,
        True,
        True,
    )
    off = fast.fast_path_from_args(parser.parse_args(["--compile", "off"]), "cuda", 47 * MiB)
    assert not off.compile and off.fused_adamw
    facts.update(bf16_supported=False, compile_supported=False)  # an older GPU
    old = fast.fast_path_from_args(parser.parse_args([]), "cuda", 47 * MiB)
    assert old.precision == "32-true" and not old.compile
    cpu = fast.fast_path_from_args(parser.parse_args([]), "cpu", 47 * MiB)
    assert (cpu.precision, cpu.compile, cpu.gpu_data) == ("32-true", False, False)
    with pytest.raises(SystemExit):
        parser.parse_args(["--gpu-data", "maybe"])
