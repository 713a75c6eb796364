"""The options of a ``pretrain`` run: resolved once, recorded everywhere, restored on resume.

Every option of ``ssl-mae pretrain`` defaults to None in the parser, so the command line tells
what the user gave. A fresh run fills the rest from :mod:`ssl_mae.cli.defaults` (some only once
the model and the data are known); the resolved dict is the run's *config*: written to
``OUTPUT/config.yaml`` and stored in every checkpoint (the data module's hyper-parameters).

``--resume CKPT`` starts from the config stored in ``CKPT``. Options in :data:`MAY_CHANGE` take
the command line's value and the change is reported; any other option given with a different
value is refused, all of them in one message, because it would not continue the same run.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ssl_mae.cli.options import UsageError
from ssl_mae.training.fast import DEFAULT_GPU_DATA_MAX_MB

__all__ = [
    "MAY_CHANGE",
    "MUST_MATCH",
    "STATIC_DEFAULTS",
    "given_options",
    "merge_resume",
    "option_name",
    "run_config_of",
    "write_config_yaml",
]

#: Options that may differ on ``--resume``: how long to train, where, and what to log or evaluate.
MAY_CHANGE: tuple[str, ...] = (
    "epochs",
    "max_steps",
    "accelerator",
    "precision",
    "compile",
    "fused_adamw",
    "gpu_data",
    "gpu_data_max_mb",
    "check_loss_every_n_steps",
    "strategy",
    "num_workers",
    "download",
    "checkpoint_every_n_steps",
    "logger",
    "log_every_n_steps",
    "progress",
    "report",
    "knn",
    "knn_k",
    "knn_temperature",
    "pool",
    "eval_batch_size",
)
#: Options that decide the model, the data, the order of the batches or the optimisation: a
#: resumed run must keep them or it would not continue the same run.
MUST_MATCH: tuple[str, ...] = (
    "dataset",
    "data_path",
    "val_path",
    "preset",
    "img_size",
    "in_chans",
    "mask_ratio",
    "norm_pix",
    "batch_size",
    "base_lr",
    "lr",
    "warmup_epochs",
    "weight_decay",
    "min_scale",
    "accumulate_grad_batches",
    "devices",
    "num_nodes",
    "seed",
    "limit_train_images",
    "limit_test_images",
)
# What every run's config records (a checkpoint without them was not written by pretrain).
RECORDED: tuple[str, ...] = (
    "dataset",
    "preset",
    "img_size",
    "in_chans",
    "epochs",
    "batch_size",
    "seed",
    "min_scale",
    "normalize",
)

#: Defaults that do not depend on the preset or the data (filled into the configs of older
#: checkpoints that did not record them).
STATIC_DEFAULTS: dict[str, Any] = {
    "max_steps": None,
    "warmup_epochs": None,
    "weight_decay": 0.05,
    "accumulate_grad_batches": 1,
    "num_nodes": 1,
    "strategy": "auto",
    "devices": "auto",
    "accelerator": "auto",
    "download": False,
    "checkpoint_every_n_steps": 100,
    "logger": "csv",
    "log_every_n_steps": 50,
    "progress": True,
    "report": True,
    "knn": None,
    "knn_k": None,
    "knn_temperature": 0.07,
    "pool": "mean",
    "eval_batch_size": 256,
    "limit_train_images": None,
    "limit_test_images": None,
    "val_path": None,
    "data_path": None,
    # The fast path: "auto" is resolved from the training device when the run starts.
    "precision": None,
    "compile": "auto",
    "fused_adamw": "auto",
    "gpu_data": "auto",
    "gpu_data_max_mb": DEFAULT_GPU_DATA_MAX_MB,
    "check_loss_every_n_steps": None,
}


def option_name(key: str) -> str:
    """``batch_size`` -> ``--batch-size``."""
    return "--" + key.replace("_", "-")


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The run options the command line set (paths made absolute, the dataset canonical)."""
    from ssl_mae.cli.data import dataset_key

    given = {
        key: value
        for key, value in vars(args).items()
        if value is not None and key in (*MAY_CHANGE, *MUST_MATCH)
    }
    for key in ("data_path", "val_path"):
        if key in given:
            given[key] = _absolute(given[key])
    if "dataset" in given:
        given["dataset"] = dataset_key(given["dataset"])
    return given


def run_config_of(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The ``pretrain`` config stored in a checkpoint (empty for other checkpoints)."""
    hparams = checkpoint.get("datamodule_hyper_parameters") or {}
    config = hparams.get("run_config") if isinstance(hparams, Mapping) else None
    return dict(config) if isinstance(config, Mapping) else {}


def merge_resume(
    stored: Mapping[str, Any], given: Mapping[str, Any], checkpoint: str
) -> tuple[dict[str, Any], dict[str, tuple[Any, Any]]]:
    """The config of a resumed run.

    Args:
        stored: The config in the checkpoint.
        given: The options of the command line (see :func:`given_options`).
        checkpoint: The checkpoint, for messages.

    Returns:
        ``(config, changes)``: the stored config with the changeable options of the command
        line, and ``{option: (stored value, new value)}`` for each change.

    Raises:
        UsageError: Naming every option given with a value the run cannot change.
    """
    missing = [key for key in RECORDED if key not in stored]
    if missing:
        raise UsageError(
            f"--resume {checkpoint!r} was not written by 'ssl-mae pretrain' (its run record "
            f"lacks {', '.join(missing)}); use ssl-mae evaluate/export with it, or train a new run"
        )
    config = {**STATIC_DEFAULTS, **stored}
    conflicts = [
        f"{option_name(key)} {config.get(key)!r} (given {value!r})"
        for key, value in given.items()
        if key in MUST_MATCH and config.get(key) != value
    ]
    if conflicts:
        raise UsageError(
            f"--resume {checkpoint!r} was trained with other values of options that decide the "
            f"run: {'; '.join(conflicts)}. Leave them out to keep the run's values; only "
            f"{', '.join(option_name(k) for k in MAY_CHANGE)} may change on resume"
        )
    changes = {
        key: (config.get(key), value)
        for key, value in given.items()
        if key in MAY_CHANGE and config.get(key) != value
    }
    config.update({key: new for key, (_, new) in changes.items()})
    return config, changes


def new_run_id() -> str:
    """A fresh run id (every checkpoint and ``config.yaml`` of a run carry the same one)."""
    return uuid.uuid4().hex


def write_config_yaml(config: Mapping[str, Any], path: Path, header: str) -> None:
    """Writes the resolved config as YAML, one option per line, with a comment header."""
    import yaml

    from ssl_mae.training.checkpoints import CheckpointWriteError

    body = yaml.safe_dump(dict(config), sort_keys=True, default_flow_style=None)
    text = "".join(f"# {line}\n" for line in header.splitlines()) + body
    try:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as error:
        raise CheckpointWriteError(error.errno, f"cannot write {str(path)!r}: {error}") from error


def read_config_yaml(path: Path) -> dict[str, Any]:
    """The config of the run in ``path`` (empty when unreadable)."""
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return dict(loaded) if isinstance(loaded, Mapping) else {}
