"""The durable journal (persist=): restarts, crashes, corrupt and locked files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nexus_reactive import (
    AskRequest,
    AskResponse,
    NexusError,
    WebSocketConfig,
    WebSocketService,
    use_websocket,
)
from nexus_reactive.persist import Journal, PersistenceError

from .conftest import KEY, Nexus
from .waiting import EVENTUALLY, poll, wait_for

ROOT = Path(__file__).resolve().parents[1]


def durable(db: Path, key: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """The history and the outbox size a journal file holds (encrypted: with ``key``)."""
    if key is not None:
        journal = Journal(db, key=key, history_limit=1_000_000)
        journal.close()
        restored = journal.restored
        assert restored.quarantined == []
        return [json.loads(f) for f in restored.history], len(restored.outbox)
    with sqlite3.connect(db) as conn:
        history = [json.loads(f) for (f,) in conn.execute("SELECT frame FROM history ORDER BY seq")]
        (outbox,) = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
    return history, outbox


async def test_queued_asks_survive_a_restart_and_history_is_restored(
    nexus: Nexus, tmp_path: Path
) -> None:
    db = tmp_path / "client.db"
    first = WebSocketService(nexus.config(persist=db))
    ids = [first.send_query(f"offline {i}") for i in range(5)]
    await first.flush()
    await first.close()  # never connected: all five wait in the journal
    assert nexus.stats.asks_received == 0

    async with use_websocket(nexus.config(persist=db)) as store:
        assert store.service.outbox_size == 5
        await wait_for(lambda: len(store.messages.value) == 5)
        assert [m.id for m in store.messages.value] == ids  # in the order queued
        await store.service.flush()

    async with use_websocket(nexus.config(persist=db)) as again:
        # Restored history, nothing left to send, nothing asked twice.
        assert [m.id for m in again.messages.value] == ids
        assert again.service.outbox_size == 0
        await wait_for(lambda: again.state.value.connected)
    assert nexus.stats.asks_received == 5


async def test_flush_after_close_returns(nexus: Nexus, tmp_path: Path) -> None:
    service = WebSocketService(nexus.config(persist=tmp_path / "client.db"))
    service.send_query("kept")
    await service.close()
    # Everything was committed at close: nothing to wait for (it used to wait forever).
    await asyncio.wait_for(service.flush(), EVENTUALLY)


async def test_clear_messages_clears_the_durable_history(nexus: Nexus, tmp_path: Path) -> None:
    db = tmp_path / "client.db"
    async with use_websocket(nexus.config(persist=db)) as store:
        store.send_message("remember me")
        await wait_for(lambda: len(store.messages.value) == 1)
        store.clear_messages()
        await store.service.flush()
    history, outbox = durable(db)
    assert history == [] and outbox == 0


def test_a_new_journal_and_its_wal_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "private.db"
    journal = Journal(db)
    journal.queued("secret-ask", True, b'{"type":"ask"}')
    assert journal.flush(EVENTUALLY)
    try:
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        wal = Path(f"{db}-wal")
        assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600
    finally:
        journal.close()


def test_an_existing_journal_keeps_its_mode(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    Journal(db).close()
    db.chmod(0o640)  # the user's choice, say for a group that backs it up
    Journal(db).close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o640


def test_a_corrupt_journal_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "broken.db"
    db.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(PersistenceError, match="corrupt") as info:
        Journal(db)
    assert str(db) in str(info.value)


def test_a_persist_path_in_a_missing_folder_or_naming_a_folder_says_so(tmp_path: Path) -> None:
    # The lock file's "No such file or directory. Check the directory's permissions"
    # sent users looking at permissions; a folder got a stray <folder>.lock beside it.
    missing = tmp_path / "not-made-yet" / "client.db"
    with pytest.raises(PersistenceError) as info:
        WebSocketService(WebSocketConfig(url="ws://127.0.0.1:9", api_key=KEY, persist=missing))
    assert str(info.value) == (
        f"the journal {missing} cannot be made: its folder {missing.parent} does not "
        "exist. Create the folder first, or pass another persist= path"
    )
    with pytest.raises(PersistenceError) as info:
        Journal(tmp_path)
    assert str(info.value) == (
        f"the journal {tmp_path} is a folder: a journal is one file; pass its file's "
        f"path, such as {tmp_path / 'client.db'}"
    )
    assert list(tmp_path.parent.glob(f"{tmp_path.name}.lock")) == []
    assert list(tmp_path.iterdir()) == []


def test_a_journal_in_use_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    holder = Journal(db)
    try:
        holder.queued("a", True, b"{}")
        assert holder.flush(EVENTUALLY)
        with pytest.raises(PersistenceError, match="locked"):
            Journal(db)
    finally:
        holder.close()
    Journal(db).close()  # free again once the holder closed


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_crash_mid_flight_every_ask_answered_exactly_once(
    start_nexus: Any, tmp_path: Path, encrypted: bool
) -> None:
    """SIGKILL a client with asks in flight on a slow server; a second life on the
    same journal finishes the job: every ask answered, each answer recorded once.
    Encrypted, the sealed rows the first life left in the write-ahead log open too."""
    gate = asyncio.Event()
    count = 20

    async def slow(request: AskRequest) -> AskResponse:
        if int(request.query.split()[-1]) >= 5:
            await gate.wait()  # the first five answer at once, the rest hang
        return AskResponse(answer=f"answer to {request.query}")

    server = await start_nexus(engine=slow)
    db = tmp_path / "crash.db"
    env = {"NEXUS_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
    journal_key = secrets.token_hex(32)
    if encrypted:
        env["NEXUS_JOURNAL_KEY"] = journal_key

    def spawn(send: int, expect: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.crash_client",
                str(db),
                server.url,
                str(send),
                str(expect),
            ],
            cwd=ROOT,
            env={**env, "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            text=True,
        )

    with spawn(count, 0) as life1:
        try:
            assert life1.stdout is not None
            # On a timeout, the kill below ends the read.
            line = await asyncio.wait_for(asyncio.to_thread(life1.stdout.readline), EVENTUALLY)
            assert line.strip() == "queued"
            await wait_for(lambda: server.stats.asks_received >= count)
            await wait_for(lambda: server.stats.engine_calls >= count)
        finally:
            life1.send_signal(signal.SIGKILL)
            await asyncio.to_thread(life1.wait)
    assert life1.returncode == -signal.SIGKILL

    gate.set()
    with spawn(0, count) as life2:
        try:
            assert life2.stdout is not None
            out = await asyncio.wait_for(asyncio.to_thread(life2.stdout.read), EVENTUALLY)
            assert out.split() == ["queued", "done"]
            assert await asyncio.to_thread(life2.wait) == 0
        finally:
            if life2.poll() is None:
                life2.kill()
                await asyncio.to_thread(life2.wait)

    history, outbox = durable(db, journal_key if encrypted else None)
    responses = [m for m in history if m["type"] == "response"]
    answers = sorted(m["payload"]["answer"] for m in responses)
    assert answers == sorted(f"answer to question {i}" for i in range(count))
    assert len({m["id"] for m in responses}) == count  # each answer once
    assert outbox == 0  # nothing left to send


def test_journal_restores_in_order(tmp_path: Path) -> None:
    db = tmp_path / "order.db"
    journal = Journal(db)
    for i in range(5):
        journal.queued(f"k{i}", i % 2 == 0, f'{{"i":{i}}}'.encode())
    journal.written("k1")
    journal.received(b'{"type":"response","id":"k0","payload":{"answer":"a"}}', answers="k0")
    assert journal.flush(EVENTUALLY)
    journal.close()
    again = Journal(db)
    try:
        assert [key for key, _, _ in again.restored.outbox] == ["k2", "k3", "k4"]
        assert [ask for _, ask, _ in again.restored.outbox] == [True, False, True]
        assert len(again.restored.history) == 1
    finally:
        again.close()


async def test_answers_are_recorded_when_their_ask_is_done(nexus: Nexus, tmp_path: Path) -> None:
    db = tmp_path / "answers.db"
    async with WebSocketService(nexus.config(persist=db)) as service:
        answer = await service.ask("durable?")
        await service.flush()
    history, outbox = durable(db)
    assert outbox == 0
    assert [m["payload"]["answer"] for m in history] == [answer.answer]


def test_a_failing_write_is_reported_retried_and_loses_nothing(tmp_path: Path) -> None:
    """A database that stops accepting writes (here: full) while the client runs."""
    errors: list[PersistenceError] = []
    db = tmp_path / "full.db"
    journal = Journal(db, on_error=errors.append)
    try:
        assert journal.flush(EVENTUALLY)
        (pages,) = journal._db.execute("PRAGMA page_count").fetchone()
        journal._db.execute(f"PRAGMA max_page_count = {pages}")  # no room to grow
        journal.queued("big-ask", True, b"x" * 100_000)
        assert not journal.flush(0.5)  # not durable yet (it cannot be)...
        poll(lambda: errors)  # ...and said so, from the writer thread
        assert "retried" in str(errors[0])
        journal._db.execute("PRAGMA max_page_count = 1000000")
        assert journal.flush(EVENTUALLY)  # the retry commits it
    finally:
        journal.close()
    again = Journal(db)
    try:
        assert [key for key, _, _ in again.restored.outbox] == ["big-ask"]
    finally:
        again.close()


# == lock contention (issue 12, defect 10) ==================================================

# "At once": well under sqlite3's 5 s busy timeout, which used to block the loop, and
# well over what a loaded machine's scheduling adds to a quick failure.
AT_ONCE = 2.5  # seconds

_HOLD_JOURNAL = """
import sys
from nexus_reactive.persist import Journal
journal = Journal(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()
"""

_HOLD_DATABASE = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA locking_mode=EXCLUSIVE")
db.execute("CREATE TABLE IF NOT EXISTS t (x)")
db.execute("BEGIN EXCLUSIVE")
print("ready", flush=True)
sys.stdin.read()
"""


async def _holder(script: str, db: Path) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        str(db),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), EVENTUALLY)
    assert line == b"ready\n"
    return process


