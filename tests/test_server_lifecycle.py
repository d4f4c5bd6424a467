"""The reference server's connection lifecycle, its configuration and its command line, over
real loopback sockets."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from nexus_reactive.cli import main
from nexus_reactive.errors import ConfigError
from nexus_reactive.server import STATS_KEY, ServerStats, create_app

from .conftest import KEY, MakeServer
from .test_server import TIMEOUT, GatedEngine, ask, assert_usable, connect, recv, stats, wait_until

# --- connection lifecycle ----------------------------------------------------------------


async def test_stats_count_connections_and_asks(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    first = await connect(session, server)
    second = await connect(session, server)
    await wait_until(lambda: stats(server).connections_open == 2)
    await ask(first, "a", "1")
    await ask(second, "b", "2")
    await recv(first)
    await recv(second)
    await first.close()
    await wait_until(lambda: stats(server).connections_open == 1)
    assert stats(server) == ServerStats(
        connections_total=2, connections_open=1, asks_received=2, engine_calls=2
    )
    await second.close()
    await wait_until(lambda: stats(server).connections_open == 0)


async def test_closing_the_socket_cancels_its_asks(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    engine = GatedEngine()
    server = await make_server(engine=engine, abandon_after=0)
    ws = await connect(session, server)
    await ask(ws, "never answered", "n")
    await wait_until(lambda: engine.calls == ["never answered"])
    await ws.close()
    await wait_until(lambda: engine.cancelled == 1)
    await wait_until(lambda: stats(server).connections_open == 0)


async def test_shutdown_closes_sockets_with_1001(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    engine = GatedEngine()
    server = await make_server(engine=engine)
    ws = await connect(session, server)
    await ask(ws, "pending", "p")
    await wait_until(lambda: engine.calls == ["pending"])
    receiving = asyncio.create_task(ws.receive(timeout=TIMEOUT))
    await server.close()
    msg = await receiving
    assert msg.type is WSMsgType.CLOSE
    assert msg.data == 1001
    assert ws.close_code == 1001
    assert engine.cancelled == 1
    assert stats(server).connections_open == 0


# --- configuration -----------------------------------------------------------------------


def test_no_key_anywhere_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEXUS_API_KEY", raising=False)
    with pytest.raises(ConfigError) as info:
        create_app()
    assert "api_keys" in str(info.value)
    assert "NEXUS_API_KEY" in str(info.value)
    with pytest.raises(ConfigError):
        create_app(api_keys=[])
    with pytest.raises(ConfigError):
        create_app(api_keys=["ok", ""])


async def test_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    session: aiohttp.ClientSession,
) -> None:
    monkeypatch.setenv("NEXUS_API_KEY", "from-env")
    server = await aiohttp_server(create_app())
    async with await connect(session, server, key="from-env") as ws:
        await assert_usable(ws)


def test_app_exposes_typed_stats() -> None:
    app = create_app(api_keys=KEY)
    assert isinstance(app, web.Application)
    assert app[STATS_KEY] == ServerStats()


# --- command line ------------------------------------------------------------------------


def test_cli_serve_without_a_key_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NEXUS_API_KEY", raising=False)
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--api-key" in err
    assert "NEXUS_API_KEY" in err


def test_cli_without_a_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().err


async def test_cli_serve_answers_and_stops_cleanly_on_sigterm(
    session: aiohttp.ClientSession,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NEXUS_API_KEY"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nexus_reactive",
        "serve",
        "--port",
        "0",
        "--api-key",
        "k",
        "--log-level",
        "warning",
        "--engine",
        "echo",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        match = re.fullmatch(rb"nexus-reactive server listening on (ws://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        url = match.group(1).decode()
        assert not url.endswith(":0")
        async with session.ws_connect(url, headers={"x-api-key": "k"}) as ws:
            await ask(ws, "from the cli", "c1")
            reply = await recv(ws)
            assert reply["payload"]["answer"] == "You asked: from the cli"
            receiving = asyncio.create_task(ws.receive(timeout=TIMEOUT))
            proc.terminate()
            msg = await receiving
            assert msg.type is WSMsgType.CLOSE
            assert msg.data == 1001
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert out == b""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
