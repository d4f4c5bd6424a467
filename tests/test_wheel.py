"""A wheel carries the documentation the reference server answers from.

Builds the wheel with uv (offline: from the cache the project's own install filled),
checks that ``README.md`` and ``docs/`` are inside it, installs it into a fresh venv
(not editable, no source tree next to it; its dependencies are the locked ones of the
test environment) and asks the installed server a question.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UV = Path(sys.executable).with_name("uv")
KEY = "wheel-test-key-3e7d"
DEADLINE = 120.0


def _run(*args: str | os.PathLike[str], **options: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [os.fspath(a) for a in args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
        **options,  # type: ignore[call-overload]
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not UV.exists():
        pytest.skip(f"no uv next to {sys.executable} (make install puts it there)")
    out = tmp_path_factory.mktemp("dist")
    built = _run(UV, "build", "--wheel", "--offline", "--out-dir", out, ROOT, cwd=ROOT)
    if built.returncode != 0 and "offline" in built.stderr.lower():
        pytest.skip(f"cannot build offline (no build backend in uv's cache): {built.stderr}")
    assert built.returncode == 0, built.stderr
    [path] = out.glob("nexus_reactive-*.whl")
    return path


def test_the_wheel_carries_the_readme_and_the_docs(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        corpus = "nexus_reactive/server/corpus/"
        assert corpus + "README.md" in names
        shipped = {
            n.removeprefix(corpus + "docs/") for n in names if n.startswith(corpus + "docs/")
        }
        in_repo = {p.name for p in (ROOT / "docs").glob("*.md")}
        assert in_repo <= shipped, f"docs missing from the wheel: {in_repo - shipped}"
        assert archive.read(corpus + "README.md") == (ROOT / "README.md").read_bytes()


def test_an_installed_wheel_answers_from_its_docs(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    made = _run(UV, "venv", "--quiet", "--python", sys.executable, venv)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # The wheel alone, then its dependencies from this environment (locked, installed
    # by make install) through a .pth: no index is needed, so this works offline on a
    # fresh machine. Only site-packages is added, not its .pth files, so the editable
    # install of the source tree is not on the path.
    installed = _run(
        UV, "pip", "install", "--offline", "--no-deps", "--quiet", "--python", python, wheel
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    [site_packages] = venv.glob("lib/python*/site-packages")
    dependencies = Path(sysconfig.get_paths()["purelib"])
    (site_packages / "zz_locked_dependencies.pth").write_text(f"{dependencies}\n")
    # Run from an empty folder, so nothing can come from the source tree.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NEXUS_DEBUG")}
    env["NEXUS_API_KEY"] = KEY
    server = subprocess.Popen(
        [python, "-m", "nexus_reactive", "serve", "--port", "0", "--log-level", "warning"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        match = re.search(r"(ws://\S+)", line)
        assert match, f"no startup line: {line!r}"
        asked = _run(
            python, "-m", "nexus_reactive", "ask", "--url", match.group(1),
            "What is nexus-reactive?", cwd=tmp_path, env=env,
        )  # fmt: skip
    finally:
        server.terminate()
        _, err = server.communicate(timeout=DEADLINE)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.startswith(
        "From README: nexus-reactive is a typed, reactive asyncio client"
    ), asked.stdout
    assert server.returncode == 0, err
    code = (
        "from nexus_reactive.server.docsearch import project_docs_root; print(project_docs_root())"
    )
    where = _run(python, "-c", code, cwd=tmp_path)
    assert where.stdout.strip() == str(
        venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
        / "site-packages" / "nexus_reactive" / "server" / "corpus"
    )  # fmt: skip


def test_the_wheel_registers_the_test_kits_pytest_plugin(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "_nexus_reactive_pytest.py" in names
        assert "nexus_reactive/testing/__init__.py" in names
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = archive.read(entry_points).decode()
    assert "[pytest11]\nnexus_reactive = _nexus_reactive_pytest" in text
