"""Check that the installed versions are the floors pyproject.toml declares (make test-lowest).

``uv pip install --resolution lowest-direct`` installs the lowest version of each direct
requirement that resolves together with everything installed beside it. A development
tool that needs a newer one (an SDK that pins the API it was released with, a test
runner's own floor) lifts a declared floor without a word, and the floor our users get
goes untested. This script reads every runtime dependency and every extra from
pyproject.toml, compares each floor (``>=``) with the version installed in the
environment of the interpreter that runs it, prints the table, and fails naming every
package that is installed above its floor, or not at all.

    python tools/floors.py            # the check: exit 1 unless every floor is installed
    python tools/floors.py --report   # the table only, never fails (make test-latest)
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["Declared", "Row", "declared", "installed_version", "main", "problems", "rows", "table"]


@dataclass(frozen=True)
class Declared:
    """One requirement of the published package, and where pyproject.toml declares it."""

    name: str
    floor: str | None  # the ``>=`` version; None when the requirement has none
    where: str  # "dependencies" or "extra 'otel'"


@dataclass(frozen=True)
class Row:
    """A declared requirement next to what is installed (None: not installed)."""

    declared: Declared
    installed: str | None

    @property
    def at_floor(self) -> bool:
        floor, installed = self.declared.floor, self.installed
        return floor is not None and installed is not None and Version(installed) == Version(floor)


def declared(pyproject: Mapping[str, object]) -> list[Declared]:
    """Every requirement in ``[project] dependencies`` and ``optional-dependencies``.

    Requirements whose environment marker is false for this interpreter are left out:
    nothing installs them here.
    """
    project = pyproject.get("project")
    if not isinstance(project, dict):
        raise ValueError("pyproject.toml has no [project] table")
    groups: list[tuple[str, str | None, Iterable[str]]] = [
        ("dependencies", None, project.get("dependencies", []))
    ]
    extras = project.get("optional-dependencies", {})
    groups.extend((f"extra '{extra}'", extra, specs) for extra, specs in extras.items())
    found: list[Declared] = []
    for where, extra, specs in groups:
        for spec in specs:
            requirement = Requirement(spec)
            environment = {"extra": extra} if extra else None
            if requirement.marker and not requirement.marker.evaluate(environment):
                continue
            floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
            floor = str(max(floors)) if floors else None
            found.append(Declared(requirement.name, floor, where))
    return found


def installed_version(name: str) -> str | None:
    """The version of ``name`` installed beside this interpreter, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def rows(
    requirements: Iterable[Declared], installed: Callable[[str], str | None] = installed_version
) -> list[Row]:
    """Each declared requirement with the version installed."""
    return [Row(requirement, installed(requirement.name)) for requirement in requirements]


def problems(found: Iterable[Row]) -> list[str]:
    """What is wrong, one sentence per package, naming the package, its floor and the install."""
    messages: list[str] = []
    for row in found:
        name, floor, where = row.declared.name, row.declared.floor, row.declared.where
        if floor is None:
            messages.append(
                f"{name} ({where}): pyproject.toml declares no '>=' floor. Give it the lowest "
                "version the suite passes with"
            )
        elif row.installed is None:
            messages.append(
                f"{name} ({where}): pyproject.toml declares >={floor}, not installed. Add "
                "the extra to EXTRAS in the Makefile (test-lowest and test-latest install them)"
            )
        elif not row.at_floor:
            messages.append(
                f"{name} ({where}): pyproject.toml declares >={floor}, installed {row.installed}. "
                f"Find what needs the newer one (uv pip tree --python {sys.executable} --invert "
                f"--package {name}) and let it go lower, or raise the floor to the lowest "
                "version the suite passes with and say why in pyproject.toml"
            )
    return messages


def table(found: Sequence[Row]) -> str:
    """The rows as aligned text: package, where declared, floor, installed, verdict."""
    lines = [("package", "declared in", "floor", "installed", "")]
    for row in found:
        verdict = "at floor" if row.at_floor else "above floor" if row.installed else "MISSING"
        lines.append(
            (
                row.declared.name,
                row.declared.where,
                f">={row.declared.floor}" if row.declared.floor else "(none)",
                row.installed or "-",
                verdict,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--report", action="store_true", help="print the table only; never fail (test-latest)"
    )
    parser.add_argument(
        "--pyproject", type=Path, default=ROOT / "pyproject.toml", help="default: the repo's"
    )
    args = parser.parse_args(argv)
    found = rows(declared(tomllib.loads(args.pyproject.read_text())))
    print(table(found))
    if args.report:
        return 0
    messages = problems(found)
    for message in messages:
        print(f"floor not tested: {message}", file=sys.stderr)
    if messages:
        print(
            f"{len(messages)} declared floor(s) of {len(found)} are not what is installed",
            file=sys.stderr,
        )
        return 1
    print(f"all {len(found)} declared floors are the installed versions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
