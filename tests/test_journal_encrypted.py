"""The encrypted journal (persist= with persist_key=): on disk, on a wrong key, when
tampered with. Through a real client and server: tests/test_journal_encrypted_service.py."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexus_reactive import PersistenceError
from nexus_reactive.journal_migrate import migrate
from nexus_reactive.persist import Journal

from .waiting import EVENTUALLY, poll

KEY = secrets.token_bytes(32)
OTHER = secrets.token_bytes(32)
SECRET_TEXT = b"the-plaintext-that-must-not-be-on-disk"


@contextlib.contextmanager
def database(db: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def on_disk(db: Path) -> bytes:
    """Every byte of the journal's files (the database and its write-ahead log)."""
    return b"".join(p.read_bytes() for p in sorted(db.parent.glob(f"{db.name}*")))


def digest(db: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(db.parent.glob(f"{db.name}*"))
        if not p.name.endswith(".lock")
    }


def make(db: Path, asks: int = 3, answers: int = 2, key: bytes | None = KEY) -> None:
    journal = Journal(db, key=key)
    for i in range(asks):
        journal.queued(f"ask-{i}", True, b'{"q":"%d %s"}' % (i, SECRET_TEXT))
    for i in range(answers):
        journal.received(b'{"answer":"%d %s"}' % (i, SECRET_TEXT))
    assert journal.flush(EVENTUALLY)
    journal.close()


def reopen(db: Path, key: bytes | None = KEY, **options: object) -> Journal:
    return Journal(db, key=key, **options)  # type: ignore[arg-type]


