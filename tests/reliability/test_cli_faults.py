"""Faults around ``ssl-mae pretrain``: nothing lost, honest exit codes, no mixed runs.

* SIGINT and SIGTERM during training stop after the current step with a resumable ``last.ckpt``,
  the CSV log and ``metrics.json`` flushed, exit status 130 / 143 and one line; a SIGINT while
  the program is still importing is one line too.
* There is exactly one ``last.ckpt`` and it is the newest state; ``--overwrite`` leaves nothing of
  the previous run; a killed write's ``.tmp`` file is removed on the next start.
* A second run on a busy output folder is refused with the first one's PID; a lock left by a
  killed run is taken over; resuming into a folder that holds another run is refused.
* A bit flip in a checkpoint is reported by name; a full disk (``RLIMIT_FSIZE``) is one line with
  the path and "no space left", and the previous checkpoint stays intact.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import (
    CHILD_TIMEOUT_S,
    STEPS_PER_EPOCH,
    checkpoint_step,
    child_env,
    finish,
    pretrain_args,
    run_cli,
    start,
)

# The real CLI with slow steps: every training step sleeps SSL_MAE_TEST_STEP_DELAY seconds and
# then writes its global step to SSL_MAE_TEST_PROGRESS; SSL_MAE_TEST_READY is written once the
# signal handlers are installed (before torch is imported).
_RUNNER = r"""
import os, sys, time
from pathlib import Path
from ssl_mae.training import signals

progress, ready = os.environ.get("SSL_MAE_TEST_PROGRESS"), os.environ.get("SSL_MAE_TEST_READY")
install = signals.StopRequest.install
def install_and_announce(self):
    install(self)
    if ready:
        Path(ready).write_text("ready")
signals.StopRequest.install = install_and_announce

if progress:
    import torch
    torch.set_num_threads(1)
    from ssl_mae.training.module import PretrainModule
    step = PretrainModule.training_step
    delay = float(os.environ.get("SSL_MAE_TEST_STEP_DELAY", "0.2"))
    def slow_step(self, batch, batch_idx):
        time.sleep(delay)
        loss = step(self, batch, batch_idx)
        Path(progress).write_text(str(self.global_step))
        return loss
    PretrainModule.training_step = slow_step

from ssl_mae.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _command(*argv: str) -> list[str]:
    return [sys.executable, "-c", _RUNNER, *argv]


