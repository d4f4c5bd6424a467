"""Migrating a journal (encrypt, decrypt, rekey) and the `nexus-reactive journal` command:
every row kept with its number, atomic, never while a client has the journal open."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import stat
import sys
from pathlib import Path

import pytest

from nexus_reactive import PersistenceError
from nexus_reactive.cli import main
from nexus_reactive.journal_migrate import migrate
from nexus_reactive.persist import Journal

from .test_journal_encrypted import database, digest, make, on_disk
from .waiting import EVENTUALLY

ROOT = Path(__file__).resolve().parents[1]
KEY = secrets.token_bytes(32)
OTHER = secrets.token_bytes(32)
SECRET = b"the-plaintext-that-must-not-be-on-disk"


def contents(db: Path, key: bytes | None) -> tuple[list[tuple[str, bool, bytes]], list[bytes]]:
    journal = Journal(db, key=key, history_limit=10_000)
    try:
        return journal.restored.outbox, journal.restored.history
    finally:
        journal.close()


def numbers(db: Path) -> tuple[list[int], list[int], dict[str, int]]:
    with database(db) as conn:
        return (
            [s for (s,) in conn.execute("SELECT seq FROM outbox ORDER BY seq")],
            [s for (s,) in conn.execute("SELECT seq FROM history ORDER BY seq")],
            dict(conn.execute("SELECT name, seq FROM sqlite_sequence")),
        )


def beside(db: Path) -> dict[str, int]:
    """The journal's files and their sizes."""
    return {p.name: p.stat().st_size for p in db.parent.glob(f"{db.name}*")}


def plain_journal(db: Path) -> None:
    """A plain journal with gaps in its numbering: some asks done, more queued."""
    journal = Journal(db)
    for i in range(6):
        journal.queued(f"ask-{i}", i != 3, b"question %d " % i + SECRET)
    for i in range(3):
        journal.received(b"answer %d " % i + SECRET, answers=f"ask-{i}")
    journal.written("ask-3")
    assert journal.flush(EVENTUALLY)
    journal.close()


def test_encrypt_rekey_decrypt_keep_every_row_and_its_number(tmp_path: Path) -> None:
    db = tmp_path / "client.db"
    plain_journal(db)
    original, original_numbers = contents(db, None), numbers(db)
    assert len(original[0]) == 2 and len(original[1]) == 3

    done = migrate(db, old_key=None, new_key=KEY)
    assert (done.outbox, done.history, done.quarantined, done.unreadable) == (2, 3, 0, 0)
    assert SECRET not in on_disk(db)
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}.migrating").exists()
    assert contents(db, KEY) == original and numbers(db) == original_numbers

    with database(db) as conn:
        first_id = conn.execute("SELECT value FROM meta WHERE name='journal_id'").fetchone()
    migrate(db, old_key=KEY, new_key=OTHER)
    with database(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE name='journal_id'").fetchone() != first_id
    with pytest.raises(PersistenceError, match="another key"):
        Journal(db, key=KEY)
    assert contents(db, OTHER) == original and numbers(db) == original_numbers

    migrate(db, old_key=OTHER, new_key=None)
    assert SECRET in on_disk(db)
    assert contents(db, None) == original and numbers(db) == original_numbers
    # New rows continue the numbering where it stopped.
    journal = Journal(db)
    journal.queued("after", True, b"q")
    assert journal.flush(EVENTUALLY)
    journal.close()
    assert numbers(db)[0][-1] == original_numbers[2]["outbox"] + 1


@pytest.mark.parametrize(
    ("start", "old", "new", "said"),
    [
        ("sealed", OTHER, None, "encrypted with another key"),
        ("sealed", None, OTHER, "already encrypted.*journal rekey"),
        ("plain", KEY, None, "is not encrypted.*journal encrypt"),
    ],
)
def test_a_wrong_key_or_kind_changes_nothing(
    tmp_path: Path, start: str, old: bytes | None, new: bytes | None, said: str
) -> None:
    db = tmp_path / "client.db"
    make(db, key=KEY if start == "sealed" else None)
    before = digest(db)
    with pytest.raises(PersistenceError, match=said):
        migrate(db, old_key=old, new_key=new)
    assert digest(db) == before
    assert not Path(f"{db}.migrating").exists()


def test_no_journal_there_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PersistenceError, match="there is no journal at"):
        migrate(tmp_path / "missing.db", old_key=None, new_key=KEY)
    other = tmp_path / "other.db"
    with database(other) as conn:
        conn.execute("CREATE TABLE notes (x)")
    with pytest.raises(PersistenceError, match="holds no journal"):
        migrate(other, old_key=None, new_key=KEY)
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"not a database" * 100)
    with pytest.raises(PersistenceError, match=r"corrupt.*was not changed"):
        migrate(broken, old_key=None, new_key=KEY)


