#!/usr/bin/env bash
# Re-resolves the dependencies of pyproject.toml (with the dev extras) in a throw-away virtual
# environment and writes the result to requirements/lock.txt. Run it on purpose, when a
# dependency should move; then run the whole suite and commit the new lock with its test results.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$PYTHON" -m venv "$TMP/venv"
"$TMP/venv/bin/python" -m pip install -q --upgrade pip
"$TMP/venv/bin/python" -m pip install -q -e ".[dev]"
{
    echo "# The exact package versions the README commands install and CI tests (scripts/setup.sh installs"
    echo "# with -c this file; tests/test_repository.py checks the venv holds exactly these)."
    echo "# Regenerate with: bash scripts/update_lock.sh"
    echo "pip==$("$TMP/venv/bin/python" -m pip --version | cut -d' ' -f2)"
    "$TMP/venv/bin/python" -m pip freeze --exclude-editable
} > requirements/lock.txt
echo "[update_lock] wrote requirements/lock.txt ($(grep -vc '^#' requirements/lock.txt) packages)"
