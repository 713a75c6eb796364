"""Faults during ``ssl-mae pretrain``: SIGKILL at random steps, a checkpoint write killed half
way, a loss that turns inf/NaN, NaN pixels.

The resume contract: whatever killed the run, ``--resume OUTPUT/last.ckpt`` finishes with weights
bit-identical to a run that was never interrupted. ``tests/test_cli.py`` checks one scripted
double interruption (marked slow); here the kill steps are drawn from seeds, one child dies in
the middle of writing a checkpoint, and one stops on an inf loss, all running side by side with
the reference run.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from ssl_mae.models import MAE, mae_vit_micro_patch4
from ssl_mae.training import AtomicCheckpointIO, NonFiniteLossError, NonFiniteLossGuard

from .conftest import (
    KILL_AT_STEP,
    KILL_IN_SAVE_AT_STEP,
    NONFINITE_AT_STEP,
    NONFINITE_VALUE,
    STEPS_PER_EPOCH,
    assert_same_weights,
    checkpoint_step,
    checkpoint_weights,
    child_env,
    error_lines,
    finish,
    one_thread,
    pretrain_args,
    pretrain_command,
    run_cli,
    start,
)

EPOCHS = 3
TOTAL_STEPS = EPOCHS * STEPS_PER_EPOCH
KILL_SEEDS = (0, 1, 2)


def _kill_step(seed: int) -> int:
    # Any step after the first checkpoint and before the last one.
    return random.Random(seed).randrange(1, TOTAL_STEPS)


def test_kill_steps_differ_between_seeds() -> None:
    steps = {_kill_step(seed) for seed in KILL_SEEDS}
    assert len(steps) == len(KILL_SEEDS), steps  # the seeds really test different steps


def test_faulty_runs_resume_to_the_weights_of_an_uninterrupted_run(
    tmp_path: Path,
    children: list[subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGKILL at seeded random steps, SIGKILL in a checkpoint write, an inf loss: each run is
    resumed from its ``last.ckpt`` and must end with the reference run's weights.

    The faulty runs are child processes (they die); the reference run and the resumed runs
    execute in this process, with one thread like the children, while the children work.
    """
    faults: dict[str, tuple[dict[str, str], int]] = {}  # name -> (env, step of the fault)
    for seed in KILL_SEEDS:
        step = _kill_step(seed)
        faults[f"sigkill_seed{seed}"] = ({KILL_AT_STEP: str(step)}, step)
    save_step = _kill_step(10)
    faults["sigkill_in_checkpoint_write"] = ({KILL_IN_SAVE_AT_STEP: str(save_step)}, save_step)
    inf_step = _kill_step(20)
    faults["inf_loss"] = ({NONFINITE_AT_STEP: str(inf_step), NONFINITE_VALUE: "inf"}, inf_step)

    # Count the training steps run in this process: a resumed run must continue, not restart
    # (a restart with the same seed would also end with the reference weights).
    steps_run = []
    original_step = MAE.training_step

    def counting_step(self: MAE, batch: Any, batch_idx: int) -> torch.Tensor:
        steps_run.append(self.global_step)
        return original_step(self, batch, batch_idx)

    monkeypatch.setattr(MAE, "training_step", counting_step)

    faulty = {}
    for name, (env, _) in faults.items():
        faulty[name] = start(pretrain_command(tmp_path / name, EPOCHS), tmp_path, **env)
        children.append(faulty[name])

    with one_thread():
        code, _, err = run_cli(pretrain_args(tmp_path / "reference", EPOCHS), capsys)
    assert code == 0, err
    expected = checkpoint_weights(tmp_path / "reference" / "last.ckpt")
    assert checkpoint_step(tmp_path / "reference" / "last.ckpt") == TOTAL_STEPS

    for name, process in faulty.items():
        _, err = finish(process)
        step = faults[name][1]
        last = tmp_path / name / "last.ckpt"
        if name == "inf_loss":
            # Stopped with exit status 1 and one line naming the value and the step.
            assert process.returncode == 1, err
            (line,) = error_lines(err)
            assert f"training loss became inf at step {step}" in line, line
            assert "last good checkpoint" in line and "Traceback" not in err
        else:
            assert process.returncode == -signal.SIGKILL, err
        # last.ckpt always loads. After a kill inside the write of step s's checkpoint it still
        # holds step s - 1; otherwise the checkpoint written just before the fault.
        expected_step = step - 1 if name == "sigkill_in_checkpoint_write" else step
        assert checkpoint_step(last) == expected_step, name
        weights = checkpoint_weights(last)
        assert all(torch.isfinite(v).all() for v in weights.values()), name
        if name == "sigkill_in_checkpoint_write":
            # The half-written temporary file is left behind, never renamed into place.
            assert list(last.parent.glob(".last.ckpt.*.tmp")), "the write was not interrupted"

        steps_run.clear()
        with one_thread():
            args = pretrain_args(tmp_path / name, EPOCHS, "--resume", str(last))
            code, _, err = run_cli(args, capsys)
        assert code == 0, f"{name}: {err[-3000:]}"
        assert steps_run == list(range(expected_step, TOTAL_STEPS)), name
        assert checkpoint_step(last) == TOTAL_STEPS, name
        assert_same_weights(checkpoint_weights(last), expected)


