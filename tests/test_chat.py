"""The Textual chat, driven headless by Textual's pilot against the real reference
server over loopback. Assertions read what the app shows: the rendered text of
its status bar and conversation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from nexus_reactive import AskRequest, AskResponse
from nexus_reactive.chat import ChatApp, main
from nexus_reactive.cli.common import cli_words

from .conftest import KEY, Nexus, ServerFactory, library_tasks
from .faults import FaultProxy, wait_for


def status(app: ChatApp) -> str:
    return str(app.query_one("#status", Static).render())


def conversation(app: ChatApp) -> str:
    return "\n".join(str(turn.render()) for turn in app.query(".turn").results(Static))


async def shows(app: ChatApp, text: str, where: str = "conversation") -> None:
    """Wait until ``text`` is on screen (in the status bar or the conversation)."""
    read = status if where == "status" else conversation
    try:
        await wait_for(lambda: text in read(app))
    except TimeoutError:
        pytest.fail(f"{text!r} never shown in the {where}; it shows:\n{read(app)}")


async def ask(pilot: Pilot[int], question: str) -> None:
    pilot.app.query_one("#question", Input).value = question
    await pilot.press("enter")


async def test_connects_asks_and_shows_the_answer_with_usage(nexus: Nexus) -> None:
    app = ChatApp(nexus.config())
    async with app.run_test() as pilot:
        await shows(app, "Connected", "status")
        assert nexus.url in status(app)
        await ask(pilot, "What is Nexus?")
        await shows(app, "You: What is Nexus?")
        await shows(app, "Nexus: You asked: What is Nexus?")
        assert "tokens 3 in + 5 out = 8" in conversation(app)
        assert app.query_one("#question", Input).value == ""


async def test_the_question_box_has_the_focus_and_the_state_sits_on_the_footer(
    nexus: Nexus,
) -> None:
    """Type at once, no click; the connection state is the line above the key help."""
    app = ChatApp(nexus.config())
    async with app.run_test() as pilot:
        assert app.focused is app.query_one("#question", Input)
        await shows(app, "Connected", "status")
        status_line = app.query_one("#status", Static)
        assert status_line.has_class("connected")
        footer = app.query_one("Footer")
        assert status_line.region.bottom == footer.region.y  # right on the footer
        await pilot.press(*"typed")  # straight into the question box
        assert app.query_one("#question", Input).value == "typed"


async def test_url_and_key_keywords_and_team_id(start_nexus: Any) -> None:
    def teams(request: AskRequest) -> AskResponse:
        return AskResponse(answer=f"{request.query} for team {request.team_id}")

    nexus = await start_nexus(engine=teams)
    app = ChatApp(url=nexus.url, api_key=KEY, team_id="blue")
    async with app.run_test() as pilot:
        await shows(app, "Connected", "status")
        await ask(pilot, "hi")
        await shows(app, "Nexus: hi for team blue")


async def test_pending_indicator_until_the_answer_arrives(start_nexus: Any) -> None:
    release = asyncio.Event()

    async def gated(request: AskRequest) -> AskResponse:
        await release.wait()
        return AskResponse(answer=f"at last: {request.query}", context="Nexus docs, page 1")

    nexus = await start_nexus(engine=gated)
    app = ChatApp(nexus.config())
    async with app.run_test() as pilot:
        await shows(app, "Connected", "status")
        await ask(pilot, "slow one")
        await shows(app, "You: slow one")
        await wait_for(lambda: nexus.stats.asks_received == 1)
        assert "waiting for the answer" in conversation(app)
        release.set()
        await shows(app, "Nexus: at last: slow one")
        assert "waiting" not in conversation(app)
        assert "context: Nexus docs, page 1" in conversation(app)


async def test_a_streamed_answer_grows_in_place(start_nexus: Any) -> None:
    release = asyncio.Event()

    async def streaming(request: AskRequest) -> AsyncIterator[str]:
        yield "first half, "
        await release.wait()
        yield "second half"

    nexus = await start_nexus(engine=streaming)
    app = ChatApp(nexus.config())
    async with app.run_test() as pilot:
        await shows(app, "Connected", "status")
        await ask(pilot, "stream it")
        await shows(app, "Nexus (streaming…): first half,")
        release.set()
        await shows(app, "Nexus: first half, second half")
        assert "streaming" not in conversation(app)


async def test_an_engine_error_is_shown_against_its_question(start_nexus: Any) -> None:
    def broken(request: AskRequest) -> AskResponse:
        raise RuntimeError("engine exploded")

    nexus = await start_nexus(engine=broken)
    app = ChatApp(nexus.config())
    async with app.run_test() as pilot:
        await shows(app, "Connected", "status")
        await ask(pilot, "boom")
        await shows(app, "Error (internal):")
        assert conversation(app).startswith("You: boom\nError (internal): ")
        assert "Connected" in status(app)  # one failed ask is not a connection problem


async def test_server_gone_shows_reconnecting_then_failed_in_words(nexus: Nexus) -> None:
    app = ChatApp(nexus.config(max_reconnect_attempts=3))
    async with app.run_test():
        await shows(app, "Connected", "status")
        await nexus.stop()
        # Reconnecting is shown too (see the queued test); here retries are quick.
        await shows(app, "Failed: ", "status")
        assert "last error: cannot connect" in status(app)
        question = app.query_one("#question", Input)
        assert question.disabled and "Connection failed" in question.placeholder


async def test_questions_asked_while_reconnecting_are_queued_then_answered(
    nexus: Nexus,
) -> None:
    async with FaultProxy("127.0.0.1", nexus.port) as proxy:
        config = nexus.config(url=proxy.url(), reconnect_interval=0.2, max_reconnect_attempts=None)
        app = ChatApp(config)
        async with app.run_test() as pilot:
            await shows(app, "Connected", "status")
            await proxy.stop_listening()
            await proxy.cut()
            await shows(app, "Reconnecting: attempt", "status")
            assert "last error:" in status(app)
            await ask(pilot, "are you there?")
            await shows(app, "queued: will be sent once connected")
            await proxy.resume_listening()
            await shows(app, "Nexus: You asked: are you there?")
            assert "Connected" in status(app)


async def test_clear_key_empties_the_conversation(nexus: Nexus) -> None:
    app = ChatApp(nexus.config())
    async with app.run_test() as pilot:
        await shows(app, "Connected", "status")
        await ask(pilot, "one")
        await shows(app, "Nexus: You asked: one")
        await pilot.press("ctrl+l")
        await wait_for(lambda: conversation(app) == "")
        await ask(pilot, "two")
        await shows(app, "Nexus: You asked: two")
        assert "one" not in conversation(app)


async def test_quit_key_closes_the_connection_and_leaves_no_task(nexus: Nexus) -> None:
    app = ChatApp(nexus.config())
    async with app.run_test() as pilot:
        await shows(app, "Connected", "status")
        await wait_for(lambda: nexus.stats.connections_open == 1)
        await pilot.press("ctrl+q")
        await wait_for(lambda: app.return_code is not None)
    assert app.return_value == 0
    assert library_tasks() == []
    await wait_for(lambda: nexus.stats.connections_open == 0)


async def test_the_api_key_never_shows(start_nexus: Any) -> None:
    nexus = await start_nexus(api_keys="another-key")
    app = ChatApp(nexus.config(api_key=KEY))  # a key the server refuses
    async with app.run_test():
        await shows(app, "Failed: ", "status")
        assert KEY not in status(app) and KEY not in repr(app)


def test_main_refuses_a_missing_key_and_a_bad_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NEXUS_API_KEY", raising=False)
    assert main(["--url", "ws://127.0.0.1:1"]) == 2
    assert "no API key" in capsys.readouterr().err
    assert main(["--url", "http://example.com", "--api-key", KEY]) == 2
    error = capsys.readouterr().err
    assert "ws://" in error and KEY not in error


async def test_the_command_s_status_line_names_its_flags_not_python_keywords(
    start_nexus: ServerFactory,
) -> None:
    """A rejected certificate's advice on the status line: ``--cafile`` in the command
    (the wording ``nexus-reactive chat`` passes), ``ssl=`` for a Python user's app."""
    nexus = await start_nexus(tls=True)
    config = nexus.config(ssl=True, max_reconnect_attempts=0)
    for wording, said, unsaid in ((cli_words, "--cafile", "ssl="), (None, "ssl=", "--cafile")):
        app = ChatApp(config, wording=wording)
        async with app.run_test():
            await shows(app, "certificate was rejected", "status")
            assert said in status(app) and unsaid not in status(app)


