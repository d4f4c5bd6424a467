"""Where the journal's cost goes, thread by thread: ``python -m bench.journal_threads``.

``service.ask`` with ``--concurrency`` asks in flight against the lean ask server of
section b, with no journal, a plain one and an encrypted one, interleaved round by
round, each run in a child process. Per ask (after a warm-up):

- ``wall µs``: the run's wall time;
- ``loop CPU µs``: CPU time of the event loop's thread (the service and the journal's
  recording calls); ``loop off-CPU µs`` = wall - loop CPU: waiting for the server, for
  the GIL, or for a core;
- ``loop runq µs``: of that, time the loop's thread was runnable but waited for a core
  (``/proc/.../schedstat``): the machine, not the GIL;
- ``writer CPU µs``: CPU time of the journal's writer thread, until ``flush()`` has
  committed everything the run recorded;
- ``loop vcsw``, ``writer vcsw``: voluntary context switches of each thread
  (``/proc``): a thread that sleeps on the GIL or on the queue switches voluntarily;
- ``lag p50 ms``, ``lag max ms``: how long after being recorded a marker frame (one
  every millisecond, through ``received``) was committed: how much a crash would lose;
- ``process CPU µs``: every thread of the client (the machine's cores are shared with
  the server: on a busy machine, asks/s follows the CPU an ask costs);
- ``events/commit``: journal events (``queued`` and ``answered``, two per ask) per
  transaction, and ``ms/commit``: the run's wall time per transaction.

The writer's transactions are counted, and the markers matched, by a wrapper around
the journal's ``_commit`` (once per batch; the recording calls are not wrapped).

``--code DIR`` (repeatable) compares versions of the library A/B: each round runs every
variant once with each ``DIR/nexus_reactive``, interleaved (``git archive REV
nexus_reactive | tar -x -C DIR`` makes one). Linux only (thread clocks and ``/proc``).
No profiler: the threads run at full speed. ``--concurrency 1`` measures sequential
asks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("none", "plain", "encrypted")
METRICS = (
    "asks/s",
    "wall µs",
    "loop CPU µs",
    "loop off-CPU µs",
    "loop runq µs",
    "writer CPU µs",
    "process CPU µs",
    "loop vcsw",
    "writer vcsw",
    "events/commit",
    "ms/commit",
    "lag p50 ms",
    "lag max ms",
)


def _switches(native_id: int) -> tuple[int, int]:
    with open(f"/proc/self/task/{native_id}/status") as status:
        fields = dict(line.split(":", 1) for line in status if "ctxt_switches" in line)
    return int(fields["voluntary_ctxt_switches"]), int(fields["nonvoluntary_ctxt_switches"])


def _runqueue(native_id: int) -> float:
    """Seconds the thread has waited for a core (runnable, not running): schedstat(5)."""
    try:
        with open(f"/proc/self/task/{native_id}/schedstat") as schedstat:
            return int(schedstat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class _Writer:
    """The journal's writer thread, seen from outside: its CPU clock and switches."""

    def __init__(self) -> None:
        found = [t for t in threading.enumerate() if t.name == "nexus-reactive-journal"]
        self.thread = found[0] if found else None

    def cpu(self) -> float:
        if self.thread is None or self.thread.ident is None:
            return 0.0
        return time.clock_gettime(time.pthread_getcpuclockid(self.thread.ident))

    def switches(self) -> tuple[int, int]:
        if self.thread is None or self.thread.native_id is None:
            return 0, 0
        return _switches(self.thread.native_id)


