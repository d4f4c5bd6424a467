"""The command line as a new user meets it: the things a first session tries that went
wrong (output piped into ``head``, ``--timeout`` against a server that never answers the
upgrade, a folder given to ``--out``, an empty question...). ``ask`` and ``serve`` run
as subprocesses over loopback, so exit codes and output are what a user sees; argument
and configuration errors run in-process through :func:`main`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import stat
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

import nexus_reactive
from nexus_reactive import ConfigError, NexusConnectionError, RetriesExhausted, WebSocketConfig
from nexus_reactive.cli import build_parser, cli_words, main

from .test_cli import KEY, PROCESS_TIMEOUT, _env, assert_speaks_cli, run_cli, served


async def run_cli_unread(args: Sequence[str]) -> tuple[int, str]:
    """Run the command with a standard output that nobody reads (``| head -1`` after
    head has gone): the read end of its pipe is closed before the command starts."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "nexus_reactive",
            *args,
            stdout=write_end,
            stderr=asyncio.subprocess.PIPE,
            env=_env(KEY),
        )
    finally:
        os.close(write_end)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), PROCESS_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@pytest.mark.parametrize("streamed", [False, True], ids=["answer", "streamed answer"])
async def test_ask_into_a_closed_pipe_ends_quietly_without_a_traceback(streamed: bool) -> None:
    options = ("--stream",) if streamed else ()
    async with served(*options) as url:
        code, err = await run_cli_unread(["ask", "--url", url, "What is Nexus?"])
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert "Exception ignored" not in err, err
    assert code == 1, err


async def test_keygen_into_a_closed_pipe_still_writes_the_key(tmp_path: Path) -> None:
    code, err = await run_cli_unread(["keygen", "--out", str(tmp_path / "id")])
    assert "Traceback" not in err, err
    assert code == 1
    assert names_in(tmp_path) == ["id", "id.pub"]


def names_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A server that accepts TCP connections and never answers the upgrade (a hung
    process, a port forwarded to nothing): the URL to reach it."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_ask_timeout_bounds_connecting_too() -> None:
    # Each attempt may take connect_timeout (10 s); --timeout 1 is the user's bound on
    # the whole wait, so the command ends with exit 5 (no answer within --timeout), not
    # with 4 once an attempt's own limit is up.
    async with silent_server() as url:
        code, out, err = await run_cli(
            ["ask", "--url", url, "--timeout", "1", "--retries", "0", "hi"], api_key=KEY
        )
    assert code == 5, err
    assert out == ""
    assert_speaks_cli(err)
    assert "no connection within --timeout (1s)" in err
    assert "connect_timeout" not in err


async def test_ask_timeout_once_connected_says_the_server_is_slow() -> None:
    async with served("--stream", "--stream-delay", "5") as url:
        code, _, err = await run_cli(
            ["ask", "--url", url, "--timeout", "0.5", "slow, please"], api_key=KEY
        )
    assert code == 5, err
    assert_speaks_cli(err)
    assert "within --timeout" in err and "raise --timeout" in err.lower()
    assert "state.error" not in err


# --- the library's words, as the command says them -------------------------------------


def test_a_bad_url_names_the_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEXUS_API_KEY", KEY)
    assert main(["ask", "--url", "localhost:8000", "hi"]) == 2
    err = capsys.readouterr().err
    assert_speaks_cli(err)
    assert "--url must be a ws:// or wss:// URL" in err


def test_timeouts_read_as_flags_not_python() -> None:
    # The messages the library raises for an ask without an answer and an attempt
    # that took too long (an attempt has no flag: it keeps its default).
    assert cli_words(
        "no answer to ask 3f2a within 2s (request_timeout); the server may be slow or "
        "unreachable. Raise the timeout or check state.error."
    ) == (
        "no answer to ask 3f2a within 2s (--timeout); the server may be slow or "
        "unreachable. Raise --timeout."
    )
    assert cli_words(
        "gave up after 3 connection attempts; last error: no connection within "
        "connect_timeout (10s). Check that the server is running"
    ) == (
        "gave up after 3 connection attempts; last error: no connection within 10s "
        "(each attempt's limit). Check that the server is running"
    )
    # A server that kept rate limiting: the client commands have no pacing flag.
    exhausted = RetriesExhausted(
        2, NexusConnectionError("connection closed (code 4429: rate limited)", close_code=4429)
    )
    said = cli_words(str(exhausted))
    assert said.endswith(
        "The server is rate limiting this client: try again later, or raise --retries."
    ), said
    assert "rate=" not in said and "burst=" not in said
    # A URL's own text is left alone, and the rewrite is idempotent.
    url_error = "url must be a ws:// or wss:// URL with a host, got 'wss://h/url must be'"
    once = cli_words(url_error)
    assert once == "--url must be a ws:// or wss:// URL with a host, got 'wss://h/url must be'"
    assert cli_words(once) == once