async def test_the_status_line_names_the_cafile_that_does_not_vouch(
    start_nexus: ServerFactory, tmp_path: Any
) -> None:
    """``nexus-reactive chat --cafile PATH`` of a CA that did not sign the server's
    certificate: the status line names that file, not "pass --cafile PATH" as if none."""
    import ssl
    from functools import partial

    from nexus_reactive.testing.tls import throwaway_tls

    nexus = await start_nexus(tls=True)
    other = tmp_path / "other-ca.pem"
    other.write_bytes(throwaway_tls().ca_pem)
    context = ssl.create_default_context(cafile=str(other))
    config = nexus.config(ssl=context, max_reconnect_attempts=0)
    app = ChatApp(config, wording=partial(cli_words, cafile=str(other)))
    async with app.run_test():
        await shows(app, "do not vouch", "status")
        assert f"--cafile {other}" in status(app)
        assert "ssl=" not in status(app) and "--cafile PATH" not in status(app)


def test_main_takes_every_flag_its_advice_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    """``python -m nexus_reactive.chat`` words its errors and its status line as the
    ``nexus-reactive chat`` command (``--allow-insecure``, ``--cafile``): it takes those
    flags too, so the advice can be followed."""
    from nexus_reactive import chat
    from nexus_reactive.testing.tls import throwaway_tls

    ran: list[Any] = []

    def run_chat(config: Any, *_args: Any, **_options: Any) -> int:  # not the TUI itself
        ran.append(config)
        return 0

    monkeypatch.setattr(chat, "run_chat", run_chat)
    assert main(["--url", "ws://example.com", "--api-key", KEY]) == 2
    assert "--allow-insecure" in capsys.readouterr().err
    assert main(["--url", "ws://example.com", "--api-key", KEY, "--allow-insecure"]) == 0
    assert ran[-1].allow_insecure
    ca = tmp_path / "ca.pem"
    ca.write_bytes(throwaway_tls().ca_pem)
    assert main(["--url", "wss://127.0.0.1:1", "--api-key", KEY, "--cafile", str(ca)]) == 0
    assert ran[-1].ssl is not True and ran[-1].ssl is not None
    assert main(["--url", "wss://127.0.0.1:1", "--api-key", KEY, "--cafile", str(tmp_path)]) == 2
    assert "--cafile" in capsys.readouterr().err