class _Commits:
    """The journal's transactions, counted by a wrapper around its commit (once per
    batch), and how long after being recorded a marker frame became durable."""

    def __init__(self) -> None:
        from nexus_reactive import persist

        self.count = 0
        self.recorded: dict[bytes, float] = {}
        self.lags: list[float] = []
        journal: Any = persist.Journal
        commit = journal._commit

        def committing(journal: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
            result = commit(journal, batch, *args, **kwargs)
            now = time.perf_counter()
            self.count += 1
            # The frames it holds: a list of operations, or a batch with a history.
            frames = batch if isinstance(batch, list) else getattr(batch, "history", ())
            for frame in frames:
                frame = frame[2] if isinstance(frame, tuple) else frame
                if frame is not None and frame.startswith(b'{"marker"'):
                    recorded = self.recorded.pop(frame, None)
                    if recorded is not None:
                        self.lags.append(now - recorded)
            return result

        journal._commit = committing

    async def mark(self, journal: Any) -> None:
        """Record a marker frame every millisecond until cancelled."""
        i = 0
        while True:
            frame = b'{"marker":%d}' % i
            self.recorded[frame] = time.perf_counter()
            journal.received(frame)
            i += 1
            await asyncio.sleep(0.001)


async def _measure(
    url: str, api_key: str, variant: str, asks: int, concurrency: int
) -> dict[str, float]:
    from nexus_reactive import WebSocketConfig, WebSocketService

    commits = _Commits() if variant != "none" else None
    with tempfile.TemporaryDirectory() as folder:
        options: dict[str, Any] = {}
        if variant != "none":
            options["persist"] = Path(folder) / "client.db"
        if variant == "encrypted":
            options["persist_key"] = secrets.token_bytes(32)
        async with WebSocketService(
            WebSocketConfig(url=url, api_key=api_key, **options)
        ) as service:
            for _ in range(200):
                await service.ask("warm up")
            await service.flush()
            writer = _Writer()
            loop_id = threading.get_native_id()
            left = asks

            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await service.ask("What is the Nexus protocol, in one sentence?")

            commits0 = commits.count if commits else 0
            marks = asyncio.create_task(commits.mark(service._journal)) if commits else None
            lv0, li0 = _switches(loop_id)
            wv0, wi0 = writer.switches()
            w0 = writer.cpu()
            q0 = _runqueue(loop_id)
            c0 = time.thread_time()
            p0 = time.process_time()
            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            wall = time.perf_counter() - t0
            if marks is not None:
                marks.cancel()
            loop_cpu = time.thread_time() - c0
            runq = _runqueue(loop_id) - q0
            process_cpu = time.process_time() - p0
            lv1, li1 = _switches(loop_id)
            await service.flush()
            w1 = writer.cpu()
            wv1, wi1 = writer.switches()
            batches = commits.count - commits0 if commits else 0
            lags = sorted(commits.lags) if commits else [0.0]
    return {
        "asks/s": asks / wall,
        "wall µs": wall / asks * 1e6,
        "loop CPU µs": loop_cpu / asks * 1e6,
        "loop off-CPU µs": (wall - loop_cpu) / asks * 1e6,
        "loop runq µs": runq / asks * 1e6,
        "writer CPU µs": (w1 - w0) / asks * 1e6,
        "process CPU µs": process_cpu / asks * 1e6,
        "loop vcsw": (lv1 - lv0) / asks,
        "loop ivcsw": (li1 - li0) / asks,
        "writer vcsw": (wv1 - wv0) / asks,
        "writer ivcsw": (wi1 - wi0) / asks,
        # Two events per ask: queued, then answered.
        "events/commit": 2 * asks / batches if batches else 0.0,
        "ms/commit": wall / batches * 1e3 if batches else 0.0,
        "lag p50 ms": lags[len(lags) // 2] * 1e3,
        "lag max ms": lags[-1] * 1e3,
    }


def _child(args: argparse.Namespace) -> None:
    import nexus_reactive

    result = asyncio.run(
        _measure(args.url, args.api_key, args.variant, args.asks, args.concurrency)
    )
    result["code"] = str(Path(nexus_reactive.__file__).parents[1])  # type: ignore[assignment]
    print(json.dumps(result), flush=True)


def _spawn(
    code: str | None, variant: str, url: str, api_key: str, args: argparse.Namespace
) -> dict[str, Any]:
    env = dict(os.environ)
    if code is not None:
        # -P: the working directory does not come first; DIR's nexus_reactive does.
        env["PYTHONPATH"] = os.pathsep.join([code, str(ROOT)])
    argv = [sys.executable, *(["-P"] if code is not None else []), "-m", "bench.journal_threads"]
    argv += ["--child", "--url", url, f"--api-key={api_key}", "--variant", variant]
    argv += ["--asks", str(args.asks), "--concurrency", str(args.concurrency)]
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{variant} ({code}) failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if code is not None and not result["code"].startswith(str(Path(code).resolve())):
        raise SystemExit(f"the child imported nexus_reactive from {result['code']}, not {code}")
    return result


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.journal_threads", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--asks", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="none,plain,encrypted")
    parser.add_argument(
        "--code",
        action="append",
        help="a directory holding a nexus_reactive to measure (repeat: A/B)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.child:
        _child(args)
        return
    from . import servers

    api_key = secrets.token_urlsafe(16)
    lean = servers.start_lean(api_key)
    codes: list[str | None] = list(args.code or [None])
    variants = [v for v in args.variants.split(",") if v]
    runs = [(code, variant) for variant in variants for code in codes]
    samples: dict[tuple[str | None, str], list[dict[str, Any]]] = {run: [] for run in runs}
    try:
        for r in range(args.rounds):
            k = r % len(runs)
            for code, variant in [*runs[k:], *runs[:k]]:
                result = _spawn(code, variant, lean.url, api_key, args)
                samples[code, variant].append(result)
                shown = ", ".join(f"{m} {result[m]:,.2f}" for m in METRICS)
                print(
                    f"[bench] round {r + 1}/{args.rounds} {variant} {code or ''}: {shown}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        lean.stop()
    print(
        f"medians of {args.rounds} round(s), {args.asks} asks, "
        f"{args.concurrency} in flight, per ask:"
    )
    print(f"{'':28}" + "".join(f"{m:>14}" for m in METRICS))
    for code, variant in runs:
        name = f"{variant} {Path(code).name if code else ''}"
        values = [statistics.median(s[m] for s in samples[code, variant]) for m in METRICS]
        print(f"{name:28}" + "".join(f"{v:14,.2f}" for v in values))


if __name__ == "__main__":
    main()
