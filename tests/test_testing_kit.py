"""The test kit users get (nexus_reactive.testing): its server, its proxy's WebSocket
faults, waiting for a state, and its pytest plugin's cost."""

from __future__ import annotations

import asyncio
import ssl
import struct
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nexus_reactive import (
    AuthenticationError,
    ConnectionState,
    NexusConnectionError,
    Phase,
    WebSocketService,
)
from nexus_reactive.streams import ValuePublisher
from nexus_reactive.testing import (
    FaultProxy,
    NexusServer,
    ServerFactory,
    client_config,
    wait_for_state,
    wait_until,
)
from nexus_reactive.testing.tls import throwaway_tls
from nexus_reactive.testing.wire import FrameBoundaries, close_frame

from .waiting import EVENTUALLY

ROOT = Path(__file__).resolve().parent.parent

# -- waiting for a state -----------------------------------------------------------------


async def test_wait_for_state_sees_a_state_that_lasts_no_time() -> None:
    states = ValuePublisher(ConnectionState())
    waiter = asyncio.ensure_future(wait_for_state(states.stream, "waiting", timeout=EVENTUALLY))
    await asyncio.sleep(0)
    states.set(ConnectionState(Phase.WAITING, retry_in=0.1))
    states.set(ConnectionState(Phase.CONNECTED))  # at once: a poll would miss WAITING
    assert (await waiter).retry_in == 0.1


async def test_wait_for_state_takes_a_phase_or_a_predicate_and_the_current_state() -> None:
    states = ValuePublisher(ConnectionState(Phase.CONNECTED))
    assert (await wait_for_state(states.stream, Phase.CONNECTED, timeout=0.1)).connected
    state = await wait_for_state(states.stream, lambda s: s.attempt == 0, timeout=0.1)
    assert state.phase is Phase.CONNECTED


async def test_wait_for_state_times_out_saying_what_it_saw() -> None:
    states = ValuePublisher(ConnectionState(Phase.CONNECTING))
    states.set(ConnectionState(Phase.WAITING))
    with pytest.raises(TimeoutError, match=r"no 'connected' state within 0.05s.*waiting"):
        await wait_for_state(states.stream, "connected", timeout=0.05)
    assert states.stream.observer_count == 0  # unsubscribed


async def test_wait_for_state_refuses_a_phase_that_does_not_exist() -> None:
    states = ValuePublisher(ConnectionState())
    with pytest.raises(ValueError, match="conected"):
        await wait_for_state(states.stream, "conected")


async def test_wait_for_state_takes_states_published_on_another_thread() -> None:
    states = ValuePublisher(ConnectionState())
    waiter = asyncio.ensure_future(wait_for_state(states.stream, "failed"))
    await asyncio.sleep(0)
    thread = threading.Thread(target=states.set, args=(ConnectionState(Phase.FAILED),))
    thread.start()
    assert (await waiter).failed
    thread.join()


async def test_wait_until_returns_the_value_or_says_what_it_waited_for() -> None:
    assert await wait_until(lambda: 42, timeout=0.1) == 42
    with pytest.raises(TimeoutError, match="the moon"):
        await wait_until(lambda: False, timeout=0.05, message="the moon")


# -- the reference server ----------------------------------------------------------------


async def test_server_has_a_fresh_key_and_counts_connections_and_asks() -> None:
    async with NexusServer() as server, WebSocketService(server.config()) as service:
        assert server.url == f"ws://127.0.0.1:{server.port}/" and server.port
        assert len(server.key) >= 16 and server.key not in repr(server)
        assert (await service.ask("hi")).answer == "You asked: hi"
        assert server.stats.connections_open == 1 and server.stats.asks_received == 1


async def test_server_restarts_on_the_same_port_and_clients_come_back() -> None:
    async with NexusServer() as server:
        service = WebSocketService(server.config(max_reconnect_attempts=None))
        async with service:
            port, first_stats = server.port, server.stats
            await server.stop()
            state = await wait_for_state(service, lambda s: s.close_code == 1001)
            assert state.phase in {Phase.WAITING, Phase.CONNECTING}
            assert not server.running and first_stats.connections_open == 0
            await server.restart()
            assert server.port == port and server.restarts == 1
            assert (await service.ask("back")).answer == "You asked: back"
            assert server.stats is not first_stats and server.stats.asks_received == 1


