"""``python -m bench.run``: run the suite, print the table, write JSON and a PNG.

Usage::

    python -m bench.run [--quick] [--rounds R] [--messages N] [--only a,b,...]
                        [--loop asyncio|uvloop] [--json PATH] [--png PATH]

Sections: a flood, b asks, c history, d memory, e restart, f uvloop, g imports,
h stores, i server, j journal, k frames, l observability, m compression
(letters or names).
Every server process the suite starts is stopped before it exits, also on Ctrl-C,
SIGTERM or failure. Exit code 0 when every section ran, whatever the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import secrets
import signal
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from . import report, servers
from .sections import SECTIONS, Params, Suite

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke mode: small sizes, 1 round, every section"
    )
    parser.add_argument("--rounds", type=int, help="rounds of each section (default 5; quick 1)")
    parser.add_argument("--messages", type=int, help="frames per flood in section a")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated sections to run: a-m or "
        "flood,asks,history,memory,restart,uvloop,imports,stores,server,journal,frames,"
        "observability,compression",
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the event loop the suite runs on (section f compares both either way)",
    )
    parser.add_argument(
        "--json", type=Path, default=RESULTS / "latest.json", help="where to write the JSON"
    )
    parser.add_argument(
        "--png",
        default=str(RESULTS / "ratios.png"),
        help="where to write the chart of the ratios ('' for none)",
    )
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.messages is not None and args.messages < 1:
        parser.error("--messages must be at least 1")
    try:
        args.sections = _sections(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def _sections(only: str) -> list[str]:
    names = list(SECTIONS.values())
    if not only.strip():
        return names
    chosen = set()
    for item in only.split(","):
        item = item.strip()
        name = SECTIONS.get(item, item)
        if name not in names:
            raise ValueError(f"unknown section {item!r}; choose from a-m or {', '.join(names)}")
        chosen.add(name)
    return [name for name in names if name in chosen]


def _params(args: argparse.Namespace) -> Params:
    params = Params.quick() if args.quick else Params()
    if args.rounds is not None:
        params.rounds = args.rounds
        params.restart_rounds = args.rounds
    if args.messages is not None:
        params.messages = args.messages
    return params


def _meta(args: argparse.Namespace, params: Params) -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "loop": args.loop,
        "rounds": params.rounds,
        "params": {k: v for k, v in vars(params).items()},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": {
            name: version(name)
            for name in (
                "nexus-reactive",
                "aiohttp",
                "msgspec",
                "reactivex",
                "websockets",
                "picows",
                "uvloop",
                "opentelemetry-sdk",
            )
        },
    }


async def _run(suite: Suite, sections: list[str]) -> dict[str, Any]:
    letters = {name: letter for letter, name in SECTIONS.items()}
    results: dict[str, Any] = {}
    try:
        for name in sections:
            t0 = time.perf_counter()
            section = await getattr(suite, name)()
            section["letter"] = letters[name]
            section["seconds"] = time.perf_counter() - t0
            results[name] = section
    finally:
        suite.close()
    return results


def _loop_factory(loop: str) -> Any:
    if loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def _on_sigterm(signum: int, _frame: object) -> None:
    # Become an exception, so that every finally-block stops its servers.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the suite; return the exit code."""
    args = _parse(argv)
    params = _params(args)
    signal.signal(signal.SIGTERM, _on_sigterm)
    # One fresh key for every server of this run, never printed.
    api_key = secrets.token_urlsafe(24)
    suite = Suite(params, api_key)
    t0 = time.perf_counter()
    try:
        with asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner:
            sections = runner.run(_run(suite, args.sections))
    except KeyboardInterrupt:
        print("[bench] interrupted; every server was stopped", file=sys.stderr)
        return 130
    finally:
        servers.stop_all()
    results: dict[str, Any] = {
        "meta": _meta(args, params),
        "sections": sections,
        "targets": report.check_targets(sections),
        "ratios": {
            f"{key}: {name}": value
            for key, section in sections.items()
            for name, value in section["ratios"].items()
        },
    }
    results["meta"]["seconds"] = time.perf_counter() - t0
    report.print_report(results)
    report.write_json(results, args.json)
    print(f"JSON: {args.json}")
    if args.png:
        report.write_png(results, Path(args.png))
        print(f"PNG:  {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
