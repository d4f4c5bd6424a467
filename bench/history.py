"""Sections c and d: what the store's history costs, in time and in memory.

c ``history``  the store's append path with 10k, 50k and 200k messages of history.
d ``memory``   bytes retained per stored message (tracemalloc) and RSS over a long
               flood with a bounded history (in a fresh process, :mod:`bench.rss`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from typing import TYPE_CHECKING, Any

from nexus_reactive import codec
from nexus_reactive.messages import Message

from . import library, traffic
from .rounds import log, rotated
from .stats import ratio, summarize

if TYPE_CHECKING:
    from .sections import Suite

__all__ = ["history", "memory"]

# -- c: history size -------------------------------------------------------------


async def history(suite: Suite) -> dict[str, Any]:
    """Messages/s through ``Intake.on_message`` (the store's subscriber of
    ``service.messages``) with a full history of each size, fed pre-decoded
    messages in batches of ``history_batch`` per event-loop tick, so the store
    flushes (emits to its one subscriber) once per batch as under a real flood."""
    p = suite.params
    pool = [codec.decode(f) for f in traffic.response_frames()]
    timed = [pool[i % len(pool)] for i in range(p.history_messages)]
    samples: dict[int, list[float]] = {size: [] for size in p.history_sizes}
    for r in range(p.rounds):
        for size in rotated(list(p.history_sizes), r):
            gc.collect()
            rate = await _history_run(suite, size, pool, timed)
            samples[size].append(rate)
            log(f"c round {r + 1}/{p.rounds}: history {size:,}: {rate:,.0f} msg/s")
    variants = {f"history {size:,}": summarize(s) for size, s in samples.items()}
    lo, hi = min(p.history_sizes), max(p.history_sizes)
    return {
        "unit": "msg/s",
        "driven": "in-process: pre-decoded messages fed to the store's on-message "
        f"subscriber, {p.history_batch} per event-loop tick, history full beforehand",
        "messages": p.history_messages,
        "variants": variants,
        "ratios": {
            f"history {hi:,} / {lo:,}": ratio(
                float(variants[f"history {hi:,}"]["median"]),
                float(variants[f"history {lo:,}"]["median"]),
            )
        },
    }


async def _history_run(suite: Suite, size: int, pool: list[Message], timed: list[Message]) -> float:
    batch = suite.params.history_batch
    async with library.idle_store(suite.flood_url(), suite.api_key, size) as store:
        store.messages.subscribe(lambda history: None)
        # The store's own subscriber of service.messages: the on-message path.
        on_message = store._intake.on_message
        fill = [pool[i % len(pool)] for i in range(size)]
        for i in range(0, size, batch):
            for message in fill[i : i + batch]:
                on_message(message)
            await asyncio.sleep(0)
        if len(store.messages.value) != size:
            raise RuntimeError("history: the store did not fill to max_messages")
        t0 = time.perf_counter()
        for i in range(0, len(timed), batch):
            for message in timed[i : i + batch]:
                on_message(message)
            await asyncio.sleep(0)
        elapsed = time.perf_counter() - t0
    return len(timed) / elapsed


# -- d: memory -------------------------------------------------------------------


async def memory(suite: Suite) -> dict[str, Any]:
    p = suite.params
    store_bytes: list[float] = []
    dict_bytes: list[float] = []
    for r in range(p.rounds):
        frames = traffic.response_frames(p.memory_messages)
        store_bytes.append(await _retained_by_store(suite, frames))
        dict_bytes.append(_retained_by_json(frames))
        log(
            f"d round {r + 1}/{p.rounds}: store {store_bytes[-1]:,.0f} B/msg, "
            f"json.loads dict {dict_bytes[-1]:,.0f} B/msg"
        )
    rss = await _rss_flood(suite)
    log(
        f"d RSS over {p.rss_messages:,} messages: start {rss['start'] / 2**20:,.1f} MiB, "
        f"end {rss['end'] / 2**20:,.1f} MiB, max {rss['max'] / 2**20:,.1f} MiB"
    )
    per_message = summarize(store_bytes)
    return {
        "unit": "bytes per stored message; RSS in bytes",
        "driven": "tracemalloc: distinct frames through the service's frame handler "
        "(decode, dispatch, store) into a store whose history keeps them all; RSS: "
        "a fresh process receiving the long flood from the flood server",
        "frame_bytes": traffic.FRAME_SIZE,
        "messages": p.memory_messages,
        "variants": {
            "store (msgspec structs)": per_message,
            "json.loads dict (reference)": summarize(dict_bytes),
        },
        "rss": rss,
        "ratios": {
            "bytes per stored message / frame bytes": ratio(
                float(per_message["median"]), traffic.FRAME_SIZE
            ),
            "RSS end / start": ratio(rss["end"], rss["start"]),
        },
    }


async def _retained_by_store(suite: Suite, frames: list[bytes]) -> float:
    async with library.idle_store(suite.flood_url(), suite.api_key, len(frames)) as store:
        store.messages.subscribe(lambda history: None)
        on_frame = store.service._receiver.on_frame  # decode -> dispatch -> messages -> store
        batch = suite.params.history_batch
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(0, len(frames), batch):
                for frame in frames[i : i + batch]:
                    on_frame(frame)
                await asyncio.sleep(0)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        if len(store.messages.value) != len(frames):
            raise RuntimeError("memory: the store did not keep every message")
    return (after - before) / len(frames)


async def _rss_flood(suite: Suite) -> dict[str, Any]:
    p = suite.params
    argv = [
        sys.executable,
        "-m",
        "bench.rss",
        suite.flood_url(),
        str(p.rss_messages),
        str(p.rss_max_messages),
    ]
    env = {**os.environ, "NEXUS_API_KEY": suite.api_key}
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"the RSS flood failed:\n{err.decode(errors='replace')[-4000:]}")
    result = json.loads(out)
    samples = result["samples"]
    # After warm-up: from the first sample past 10% of the flood.
    warm = next((i for i, (count, _) in enumerate(samples) if count >= p.rss_messages // 10), 0)
    rss = [value for _, value in samples[warm:]]
    return {
        "messages": p.rss_messages,
        "max_messages": p.rss_max_messages,
        "seconds": result["seconds"],
        "first": samples[0][1],
        "start": rss[0],
        "end": rss[-1],
        "max": max(rss),
        "samples": samples,
    }


def _retained_by_json(frames: list[bytes]) -> float:
    """Bytes retained per message by the naive way: a list of ``json.loads`` dicts."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [json.loads(frame) for frame in frames]
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return (after - before) / len(frames)
