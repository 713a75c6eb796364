"""Loading the scripts of ``benchmarks/`` (not a package) as modules, for their tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(relative_path: str, module_name: str) -> ModuleType:
    """Imports ``benchmarks/<relative_path>`` as ``module_name`` (registered in ``sys.modules``,
    which dataclasses need to resolve their module by name)."""
    spec = importlib.util.spec_from_file_location(module_name, BENCHMARKS / relative_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def require_fashion_mnist() -> None:
    """Skips the calling test when the Fashion-MNIST IDX files are not installed."""
    from ssl_mae.data import load_fashion_mnist

    try:
        load_fashion_mnist(train=False, download=False)
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST IDX files are not installed")
