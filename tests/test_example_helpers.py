"""The library helpers the example scripts share: training_images, training_loader (in
ssl_mae.training.data) and save_pretrain_checkpoint (in ssl_mae.training.checkpoints)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from ssl_mae.data import TensorImageDataset
from ssl_mae.export import load_trained_model
from ssl_mae.models.presets import build_model
from ssl_mae.training.callbacks import count_skipped_files
from ssl_mae.training.checkpoints import save_pretrain_checkpoint, verify_checksum
from ssl_mae.training.data import (
    ResidentDataLoader,
    ResumableDataLoader,
    batch_seed,
    training_images,
    training_loader,
)


# --- training_images ----------------------------------------------------------------------------
def test_training_images_are_uint8_resized_and_limited() -> None:
    images = training_images("fashion_mnist", None, img_size=14, limit=5)
    assert isinstance(images, Subset) and len(images) == 5
    image, label = images[4]
    assert image.dtype == torch.uint8 and image.shape == (1, 14, 14)
    assert isinstance(label, int)
    assert len(training_images("fashion_mnist", None, img_size=28)) == 60000  # 0: all of them


def test_an_unreadable_folder_file_is_replaced_and_counted(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png"
        )
    (tmp_path / "1_broken.png").write_bytes(b"not an image")
    images = training_images("folder", tmp_path, img_size=8)
    assert len(images) == 4
    batch = torch.stack([images[i][0] for i in range(4)])
    assert batch.shape == (4, 3, 8, 8) and batch.dtype == torch.uint8
    assert count_skipped_files([images]) == 1


def test_a_negative_limit_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="limit must be a non-negative int"):
        training_images("fashion_mnist", None, img_size=28, limit=-1)


# --- training_loader ----------------------------------------------------------------------------
def _dataset(n: int = 10) -> TensorImageDataset:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return TensorImageDataset(images, torch.arange(n), to_pil=False)


def _epoch(loader: ResumableDataLoader | ResidentDataLoader, epoch: int) -> list[list[int]]:
    loader.sampler.set_epoch(epoch)
    return [batch[1].tolist() for batch in loader]


def test_the_host_and_the_resident_loader_give_the_same_batches_and_seeds() -> None:
    args = (_dataset(), 3, 5, 0)  # dataset, batch size, seed, workers
    host = training_loader(*args, gpu_data=False, device="cpu")
    resident = training_loader(*args, gpu_data=True, device="cpu")
    assert isinstance(host, ResumableDataLoader) and isinstance(resident, ResidentDataLoader)
    assert len(host) == len(resident) == 3  # 10 images, full batches of 3
    for epoch in (0, 1):
        assert _epoch(host, epoch) == _epoch(resident, epoch)
    assert _epoch(host, 0) != _epoch(host, 1)  # a new permutation every epoch
    host.sampler.set_epoch(1)
    seeds = [batch[2] for batch in host]
    assert seeds == [batch_seed(5, 1, i) for i in range(3)]
    assert [batch[2] for batch in resident] == seeds


@pytest.mark.parametrize("gpu_data", [False, True])
def test_the_ranks_share_every_epoch_without_dropping_the_last_batch(gpu_data: bool) -> None:
    shares = [
        training_loader(_dataset(), 2, 0, 0, gpu_data, "cpu", drop_last=False,
                        num_replicas=2, rank=rank)
        for rank in (0, 1)
    ]  # fmt: skip
    single = training_loader(_dataset(), 10, 0, 0, gpu_data, "cpu")
    order = _epoch(single, 3)[0]
    rank0, rank1 = ([i for batch in _epoch(share, 3) for i in batch] for share in shares)
    assert len(shares[0]) == 3  # 5 images each, the last batch of 1 kept
    assert rank0 == order[0::2] and rank1 == order[1::2]  # row i of the epoch on rank i % 2


# --- save_pretrain_checkpoint -------------------------------------------------------------------
def test_a_saved_model_loads_as_the_preset_with_its_weights_and_normalisation(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    overrides = {"embed_dim": 32, "num_heads": 2, "in_chans": 1}
    core = build_model("mae_vit_micro_patch7", **overrides).masked_autoencoder
    path = tmp_path / "run" / "last.ckpt"
    normalize = {"mean": (0.25,), "std": (0.5,)}
    save_pretrain_checkpoint(path, core, "mae_vit_micro_patch7", overrides, normalize)
    assert verify_checksum(path)  # written atomically, with its checksum
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"] == {
        "preset": "mae_vit_micro_patch7",
        "model_overrides": overrides,
    }
    assert set(checkpoint["state_dict"]) == {f"model.{key}" for key in core.state_dict()}
    trained = load_trained_model(path)
    assert trained.preset == "mae_vit_micro_patch7"
    assert trained.preprocessing.normalize == {"mean": [0.25], "std": [0.5]}
    for key, value in core.state_dict().items():
        assert torch.equal(trained.core.state_dict()[key], value), key


def test_no_normalisation_is_recorded_as_none(tmp_path: Path) -> None:
    core = build_model("mae_vit_micro_patch7", embed_dim=32, num_heads=2).masked_autoencoder
    save_pretrain_checkpoint(tmp_path / "a.ckpt", core, "mae_vit_micro_patch7", {}, None)
    checkpoint = torch.load(tmp_path / "a.ckpt", weights_only=True)
    assert checkpoint["datamodule_hyper_parameters"] == {"run_config": {"normalize": None}}
