"""``Publisher.emit_all``: a list of values delivered as one round must look, to every
subscriber, exactly like the same values emitted one by one."""

from __future__ import annotations

from typing import Any

import pytest
from reactivex.abc import DisposableBase

from nexus_reactive.streams import Publisher


def both_ways(script: Any, values: list[int]) -> tuple[list[Any], list[Any]]:
    """What ``script(publisher, log)`` records when ``values`` go one by one, and in one
    ``emit_all``."""
    logs: list[list[Any]] = []
    for batch in (False, True):
        publisher: Publisher[int] = Publisher()
        log: list[Any] = []
        script(publisher, log)
        if batch:
            assert publisher.emit_all(values, None) == len(values)
        else:
            for value in values:
                publisher.emit(value)
        logs.append(log)
    return logs[0], logs[1]


def test_every_subscriber_gets_every_value_in_order() -> None:
    def script(publisher: Publisher[int], log: list[Any]) -> None:
        publisher.stream.subscribe(lambda v: log.append(("a", v)))
        publisher.stream.subscribe(lambda v: log.append(("b", v)))

    one, batch = both_ways(script, list(range(5)))
    assert batch == one == [(name, v) for v in range(5) for name in "ab"]


def test_what_a_subscriber_emits_is_delivered_before_the_next_value() -> None:
    def script(publisher: Publisher[int], log: list[Any]) -> None:
        def echo(value: int) -> None:
            log.append(("a", value))
            if value < 100:
                publisher.emit(value + 100)  # re-entrant: after this value, before the next

        publisher.stream.subscribe(echo)
        publisher.stream.subscribe(lambda v: log.append(("b", v)))

    one, batch = both_ways(script, [1, 2, 3])
    assert batch == one
    assert [v for name, v in batch if name == "b"] == [1, 101, 2, 102, 3, 103]


def test_a_subscriber_that_raises_is_dropped_and_the_others_get_everything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def script(publisher: Publisher[int], log: list[Any]) -> None:
        def fails(value: int) -> None:
            log.append(("bad", value))
            if value == 2:
                raise ValueError("boom")

        publisher.stream.subscribe(fails)
        publisher.stream.subscribe(lambda v: log.append(("good", v)))

    one, batch = both_ways(script, [1, 2, 3, 4])
    assert batch == one
    assert ("bad", 3) not in batch and ("good", 4) in batch
    assert "was unsubscribed" in caplog.text


def test_subscribers_that_leave_or_join_mid_batch_count_from_the_next_value() -> None:
    def script(publisher: Publisher[int], log: list[Any]) -> None:
        later: list[DisposableBase] = []

        def first(value: int) -> None:
            log.append(("first", value))
            if value == 2:
                later.append(publisher.stream.subscribe(lambda v: log.append(("late", v))))
            if value == 4:
                later[0].dispose()

        publisher.stream.subscribe(first)

    one, batch = both_ways(script, [1, 2, 3, 4, 5])
    assert batch == one
    assert [v for name, v in batch if name == "late"] == [3]  # first leaves it out at 4


def test_completion_from_a_subscriber_ends_the_batch_for_everyone() -> None:
    def script(publisher: Publisher[int], log: list[Any]) -> None:
        def first(value: int) -> None:
            log.append(("first", value))
            if value == 2:
                publisher.complete()

        publisher.stream.subscribe(first, on_completed=lambda: log.append("done"))

    one, batch = both_ways(script, [1, 2, 3])
    assert batch == one == [("first", 1), ("first", 2), "done"]


def test_the_library_sink_alone_gets_the_batch_and_is_detached_if_it_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher: Publisher[int] = Publisher()
    got: list[int] = []

    def sink(value: int) -> None:
        got.append(value)
        if value == 2:
            raise RuntimeError("sink broke")

    publisher.stream.attach(sink)
    assert publisher.emit_all([1, 2, 3], None) == 3
    assert got == [1, 2]
    assert publisher.stream.observer_count == 0
    assert "was unsubscribed" in caplog.text


def test_stop_if_ends_the_batch_after_the_value_that_made_it_true() -> None:
    publisher: Publisher[int] = Publisher()
    watched: dict[str, int] = {}
    got: list[int] = []

    def on_next(value: int) -> None:
        got.append(value)
        if value == 3:
            watched["added"] = value

    publisher.stream.subscribe(on_next)
    assert publisher.emit_all([1, 2, 3, 4, 5], watched) == 3
    assert got == [1, 2, 3]  # the caller delivers 4 and 5 its own way


def test_a_batch_emitted_from_a_subscriber_waits_for_the_round() -> None:
    publisher: Publisher[int] = Publisher()
    got: list[tuple[str, int]] = []

    def first(value: int) -> None:
        got.append(("first", value))
        if value == 1:
            publisher.emit_all([10, 11], None)

    publisher.stream.subscribe(first)
    publisher.stream.subscribe(lambda v: got.append(("second", v)))
    publisher.emit(1)
    publisher.emit(2)
    assert got == [
        ("first", 1),
        ("second", 1),
        ("first", 10),
        ("second", 10),
        ("first", 11),
        ("second", 11),
        ("first", 2),
        ("second", 2),
    ]


def test_nobody_listening_and_an_empty_batch_are_fine() -> None:
    publisher: Publisher[int] = Publisher()
    assert publisher.emit_all([1, 2], None) == 2
    assert publisher.emit_all([], None) == 0
    got: list[int] = []
    publisher.stream.subscribe(got.append)
    publisher.emit(3)
    assert got == [3]