def test_a_failure_mid_copy_leaves_the_journal_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "client.db"
    make(db, asks=10, answers=5, key=KEY)
    before, restored = digest(db), contents(db, KEY)
    before = digest(db)

    def fail(copied: int) -> None:
        if copied == 7:
            raise OSError(28, "No space left on device")

    with pytest.raises(PersistenceError, match=r"No space left on device.*was not changed"):
        migrate(db, old_key=KEY, new_key=OTHER, on_row=fail)
    assert digest(db) == before
    assert not Path(f"{db}.migrating").exists()
    assert contents(db, KEY) == restored  # the lock was released, the old key opens it


_MIGRATE_SLOWLY = """
import sys
from nexus_reactive.journal_migrate import migrate

def pause(copied):
    if copied == 3:
        print("copying", flush=True)
        sys.stdin.readline()  # killed here

migrate(sys.argv[1], old_key=bytes.fromhex(sys.argv[2]), new_key=None, on_row=pause)
"""


async def test_a_migration_killed_mid_copy_leaves_the_journal_intact(tmp_path: Path) -> None:
    db = tmp_path / "client.db"
    make(db, asks=10, answers=5, key=KEY)
    restored = contents(db, KEY)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _MIGRATE_SLOWLY,
        str(db),
        KEY.hex(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), EVENTUALLY)
        assert line == b"copying\n"
        # Meanwhile no client can open it, and the error says who has it.
        with pytest.raises(PersistenceError, match=f"process {process.pid} is using it"):
            Journal(db, key=KEY)
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
        assert process.stdin is not None
        process.stdin.close()
    assert "client.db.migrating" in beside(db)  # half a plain copy: the next run removes it
    assert contents(db, KEY) == restored
    migrate(db, old_key=KEY, new_key=None)
    assert "client.db.migrating" not in beside(db)
    assert contents(db, None) == restored


_WRITE_AND_DIE = """
import sys
from nexus_reactive.persist import Journal
journal = Journal(sys.argv[1])
for i in range(20):
    journal.queued(f"ask-{i}", True, b"question %d" % i)
journal.flush()
print("written", flush=True)
sys.stdin.read()
"""


async def test_rows_only_in_the_write_ahead_log_of_a_crashed_client_are_kept(
    tmp_path: Path,
) -> None:
    db = tmp_path / "client.db"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _WRITE_AND_DIE,
        str(db),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), EVENTUALLY)
        assert line == b"written\n"
        with pytest.raises(
            PersistenceError, match=f"process {process.pid} is using it.*Nothing was changed"
        ):
            migrate(db, old_key=None, new_key=KEY)
    finally:
        process.send_signal(signal.SIGKILL)  # no checkpoint: the rows are in the log
        await process.wait()
        assert process.stdin is not None
        process.stdin.close()
    assert beside(db)["client.db-wal"] > 0
    assert migrate(db, old_key=None, new_key=KEY).outbox == 20
    assert "client.db-wal" not in beside(db)  # no log of the old file next to the new one
    outbox, _ = contents(db, KEY)
    assert [key for key, _, _ in outbox] == [f"ask-{i}" for i in range(20)]


def test_unreadable_rows_and_the_quarantine_are_carried_over(tmp_path: Path) -> None:
    db = tmp_path / "client.db"
    make(db, asks=3, answers=2, key=KEY)
    with database(db) as conn:
        conn.execute("UPDATE outbox SET sealed = X'00' WHERE key = 'ask-0'")
    done = migrate(db, old_key=KEY, new_key=OTHER)
    assert (done.outbox, done.history, done.quarantined, done.unreadable) == (2, 2, 1, 1)
    with database(db) as conn:
        assert conn.execute("SELECT source, key, value FROM quarantine").fetchall() == [
            ("outbox", "ask-0", b"\x00")
        ]
    assert [key for key, _, _ in contents(db, OTHER)[0]] == ["ask-1", "ask-2"]
    assert migrate(db, old_key=OTHER, new_key=KEY).quarantined == 1  # still kept


# -- the command --------------------------------------------------------------------------


def keyfile(tmp_path: Path, name: str, key: bytes) -> Path:
    path = tmp_path / name
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    return path


