"""Make Solara's front end load without a CDN: fill its asset cache from the npm registry.

A Solara page loads its JavaScript and CSS through the server's ``/_solara/cdn/``
proxy, which serves them from a cache folder (``sys.prefix/share/solara/cdn``) and
fetches what is missing from a CDN. Offline, or behind a firewall that allows only
the package registries, that fetch fails and the page stays blank.

The ``solara-assets`` package fills the cache, but it is released less often than
Solara: a newer Solara can ask for a front-end version it does not carry. This
script reads the exact versions the installed Solara's page asks for and fetches
only those missing, with ``npm pack`` (the npm registry, checked by npm against its
integrity hash), into the cache. Idempotent: nothing is fetched twice.

    python examples/solara_assets.py          # prints what it added, or nothing
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

#: An exact npm version in the page template: ``{{cdn}}/@scope/name@1.2.3/...``.
_PACKAGE = re.compile(r"\{\{\s*cdn\s*\}\}/((?:@[\w.-]+/)?[\w.-]+@\d+\.\d+\.\d+(?:-[\w.]+)?)/")


def cache_dir() -> Path:
    """Where the installed Solara's proxy looks first."""
    from solara.server import settings

    return Path(settings.assets.proxy_cache_dir)


def needed() -> list[str]:
    """The npm packages, with their exact versions, that Solara's page loads."""
    import solara.server

    templates = Path(solara.server.__file__).parent / "templates"
    found: set[str] = set()
    for template in templates.glob("*.j2"):
        found.update(_PACKAGE.findall(template.read_text(encoding="utf-8")))
    return sorted(found)


def missing(directory: Path | None = None) -> list[str]:
    """The packages of :func:`needed` not in the cache yet."""
    root = directory or cache_dir()
    return [spec for spec in needed() if not (root / spec).is_dir()]


def fill(directory: Path | None = None) -> list[str]:
    """Fetch every missing package into the cache; return what was added.

    Raises:
        RuntimeError: ``npm`` failed (not installed, no registry).
    """
    root = directory or cache_dir()
    added = []
    for spec in missing(root):
        with tempfile.TemporaryDirectory() as tmp:
            result = subprocess.run(
                ["npm", "pack", spec, "--silent", "--pack-destination", tmp],
                capture_output=True,
                text=True,
                check=False,
            )
            tarballs = list(Path(tmp).glob("*.tgz"))
            if result.returncode != 0 or len(tarballs) != 1:
                raise RuntimeError(f"npm pack {spec} failed: {result.stderr.strip()}")
            # Unpacked next to its final place, then renamed: a page never sees half of it.
            staging = Path(tempfile.mkdtemp(dir=root.parent if root.parent.exists() else None))
            with tarfile.open(tarballs[0]) as archive:
                archive.extractall(staging, filter="data")
            target = root / spec
            target.parent.mkdir(parents=True, exist_ok=True)
            (staging / "package").rename(target)
            staging.rmdir()
        added.append(spec)
    return added


def main() -> int:
    try:
        added = fill()
    except (RuntimeError, OSError) as exc:
        print(f"could not fill Solara's asset cache: {exc}", file=sys.stderr)
        return 1
    for spec in added:
        print(f"added {spec} to {cache_dir()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
