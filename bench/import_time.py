"""Section g ``imports``: ``import nexus_reactive`` (and what the first connection
imports) in fresh interpreters, the import statement alone timed: median of N,
``import aiohttp`` for reference.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from .rounds import log, rotated
from .stats import summarize

if TYPE_CHECKING:
    from .sections import Suite

__all__ = ["IMPORTS", "imports"]

IMPORTS = {
    "import nexus_reactive": "import nexus_reactive",
    "from nexus_reactive import use_websocket, WebSocketService": (
        "from nexus_reactive import use_websocket, WebSocketService"
    ),
    "+ the first connection's modules (aiohttp transport)": (
        "import nexus_reactive, nexus_reactive.aiohttp_transport"
    ),
    "import aiohttp (reference)": "import aiohttp",
}


async def _import_ms(statement: str) -> float:
    code = f"import time\nt = time.perf_counter()\n{statement}\nprint(time.perf_counter() - t)"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    if proc.returncode != 0:
        raise RuntimeError(f"{statement!r} failed:\n{err.decode(errors='replace')[-2000:]}")
    return float(out) * 1e3


async def imports(suite: Suite) -> dict[str, Any]:
    p = suite.params
    samples: dict[str, list[float]] = {name: [] for name in IMPORTS}
    for r in range(p.import_runs):
        for name in rotated(list(IMPORTS), r):
            samples[name].append(await _import_ms(IMPORTS[name]))
    variants = {name: summarize(values) for name, values in samples.items()}
    for name, s in variants.items():
        log(f"g {name}: median {s['median']:.1f} ms of {p.import_runs}")
    first = float(variants["import nexus_reactive"]["median"])
    return {
        "unit": "ms (in a fresh interpreter, the import statement alone)",
        "driven": f"{p.import_runs} fresh interpreters per statement, interleaved",
        "variants": variants,
        "ratios": {},
        "checks": {"import nexus_reactive, ms": first},
    }
