"""tools/floors.py: `make test-lowest` fails unless every declared floor is what it installed.

The comparison is checked on made-up pyproject tables and installs (the project's own
`.venv` is locked, above every floor); the script itself runs on the real pyproject.toml.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tools.floors import Declared, declared, problems, rows, table

ROOT = Path(__file__).resolve().parent.parent

PYPROJECT: dict[str, object] = {
    "project": {
        "dependencies": ["aiohttp>=3.14.2", "reactivex>=4.0"],
        "optional-dependencies": {
            "otel": ["opentelemetry-api>=1.30"],
            "qt": ["PySide6-Essentials[extra]>=6.5,!=6.6.0"],
            "old": ["tomli>=2; python_version < '3.11'"],
        },
    }
}


def test_every_dependency_and_extra_is_read_with_its_floor() -> None:
    assert declared(PYPROJECT) == [
        Declared("aiohttp", "3.14.2", "dependencies"),
        Declared("reactivex", "4.0", "dependencies"),
        Declared("opentelemetry-api", "1.30", "extra 'otel'"),
        Declared("PySide6-Essentials", "6.5", "extra 'qt'"),
        # tomli's marker is false on Python >= 3.11: nothing installs it, nothing to check.
    ]


def test_floors_installed_exactly_pass_whatever_the_spelling() -> None:
    found = rows(
        declared(PYPROJECT),
        {
            "aiohttp": "3.14.2",
            "reactivex": "4.0.0",  # 4.0 and 4.0.0 are one version
            "opentelemetry-api": "1.30.0",
            "PySide6-Essentials": "6.5.0",
        }.get,
    )
    assert all(row.at_floor for row in found)
    assert problems(found) == []
    assert "above floor" not in table(found)


def test_a_floor_lifted_by_something_else_names_package_floor_and_install() -> None:
    installed = {"aiohttp": "3.14.2", "reactivex": "4.0", "PySide6-Essentials": "6.5"}
    found = rows(declared(PYPROJECT), {**installed, "opentelemetry-api": "1.40.0"}.get)
    [message] = problems(found)
    assert message.startswith("opentelemetry-api (extra 'otel'): pyproject.toml declares >=1.30")
    assert "installed 1.40.0" in message
    assert "--invert --package opentelemetry-api" in message
    assert "above floor" in table(found)


def test_an_extra_not_installed_says_to_add_it_to_the_makefile() -> None:
    found = rows(declared(PYPROJECT), {"aiohttp": "3.14.2", "reactivex": "4.0"}.get)
    messages = problems(found)
    assert len(messages) == 2
    assert all("not installed" in m and "EXTRAS in the Makefile" in m for m in messages)
    assert "MISSING" in table(found)


def test_a_requirement_without_a_floor_is_reported() -> None:
    bare = {"project": {"dependencies": ["msgspec"]}}
    [message] = problems(rows(declared(bare), {"msgspec": "0.18.5"}.get))
    assert "msgspec (dependencies): pyproject.toml declares no '>=' floor" in message


def test_the_script_reads_the_real_pyproject(tmp_path: Path) -> None:
    """Every dependency and extra is in the table; a lifted floor exits 1 with the message."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    report = subprocess.run(
        [sys.executable, "tools/floors.py", "--report"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert report.returncode == 0, report.stderr
    for requirement in declared(pyproject):
        assert requirement.name in report.stdout

    # A floor far below anything installable: the check must fail and say which.
    made_up = tmp_path / "pyproject.toml"
    made_up.write_text('[project]\ndependencies = ["pytest>=0.1"]\n')
    check = subprocess.run(
        [sys.executable, "tools/floors.py", "--pyproject", str(made_up)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 1
    assert "pytest (dependencies): pyproject.toml declares >=0.1, installed " in check.stderr
    assert "1 declared floor(s) of 1 are not what is installed" in check.stderr


def test_a_pyproject_without_a_project_table_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"no \[project\] table"):
        declared({})
