"""A lone ``subscribe(fn)`` subscriber is called as ``fn`` itself (streams._sinks):
what reactivex's wrapper guaranteed must still hold without it."""

from __future__ import annotations

from typing import Any

from reactivex.abc import DisposableBase

from nexus_reactive.streams import Publisher, ValuePublisher


def test_a_lone_subscriber_is_called_without_the_wrapper_and_gets_every_value() -> None:
    publisher: Publisher[int] = Publisher()
    got: list[int] = []
    publisher.stream.subscribe(got.append)
    assert publisher.stream._sinks == (got.append,)  # the fast path is taken
    for n in range(3):
        publisher.emit(n)
    assert got == [0, 1, 2]


def test_a_lone_subscriber_disposed_gets_nothing_more() -> None:
    publisher: Publisher[int] = Publisher()
    got: list[int] = []
    subscription = publisher.stream.subscribe(got.append)
    publisher.emit(1)
    subscription.dispose()
    publisher.emit(2)
    assert got == [1]


def test_a_lone_subscriber_that_disposes_itself_misses_what_it_emits_meanwhile() -> None:
    publisher: Publisher[int] = Publisher()
    got: list[int] = []
    subscription: list[DisposableBase] = []

    def on_next(value: int) -> None:
        got.append(value)
        subscription[0].dispose()
        publisher.emit(value + 1)  # re-entrant: queued after this round, nobody left

    subscription.append(publisher.stream.subscribe(on_next))
    publisher.emit(1)
    assert got == [1]


def test_a_subscriber_disposed_by_another_during_a_round_is_not_called() -> None:
    publisher: Publisher[int] = Publisher()
    got: list[tuple[str, int]] = []
    second: list[DisposableBase] = []

    def first(value: int) -> None:
        got.append(("first", value))
        second[0].dispose()

    publisher.stream.subscribe(first)
    second.append(publisher.stream.subscribe(lambda value: got.append(("second", value))))
    publisher.emit(1)
    publisher.emit(2)
    assert got == [("first", 1), ("first", 2)]


def test_a_subscriber_whose_replay_raised_gets_nothing_later() -> None:
    publisher: ValuePublisher[int] = ValuePublisher(0)
    got: list[int] = []
    errors: list[Exception] = []

    def on_next(value: int) -> None:
        got.append(value)
        if value == 0:
            raise ValueError("not the first one")

    publisher.stream.subscribe(on_next, on_error=errors.append)
    publisher.set(1)
    publisher.set(2)
    assert got == [0]  # the replay only: the subscription failed
    assert [type(e) for e in errors] == [ValueError]
    assert publisher.stream.observer_count == 0


def test_the_lone_fast_path_leaves_with_a_second_subscriber_and_comes_back() -> None:
    publisher: Publisher[Any] = Publisher()
    a: list[int] = []
    b: list[int] = []
    publisher.stream.subscribe(a.append)
    sub_b = publisher.stream.subscribe(b.append)
    assert a.append not in publisher.stream._sinks  # both through their wrappers
    publisher.emit(1)
    sub_b.dispose()
    assert publisher.stream._sinks == (a.append,)
    publisher.emit(2)
    assert a == [1, 2] and b == [1]
