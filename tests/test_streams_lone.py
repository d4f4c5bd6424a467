"""A lone ``subscribe(fn)`` subscriber is called as ``fn`` itself (stream_sinks.sinks):
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


# == a lone internal sink (attach): called straight away, same guarantees ===================


def test_a_lone_attached_sink_is_called_directly_and_gets_every_value_in_order() -> None:
    publisher: Publisher[int] = Publisher()
    got: list[int] = []
    detach = publisher.stream.attach(got.append)
    assert publisher.stream._direct == got.append  # the fast path is taken
    for n in range(3):
        publisher.emit(n)
    detach()
    publisher.emit(3)
    assert got == [0, 1, 2]
    assert publisher.stream._direct is None


def test_a_second_subscriber_ends_the_direct_path_and_both_get_every_value() -> None:
    publisher: Publisher[int] = Publisher()
    sink: list[int] = []
    other: list[int] = []
    publisher.stream.attach(sink.append)
    publisher.emit(1)
    subscription = publisher.stream.subscribe(other.append)
    assert publisher.stream._direct is None
    publisher.emit(2)
    subscription.dispose()
    publisher.emit(3)
    assert sink == [1, 2, 3] and other == [2]


def test_a_lone_attached_sink_that_raises_is_dropped_and_the_stream_goes_on(
    caplog: Any,
) -> None:
    publisher: Publisher[int] = Publisher("messages")

    def broken(value: int) -> None:
        raise RuntimeError("a bug in a sink")

    publisher.stream.attach(broken)
    publisher.emit(1)  # logged, never raised into the producer
    assert publisher.stream.observer_count == 0
    got: list[int] = []
    publisher.stream.attach(got.append)
    publisher.emit(2)
    assert got == [2]
    assert "a subscriber of messages raised" in caplog.text


def test_a_value_emitted_during_a_round_waits_for_it_even_if_a_lone_sink_remains() -> None:
    publisher: Publisher[int] = Publisher()
    got: list[tuple[str, int]] = []
    user: list[DisposableBase] = []

    def on_next(value: int) -> None:
        got.append(("user", value))
        if value == 1:
            user[0].dispose()  # the attached sink is alone from now on...
            publisher.emit(2)  # ...but this round is not over: 2 waits for it

    publisher.stream.attach(lambda value: got.append(("sink", value)))
    user.append(publisher.stream.subscribe(on_next))
    publisher.emit(1)
    assert got == [("sink", 1), ("user", 1), ("sink", 2)]


def test_completion_ends_the_direct_path() -> None:
    publisher: Publisher[int] = Publisher()
    got: list[int] = []
    done: list[bool] = []
    publisher.stream.attach(got.append, lambda: done.append(True))
    publisher.complete()
    publisher.emit(1)
    assert got == [] and done == [True] and publisher.stream._direct is None
