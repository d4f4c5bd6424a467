"""The documentation site: it builds with ``mkdocs build --strict``, its API pages
come from the docstrings, and its code samples are valid Python."""

from __future__ import annotations

import ast
import html
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nexus_reactive import WebSocketService

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BUILD_TIMEOUT = 120  # seconds

_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _mkdocs_missing() -> str | None:
    for module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python", "pymdownx"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return (
                f"{module} is not installed: the docs extra is needed to build the "
                "site (pip install -e '.[docs]')"
            )
    return None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module's tests."""
    missing = _mkdocs_missing()
    if missing:
        pytest.skip(missing)
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr}"
    return out


def test_the_api_reference_is_built_from_the_docstrings(site: Path) -> None:
    api = (site / "api" / "index.html").read_text()
    for name in (
        "nexus_reactive.WebSocketService.send_query",
        "nexus_reactive.WebSocketService.ask_rx",
        "nexus_reactive.use_websocket",
        "nexus_reactive.use_websocket_sync",
        "nexus_reactive.WebSocketConfig",
        "nexus_reactive.ConnectionState",
        "nexus_reactive.server.create_app",
    ):
        assert f'id="{name}"' in api, name
    # The docstring's own words, so the page is not just headings.
    summary = (WebSocketService.send_query.__doc__ or "").strip().splitlines()[0]
    rendered = re.sub(r"``(.+?)``", r"<code>\1</code>", html.escape(summary, quote=False))
    assert summary and rendered in api


def test_every_page_is_built_and_the_examples_are_included(site: Path) -> None:
    pages = [path.stem for path in DOCS.glob("*.md")]
    for page in pages:
        built = site / "index.html" if page == "index" else site / page / "index.html"
        assert built.is_file(), page
    # The quickstart page includes examples/quickstart.py itself, not a copy.
    quickstart = (site / "quickstart" / "index.html").read_text()
    assert "async def main(url: str, questions: list[str]) -&gt; int:" in quickstart
    mapping = (site / "from-typescript" / "index.html").read_text()
    assert "useWebSocket" in mapping and "use_websocket" in mapping


@pytest.mark.parametrize("page", sorted(path.name for path in DOCS.glob("*.md")))
def test_python_samples_are_valid_python(page: str) -> None:
    text = (DOCS / page).read_text()
    for number, block in enumerate(_PYTHON_BLOCK.findall(text), 1):
        if block.lstrip().startswith("--8<--"):
            continue  # an included file: checked by its own tests
        try:
            # Notebook samples use top-level await, as a notebook cell may.
            compile(block, f"{page}, python block {number}", "exec", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError as exc:
            pytest.fail(f"{page}, python block {number}: {exc}")