# A child that writes checkpoint 1, then checkpoint 2 through a file that SIGKILLs the process
# after half of the bytes: once with the atomic writer, once with a plain torch.save.
_HALF_WRITE = r"""
import io, os, signal, sys, torch
from ssl_mae.training import save_atomic
target = sys.argv[2]
save_atomic({"step": 1, "w": torch.ones(4096)}, target)
original = torch.save
def half_save(obj, f, *args, **kwargs):
    buffer = io.BytesIO()
    original(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    handle = open(f, "wb") if isinstance(f, str) else f
    handle.write(data[: len(data) // 2])
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = half_save
if sys.argv[1] == "atomic":
    save_atomic({"step": 2, "w": torch.zeros(4096)}, target)
else:
    torch.save({"step": 2, "w": torch.zeros(4096)}, target)
"""


def test_interrupted_write_leaves_the_previous_checkpoint_only_with_atomic_saves(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    processes = {}
    for writer in ("atomic", "plain"):
        target = tmp_path / writer / "last.ckpt"
        target.parent.mkdir()
        command = [sys.executable, "-c", _HALF_WRITE, writer, str(target)]
        processes[writer] = subprocess.Popen(
            command, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        children.append(processes[writer])
    for process in processes.values():
        _, err = finish(process)
        assert process.returncode == -signal.SIGKILL, err
    atomic = torch.load(tmp_path / "atomic" / "last.ckpt", weights_only=True)
    assert atomic["step"] == 1 and torch.equal(atomic["w"], torch.ones(4096))
    # The same interruption without the temp-file-and-rename leaves an unloadable file: the
    # fault injection is real, and the atomic writer is what protects last.ckpt.
    with pytest.raises((RuntimeError, EOFError, OSError)):
        torch.load(tmp_path / "plain" / "last.ckpt", weights_only=True)


# --- NaN pixels in a Lightning run ---------------------------------------------------------------
def test_nan_pixels_stop_training_before_they_reach_the_weights(tmp_path: Path) -> None:
    """The models do not scan inputs for NaN (a host sync per step on GPUs); in training the
    guard turns a NaN image into a clear stop, and the last checkpoint stays finite."""
    torch.manual_seed(0)
    model = mae_vit_micro_patch4(img_size=8, batch_size=4, total_steps=10)
    images = torch.rand(16, 1, 8, 8)
    images[13, 0, 3, 3] = float("nan")  # in the 4th batch: global step 3
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            pl.callbacks.ModelCheckpoint(
                tmp_path, every_n_train_steps=1, save_top_k=0, save_last=True
            ),
            NonFiniteLossGuard(),
        ],
        plugins=[AtomicCheckpointIO()],
    )
    loader: DataLoader[Any] = DataLoader(TensorDataset(images, torch.zeros(16)), batch_size=4)
    with pytest.raises(NonFiniteLossError, match=r"became nan at step 3 .*last good checkpoint"):
        trainer.fit(model, loader)
    assert checkpoint_step(tmp_path / "last.ckpt") == 3
    assert all(torch.isfinite(p).all() for p in model.state_dict().values())


def test_a_training_failure_writes_only_the_error_line_to_stderr(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    # A child process: in-process, pytest's logging plugin swallows Lightning's log records.
    env = {NONFINITE_AT_STEP: "2", NONFINITE_VALUE: "nan"}
    process = start(pretrain_command(tmp_path / "run", 1), tmp_path, **env)
    children.append(process)
    _, err = finish(process)
    assert process.returncode == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("ssl-mae: error: training loss became nan at step 2")
