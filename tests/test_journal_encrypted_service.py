"""The encrypted journal through a real client and server: offline asks across restarts,
a key rotated between lives, a plain journal encrypted in place."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from nexus_reactive import ConfigError, PersistenceError, WebSocketService, use_websocket
from nexus_reactive.journal_migrate import migrate

from .conftest import Nexus
from .test_journal_encrypted import KEY, OTHER, SECRET_TEXT, digest, on_disk, reopen
from .waiting import wait_for


async def test_offline_asks_survive_restarts_encrypted_and_are_sent(
    nexus: Nexus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="nexus_reactive")
    db = tmp_path / "client.db"
    question = "what is the secret plan?"
    first = WebSocketService(nexus.config(persist=db, persist_key=KEY))
    ids = [first.send_query(f"{question} {i}") for i in range(3)]
    await first.flush()
    await first.close()  # never connected: all three wait in the journal
    assert question.encode() not in on_disk(db)

    async with use_websocket(nexus.config(persist=db, persist_key=KEY)) as store:
        assert store.service.outbox_size == 3
        await wait_for(lambda: len(store.messages.value) == 3)
        answers = [m.payload.answer for m in store.messages.value]  # type: ignore[union-attr]
        await store.service.flush()
    assert [m for m in answers if m.encode() in on_disk(db)] == []
    assert question.encode() not in on_disk(db)

    async with use_websocket(nexus.config(persist=db, persist_key=lambda: KEY)) as again:
        assert [m.id for m in again.messages.value] == ids  # the answers, decrypted
        assert again.service.outbox_size == 0
    assert nexus.stats.asks_received == 3
    with pytest.raises(PersistenceError, match="is encrypted: pass the key"):
        WebSocketService(nexus.config(persist=db))
    with pytest.raises(ConfigError, match="persist_key"):
        use_websocket(nexus.config(), persist=db, persist_key="not a key")
    assert "restored 3 unsent message(s)" in caplog.text  # the logs were on
    assert KEY.hex() not in caplog.text and KEY.hex().upper() not in caplog.text


async def test_a_key_rotated_between_lives_sends_what_waited(nexus: Nexus, tmp_path: Path) -> None:
    db = tmp_path / "client.db"
    first = WebSocketService(nexus.config(persist=db, persist_key=KEY))
    waiting = [first.send_query(f"before the rotation {i}") for i in range(2)]
    await first.flush()
    await first.close()

    moved = migrate(db, old_key=KEY, new_key=OTHER)  # `nexus-reactive journal rekey`
    assert (moved.outbox, moved.history, moved.quarantined) == (2, 0, 0)

    before = digest(db)
    with pytest.raises(PersistenceError, match="another key"):
        WebSocketService(nexus.config(persist=db, persist_key=KEY))  # the retired key
    assert digest(db) == before

    async with use_websocket(nexus.config(persist=db, persist_key=OTHER)) as store:
        await wait_for(lambda: len(store.messages.value) == 2)
        assert [m.id for m in store.messages.value] == waiting
        await store.service.flush()
    assert nexus.stats.asks_received == 2


async def test_a_plain_journal_encrypted_in_place_keeps_its_unsent_asks(
    nexus: Nexus, tmp_path: Path
) -> None:
    db = tmp_path / "client.db"
    plain = WebSocketService(nexus.config(persist=db))
    waiting = plain.send_query("asked " + SECRET_TEXT.decode())
    await plain.flush()
    await plain.close()
    assert SECRET_TEXT in on_disk(db)

    migrate(db, old_key=None, new_key=KEY)  # `nexus-reactive journal encrypt`
    assert SECRET_TEXT not in on_disk(db)

    service = WebSocketService(nexus.config(persist=db, persist_key=KEY))
    assert service.outbox_size == 1
    async with service:
        await wait_for(lambda: nexus.stats.asks_received == 1)
        await wait_for(lambda: service.pending_count == 0 and service.outbox_size == 0)
        await service.flush()
    journal = reopen(db)
    try:
        assert [m.id for m in journal.restored_messages()] == [waiting]
    finally:
        journal.close()
