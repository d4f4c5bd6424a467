"""The benchmark suite runs end to end in smoke mode.

It checks that ``python -m bench.run --quick`` finishes, exits 0, and writes a JSON
report with every section, every ratio and every performance target, plus the chart.
It asserts nothing about speed: benchmarks measure, tests don't.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SECTIONS = {
    "flood",
    "asks",
    "history",
    "memory",
    "restart",
    "uvloop",
    "imports",
    "stores",
    "server",
    "journal",
    "frames",
    "observability",
    "compression",
}
RATIOS = {
    "flood": {
        "store / naive",
        "store / raw",
        "store / websockets",
        "service.messages / naive",
        "service.messages / raw",
        "service.messages / websockets",
        "store / picows",
        "service.messages / picows",
        "raw aiohttp / picows",
        "service.messages: picows transport / aiohttp transport",
    },
    "asks": {
        "100 in flight: service / naive",
        "100 in flight: service / ceiling",
        "100 in flight: ceiling / naive",
        "sequential p50: service / echo floor",
        "sequential p50: service / naive",
        "sequential asks/s: service / naive",
        "sequential p99: service / echo floor",
        "sequential p50: picows + msgspec / echo floor",
        "sequential p50: naive / echo floor",
        "sequential p50: aiohttp transport / picows transport",
    },
    "history": {"history 200,000 / 10,000"},
    "memory": {"bytes per stored message / frame bytes", "RSS end / start"},
    "restart": set(),
    "uvloop": {
        "service.messages: uvloop / asyncio",
        "sequential p50: uvloop / asyncio",
        "sequential p50 under uvloop / echo floor",
    },
    "imports": set(),
    "stores": {"unasked answers, msg/s: many shared stores / 1"},
    "server": {"idle connections held / attempted"},
    "journal": {
        "journal alone, asks recorded/s: encrypted / plain",
        "journal alone, open ms: encrypted / plain",
        "sequential p50: encrypted journal / plain journal",
        "sequential p50: encrypted journal / no journal",
        "100 in flight asks/s: plain journal / no journal",
        "100 in flight asks/s: encrypted journal / plain journal",
        "100 in flight asks/s: encrypted journal / no journal",
    },
    "frames": {
        "sequential p50: signed / plain",
        "100 in flight asks/s: signed / plain",
        "sequential p50: sealed / plain",
        "100 in flight asks/s: sealed / plain",
    },
    "observability": {
        "flood msg/s: metrics on / off",
        "flood msg/s: otel on / off",
        "sequential p50: metrics on / off",
        "sequential p50: otel on / off",
    },
    "compression": {
        "bytes down per ask: compression / none",
        "bytes up per ask: compression / none",
        "asks/s: compression / none",
        "sequential round trip, ms: compression / none",
    },
}
#: Values checked against a bound that are not ratios (milliseconds, counts).
CHECKS = {"imports": {"import nexus_reactive, ms"}, "server": {"idle connections held"}}
TARGETS = 19
#: The bench group's baselines and chart; `make test-lowest` installs without that group.
BENCH_GROUP = ("websockets", "picows", "matplotlib")


def test_quick_bench_reports_every_section_ratio_and_target(tmp_path: Path) -> None:
    missing = [name for name in BENCH_GROUP if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"the bench group is not installed (no {', '.join(missing)})")
    out, png = tmp_path / "latest.json", tmp_path / "ratios.png"
    # The bench measures the library as applications run it, not in asyncio debug mode.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--json", str(out), "--png", str(png)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"

    results = json.loads(out.read_text())
    assert set(results["sections"]) == SECTIONS
    for name, expected in RATIOS.items():
        section = results["sections"][name]
        assert set(section["ratios"]) == expected, name
        assert section["variants"], name
        for ratio, value in section["ratios"].items():
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (name, ratio)
            assert results["ratios"][f"{name}: {ratio}"] == value
        assert set(section.get("checks", {})) == CHECKS.get(name, set()), name

    targets = results["targets"]
    assert len(targets) == TARGETS
    for target in targets:
        assert isinstance(target["pass"], bool)
        section = results["sections"][target["section"]]
        measured = {**section.get("checks", {}), **section["ratios"]}[target["ratio"]]
        assert target["measured"] == measured
        verdict = "PASS" if target["pass"] else "MISS"
        assert f"{verdict}  {target['goal']}" in proc.stdout

    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_ask_cost_runs_asks_through_an_in_process_transport() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from bench.askcost import ask_cost; "
            "raise SystemExit(ask_cost(1, ((10, 200), (1, 20))))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "10 in flight (200 asks a run)" in proc.stdout
    assert "1 in flight (20 asks a run)" in proc.stdout


def test_journal_threads_splits_the_cost_per_thread() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.journal_threads",
            "--rounds",
            "1",
            "--asks",
            "300",
            "--variants",
            "none,plain",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "writer CPU µs" in proc.stdout and "lag max ms" in proc.stdout
    assert [line.split()[0] for line in proc.stdout.splitlines()[-2:]] == ["none", "plain"]


def test_instruction_counts_run_each_variant_and_check_their_counts() -> None:
    """Without valgrind (CI may lack it): each counted child runs natively here, and the
    counts are checked before valgrind is looked for."""
    script = (
        "import secrets\n"
        "from bench import instructions, servers\n"
        "key = secrets.token_urlsafe(8)\n"
        "lean, flood = servers.start_lean(key), servers.start_flood()\n"
        "try:\n"
        "    for name in instructions._ASKERS:\n"
        "        instructions._child('asks', name, lean.url, key, 120)\n"
        "        instructions._child('sequential', name, lean.url, key, 20)\n"
        "    for name in instructions._FLOODS:\n"
        "        instructions._child('flood', name, flood.url, key, 300)\n"
        "finally:\n"
        "    servers.stop_all()\n"
        "print('ran', len(instructions._ASKERS) + len(instructions._FLOODS))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.split() == ["ran", "6"]
    refused = subprocess.run(
        [sys.executable, "-m", "bench.instructions", "--asks", "500", "100"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "--asks takes two counts, the smaller first (got 500 100)" in refused.stderr
