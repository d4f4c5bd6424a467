"""After a server refuses an ask for its rate limit, asks go one at a time, then more
with each answer (``AskWindow``: slow start). A backlog therefore no longer goes out
whole into a server still over its limit, to be refused again and closed with 4429
on every reconnect. Real servers on loopback; the window's arithmetic without them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nexus_reactive import WebSocketService, outbound
from nexus_reactive.core import AskWindow, ClientCore, ratelimit
from nexus_reactive.core.outbox import Outgoing
from nexus_reactive.core.ratelimit import WINDOW_QUIET
from nexus_reactive.signing import public_key_hex
from nexus_reactive.testing import NexusServer, client_config

from .conftest import ServerFactory
from .resilience_kit import no_task_left_behind_fixture, script_server_fixture  # noqa: F401
from .resilience_servers import Conn
from .signed_keys import client_key_fixture, server_key_fixture  # noqa: F401
from .test_ask_runs import RUN
from .waiting import EVENTUALLY, wait_for

# -- the window, without sockets ----------------------------------------------------------


def test_no_window_before_a_refusal() -> None:
    window = AskWindow()
    assert window.room(0.0) is None
    window.wrote(1_000)
    window.answered(1_000)
    assert window.room(0.0) is None and window.out == 0


def test_a_refusal_lets_one_ask_await_and_each_answer_one_more() -> None:
    window = AskWindow()
    window.refused(10.0)
    assert window.room(10.0) == 1
    window.wrote(1)
    assert window.room(10.0) == 0
    window.answered(1)  # one answer: two may await
    assert window.room(10.0) == 2
    window.wrote(2)
    window.answered(2)
    assert window.room(10.0) == 4  # doubles with each round trip (slow start)


def test_past_the_threshold_the_window_grows_by_one_per_round_trip() -> None:
    window = AskWindow()
    window.refused(0.0)
    window.wrote(15)
    window.answered(15)  # 1 -> 16, the first threshold
    assert window.size == 16
    window.wrote(16)
    window.answered(15)
    assert window.size == 16  # a round trip is 16 answers now
    window.answered(1)
    assert window.size == 17


def test_a_refusal_under_the_window_halves_the_threshold_and_starts_over() -> None:
    window = AskWindow()
    window.refused(0.0)
    window.wrote(9)
    window.answered(9)  # size 10
    window.wrote(10)
    window.refused(0.5)  # one of the ten refused: it awaits nothing now
    assert window.size == 1 and window.out == 9
    assert window.room(0.5) == 0  # the nine others are awaited first
    window.answered(9)  # threshold 5: 1 -> 5 by slow start (4 answers), then 5: 6
    assert window.size == 6


def test_the_window_ends_once_it_no_longer_binds() -> None:
    window = AskWindow()
    window.refused(0.0)
    while window.size is not None:
        window.wrote(window.size)
        window.answered(window.size)
    assert window.room(0.0) is None and window.out == 0


def test_the_window_ends_after_a_quiet_second() -> None:
    window = AskWindow()
    window.refused(100.0)
    window.wrote(1)
    assert window.room(100.0 + WINDOW_QUIET / 2) == 0
    assert window.room(100.0 + WINDOW_QUIET) is None
    window.refused(200.0)  # and a new refusal starts afresh, at the first threshold
    assert window.room(200.0) == 1


def test_the_quiet_second_counts_from_when_sending_may_resume() -> None:
    window = AskWindow()
    window.refused(100.0, resume=130.0)  # "again in 30 s": nothing goes meanwhile
    assert window.room(130.5) == 1
    assert window.room(131.0) is None


def test_a_new_connection_restarts_the_quiet_second_of_a_binding_window() -> None:
    window = AskWindow()
    window.refused(10.0)
    window.wrote(1)
    window.resumed(12.0)  # back after a 4429's stay-away: the time away was no quiet
    assert window.room(12.5) == 1
    ended = AskWindow()
    ended.resumed(12.0)
    assert ended.room(12.0) is None  # (no window: none made)


def test_forgotten_asks_leave_room() -> None:
    window = AskWindow()
    window.refused(0.0)
    window.wrote(1)
    window.forget()
    assert window.room(0.0) == 1


def _core_with(*items: Outgoing) -> ClientCore[Any]:
    core: ClientCore[Any] = ClientCore(outbox_limit=100)
    for item in items:
        if item.ask_id is not None:
            core.submit_ask(item.ask_id, item.frame, None)
        else:
            core.outbox.put(item)
    return core


def test_take_window_takes_other_frames_past_the_asks_it_cannot_take() -> None:
    core = _core_with(Outgoing(b"a1", "a1"), Outgoing(b"p1"), Outgoing(b"a2", "a2"))
    assert [i[0] for i in core.take_window(256, 1)] == [b"a1", b"p1"]
    assert core.take_window(256, 0) == []  # the head is an ask, and no room
    assert [i[0] for i in core.take_window(256, 1)] == [b"a2"]
    assert core.pending.get("a1").on_wire and core.pending.get("a2").on_wire  # type: ignore[union-attr]


def test_take_window_does_not_hold_frames_behind_an_abandoned_ask() -> None:
    # An ask abandoned while queued (cancelled, timed out) will never go: it takes no
    # room, and the message behind it is not held for the window's room.
    core = _core_with(Outgoing(b"a1", "a1"), Outgoing(b"a2", "a2"), Outgoing(b"p1"))
    core.pending.discard("a2")
    assert [i[0] for i in core.take_window(256, 1)] == [b"a1", b"p1"]
    assert not core.outbox.items


# -- against servers ----------------------------------------------------------------------


async def test_a_backlog_against_a_rate_limiting_server_is_not_closed_again_and_again(
    start_nexus: ServerFactory,
) -> None:
    # 400 asks/s with a burst of 40, and 160 asks made at once: the first runs go out
    # before the first refusal is back, so the server refuses the rest and may close
    # with 4429 once. After that the backlog goes under the window: every ask is
    # answered once, the default retry budget is plenty, and the server never has to
    # close again. (Before the window, each reconnect sent the whole backlog again,
    # to be refused and closed: 2 to 4 closes and ~1,000 refusals here, and a livelock
    # of over a thousand closes a minute with other timings.)
    nexus = await start_nexus(rate_limit=400.0, rate_burst=40)
    config = nexus.config(heartbeat=None, request_timeout=None)  # default retries
    async with WebSocketService(config) as service:
        await service.connect()
        names = [f"q{i:03d}" for i in range(5 * RUN)]
        tasks = [asyncio.create_task(service.ask(n)) for n in names]
        answers = await asyncio.wait_for(asyncio.gather(*tasks), EVENTUALLY)
        assert [a.answer for a in answers] == [f"You asked: {n}" for n in names]
    assert nexus.stats.abuse_closes <= 1
    assert nexus.stats.engine_calls == len(names)  # each answered once


async def test_an_ask_the_server_drops_under_the_window_does_not_hold_the_rest(
    script_server: Any,
) -> None:
    # The first ask is refused for the rate limit; it goes again, alone under the
    # window, and the server never answers it. The window stops counting it after a
    # silence, and the asks behind it go and are answered.
    async def script(conn: Conn) -> None:
        first = await conn.next_ask()
        refusal = {"code": "rate_limited", "message": "slow down", "retry_after": 0.01}
        await conn.send({"type": "error", "id": first["id"], "payload": refusal})
        again = await conn.next_ask()
        assert again["id"] == first["id"]  # dropped: never answered
        while True:
            await conn.answer(await conn.next_ask())

    server = await script_server(script)
    service = WebSocketService(server.config(request_timeout=None))
    await service.connect()
    dropped = asyncio.create_task(service.ask("dropped"))
    await wait_for(lambda: len(server.asks()) >= 1)
    behind = [asyncio.create_task(service.ask(f"behind {i}")) for i in range(3)]
    answers = await asyncio.wait_for(asyncio.gather(*behind), EVENTUALLY)
    assert [a.answer for a in answers] == [f"re: behind {i}" for i in range(3)]
    assert not dropped.done()
    dropped.cancel()
    await service.close()


# -- hostile second read ------------------------------------------------------------------


def _no_silence_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither a quiet second nor an unanswered one ends the window: only the answers
    the client counts make room (a client that misses them stalls for good)."""
    monkeypatch.setattr(ratelimit, "WINDOW_QUIET", 3600.0)
    monkeypatch.setattr(outbound, "_WINDOW_SILENCE", 3600.0)