async def test_server_closes_connections_with_a_code() -> None:
    async with NexusServer() as server:
        service = WebSocketService(server.config(max_reconnect_attempts=None))
        async with service:
            await wait_for_state(service, "connected")
            assert await server.close_connections(4000, "bye") == 1
            state = await wait_for_state(service, lambda s: s.close_code == 4000)
            assert state.phase is not Phase.FAILED  # 4000: retried
            await wait_until(lambda: server.stats.connections_total == 2)


def test_a_server_needs_a_key() -> None:
    with pytest.raises(ValueError, match="key"):
        NexusServer(api_keys=[])


# -- TLS -----------------------------------------------------------------------------------


async def test_a_tls_server_serves_wss_that_its_config_trusts() -> None:
    async with NexusServer(tls=True) as server, WebSocketService(server.config()) as service:
        assert server.tls and server.url == f"wss://127.0.0.1:{server.port}/"
        assert (await service.ask("over TLS")).answer == "You asked: over TLS"
        # A client of its own: trust the CA it exposes, by host name too.
        context = ssl.create_default_context(cadata=(server.ca_pem or b"").decode())
        own = client_config(f"wss://localhost:{server.port}/", server.key, ssl=context)
        async with WebSocketService(own) as other:
            assert (await other.ask("mine")).answer == "You asked: mine"


async def test_a_client_that_does_not_trust_the_throwaway_ca_is_refused() -> None:
    async with NexusServer(tls=True) as server:
        service = WebSocketService(server.config(ssl=True))  # the system's CAs only
        with pytest.raises(NexusConnectionError, match="certificate"):
            await service.connect()
        await service.close()
        assert server.stats.connections_total == 0


async def test_a_tls_server_keeps_its_certificate_across_a_restart() -> None:
    async with NexusServer(tls=True) as server:
        service = WebSocketService(server.config(max_reconnect_attempts=None))
        async with service:
            await server.restart()
            assert (await service.ask("back")).answer == "You asked: back"


async def test_the_factory_fixture_takes_tls(nexus_server_factory: ServerFactory) -> None:
    server = await nexus_server_factory(tls=True)
    async with WebSocketService(server.config()) as service:
        assert (await service.ask("fixture")).answer == "You asked: fixture"


def test_tls_material_is_fresh_and_its_key_never_shown() -> None:
    first, second = throwaway_tls(), throwaway_tls()
    assert first.ca_pem != second.ca_pem
    assert first.key_pem not in repr(first).encode()
    plain = NexusServer()
    assert not plain.tls and plain.client_ssl_context is None and plain.ca_pem is None
    with pytest.raises(TypeError, match="tls must be True or False"):
        NexusServer(tls="yes")  # type: ignore[arg-type]


# -- the proxy's WebSocket faults ----------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[NexusServer]:
    async with NexusServer() as nexus:
        yield nexus


async def test_refuse_upgrade_401_is_fatal_and_reaches_no_server(server: NexusServer) -> None:
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        proxy.refuse_upgrade(401, "go away")
        service = WebSocketService(server.config(url=proxy.url()))
        with pytest.raises(AuthenticationError) as info:
            await service.connect()
        assert info.value.status == 401
        assert proxy.refused_upgrades == 1 and proxy.connections == 0
        assert server.stats.connections_total == 0
        await service.close()


async def test_refuse_upgrade_503_is_retried_until_it_ends(server: NexusServer) -> None:
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        proxy.refuse_upgrade(503, headers={"Retry-After": "0"})
        service = WebSocketService(server.config(url=proxy.url(), max_reconnect_attempts=None))
        connecting = asyncio.ensure_future(service.connect())
        state = await wait_for_state(service, lambda s: "503" in (s.error or ""))
        assert not state.failed
        proxy.refuse_upgrade(None)
        await connecting
        assert (await service.ask("through")).answer == "You asked: through"
        assert proxy.refused_upgrades >= 1 and proxy.connections == 1
        await service.close()


async def test_close_with_a_code_reaches_the_client(server: NexusServer) -> None:
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        service = WebSocketService(server.config(url=proxy.url(), max_reconnect_attempts=None))
        async with service:
            assert (await service.ask("one")).answer
            await proxy.close_with(1012, "restarting")
            assert proxy.open_connections == 0
            state = await wait_for_state(service, lambda s: s.close_code == 1012)
            assert "restart" in (state.error or "")
            assert (await service.ask("two")).answer == "You asked: two"  # reconnected
            assert proxy.connections == 2


