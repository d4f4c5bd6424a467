"""The install is reproducible: the lock, the Makefile's locker and pyproject.toml agree."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _locked_versions() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {package["name"]: package.get("version", "") for package in lock["package"]}


def test_the_bootstrapped_uv_is_the_locked_uv() -> None:
    match = re.search(r"^UV_VERSION\s*:=\s*(\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "the Makefile no longer sets UV_VERSION"
    makefile_version = match.group(1)
    groups = _pyproject()["dependency-groups"]
    assert isinstance(groups, dict)
    assert f"uv=={makefile_version}" in groups["dev"], (
        f"the Makefile bootstraps uv {makefile_version}; pin the same version in the dev "
        "group of pyproject.toml, or `uv sync` removes the locker it runs from"
    )
    assert _locked_versions()["uv"] == makefile_version, "run `make lock` after changing uv"


def test_runtime_dependencies_are_ranges_not_pins() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    published = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        published.extend(extra)
    pinned = [spec for spec in published if "==" in spec or "<" in spec]
    assert not pinned, f"a library must not pin its users: {pinned}"
    unbounded = [spec for spec in published if ">=" not in spec]
    assert not unbounded, f"give every dependency a tested floor (make test-lowest): {unbounded}"


def test_every_direct_dependency_is_in_the_lock() -> None:
    locked = _locked_versions()
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    names = [re.split(r"[<>=!~\[ ]", spec, maxsplit=1)[0] for spec in project["dependencies"]]
    missing = [name for name in names if name.lower() not in locked]
    assert not missing, f"uv.lock is stale (run `make lock`): {missing}"


def test_test_lowest_and_test_latest_install_every_extra() -> None:
    match = re.search(r"^EXTRAS\s*:=\s*(\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "the Makefile no longer sets EXTRAS"
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    declared = sorted(project["optional-dependencies"])
    assert sorted(match.group(1).split(",")) == declared, (
        f"EXTRAS in the Makefile must name every extra in pyproject.toml: {declared}"
    )


def test_the_ci_script_parses_and_runs_make_test() -> None:
    script = ROOT / ".ci" / "run"
    checked = subprocess.run(["bash", "-n", script], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, f".ci/run does not parse: {checked.stderr}"
    assert re.search(r"^make test$", script.read_text(), re.M), ".ci/run must end in make test"


async def test_the_suite_runs_its_event_loops_in_asyncio_debug_mode() -> None:
    # pyproject's asyncio_debug: pytest-asyncio >= 1.2 ignores PYTHONASYNCIODEBUG without it,
    # and debug mode is what reports unawaited coroutines and calls from the wrong thread.
    import asyncio

    assert asyncio.get_running_loop().get_debug()
