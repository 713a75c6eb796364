"""Training: the one LightningModule, the optimiser recipe, resumable data, safe checkpoints.

* :mod:`~ssl_mae.training.module`: :class:`PretrainModule`, the LightningModule of every model;
* :mod:`~ssl_mae.training.optim`: AdamW groups, lr scaling and the warmup + cosine schedule;
* :mod:`~ssl_mae.training.precision`: autocast and ``torch.compile`` with fallback;
* :mod:`~ssl_mae.training.data`: seeded, resumable loaders and the pre-training data module;
* :mod:`~ssl_mae.training.checkpoints` and :mod:`~ssl_mae.training.callbacks`: atomic
  checkpoint files, the non-finite-loss guard and the skipped-files report.

Names load on first use: ``from ssl_mae.training.optim import build_adamw`` needs no Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ssl_mae._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    globals(),
    {
        "PretrainModule": "ssl_mae.training.module",
        "TRAINING_OPTIONS": "ssl_mae.training.module",
        "PretrainDataModule": "ssl_mae.training.data",
        "ResumableDataLoader": "ssl_mae.training.data",
        "ResumableSampler": "ssl_mae.training.data",
        "batch_seed": "ssl_mae.training.data",
        "AtomicCheckpointIO": "ssl_mae.training.checkpoints",
        "save_atomic": "ssl_mae.training.checkpoints",
        "write_json_atomic": "ssl_mae.training.checkpoints",
        "NonFiniteLossError": "ssl_mae.training.callbacks",
        "NonFiniteLossGuard": "ssl_mae.training.callbacks",
        "SkippedFilesReport": "ssl_mae.training.callbacks",
        "count_skipped_files": "ssl_mae.training.callbacks",
    },
    submodules=("callbacks", "checkpoints", "data", "module", "optim", "precision"),
)

if TYPE_CHECKING:
    from ssl_mae.training.callbacks import (
        NonFiniteLossError,
        NonFiniteLossGuard,
        SkippedFilesReport,
        count_skipped_files,
    )
    from ssl_mae.training.checkpoints import AtomicCheckpointIO, save_atomic, write_json_atomic
    from ssl_mae.training.data import (
        PretrainDataModule,
        ResumableDataLoader,
        ResumableSampler,
        batch_seed,
    )
    from ssl_mae.training.module import TRAINING_OPTIONS, PretrainModule
