"""Datasets for MAE pre-training and evaluation.

* ``load_fashion_mnist`` / ``FashionMNISTDataset``: official IDX files (Debian package or any
  directory), torchvision download as fallback.
* ``ImageFolderDataset`` + ``collate_skip_none``: any folder of images, robust to bad files.
* ``TensorImageDataset``: a uint8 tensor ``(N, C, H, W)`` held in memory (CPU or GPU);
  ``GPUResidentLoader`` serves such a tensor from the device with on-device augmentation.
* ``normalize_images``: stored uint8 images to model inputs (scale, resize, normalise).
* ``build_dataset(name, ...)``: one factory for all of them and CIFAR-10/100, STL-10;
  ``dataset_channels(name)`` gives the model's ``in_chans``.
"""

from ssl_mae.data.factory import (
    DATASETS,
    DatasetInfo,
    build_dataset,
    dataset_channels,
    dataset_info,
    unwrap_subset,
)
from ssl_mae.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FashionMNISTDataset,
    find_fashion_mnist_files,
    load_fashion_mnist,
    read_fashion_mnist_files,
    read_idx,
)
from ssl_mae.data.gpu_loader import GPUResidentLoader
from ssl_mae.data.image_folder import (
    IMAGE_EXTENSIONS,
    ImageFolderDataset,
    collate_skip_none,
    load_image,
)
from ssl_mae.data.image_modes import IMAGE_MODES, convert_image_mode, pil_to_tensor
from ssl_mae.data.locations import (
    DATA_ROOT_ENV,
    DEBIAN_FASHION_MNIST_DIR,
    FASHION_MNIST_ENV,
    default_data_root,
)
from ssl_mae.data.normalize import normalize_images
from ssl_mae.data.tensor_dataset import UNLABELED, TensorImageDataset, tensor_to_pil
from ssl_mae.data.torchvision_datasets import STL10_SPLITS, build_torchvision_dataset

__all__ = [
    "DATASETS",
    "DATA_ROOT_ENV",
    "DEBIAN_FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_ENV",
    "IMAGE_EXTENSIONS",
    "IMAGE_MODES",
    "STL10_SPLITS",
    "UNLABELED",
    "DatasetInfo",
    "FashionMNISTDataset",
    "GPUResidentLoader",
    "ImageFolderDataset",
    "TensorImageDataset",
    "build_dataset",
    "build_torchvision_dataset",
    "collate_skip_none",
    "convert_image_mode",
    "dataset_channels",
    "dataset_info",
    "default_data_root",
    "find_fashion_mnist_files",
    "load_fashion_mnist",
    "load_image",
    "normalize_images",
    "pil_to_tensor",
    "read_fashion_mnist_files",
    "read_idx",
    "tensor_to_pil",
    "unwrap_subset",
]
