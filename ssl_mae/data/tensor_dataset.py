"""A dataset over an in-memory uint8 image tensor, e.g. a small dataset kept resident on a GPU."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

#: Label given to images that have none (flat image folders, unlabeled tensors).
UNLABELED = -1


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """Convert one uint8 image ``(C, H, W)`` with C in {1, 3, 4} to a PIL image.

    Args:
        image: uint8 tensor ``(C, H, W)`` on any device.

    Returns:
        A PIL image of mode ``"L"`` (C=1), ``"RGB"`` (C=3) or ``"RGBA"`` (C=4).
    """
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3, 4):
        raise ValueError(
            "image must be a uint8 tensor (C, H, W) with C in {1, 3, 4}, got dtype "
            f"{image.dtype} and shape {tuple(image.shape)}"
        )
    array = image.detach().cpu().permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        array = array[:, :, 0]
    return Image.fromarray(array)


class TensorImageDataset(Dataset[tuple[Any, int]]):
    """Images held in one uint8 tensor ``(N, C, H, W)`` with optional integer labels.

    ``dataset[i]`` is ``(image, label)``. Without a transform, ``image`` is the stored uint8
    tensor ``(C, H, W)`` (a view, on the images' device). With a transform, the transform
    receives a PIL image (``to_pil=True``; C must be 1, 3 or 4) or the uint8 tensor itself
    (``to_pil=False``, e.g. for tensor/GPU transforms). ``label`` is a Python int; labels stay on
    the CPU so that reading one does not synchronise with a GPU.

    Args:
        images: uint8 tensor ``(N, C, H, W)``, on any device.
        labels: Integer tensor ``(N,)``; ``None`` gives every image the label ``UNLABELED`` (-1).
        transform: Optional callable applied to each image.
        to_pil: Convert to PIL before calling ``transform``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        transform: Callable[[Any], Any] | None = None,
        *,
        to_pil: bool = True,
    ) -> None:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                "images must be a uint8 tensor (N, C, H, W), got dtype "
                f"{images.dtype} and shape {tuple(images.shape)}"
            )
        if transform is not None and to_pil and images.shape[1] not in (1, 3, 4):
            raise ValueError(
                f"images have {images.shape[1]} channels; a PIL transform needs 1, 3 or 4 "
                "(pass to_pil=False to give the transform tensors)"
            )
        if labels is None:
            labels = torch.full((images.shape[0],), UNLABELED, dtype=torch.int64)
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"labels must be a torch.Tensor or None, got {type(labels).__name__}")
        if labels.shape != images.shape[:1] or labels.is_floating_point() or labels.is_complex():
            raise ValueError(
                f"labels must be an integer tensor of shape ({images.shape[0]},) to match images, "
                f"got dtype {labels.dtype} and shape {tuple(labels.shape)}"
            )
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        self.images = images
        self.labels = labels.to(device="cpu", dtype=torch.int64)
        self.transform = transform
        self.to_pil = to_pil

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.images[index]
        label = int(self.labels[index])
        if self.transform is None:
            return image, label
        if self.to_pil:
            return self.transform(tensor_to_pil(image)), label
        return self.transform(image), label

    @property
    def num_channels(self) -> int:
        """Number of image channels C."""
        return int(self.images.shape[1])

    def to(self, device: torch.device | str) -> TensorImageDataset:
        """Move the images to ``device`` (labels stay on the CPU) and return ``self``.

        Args:
            device: Target device, e.g. ``"cuda"``.
        """
        self.images = self.images.to(device)
        return self
