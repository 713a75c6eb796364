"""The documentation cannot rot: every Python block in the docs runs, every shell command it shows
names scripts and options that exist, every public module has an API page, and the site builds
with ``mkdocs build --strict``.

Python blocks of one page run in order in one namespace (later blocks use names from earlier
ones), in a temporary working directory, on CPU with tiny models. A page can ask for an optional
package with an HTML comment anywhere in it, ``<!-- docs-test: requires lightly -->``, or the
local Fashion-MNIST files with ``<!-- docs-test: requires-fashion-mnist -->``; the page is skipped
when they are missing (the tests never download anything).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGE = ROOT / "ssl_mae"

# ```python / ```py / ```bash / ```console fences, optionally indented (inside admonitions) and
# with attributes after the language (``title="..."``).
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,})(?P<lang>[\w+-]*)[^\n]*$")
REQUIRES = re.compile(r"<!--\s*docs-test:\s*requires\s+([\w.\- ]+?)\s*-->")
REQUIRES_FASHION_MNIST = "<!-- docs-test: requires-fashion-mnist -->"


def code_blocks(text: str) -> list[tuple[str, str, int]]:
    """Returns ``(language, code, first_line)`` for every fenced block of a Markdown text."""
    blocks: list[tuple[str, str, int]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, ticks, lang = match["indent"], match["ticks"], match["lang"].lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (
            lines[j].strip().startswith(ticks) and lines[j].strip().strip("`") == ""
        ):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        if j == len(lines):
            raise ValueError(f"unclosed code fence opened on line {i + 1}")
        blocks.append((lang, textwrap.dedent("\n".join(body)), i + 2))
        i = j + 1
    return blocks


def doc_pages() -> list[Path]:
    pages = sorted(DOCS.rglob("*.md"))
    readme = ROOT / "README.md"
    return [*pages, readme] if readme.is_file() else pages


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


PYTHON_PAGES = [
    page
    for page in doc_pages()
    if any(lang in ("python", "py") for lang, _, _ in code_blocks(page.read_text()))
]


def test_code_block_parser_finds_blocks_and_their_lines() -> None:
    text = (
        "# t\n\n```python\nx = 1\n```\n\n!!! note\n    ```python\n    y = x + 1\n    ```\n\n"
        "```bash\nssl-mae pretrain --help\n```\n"
    )
    assert code_blocks(text) == [
        ("python", "x = 1", 4),
        ("python", "y = x + 1", 9),
        ("bash", "ssl-mae pretrain --help", 13),
    ]
    with pytest.raises(ValueError, match="unclosed"):
        code_blocks("```python\nx = 1\n")


def test_every_user_facing_page_has_runnable_python() -> None:
    # The guides teach by code; a guide without a Python block would not be checked at all.
    names = {page.name for page in PYTHON_PAGES}
    for guide in (
        "quickstart.md",
        "concepts.md",
        "custom-pipeline.md",
        "examples.md",
        "weights.md",
        "hivit-simplemae.md",
        "faq.md",
    ):
        assert guide in names, f"docs/{guide} has no ```python block"


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=_page_id)
def test_python_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = page.read_text()
    for requirement in REQUIRES.findall(text):
        for module in requirement.split():
            pytest.importorskip(module)
    if REQUIRES_FASHION_MNIST in text:
        from ssl_mae.data import load_fashion_mnist

        try:
            load_fashion_mnist(train=False, download=False)
        except FileNotFoundError:
            pytest.skip("Fashion-MNIST files not found (bash scripts/setup.sh installs them)")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SSL_MAE_DOCS_TEST", "1")
    import torch

    torch.manual_seed(0)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for lang, code, line in code_blocks(text):
        if lang not in ("python", "py"):
            continue
        # Line numbers in tracebacks point into the Markdown file.
        compiled = compile("\n" * (line - 1) + code, str(page), "exec")
        try:
            exec(compiled, namespace)
        except Exception as error:  # re-raised with the block's location for the reader
            raise AssertionError(
                f"{_page_id(page)}: the python block starting on line {line} failed: "
                f"{type(error).__name__}: {error}"
            ) from error


# --- shell commands ---------------------------------------------------------------------------
def _shell_commands(text: str) -> list[tuple[list[str], int]]:
    commands: list[tuple[list[str], int]] = []
    for lang, code, line in code_blocks(text):
        if lang not in ("bash", "sh", "shell", "console"):
            continue
        joined = code.replace("\\\n", " ")
        for offset, raw in enumerate(joined.splitlines()):
            stripped = raw.strip().removeprefix("$ ")
            if not stripped or stripped.startswith("#"):
                continue
            lexer = shlex.shlex(stripped, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words: list[str] = []
            for token in [*lexer, ";"]:
                if token not in ("&&", "||", ";", "|", "&"):
                    words.append(token)
                    continue
                # Leading VAR=value assignments.
                while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
                    words = words[1:]
                if words:
                    commands.append((words, line + offset))
                words = []
    return commands


def _cli_options(subcommand: str) -> set[str]:
    from ssl_mae.cli import build_parser

    parser = build_parser()
    subparsers = next(
        action for action in parser._actions if action.__class__.__name__ == "_SubParsersAction"
    )
    sub = subparsers.choices[subcommand]  # type: ignore[attr-defined]
    return {option for action in sub._actions for option in action.option_strings}


def _script_options(script: Path) -> set[str]:
    tree = ast.parse(script.read_text())
    options: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
        ):
            options.update(
                arg.value
                for arg in node.args
                if isinstance(arg, ast.Constant) and str(arg.value).startswith("-")
            )
    return options


def _options(words: list[str]) -> list[str]:
    return [w.split("=")[0] for w in words if w.startswith("--")]


SHELL_PAGES = [
    page
    for page in doc_pages()
    if any(
        lang in ("bash", "sh", "shell", "console") for lang, _, _ in code_blocks(page.read_text())
    )
]


@pytest.mark.parametrize("page", SHELL_PAGES, ids=_page_id)
def test_shell_commands_name_existing_scripts_and_options(page: Path) -> None:
    problems: list[str] = []
    for words, line in _shell_commands(page.read_text()):
        where = f"{_page_id(page)}:{line}"
        program = Path(words[0]).name
        if program == "ssl-mae" and len(words) > 1 and not words[1].startswith("-"):
            try:
                known = _cli_options(words[1])
            except KeyError:
                problems.append(f"{where}: ssl-mae has no subcommand {words[1]!r}")
                continue
            problems += [
                f"{where}: 'ssl-mae {words[1]}' has no option {option}"
                for option in _options(words[2:])
                if option not in known
            ]
        for index, word in enumerate(words):
            if word.endswith((".py", ".sh")) and "/" in word and not word.startswith(("/", "~")):
                script = ROOT / word
                if not script.is_file():
                    problems.append(f"{where}: {word} does not exist")
                elif word.endswith(".py") and word.startswith(("examples/", "benchmarks/")):
                    known = _script_options(script)
                    problems += [
                        f"{where}: {word} has no option {option}"
                        for option in _options(words[index + 1 :])
                        if option not in known
                    ]
    assert not problems, "\n".join(problems)


# --- API reference coverage ---------------------------------------------------------------------
def _public_modules() -> list[str]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts) or parts[-1] == "__main__":
            continue
        modules.append(".".join(parts))
    return modules


def _documented_modules() -> set[str]:
    directives = set()
    for page in sorted((DOCS / "api").glob("*.md")):
        directives.update(re.findall(r"^:::\s+([\w.]+)", page.read_text(), flags=re.MULTILINE))
    return directives


def test_every_public_module_has_an_api_page() -> None:
    documented = _documented_modules()
    modules = _public_modules()
    undocumented = []
    for module in modules:
        # A module is covered by its own directive, a parent package's directive (which renders
        # the package's re-exports), or, for a package, directives for all its submodules.
        ancestors = {".".join(module.split(".")[:i]) for i in range(2, module.count(".") + 1)}
        children = [m for m in modules if m.startswith(module + ".")]
        covered = (
            module in documented
            or bool(ancestors & documented)
            or (bool(children) and all(c in documented for c in children))
        )
        if not covered and module != "ssl_mae":
            undocumented.append(module)
    assert not undocumented, f"modules without an API page (add ::: directives): {undocumented}"
    unknown = documented - set(modules)
    assert not unknown, f"API pages document modules that do not exist: {sorted(unknown)}"


def test_every_root_export_is_rendered_by_some_api_page() -> None:
    import ssl_mae

    documented = _documented_modules()
    for name in ssl_mae.__all__:
        if name.startswith("_"):
            continue
        value = getattr(ssl_mae, name)
        if isinstance(value, types.ModuleType):
            continue  # subpackages: test_every_public_module_has_an_api_page covers them
        if isinstance(getattr(value, "__module__", None), str):
            module = value.__module__
        else:  # a constant: a (non-package) module that holds this very object
            module = next(
                m.__name__
                for m in list(sys.modules.values())
                if m is not None
                and m.__name__.startswith("ssl_mae.")
                and not hasattr(m, "__path__")
                and getattr(m, name, None) is value
            )
        parents = {".".join(module.split(".")[:i]) for i in range(2, module.count(".") + 2)}
        assert parents & documented, f"ssl_mae.{name} (from {module}) is on no API page"


# --- the site itself ----------------------------------------------------------------------------
def test_nav_lists_every_page_and_the_site_builds_strictly(tmp_path: Path) -> None:
    if (
        importlib.util.find_spec("mkdocs") is None
        or importlib.util.find_spec("mkdocstrings") is None
    ):
        pytest.skip("mkdocs / mkdocstrings not installed (pip install -e '.[docs]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "api" / "blocks" / "index.html").is_file()
    html = (tmp_path / "site" / "api" / "blocks" / "index.html").read_text()
    # mkdocstrings rendered real API entries (not an empty page).
    assert 'id="ssl_mae.masking.random_token_mask"' in html
