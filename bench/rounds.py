"""How every section runs its variants: round-robin, the start rotating, logged.

Each round runs every variant once, the starting variant rotating from round to
round, so slow drift of the machine (other work, thermal state) spreads over all
variants instead of favouring one. A run returns its metrics (``{"asks/s": ...}``);
:func:`rounds` collects one sample per metric per round and summarizes them.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .stats import summarize

__all__ = ["Run", "log", "rotated", "rounds", "summaries"]

#: One run of a variant: its metrics, by name.
Run = Callable[[], Awaitable[dict[str, float]]]


def log(text: str) -> None:
    """A progress line on stderr (the table goes to stdout at the end)."""
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def rotated(items: Sequence[Any], by: int) -> list[Any]:
    """``items`` starting at ``by`` (modulo their number), wrapping around."""
    k = by % len(items)
    return [*items[k:], *items[:k]]


def summaries(samples: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """Each variant's samples, metric by metric, summarized (median and spread)."""
    return {
        name: {metric: summarize(values) for metric, values in metrics.items()}
        for name, metrics in samples.items()
    }


async def rounds(section: str, rounds: int, runs: Sequence[tuple[str, Run]]) -> dict[str, Any]:
    """Run every variant once per round, interleaved; log each run under ``section``'s
    letter; return the summaries of each variant's metrics."""
    samples: dict[str, dict[str, list[float]]] = {name: {} for name, _ in runs}
    for r in range(rounds):
        for name, run in rotated(runs, r):
            gc.collect()
            result = await run()
            for metric, value in result.items():
                samples[name].setdefault(metric, []).append(value)
            shown = ", ".join(f"{k} {v:,.1f}" for k, v in result.items())
            log(f"{section} round {r + 1}/{rounds}: {name}: {shown}")
    return summaries(samples)
