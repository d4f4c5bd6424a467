"""The command line as a new user meets it: the things a first session tries that went
wrong (output piped into ``head``, ``--timeout`` against a server that never answers the
upgrade, a folder given to ``--out``, an empty question...). ``ask`` and ``serve`` run
as subprocesses over loopback, so exit codes and output are what a user sees; argument
and configuration errors run in-process through :func:`main`."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from .test_cli import KEY, PROCESS_TIMEOUT, _env, served


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
