"""End-to-end tests of the three example scripts in examples/.

The scripts are run as a user runs them (child processes on the CPU, through
``tests/examples_harness.py``, which records what each process did) with a tiny ViT on a few
Fashion-MNIST images. The checks:

* every option shows its default in ``--help``; the default model is exactly the preset's;
* the PyTorch and the Lightning flavour overfit a small fixed set, with bit-identical losses and
  weights for the same seed;
* ``ssl-mae evaluate`` / ``reconstruct`` read the checkpoints of all three flavours and rebuild
  the trained weights;
* DDP on CPU (2 gloo processes): the ranks see disjoint halves of the data every epoch, end with
  identical weights, and match one process trained with the doubled batch; two "nodes" of one
  process each (NODE_RANK 0 and 1) reach the weights of the 2-process run;
* every trainable parameter gets a gradient, so DDP needs no ``find_unused_parameters``;
* an unreadable file in an image folder is replaced and counted, not a crash.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from examples_harness import (
    EXAMPLES,
    example_path,
    load_example,
    read_losses,
    read_record,
    run_lightning,
    run_pytorch,
    start,
    stop,
)
from PIL import Image

from ssl_mae import cli
from ssl_mae.export import load_trained_model
from ssl_mae.models.presets import PRETRAIN_PRESETS, build_model

# A ViT small enough for 2 busy CPU cores: 28x28 images, 16 patches of 7x7, 2 blocks of width 32.
TINY_MODEL = [
    "--patch-size", "7", "--embed-dim", "32", "--depth", "2", "--num-heads", "2",
    "--decoder-embed-dim", "32", "--decoder-depth", "1", "--decoder-num-heads", "2",
]  # fmt: skip
# A high lr so that 50 steps visibly fit the images; no workers, the images are in memory.
FAST_TRAINING = ["--base-lr", "0.1", "--num-workers", "0", "--seed", "7"]
OVERFIT_STEPS = 50
# Whole runs take long on shared CI cores (process start-up and imports dominate).
RUN_TIMEOUT_S = 600
CLI_EVALUATE = ["--limit-train-images", "64", "--limit-test-images", "32", "--knn-k", "5"]


@pytest.fixture(autouse=True)
def _restore_lightning_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process Lightning runs call pl.seed_everything, which sets PL_GLOBAL_SEED (read by
    Lightning's samplers); remove it again after each test."""
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")
    monkeypatch.delenv("PL_GLOBAL_SEED")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(process: subprocess.Popen[str]) -> None:
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # with the DDP workers Lightning started
        output, _ = process.communicate()
        pytest.fail(f"{process.args!r} timed out:\n{output[-4000:]}")
    assert process.returncode == 0, f"{process.args!r} failed:\n{output[-4000:]}"


def _checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
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


def _core_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``model.encoder.*`` (a PretrainModule's keys) -> ``encoder.*`` (the core's)."""
    assert all(key.startswith("model.") for key in state)
    return {key.removeprefix("model."): value for key, value in state.items()}


def _assert_cli_rebuilds(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``ssl-mae evaluate`` accepts the checkpoint and rebuilds exactly the trained weights."""
    trained = _core_weights(_checkpoint_weights(checkpoint))
    rebuilt = load_trained_model(checkpoint)
    assert rebuilt.preset is not None and rebuilt.preset.startswith("mae_vit_")
    _assert_same_weights(rebuilt.core.state_dict(), trained, atol=0.0)
    capsys.readouterr()
    code = cli.main(["evaluate", "--checkpoint", str(checkpoint), *CLI_EVALUATE, "--device", "cpu"])
    output = capsys.readouterr()
    assert code == 0, output.err
    assert "kNN top-1" in output.out


# --- options, model ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", EXAMPLES)
def test_every_option_shows_its_default_in_help(name: str) -> None:
    example = load_example(name)
    parser: argparse.ArgumentParser = example.parser
    assert parser.formatter_class is argparse.ArgumentDefaultsHelpFormatter
    text = " ".join(parser.format_help().split())
    options = {option for action in parser._actions for option in action.option_strings}
    for action in parser._actions:
        if action.dest != "help":
            assert action.help and action.help.strip(), f"{action.option_strings} has no help"
            assert f"(default: {action.default})" in text, action.option_strings
    common = {"--epochs", "--batch-size", "--limit-images", "--seed", "--output-dir", "--dataset"}
    common |= {"--data-path", "--num-workers", "--base-lr", "--mask-ratio", "--norm-pix-loss"}
    assert common <= options, f"{name} lacks {sorted(common - options)}"
    assert ("--device" if name == "pytorch" else "--accelerator") in options
    defaults = parser.parse_args([])
    assert (defaults.dataset, defaults.limit_images, defaults.mask_ratio) == (
        "fashion_mnist",
        0,
        0.75,
    )
    if name == "lightning_distributed":
        assert (defaults.devices, defaults.num_nodes) == (2, 1)
    text = example_path(name).read_text()
    assert "find_unused_parameters=True" not in text
    assert "ddp_find_unused_parameters_true" not in text


