"""Section j ``journal``: what encrypting the journal at rest (``persist_key=``) costs.

Every variant interleaved round by round, each run in a fresh directory:

- ``asks recorded/s``: N asks go through the journal as a service records them
  (``queued`` with the ask's frame, then ``answered`` with its response frame, which
  deletes the ask and stores the answer), then ``flush()`` waits until all of it is
  committed. From the first ``queued`` to the end of ``flush``.
- ``open ms``: opening a journal that holds ``journal_rows`` unsent asks and as many
  answers (``history_limit`` the same): read, and for the encrypted one authenticate
  and decrypt, every row.
- ``AES-256-GCM alone``: sealing and opening one answer frame, microseconds (the AEAD
  and its associated data, no SQLite).
- ``service.ask``, sequential (p50, p99) and 100 in flight (asks/s), against the lean
  ask server of section b, with no journal, a plain one and an encrypted one: what an
  application sees (the journal writes on its own thread, the service on the loop).
  The ratio ``100 in flight asks/s: plain journal / no journal`` is what keeping a
  journal costs a busy client. ``python -m bench.journal_threads`` splits that cost
  between the event loop's thread and the journal's writer thread.
"""

from __future__ import annotations

import asyncio
import gc
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nexus_reactive import WebSocketConfig, WebSocketService
from nexus_reactive.persist import Journal

from . import servers, traffic
from .baselines import AskFn
from .rounds import Run, rounds
from .stats import ratio

if TYPE_CHECKING:
    from .sections import Params, Suite

__all__ = ["journal"]

QUESTION = "How do I keep the outbox across a restart of the client, and what is sent twice?"
ANSWER = "persist='client.db' keeps the outbox, the pending asks and the history. " * 6


def _frames(i: int) -> tuple[str, bytes, bytes]:
    ask_id = f"ask-{i:08d}"
    ask = b'{"type":"ask","id":"%s","payload":{"query":"%s"}}' % (
        ask_id.encode(),
        QUESTION.encode(),
    )
    answer = b'{"type":"response","id":"%s","payload":{"answer":"%s"}}' % (
        ask_id.encode(),
        ANSWER.encode(),
    )
    return ask_id, ask, answer


def _write(key: bytes | None, asks: int) -> float:
    frames = [_frames(i) for i in range(asks)]
    with tempfile.TemporaryDirectory() as folder:
        journal = Journal(Path(folder) / "client.db", key=key, history_limit=asks)
        try:
            t0 = time.perf_counter()
            for ask_id, ask, answer in frames:
                journal.queued(ask_id, True, ask)
                journal.answered(ask_id, answer)
            journal.flush()
            elapsed = time.perf_counter() - t0
        finally:
            journal.close()
    return asks / elapsed


