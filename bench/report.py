"""Turning results into a table, the performance targets, JSON and a PNG chart."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TARGETS", "Target", "check_targets", "print_report", "write_json", "write_png"]


@dataclass(frozen=True)
class Target:
    """One performance target: a ratio of one section compared with a bound."""

    section: str
    ratio: str
    goal: str
    at_least: float | None = None
    at_most: float | None = None

    def met(self, value: float) -> bool:
        if self.at_least is not None and not value >= self.at_least:
            return False
        return not (self.at_most is not None and not value <= self.at_most)

    @property
    def bound(self) -> float:
        value = self.at_least if self.at_least is not None else self.at_most
        assert value is not None
        return value


TARGETS = (
    # Issue 14: close to the ceiling.
    Target("flood", "store / raw", "store path >= 0.55x aiohttp's bare receive", at_least=0.55),
    Target(
        "flood",
        "service.messages / raw",
        "service path >= 0.65x aiohttp's bare receive",
        at_least=0.65,
    ),
    Target(
        "asks",
        "sequential p50: service / naive",
        "sequential ask p50 never slower than naive aiohttp + json",
        at_most=1.0,
    ),
    Target(
        "asks",
        "sequential p50: service / echo floor",
        "sequential ask p50 <= 1.4x the TCP echo floor",
        at_most=1.4,
    ),
    Target(
        "asks",
        "sequential p99: service / echo floor",
        "sequential ask p99 <= 2.5x the TCP echo floor",
        at_most=2.5,
    ),
    Target(
        "asks",
        "100 in flight: service / naive",
        "100 asks in flight >= 2.5x naive asks/s",
        at_least=2.5,
    ),
    Target(
        "memory",
        "bytes per stored message / frame bytes",
        "memory per stored message <= 1.3x the frame",
        at_most=1.3,
    ),
    Target("imports", "import nexus_reactive, ms", "import nexus_reactive <= 100 ms", at_most=100),
    Target(
        "stores",
        "unasked answers, msg/s: many shared stores / 1",
        "a shared store costs nothing per answer it did not ask for (>= 0.8x one store)",
        at_least=0.8,
    ),
    Target(
        "server",
        "idle connections held / attempted",
        "the server holds every idle client (5,000 in the full run)",
        at_least=1.0,
    ),
    # The ship gate of a picows transport (issue 14, item 3): both must pass, and the
    # fault and hostile suites unchanged.
    Target(
        "flood",
        "service.messages: picows transport / aiohttp transport",
        "ship gate: picows transport lifts service.messages >= 1.2x",
        at_least=1.2,
    ),
    Target(
        "asks",
        "sequential p50: aiohttp transport / picows transport",
        "ship gate: picows transport lifts sequential ask p50 >= 1.2x",
        at_least=1.2,
    ),
    # Counting costs a few integer increments: the flood and an ask barely move.
    Target(
        "observability",
        "flood msg/s: metrics on / off",
        "metrics on keeps >= 0.9x the flood's msg/s",
        at_least=0.9,
    ),
    Target(
        "observability",
        "sequential p50: metrics on / off",
        "metrics on: sequential ask p50 <= 1.1x off",
        at_most=1.1,
    ),
    # Earlier issues' targets that issue 14 does not tighten.
    Target("flood", "store / naive", "store pipeline >= 1.5x aiohttp + json.loads", at_least=1.5),
    Target("flood", "store / websockets", "store pipeline >= 2x websockets + json", at_least=2.0),
    Target(
        "flood",
        "service.messages / naive",
        "service.messages >= 1.6x aiohttp + json.loads",
        at_least=1.6,
    ),
    Target(
        "history",
        "history 200,000 / 10,000",
        "store throughput at 200k history >= 0.8x at 10k",
        at_least=0.8,
    ),
    Target("memory", "RSS end / start", "flat RSS: end <= 1.05x start after warm-up", at_most=1.05),
)


def check_targets(sections: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of a section that ran, with its measured ratio and PASS/MISS."""
    checked = []
    for target in TARGETS:
        section = sections.get(target.section)
        if section is None:
            continue
        value = {**section.get("checks", {}), **section["ratios"]}[target.ratio]
        checked.append(
            {
                "section": target.section,
                "goal": target.goal,
                "ratio": target.ratio,
                "bound": target.bound,
                "measured": value,
                "pass": target.met(value),
            }
        )
    return checked