def _same_model(example_core: Any, preset_core: Any, in_chans: int) -> None:
    """Same modules (shapes, norm eps, MLP ratio: the reprs) and, with the same weights, noise
    and images, the same loss and predictions bit for bit."""
    assert repr(example_core) == repr(preset_core)
    example_core.load_state_dict(preset_core.state_dict())
    size = preset_core.image_size
    images = torch.randn(3, in_chans, *size, generator=torch.Generator().manual_seed(0))
    num_patches = size[0] * size[1] // preset_core.encoder.patch_size**2
    noise = torch.rand(3, num_patches, generator=torch.Generator().manual_seed(1))
    ours, theirs = example_core(images, noise=noise), preset_core(images, noise=noise)
    assert torch.equal(ours.loss, theirs.loss) and torch.equal(ours.pred, theirs.pred)


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_default_model_is_the_preset_model(name: str) -> None:
    example = load_example(name)
    assert example.PRESET in PRETRAIN_PRESETS
    preset = build_model(example.PRESET, in_chans=1).masked_autoencoder
    args = example.parser.parse_args([])
    config = PRETRAIN_PRESETS[example.PRESET].config
    options = {key: getattr(args, key) for key in config if hasattr(args, key)}
    assert options == {key: config[key] for key in options}
    assert {"img_size", "patch_size", "embed_dim", "decoder_embed_dim"} < set(options)
    _same_model(example.build_mae(args, in_chans=1), preset, in_chans=1)


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_options_map_onto_the_preset_vocabulary(name: str) -> None:
    """Other sizes, channels, mask ratio and norm-pix give the preset's model with the
    overrides the checkpoints store."""
    example = load_example(name)
    args = example.parser.parse_args([*TINY_MODEL, "--img-size", "21", "--mask-ratio", "0.6"])
    args.norm_pix_loss = True
    overrides: dict[str, Any] = {
        "img_size": 21, "patch_size": 7, "in_chans": 3, "embed_dim": 32, "depth": 2,
        "num_heads": 2, "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2,
        "mask_ratio": 0.6, "norm_pix_loss": True,
    }  # fmt: skip
    preset = build_model(example.PRESET, **overrides).masked_autoencoder
    _same_model(example.build_mae(args, in_chans=3), preset, in_chans=3)


def test_every_trainable_parameter_gets_a_gradient() -> None:
    """DDP with find_unused_parameters=False fails on parameters left out of the graph."""
    example = load_example("lightning_distributed")
    mae = example.build_mae(example.parser.parse_args(TINY_MODEL), in_chans=1)
    mae(torch.randn(4, 1, 28, 28)).loss.backward()
    trainable = {name: p for name, p in mae.named_parameters() if p.requires_grad}
    assert len(trainable) > 10
    missing = [name for name, p in trainable.items() if p.grad is None]
    assert not missing, f"parameters without a gradient: {missing}"
    frozen = {name for name, p in mae.named_parameters() if not p.requires_grad}
    # Only the fixed sin-cos position embeddings are frozen.
    assert frozen == {"encoder.vit.pos_embed", "decoder.decoder_pos_embed"}


