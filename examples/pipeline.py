"""Pipeline: a search-as-you-type box, composed from the library's observables.

A simulated user types into a search box. Each keystroke is a value on a
Subject; the pipeline turns them into questions and the answers into running
token totals::

    keystrokes ─ debounce ─ strip ─ distinct_until_changed ─ ask_rx ─ switch_latest ─ scan
                 (a burst   (blank   (the same query again   (timeout,  (a newer     (running
                 is one     ignored) is not asked again)     retry)     query wins)  totals)
                 query)

- ``ops.debounce`` waits for a pause in typing, so a burst of keystrokes asks once;
- ``ops.distinct_until_changed`` drops a query equal to the previous one;
- ``service.ask_rx(query)`` is a cold Observable that asks when subscribed; each ask
  has an ``ops.timeout`` and is asked again (``ops.retry``) if no answer comes; a
  ``ServerError`` is an answer (the server said no), so it is not retried;
- ``ops.switch_latest`` keeps only the newest query's answer: if the user settles
  on a new query while an older one is still in flight, the older ask is abandoned;
- ``ops.scan`` folds the outcomes into running totals of the tokens used.

The time-based operators run on the asyncio loop through reactivex's
``AsyncIOScheduler``; every callback runs on the loop's thread, the thread that
the library's streams emit on.

    NEXUS_API_KEY=... python examples/pipeline.py [--url ws://localhost:8000]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import reactivex
from reactivex import Observable
from reactivex import operators as ops
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject

from nexus_reactive import (
    AskResponse,
    ErrorMessage,
    Message,
    NexusError,
    ServerError,
    WebSocketConfig,
    WebSocketService,
)

#: Seconds of quiet after the last keystroke before the text counts as a query.
DEBOUNCE = 0.25
#: Seconds one ask may take before it is abandoned and asked again.
ASK_TIMEOUT = 10.0
#: How many times a query is asked in all before it counts as failed.
ATTEMPTS = 3
#: Seconds the simulated user waits for the screen to react to what they typed.
REACTION_TIMEOUT = 30.0


# -- what comes out of the pipeline -------------------------------------------------


@dataclass(frozen=True)
class Answered:
    """The server answered ``query``."""

    query: str
    answer: AskResponse


@dataclass(frozen=True)
class Failed:
    """``query`` got no answer: the server refused it, or every attempt timed out."""

    query: str
    error: Exception


@dataclass(frozen=True)
class Unchanged:
    """The typing settled on the same query as before: nothing was asked."""

    query: str


Outcome: TypeAlias = Answered | Failed
Event: TypeAlias = Answered | Failed | Unchanged


@dataclass(frozen=True)
class Totals:
    """Running totals over the outcomes of the asks."""

    asks: int = 0
    answered: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def add(self, outcome: Outcome) -> Totals:
        """Return the totals with one more outcome counted (the ``scan`` step)."""
        if isinstance(outcome, Failed):
            return Totals(
                self.asks + 1,
                self.answered,
                self.failed + 1,
                self.prompt_tokens,
                self.completion_tokens,
                self.total_tokens,
            )
        usage = outcome.answer.usage
        return Totals(
            self.asks + 1,
            self.answered + 1,
            self.failed,
            self.prompt_tokens + (usage.prompt_tokens if usage else 0),
            self.completion_tokens + (usage.completion_tokens if usage else 0),
            self.total_tokens + (usage.total_tokens if usage else 0),
        )

    def __str__(self) -> str:
        return (
            f"asks={self.asks} answered={self.answered} failed={self.failed} "
            f"total_tokens={self.total_tokens} "
            f"(prompt {self.prompt_tokens} + completion {self.completion_tokens})"
        )


@dataclass(frozen=True)
class Pipeline:
    """The composed streams; subscribe to them before the first keystroke."""

    #: One event per settled query: its outcome, or ``Unchanged``.
    events: Observable[Event]
    #: The answers and failures, in order.
    outcomes: Observable[Outcome]
    #: The running totals, one value per outcome.
    totals: Observable[Totals]


# -- the composition ----------------------------------------------------------------


def asker(
    service: WebSocketService,
    scheduler: AsyncIOScheduler,
    *,
    timeout: float = ASK_TIMEOUT,
    attempts: int = ATTEMPTS,
) -> Callable[[str], Observable[Outcome]]:
    """Make the function that turns one query into an Observable of its one outcome.

    Args:
        service: a connected (or connecting) service.
        scheduler: the scheduler of ``ops.timeout``, on the service's event loop.
        timeout: seconds an attempt may take before it is abandoned.
        attempts: how many times the query is asked in all.

    Returns:
        ``query -> Observable[Outcome]``: it emits exactly one ``Answered`` or
        ``Failed`` and completes; it never errors.
    """

    def ask(query: str) -> Observable[Outcome]:
        def refused(error: Exception, _source: Observable[Outcome]) -> Observable[Outcome]:
            # The server answered "no": asking again would get the same answer.
            if isinstance(error, ServerError):
                return reactivex.just(Failed(query, error))
            return reactivex.throw(error)

        def gave_up(error: Exception, _source: Observable[Outcome]) -> Observable[Outcome]:
            return reactivex.just(Failed(query, error))

        def answered(answer: AskResponse) -> Outcome:
            return Answered(query, answer)

        outcome: Observable[Outcome] = service.ask_rx(query).pipe(
            ops.map(answered),
            ops.catch(refused),
        )
        return outcome.pipe(
            # Unsubscribing abandons the ask; retry subscribes again: a new ask.
            ops.timeout(timeout, scheduler=scheduler),
            ops.retry(attempts),
            ops.catch(gave_up),
        )

    return ask


def build_pipeline(
    service: WebSocketService,
    keystrokes: Observable[str],
    scheduler: AsyncIOScheduler,
    *,
    debounce: float = DEBOUNCE,
    timeout: float = ASK_TIMEOUT,
    attempts: int = ATTEMPTS,
) -> Pipeline:
    """Compose keystrokes -> settled queries -> asks -> outcomes -> totals.

    Args:
        service: the service to ask.
        keystrokes: the search box's text after each keystroke.
        scheduler: an ``AsyncIOScheduler`` on the service's event loop.
        debounce: seconds of quiet that settle a query.
        timeout: seconds one attempt of an ask may take.
        attempts: how many times a query is asked before it counts as failed.

    Returns:
        The streams; they are hot once subscribed (the typing is shared, so every
        subscriber sees the same settled queries and each query is asked once).
    """

    def not_blank(text: str) -> bool:
        return bool(text)

    settled: Observable[str] = keystrokes.pipe(
        ops.debounce(debounce, scheduler=scheduler),
        ops.map(str.strip),
        ops.filter(not_blank),
        ops.share(),
    )

    def same(pair: tuple[str, str]) -> bool:
        return pair[0] == pair[1]

    def unchanged_query(pair: tuple[str, str]) -> Event:
        return Unchanged(pair[1])

    unchanged: Observable[Event] = settled.pipe(
        ops.pairwise(),
        ops.filter(same),
        ops.map(unchanged_query),
    )
    outcomes: Observable[Outcome] = settled.pipe(
        ops.distinct_until_changed(),
        ops.map(asker(service, scheduler, timeout=timeout, attempts=attempts)),
        ops.switch_latest(),
        ops.share(),
    )
    totals = outcomes.pipe(ops.scan(Totals.add, Totals()))
    events: Observable[Event] = reactivex.merge(unchanged, outcomes)
    return Pipeline(events, outcomes, totals)


# -- the simulated user -------------------------------------------------------------


def typed(text: str, *, typo_at: int | None = None) -> list[str]:
    """The box's text after each keystroke when typing ``text``.

    Args:
        text: what the user ends up with.
        typo_at: type a wrong character at this position, then delete it.
    """
    states = []
    for end in range(1, len(text) + 1):
        if typo_at is not None and end == typo_at + 1:
            states.append(text[:typo_at] + "#")
            states.append(text[:typo_at])
        states.append(text[:end])
    return states


#: What the simulated user does: each burst is typed faster than the debounce.
SESSION: list[tuple[str, list[str]]] = [
    ("types a question", typed("What is Nexus?")),
    ("adds a character, thinks better of it", ["What is Nexus?!", "What is Nexus?"]),
    ("types another, fixing a typo", typed("How does reconnection work?", typo_at=9)),
    ("pastes a whole document", ["lorem ipsum " * 2000]),
]


def describe(event: Event) -> str:
    """One line for an event of the pipeline."""
    if isinstance(event, Unchanged):
        return f"[unchanged] {event.query!r}: not asked again"
    if isinstance(event, Failed):
        return f"[failed] {_short(event.query)}: {event.error}"
    usage = event.answer.usage
    tokens = usage.total_tokens if usage else 0
    return f"[answer] {event.answer.answer} (tokens={tokens})"


async def run_session(
    service: WebSocketService,
    session: Sequence[tuple[str, Sequence[str]]] = SESSION,
    *,
    debounce: float = DEBOUNCE,
    out: Callable[[str], None] = print,
) -> tuple[list[Event], Totals]:
    """Play ``session`` into the pipeline, printing what happens.

    After each burst the simulated user waits for the screen to react (an answer,
    a failure, or the query recognised as unchanged) before typing on.

    Args:
        service: the service to ask; it may still be connecting.
        session: ``(what the user does, the box's text after each keystroke)`` bursts.
        debounce: seconds of quiet that settle a query.
        out: where lines go.

    Returns:
        Every event, in order, and the final totals.

    Raises:
        TimeoutError: the pipeline did not react to a burst in time.
    """
    scheduler = AsyncIOScheduler(asyncio.get_running_loop())
    keystrokes: Subject[str] = Subject()
    pipeline = build_pipeline(service, keystrokes, scheduler, debounce=debounce)
    reactions: asyncio.Queue[Event | Exception] = asyncio.Queue()
    events: list[Event] = []
    totals = Totals()

    def on_totals(value: Totals) -> None:
        nonlocal totals
        totals = value
        out(f"[totals] {value}")

    def on_event(event: Event) -> None:
        out(describe(event))
        reactions.put_nowait(event)

    def on_server_error(message: Message) -> None:
        if isinstance(message, ErrorMessage):
            out(f"[server error] {message.payload.code}: {message.payload.message}")

    subscriptions = [
        # Server errors as they come off the wire, whoever asked.
        service.stream("error").subscribe(on_server_error),
        # Subscribed before the totals, so an event prints before the totals it makes.
        pipeline.events.subscribe(on_event, reactions.put_nowait),
        pipeline.totals.subscribe(on_totals),
    ]
    try:
        for action, keys in session:
            out(f"[user] {action}: {len(keys)} keystroke(s), ending with {_short(keys[-1])}")
            for text in keys:
                keystrokes.on_next(text)
            reaction = await asyncio.wait_for(reactions.get(), REACTION_TIMEOUT)
            if isinstance(reaction, Exception):
                raise reaction
            events.append(reaction)
        keystrokes.on_completed()
    finally:
        for subscription in subscriptions:
            subscription.dispose()
    return events, totals


async def main(url: str, api_key: str | None = None) -> int:
    """Connect, play the simulated session, print the totals.

    Args:
        url: the server's URL.
        api_key: the API key; ``None`` reads ``NEXUS_API_KEY``.

    Returns:
        0 if every settled query got its outcome, 1 otherwise.
    """
    config = WebSocketConfig(url=url, api_key=api_key, max_reconnect_attempts=3)
    try:
        async with WebSocketService(config) as service:
            responses: list[str] = []
            counting = service.responses.subscribe(lambda message: responses.append(message.id))
            _events, totals = await run_session(service)
            counting.dispose()
    except (NexusError, TimeoutError) as exc:
        print(f"[error] {exc}")
        return 1
    print(f"[done] {totals}; {len(responses)} response message(s) on the wire")
    return 0


def _short(text: str, limit: int = 40) -> str:
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://localhost:8000")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.url)))
