"""A journal's path expands ``~`` wherever one is taken, as ``signing_key=`` does:
``persist=`` (a service, a store, a :class:`Journal`) and the ``journal`` command's
PATH and key files, quoted so that no shell expanded them. ``HOME`` is a test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nexus_reactive import PersistenceError, WebSocketService, use_websocket
from nexus_reactive.cli import main
from nexus_reactive.persist import Journal

from .conftest import Nexus


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``~`` is ``tmp_path/home``; the working folder is another, so a literal ``~``
    folder made by mistake would show."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


async def test_persist_expands_home_for_a_service_and_a_store(nexus: Nexus, home: Path) -> None:
    first = WebSocketService(nexus.config(persist="~/client.db"))
    assert first._journal is not None and first._journal.path == str(home / "client.db")
    asked = first.send_query("kept offline")
    await first.close()
    assert sorted(os.listdir(home)) == ["client.db", "client.db.lock"]
    assert os.listdir(".") == []  # no folder called ~

    async with use_websocket(nexus.config(persist=Path("~/client.db"))) as store:
        assert store.service.outbox_size == 1  # the same file: the ask restored
        await store.service.flush()
    assert asked


def test_a_journal_expands_home_and_a_missing_folder_names_the_expanded_path(
    home: Path,
) -> None:
    journal = Journal("~/direct.db")
    try:
        assert journal.path == str(home / "direct.db")
    finally:
        journal.close()
    assert (home / "direct.db").is_file()
    with pytest.raises(PersistenceError) as info:
        Journal("~/no-such-folder/client.db")
    assert str(info.value) == (
        f"the journal {home / 'no-such-folder' / 'client.db'} cannot be made: its folder "
        f"{home / 'no-such-folder'} does not exist. Create the folder first, or pass "
        "another persist= path"
    )


def test_the_journal_command_expands_home_in_its_path_and_key_files(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("NEXUS_JOURNAL_KEY", "NEXUS_JOURNAL_NEW_KEY"):
        monkeypatch.delenv(name, raising=False)
    Journal(home / "client.db").close()
    assert main(["journal", "keygen", "--out", "~/old.key"]) == 0
    assert main(["journal", "keygen", "--out", "~/new.key"]) == 0
    steps = (
        ["encrypt", "~/client.db", "--key-file", "~/old.key"],
        ["rekey", "~/client.db", "--key-file", "~/old.key", "--new-key-file", "~/new.key"],
        ["check", "~/client.db", "--key-file", "~/new.key"],
        ["decrypt", "~/client.db", "--key-file", "~/new.key"],
    )
    for step in steps:
        assert main(["journal", *step]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"{home / 'client.db'}: encrypted" in out
    assert f"{home / 'client.db'}: decrypted" in out
    assert os.listdir(".") == []
