"""The transport seam: ``WebSocketService(transport_factory=...)`` drives the whole
client (connection, asks, receive side) over a scripted, fault-injecting transport.

No sockets and no server: each test scripts what "the server" sends and which
faults happen, and checks what the application sees. (Integration tests use the
real transport against real servers; these pin the client's own logic, fast.)
The last tests check the reference server's ``x-nexus-auth`` header end to end.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from nexus_reactive import (
    AuthenticationError,
    Message,
    NexusConnectionError,
    Phase,
    ProtocolError,
    WebSocketConfig,
    WebSocketService,
)
from nexus_reactive.core.opening import Opening, auth_required, opening
from nexus_reactive.core.policy import close_error
from nexus_reactive.signing import generate_keypair, public_key_hex
from nexus_reactive.transport import open_session, open_transport

from .conftest import KEY, ServerFactory
from .resilience_servers import phases, record_states

_END = object()


class ScriptedTransport:
    """A transport whose "server" is a function: it answers each frame written.

    ``answer(frame)`` returns the frames to receive in reply (bytes), or a
    :class:`NexusConnectionError` to end the connection with. ``fail_writes`` makes
    every write raise (a reset socket).
    """

    def __init__(
        self,
        answer: Callable[[dict[str, Any]], list[bytes | NexusConnectionError]],
        *,
        auth: str | None = None,
        greeting: list[bytes] | None = None,
        fail_writes: bool = False,
    ) -> None:
        self.auth = auth
        self.answer = answer
        self.fail_writes = fail_writes
        self.sent: list[dict[str, Any]] = []
        self.first_handler: object = _END
        self.closed_with: int | None = None
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        for frame in greeting or []:
            self._inbox.put_nowait(frame)

    async def send(self, frame: bytes) -> None:
        await self.send_batch([frame])

    async def send_batch(self, frames: list[bytes]) -> None:
        if self.fail_writes:
            raise ConnectionResetError("scripted: the socket was reset")
        for frame in frames:
            message = json.loads(frame)
            self.sent.append(message)
            for reply in self.answer(message):
                self._inbox.put_nowait(reply)

    async def pump(
        self,
        on_frame: Callable[[bytes], NexusConnectionError | None],
        on_invalid: Callable[[ProtocolError], None],
        on_first: Callable[[bytes], NexusConnectionError | None] | None = None,
    ) -> NexusConnectionError:
        self.first_handler = on_first
        handler = on_frame if on_first is None else on_first
        while True:
            item = await self._inbox.get()
            if isinstance(item, NexusConnectionError):
                return item
            if item is _END:
                return close_error(self.closed_with or 1000)
            assert isinstance(item, bytes)
            stop = handler(item)
            handler = on_frame
            if stop is not None:
                return stop

    async def receive_frame(self) -> bytes:
        item = await self._inbox.get()
        if isinstance(item, NexusConnectionError):
            raise item
        assert isinstance(item, bytes)
        return item

    async def close(self, code: int = 1000) -> None:
        if self.closed_with is None:
            self.closed_with = code
            self._inbox.put_nowait(_END)


class Factory:
    """Hands out the scripted transports in order; records each call."""

    def __init__(self, *transports: ScriptedTransport) -> None:
        self.transports = list(transports)
        self.opened: list[ScriptedTransport] = []
        self.calls: list[tuple[str, Mapping[str, str]]] = []

    async def __call__(
        self, url: str, headers: Mapping[str, str], deadline: float
    ) -> ScriptedTransport:
        self.calls.append((url, headers))
        if not self.transports:
            raise NexusConnectionError("scripted: nothing listens any more")
        self.opened.append(self.transports.pop(0))
        return self.opened[-1]


def response(message_id: str, answer: str) -> bytes:
    return json.dumps(
        {"type": "response", "id": message_id, "payload": {"answer": answer}}
    ).encode()


def echo_twice(message: dict[str, Any]) -> list[bytes | NexusConnectionError]:
    """A server that answers every ask twice (a repeat must reach the app once)."""
    if message["type"] != "ask":
        return []
    frame = response(message["id"], message["payload"]["query"].upper())
    return [frame, frame]


def config(**options: Any) -> WebSocketConfig:
    return WebSocketConfig(
        url="ws://127.0.0.1:9/",
        api_key=KEY,
        reconnect_interval=0.01,
        max_reconnect_interval=0.02,
        reconnect_jitter=0,
        heartbeat=None,
        **options,
    )


async def test_an_ask_over_a_scripted_transport_is_answered_once() -> None:
    factory = Factory(ScriptedTransport(echo_twice, auth="none"))
    service = WebSocketService(config(), transport_factory=factory)
    seen: list[Message] = []
    service.messages.subscribe(seen.append)
    await service.connect()
    assert (await service.ask("hello")).answer == "HELLO"
    # Both copies were queued to the receive loop with the ask; a second ask after
    # them shows the first's repeat has been received (and dropped) by now.
    assert (await service.ask("again")).answer == "AGAIN"
    asks = [m["id"] for m in factory_sent(service, factory)]
    assert [m.id for m in seen] == asks
    assert factory.calls[0][0] == "ws://127.0.0.1:9/"
    assert factory.calls[0][1]["x-api-key"] == KEY
    await service.close()


def factory_sent(_service: WebSocketService, factory: Factory) -> list[dict[str, Any]]:
    return [m for t in factory.opened for m in t.sent if m["type"] == "ask"]


async def test_a_reset_write_and_a_dropped_connection_resend_the_same_ask() -> None:
    # First connection: every write fails (a reset socket); second: the server drops
    # the connection (1012) as soon as the ask arrives; third: it answers.
    def drop(message: dict[str, Any]) -> list[bytes | NexusConnectionError]:
        return [close_error(1012)] if message["type"] == "ask" else []

    broken = ScriptedTransport(echo_twice, auth="none", fail_writes=True)
    dropping = ScriptedTransport(drop, auth="none")
    good = ScriptedTransport(echo_twice, auth="none")
    factory = Factory(broken, dropping, good)
    service = WebSocketService(config(), transport_factory=factory)
    states = record_states(service)
    await service.connect()
    answer = await asyncio.wait_for(service.ask("again"), 10)
    assert answer.answer == "AGAIN"
    ids = {m["id"] for t in (dropping, good) for m in t.sent if m["type"] == "ask"}
    assert len(ids) == 1, "the ask keeps its id across connections (the server de-duplicates)"
    assert broken.closed_with == 1011  # the writer closed the socket it could not write
    assert Phase.WAITING in phases(states)
    assert len(factory.calls) == 3
    await service.close()


async def test_a_challenge_header_fails_a_keyless_client_before_it_is_ever_connected() -> None:
    transport = ScriptedTransport(echo_twice, auth="challenge")
    factory = Factory(transport)
    service = WebSocketService(config(), transport_factory=factory)
    states = record_states(service)
    with pytest.raises(AuthenticationError, match="x-nexus-auth: challenge"):
        await service.connect()
    assert Phase.CONNECTED not in phases(states)
    assert service.state.value.failed
    assert len(factory.calls) == 1  # fatal: not retried
    await service.close()


async def test_without_the_header_a_keyless_client_watches_the_first_frame() -> None:
    challenge = json.dumps(
        {"type": "challenge", "id": "c1", "payload": {"challenge": "x" * 43}}
    ).encode()
    transport = ScriptedTransport(echo_twice, auth=None, greeting=[challenge])
    service = WebSocketService(config(), transport_factory=Factory(transport))
    states = record_states(service)
    with pytest.raises(AuthenticationError, match="no signing key"):
        await service.connect()
    assert transport.first_handler is not None  # the grace path: no header
    assert Phase.CONNECTED not in phases(states)
    await service.close()


async def test_a_none_header_opens_at_once_without_the_grace() -> None:
    transport = ScriptedTransport(echo_twice, auth="none")
    service = WebSocketService(config(), transport_factory=Factory(transport))
    await service.connect()
    assert service.state.value.connected
    assert transport.first_handler is None  # no first-frame watch, no grace timer
    await service.close()


async def test_a_signing_key_against_a_none_header_fails_at_once() -> None:
    transport = ScriptedTransport(echo_twice, auth="none")
    key = generate_keypair()
    seed = key.private_bytes_raw().hex()
    service = WebSocketService(
        config(signing_key=seed, auth_timeout=30), transport_factory=Factory(transport)
    )
    with pytest.raises(AuthenticationError, match="no challenge will come"):
        await asyncio.wait_for(service.connect(), 10)  # not auth_timeout (30 s)
    await service.close()


@pytest.mark.parametrize(
    ("has_key", "header", "plan", "fatal"),
    [
        (False, None, Opening.GRACE, False),
        (False, "none", Opening.OPEN, False),
        (False, "challenge", Opening.HANDSHAKE, True),
        (False, "Challenge ", Opening.HANDSHAKE, True),
        (False, "something-new", Opening.GRACE, False),
        (True, None, Opening.HANDSHAKE, False),
        (True, "challenge", Opening.HANDSHAKE, False),
        (True, "none", Opening.HANDSHAKE, True),
    ],
)
def test_what_the_auth_header_means(
    has_key: bool, header: str | None, plan: Opening, fatal: bool
) -> None:
    decided, error = opening(has_key, header)
    assert decided is plan
    assert (error is not None) is fatal
    if error is not None:
        assert not error.retryable


def test_auth_required_reads_only_the_two_documented_values() -> None:
    assert auth_required("challenge") is True
    assert auth_required("none") is False
    assert auth_required(None) is None
    assert auth_required("yes") is None


async def test_the_reference_server_advertises_key_pair_auth(start_nexus: ServerFactory) -> None:
    allowed = generate_keypair()
    server = await start_nexus(allowed_pubkeys=[public_key_hex(allowed)])
    service = WebSocketService(server.config())
    states = record_states(service)
    with pytest.raises(AuthenticationError, match="x-nexus-auth: challenge"):
        await service.connect()
    assert Phase.CONNECTED not in phases(states)
    await service.close()


async def test_the_reference_server_sends_the_header(start_nexus: ServerFactory) -> None:
    plain = await start_nexus()
    keyed = await start_nexus(allowed_pubkeys=[public_key_hex(generate_keypair())])
    async with open_session() as session:
        for server, expected in ((plain, "none"), (keyed, "challenge")):
            transport = await open_transport(session, server.url, headers={"x-api-key": KEY})
            assert transport.auth == expected
            await transport.close()


class HeldWrites(ScriptedTransport):
    """Writes of a ``hold`` ask wait for good; cancelled, a write takes until ``unwind``
    to end: the connection's clean-up then waits for its writer."""

    def __init__(self) -> None:
        super().__init__(lambda message: [], auth="none")
        self.holding = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.unwind = asyncio.Event()

    async def send_batch(self, frames: list[bytes]) -> None:
        if any(b'"hold"' in frame for frame in frames):
            self.holding.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                await self.unwind.wait()
                raise
        await super().send_batch(frames)


async def test_close_while_the_connection_stops_its_writer_is_not_lost() -> None:
    # The connection ends and, cleaning up, waits for its writer; close() cancels it
    # meanwhile. That cancellation was swallowed: the connection went on to connect
    # again, and close() waited for it for good.
    held = HeldWrites()
    spare = ScriptedTransport(lambda message: [], auth="none")
    factory = Factory(held, spare)
    service = WebSocketService(config(), transport_factory=factory)
    await service.connect()
    service.send_query("hold")
    await asyncio.wait_for(held.holding.wait(), 10)
    held._inbox.put_nowait(close_error(1012))  # the server goes: a retryable end
    await asyncio.wait_for(held.cancelled.wait(), 10)  # clean-up waits for the writer
    closing = asyncio.ensure_future(service.close())
    await asyncio.sleep(0)  # close() has cancelled the connection (synchronously)
    held.unwind.set()
    await asyncio.wait_for(closing, 10)
    assert factory.opened == [held]  # it did not go on to connect again
    assert held.closed_with is not None  # and its socket was closed all the same
