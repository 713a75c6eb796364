"""Repository-level promises: the README test command is exactly what CI runs."""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [block.strip() for block in blocks]


def test_readme_starts_with_main_job_and_test_commands() -> None:
    commands = readme_commands()
    assert len(commands) >= 2
    assert commands[0].startswith("bash scripts/setup.sh")
    assert commands[1].startswith("bash scripts/setup.sh") and "pytest" in commands[1]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert readme_commands()[1] in ci_lines


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[_canonical(name)] = version
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _in_setup_venv() -> bool:
    venv = ROOT / ".venv"
    return venv.exists() and Path(sys.prefix).resolve() == venv.resolve()


def test_setup_venv_holds_exactly_the_locked_versions() -> None:
    """scripts/setup.sh installs requirements/lock.txt; a fresh machine must get those versions
    (a cached venv, or a registry serving newer ones, must not drift unnoticed)."""
    if not _in_setup_venv() and not os.environ.get("CI"):
        pytest.skip("not running in the .venv made by scripts/setup.sh")
    installed = {
        _canonical(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
    }
    installed.pop("ssl-mae", None)
    for tool in ("setuptools", "wheel"):  # build tools the venv may carry; not dependencies
        installed.pop(tool, None)
    assert installed == _lock()


def test_setup_keys_the_cached_venv_on_the_lock() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert 'cat pyproject.toml "$LOCK" | sha256sum' in setup
    assert '-c "$LOCK"' in setup