def test_keygen_writes_an_owner_only_hex_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.key"
    assert main(["journal", "keygen", "--out", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert re.fullmatch(r"[0-9a-f]{64}\n", path.read_text())
    out, err = capsys.readouterr()
    assert out == "" and path.read_text().strip() not in err
    assert main(["journal", "keygen", "--out", str(path)]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    path.chmod(0o644)
    old = path.read_text()
    assert main(["journal", "keygen", "--out", str(path), "--force"]) == 0
    assert path.read_text() != old and stat.S_IMODE(path.stat().st_mode) == 0o600
    capsys.readouterr()
    assert main(["journal", "keygen", "--out", "-"]) == 0
    assert re.fullmatch(r"[0-9a-f]{64}\n", capsys.readouterr().out)


def test_encrypt_check_rekey_decrypt_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "client.db"
    plain_journal(db)
    original = contents(db, None)
    first, second = keyfile(tmp_path, "first.key", KEY), keyfile(tmp_path, "second.key", OTHER)

    assert main(["journal", "check", str(db)]) == 0
    assert "plain (not encrypted)" in capsys.readouterr().out
    assert main(["journal", "encrypt", str(db), "--key-file", str(first)]) == 0
    out, err = capsys.readouterr()
    assert "encrypted (2 outbox and 3 history rows)" in out and err == ""
    assert main(["journal", "check", str(db), "--key-file", str(first)]) == 0
    assert "every row authenticates" in capsys.readouterr().out
    assert (
        main(["journal", "rekey", str(db), "--key-file", str(first), "--new-key-file", str(second)])
        == 0
    )
    capsys.readouterr()
    monkeypatch.setenv("NEXUS_JOURNAL_KEY", OTHER.hex())  # the key from the environment
    assert main(["journal", "decrypt", str(db)]) == 0
    out, err = capsys.readouterr()
    assert "plain text now" in out
    for key in (KEY, OTHER):
        assert key.hex() not in out + err
    assert contents(db, None) == original


def test_the_command_speaks_flags_and_never_takes_a_key_as_an_argument(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEXUS_JOURNAL_KEY", raising=False)
    db = tmp_path / "client.db"
    make(db, key=KEY)
    before = digest(db)
    wrong = keyfile(tmp_path, "wrong.key", OTHER)

    assert main(["journal", "decrypt", str(db)]) == 2
    err = capsys.readouterr().err
    assert "--key-file KEYFILE" in err and "NEXUS_JOURNAL_KEY" in err

    assert main(["journal", "decrypt", str(db), "--key-file", str(wrong)]) == 1
    err = capsys.readouterr().err
    assert "encrypted with another key" in err and "--key-file" in err
    assert "persist_key" not in err and OTHER.hex() not in err

    assert main(["journal", "check", str(db), "--key-file", str(wrong)]) == 1
    assert "another key" in capsys.readouterr().err

    password = tmp_path / "password.txt"
    password.write_text("correct horse battery staple\n")
    password.chmod(0o600)
    assert main(["journal", "decrypt", str(db), "--key-file", str(password)]) == 2
    err = capsys.readouterr().err
    assert "got 29 bytes" in err and "journal keygen" in err and "correct horse" not in err

    assert main(["journal", "rekey", str(db), "--key-file", str(wrong)]) == 2
    assert "--new-key-file" in capsys.readouterr().err
    assert main(["journal", "decrypt", str(db), "--key-file", str(tmp_path / "nope")]) == 2
    assert "cannot read --key-file" in capsys.readouterr().err
    assert digest(db) == before

    readable = keyfile(tmp_path, "readable.key", KEY)
    readable.chmod(0o644)
    assert main(["journal", "check", str(db), "--key-file", str(readable)]) == 0
    assert "readable by other users (mode 0644)" in capsys.readouterr().err

    # A key where the path goes is refused without being shown; `--key` is no flag.
    assert main(["journal", "decrypt", str(db), "--key-file", KEY.hex()]) == 2
    err = capsys.readouterr().err
    assert "no file and looks like a key" in err and KEY.hex() not in err
    # Nor is a near miss (0x before it, a character short, half of it), in any part.
    for near in (f"0x{KEY.hex()}", KEY.hex()[:-1], f"'{KEY.hex()[:32]}'"):
        assert main(["journal", "decrypt", str(db), "--key-file", near]) == 2
        err = capsys.readouterr().err
        assert "looks like a key" in err and KEY.hex()[:32] not in err
    with pytest.raises(SystemExit):
        main(["journal", "encrypt", str(db), "--key", KEY.hex()])
    assert KEY.hex() not in capsys.readouterr().err


def test_check_lists_unreadable_and_quarantined_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "client.db"
    make(db, asks=3, answers=1, key=KEY)
    with database(db) as conn:
        conn.execute("UPDATE outbox SET sealed = X'01' WHERE key = 'ask-2'")
    key = keyfile(tmp_path, "journal.key", KEY)
    assert main(["journal", "check", str(db), "--key-file", str(key)]) == 1
    err = capsys.readouterr().err
    assert "outbox row 3 (ask ask-2) cannot be read" in err
    Journal(db, key=KEY).close()  # the open sets it aside
    assert main(["journal", "check", str(db), "--key-file", str(key)]) == 1
    out, err = capsys.readouterr()
    assert "quarantine: 1 row(s)" in out and "in quarantine: outbox row 3 (ask ask-2)" in err


def test_the_command_refuses_a_journal_a_client_has_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "client.db"
    key = keyfile(tmp_path, "journal.key", KEY)
    holder = Journal(db)
    try:
        assert main(["journal", "encrypt", str(db), "--key-file", str(key)]) == 1
        err = capsys.readouterr().err
        assert f"pid {os.getpid()}" in err and "Nothing was changed" in err
    finally:
        holder.close()
