"""A data path without the host: small uint8 datasets kept on the device, augmented there."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from ssl_mae._validation import as_device, check_bool, check_positive_int
from ssl_mae.data.tensor_dataset import TensorImageDataset

__all__ = ["GPUResidentLoader"]


# --- GPU-resident data path ----------------------------------------------------------------------
class GPUResidentLoader:
    """Keeps a small uint8 image dataset on the device and yields augmented batches.

    For datasets that fit in device memory (Fashion-MNIST: 47 MB, CIFAR-10: 150 MB) the whole
    input pipeline becomes a few kernels per step: a random permutation per epoch, an
    ``index_select`` per batch and the batched crop/flip/normalise of
    :class:`~ssl_mae.transforms.BatchedMAEAugment`. Random numbers come from a generator on the
    device, so nothing waits for the host: no worker processes, no pinned-memory copies, no
    ``.item()``.

    Iterating gives one epoch of ``len(loader)`` batches; every epoch draws a new permutation
    and new augmentations from the loader's generator, so a seeded loader repeats its whole
    sequence of epochs.

    Args:
        images: uint8 tensor (N, C, H, W), or a :class:`~ssl_mae.data.TensorImageDataset`
            (its images are used; labels and transform are ignored).
        batch_size: Images per batch.
        augment: Module mapping a uint8 batch (B, C, H, W) and a ``generator`` keyword to the
            model input, e.g. ``BatchedMAEAugment(input_size=28, normalize=...)``. None yields
            the raw uint8 batches.
        device: Where the images live and batches are produced; default: the images' device.
        shuffle: Draw a new random order every epoch (else the stored order).
        drop_last: Drop the last, smaller batch (keeps shapes static, which ``torch.compile``
            and CUDA graphs like).
        seed: Seed of the loader's generator; None draws one from torch's default generator.
    """

    def __init__(
        self,
        images: Tensor | TensorImageDataset,
        batch_size: int,
        augment: nn.Module | None = None,
        device: torch.device | str | None = None,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int | None = None,
    ) -> None:
        if isinstance(images, TensorImageDataset):
            images = images.images
        if not isinstance(images, Tensor):
            raise TypeError(
                "images must be a uint8 tensor (N, C, H, W) or a TensorImageDataset, "
                f"got {type(images).__name__}"
            )
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] == 0:
            raise ValueError(
                "images must be a non-empty uint8 tensor (N, C, H, W), got dtype "
                f"{images.dtype} and shape {tuple(images.shape)}"
            )
        self.batch_size = check_positive_int(batch_size, "batch_size")
        check_bool(shuffle, "shuffle")
        check_bool(drop_last, "drop_last")
        if drop_last and self.batch_size > images.shape[0]:
            raise ValueError(
                f"batch_size ({batch_size}) is larger than the dataset ({images.shape[0]} images) "
                "and drop_last=True would yield no batch; lower batch_size or set drop_last=False"
            )
        if augment is not None and not callable(augment):
            raise TypeError(f"augment must be a callable module or None, got {augment!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.device = as_device(device) if device is not None else images.device
        # One copy at construction; afterwards every batch is produced on the device.
        self.images = images.to(self.device).contiguous()
        self.augment = augment.to(self.device) if isinstance(augment, nn.Module) else augment
        self.shuffle = shuffle
        self.drop_last = drop_last
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    @property
    def num_images(self) -> int:
        """Number of images N in the dataset."""
        return int(self.images.shape[0])

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_images // self.batch_size
        return math.ceil(self.num_images / self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        if self.shuffle:
            order = torch.randperm(self.num_images, device=self.device, generator=self.generator)
        else:
            order = torch.arange(self.num_images, device=self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = self.images.index_select(0, order[start : start + self.batch_size])
            if self.augment is None:
                yield batch
            else:
                yield self.augment(batch, generator=self.generator)
