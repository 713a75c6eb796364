"""End-to-end tests of the three example scripts in examples/.

Each script is run as a user runs it (a subprocess on the CPU) with a tiny ViT on a few
Fashion-MNIST images. The checks:

* every flavour overfits a small fixed set of images (the loss falls over 50 steps);
* the PyTorch and the Lightning flavour give bit-identical losses and weights for the same seed;
* DDP on CPU (2 gloo processes): the ranks see disjoint halves of the data every epoch, end with
  identical weights, and match one process trained with the doubled batch;
* two "nodes" of one process each (NODE_RANK 0 and 1) reach the weights of the 2-process run;
* every trainable parameter gets a gradient, so DDP needs no ``find_unused_parameters``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SCRIPTS = {
    "pytorch": EXAMPLES / "pytorch" / "mae.py",
    "lightning": EXAMPLES / "lightning" / "mae.py",
    "lightning_distributed": EXAMPLES / "lightning_distributed" / "mae.py",
}

# A ViT small enough for 2 busy CPU cores: 28x28 images, 16 patches of 7x7, 2 blocks of width 32.
TINY_MODEL = [
    "--patch-size", "7", "--embed-dim", "32", "--depth", "2", "--num-heads", "2",
    "--decoder-dim", "32", "--decoder-depth", "1", "--decoder-heads", "2",
]  # fmt: skip
# A high lr so that 50 steps visibly fit the images; no workers, the images are in memory.
FAST_TRAINING = ["--base-lr", "0.1", "--warmup-epochs", "1", "--num-workers", "0", "--seed", "7"]
OVERFIT_STEPS = 50
# Whole runs take long on shared CI cores (process start-up and imports dominate).
RUN_TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # One thread per process: several processes share two cores.
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _start(script: str, args: Sequence[str], cwd: Path, **env: str) -> subprocess.Popen[str]:
    command = [sys.executable, str(SCRIPTS[script]), *args]
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait(process: subprocess.Popen[str]) -> None:
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"{process.args!r} timed out:\n{output[-4000:]}")
    assert process.returncode == 0, f"{process.args!r} failed:\n{output[-4000:]}"


def _run(script: str, args: Sequence[str], cwd: Path, **env: str) -> None:
    _wait(_start(script, args, cwd, **env))


def _losses(output_dir: Path) -> list[float]:
    losses = json.loads((output_dir / "losses.json").read_text())
    assert isinstance(losses, list) and all(isinstance(x, float) for x in losses)
    return losses


def _weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and state
    return state


def _assert_overfits(losses: list[float]) -> None:
    assert len(losses) == OVERFIT_STEPS
    assert all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.75 * first, f"loss did not fall: first 5 steps {first:.4f}, last 5 {last:.4f}"


def _assert_same_weights(
    actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], atol: float
) -> None:
    assert sorted(actual) == sorted(expected)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0.0, atol=atol, msg=name)


def _load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", SCRIPTS[name])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_offers_the_documented_options() -> None:
    for name in SCRIPTS:
        parser = _load_example(name).parser
        options = {option for action in parser._actions for option in action.option_strings}
        common = {"--epochs", "--batch-size", "--max-steps", "--limit-images", "--seed"}
        common |= {"--output-dir", "--dataset", "--data-path", "--num-workers"}
        assert common <= options, f"{name} lacks {sorted(common - options)}"
        assert ("--device" if name == "pytorch" else "--accelerator") in options
        defaults = parser.parse_args([])
        assert defaults.dataset == "fashion_mnist" and defaults.image_size == 28
        assert defaults.limit_images == 0 and defaults.max_steps == -1
    distributed = _load_example("lightning_distributed").parser.parse_args([])
    assert (distributed.strategy, distributed.devices, distributed.num_nodes) == ("ddp", 2, 1)
    for path in SCRIPTS.values():
        text = path.read_text()
        assert "find_unused_parameters=True" not in text
        assert "ddp_find_unused_parameters_true" not in text


def test_every_trainable_parameter_gets_a_gradient() -> None:
    """DDP with find_unused_parameters=False fails on parameters left out of the graph."""
    example = _load_example("lightning_distributed")
    args = example.parser.parse_args(TINY_MODEL)
    torch.manual_seed(0)
    model = example.MAE(**vars(args))
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    with pytest.warns(UserWarning, match="self.log"):  # no Trainer attached
        loss = model.training_step((images, torch.arange(4)), 0)
    loss.backward()
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert len(trainable) > 10
    missing = [name for name, p in trainable.items() if p.grad is None]
    assert not missing, f"parameters without a gradient: {missing}"
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    # Only the fixed sin-cos position embeddings are frozen.
    assert frozen == {"encoder.vit.pos_embed", "decoder.decoder_pos_embed"}


def test_pytorch_and_lightning_overfit_with_identical_losses(tmp_path: Path) -> None:
    args = [*TINY_MODEL, *FAST_TRAINING, "--limit-images", "16", "--batch-size", "8"]
    args += ["--epochs", "1000", "--max-steps", str(OVERFIT_STEPS)]
    # Both at once: each is mostly start-up and a single thread.
    runs = {
        "pytorch": _start("pytorch", [*args, "--device", "cpu", "--output-dir", "pt"], tmp_path),
        "lightning": _start(
            "lightning", [*args, "--accelerator", "cpu", "--output-dir", "pl"], tmp_path
        ),
    }
    for process in runs.values():
        _wait(process)
    plain, lightning = _losses(tmp_path / "pt"), _losses(tmp_path / "pl")
    _assert_overfits(plain)
    _assert_overfits(lightning)
    # Same seed: same initial weights, data order, crops, flips and masks, and the same float
    # operations in the same order, so the curves agree to the last bit.
    assert plain == lightning
    plain_weights = _weights(tmp_path / "pt" / "model.pt")
    _assert_same_weights(_weights(tmp_path / "pl" / "model.pt"), plain_weights, atol=0.0)
    # The Lightning checkpoint holds the same weights and resumes training.
    checkpoint = torch.load(tmp_path / "pl" / "last.ckpt", map_location="cpu", weights_only=False)
    _assert_same_weights(checkpoint["state_dict"], plain_weights, atol=0.0)
    assert checkpoint["global_step"] == OVERFIT_STEPS


def _distributed_args(output_dir: str, batch_size: int, devices: int, nodes: int = 1) -> list[str]:
    # 8 images: one optimiser step per epoch, every epoch on the same small set.
    return [
        *TINY_MODEL, *FAST_TRAINING, "--limit-images", "8", "--epochs", str(OVERFIT_STEPS),
        "--batch-size", str(batch_size), "--accelerator", "cpu", "--strategy", "ddp",
        "--devices", str(devices), "--num-nodes", str(nodes), "--debug-ranks",
        "--output-dir", output_dir,
    ]  # fmt: skip


def _check_disjoint_halves(output_dir: Path, num_images: int) -> None:
    rank0 = json.loads((output_dir / "indices_rank0.json").read_text())
    rank1 = json.loads((output_dir / "indices_rank1.json").read_text())
    assert len(rank0) == len(rank1) == OVERFIT_STEPS  # one batch per epoch
    orders = set()
    for batch0, batch1 in zip(rank0, rank1, strict=True):
        assert len(batch0) == len(batch1) == num_images // 2
        assert not set(batch0) & set(batch1)
        assert sorted(batch0 + batch1) == list(range(num_images))
        orders.add(tuple(batch0))
    assert len(orders) > 1, "the distributed sampler did not reshuffle between epochs"


def test_ddp_on_cpu_two_processes_one_process_and_two_nodes(tmp_path: Path) -> None:
    """2 gloo processes vs 1 process with the doubled batch vs 2 nodes of 1 process each."""
    _check_ddp(tmp_path, multi_node=True)


def _check_ddp(tmp_path: Path, multi_node: bool) -> None:
    two = _start("lightning_distributed", _distributed_args("ddp2", 4, 2), tmp_path,
                 MASTER_PORT=str(_free_port()))  # fmt: skip
    one = _start("lightning_distributed", _distributed_args("ddp1", 8, 1), tmp_path,
                 MASTER_PORT=str(_free_port()))  # fmt: skip
    nodes: list[subprocess.Popen[str]] = []
    if multi_node:
        port = str(_free_port())
        for node_rank in ("0", "1"):
            args = _distributed_args("nodes", 4, devices=1, nodes=2)
            env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "NODE_RANK": node_rank}
            nodes.append(_start("lightning_distributed", args, tmp_path, **env))
    for process in [two, one, *nodes]:
        _wait(process)

    _check_disjoint_halves(tmp_path / "ddp2", num_images=8)
    _assert_overfits(_losses(tmp_path / "ddp2"))
    rank0 = _weights(tmp_path / "ddp2" / "weights_rank0.pt")
    _assert_same_weights(_weights(tmp_path / "ddp2" / "weights_rank1.pt"), rank0, atol=0.0)
    _assert_same_weights(_weights(tmp_path / "ddp2" / "model.pt"), rank0, atol=0.0)

    # One process, batch 8 == two processes, batch 4 each: DDP averages the two half-batch
    # gradients, the sampler gives the one process the union of the two ranks' batches, and each
    # sample's crop and mask depend on its index only.
    single = _weights(tmp_path / "ddp1" / "weights_rank0.pt")
    _assert_same_weights(_without_key_biases(rank0), _without_key_biases(single), atol=1e-5)
    _assert_same_function(rank0, single)

    if multi_node:
        _check_disjoint_halves(tmp_path / "nodes", num_images=8)
        node0 = _weights(tmp_path / "nodes" / "weights_rank0.pt")
        _assert_same_weights(_weights(tmp_path / "nodes" / "weights_rank1.pt"), node0, atol=0.0)
        _assert_same_weights(node0, rank0, atol=1e-5)


def _without_key_biases(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drops the key third of every qkv bias.

    Adding a constant to all keys shifts every attention logit of a query by the same amount,
    which softmax ignores, so the key bias's gradient is zero in exact arithmetic. In floats it is
    rounding noise of ~1e-9, and Adam divides by its root mean square: the key bias takes steps
    of about the learning rate in directions set by rounding, which differ between one and two
    processes (different summation order). It has no effect on the model's output, which
    ``_assert_same_function`` checks.
    """
    out = dict(state)
    for name, value in state.items():
        if name.endswith("attn.qkv.bias"):
            third = value.shape[0] // 3
            out[name] = torch.cat([value[:third], value[2 * third :]])
    return out


def _assert_same_function(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    example = _load_example("lightning_distributed")
    hparams: dict[str, Any] = vars(example.parser.parse_args(TINY_MODEL))
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    losses = []
    for state in (a, b):
        model = example.MAE(**hparams)
        model.load_state_dict(state)
        with torch.no_grad(), pytest.warns(UserWarning, match="self.log"):
            losses.append(model.training_step((images, torch.arange(6)), 0))
    torch.testing.assert_close(losses[0], losses[1], rtol=0.0, atol=1e-5)
