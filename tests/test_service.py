"""WebSocketService against the real reference server and scripted servers, over
real loopback sockets."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
from aiohttp import web

from nexus_reactive import (
    AskMessage,
    AskRequest,
    AskResponse,
    AuthenticationError,
    ConfigError,
    ConnectionClosed,
    ConnectionState,
    ErrorMessage,
    Message,
    NexusError,
    Phase,
    ProtocolError,
    RequestTimeout,
    ResponseMessage,
    ServerError,
    UnknownMessage,
    UsageError,
    WebSocketConfig,
    WebSocketService,
)

from .conftest import KEY, Nexus, Scripted, library_tasks, response_frame
from .faults import FaultProxy
from .waiting import EVENTUALLY, wait_for


async def test_ask_round_trip_and_clean_close(nexus: Nexus) -> None:
    service = WebSocketService(nexus.config())
    await service.connect()
    assert service.state.value.connected
    answer = await service.ask("What is Nexus?")
    assert isinstance(answer, AskResponse)
    assert "What is Nexus?" in answer.answer
    assert answer.usage is not None and answer.usage.total_tokens > 0
    await service.close()
    assert service.state.value.phase is Phase.CLOSED
    assert library_tasks() == []
    await wait_for(lambda: nexus.stats.connections_open == 0)


async def test_connect_is_idempotent_and_uses_one_socket(nexus: Nexus) -> None:
    async with WebSocketService(nexus.config()) as service:
        await asyncio.gather(service.connect(), service.connect())
        await service.connect()
        assert nexus.stats.connections_total == 1


async def test_missing_key_raises_config_error_before_any_traffic(
    nexus: Nexus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEXUS_API_KEY", raising=False)
    async with FaultProxy("127.0.0.1", nexus.port) as proxy:
        service = WebSocketService(WebSocketConfig(url=proxy.url()))
        with pytest.raises(ConfigError) as info:
            await service.connect()
        assert "api_key" in str(info.value) and "NEXUS_API_KEY" in str(info.value)
        assert proxy.connections == 0
        await service.close()


async def test_key_from_environment(nexus: Nexus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXUS_API_KEY", KEY)
    async with WebSocketService(nexus.config(api_key=None)) as service:
        assert (await service.ask("env")).answer


async def test_wrong_key_is_fatal_after_one_attempt(nexus: Nexus) -> None:
    async with FaultProxy("127.0.0.1", nexus.port) as proxy:
        service = WebSocketService(nexus.config(url=proxy.url(), api_key="wrong"))
        with pytest.raises(AuthenticationError) as info:
            await service.connect()
        assert info.value.status == 401
        assert "401" in str(info.value)
        assert proxy.connections == 1
        state = service.state.value
        assert state.failed and state.error and "401" in state.error
        await service.close()
    assert nexus.stats.connections_total == 0


async def test_send_query_and_on_response(nexus: Nexus) -> None:
    async with WebSocketService(nexus.config()) as service:
        got: list[ResponseMessage] = []
        unsubscribe = service.on_response(got.append)
        first = service.send_query("one", team_id="team-1")
        await wait_for(lambda: len(got) == 1)
        assert got[0].id == first and "one" in got[0].payload.answer
        unsubscribe()
        service.send_query("two")
        seen: list[Message] = []
        service.messages.subscribe(seen.append)
        await wait_for(lambda: len(seen) == 1)
        assert len(got) == 1  # unsubscribed handlers get nothing more


async def test_on_message_filters_by_type(nexus: Nexus) -> None:
    async with WebSocketService(nexus.config()) as service:
        errors: list[Message] = []
        responses: list[Message] = []
        service.on_message("error", errors.append)
        service.on_message("response", responses.append)
        service.send({"type": "mystery", "id": "m1", "payload": {}})
        await service.ask("fine")
        await wait_for(lambda: len(errors) == 1)
        assert isinstance(errors[0], ErrorMessage)
        assert errors[0].payload.code == "unknown_type" and errors[0].id == "m1"
        assert len(responses) == 1


async def test_send_validates_and_tracks_asks(nexus: Nexus) -> None:
    async with WebSocketService(nexus.config()) as service:
        with pytest.raises(ProtocolError):
            service.send({"type": "ask", "id": "x", "payload": {"query": 42}})
        with pytest.raises(ProtocolError):
            service.send({"no": "envelope"})
        got: list[ResponseMessage] = []
        service.on_response(got.append)
        service.send(AskMessage(id="typed-1", payload=AskRequest("typed")))
        service.send({"type": "ask", "id": "dict-1", "payload": {"query": "dict"}})
        await wait_for(lambda: len(got) == 2)
        assert [m.id for m in got] == ["typed-1", "dict-1"]
        assert service.pending_count == 0


async def test_messages_sent_before_connect_wait_in_order(nexus: Nexus) -> None:
    service = WebSocketService(nexus.config())
    got: list[ResponseMessage] = []
    service.on_response(got.append)
    ids = [service.send_query(f"queued {i}") for i in range(20)]
    assert service.outbox_size == 20
    assert nexus.stats.connections_total == 0  # nothing opens until connect()
    await service.connect()
    await wait_for(lambda: len(got) == 20)
    assert sorted(m.id for m in got) == sorted(ids)
    assert nexus.stats.asks_received == 20
    await service.close()


async def test_server_error_carries_code(start_nexus: Any) -> None:
    def broken(request: AskRequest) -> AskResponse:
        raise RuntimeError("engine exploded")

    server = await start_nexus(engine=broken)
    async with WebSocketService(server.config()) as service:
        with pytest.raises(ServerError) as info:
            await service.ask("boom")
        assert info.value.code == "internal"
        # The connection survives the engine's failure: the next ask is answered
        # (with the same error, as this engine always fails) on the same socket.
        with pytest.raises(ServerError, match="internal"):
            await service.ask("again")
        assert service.state.value.connected
        assert server.stats.connections_total == 1


async def test_request_timeout_is_a_timeout_error(scripted: Any) -> None:
    async def silent(ws: web.WebSocketResponse, s: Scripted) -> None:
        while await s.next_frame(ws) is not None:
            pass

    server = await scripted(silent)
    async with WebSocketService(server.config()) as service:
        with pytest.raises(RequestTimeout) as info:
            await service.ask("anyone?", timeout=0.2)
        assert isinstance(info.value, TimeoutError)
        assert service.pending_count == 0


async def test_unawaited_ask_timeout_is_reported_on_errors(scripted: Any) -> None:
    async def silent(ws: web.WebSocketResponse, s: Scripted) -> None:
        while await s.next_frame(ws) is not None:
            pass

    server = await scripted(silent)
    async with WebSocketService(server.config(request_timeout=0.2)) as service:
        errors: list[NexusError] = []
        service.errors.subscribe(errors.append)
        ask_id = service.send_query("fire and forget")
        await wait_for(lambda: any(isinstance(e, RequestTimeout) for e in errors))
        assert ask_id in str(errors[-1])


async def test_disconnect_fails_pending_asks(scripted: Any) -> None:
    async def silent(ws: web.WebSocketResponse, s: Scripted) -> None:
        while await s.next_frame(ws) is not None:
            pass

    server = await scripted(silent)
    service = WebSocketService(server.config())
    await service.connect()
    pending = asyncio.ensure_future(service.ask("never answered"))
    await wait_for(lambda: len(server.received) == 1)
    service.disconnect()
    with pytest.raises(ConnectionClosed):
        await pending
    assert service.state.value.phase is Phase.DISCONNECTED
    await service.close()
    assert library_tasks() == []


async def test_out_of_order_answers_reach_their_asks(scripted: Any) -> None:
    async def reverse(ws: web.WebSocketResponse, s: Scripted) -> None:
        asks = [await s.next_frame(ws) for _ in range(3)]
        for frame in reversed(asks):
            assert frame is not None
            await ws.send_str(response_frame(frame["id"], f"answer to {frame['payload']['query']}"))
        while await s.next_frame(ws) is not None:
            pass

    server = await scripted(reverse)
    async with WebSocketService(server.config()) as service:
        answers = await asyncio.gather(*(service.ask(q) for q in ("a", "b", "c")))
        assert [a.answer for a in answers] == ["answer to a", "answer to b", "answer to c"]


async def test_out_of_order_answers_from_reference_server(start_nexus: Any) -> None:
    release = asyncio.Event()

    async def engine(request: AskRequest) -> AskResponse:
        if request.query == "slow":
            await release.wait()
        return AskResponse(answer=request.query.upper())

    server = await start_nexus(engine=engine)
    async with WebSocketService(server.config()) as service:
        order: list[str] = []
        service.on_response(lambda m: order.append(m.payload.answer))
        slow = asyncio.ensure_future(service.ask("slow"))
        fast = await service.ask("fast")
        assert fast.answer == "FAST" and not slow.done()
        release.set()
        assert (await slow).answer == "SLOW"
        assert order == ["FAST", "SLOW"]


async def test_malformed_frames_are_reported_and_never_settle_an_ask(scripted: Any) -> None:
    async def naughty(ws: web.WebSocketResponse, s: Scripted) -> None:
        frame = await s.next_frame(ws)
        assert frame is not None
        ask_id = frame["id"]
        await ws.send_str("this is not json")
        await ws.send_str(json.dumps([1, 2, 3]))
        # A known type with a wrong payload that carries the ask's id.
        await ws.send_str(json.dumps({"type": "response", "id": ask_id, "payload": {"answer": 7}}))
        await ws.send_bytes(b"\x00binary")
        await ws.send_str(json.dumps({"type": "novel", "id": "n1", "payload": {"x": [1]}}))
        await ws.send_str(response_frame(ask_id, "the real answer"))
        while await s.next_frame(ws) is not None:
            pass

    server = await scripted(naughty)
    async with WebSocketService(server.config()) as service:
        errors: list[NexusError] = []
        messages: list[Message] = []
        service.errors.subscribe(errors.append)
        service.messages.subscribe(messages.append)
        responses: list[ResponseMessage] = []
        service.on_response(responses.append)
        answer = await service.ask("hello")
        assert answer.answer == "the real answer"
        protocol_errors = [e for e in errors if isinstance(e, ProtocolError)]
        assert len(protocol_errors) == 4
        assert "not json" in protocol_errors[0].frame
        assert protocol_errors[2].message_id is not None
        assert [type(m) for m in messages] == [UnknownMessage, ResponseMessage]
        assert isinstance(messages[0], UnknownMessage) and messages[0].payload == {"x": [1]}
        assert len(responses) == 1
        assert service.state.value.connected
        assert server.connections == 1


async def test_duplicate_answers_are_delivered_once(scripted: Any) -> None:
    async def twice(ws: web.WebSocketResponse, s: Scripted) -> None:
        frame = await s.next_frame(ws)
        assert frame is not None
        for _ in range(3):
            await ws.send_str(response_frame(frame["id"], "once"))
        await ws.send_str(response_frame("sentinel", "unsolicited"))
        while await s.next_frame(ws) is not None:
            pass

    server = await scripted(twice)
    async with WebSocketService(server.config()) as service:
        seen: list[ResponseMessage] = []
        service.on_response(seen.append)
        assert (await service.ask("q")).answer == "once"
        await wait_for(lambda: any(m.id == "sentinel" for m in seen))
        assert [m.payload.answer for m in seen] == ["once", "unsolicited"]


async def test_state_replays_synchronously_and_in_order(nexus: Nexus) -> None:
    service = WebSocketService(nexus.config())
    first: list[ConnectionState] = []
    service.state.subscribe(first.append)
    assert len(first) == 1 and first[0].phase is Phase.DISCONNECTED
    await service.connect()
    late: list[ConnectionState] = []
    service.state.subscribe(late.append)
    assert late == [service.state.value] and late[0].connected
    await service.close()
    phases = [s.phase for s in first]
    assert phases == [
        Phase.DISCONNECTED,
        Phase.CONNECTING,
        Phase.CONNECTED,
        Phase.DISCONNECTED,
        Phase.CLOSED,
    ]
    assert all(a != b for a, b in itertools.pairwise(first))


async def test_challenge_without_signing_key_is_fatal(scripted: Any) -> None:
    async def challenger(ws: web.WebSocketResponse, s: Scripted) -> None:
        await ws.send_str(
            json.dumps({"type": "challenge", "id": "c1", "payload": {"challenge": "n"}})
        )
        while await s.next_frame(ws) is not None:
            pass

    server = await scripted(challenger)
    service = WebSocketService(server.config())
    seen: list[Any] = []
    service.state.subscribe(seen.append)
    # The challenge comes first after the upgrade: connect() fails with it, and the
    # state never says connected (issue 12, item 7).
    with pytest.raises(AuthenticationError, match="key-pair authentication"):
        await asyncio.wait_for(service.connect(), EVENTUALLY)
    state = service.state.value
    assert state.failed and state.error is not None and "key-pair authentication" in state.error
    assert not any(s.connected for s in seen), seen
    with pytest.raises(NexusError, match="key-pair authentication"):
        await service.ask("after the challenge")
    assert server.connections == 1
    await service.close()


async def test_streams_complete_on_close(nexus: Nexus) -> None:
    service = WebSocketService(nexus.config())
    done: list[str] = []
    service.messages.subscribe(on_completed=lambda: done.append("messages"))
    service.state.subscribe(on_completed=lambda: done.append("state"))
    service.errors.subscribe(on_completed=lambda: done.append("errors"))
    await service.connect()
    await service.close()
    assert sorted(done) == ["errors", "messages", "state"]


async def test_server_app_rejects_missing_key_with_401(nexus: Nexus) -> None:
    # The client's view of a server-side 401 is covered above; this pins the
    # server's side: no upgrade, no socket counted.
    import aiohttp

    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(nexus.url)
        assert info.value.status == 401
    assert nexus.stats.connections_total == 0


async def test_sending_on_a_closed_service_is_refused_and_queues_nothing(nexus: Nexus) -> None:
    """A closed service never sends again: a message queued there would be lost
    silently, and an awaited ask would wait for its timeout (or forever)."""
    service = WebSocketService(nexus.config(request_timeout=None))
    await service.connect()
    await service.close()
    calls = {
        "send": lambda: service.send({"type": "ask", "id": "a1", "payload": {"query": "q"}}),
        "send_query": lambda: service.send_query("lost?"),
    }
    for name, call in calls.items():
        with pytest.raises(UsageError, match=rf"{name}\(\): this service is closed"):
            call()
    with pytest.raises(UsageError, match=r"ask\(\): this service is closed"):
        await asyncio.wait_for(service.ask("lost?"), EVENTUALLY)
    assert service.outbox_depth.value == 0
    assert library_tasks() == []
