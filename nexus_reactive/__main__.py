"""``python -m nexus_reactive``: the same as the ``nexus-reactive`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
