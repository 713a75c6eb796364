"""Shared helpers of the reliability suite: the ``ssl-mae`` CLI in-process and as a child
process with injectable faults (SIGKILL at a step, SIGKILL in the middle of a checkpoint write,
a non-finite loss), and checks of the one-line error contract.

Child processes run with one torch thread each and are always reaped: every helper kills its
child in a ``finally`` block, so a failing assertion or a timeout never leaves a training run
behind.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
ERRORS_PAGE = REPO / "docs" / "errors.md"

# A tiny CLI run: the micro preset on 32 Fashion-MNIST images, 4 steps of 8 per epoch, no kNN.
TINY_RUN: list[str] = [
    "--preset", "mae_vit_micro_patch4",
    "--limit-train-images", "32", "--limit-test-images", "16", "--batch-size", "8",
    "--no-progress", "--accelerator", "cpu", "--devices", "1", "--no-knn",
]  # fmt: skip
STEPS_PER_EPOCH = 4
CHILD_TIMEOUT_S = 300

# Environment variables read by the fault-injecting runner below.
KILL_AT_STEP = "SSL_MAE_TEST_KILL_AT_STEP"
KILL_IN_SAVE_AT_STEP = "SSL_MAE_TEST_KILL_IN_SAVE_AT_STEP"
NONFINITE_AT_STEP = "SSL_MAE_TEST_NONFINITE_AT_STEP"
NONFINITE_VALUE = "SSL_MAE_TEST_NONFINITE_VALUE"

# ``python -c FAULT_RUNNER pretrain ...`` runs the real CLI with faults injected from the
# environment:
# * KILL_AT_STEP=k: the process SIGKILLs itself when training step k starts (after the
#   checkpoint of step k was written with --checkpoint-every-n-steps 1);
# * KILL_IN_SAVE_AT_STEP=k: torch.save of the checkpoint at global_step k writes half of its
#   bytes and then the process SIGKILLs itself: a write interrupted mid-way;
# * NONFINITE_AT_STEP=k: the loss of step k (and later) is multiplied by NONFINITE_VALUE.
FAULT_RUNNER = r"""
import io, os, signal, sys
import torch
torch.set_num_threads(1)
from ssl_mae.models import MAE

def _step(name):
    value = os.environ.get(name)
    return None if value is None else int(value)

kill_at = _step("SSL_MAE_TEST_KILL_AT_STEP")
kill_in_save_at = _step("SSL_MAE_TEST_KILL_IN_SAVE_AT_STEP")
bad_at = _step("SSL_MAE_TEST_NONFINITE_AT_STEP")
bad_value = float(os.environ.get("SSL_MAE_TEST_NONFINITE_VALUE", "nan"))

original_step = MAE.training_step
def training_step(self, batch, batch_idx):
    if kill_at is not None and self.global_step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    loss = original_step(self, batch, batch_idx)
    if bad_at is not None and self.global_step >= bad_at:
        loss = loss * bad_value
    return loss
MAE.training_step = training_step

if kill_in_save_at is not None:
    original_save = torch.save
    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("global_step") == kill_in_save_at:
            buffer = io.BytesIO()
            original_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        return original_save(obj, f, *args, **kwargs)
    torch.save = save

from ssl_mae.cli import main
sys.exit(main(sys.argv[1:]))
"""


def child_env(**extra: str) -> dict[str, str]:
    """Environment of a child process: one thread, the repository importable, ``extra`` set."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SSL_MAE_TEST_") and k != "PYTEST_XDIST_WORKER"
    }
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def pretrain_command(out_dir: Path, epochs: int, *extra: str) -> list[str]:
    """``ssl-mae pretrain`` of the tiny run through the fault runner, a checkpoint every step."""
    return [sys.executable, "-c", FAULT_RUNNER, *pretrain_args(out_dir, epochs, *extra)]


def start(command: Sequence[str], cwd: Path, **env: str) -> subprocess.Popen[str]:
    """Starts a child process (stdout and stderr captured separately, text mode)."""
    return subprocess.Popen(
        list(command),
        cwd=cwd,
        env=child_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = CHILD_TIMEOUT_S) -> tuple[str, str]:
    """Waits for ``process``; kills it on timeout (and fails the test). Returns (stdout, stderr)."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"{process.args!r} timed out after {timeout} s:\n{err[-3000:]}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return out, err


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    """A list to register child processes in; any still running at teardown are SIGKILLed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Runs ``ssl-mae`` in this process; returns (exit status, stdout, stderr)."""
    from ssl_mae.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One torch thread, as in the child processes: float results then match bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # On two shared cores a second torch thread mostly spins: a tiny ViT step takes 50x longer.
    with one_thread():
        yield


def pretrain_args(out_dir: Path, epochs: int, *extra: str) -> list[str]:
    """``pretrain`` arguments of the tiny run with a checkpoint every step (see FAULT_RUNNER)."""
    return [
        "pretrain", *TINY_RUN, "--epochs", str(epochs), "--logger", "none",
        "--checkpoint-every-n-steps", "1", "--output-dir", str(out_dir), *extra,
    ]  # fmt: skip


def error_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` written by ``ssl-mae`` itself (not Lightning's info log)."""
    return [line for line in stderr.splitlines() if line.startswith("ssl-mae")]


def assert_one_line_error(code: int, out: str, err: str, expected_code: int = 2) -> str:
    """Checks the CLI error contract and returns the message after ``ssl-mae: error: ``."""
    assert code == expected_code, f"exit status {code}, stderr:\n{err}"
    assert "Traceback" not in out + err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("ssl-mae: error: "), lines[0]
    return lines[0].removeprefix("ssl-mae: error: ")


def checkpoint_step(path: Path) -> int:
    """``global_step`` stored in a checkpoint."""
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    """The model weights of a Lightning checkpoint."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert isinstance(state, dict) and state
    return state


def assert_same_weights(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Bit-identical state dicts."""
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key], value), f"{key} differs"