def test_the_library_messages_the_cli_rewrites_are_still_the_library_s() -> None:
    # The rewrites above match the library's text exactly: a reworded message there
    # would slip through in Python's words.
    with pytest.raises(ConfigError) as info:
        WebSocketConfig(url="localhost:8000", api_key=KEY)
    assert cli_words(str(info.value)).startswith("--url must be")
    sources = {
        "ask_clock.py": "Raise the timeout or check state.error.",
        "failures.py": 'f"no connection within connect_timeout ({connect_timeout:g}s)"',
        "errors.py": '"The server is rate limiting this client: set rate= (and burst=) under "',
    }
    for name, text in sources.items():
        assert text in library_source(name), name


def library_source(name: str) -> str:
    return (Path(nexus_reactive.__file__).parent / name).read_text()


@pytest.mark.parametrize("question", ["", "   "])
def test_an_empty_question_is_a_usage_error(
    question: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEXUS_API_KEY", KEY)
    with pytest.raises(SystemExit) as info:
        main(["ask", "--url", "ws://127.0.0.1:9", question])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument question: it is empty" in err
    assert "query string" not in err


# --- keygen --out ------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["keygen"], ["journal", "keygen"]])
@pytest.mark.parametrize("force", [False, True])
def test_keygen_out_given_a_folder_says_to_name_the_file(
    command: list[str], force: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for out in (str(tmp_path), str(tmp_path / "new") + "/"):
        code = main([*command, "--out", out, *(["--force"] if force else [])])
        err = capsys.readouterr().err
        assert code == 2, err
        assert f"--out {out} is a folder" in err
        assert "--force" not in err  # forcing would not help
        assert os.path.join(out, "") in err  # the file to name instead, in that folder
    assert names_in(tmp_path) == []  # nothing written, and "new/" not made a file


def test_journal_keygen_makes_its_folder_owner_only_as_keygen_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["journal", "keygen", "--out", "~/.nexus/journal.key"]) == 0
    key = tmp_path / ".nexus" / "journal.key"
    assert stat.S_IMODE(os.stat(tmp_path / ".nexus").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert len(bytes.fromhex(key.read_text().strip())) == 32
    assert str(key) in capsys.readouterr().err


# --- serve ---------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_serve_docs_that_cannot_be_served_say_what_to_pass_once(
    folder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEXUS_API_KEY", KEY)
    (tmp_path / "empty").mkdir()
    assert main(["serve", "--port", "0", "--docs", str(tmp_path / folder)]) == 2
    err = capsys.readouterr().err
    assert_speaks_cli(err)
    assert err.count("--docs DIR") == 1, err
    assert err.count("--engine echo") == 1, err
    assert "DocsEngine" not in err


async def test_serve_stream_says_it_answers_with_the_echo_engine() -> None:
    # --stream streams the echo engine: without --engine echo a user expected the docs
    # engine's answers, so the server says which one answers, and --help says so too.
    logged: list[str] = []
    # serve's own log level and engine: --stream alone must choose the echo engine.
    async with served("--stream", log_level=None, engine=None, logged=logged):
        pass
    assert "answering by echoing the question (--stream" in logged[0]
    assert "passages of documentation" not in logged[0]
    stream = next(a for a in serve_parser()._actions if "--stream" in a.option_strings)
    assert stream.help is not None and "implies --engine echo" in stream.help


def serve_parser() -> argparse.ArgumentParser:
    return subcommands(build_parser())["serve"]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_log_level_help_gives_each_command_s_real_default() -> None:
    for name, parser in subcommands(build_parser()).items():
        level = parser.get_default("default_log_level") or "info"
        if name == "journal":  # its commands set theirs, all the same
            (level,) = {p.get_default("default_log_level") for p in subcommands(parser).values()}
        action = next(a for a in parser._actions if "--log-level" in a.option_strings)
        assert action.help is not None
        said = re.search(rf"(\w+) for [^;)]*\b{name}\b", action.help)
        assert said is not None and said.group(1) == level, (name, level, action.help)


def test_ask_and_chat_explain_their_shared_flags_alike() -> None:
    """``chat --help`` said "server URL" with no default and did not warn that an
    ``--api-key`` on the command line is visible to other users, as ``ask --help`` does."""
    commands = subcommands(build_parser())

    def helps(name: str) -> dict[str, str | None]:
        return {a.option_strings[0]: a.help for a in commands[name]._actions if a.option_strings}

    ask, chat = helps("ask"), helps("chat")
    for flag in ("--url", "--api-key", "--signing-key", "--server-key", "--cafile"):
        assert chat[flag] == ask[flag], flag
