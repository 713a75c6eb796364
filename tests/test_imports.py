"""``import ssl_mae`` stays light: heavy frameworks load only when a model, trainer or plot
needs them (PEP 562 lazy exports). Each check runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("pytorch_lightning", "lightning", "transformers", "scipy", "matplotlib")


def _loaded_heavy_modules(code: str) -> list[str]:
    probe = (
        f"{code}\n"
        "import sys\n"
        f"heavy = {HEAVY!r}\n"
        "print('HEAVY:' + ','.join(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("HEAVY:")]
    return [name for name in line.removeprefix("HEAVY:").split(",") if name]


@pytest.mark.parametrize(
    "code",
    [
        "import ssl_mae",
        "from ssl_mae import patchify, MaskedVisionTransformer, MAEDecoder, MAELoss",
        "from ssl_mae import MaskedAutoencoder, SimpleMAE, hf",
        "from ssl_mae.training.optim import build_adamw",
        "from ssl_mae.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
        "from ssl_mae.cli import main\n"
        "try:\n    main(['pretrain', '--help'])\nexcept SystemExit:\n    pass",
    ],
)
def test_light_entry_points_import_no_heavy_framework(code: str) -> None:
    assert _loaded_heavy_modules(code) == []


def test_the_probe_sees_heavy_imports() -> None:
    # The check above must be able to fail: MAE is a LightningModule.
    assert "pytorch_lightning" in _loaded_heavy_modules("from ssl_mae import MAE")


def test_lazy_names_resolve_and_unknown_names_raise() -> None:
    import ssl_mae

    assert set(ssl_mae.__all__) <= set(dir(ssl_mae))
    for name in ssl_mae.__all__:
        assert getattr(ssl_mae, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ssl_mae.nope  # noqa: B018


@pytest.mark.parametrize("package", ["ssl_mae", "ssl_mae.models", "ssl_mae.training"])
def test_lazy_names_are_explicit_re_exports_for_type_checkers(package: str) -> None:
    """``mypy --strict`` accepts ``from ssl_mae import MAEDecoder`` only when the package's
    TYPE_CHECKING block re-exports the name explicitly (``import X as X``)."""
    import importlib
    import importlib.util
    import inspect
    import re

    module = importlib.import_module(package)
    source = inspect.getsource(module)
    block = source[source.index("if TYPE_CHECKING:") :]
    exported = set(re.findall(r"\b(\w+) as \1\b", block))
    # Submodules need no re-export: ``from ssl_mae.models import presets`` imports the module.
    submodules = {n for n in module.__all__ if importlib.util.find_spec(f"{package}.{n}")}
    missing = sorted(set(module.__all__) - exported - submodules - {"__version__"})
    assert missing == []