async def test_close_with_4401_is_fatal(server: NexusServer) -> None:
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        service = WebSocketService(server.config(url=proxy.url()))
        async with service:
            await wait_for_state(service, "connected")
            await proxy.close_with(4401)
            state = await wait_for_state(service, "failed")
            assert state.close_code == 4401


async def test_stall_holds_an_answer_then_delivers_it(server: NexusServer) -> None:
    async with (
        FaultProxy("127.0.0.1", server.port) as proxy,
        WebSocketService(server.config(url=proxy.url())) as service,
    ):
        await wait_for_state(service, "connected")
        proxy.stall()
        ask = asyncio.ensure_future(service.ask("held"))
        await asyncio.sleep(0.3)  # watching: nothing gets through meanwhile
        assert not ask.done() and server.stats.asks_received == 0
        proxy.stall(False)
        assert (await ask).answer == "You asked: held"


async def test_a_refused_connect_is_a_connection_error(server: NexusServer) -> None:
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        await proxy.stop_listening()
        service = WebSocketService(client_config(proxy.url(), server.key, max_reconnect_attempts=0))
        with pytest.raises(NexusConnectionError):
            await service.connect()
        await service.close()


def _frame(payload: bytes, opcode: int = 0x1) -> bytes:
    size = len(payload)
    if size < 126:
        header = bytes([0x80 | opcode, size])
    elif size < 65536:
        header = bytes([0x80 | opcode, 126]) + struct.pack("!H", size)
    else:
        header = bytes([0x80 | opcode, 127]) + struct.pack("!Q", size)
    return header + payload


def test_frame_boundaries_follow_frames_split_anywhere() -> None:
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    frames = [_frame(b"a" * 5), _frame(b"b" * 300), _frame(b"c" * 70_000)]
    stream = head + b"".join(frames)
    ends = {len(head)}
    for frame in frames:
        ends.add(max(ends) + len(frame))
    for size in (1, 3, 7, 64, 1000, len(stream)):
        tracker = FrameBoundaries()
        seen: set[int] = set()
        for start in range(0, len(stream), size):
            tracker.feed(stream[start : start + size])
            offset = min(start + size, len(stream))
            if tracker.at_boundary:
                seen.add(offset)
        assert seen <= ends and max(ends) in seen
    tracker = FrameBoundaries()
    assert tracker.feed(stream[: len(head) + 3], stop_at_boundary=True) == len(head)
    assert tracker.feed(frames[0] + frames[1], stop_at_boundary=True) == 0  # at one already
    tracker.feed(frames[0][:3])
    assert tracker.feed(frames[0][3:] + frames[1], stop_at_boundary=True) == len(frames[0]) - 3


def test_a_refused_upgrade_has_no_frame_boundaries() -> None:
    tracker = FrameBoundaries()
    tracker.feed(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\nno")
    assert not tracker.upgraded and not tracker.at_boundary
    assert close_frame(1000, "") == b"\x88\x02\x03\xe8"


# -- the plugin ------------------------------------------------------------------------------


def test_the_plugin_imports_only_pytest(tmp_path: Path) -> None:
    """Loaded in every project where the library is installed, it costs nothing there."""
    (tmp_path / "test_other.py").write_text(
        textwrap.dedent(
            """
            import sys

            def test_nothing_of_ours_is_imported(pytestconfig):
                assert pytestconfig.pluginmanager.has_plugin("nexus_reactive")
                assert "nexus_reactive" not in sys.modules
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_other.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_the_docs_example_passes_as_a_users_copy(mode: str, tmp_path: Path) -> None:
    """examples/test_my_app.py (docs/testing.md), copied into a project of its own, passes
    in pytest-asyncio's strict and auto modes, warnings being errors."""
    (tmp_path / "test_my_app.py").write_text((ROOT / "examples/test_my_app.py").read_text())
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"),
            *("-o", f"asyncio_mode={mode}", "-o", "asyncio_default_fixture_loop_scope=function"),
            "test_my_app.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "7 passed in" in done.stdout and "warning" not in done.stdout, done.stdout
