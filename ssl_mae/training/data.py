"""Pre-training data that resumes exactly: seeded batches, a loader that knows its position.

* :class:`ResumableSampler` / :class:`ResumableDataLoader`: the sample order is a pure function
  of ``(seed, epoch, rank)`` and the loader remembers how many batches of the current epoch it
  handed out. Lightning stores that position in every checkpoint (the loader implements
  ``state_dict``/``load_state_dict``), so a run resumed from a mid-epoch checkpoint continues
  with exactly the batches it would have seen.
* :func:`training_images` / :func:`training_loader`: the uint8 training set of a named dataset
  and its resumable (or device-resident) loader, as the example scripts build them.
* :class:`PretrainDataModule`: loaders of uint8 images, augmentation on the device
  (:class:`~ssl_mae.transforms.BatchedMAEAugment`) and per-batch seeding. Every training batch
  carries a seed derived from ``(seed, rank, epoch, batch index)``; the augmentation and the
  model's random masking draw from generators seeded with it, so same seed means the same loss
  curve, and resuming after a crash (even ``SIGKILL``) reaches bit-identical weights on CPU.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torchvision.transforms import v2

from ssl_mae._validation import check_positive_int
from ssl_mae.data.gpu_loader import GPUResidentLoader
from ssl_mae.data.normalize import normalize_images
from ssl_mae.data.tensor_dataset import TensorImageDataset
from ssl_mae.transforms import BatchedMAEAugment

__all__ = [
    "PretrainDataModule",
    "ResidentDataLoader",
    "ResumableDataLoader",
    "ResumableSampler",
    "batch_seed",
    "decode_images",
    "training_images",
    "training_loader",
]


def batch_seed(seed: int, epoch: int, batch_index: int, rank: int = 0) -> int:
    """A 63-bit seed for one training batch, a pure function of its position in the run.

    Hashing (rather than e.g. ``seed + batch_index``) keeps the streams of neighbouring seeds,
    epochs and ranks unrelated.

    Args:
        seed: Run seed.
        epoch: Epoch of the batch.
        batch_index: Index of the batch within its epoch.
        rank: Process rank (DDP), so that ranks draw different masks.

    Returns:
        An int in ``[0, 2**63)``.
    """
    for name, value in (("seed", seed), ("epoch", epoch), ("batch_index", batch_index)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
    digest = hashlib.blake2b(f"{seed}/{rank}/{epoch}/{batch_index}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") & (2**63 - 1)


class ResumableSampler(Sampler[int]):
    """Sample order that is a function of ``(seed, epoch)`` only, and can start mid-epoch.

    With ``shuffle=True`` every epoch is a fresh permutation drawn from a generator seeded with
    ``seed + epoch`` (Lightning calls :meth:`set_epoch` before each epoch). With several
    processes (DDP) the permutation is padded to a multiple of ``num_replicas`` by repeating its
    start, and rank ``r`` takes every ``num_replicas``-th index starting at ``r``, as
    ``DistributedSampler`` does.

    ``start_index`` skips the first indices of this rank's share for the next iteration only;
    ``len()`` always reports the full share, which is what Lightning expects of a resumed epoch.

    Args:
        num_samples: Size of the dataset.
        shuffle: Random order (True) or ``0, 1, 2, ...`` (False).
        seed: Seed of the permutations.
        num_replicas: Number of processes sharing the data.
        rank: This process's rank in ``[0, num_replicas)``.
    """

    def __init__(
        self,
        num_samples: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        check_positive_int(num_samples, "num_samples")
        check_positive_int(num_replicas, "num_replicas")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be an int in [0, {num_replicas}), got {rank!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.start_index = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the permutation of ``epoch`` for the next iteration."""
        self.epoch = int(epoch)

    def indices(self) -> list[int]:
        """This rank's full share of the current epoch, in order."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = list(range(self.num_samples))
        total = math.ceil(self.num_samples / self.num_replicas) * self.num_replicas
        order += order[: total - len(order)]
        return order[self.rank : total : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        start, self.start_index = self.start_index, 0
        return iter(self.indices()[start:])

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.num_replicas)


class _Position:
    """The position of a resumable loader in its epoch (shared by the host and device loaders).

    ``state_dict`` gives ``{"epoch": e, "batches_done": n}``; after ``load_state_dict`` the
    next iteration of epoch ``e`` skips its first ``n`` batches.
    """

    _epoch: int = 0
    _batches_done: int = 0
    _resume: tuple[int, int] | None = None

    def _start_epoch(self, epoch: int) -> int:
        """Begins iterating ``epoch``; returns the number of batches to skip."""
        skip = 0
        if self._resume is not None and self._resume[0] == epoch:
            skip = self._resume[1]
        self._resume = None
        self._epoch, self._batches_done = epoch, skip
        return skip

    def state_dict(self) -> dict[str, int]:
        """``{"epoch": e, "batches_done": n}``: the position in the current epoch."""
        return {"epoch": self._epoch, "batches_done": self._batches_done}

    def load_state_dict(self, state_dict: Mapping[str, int]) -> None:
        """Makes the next iteration of epoch ``state_dict["epoch"]`` skip the batches done."""
        self._resume = (int(state_dict["epoch"]), int(state_dict["batches_done"]))


class ResumableDataLoader(_Position, DataLoader[Any]):
    """A ``DataLoader`` that knows its position in the epoch and adds a seed to every batch.

    Batches are ``[*collated, seed]`` where ``seed = batch_seed(seed, epoch, i, rank)`` for the
    ``i``-th batch of the epoch. :meth:`state_dict` records the epoch and the number of batches
    handed out; Lightning saves it in checkpoints and calls :meth:`load_state_dict` before the
    resumed epoch starts, and the next iteration then skips exactly those batches (through the
    sampler, so skipped images are not even loaded). This needs a loader without Lightning's
    prefetching, which holds for every loader with a length.

    Args:
        dataset: Map-style dataset.
        batch_size: Images per batch.
        shuffle: Random order per epoch.
        seed: Run seed (order and batch seeds).
        drop_last: Drop the last incomplete batch.
        num_replicas: Number of processes (DDP).
        rank: This process's rank.
        **kwargs: Other ``DataLoader`` arguments (``num_workers``, ``collate_fn``,
            ``pin_memory``, ...); ``sampler``/``batch_sampler``/``shuffle`` are not allowed.
    """

    sampler: ResumableSampler

    def __init__(
        self,
        dataset: Dataset[Any],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
        **kwargs: Any,
    ) -> None:
        for name in ("sampler", "batch_sampler", "shuffle"):
            if name in kwargs:
                raise TypeError(f"ResumableDataLoader chooses its own sampler; got {name}=")
        check_positive_int(batch_size, "batch_size")
        sampler = ResumableSampler(len(dataset), shuffle, seed, num_replicas, rank)  # type: ignore[arg-type]
        super().__init__(
            dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **kwargs
        )
        self.seed = seed
        self.rank = rank

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]  # a generator, not a _BaseDataLoaderIter
        # A generator: nothing runs until the first batch is requested, i.e. after Lightning has
        # called set_epoch and load_state_dict.
        epoch = self.sampler.epoch
        skip = self._start_epoch(epoch)
        self.sampler.start_index = skip * int(self.batch_size or 1)
        for batch in super().__iter__():
            seed = batch_seed(self.seed, epoch, self._batches_done, self.rank)
            self._batches_done += 1
            yield [*batch, seed] if isinstance(batch, (list, tuple)) else [batch, seed]


def decode_images(dataset: Dataset[Any], num_workers: int = 0) -> tuple[Tensor, Tensor]:
    """Reads every sample of a dataset once: its images and labels as two tensors.

    Args:
        dataset: Map-style dataset of ``(uint8 image (C, H, W), label)`` samples of one size.
        num_workers: DataLoader workers for decoding (files of an image folder).

    Returns:
        ``images`` uint8 (N, C, H, W) and ``labels`` int64 (N,), on the CPU.
    """
    if isinstance(dataset, TensorImageDataset) and dataset.transform is None:
        return dataset.images.cpu(), dataset.labels.cpu()
    loader: DataLoader[Any] = DataLoader(dataset, batch_size=256, num_workers=num_workers)
    images, labels = [], []
    for batch in loader:
        images.append(batch[0])
        labels.append(torch.as_tensor(batch[1]))
    return torch.cat(images), torch.cat(labels).long()


class ResidentDataLoader(_Position, GPUResidentLoader):
    """:class:`ResumableDataLoader`'s batches, gathered from images kept on the device.

    The order (:class:`ResumableSampler`), the per-batch seeds and the position in the epoch are
    those of :class:`ResumableDataLoader` with the same arguments, so with the same augmentation
    the model sees the same batches bit for bit; but each batch is one ``index_select`` on the
    device instead of collating samples on the host and copying them. The epoch's order is
    copied to the device once, when the epoch starts; no step reads a device value.

    Args:
        images: uint8 (N, C, H, W), e.g. from :func:`decode_images`.
        labels: int64 (N,).
        batch_size: Images per batch.
        device: Where the images are kept and batches produced.
        shuffle: Random order per epoch.
        seed: Run seed (order and batch seeds).
        drop_last: Drop the last incomplete batch (static shapes for ``torch.compile``).
        num_replicas: Number of processes (DDP); each keeps all images, takes its share.
        rank: This process's rank.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        *,
        device: torch.device | str,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__(images, batch_size, device=device, shuffle=shuffle, seed=seed)
        if not isinstance(labels, Tensor) or labels.shape != images.shape[:1]:
            raise ValueError(
                f"labels must be a tensor of shape ({images.shape[0]},), got "
                f"{getattr(labels, 'shape', type(labels).__name__)}"
            )
        self.labels = labels.to(self.device)
        self.drop_last = drop_last
        self.sampler = ResumableSampler(self.num_images, shuffle, seed, num_replicas, rank)
        self.seed, self.rank = seed, rank

    def __len__(self) -> int:
        share = len(self.sampler)
        if self.drop_last:
            return share // self.batch_size
        return math.ceil(share / self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        epoch = self.sampler.epoch
        skip = self._start_epoch(epoch)
        order = torch.as_tensor(self.sampler.indices()).to(self.device, non_blocking=True)
        for index in range(skip, len(self)):
            rows = order[index * self.batch_size : (index + 1) * self.batch_size]
            seed = batch_seed(self.seed, epoch, index, self.rank)
            self._batches_done = index + 1
            yield [self.images.index_select(0, rows), self.labels.index_select(0, rows), seed]


class _Order(TypedDict):
    """What fixes a training loader's batches and their seeds: :class:`ResumableDataLoader` and
    :class:`ResidentDataLoader` given the same order yield the same batches."""

    shuffle: bool
    seed: int
    drop_last: bool
    num_replicas: int
    rank: int


def training_images(
    dataset: str, root: str | Path | None, img_size: int, limit: int = 0
) -> Subset[Any]:
    """The first ``limit`` training images of a named dataset, as uint8 tensors of one size.

    An unreadable file in an image folder is replaced by the next readable image (every batch
    stays full, which DDP needs) and counted in the folder dataset's ``num_skipped``, which
    :func:`~ssl_mae.training.callbacks.count_skipped_files` reads through the ``Subset``.

    Args:
        dataset: A :func:`~ssl_mae.data.build_dataset` name (``"fashion_mnist"``, ``"folder"``...).
        root: Its directory (None: the dataset's default location; required for a folder).
        img_size: Side every image is resized to.
        limit: Number of images to keep from the start of the dataset; 0 keeps all.

    Returns:
        A ``Subset`` yielding ``(uint8 image (C, img_size, img_size), label)``.
    """
    from ssl_mae.data import build_dataset

    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be a non-negative int (0: all images), got {limit!r}")
    to_tensor = v2.Compose([v2.PILToTensor(), v2.Resize((img_size, img_size))])
    folder: dict[str, Any] = {"on_error": "replace"} if dataset == "folder" else {}
    images = build_dataset(dataset, root=root, transform=to_tensor, **folder)
    return Subset(images, range(len(images))[: limit or None])  # type: ignore[arg-type]


def training_loader(
    dataset: Dataset[Any],
    batch_size: int,
    seed: int,
    num_workers: int,
    gpu_data: bool,
    device: torch.device | str,
    *,
    drop_last: bool = True,
    num_replicas: int = 1,
    rank: int = 0,
) -> ResumableDataLoader | ResidentDataLoader:
    """A seeded, resumable training loader: on the host, or resident on ``device``.

    Both yield ``[uint8 images (B, C, H, W), labels (B,), batch seed]`` in the same order (each
    epoch a permutation seeded by ``(seed, epoch)``, this rank's share of it) with the same seeds.

    Args:
        dataset: Map-style dataset of ``(uint8 image (C, H, W), label)``.
        batch_size: Images per batch (per process).
        seed: Run seed (order and batch seeds).
        num_workers: DataLoader workers (for the host loader, and for decoding the resident one).
        gpu_data: Decode the images once onto ``device`` (:class:`ResidentDataLoader`) instead of
            loading every batch on the host (:class:`ResumableDataLoader`).
        device: Where resident images are kept; unused by the host loader.
        drop_last: Drop the last incomplete batch of each epoch.
        num_replicas: Number of processes sharing every epoch (DDP).
        rank: This process's rank.
    """
    order = _Order(
        shuffle=True, seed=seed, drop_last=drop_last, num_replicas=num_replicas, rank=rank
    )
    if gpu_data:
        return ResidentDataLoader(
            *decode_images(dataset, num_workers), batch_size, device=device, **order
        )
    return ResumableDataLoader(dataset, batch_size, **order, num_workers=num_workers)


class PretrainDataModule(pl.LightningDataModule):
    """Pre-training data: resumable, seeded training batches and fixed validation batches.

    The datasets yield ``(uint8 image (C, H, W), label)``; all images of a dataset must have the
    same size (resize in the dataset's transform otherwise). Training batches are augmented on
    the device with :class:`~ssl_mae.transforms.BatchedMAEAugment` (random resized crop + flip +
    normalise); validation batches are only resized and normalised.

    Before a training batch reaches ``training_step``, the global torch generators are seeded
    with the batch's seed: the MAE draws its masks from them, so masks depend on the batch's
    position in the run and not on what ran before (validation, a restart, a checkpoint).

    Args:
        train_set: Training dataset.
        val_set: Validation dataset or None (no validation).
        batch_size: Images per device per step.
        img_size: Model input ``(height, width)``.
        normalize: Per-channel ``{"mean", "std"}`` or None.
        min_scale: Smallest crop area fraction of the augmentation.
        seed: Run seed.
        num_workers: DataLoader workers.
        run_config: Plain-typed description of the run, stored in checkpoints as the
            datamodule's hyperparameters (``ssl-mae evaluate``/``reconstruct`` read it back).
        gpu_data: Decode the training images once and keep them on the training device
            (:class:`ResidentDataLoader`): the same batches, without host work per step.
    """

    def __init__(
        self,
        train_set: Dataset[Any],
        val_set: Dataset[Any] | None,
        batch_size: int,
        img_size: tuple[int, int],
        normalize: Mapping[str, Sequence[float]] | None,
        min_scale: float = 0.35,
        seed: int = 0,
        num_workers: int = 0,
        run_config: Mapping[str, Any] | None = None,
        gpu_data: bool = False,
    ) -> None:
        super().__init__()
        # Checkpoints record the input normalisation, so that evaluation and export feed the
        # encoder what it was trained on (ssl_mae.export.load_trained_model reads it).
        recorded = None if normalize is None else {k: list(v) for k, v in normalize.items()}
        self.save_hyperparameters({"run_config": {"normalize": recorded, **(run_config or {})}})
        check_positive_int(batch_size, "batch_size")
        train_size = len(train_set)  # type: ignore[arg-type]
        if batch_size > train_size:
            raise ValueError(
                f"batch_size must be at most the number of training images ({train_size}), "
                f"got {batch_size}"
            )
        self.train_set = train_set
        self.val_set = val_set
        self.batch_size = batch_size
        self.img_size = img_size
        self.normalize = None if normalize is None else {k: list(v) for k, v in normalize.items()}
        self.seed = seed
        self.num_workers = num_workers
        self.gpu_data = gpu_data
        self._decoded: tuple[Tensor, Tensor] | None = None
        self._train_loader: ResumableDataLoader | ResidentDataLoader | None = None
        self._pending_position: dict[str, int] | None = None
        self.augment = BatchedMAEAugment(
            input_size=img_size,
            min_scale=min_scale,
            normalize=self.normalize,
            interpolation="bilinear",
        )

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _order(self, train: bool) -> _Order:
        """Training batches: shuffled, full; validation batches: in order, all images."""
        world_size, rank = self._world()
        return _Order(
            shuffle=train, seed=self.seed, drop_last=train, num_replicas=world_size, rank=rank
        )

    def _loader(self, dataset: Dataset[Any], train: bool) -> ResumableDataLoader:
        return ResumableDataLoader(
            dataset,
            self.batch_size,
            **self._order(train),
            num_workers=self.num_workers,
            persistent_workers=train and self.num_workers > 0,
        )

    def train_dataloader(self) -> ResumableDataLoader | ResidentDataLoader:
        if not self.gpu_data:
            self._train_loader = self._loader(self.train_set, train=True)
        else:
            if self._decoded is None:  # decoded once per run, kept for every epoch
                self._decoded = decode_images(self.train_set, self.num_workers)
            trainer = self.trainer
            device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
            self._train_loader = ResidentDataLoader(
                *self._decoded, self.batch_size, device=device, **self._order(train=True)
            )
        if self._pending_position is not None:
            self._train_loader.load_state_dict(self._pending_position)
            self._pending_position = None
        return self._train_loader

    def state_dict(self) -> dict[str, Any]:
        """The training loader's position, saved in every checkpoint."""
        if self._train_loader is None:
            return {}
        return {"train_position": self._train_loader.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores the training loader's position (before or after the loader exists).

        Lightning also stores the position of stateful loaders itself, but skips restoring it
        when the loader was created before the checkpoint was loaded, which is what happens
        when ``configure_optimizers`` asks for ``trainer.estimated_stepping_batches`` (the MAE
        does, to size its lr schedule). Restoring it here covers that case.
        """
        position = state_dict.get("train_position")
        if position is None:
            return
        if self._train_loader is not None:
            self._train_loader.load_state_dict(position)
        else:
            self._pending_position = dict(position)

    def val_dataloader(self) -> ResumableDataLoader | list[Any]:
        if self.val_set is None:
            return []
        return self._loader(self.val_set, train=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augments (training) or normalises (validation) a batch already on the device.

        Args:
            batch: ``[images (B, C, H, W) uint8, labels (B,), seed]``.
            dataloader_idx: Unused.

        Returns:
            ``[images (B, C, h, w) float, labels (B,)]``.
        """
        if batch is None:
            return None
        images, labels = batch[0], batch[1]
        trainer = self.trainer
        if trainer is not None and trainer.training:
            seed = int(batch[2])
            torch.manual_seed(seed)  # the model's masking draws from the global generators
            generator = torch.Generator(device=images.device).manual_seed(seed)
            self.augment.to(images.device)
            return [self.augment(images, generator=generator), labels]
        return [normalize_images(images, self.normalize, self.img_size), labels]
