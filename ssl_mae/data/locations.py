"""Where datasets live on disk: default directories and the environment variables that move them."""

from __future__ import annotations

import os
from pathlib import Path

#: Directory of the Debian/Ubuntu ``fashion-mnist`` package (the official IDX ``.gz`` files).
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Environment variable that overrides the Fashion-MNIST directory.
FASHION_MNIST_ENV = "SSL_MAE_FASHION_MNIST"

#: Environment variable that overrides the default root for downloaded / torchvision datasets.
DATA_ROOT_ENV = "SSL_MAE_DATA_ROOT"


def default_data_root() -> Path:
    """Return the directory used when a dataset needs a root and none was given.

    ``$SSL_MAE_DATA_ROOT`` if set, else ``$XDG_CACHE_HOME/ssl_mae/data``, else
    ``~/.cache/ssl_mae/data``. The directory is not created here; torchvision creates it when it
    downloads.
    """
    override = os.environ.get(DATA_ROOT_ENV)
    if override:
        return Path(override).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache_home).expanduser() if cache_home else Path.home() / ".cache"
    return base / "ssl_mae" / "data"
