"""Summaries of repeated measurements: median and spread."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["percentile", "ratio", "summarize"]


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) by linear interpolation between ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(samples: Sequence[float]) -> dict[str, Any]:
    """Median, quartiles, min and max of one variant's samples (one per round)."""
    return {
        "median": statistics.median(samples),
        "q1": percentile(samples, 25),
        "q3": percentile(samples, 75),
        "min": min(samples),
        "max": max(samples),
        "rounds": len(samples),
        "samples": list(samples),
    }


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN-free: a zero denominator gives ``inf``."""
    return numerator / denominator if denominator else float("inf")