# --- one process: PyTorch and Lightning ---------------------------------------------------------
def test_pytorch_and_lightning_overfit_identically_into_checkpoints_the_cli_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 16 images, batch 8: 2 steps per epoch.
    args = [*TINY_MODEL, *FAST_TRAINING, "--limit-images", "16", "--batch-size", "8"]
    args += ["--epochs", str(OVERFIT_STEPS // 2)]
    # Both at once: each is mostly start-up and a single thread.
    runs = [
        start("pytorch", [*args, "--device", "cpu", "--output-dir", "pt"], tmp_path / "rec_pt",
              tmp_path),
        start("lightning", [*args, "--accelerator", "cpu", "--output-dir", "pl"],
              tmp_path / "rec_pl", tmp_path),
    ]  # fmt: skip
    try:
        for process in runs:
            _wait(process)
    finally:
        stop(runs)
    plain = read_losses(tmp_path / "rec_pt")
    lightning = read_record(tmp_path / "rec_pl")
    _assert_overfits(plain)
    _assert_overfits(lightning.losses)
    # Same seed: same initial weights, data order, crops, flips and masks, and the same float
    # operations in the same order, so the curves agree to the last bit.
    assert plain == lightning.losses
    plain_weights = _checkpoint_weights(tmp_path / "pt" / "last.ckpt")
    lightning_checkpoint = torch.load(tmp_path / "pl" / "last.ckpt", weights_only=True)
    _assert_same_weights(lightning_checkpoint["state_dict"], plain_weights, atol=0.0)
    _assert_same_weights(lightning.weights, plain_weights, atol=0.0)
    assert lightning_checkpoint["global_step"] == OVERFIT_STEPS
    for flavour in ("pt", "pl"):
        _assert_cli_rebuilds(tmp_path / flavour / "last.ckpt", capsys)
    output = tmp_path / "reconstruction.png"
    argv = ["reconstruct", "--checkpoint", str(tmp_path / "pt" / "last.ckpt")]
    assert cli.main([*argv, "--output", str(output), "--num-images", "2"]) == 0
    assert output.stat().st_size > 0


def test_an_existing_run_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.ckpt").write_bytes(b"an earlier run")
    for name in EXAMPLES:
        example = load_example(name)
        with pytest.raises(SystemExit) as exit_info:
            example.main(example.parser.parse_args(["--output-dir", str(tmp_path / "run")]))
        assert exit_info.value.code == 2
    assert (tmp_path / "run" / "last.ckpt").read_bytes() == b"an earlier run"


def test_a_batch_larger_than_the_data_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Full batches only (as PretrainDataModule): 4 images cannot make a batch of 8."""
    args = [*TINY_MODEL, "--limit-images", "4", "--batch-size", "8", "--num-workers", "0"]
    with pytest.raises(SystemExit) as exit_info:
        run_pytorch([*args, "--device", "cpu", "--output-dir", str(tmp_path / "pt")])
    assert exit_info.value.code == 2
    assert "--batch-size 8 exceeds the 4 images" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"batch_size must be at most .* \(4\), got 8"):
        run_lightning("lightning", [*args, "--output-dir", str(tmp_path / "pl")], tmp_path / "r")


# --- DDP ------------------------------------------------------------------------------------------
def _distributed_args(output_dir: str, batch_size: int, devices: int, nodes: int = 1) -> list[str]:
    # 8 images: one optimiser step per epoch, every epoch on the same small set.
    return [
        *TINY_MODEL, *FAST_TRAINING, "--limit-images", "8", "--epochs", str(OVERFIT_STEPS),
        "--batch-size", str(batch_size), "--accelerator", "cpu", "--devices", str(devices),
        "--num-nodes", str(nodes), "--output-dir", output_dir,
    ]  # fmt: skip


def _dataset_indices(batches: list[torch.Tensor], images: torch.Tensor) -> list[list[int]]:
    """The index in ``images`` (N, C, H, W) of every image of every batch."""
    flat = images.flatten(1)
    indices = []
    for batch in batches:
        matches = (batch.flatten(1)[:, None, :] == flat[None, :, :]).all(-1)
        assert bool((matches.sum(1) == 1).all()), "a batch image is not one of the images"
        indices.append(matches.int().argmax(1).tolist())
    return indices


def _check_disjoint_halves(record_dir: Path, images: torch.Tensor) -> None:
    rank0 = _dataset_indices(read_record(record_dir, 0).batches, images)
    rank1 = _dataset_indices(read_record(record_dir, 1).batches, images)
    assert len(rank0) == len(rank1) == OVERFIT_STEPS  # one batch per epoch
    orders = set()
    for batch0, batch1 in zip(rank0, rank1, strict=True):
        assert len(batch0) == len(batch1) == len(images) // 2
        assert not set(batch0) & set(batch1)
        assert sorted(batch0 + batch1) == list(range(len(images)))
        orders.add(tuple(batch0))
    assert len(orders) > 1, "the distributed sampler did not reshuffle between epochs"


def test_ddp_on_cpu_two_processes_one_process_and_two_nodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2 gloo processes vs 1 process with the doubled batch vs 2 nodes of 1 process each."""
    name = "lightning_distributed"
    two = start(name, _distributed_args("ddp2", 4, 2), tmp_path / "rec2", tmp_path,
                MASTER_PORT=str(_free_port()))  # fmt: skip
    one = start(name, _distributed_args("ddp1", 8, 1), tmp_path / "rec1", tmp_path,
                MASTER_PORT=str(_free_port()))  # fmt: skip
    port, nodes = str(_free_port()), []
    for node_rank in ("0", "1"):
        args = _distributed_args("nodes", 4, devices=1, nodes=2)
        env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "NODE_RANK": node_rank}
        nodes.append(start(name, args, tmp_path / "rec_nodes", tmp_path, **env))
    try:
        for process in [two, one, *nodes]:
            _wait(process)
    finally:
        stop([two, one, *nodes])

    from ssl_mae.data import build_dataset

    fashion_mnist = build_dataset("fashion_mnist")
    images = torch.stack([fashion_mnist[i][0] for i in range(8)])
    _check_disjoint_halves(tmp_path / "rec2", images)
    _assert_overfits(read_record(tmp_path / "rec2").losses)
    rank0 = read_record(tmp_path / "rec2", 0).weights
    _assert_same_weights(read_record(tmp_path / "rec2", 1).weights, rank0, atol=0.0)
    _assert_same_weights(_checkpoint_weights(tmp_path / "ddp2" / "last.ckpt"), rank0, atol=0.0)
    _assert_cli_rebuilds(tmp_path / "ddp2" / "last.ckpt", capsys)

    # One process, batch 8 == two processes, batch 4 each: DDP averages the two half-batch
    # gradients, the sampler gives the one process the union of the two ranks' batches, and
    # every process draws the crops and masks of the whole batch and keeps its rows.
    single = read_record(tmp_path / "rec1").weights
    _assert_same_weights(_without_key_biases(rank0), _without_key_biases(single), atol=1e-5)
    _assert_same_function(rank0, single)

    _check_disjoint_halves(tmp_path / "rec_nodes", images)
    node0 = read_record(tmp_path / "rec_nodes", 0).weights
    _assert_same_weights(read_record(tmp_path / "rec_nodes", 1).weights, node0, atol=0.0)
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
    example = load_example("lightning_distributed")
    args = example.parser.parse_args(TINY_MODEL)
    images = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    noise = torch.rand(6, 16, generator=torch.Generator().manual_seed(1))
    losses = []
    for state in (a, b):
        mae = example.build_mae(args, in_chans=1)
        mae.load_state_dict(_core_weights(state))
        with torch.no_grad():
            losses.append(mae(images, noise=noise).loss)
    torch.testing.assert_close(losses[0], losses[1], rtol=0.0, atol=1e-5)


# --- unreadable files ---------------------------------------------------------------------------
def test_unreadable_files_in_a_folder_are_replaced_and_counted(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every flavour trains on a folder holding a corrupt image: the file is replaced by the next
    image and counted. With DDP this also means no process stalls on an empty batch."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "3_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    args = [*TINY_MODEL, "--dataset", "folder", "--data-path", str(folder), "--batch-size", "4"]
    args += ["--epochs", "1", "--num-workers", "0"]
    ddp_args = [*args, "--accelerator", "cpu", "--batch-size", "2", "--output-dir", "ddp"]
    ddp = start("lightning_distributed", ddp_args, tmp_path / "rec_ddp", tmp_path,
                MASTER_PORT=str(_free_port()))  # fmt: skip
    try:
        losses = run_pytorch([*args, "--device", "cpu", "--output-dir", str(tmp_path / "pt")])
        assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
        assert "skipped files 1" in capsys.readouterr().out

        caplog.clear()
        argv = [*args, "--accelerator", "cpu", "--output-dir", str(tmp_path / "pl")]
        with caplog.at_level(logging.WARNING, logger="ssl_mae.training.callbacks"):
            record = run_lightning("lightning", argv, tmp_path / "rec_pl")
        assert len(record.losses) == 2 and all(torch.isfinite(torch.tensor(record.losses)))
        assert "skipped 1 unreadable image files" in caplog.text
        assert (tmp_path / "pl" / "last.ckpt").is_file()

        # 2 processes with 2 images per step: 8 files, 2 steps each.
        output, _ = ddp.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        stop([ddp])
    assert ddp.returncode == 0, output[-4000:]
    assert "skipped 1 unreadable image files" in output
    for rank in (0, 1):
        assert len(read_losses(tmp_path / "rec_ddp", rank)) == 2
    assert (tmp_path / "ddp" / "last.ckpt").is_file()