def _open(key: bytes | None, rows: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "client.db"
        journal = Journal(path, key=key, history_limit=rows)
        for i in range(rows):
            ask_id, ask, answer = _frames(i)
            journal.queued(ask_id, True, ask)
            journal.received(answer)
        journal.flush()
        journal.close()
        gc.collect()
        t0 = time.perf_counter()
        again = Journal(path, key=key, history_limit=rows)
        elapsed = time.perf_counter() - t0
        assert len(again.restored.outbox) == rows and len(again.restored.history) == rows
        again.close()
    return elapsed * 1000


def _cipher(repeats: int) -> dict[str, float]:
    from nexus_reactive.journal_crypto import JournalCipher, new_journal_id

    cipher = JournalCipher(secrets.token_bytes(32), new_journal_id())
    _, _, answer = _frames(0)
    t0 = time.perf_counter()
    sealed = [cipher.seal("history", i, answer) for i in range(repeats)]
    t1 = time.perf_counter()
    for i, value in enumerate(sealed):
        cipher.open("history", i, value)
    t2 = time.perf_counter()
    return {"seal µs": (t1 - t0) / repeats * 1e6, "open µs": (t2 - t1) / repeats * 1e6}


@asynccontextmanager
async def _asker(url: str, api_key: str, key: bytes | None, persist: bool) -> AsyncIterator[AskFn]:
    """A connected service with no journal, a plain one, or an encrypted one."""
    with tempfile.TemporaryDirectory() as folder:
        options: dict[str, Any] = {}
        if persist:
            options = {"persist": Path(folder) / "client.db", "persist_key": key}
        async with WebSocketService(
            WebSocketConfig(url=url, api_key=api_key, **options)
        ) as service:

            async def ask() -> object:
                return await service.ask(traffic.QUERY)

            yield ask


def _alone(key: bytes | None, p: Params) -> Run:
    async def run() -> dict[str, float]:
        written = await asyncio.to_thread(_write, key, p.journal_asks)
        opened = await asyncio.to_thread(_open, key, p.journal_rows)
        return {"asks recorded/s": written, "open ms": opened}

    return run


def _cipher_run(p: Params) -> Run:
    async def run() -> dict[str, float]:
        return await asyncio.to_thread(_cipher, p.journal_asks)

    return run


async def journal(suite: Suite) -> dict[str, Any]:
    p = suite.params
    key = secrets.token_bytes(32)
    lean = servers.start_lean(suite.api_key)
    try:
        url, api_key = lean.url, suite.api_key
        runs: list[tuple[str, Run]] = [
            ("journal alone, plain", _alone(None, p)),
            ("journal alone, encrypted", _alone(key, p)),
            ("AES-256-GCM alone", _cipher_run(p)),
        ]
        for name, persist, journal_key in (
            ("no journal", False, None),
            ("plain journal", True, None),
            ("encrypted journal", True, key),
        ):
            asker = partial(_asker, url, api_key, journal_key, persist)
            runs.append((f"service.ask sequential, {name}", suite._sequential_run(asker, lean)))
            runs.append(
                (f"service.ask {p.concurrency} in flight, {name}", suite._inflight_run(asker, lean))
            )
        await _alone(None, _warm(p))()  # warm-up (the service variants warm up in each run)
        await _alone(key, _warm(p))()
        variants = await rounds("j", p.rounds, runs)
    finally:
        lean.stop()

    def median(name: str, metric: str) -> float:
        return float(variants[name][metric]["median"])

    c = p.concurrency
    sequential, inflight = "service.ask sequential, ", f"service.ask {c} in flight, "
    return {
        "unit": "asks/s; ms; µs",
        "asks": p.journal_asks,
        "rows": p.journal_rows,
        "answer_bytes": len(_frames(0)[2]),
        "variants": variants,
        "ratios": {
            "journal alone, asks recorded/s: encrypted / plain": ratio(
                median("journal alone, encrypted", "asks recorded/s"),
                median("journal alone, plain", "asks recorded/s"),
            ),
            "journal alone, open ms: encrypted / plain": ratio(
                median("journal alone, encrypted", "open ms"),
                median("journal alone, plain", "open ms"),
            ),
            "sequential p50: encrypted journal / plain journal": ratio(
                median(f"{sequential}encrypted journal", "p50 us"),
                median(f"{sequential}plain journal", "p50 us"),
            ),
            "sequential p50: encrypted journal / no journal": ratio(
                median(f"{sequential}encrypted journal", "p50 us"),
                median(f"{sequential}no journal", "p50 us"),
            ),
            f"{c} in flight asks/s: plain journal / no journal": ratio(
                median(f"{inflight}plain journal", "asks/s"),
                median(f"{inflight}no journal", "asks/s"),
            ),
            f"{c} in flight asks/s: encrypted journal / plain journal": ratio(
                median(f"{inflight}encrypted journal", "asks/s"),
                median(f"{inflight}plain journal", "asks/s"),
            ),
            f"{c} in flight asks/s: encrypted journal / no journal": ratio(
                median(f"{inflight}encrypted journal", "asks/s"),
                median(f"{inflight}no journal", "asks/s"),
            ),
        },
    }


def _warm(p: Params) -> Params:
    return replace(p, journal_asks=min(p.journal_asks, 500), journal_rows=min(p.journal_rows, 100))
