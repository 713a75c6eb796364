"""Training plumbing: resumable data order, per-batch seeds, atomic checkpoints, NaN guard,
skipped-file counts and the kNN report."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from ssl_mae.data import ImageFolderDataset, TensorImageDataset, normalize_images
from ssl_mae.evaluation import knn_evaluate
from ssl_mae.training import (
    AtomicCheckpointIO,
    NonFiniteLossError,
    NonFiniteLossGuard,
    PretrainDataModule,
    ResumableDataLoader,
    ResumableSampler,
    SkippedFilesReport,
    batch_seed,
    count_skipped_files,
    save_atomic,
    write_json_atomic,
)
from ssl_mae.training.checkpoints import verify_checksum


def _tensor_dataset(n: int = 20, size: int = 8) -> TensorImageDataset:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, size, size)
    return TensorImageDataset(images.contiguous(), torch.arange(n) % 3)


# --- seeds and order ---------------------------------------------------------------------------
def test_batch_seed_depends_on_every_coordinate() -> None:
    base = batch_seed(0, 1, 2, 0)
    assert base == batch_seed(0, 1, 2, 0)
    others = {batch_seed(1, 1, 2, 0), batch_seed(0, 2, 2, 0), batch_seed(0, 1, 3, 0)}
    others.add(batch_seed(0, 1, 2, 1))
    assert base not in others and len(others) == 4
    assert all(0 <= s < 2**63 for s in others | {base})
    with pytest.raises(TypeError, match="epoch"):
        batch_seed(0, 1.0, 2)  # type: ignore[arg-type]


def test_sampler_order_is_a_function_of_seed_and_epoch() -> None:
    sampler = ResumableSampler(10, shuffle=True, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(10))
    assert list(ResumableSampler(10, shuffle=True, seed=3)) == first
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(second) == list(range(10)) and second != first
    sampler.start_index = 4
    assert list(sampler) == second[4:]
    assert list(sampler) == second  # start_index applies to one iteration only
    assert len(sampler) == 10
    assert list(ResumableSampler(4, shuffle=False)) == [0, 1, 2, 3]


def test_sampler_shards_cover_the_data_across_ranks() -> None:
    shards = [list(ResumableSampler(10, seed=1, num_replicas=3, rank=r)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)  # padded to 12
    assert set().union(*map(set, shards)) == set(range(10))
    with pytest.raises(ValueError, match="rank"):
        ResumableSampler(10, num_replicas=2, rank=2)


def _drain(loader: ResumableDataLoader) -> list[tuple[list[int], int]]:
    return [(batch[1].tolist(), batch[2]) for batch in loader]


def test_loader_resumes_mid_epoch_with_identical_batches() -> None:
    data = TensorImageDataset(torch.zeros(20, 1, 2, 2, dtype=torch.uint8), torch.arange(20))
    reference = ResumableDataLoader(data, 4, shuffle=True, seed=5, drop_last=True)
    reference.sampler.set_epoch(2)
    expected = _drain(reference)
    assert len(expected) == 5 and len(reference) == 5

    interrupted = ResumableDataLoader(data, 4, shuffle=True, seed=5, drop_last=True)
    interrupted.sampler.set_epoch(2)
    iterator = iter(interrupted)
    seen = [next(iterator) for _ in range(2)]
    state = interrupted.state_dict()
    assert state == {"epoch": 2, "batches_done": 2}
    assert [(b[1].tolist(), b[2]) for b in seen] == expected[:2]

    resumed = ResumableDataLoader(data, 4, shuffle=True, seed=5, drop_last=True)
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(2)
    assert _drain(resumed) == expected[2:]
    assert len(resumed) == 5  # Lightning needs the full epoch length
    assert _drain(resumed) == expected  # the skip applies once


def test_loader_ignores_a_saved_position_of_another_epoch() -> None:
    data = _tensor_dataset()
    loader = ResumableDataLoader(data, 5, seed=0)
    loader.load_state_dict({"epoch": 0, "batches_done": 4})  # saved at the end of epoch 0
    loader.sampler.set_epoch(1)
    reference = ResumableDataLoader(data, 5, seed=0)
    reference.sampler.set_epoch(1)
    assert _drain(loader) == _drain(reference)
    with pytest.raises(TypeError, match="sampler"):
        ResumableDataLoader(data, 5, sampler=None)


# --- batch preparation ---------------------------------------------------------------------------
def test_normalize_images_scales_resizes_and_normalises() -> None:
    images = torch.full((2, 1, 4, 4), 255, dtype=torch.uint8)
    out = normalize_images(images, {"mean": [0.5], "std": [0.25]}, (4, 4))
    assert out.dtype == torch.float32
    assert torch.allclose(out, torch.full_like(out, 2.0))
    resized = normalize_images(images, None, (8, 6))
    assert resized.shape == (2, 1, 8, 6) and torch.allclose(resized, torch.ones_like(resized))


class _FakeTrainer:
    def __init__(self, training: bool) -> None:
        self.training = training
        self.world_size = 1
        self.global_rank = 0


def test_datamodule_augments_training_batches_reproducibly() -> None:
    data = _tensor_dataset(8, 8)
    module = PretrainDataModule(data, data, 4, (8, 8), {"mean": [0.5], "std": [0.5]}, seed=1)
    module.trainer = _FakeTrainer(True)  # type: ignore[assignment]
    batch = next(iter(module.train_dataloader()))
    images = torch.rand(4, 1, 8, 8)
    first = module.on_after_batch_transfer([images, batch[1], 7], 0)
    after_first = torch.rand(3)
    second = module.on_after_batch_transfer([images, batch[1], 7], 0)
    # Same seed: same augmentation and the same global random stream afterwards (masking).
    assert torch.equal(first[0], second[0]) and torch.equal(after_first, torch.rand(3))
    other = module.on_after_batch_transfer([images, batch[1], 8], 0)
    assert not torch.equal(first[0], other[0])
    assert len(first) == 2 and first[0].shape == (4, 1, 8, 8)

    module.trainer = _FakeTrainer(False)  # type: ignore[assignment]
    uint8 = torch.full((2, 1, 8, 8), 255, dtype=torch.uint8)
    evaluated = module.on_after_batch_transfer([uint8, torch.zeros(2), 0], 0)
    assert torch.allclose(evaluated[0], torch.ones(2, 1, 8, 8))


def test_datamodule_rejects_batches_larger_than_the_data() -> None:
    with pytest.raises(ValueError, match="batch_size must be at most the number of training"):
        PretrainDataModule(_tensor_dataset(4), None, 8, (8, 8), None)


# --- files ---------------------------------------------------------------------------------------
class _Unpicklable:
    def __reduce__(self) -> Any:
        raise pickle.PicklingError("boom")


def test_atomic_save_keeps_the_previous_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    save_atomic({"step": 1}, target)
    with pytest.raises(pickle.PicklingError):
        save_atomic({"step": 2, "bad": _Unpicklable()}, target)
    assert torch.load(target, weights_only=True) == {"step": 1}
    # No temp file left; the checksum beside it still describes the first file.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "last.ckpt.sha256"]
    assert verify_checksum(target)
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 3}, target)
    assert io.load_checkpoint(target) == {"step": 3}


def test_write_json_atomic(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "metrics.json"
    write_json_atomic({"b": 1, "a": [1.5]}, path)
    assert json.loads(path.read_text()) == {"a": [1.5], "b": 1}


# --- NaN guard -----------------------------------------------------------------------------------
class _NaNAtStep(pl.LightningModule):
    """A linear model whose loss becomes NaN at a given global step."""

    def __init__(self, bad_step: int) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.bad_step = bad_step

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = self.layer(batch[0]).pow(2).mean()
        if self.global_step == self.bad_step:
            loss = loss * float("nan")
        return loss

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_nan_guard_stops_before_the_bad_step_and_keeps_the_last_checkpoint(
    tmp_path: Path,
) -> None:
    data = torch.utils.data.TensorDataset(torch.randn(32, 4))
    model = _NaNAtStep(bad_step=3)
    trainer = pl.Trainer(
        max_epochs=2,
        callbacks=[
            ModelCheckpoint(tmp_path, every_n_train_steps=1, save_top_k=0, save_last=True),
            NonFiniteLossGuard(),
        ],
        plugins=[AtomicCheckpointIO()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    weights_before = None

    class Snapshot(pl.Callback):
        def on_train_batch_start(self, *args: Any) -> None:
            nonlocal weights_before
            weights_before = {k: v.clone() for k, v in model.state_dict().items()}

    trainer.callbacks.append(Snapshot())  # type: ignore[attr-defined]
    with pytest.raises(NonFiniteLossError, match=r"nan at step 3 .*last good checkpoint"):
        trainer.fit(model, DataLoader(data, batch_size=4))
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())
    # The bad step changed nothing: the weights are those from before it.
    assert weights_before is not None
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights_before[key])
        assert torch.equal(value, checkpoint["state_dict"][key])


# --- skipped files -------------------------------------------------------------------------------
def test_skipped_files_are_counted_through_subsets(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (6, 6), (10, 20, 30)).save(tmp_path / name / "good.png")
    (tmp_path / "a" / "bad.png").write_bytes(b"not a png")
    (tmp_path / "b" / "empty.jpg").write_bytes(b"")
    folder = ImageFolderDataset(tmp_path, on_error="replace")
    report = SkippedFilesReport([Subset(folder, range(4)), _tensor_dataset(), None])
    assert report.num_skipped == 0
    for i in range(len(folder)):
        folder[i]
    assert report.num_skipped == 2
    assert count_skipped_files([folder, folder]) == 4
    assert count_skipped_files([_tensor_dataset()]) == 0


# --- kNN -----------------------------------------------------------------------------------------
class _FlattenEncoder(nn.Module):
    def forward(self, images: Tensor) -> Tensor:
        return images.flatten(1)


def test_knn_evaluate_on_separable_data() -> None:
    torch.manual_seed(0)
    labels = torch.arange(60) % 3
    # Each class lights up its own third of the image: features are perfectly separable.
    images = torch.zeros(60, 1, 6, 6, dtype=torch.uint8)
    for c in range(3):
        images[labels == c, :, 2 * c : 2 * c + 2] = 200
    images = images + torch.randint(0, 20, images.shape, dtype=torch.uint8)
    train = TensorImageDataset(images[:45], labels[:45])
    test = TensorImageDataset(images[45:], labels[45:])
    result = knn_evaluate(
        _FlattenEncoder(), train, test, None, (6, 6), num_classes=3, k=500, temperature=0.1
    )
    assert result["top1"] == 100.0 and result["top5"] == 100.0
    assert result["k"] == 45  # clamped to the bank size
    assert result["num_train"] == 45 and result["num_test"] == 15
    shuffled = TensorImageDataset(images[:45], labels[torch.randperm(45)])
    worse = knn_evaluate(_FlattenEncoder(), shuffled, test, None, (6, 6), num_classes=3, k=5)
    assert worse["top1"] < 100.0


def test_knn_evaluate_rejects_unlabelled_images() -> None:
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    unlabelled = TensorImageDataset(images)
    with pytest.raises(ValueError, match="labelled"):
        knn_evaluate(_FlattenEncoder(), unlabelled, unlabelled, None, (2, 2), num_classes=2)


@pytest.mark.parametrize("name", ["train.tmp"])
def test_atomic_save_creates_missing_folders(tmp_path: Path, name: str) -> None:
    target = tmp_path / "deep" / "dir" / name
    save_atomic({"x": torch.ones(2)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["x"], torch.ones(2))
    assert sorted(os.listdir(target.parent)) == [name, f"{name}.sha256"]
