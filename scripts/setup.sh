#!/usr/bin/env bash
# Sets up ssl_mae from nothing: the Fashion-MNIST Debian package (when apt is available), a
# virtual environment cached outside the checkout (keyed by a hash of pyproject.toml and
# requirements/lock.txt, so repeat runs are fast), the package in editable mode with its dev
# extras at exactly the versions of requirements/lock.txt, and a `.venv` link to it.
set -euo pipefail
cd "$(dirname "$0")/.."

FMNIST_DIR=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
    SUDO=""
    if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
    if command -v apt-get >/dev/null 2>&1; then
        echo "[setup] installing Debian package dataset-fashion-mnist"
        ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist) \
            || echo "[setup] apt install failed; ssl_mae will fall back to torchvision's downloader"
    else
        echo "[setup] no apt-get; ssl_mae will fall back to torchvision's downloader"
    fi
fi

PYTHON="${PYTHON:-python3}"
LOCK=requirements/lock.txt
HASH=$(cat pyproject.toml "$LOCK" | sha256sum | cut -c1-16)
VENV="${SSL_MAE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ssl_mae/venv-$HASH}"
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.complete" ]; then
    echo "[setup] creating virtual environment $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    # The tested versions, not whatever the registry serves today: a fresh machine must get
    # the environment CI passed with (scripts/update_lock.sh moves them on purpose).
    "$VENV/bin/python" -m pip install -q "$(grep '^pip==' "$LOCK")"
    "$VENV/bin/python" -m pip install -q -c "$LOCK" -e ".[dev]"
    touch "$VENV/.complete"
else
    # The cached environment may have been made from another checkout: point it at this one.
    "$VENV/bin/python" -m pip install -q --no-deps -e .
fi
ln -sfn "$VENV" .venv
echo "[setup] ready: $(.venv/bin/python -c 'import torch, ssl_mae; print("torch", torch.__version__, "ssl_mae", ssl_mae.__version__)')"