async def _release(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()
    if process.stdin is not None:
        process.stdin.close()


class Ticker:
    """A task that ticks every 10 ms and records the longest gap: the loop's pulse."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.ticks = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            now = loop.time()
            self.longest = max(self.longest, now - last)
            self.ticks += 1
            last = now

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_a_journal_held_by_another_process_fails_at_once_naming_it(
    nexus: Nexus, tmp_path: Path
) -> None:
    db = tmp_path / "held.db"
    holder = await _holder(_HOLD_JOURNAL, db)
    try:
        ticker = Ticker()
        await wait_for(lambda: ticker.ticks >= 3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(PersistenceError) as info:
            WebSocketService(nexus.config(persist=db))
        with pytest.raises(PersistenceError):
            use_websocket(nexus.config(), persist=db)
        elapsed = loop.time() - started
        await wait_for(lambda: ticker.ticks >= 10)  # the loop keeps beating
        await ticker.stop()
        # It used to block the loop for sqlite3's 5 s busy timeout.
        assert elapsed < AT_ONCE, elapsed
        assert ticker.longest < AT_ONCE, ticker.longest
        text = str(info.value)
        assert str(db) in text
        assert f"process {holder.pid}" in text and "persist=" in text
        assert isinstance(info.value, NexusError)
    finally:
        await _release(holder)
    # A holder that died (SIGKILL included) leaves its lock file, and no lock.
    Journal(db).close()


async def test_a_database_locked_by_another_program_fails_at_once(tmp_path: Path) -> None:
    db = tmp_path / "sqlite-held.db"
    holder = await _holder(_HOLD_DATABASE, db)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(PersistenceError, match="locked") as info:
            Journal(db)
        assert loop.time() - started < AT_ONCE
        assert str(db) in str(info.value) and "persist=" in str(info.value)
    finally:
        await _release(holder)
    Journal(db).close()  # the lock file of the failed attempt was released
