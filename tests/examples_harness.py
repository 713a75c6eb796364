"""Runs the scripts of ``examples/`` for the tests and records what they did.

The examples stay plain scripts; everything the tests need to look inside a run lives here:

* :func:`load_example` imports a script as a module (its ``parser``, ``build_mae`` and ``main``);
* :class:`Recorder` is a Lightning callback that keeps, per process, the loss of every step, the
  images of every training batch as ``training_step`` receives them (the raw uint8 images in the
  distributed example, which augments inside its step) and the final weights;
* run as a script, ``python tests/examples_harness.py EXAMPLE RECORD_DIR ARGS...`` calls
  ``EXAMPLE``'s ``main`` with a :class:`Recorder` writing to ``RECORD_DIR``. This is how the tests
  start the distributed example: Lightning's DDP launcher starts the other local processes with
  the same command line, so every process records its own share;
* :func:`read_record` reads such a record back, :func:`stop` ends runs a failed test leaves.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = ("pytorch", "lightning", "lightning_distributed")


def example_path(name: str) -> Path:
    return REPO / "examples" / name / "mae.py"


def load_example(name: str) -> ModuleType:
    """Imports ``examples/NAME/mae.py`` as a fresh module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", example_path(name))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recorder(pl.Callback):
    """Keeps the losses, the training batches and the final weights of one process and writes
    them to ``directory`` as ``losses_rank{R}.json``, ``batches_rank{R}.pt`` and
    ``weights_rank{R}.pt`` when training ends."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.losses: list[float] = []
        self.batches: list[torch.Tensor] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.batches.append(batch[0].detach().cpu().clone())

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self.losses.append(float(outputs["loss"]))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rank = trainer.global_rank
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"losses_rank{rank}.json").write_text(json.dumps(self.losses))
        torch.save(self.batches, self.directory / f"batches_rank{rank}.pt")
        weights = {
            key: value.detach().cpu().clone() for key, value in pl_module.state_dict().items()
        }
        torch.save(weights, self.directory / f"weights_rank{rank}.pt")


@dataclass
class Record:
    """What one process of a recorded run saw and ended with."""

    losses: list[float]
    batches: list[torch.Tensor]
    weights: dict[str, torch.Tensor]


def read_losses(directory: Path, rank: int = 0) -> list[float]:
    """The loss of every step of process ``rank`` (every flavour records these)."""
    losses = json.loads((directory / f"losses_rank{rank}.json").read_text())
    assert isinstance(losses, list) and all(isinstance(x, float) for x in losses)
    return losses


def read_record(directory: Path, rank: int = 0) -> Record:
    """Everything a :class:`Recorder` wrote for process ``rank``."""
    batches = torch.load(directory / f"batches_rank{rank}.pt", weights_only=True)
    weights = torch.load(directory / f"weights_rank{rank}.pt", weights_only=True)
    return Record(read_losses(directory, rank), batches, weights)


def run_lightning(name: str, argv: Sequence[str], record_dir: Path) -> Record:
    """Runs a Lightning example in this process and returns rank 0's record."""
    example = load_example(name)
    example.main(example.parser.parse_args(list(argv)), callbacks=(Recorder(record_dir),))
    return read_record(record_dir)


def run_pytorch(argv: Sequence[str]) -> list[float]:
    """Runs the PyTorch example in this process and returns its losses."""
    example = load_example("pytorch")
    losses = example.main(example.parser.parse_args(list(argv)))
    assert isinstance(losses, list)
    return losses


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # One thread per process: several processes share two cores.
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def start(
    name: str, argv: Sequence[str], record_dir: Path, cwd: Path, **env: str
) -> subprocess.Popen[str]:
    """Starts ``python tests/examples_harness.py NAME RECORD_DIR ARGV...`` as a child process."""
    command = [sys.executable, str(Path(__file__).resolve()), name, str(record_dir), *argv]
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=child_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: stop() also ends the DDP workers
    )


def stop(processes: Sequence[subprocess.Popen[str]]) -> None:
    """Kills whatever is left of started runs (with the processes Lightning started for them)."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def _main(argv: Sequence[str]) -> None:
    name, record_dir, *example_argv = argv
    torch.set_num_threads(1)
    if name == "pytorch":
        losses = run_pytorch(example_argv)
        Path(record_dir).mkdir(parents=True, exist_ok=True)
        (Path(record_dir) / "losses_rank0.json").write_text(json.dumps(losses))
    else:
        example = load_example(name)
        args = example.parser.parse_args(example_argv)
        example.main(args, callbacks=(Recorder(Path(record_dir)),))


if __name__ == "__main__":
    _main(sys.argv[1:])