async def test_answers_read_one_frame_at_a_time_make_room_in_the_window(
    script_server: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # With frame tracing on (as on a signed or sealed connection), the receive loop
    # hands the receiver one frame at a time. The answers read that way must make room
    # in the window as the batched ones do, or each step of it waits for the silence.
    _no_silence_fallback(monkeypatch)
    caplog.set_level(logging.DEBUG, logger="nexus_reactive.frames")

    names = [f"q{i}" for i in range(6)]

    # Every one of the first asks is refused: they go again, windowed.
    server = await script_server(_refuse_then_answer(len(names), retry_after=0.01))
    async with WebSocketService(server.config(request_timeout=None)) as service:
        await service.connect()
        tasks = [asyncio.create_task(service.ask(n)) for n in names]
        answers = await asyncio.wait_for(asyncio.gather(*tasks), EVENTUALLY)
        assert [a.answer for a in answers] == [f"re: {n}" for n in names]


async def test_answers_to_fire_and_forget_asks_make_room_in_the_window(
    script_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # send_query asks have no waiter: their answers, read in a batch, must make room
    # in the window all the same, or each of them holds the next for good.
    _no_silence_fallback(monkeypatch)
    names = [f"f{i}" for i in range(6)]

    server = await script_server(_refuse_then_answer(1, retry_after=0.01))
    async with WebSocketService(server.config(request_timeout=None)) as service:
        answers: list[str] = []
        service.on_response(lambda message: answers.append(message.payload.answer))
        await service.connect()
        for name in names:
            service.send_query(name)
        await wait_for(lambda: len(answers) == len(names))
        assert sorted(answers) == sorted(f"re: {n}" for n in names)


async def test_answers_on_a_signed_connection_make_room_in_the_window(
    server_key: Ed25519PrivateKey, client_key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_silence_fallback(monkeypatch)
    async with NexusServer(signing_key=server_key, rate_limit=200.0, rate_burst=4) as server:
        cfg = client_config(
            server.url,
            server.key,
            signing_key=client_key,
            server_key=public_key_hex(server_key),
            heartbeat=None,
            request_timeout=None,
        )
        async with WebSocketService(cfg) as service:
            await service.connect()
            names = [f"q{i:02d}" for i in range(40)]
            tasks = [asyncio.create_task(service.ask(n)) for n in names]
            answers = await asyncio.wait_for(asyncio.gather(*tasks), EVENTUALLY)
            assert [a.answer for a in answers] == [f"You asked: {n}" for n in names]
        assert server.stats.rate_limited >= 1  # (the window was on)


def _window(service: WebSocketService) -> AskWindow:
    return service._connection.sender.window


_REFUSAL = {"code": "rate_limited", "message": "slow down"}


def _refuse_then_answer(asks: int, retry_after: float) -> Callable[[Conn], Any]:
    """A server script: refuse the first ``asks`` asks for the rate limit (after all of
    them came in), then answer every ask."""

    async def script(conn: Conn) -> None:
        came = [await conn.next_ask() for _ in range(asks)]
        for ask in came:
            refusal = _REFUSAL | {"retry_after": retry_after}
            await conn.send({"type": "error", "id": ask["id"], "payload": refusal})
        while (frame := await conn.next_frame()) is not None:
            if frame["type"] == "ask":
                await conn.answer(frame)

    return script


async def _asked_under_the_window(server: Any, names: list[str], went: Callable[[], bool]) -> None:
    """Ask ``names`` at once of ``server``; once ``went()``, the window must bind; then
    every ask is answered, in order."""
    async with WebSocketService(server.config(request_timeout=None)) as service:
        await service.connect()
        tasks = [asyncio.create_task(service.ask(n)) for n in names]
        await wait_for(went)
        assert _window(service).size is not None
        answers = await asyncio.wait_for(asyncio.gather(*tasks), EVENTUALLY)
        assert [a.answer for a in answers] == [f"re: {n}" for n in names]


async def test_a_retry_after_longer_than_the_quiet_second_does_not_end_the_window(
    script_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server that says "again in 0.5 s" (a per-minute limit says 30 s): nothing is
    # sent meanwhile, so the wait is no quiet second. Once sending resumes, one ask
    # goes, not the whole backlog into a server that has just said it is over its limit.
    monkeypatch.setattr(ratelimit, "WINDOW_QUIET", 0.3)
    monkeypatch.setattr(outbound, "_WINDOW_SILENCE", 3600.0)
    names = [f"q{i}" for i in range(4)]

    async def script(conn: Conn) -> None:
        for _ in names:
            ask = await conn.next_ask()
            await conn.send(
                {"type": "error", "id": ask["id"], "payload": _REFUSAL | {"retry_after": 0.5}}
            )
        while (ask := await conn.next_frame()) is not None:
            await conn.answer(ask)

    server = await script_server(script)
    # The first goes again; the window binds: the others wait.
    await _asked_under_the_window(server, names, lambda: len(server.asks()) > len(names))


async def test_a_4429_reconnect_longer_than_the_quiet_second_does_not_end_the_window(
    script_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reference server's way: an error with id "" and retry_after, then a close
    # with 4429. The client stays away 0.5 s; that is no quiet second either.
    monkeypatch.setattr(ratelimit, "WINDOW_QUIET", 0.3)
    monkeypatch.setattr(outbound, "_WINDOW_SILENCE", 3600.0)
    names = [f"q{i}" for i in range(4)]

    async def script(conn: Conn) -> None:
        if conn.index == 0:
            for _ in names:
                await conn.next_ask()
            await conn.send({"type": "error", "id": "", "payload": _REFUSAL | {"retry_after": 0.5}})
            await conn.close(4429, "retry_after=0.5")
            return
        while (ask := await conn.next_frame()) is not None:
            await conn.answer(ask)

    server = await script_server(script)
    # One ask went on the new connection; the others wait for it.
    await _asked_under_the_window(
        server, names, lambda: server.connections == 2 and len(server.asks()) > len(names)
    )


async def test_a_4429_close_alone_puts_the_asks_under_the_window(
    script_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server that closes with 4429 without saying so first (the close is the refusal).
    monkeypatch.setattr(outbound, "_WINDOW_SILENCE", 3600.0)
    names = [f"q{i}" for i in range(4)]

    async def script(conn: Conn) -> None:
        if conn.index == 0:
            for _ in names:
                await conn.next_ask()
            await conn.close(4429, "retry_after=0.01")
            return
        while (ask := await conn.next_frame()) is not None:
            await conn.answer(ask)

    server = await script_server(script)
    await _asked_under_the_window(
        server, names, lambda: server.connections == 2 and len(server.asks()) > len(names)
    )


async def test_a_message_sent_behind_a_waiting_ask_keeps_its_place(
    script_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Messages that are not asks take no room in the window, but the outbox keeps its
    # order: one sent after an ask the window holds goes after that ask, not past it.
    monkeypatch.setattr(outbound, "_WINDOW_SILENCE", 3600.0)
    monkeypatch.setattr(ratelimit, "WINDOW_QUIET", 3600.0)

    server = await script_server(_refuse_then_answer(2, retry_after=0.01))
    async with WebSocketService(server.config(request_timeout=None)) as service:
        await service.connect()
        tasks = [asyncio.create_task(service.ask(n)) for n in ("q0", "q1")]
        await wait_for(lambda: len(server.asks()) == 2 and _window(service).size is not None)
        service.send({"type": "note", "id": "n1", "payload": {}})
        await asyncio.wait_for(asyncio.gather(*tasks), EVENTUALLY)
        await wait_for(lambda: any(f["type"] == "note" for f in server.received))
    kinds = [f["type"] for f in server.received]
    assert kinds == ["ask", "ask", "ask", "ask", "note"]  # each ask twice, then the note


def test_answers_to_asks_sent_before_the_refusal_do_not_open_the_window() -> None:
    # The refusal came back ahead of the answers to the asks that went with the
    # refused one: those answers say nothing about what the server takes now.
    window = AskWindow()
    window.refused(0.0)
    window.answered(39)
    assert window.room(0.0) == 1


async def test_after_a_refusal_one_ask_goes_whatever_was_answered_before_it(
    script_server: Any,
) -> None:
    names = [f"q{i}" for i in range(4)]

    async def script(conn: Conn) -> None:
        asks = [await conn.next_ask() for _ in names]
        await conn.send(
            {"type": "error", "id": asks[3]["id"], "payload": _REFUSAL | {"retry_after": 0.01}}
        )
        for ask in asks[:3]:  # answered after the refusal (each in its own task, say)
            await conn.answer(ask)
        while (frame := await conn.next_frame()) is not None:
            await conn.answer(frame)

    server = await script_server(script)
    async with WebSocketService(server.config(request_timeout=None)) as service:
        await service.connect()
        tasks = [asyncio.create_task(service.ask(n)) for n in names]
        await asyncio.wait_for(asyncio.gather(*tasks[:3]), EVENTUALLY)
        assert _window(service).room(asyncio.get_running_loop().time()) in (0, 1)  # one ask
        answers = await asyncio.wait_for(asyncio.gather(*tasks), EVENTUALLY)
        assert [a.answer for a in answers] == [f"re: {n}" for n in names]


async def test_asks_refused_in_one_read_go_again_in_the_order_they_were_made(
    script_server: Any,
) -> None:
    # Three asks, refused one after another before any could go again: they go again
    # q0, q1, q2, as made and as refused, not the last refused first.
    # (Each refusal waits 0.05 s: all three are read before any ask goes again.)
    server = await script_server(_refuse_then_answer(3, retry_after=0.05))
    async with WebSocketService(server.config(request_timeout=None)) as service:
        await service.connect()
        tasks = [asyncio.create_task(service.ask(f"q{i}")) for i in range(3)]
        await asyncio.wait_for(asyncio.gather(*tasks), EVENTUALLY)
    queries = [f["payload"]["query"] for f in server.received if f["type"] == "ask"]
    assert queries == ["q0", "q1", "q2", "q0", "q1", "q2"]
