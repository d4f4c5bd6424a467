"""The documentation site: it builds with ``mkdocs build --strict``, its API pages
come from the docstrings, and its code samples are valid Python."""

from __future__ import annotations

import ast
import html
import importlib.util
import os
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
_TAG = re.compile(r"<[^>]+>")
#: What reStructuredText leaves behind when Markdown renders it.
_REST_ARTEFACTS = re.compile(r":(?:py:)?(?:class|func|meth|attr|exc|mod|obj|data):|::")


def _text(page: str) -> str:
    """What a reader sees of an HTML page: its text, without tags, unescaped."""
    body = page.split("<body", 1)[-1]
    body = re.sub(r"<script\b.*?</script>", "", body, flags=re.DOTALL)
    return html.unescape(_TAG.sub("", body))


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
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
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
        "nexus_reactive.WebSocketService.ask_rx",  # inherited from ServiceViews
        "nexus_reactive.WebSocketService.reconnect",
        "nexus_reactive.WebSocketStore.reconnect",
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
    assert "async def main(url: str, questions: list[str]) -> int:" in _text(quickstart)
    mapping = (site / "from-typescript" / "index.html").read_text()
    assert "useWebSocket" in mapping and "use_websocket" in mapping


def test_the_api_reference_shows_no_restructuredtext(site: Path) -> None:
    """Roles become links or code, ``Example::`` becomes ``Example:`` and a code block."""
    api = (site / "api" / "index.html").read_text()
    leftovers = [
        _text(api)[max(0, m.start() - 40) : m.end() + 20]
        for m in _REST_ARTEFACTS.finditer(_text(api))
    ]
    assert leftovers == []
    # ... and the roles became cross-references to the objects they name.
    assert 'href="#nexus_reactive.WebSocketConfig"><code>WebSocketConfig</code></a>' in api
    # The tree of errors was a `::` literal block: now a code block.
    assert re.search(r'<div class="language-text highlight">.*?NexusError', api, re.DOTALL)


def test_each_signature_is_shown_once(site: Path) -> None:
    api = _text((site / "api" / "index.html").read_text())
    # The signature (with its @overload stubs) was in the heading and twice below it.
    # Two functions of that name: the store's, and the Solara hook's.
    assert api.count("use_websocket(\n    config:") == 2
    assert api.count("use_websocket(config") == 0
    assert api.count("use_websocket_sync(\n    config:") == 1


def test_code_is_highlighted_when_the_site_is_built(site: Path) -> None:
    """Pygments spans in the HTML: highlighted offline, with no script from elsewhere."""
    for page in ("api", "quickstart", "from-typescript"):
        built = (site / page / "index.html").read_text()
        assert 'class="language-python highlight"' in built, page
        assert '<span class="k">' in built, page  # a keyword, as Pygments marks it
    for built_page in site.rglob("*.html"):
        built = built_page.read_text()
        remote = re.findall(r'<(?:script|link)\b[^>]*(?:src|href)="(?:https?:)?//[^"]+"', built)
        assert remote == [], built_page


def test_the_comparison_page_shows_each_example_whole(site: Path) -> None:
    """Tabs, one example each, rather than two clipped columns side by side."""
    page = (site / "from-typescript" / "index.html").read_text()
    assert 'class="tabbed-set' in page
    assert "col-lg-6" not in page
    labels = re.findall(r"<label[^>]*>([^<]+)</label>", page)
    assert labels[:2] == ["TypeScript (React Native)", "nexus-reactive (Python, asyncio)"]


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


def test_the_screenshots_are_shown_and_small(site: Path) -> None:
    """docs/images/ (made by ``make screenshots``): each picture is on its page."""
    where = {
        "textual-chat.svg": ("quickstart", "ui-toolkits"),
        "tk-chat.png": ("ui-toolkits",),
        "qt-chat.png": ("ui-toolkits",),
        "notebook-live-view.png": ("notebooks",),
    }
    for image, pages in where.items():
        path = DOCS / "images" / image
        assert path.is_file() and path.stat().st_size < 200_000, image
        assert (site / "images" / image).is_file(), image
        for page in pages:
            built = (site / page / "index.html").read_text()
            assert re.search(rf'<img alt="[^"]+" src="\.\./images/{re.escape(image)}"', built), page
