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
        NonFiniteLossError as NonFiniteLossError,
    )
    from ssl_mae.training.callbacks import (
        NonFiniteLossGuard as NonFiniteLossGuard,
    )
    from ssl_mae.training.callbacks import (
        SkippedFilesReport as SkippedFilesReport,
    )
    from ssl_mae.training.callbacks import (
        count_skipped_files as count_skipped_files,
    )
    from ssl_mae.training.checkpoints import AtomicCheckpointIO as AtomicCheckpointIO
    from ssl_mae.training.checkpoints import save_atomic as save_atomic
    from ssl_mae.training.checkpoints import write_json_atomic as write_json_atomic
    from ssl_mae.training.data import (
        PretrainDataModule as PretrainDataModule,
    )
    from ssl_mae.training.data import (
        ResumableDataLoader as ResumableDataLoader,
    )
    from ssl_mae.training.data import (
        ResumableSampler as ResumableSampler,
    )
    from ssl_mae.training.data import (
        batch_seed as batch_seed,
    )
    from ssl_mae.training.module import TRAINING_OPTIONS as TRAINING_OPTIONS
    from ssl_mae.training.module import PretrainModule as PretrainModule