def test_what_is_stored_is_encrypted_and_restores_whole(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    journal = Journal(db, key=KEY)
    try:
        journal.queued("ask-0", True, b"question " + SECRET_TEXT)
        journal.queued("msg-1", False, b"message " + SECRET_TEXT)
        journal.received(b"answer " + SECRET_TEXT, answers="ask-0")
        assert journal.flush(EVENTUALLY)
        assert SECRET_TEXT not in on_disk(db)  # in the write-ahead log as well
        assert "encrypted" in repr(journal) and KEY.hex() not in repr(journal)
    finally:
        journal.close()
    assert SECRET_TEXT not in on_disk(db)
    again = reopen(db, key=KEY.hex())  # the same key, as hex
    try:
        assert again.restored.outbox == [("msg-1", False, b"message " + SECRET_TEXT)]
        assert again.restored.history == [b"answer " + SECRET_TEXT]
        assert again.restored.quarantined == []
    finally:
        again.close()


@pytest.mark.parametrize(
    ("made_with", "opened_with", "said"),
    [
        (KEY, None, "is encrypted: pass the key it was made with as persist_key"),
        (KEY, OTHER, "is encrypted with another key"),
        (None, KEY, "is not encrypted, and persist_key= is set.*nexus-reactive journal encrypt"),
    ],
    ids=["missing key", "wrong key", "plain journal with a key"],
)
def test_a_key_that_does_not_fit_is_refused_and_changes_nothing(
    tmp_path: Path, made_with: bytes | None, opened_with: bytes | None, said: str
) -> None:
    db = tmp_path / "j.db"
    make(db, key=made_with)
    before = digest(db)
    with pytest.raises(PersistenceError, match=said) as info:
        reopen(db, key=opened_with)
    assert str(db) in str(info.value) and "changed" in str(info.value)
    assert KEY.hex() not in str(info.value) and OTHER.hex() not in str(info.value)
    assert digest(db) == before  # not a byte written
    reopen(db, key=made_with).close()  # the lock was released; the right key opens it


def test_a_provider_is_called_once_per_open_and_its_failure_touches_nothing(
    tmp_path: Path,
) -> None:
    db = tmp_path / "j.db"
    calls: list[str] = []

    def provider() -> str:
        calls.append("called")
        return KEY.hex()

    reopen(db, key=provider).close()  # type: ignore[arg-type]
    reopen(db, key=provider).close()  # type: ignore[arg-type]
    assert calls == ["called", "called"]

    def broken() -> bytes:
        raise RuntimeError("vault unreachable")

    fresh = tmp_path / "never.db"
    with pytest.raises(PersistenceError, match="provider raised RuntimeError"):
        reopen(fresh, key=broken)  # type: ignore[arg-type]
    assert not fresh.exists() and not Path(f"{fresh}.lock").exists()


def corrupt(value: bytes, how: str) -> bytes:
    if how == "flipped":
        return value[:20] + bytes([value[20] ^ 0x80]) + value[21:]
    if how == "truncated":
        return value[:-3]
    return b""


@pytest.mark.parametrize("how", ["flipped", "truncated", "emptied"])
def test_a_tampered_row_is_set_aside_named_and_the_rest_restored(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "j.db"
    make(db, asks=3, answers=2)
    with database(db) as conn:
        (outbox_seq, sealed) = conn.execute(
            "SELECT seq, sealed FROM outbox WHERE key='ask-1'"
        ).fetchone()
        conn.execute("UPDATE outbox SET sealed = ? WHERE key = 'ask-1'", (corrupt(sealed, how),))
        (history_seq, answer) = conn.execute(
            "SELECT seq, sealed FROM history ORDER BY seq"
        ).fetchone()
        conn.execute(
            "UPDATE history SET sealed = ? WHERE seq = ?", (corrupt(answer, how), history_seq)
        )
    with caplog.at_level(logging.ERROR, logger="nexus_reactive.persist"):
        journal = reopen(db)
    try:
        assert [key for key, _, _ in journal.restored.outbox] == ["ask-0", "ask-2"]
        assert journal.restored.history == [b'{"answer":"1 %s"}' % SECRET_TEXT]
        assert journal.restored.quarantined == [
            f"outbox row {outbox_seq} (ask ask-1)",
            f"history row {history_seq}",
        ]
    finally:
        journal.close()
    logged = caplog.text
    assert f"outbox row {outbox_seq} (ask ask-1) cannot be read" in logged
    assert "quarantine" in logged and str(db) in logged and KEY.hex() not in logged
    with database(db) as conn:  # kept, byte for byte, out of the way
        kept = conn.execute("SELECT source, seq, key, value FROM quarantine ORDER BY id").fetchall()
    assert kept == [
        ("outbox", outbox_seq, "ask-1", corrupt(sealed, how)),
        ("history", history_seq, "", corrupt(answer, how)),
    ]
    again = reopen(db)  # reported once: the next open is clean
    try:
        assert again.restored.quarantined == [] and len(again.restored.outbox) == 2
    finally:
        again.close()


def test_swapped_reordered_and_relabelled_rows_are_detected(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    make(db, asks=5, answers=3)
    with database(db) as conn:
        rows = conn.execute("SELECT seq, key, sealed FROM outbox ORDER BY seq").fetchall()
        # Two asks' ciphertexts swapped.
        conn.execute("UPDATE outbox SET sealed = ? WHERE seq = ?", (rows[1][2], rows[0][0]))
        conn.execute("UPDATE outbox SET sealed = ? WHERE seq = ?", (rows[0][2], rows[1][0]))
        # An ask turned into a message (its flag is bound too).
        conn.execute("UPDATE outbox SET ask = 0 WHERE seq = ?", (rows[2][0],))
        # Two whole rows reordered: their sequence numbers exchanged.
        conn.execute("UPDATE outbox SET seq = -1 WHERE seq = ?", (rows[3][0],))
        conn.execute("UPDATE outbox SET seq = ? WHERE seq = ?", (rows[3][0], rows[4][0]))
        conn.execute("UPDATE outbox SET seq = ? WHERE seq = -1", (rows[4][0],))
        history = conn.execute("SELECT seq, sealed FROM history ORDER BY seq").fetchall()
        conn.execute("UPDATE history SET sealed = ? WHERE seq = ?", (history[1][1], history[0][0]))
    journal = reopen(db)
    try:
        assert journal.restored.outbox == []  # every one of the five was moved
        assert len(journal.restored.quarantined) == 6
        assert journal.restored.history == [
            b'{"answer":"%d %s"}' % (i, SECRET_TEXT) for i in (1, 2)
        ]
    finally:
        journal.close()


def test_a_row_copied_from_another_journal_with_the_same_key_is_detected(tmp_path: Path) -> None:
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    make(first, asks=0, answers=1)
    make(second, asks=0, answers=1)
    with database(first) as conn:
        (sealed,) = conn.execute("SELECT sealed FROM history").fetchone()
    with database(second) as conn:  # the same sequence number as the original there
        conn.execute("UPDATE history SET sealed = ?", (sealed,))
    journal = reopen(second)
    try:
        assert journal.restored.history == [] and journal.restored.quarantined == ["history row 1"]
    finally:
        journal.close()


def test_a_truncated_file_is_a_clear_error_and_is_left_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    make(db, asks=300, answers=0)
    with db.open("r+b") as file:
        file.truncate(db.stat().st_size // 2)
    before = digest(db)
    with pytest.raises(PersistenceError, match="is corrupt") as info:
        reopen(db)
    assert str(db) in str(info.value)
    assert digest(db) == before


def test_a_damaged_or_newer_header_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    make(db)
    with database(db) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE name = 'format'", (b"2",))
    with pytest.raises(PersistenceError, match=r"newer nexus-reactive \(format 2"):
        reopen(db)
    with database(db) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE name = 'format'", (b"1",))
        conn.execute("DELETE FROM meta WHERE name = 'key_check'")
    with pytest.raises(PersistenceError, match="damaged: its encryption header"):
        reopen(db)


def test_a_reader_of_plain_journals_fails_on_an_encrypted_one_instead_of_sending_ciphertext(
    tmp_path: Path,
) -> None:
    db = tmp_path / "j.db"
    make(db)
    with (
        database(db) as conn,
        pytest.raises(sqlite3.OperationalError, match="no such column: frame"),
    ):
        conn.execute("SELECT key, ask, frame FROM outbox ORDER BY seq")  # what a plain reader asks


def test_numbering_continues_across_opens_trims_and_a_failed_write(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    errors: list[PersistenceError] = []
    for life in range(3):
        journal = reopen(db, history_limit=2, on_error=errors.append)
        try:
            assert journal.restored.quarantined == []
            journal.queued(f"ask-{life}", True, b"q")
            journal.queued(f"ask-{life}", True, b"q again")  # replaced: a new row number
            for i in range(3):
                journal.received(b"a%d" % i, answers=f"ask-{life - 1}" if i == 0 else None)
            assert journal.flush(EVENTUALLY)
            if life == 1:  # a batch that fails is retried, sealed again
                (pages,) = journal._db.execute("PRAGMA page_count").fetchone()
                journal._db.execute(f"PRAGMA max_page_count = {pages}")
                journal.queued("big", False, b"x" * 100_000)
                assert not journal.flush(0.5)
                poll(lambda: errors)
                journal._db.execute("PRAGMA max_page_count = 1000000")
                assert journal.flush(EVENTUALLY)
        finally:
            journal.close()
    last = reopen(db, history_limit=2)
    try:
        assert last.restored.quarantined == []
        assert [key for key, _, _ in last.restored.outbox] == ["big", "ask-2"]
        assert last.restored.outbox[1][2] == b"q again"
        assert last.restored.history == [b"a1", b"a2"]
    finally:
        last.close()


def test_writes_from_many_threads_all_read_back(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    journal = reopen(db, history_limit=10_000)
    try:

        def write(t: int) -> None:
            for i in range(100):
                journal.queued(f"{t}-{i}", i % 2 == 0, b"%d" % i)
                journal.received(b"answer %d-%d" % (t, i))

        threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert journal.flush(EVENTUALLY)
    finally:
        journal.close()
    again = reopen(db, history_limit=10_000)
    try:
        assert again.restored.quarantined == []
        assert len(again.restored.outbox) == 400 and len(again.restored.history) == 400
    finally:
        again.close()


def test_an_encrypted_journal_in_use_is_refused_naming_the_holder(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    holder = reopen(db)
    try:
        with pytest.raises(PersistenceError, match="already has a journal open"):
            reopen(db)
        with pytest.raises(PersistenceError, match=r"locked.*Nothing was changed"):
            migrate(db, old_key=KEY, new_key=OTHER)
    finally:
        holder.close()
