"""Every default of the command line that is derived from the preset or the data, in one place.

* :data:`PRESET_DEFAULTS`: the recipe per preset (learning rate per 256 images, smallest crop
  area, what it is for). The big presets take the official MAE recipe (``base_lr`` 1.5e-4,
  ``min_scale`` 0.2); the small ones a value measured on Fashion-MNIST.
* Functions that derive a default from the data: DataLoader workers from the CPU count, the batch
  size from the number of training images, the image channels and normalisation from the dataset.

``ssl-mae presets`` prints this table, ``--help`` states each rule, and every resolved value is
written to the run's ``config.yaml``. The modules of the models are not imported here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EPOCHS",
    "DEFAULT_PRESET",
    "PRESET_DEFAULTS",
    "PresetDefaults",
    "default_batch_size",
    "default_in_chans",
    "default_normalize",
    "default_num_workers",
    "preset_defaults",
]

DEFAULT_PRESET = "mae_vit_micro_patch7_dec1"
DEFAULT_EPOCHS = 12
#: Images per device per step, unless the training set is small (see default_batch_size).
DEFAULT_BATCH_SIZE = 256
# A small training set still gets at least this many steps per epoch.
MIN_STEPS_PER_EPOCH = 4
MAX_DEFAULT_WORKERS = 8


@dataclass(frozen=True)
class PresetDefaults:
    """The training recipe of one preset.

    Attributes:
        base_lr: Peak AdamW learning rate per 256 images (``lr = base_lr * batch / 256``).
        min_scale: Smallest random-resized-crop area fraction.
        source: Where the values come from.
    """

    base_lr: float
    min_scale: float
    source: str


_OFFICIAL = PresetDefaults(1.5e-4, 0.2, "official MAE recipe (He et al. 2021, appendix A.1)")
_HIVIT = PresetDefaults(1.5e-4, 0.2, "mmpretrain MAE-HiViT recipe (base lr 1.5e-4 per 256)")
_SMALL = PresetDefaults(
    1.5e-3, 0.2, "Fashion-MNIST runs of the small presets (lr 1.5e-3 per 256, 10x the official)"
)
_MICRO_PATCH7 = PresetDefaults(
    1.5e-3,
    0.5,
    "benchmarks/fashion_mnist.py recipe (min-scale 0.5 measured best for 28x28, 16 tokens)",
)

#: The recipe per preset name (the official long names share their short name's entry).
PRESET_DEFAULTS: dict[str, PresetDefaults] = {
    "mae_vit_micro_patch4": _SMALL,
    "mae_vit_micro_patch7": _MICRO_PATCH7,
    "mae_vit_micro_patch7_dec1": PresetDefaults(
        1.5e-3,
        0.5,
        "Fashion-MNIST recipe search on a validation split (docs/benchmarks.md, issue 15)",
    ),
    "mae_crossmae_micro_patch7": _MICRO_PATCH7,
    "mae_hog_micro_patch7": _MICRO_PATCH7,
    "mae_pixio_micro_patch4": _SMALL,
    "mae_crossmae_base_patch16": _OFFICIAL,
    "mae_vit_tiny_patch4": _SMALL,
    "mae_vit_base_patch16": _OFFICIAL,
    "mae_vit_large_patch16": _OFFICIAL,
    "mae_vit_huge_patch14": _OFFICIAL,
    "mae_hivit_t": _HIVIT,
    "mae_hivit_s": _HIVIT,
    "mae_hivit_b": _HIVIT,
    "mae_hivit_b20": _HIVIT,
    "mae_hivit_l": _HIVIT,
    "mae_hivit_nano": _SMALL,
    "simple_mae_vit_micro": _SMALL,
    "simple_mae_vit_tiny": _SMALL,
    "simple_mae_torchvision_vit_tiny": _SMALL,
}


def preset_defaults(preset: str) -> PresetDefaults:
    """The recipe of a preset (official long names such as ``..._dec512d8b`` included).

    Raises:
        KeyError: For a name without an entry.
    """
    return PRESET_DEFAULTS[preset.removesuffix("_dec512d8b")]


def default_batch_size(num_train: int, preferred: int = DEFAULT_BATCH_SIZE) -> int:
    """``preferred``, or for small training sets the largest power of two that still gives
    :data:`MIN_STEPS_PER_EPOCH` steps per epoch (at least 1).

    Examples: 60 000 images -> 256; 300 images -> 64; 10 images -> 2.
    """
    if num_train >= preferred * MIN_STEPS_PER_EPOCH:
        return preferred
    target = max(num_train // MIN_STEPS_PER_EPOCH, 1)
    return 1 << (target.bit_length() - 1)


def default_num_workers(dataset: str) -> int:
    """DataLoader workers: 0 for Fashion-MNIST (held in memory as tensors), else one per CPU
    this process may use, minus one for the main process, at most 8."""
    if dataset == "fashion_mnist":
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(0, min(MAX_DEFAULT_WORKERS, cpus - 1))


def default_in_chans(dataset: str) -> int:
    """Channels fed to the model: 1 for Fashion-MNIST, 3 for the rest (folders as RGB)."""
    return 1 if dataset == "fashion_mnist" else 3


def default_normalize(dataset: str, in_chans: int) -> dict[str, list[float]]:
    """Input normalisation: Fashion-MNIST's own statistics, ImageNet's for RGB, 0.5/0.5 for
    other grayscale data."""
    from ssl_mae.transforms import FASHION_MNIST_NORMALIZE, IMAGENET_NORMALIZE

    if dataset == "fashion_mnist":
        return {k: [float(x) for x in v] for k, v in FASHION_MNIST_NORMALIZE.items()}
    if in_chans == 3:
        return {k: [float(x) for x in v] for k, v in IMAGENET_NORMALIZE.items()}
    return {"mean": [0.5] * in_chans, "std": [0.5] * in_chans}
