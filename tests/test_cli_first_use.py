"""The command line as a new user meets it: the things a first session tries that went
wrong (output piped into ``head``, ``--timeout`` against a server that never answers the
upgrade, a folder given to ``--out``, an empty question...). ``ask`` and ``serve`` run
as subprocesses over loopback, so exit codes and output are what a user sees; argument
and configuration errors run in-process through :func:`main`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

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
