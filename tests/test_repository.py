"""Repository-level promises: the README test command is exactly what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

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
