"""A store takes a socket read's messages in one call (``Intake.on_messages``, through
``Stream.attach(batch=)``): its history must be exactly what one call per message
makes, whatever the mix (streamed answers, errors, eviction and compaction mid-batch)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from nexus_reactive import codec
from nexus_reactive.intake import Intake
from nexus_reactive.messages import Message
from nexus_reactive.streams import Publisher


def response(message_id: str, answer: str = "a", tokens: int | None = 3) -> Message:
    usage = (
        ""
        if tokens is None
        else f',"usage":{{"prompt_tokens":1,"completion_tokens":2,"total_tokens":{tokens}}}'
    )
    return codec.decode(
        f'{{"type":"response","id":"{message_id}","payload":{{"answer":"{answer}"{usage}}}}}'
    )


def chunk(message_id: str, index: int, delta: str) -> Message:
    return codec.decode(
        f'{{"type":"response_chunk","id":"{message_id}",'
        f'"payload":{{"delta":"{delta}","index":{index}}}}}'
    )


def error(message_id: str) -> Message:
    return codec.decode(
        f'{{"type":"error","id":"{message_id}","payload":{{"code":"x","message":"no"}}}}'
    )


def histories(messages: list[Message], limit: int, split: int) -> tuple[list[Any], list[Any]]:
    """The history made one message at a time, and ``split`` messages a batch."""
    loop = asyncio.new_event_loop()
    try:
        results = []
        for batched in (False, True):
            intake = Intake(loop, limit, None, scoped=False)
            if batched:
                for at in range(0, len(messages), split):
                    intake.on_messages(messages[at : at + split])
            else:
                for message in messages:
                    intake.on_message(message)
            results.append(list(intake.snapshot()))
            intake.stop()
        return results[0], results[1]
    finally:
        loop.close()


FLOOD = [response(f"p{n}", tokens=3 if n % 3 else 4) for n in range(50)]
MIXED = [
    *FLOOD[:10],
    chunk("s", 0, "he"),
    *FLOOD[10:20],
    chunk("s", 1, "llo"),
    error("e1"),
    response("s", "hello"),
    *FLOOD[20:],
    response("untracked", tokens=None),
]


@pytest.mark.parametrize("messages", [FLOOD, MIXED], ids=["responses", "mixed"])
@pytest.mark.parametrize("limit", [7, 1000], ids=["evicting", "roomy"])
@pytest.mark.parametrize("split", [1, 4, 100])
def test_a_batch_makes_the_history_one_by_one_makes(
    messages: list[Message], limit: int, split: int
) -> None:
    one, batch = histories(messages, limit, split)
    assert batch == one

    # Equal usage is shared (the store's memory saving) exactly as one by one shares it.
    def shared(history: list[Any]) -> list[bool]:
        usages = [getattr(m.payload, "usage", None) for m in history]
        return [u is v for u, v in itertools.pairwise(usages)]

    assert shared(batch) == shared(one)


def test_the_store_sink_alone_gets_batches_and_one_by_one_when_not_alone() -> None:
    publisher: Publisher[int] = Publisher()
    calls: list[Any] = []
    publisher.stream.attach(lambda v: calls.append(("one", v)), batch=lambda vs: calls.append(vs))
    publisher.emit_all([1, 2, 3], None)
    publisher.emit(4)
    assert calls == [[1, 2, 3], ("one", 4)]
    calls.clear()
    seen: list[int] = []
    publisher.stream.subscribe(seen.append)  # not alone: each value to each, in turn
    publisher.emit_all([5, 6], None)
    assert calls == [("one", 5), ("one", 6)] and seen == [5, 6]


def test_a_batch_sink_that_raises_is_detached_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    publisher: Publisher[int] = Publisher()

    def broken(values: list[int]) -> None:
        raise RuntimeError("intake bug")

    publisher.stream.attach(lambda v: None, batch=broken)
    assert publisher.emit_all([1, 2], None) == 2
    assert publisher.stream.observer_count == 0
    assert "was unsubscribed" in caplog.text and "intake bug" in caplog.text
