"""examples/pipeline.py against the real reference server, in-process.

The example's composition (debounce, distinct_until_changed, ask_rx with timeout
and retry, switch_latest, scan) is checked by what the server saw and by what the
example printed, and its operators one by one with engines that misbehave on cue.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject

from nexus_reactive import AskRequest, AskResponse, ResponseMessage, ServerError, WebSocketService
from nexus_reactive.server import count_tokens

from .conftest import KEY, Nexus, ServerFactory
from .waiting import EVENTUALLY, wait_for

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pipeline.py"


@pytest.fixture(scope="module")
def pipeline() -> ModuleType:
    """The example, imported from its file (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("nexus_pipeline_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while building the classes.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def echo_usage(query: str) -> int:
    """The total tokens the reference server's echo engine reports for ``query``."""
    return count_tokens(query) + count_tokens(f"You asked: {query}")


async def test_main_debounces_bursts_and_totals_the_tokens(
    pipeline: ModuleType, nexus: Nexus, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await pipeline.main(nexus.url, KEY) == 0
    out = capsys.readouterr().out

    # Two bursts of 14 and 29 keystrokes became exactly two asks; the burst that
    # settled on the same query again asked nothing; the pasted document was
    # refused by the server before it counted as an ask.
    keystrokes = sum(len(keys) for _action, keys in pipeline.SESSION)
    assert keystrokes > 40
    assert nexus.stats.asks_received == 2
    assert nexus.stats.engine_calls == 2
    assert "[unchanged] 'What is Nexus?': not asked again" in out
    assert "[server error] bad_request: query is 23999 characters long" in out
    assert "[failed] 'lorem ipsum" in out

    answers = re.findall(r"^\[answer\] You asked: (.+) \(tokens=(\d+)\)$", out, re.MULTILINE)
    assert [query for query, _tokens in answers] == [
        "What is Nexus?",
        "How does reconnection work?",
    ]
    # Each answer's usage is what the server counted; scan's totals are their sum.
    for query, tokens in answers:
        assert int(tokens) == echo_usage(query)
    expected_total = sum(int(tokens) for _query, tokens in answers)
    done = re.search(
        r"^\[done\] asks=(\d+) answered=(\d+) failed=(\d+) total_tokens=(\d+) .*; "
        r"(\d+) response message\(s\) on the wire$",
        out,
        re.MULTILINE,
    )
    assert done is not None, out
    assert [int(n) for n in done.groups()] == [3, 2, 1, expected_total, 2]
    # The running totals went up one outcome at a time.
    running = [int(n) for n in re.findall(r"^\[totals\] asks=(\d+)", out, re.MULTILINE)]
    assert running == [1, 2, 3]
    assert KEY not in out


async def test_main_reports_a_server_it_cannot_reach(
    pipeline: ModuleType, nexus: Nexus, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await pipeline.main(nexus.url, "not-the-key") == 1
    out = capsys.readouterr().out
    assert out.startswith("[error] ") and "401" in out
    assert nexus.stats.asks_received == 0


async def test_run_session_returns_events_and_totals(pipeline: ModuleType, nexus: Nexus) -> None:

    lines: list[str] = []
    session = [
        ("types", pipeline.typed("first question")),
        ("types", pipeline.typed("second question", typo_at=3)),
        ("retypes", ["second questio", "second question"]),
    ]
    async with WebSocketService(nexus.config()) as service:
        events, totals = await pipeline.run_session(
            service, session, debounce=0.05, out=lines.append
        )
    assert [type(e).__name__ for e in events] == ["Answered", "Answered", "Unchanged"]
    assert [e.query for e in events] == ["first question", "second question", "second question"]
    assert totals.asks == totals.answered == 2
    assert totals.total_tokens == echo_usage("first question") + echo_usage("second question")
    assert nexus.stats.asks_received == 2


async def test_switch_latest_drops_the_answer_to_a_superseded_query(
    pipeline: ModuleType, start_nexus: ServerFactory
) -> None:
    release = asyncio.Event()

    async def engine(request: AskRequest) -> AskResponse:
        if request.query == "slow":
            await release.wait()
        return AskResponse(answer=f"You asked: {request.query}")

    nexus = await start_nexus(engine=engine)

    async with WebSocketService(nexus.config()) as service:
        keystrokes: Subject[str] = Subject()
        scheduler = AsyncIOScheduler(asyncio.get_running_loop())
        built = pipeline.build_pipeline(service, keystrokes, scheduler, debounce=0.01)
        seen: list[Any] = []
        wire: list[ResponseMessage] = []
        subscriptions = [
            built.events.subscribe(seen.append),
            service.responses.subscribe(wire.append),
        ]
        try:
            keystrokes.on_next("slow")
            await wait_for(lambda: nexus.stats.asks_received == 1)
            keystrokes.on_next("fast")  # settles while "slow" is still in flight
            await wait_for(lambda: seen)
            assert [(type(e).__name__, e.query) for e in seen] == [("Answered", "fast")]

            release.set()
            # The server does answer "slow", and the service receives it...
            await wait_for(lambda: any(m.payload.answer == "You asked: slow" for m in wire))
            # ...but the pipeline had switched to "fast": the stale answer never shows.
            assert [(type(e).__name__, e.query) for e in seen] == [("Answered", "fast")]
        finally:
            for subscription in subscriptions:
                subscription.dispose()


async def test_an_ask_that_times_out_is_asked_again(
    pipeline: ModuleType, start_nexus: ServerFactory
) -> None:
    calls: list[str] = []
    never = asyncio.Event()

    async def engine(request: AskRequest) -> AskResponse:
        calls.append(request.query)
        if len(calls) == 1:
            await never.wait()  # the first attempt gets no answer
        return AskResponse(answer=f"You asked: {request.query}")

    nexus = await start_nexus(engine=engine)

    async with WebSocketService(nexus.config()) as service:
        scheduler = AsyncIOScheduler(asyncio.get_running_loop())
        # 1 s an attempt: a loaded machine answers the second attempt well within it.
        ask = pipeline.asker(service, scheduler, timeout=1.0, attempts=5)
        outcome = await _first(ask("patience"))
        never.set()  # let the abandoned engine call finish before the server stops
    assert type(outcome).__name__ == "Answered"
    assert outcome.answer.answer == "You asked: patience"
    # A new ask (a new id) each attempt: the server computed it again.
    assert len(calls) >= 2 and set(calls) == {"patience"}


async def test_a_server_error_is_an_outcome_and_not_retried(
    pipeline: ModuleType, nexus: Nexus
) -> None:

    async with WebSocketService(nexus.config()) as service:
        scheduler = AsyncIOScheduler(asyncio.get_running_loop())
        errors: list[Any] = []
        counting = service.stream("error").subscribe(errors.append)
        ask = pipeline.asker(service, scheduler, attempts=5)
        outcome = await _first(ask("x" * 20_000))
        counting.dispose()
    assert type(outcome).__name__ == "Failed"
    assert isinstance(outcome.error, ServerError) and outcome.error.code == "bad_request"
    # Retrying would have asked (and been refused) again before giving up.
    assert len(errors) == 1


def test_typed_spells_out_each_keystroke(pipeline: ModuleType) -> None:
    assert pipeline.typed("abc") == ["a", "ab", "abc"]
    assert pipeline.typed("abc", typo_at=1) == ["a", "a#", "a", "ab", "abc"]


async def _first(observable: Any) -> Any:
    """The first value of an observable, as an awaitable; at most ``EVENTUALLY`` s."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_next(value: Any) -> None:
        if not future.done():
            future.set_result(value)

    def on_error(error: Exception) -> None:
        if not future.done():
            future.set_exception(error)

    subscription = observable.subscribe(on_next, on_error)
    try:
        return await asyncio.wait_for(future, EVENTUALLY)
    finally:
        subscription.dispose()
