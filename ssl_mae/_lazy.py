"""PEP 562 lazy exports for package ``__init__`` modules: a name is imported from its module
the first time it is looked up, so importing a package costs nothing but the package itself."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(
    package: str,
    namespace: dict[str, Any],
    exports: Mapping[str, str],
    submodules: Iterable[str] = (),
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Builds ``__getattr__``, ``__dir__`` and ``__all__`` for a package.

    Args:
        package: The package's ``__name__``.
        namespace: The package's ``globals()``; resolved names are cached there.
        exports: Public name → the module that defines it.
        submodules: Subpackages reachable as attributes (``ssl_mae.hf``).

    Returns:
        ``(__getattr__, __dir__, __all__)`` to assign in the package.
    """
    submodule_names = frozenset(submodules)
    public = sorted({*exports, *submodule_names})

    def __getattr__(name: str) -> Any:
        if name in submodule_names:
            return importlib.import_module(f"{package}.{name}")
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later lookups do not come here
        return value

    def __dir__() -> list[str]:
        return sorted({*public, *namespace})

    return __getattr__, __dir__, public