def _wait_for(path: Path, process: subprocess.Popen[str], minimum: int | None = None) -> None:
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while True:
        assert process.poll() is None, finish(process)[1][-3000:]
        if path.is_file():
            text = path.read_text().strip()
            if minimum is None or (text.isdigit() and int(text) >= minimum):
                return
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_ends_with_one_line_flushed_logs_and_a_resumable_checkpoint(
    signum: int,
    status: int,
    tmp_path: Path,
    children: list[subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out_dir, progress = tmp_path / "run", tmp_path / "progress"
    argv = pretrain_args(out_dir, 2, "--logger", "csv", "--log-every-n-steps", "1")
    argv[argv.index("--checkpoint-every-n-steps") + 1] = "100"  # no step checkpoints
    process = start(_command(*argv), tmp_path, SSL_MAE_TEST_PROGRESS=str(progress))
    children.append(process)
    _wait_for(progress, process, minimum=2)
    os.kill(process.pid, signum)
    _, err = finish(process)
    assert process.returncode == status, err
    name = signal.Signals(signum).name
    last = out_dir / "last.ckpt"
    assert [line for line in err.splitlines() if line.strip()] == [
        f"ssl-mae: interrupted by {name}; resume with: ssl-mae pretrain --resume {last}"
    ]
    stopped_at = checkpoint_step(last)
    assert 2 <= stopped_at < 2 * STEPS_PER_EPOCH  # the step after the signal, not an older one
    (log,) = (out_dir / "logs").glob("version_*/metrics.csv")
    logged = [line for line in log.read_text().splitlines()[1:] if line.strip()]
    # Flushed: a train_loss/lr row per step; the step the signal interrupted is saved in the
    # checkpoint, its row would have been logged after the stop.
    assert len(logged) >= stopped_at - 1
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["status"] == f"interrupted by {name}" and metrics["steps"] == stopped_at
    assert (out_dir / "report.md").is_file()

    code, _, err = run_cli(["pretrain", "--resume", str(last)], capsys)
    assert code == 0, err
    assert checkpoint_step(last) == 2 * STEPS_PER_EPOCH


def test_a_sigint_while_importing_is_one_line(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    ready = tmp_path / "ready"
    argv = pretrain_args(tmp_path / "run", 1)
    process = start(_command(*argv), tmp_path, SSL_MAE_TEST_READY=str(ready))
    children.append(process)
    _wait_for(ready, process)
    os.kill(process.pid, signal.SIGINT)  # torch and Lightning are still loading
    _, err = finish(process)
    assert process.returncode == 130, err
    assert [line for line in err.splitlines() if line.strip()] == ["ssl-mae: interrupted by SIGINT"]


def test_step_checkpoints_replace_last_ckpt_and_leave_no_twins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "run"
    code, _, err = run_cli(pretrain_args(out_dir, 2, "--no-report"), capsys)
    assert code == 0, err
    files = {p.name for p in out_dir.iterdir()}
    assert files == {
        ".ssl-mae.lock", "config.yaml", "metrics.json", "last.ckpt", "last.ckpt.sha256",
        "best.ckpt", "best.ckpt.sha256",
    }  # fmt: skip
    assert checkpoint_step(out_dir / "last.ckpt") == 2 * STEPS_PER_EPOCH


def test_a_kill_mid_epoch_leaves_last_ckpt_at_the_last_step(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    out_dir, progress = tmp_path / "run", tmp_path / "progress"
    process = start(
        _command(*pretrain_args(out_dir, 2, "--no-report")),
        tmp_path,
        SSL_MAE_TEST_PROGRESS=str(progress),
    )
    children.append(process)
    _wait_for(progress, process, minimum=STEPS_PER_EPOCH + 2)  # mid second epoch
    process.kill()
    finish(process)
    step = checkpoint_step(out_dir / "last.ckpt")
    assert step >= STEPS_PER_EPOCH + 2  # written every step, not only at the epoch's end
    assert not list(out_dir.glob("last-v*.ckpt"))


def test_overwrite_leaves_nothing_of_the_previous_run_and_partial_writes_are_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "run"
    stale = ["last-v1.ckpt", "last-v3.ckpt", "best-v2.ckpt", "best.ckpt", "metrics.json",
             "report.md", "last.ckpt.sha256", ".last.ckpt.k2j3.tmp", "logs/version_7/metrics.csv",
             "report/curves.png"]  # fmt: skip
    for name in stale:
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / name).write_text("old")
    (out_dir / "notes.txt").write_text("mine")  # not a run file: kept
    code, _, err = run_cli(pretrain_args(out_dir, 1, "--overwrite", "--no-report"), capsys)
    assert code == 0, err
    for name in ("last-v1.ckpt", "last-v3.ckpt", "best-v2.ckpt", ".last.ckpt.k2j3.tmp",
                 "logs/version_7", "report"):  # fmt: skip
        assert not (out_dir / name).exists(), name
    assert (out_dir / "notes.txt").read_text() == "mine"
    assert checkpoint_step(out_dir / "last.ckpt") == STEPS_PER_EPOCH

    # A write killed half way leaves a .tmp file; the next start (here a resume) removes it.
    (out_dir / ".last.ckpt.x8y9.tmp").write_bytes(b"half")
    code, _, err = run_cli(["pretrain", "--resume", str(out_dir / "last.ckpt"), "--epochs", "2"],
                           capsys)  # fmt: skip
    assert code == 0, err
    assert not list(out_dir.glob(".*.tmp"))


def test_a_second_run_on_a_busy_folder_is_refused_and_a_stale_lock_is_taken_over(
    tmp_path: Path,
    children: list[subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out_dir, progress = tmp_path / "run", tmp_path / "progress"
    first = start(
        _command(*pretrain_args(out_dir, 3, "--no-report")),
        tmp_path,
        SSL_MAE_TEST_PROGRESS=str(progress),
        SSL_MAE_TEST_STEP_DELAY="0.5",
    )
    children.append(first)
    _wait_for(progress, first, minimum=1)
    for argv in (pretrain_args(out_dir, 1, "--overwrite"),
                 ["pretrain", "--resume", str(out_dir / "last.ckpt")]):  # fmt: skip
        code, _, err = run_cli(argv, capsys)
        assert code == 2, err
        assert f"is in use by another ssl-mae run (PID {first.pid})" in err
    first.kill()  # the lock file stays behind with a dead PID
    finish(first)
    assert (out_dir / ".ssl-mae.lock").read_text().strip() == str(first.pid)
    code, _, err = run_cli(["pretrain", "--resume", str(out_dir / "last.ckpt")], capsys)
    assert code == 0, err
    assert checkpoint_step(out_dir / "last.ckpt") == 3 * STEPS_PER_EPOCH


def test_resuming_into_a_folder_of_another_run_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b"):
        code, _, err = run_cli(pretrain_args(tmp_path / name, 1, "--no-report"), capsys)
        assert code == 0, err
    a_last = tmp_path / "a" / "last.ckpt"
    before = a_last.read_bytes()
    argv = ["pretrain", "--resume", str(a_last), "--epochs", "2"]
    code, _, err = run_cli([*argv, "--output-dir", str(tmp_path / "b")], capsys)
    assert code == 2 and "holds another run" in err
    assert checkpoint_step(tmp_path / "b" / "last.ckpt") == STEPS_PER_EPOCH  # untouched
    # An empty folder is fine: the run continues there and its own folder keeps its state.
    code, _, err = run_cli([*argv, "--output-dir", str(tmp_path / "c")], capsys)
    assert code == 0, err
    assert checkpoint_step(tmp_path / "c" / "last.ckpt") == 2 * STEPS_PER_EPOCH
    assert a_last.read_bytes() == before


def test_a_bit_flip_in_a_checkpoint_is_reported_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "run"
    code, _, err = run_cli(pretrain_args(out_dir, 1, "--no-report"), capsys)
    assert code == 0, err
    last = out_dir / "last.ckpt"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0x04  # inside the tensor data: torch.load would not notice
    last.write_bytes(bytes(data))
    for argv in (["evaluate", "--checkpoint", str(last)],
                 ["pretrain", "--resume", str(last)],
                 ["export", "--checkpoint", str(last), "--format", "official",
                  "--output", str(tmp_path / "x.pth")]):  # fmt: skip
        code, _, err = run_cli(argv, capsys)
        assert code == 2, (argv, err)
        assert f"checkpoint {str(last)!r} is damaged" in err and err.count("\n") == 1


def _limit_file_size(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_previous_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ssl_mae.training.checkpoints import verify_checksum

    out_dir = tmp_path / "run"
    code, _, err = run_cli(pretrain_args(out_dir, 1, "--no-report"), capsys)
    assert code == 0, err
    last = out_dir / "last.ckpt"
    before = last.read_bytes()
    size = len(before)
    command = _command("pretrain", "--resume", str(last), "--epochs", "2")
    process = subprocess.run(
        command,
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        preexec_fn=lambda: _limit_file_size(size // 2),
    )
    lines = [line for line in process.stderr.splitlines() if line.strip()]
    assert process.returncode == 1, process.stderr
    assert len(lines) == 1 and lines[0].startswith("ssl-mae: error: cannot write "), lines
    assert str(last) in lines[0] and "no space left" in lines[0]
    assert last.read_bytes() == before and verify_checksum(last)
    assert not list(out_dir.glob(".*.tmp"))