def test_the_command_refuses_a_missing_key_before_the_screen(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``nexus-reactive chat`` with no key opened the full-screen chat, which only said
    "Not connected"; ``ask`` and ``python -m nexus_reactive.chat`` refuse at once (exit 2)."""
    from nexus_reactive import chat
    from nexus_reactive.cli import main as cli_main

    ran: list[Any] = []
    monkeypatch.setattr(chat, "run_chat", lambda *args, **options: ran.append(args) or 0)
    monkeypatch.delenv("NEXUS_API_KEY", raising=False)
    assert cli_main(["chat", "--url", "ws://127.0.0.1:1"]) == 2
    assert "no API key" in capsys.readouterr().err and not ran
    assert cli_main(["chat", "--url", "ws://127.0.0.1:1", "--api-key", KEY]) == 0 and ran


def test_add_arguments_still_works_and_says_it_is_deprecated() -> None:
    """``main`` no longer uses it (it runs the command itself), so it warns a release
    before it goes; the options it adds parse as before."""
    import argparse

    from nexus_reactive.chat import add_arguments

    parser = argparse.ArgumentParser()
    with pytest.warns(DeprecationWarning, match=r'cli\.main\(\["chat", \.\.\.\]\)'):
        add_arguments(parser)
    args = parser.parse_args(["--url", "ws://example.com", "--api-key", "k", "--team-id", "t"])
    assert (args.url, args.api_key, args.team_id) == ("ws://example.com", "k", "t")