def _number(value: float) -> str:
    if math.isinf(value) or math.isnan(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def _rows(variants: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for name, summary in variants.items():
        if "median" in summary:
            rows.append((name, summary))
        else:
            rows.extend((f"{name}  [{metric}]", s) for metric, s in summary.items())
    return rows


def print_report(results: dict[str, Any]) -> None:
    """Print the medians and spreads, the ratios, and the targets to stdout."""
    sections: dict[str, Any] = results["sections"]
    rounds = results["meta"]["rounds"]
    print()
    loop = results["meta"].get("loop", "asyncio")
    print(f"nexus-reactive benchmark ({rounds} round(s), variants interleaved, {loop} loop)")
    for key, section in sections.items():
        print()
        print(f"== {section['letter']}. {key} ({section['unit']})")
        rows = _rows(section["variants"])
        width = max(len(name) for name, _ in rows)
        print(f"   {'variant':<{width}}  {'median':>12}  {'IQR (q1..q3)':>25}  {'min..max':>25}")
        for name, s in rows:
            iqr = f"{_number(s['q1'])}..{_number(s['q3'])}"
            span = f"{_number(s['min'])}..{_number(s['max'])}"
            print(f"   {name:<{width}}  {_number(s['median']):>12}  {iqr:>25}  {span:>25}")
        if "rss" in section:
            rss = section["rss"]
            print(
                f"   RSS over {rss['messages']:,} messages (max_messages={rss['max_messages']:,}): "
                f"start {rss['start'] / 2**20:.1f} MiB, end {rss['end'] / 2**20:.1f} MiB, "
                f"max {rss['max'] / 2**20:.1f} MiB (first sample {rss['first'] / 2**20:.1f} MiB)"
            )
        for name, value in section["ratios"].items():
            print(f"   ratio  {name}: {_number(value)}x")
        for name, value in section.get("checks", {}).items():
            print(f"   value  {name}: {_number(value)}")
    print()
    print("== performance targets")
    for t in results["targets"]:
        verdict = "PASS" if t["pass"] else "MISS"
        unit = "" if "," in t["ratio"] else "x"
        print(f"   {verdict}  {t['goal']}: measured {_number(t['measured'])}{unit} ({t['ratio']})")
    print()


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write the results as JSON (creating the directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def write_png(results: dict[str, Any], path: Path) -> None:
    """Chart every ratio as a bar; a target's bound is drawn as a tick on its bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bounds = {(t["section"], t["ratio"]): t for t in results["targets"]}
    labels, values, colours, ticks = [], [], [], []
    for key, section in results["sections"].items():
        for name, value in section["ratios"].items():
            target = bounds.get((key, name))
            labels.append(f"{section['letter']}. {name}")
            values.append(value if math.isfinite(value) else 0.0)
            colours.append(
                "tab:gray" if target is None else ("tab:green" if target["pass"] else "tab:red")
            )
            ticks.append(None if target is None else target["bound"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(labels) + 1.5))
    y = list(range(len(labels)))
    ax.barh(y, values, color=colours)
    for i, bound in enumerate(ticks):
        if bound is not None:
            ax.plot([bound, bound], [i - 0.4, i + 0.4], color="black", linewidth=2)
    ax.axvline(1.0, color="gray", linestyle=":", linewidth=1)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("ratio (bar); black tick: the target; green met, red missed")
    ax.set_title(f"nexus-reactive benchmark ratios ({results['meta']['rounds']} round(s))")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
