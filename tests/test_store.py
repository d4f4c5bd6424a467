"""use_websocket / WebSocketStore over real loopback sockets."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
from aiohttp import web

from nexus_reactive import (
    ConnectionState,
    History,
    HistoryItem,
    PartialResponse,
    ResponseMessage,
    UsageError,
    WebSocketConfig,
    codec,
    use_websocket,
)
from nexus_reactive.intake import Intake

from .conftest import Nexus, Scripted, library_tasks, response_frame
from .faults import wait_for


def test_use_websocket_without_a_loop_says_how_to_use_it() -> None:
    with pytest.raises(UsageError) as info:
        use_websocket(url="ws://localhost:8000", api_key="k")
    assert "asyncio.run" in str(info.value) and "use_websocket_sync" in str(info.value)


async def test_store_unpacks_like_the_hook_and_answers(nexus: Nexus) -> None:
    store = use_websocket(nexus.config())
    state, messages, send_message, clear_messages = store
    assert state is store.state and messages is store.messages
    seen_states: list[ConnectionState] = []
    state.subscribe(seen_states.append)
    assert len(seen_states) == 1  # replayed synchronously inside subscribe
    await wait_for(lambda: state.value.connected)
    ask_id = send_message("What is Nexus?")
    await wait_for(lambda: len(messages.value) == 1)
    message = messages.value[0]
    assert isinstance(message, ResponseMessage) and message.id == ask_id
    assert "What is Nexus?" in message.payload.answer  # the seed's message.payload.answer
    assert seen_states[-1].connected
    clear_messages()
    assert len(messages.value) == 0
    await store.close()
    assert library_tasks() == []


async def test_config_object_and_keywords_are_equivalent(nexus: Nexus) -> None:
    async with use_websocket(nexus.config(), max_messages=5) as store:
        assert store.max_messages == 5
    with pytest.raises(Exception, match="unknown option"):
        use_websocket(url=nexus.url, colour="blue")


async def test_messages_replay_and_value_is_always_current(nexus: Nexus) -> None:
    async with use_websocket(nexus.config()) as store:
        await wait_for(lambda: store.state.value.connected)
        for i in range(5):
            store.send_message(f"q{i}")
        emissions: list[History[HistoryItem]] = []
        store.messages.subscribe(emissions.append)
        assert emissions[0] == store.messages.value  # replayed at once
        await wait_for(lambda: len(store.messages.value) == 5)

        def current_when_seen(history: History[HistoryItem]) -> None:
            assert len(history) == len(store.messages.value)

        store.messages.subscribe(current_when_seen)
        store.send_message("one more")
        await wait_for(lambda: len(store.messages.value) == 6)
        assert len(emissions[-1]) == 6


async def test_views_are_immutable_snapshots(nexus: Nexus) -> None:
    async with use_websocket(nexus.config()) as store:
        store.send_message("first")
        await wait_for(lambda: len(store.messages.value) == 1)
        before = store.messages.value
        store.send_message("second")
        await wait_for(lambda: len(store.messages.value) == 2)
        assert len(before) == 1
        store.clear_messages()
        assert len(before) == 1 and len(store.messages.value) == 0


async def test_history_is_bounded_and_keeps_the_newest(scripted: Any) -> None:
    async def flood(ws: web.WebSocketResponse, s: Scripted) -> None:
        for i in range(250):
            await ws.send_str(response_frame(f"id{i}", f"answer {i}"))
        while await s.next_frame(ws) is not None:
            pass

    server = await scripted(flood)
    async with use_websocket(server.config(), max_messages=100) as store:
        await wait_for(lambda: any(m.id == "id249" for m in store.messages.value))
        history = store.messages.value
        assert len(history) == 100
        assert [m.id for m in history] == [f"id{i}" for i in range(150, 250)]


async def test_a_flood_is_batched_into_few_emissions_and_loses_nothing(scripted: Any) -> None:
    async def flood(ws: web.WebSocketResponse, s: Scripted) -> None:
        frames = [response_frame(f"id{i}", "x") for i in range(2000)]
        for frame in frames:
            await ws.send_str(frame)
        while await s.next_frame(ws) is not None:
            pass

    server = await scripted(flood)
    async with use_websocket(server.config(), max_messages=5000) as store:
        emissions: list[int] = []
        store.messages.subscribe(lambda h: emissions.append(len(h)))
        await wait_for(lambda: len(store.messages.value) == 2000)
        await wait_for(lambda: emissions[-1] == 2000)
        assert len(emissions) < 2000 / 2  # many messages per emission
        assert emissions == sorted(emissions)  # monotonic: nothing lost or reordered
        assert [m.id for m in store.messages.value] == [f"id{i}" for i in range(2000)]


async def test_streamed_answer_grows_in_place_then_is_replaced(scripted: Any) -> None:
    release = asyncio.Event()

    async def streamer(ws: web.WebSocketResponse, s: Scripted) -> None:
        frame = await s.next_frame(ws)
        assert frame is not None
        ask = frame["id"]

        def chunk(index: int, delta: str) -> str:
            payload = {"delta": delta, "index": index}
            return json.dumps({"type": "response_chunk", "id": ask, "payload": payload})

        await ws.send_str(response_frame("before", "unrelated"))
        await ws.send_str(chunk(1, "world"))  # out of order
        await ws.send_str(chunk(0, "hello "))
        await ws.send_str(chunk(0, "hello "))  # repeated
        await release.wait()
        await ws.send_str(chunk(2, "!"))
        await ws.send_str(response_frame(ask, "hello world!"))
        while await s.next_frame(ws) is not None:
            pass

    server = await scripted(streamer)
    async with use_websocket(server.config()) as store:
        ask_id = store.send_message("greet me")
        await wait_for(lambda: any(isinstance(m, PartialResponse) for m in store.messages.value))
        during = store.messages.value
        assert [m.id for m in during] == ["before", ask_id]
        assert isinstance(during[1], PartialResponse)
        assert during[1].payload.answer == "hello world"
        release.set()
        await wait_for(lambda: isinstance(store.messages.value[-1], ResponseMessage))
        after = store.messages.value
        assert [m.id for m in after] == ["before", ask_id]
        assert after[1].payload.answer == "hello world!"
        # The view taken while streaming still shows what it showed then.
        assert isinstance(during[1], PartialResponse)
        assert during[1].payload.answer == "hello world"


async def test_stores_share_one_socket_when_they_ask_for_it(nexus: Nexus) -> None:
    config = nexus.config()
    a = use_websocket(config, share=True)
    b = use_websocket(config, share=True, max_messages=50)  # a store option: still shared
    assert a.service is b.service
    other = use_websocket(config)  # the default: its own connection
    assert other.service is not a.service
    await wait_for(lambda: a.state.value.connected and other.state.value.connected)
    a_id = a.send_message("from a")
    b_id = b.send_message("from b")
    await wait_for(lambda: len(a.messages.value) == 1 and len(b.messages.value) == 1)
    assert [m.id for m in a.messages.value] == [a_id]  # never the other's answer
    assert [m.id for m in b.messages.value] == [b_id]
    assert nexus.stats.connections_total == 2  # a+b share one, `other` has its own
    await a.close()
    assert b.state.value.connected  # still used by b
    b.send_message("still works")
    await wait_for(lambda: len(b.messages.value) == 2)
    await b.close()
    await other.close()
    await wait_for(lambda: nexus.stats.connections_open == 0)
    assert library_tasks() == []


async def test_team_scoped_store_sees_only_its_own_answers(start_nexus: Any) -> None:
    from nexus_reactive import AskRequest, AskResponse

    def engine(request: AskRequest) -> AskResponse:
        return AskResponse(answer=f"{request.team_id}: {request.query}")

    server = await start_nexus(engine=engine)
    config = server.config()
    red = use_websocket(config, team_id="red", share=True)
    blue = use_websocket(config, team_id="blue", share=True)
    everyone = use_websocket(config)
    assert red.service is blue.service is not everyone.service
    red.send_message("hi")
    blue.send_message("hello")
    everyone.send_message("all")
    await wait_for(lambda: len(everyone.messages.value) == 1)
    await wait_for(lambda: len(red.messages.value) == 1 and len(blue.messages.value) == 1)
    assert red.messages.value[0].payload.answer == "red: hi"
    assert blue.messages.value[0].payload.answer == "blue: hello"
    assert server.stats.connections_total == 2
    for store in (red, blue, everyone):
        await store.close()


async def test_close_from_another_thread_and_thread_safe_commands(nexus: Nexus) -> None:
    store = use_websocket(nexus.config())
    await wait_for(lambda: store.state.value.connected)
    ids = await asyncio.to_thread(lambda: [store.send_message(f"t{i}") for i in range(3)])
    await wait_for(lambda: len(store.messages.value) == 3)
    assert sorted(m.id for m in store.messages.value) == sorted(ids)
    await asyncio.to_thread(store.clear_messages)
    await wait_for(lambda: len(store.messages.value) == 0)

    def close_in_thread() -> None:
        asyncio.run(store.close())

    await asyncio.to_thread(close_in_thread)
    assert store.service.closed
    assert library_tasks() == []


async def test_scheduler_delivers_every_emission_through_it(nexus: Nexus) -> None:
    from reactivex.scheduler.eventloop import AsyncIOScheduler

    class Counting(AsyncIOScheduler):
        scheduled = 0

        def schedule(self, action: Any, state: Any = None) -> Any:
            Counting.scheduled += 1
            return super().schedule(action, state)

    scheduler = Counting(asyncio.get_running_loop())
    async with use_websocket(nexus.config(), scheduler=scheduler) as store:
        seen: list[ConnectionState] = []
        store.state.subscribe(seen.append)
        assert seen == []  # not synchronous: it goes through the scheduler
        await wait_for(lambda: bool(seen) and seen[-1].connected)
        assert Counting.scheduled >= len(seen)
        assert store.state.value.connected


async def test_store_repr_and_html_never_show_the_key(nexus: Nexus) -> None:
    async with use_websocket(nexus.config()) as store:
        await wait_for(lambda: store.state.value.connected)
        store.send_message("<b>markup</b>")
        await wait_for(lambda: len(store.messages.value) == 1)
        text = repr(store) + store._repr_html_() + repr(store.service.config)
        assert "WebSocketStore" in text and "&lt;b&gt;markup" in text
        assert nexus.config().api_key not in text  # type: ignore[operator]


def test_store_requires_a_config_url() -> None:
    with pytest.raises(Exception, match="ws://"):
        WebSocketConfig(url="http://example.com")


async def test_store_errors_name_the_failed_ask_and_respect_team_scope(scripted: Any) -> None:
    from nexus_reactive import NexusError, RequestTimeout

    async def silent(ws: web.WebSocketResponse, s: Scripted) -> None:
        while await s.next_frame(ws) is not None:
            pass

    server = await scripted(silent)
    config = server.config(request_timeout=0.2)
    red = use_websocket(config, team_id="red")
    blue = use_websocket(config, team_id="blue")
    red_errors: list[NexusError] = []
    blue_errors: list[NexusError] = []
    red.errors.subscribe(red_errors.append)
    blue.errors.subscribe(blue_errors.append)
    ask_id = red.send_message("nobody answers")
    await wait_for(lambda: any(isinstance(e, RequestTimeout) for e in red_errors))
    timeout = next(e for e in red_errors if isinstance(e, RequestTimeout))
    assert timeout.message_id == ask_id
    assert not any(isinstance(e, RequestTimeout) for e in blue_errors)
    await red.close()
    await blue.close()


async def test_batch_interval_caps_the_emission_rate_and_drops_nothing(scripted: Any) -> None:
    async def trickle(ws: web.WebSocketResponse, s: Scripted) -> None:
        for i in range(40):
            await ws.send_str(response_frame(f"id{i}", "x"))
            await asyncio.sleep(0.005)  # the server's pace, not a wait in the test
        while await s.next_frame(ws) is not None:
            pass

    server = await scripted(trickle)
    loop = asyncio.get_running_loop()
    async with use_websocket(server.config(), batch_interval=0.1) as store:
        sizes: list[int] = []
        times: list[float] = []

        def seen(history: Any) -> None:
            sizes.append(len(history))
            times.append(loop.time())

        store.messages.subscribe(seen)
        await wait_for(lambda: sizes[-1] == 40)
        # After the replay, emissions are at least batch_interval apart (a slow
        # machine only spreads them further), and each carries all that arrived.
        gaps = [b - a for a, b in itertools.pairwise(times[1:])]
        assert all(gap >= 0.09 for gap in gaps), gaps
        assert len(sizes) < 40 and sizes == sorted(sizes)
        assert [m.id for m in store.messages.value] == [f"id{i}" for i in range(40)]


@pytest.mark.parametrize(
    "index", [slice(1, 4), slice(None, None, -2), slice(-3, None), slice(5, 100)]
)
def test_history_slices_match_list_slices_with_in_progress_slots(index: slice) -> None:
    items: list[Any] = list(range(10))
    view = History(items, 2, 9, {4: "partial"})
    assert view[index] == list(view)[index]
    assert "partial" in list(view)


# == memory: stored responses with equal usage counts share one Usage ======================


def _usage_frame(message_id: str, tokens: tuple[int, int, int]) -> str:
    usage = dict(zip(("prompt_tokens", "completion_tokens", "total_tokens"), tokens, strict=True))
    payload = {"answer": f"to {message_id}", "usage": usage}
    return json.dumps({"type": "response", "id": message_id, "payload": payload})


async def test_stored_responses_with_equal_usage_share_one_object_and_keep_their_values(
    scripted: Any,
) -> None:
    async def script(ws: web.WebSocketResponse, conn: Scripted) -> None:
        for n in range(4):  # equal counts, then other counts
            await ws.send_str(_usage_frame(f"same-{n}", (12, 9, 21)))
        await ws.send_str(_usage_frame("other", (1, 2, 3)))
        for index, delta in enumerate(("str", "eamed")):  # a streamed answer, then its end
            chunk = {"delta": delta, "index": index}
            await ws.send_str(json.dumps({"type": "response_chunk", "id": "s", "payload": chunk}))
        await ws.send_str(_usage_frame("s", (1, 2, 3)))
        while await conn.next_frame(ws) is not None:
            pass

    server = await scripted(script)
    seen: list[ResponseMessage] = []
    async with use_websocket(server.config()) as store:
        store.service.responses.subscribe(seen.append)
        await wait_for(lambda: [m.id for m in store.messages.value][-1:] == ["s"])
        history = list(store.messages.value)
    usages = [m.payload.usage for m in history]
    counts = [(u.prompt_tokens, u.completion_tokens, u.total_tokens) for u in usages]
    assert counts == [(12, 9, 21)] * 4 + [(1, 2, 3)] * 2
    assert all(u is usages[0] for u in usages[:4])  # one object: 40 bytes each less
    assert usages[4] is not usages[0]
    assert usages[5] is usages[4]  # the streamed answer's end too
    assert history == seen  # every message equal to what service.messages delivered


def test_varying_usage_counts_are_kept_as_they_came() -> None:
    loop = asyncio.new_event_loop()
    try:
        store = Intake(loop, 100, None, scoped=False)
        counts = [(1, 1, 2), (3, 4, 7), (1, 1, 2), (1, 1, 2), (0, 0, 0)]
        for n, tokens in enumerate(counts):
            store.on_message(codec.decode(_usage_frame(f"q{n}", tokens)))
        usages = [m.payload.usage for m in store.snapshot()]  # type: ignore[union-attr]
        assert [(u.prompt_tokens, u.completion_tokens, u.total_tokens) for u in usages] == counts
        assert usages[3] is usages[2]  # equal to the one before: shared
        assert usages[2] is not usages[0]  # compared with the last one only
        store.stop()
    finally:
        loop.close()
