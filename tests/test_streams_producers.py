"""Producer handles and serialized emission: only the publisher emits, and a value emitted
inside a round of delivery comes after it, in order, to every subscriber."""

from __future__ import annotations

from typing import Any

import pytest

from nexus_reactive.derived import DerivedPublisher
from nexus_reactive.streams import Publisher, ValuePublisher

from .test_streams import Recorder

# == Producer handles and serialized emission (issue 12, defect 3) ==========================


def test_only_the_publisher_can_emit() -> None:
    pub: Publisher[int] = Publisher("numbers")
    value_pub = ValuePublisher(0)
    derived_pub = DerivedPublisher(lambda: 0)

    for stream in (pub.stream, value_pub.stream, derived_pub.stream):
        assert not any(hasattr(stream, name) for name in ("emit", "set", "_emit", "_set"))
    assert value_pub.value == 0


def test_a_value_emitted_inside_a_round_is_delivered_after_it_to_everyone() -> None:
    pub: Publisher[int] = Publisher("numbers")
    first, second = Recorder(), Recorder()

    def reenter(value: int) -> None:
        first.on_next(value)
        if value == 1:
            pub.emit(2)  # while the others have not heard of 1 yet

    pub.stream.subscribe(reenter)
    second.subscribe_to(pub.stream)
    pub.emit(1)

    assert first.values == [1, 2]
    assert second.values == [1, 2]  # not [2, 1]


def test_every_subscriber_ends_on_the_value_whatever_they_set_inside_callbacks() -> None:
    pub = ValuePublisher("disconnected")
    stream = pub.stream
    before, after = Recorder(), Recorder()
    before.subscribe_to(stream)

    def disconnect_on_connected(state: str) -> None:
        if state == "connected":
            pub.set("disconnecting")
        elif state == "disconnecting":
            pub.set("disconnected")

    stream.subscribe(disconnect_on_connected)
    after.subscribe_to(stream)
    pub.set("connected")

    assert stream.value == "disconnected"
    expected = ["disconnected", "connected", "disconnecting", "disconnected"]
    assert before.values == expected
    assert after.values == expected
    assert after.values[-1] == stream.value


def test_a_stream_emitting_again_inside_a_round_keeps_order_across_many_reentries() -> None:
    pub: Publisher[int] = Publisher()
    seen: list[list[int]] = [[], [], []]

    def make(index: int) -> Any:
        def on_next(value: int) -> None:
            seen[index].append(value)
            if index == 0 and value < 5:
                pub.emit(value + 1)
                pub.emit(value + 100)

        return on_next

    for index in range(3):
        pub.stream.subscribe(make(index))
    pub.emit(0)

    assert seen[0] == seen[1] == seen[2]
    assert seen[0][:3] == [0, 1, 100]


def test_complete_inside_a_round_comes_after_the_value_being_delivered() -> None:
    pub: Publisher[str] = Publisher()
    later = Recorder()
    pub.stream.subscribe(lambda _v: pub.complete())
    later.subscribe_to(pub.stream)

    pub.emit("last")
    pub.emit("after the end")

    assert later.values == ["last"]
    assert later.completed == 1


def test_a_subscriber_raising_a_base_exception_does_not_wedge_the_stream() -> None:
    pub: Publisher[int] = Publisher()
    out = Recorder()

    def interrupt(value: int) -> None:
        if value == 1:
            raise KeyboardInterrupt

    pub.stream.subscribe(interrupt)
    out.subscribe_to(pub.stream)
    with pytest.raises(KeyboardInterrupt):
        pub.emit(1)
    pub.emit(2)

    assert out.values == [2]  # delivered at once, not held in a backlog forever


def test_a_raising_subscriber_in_a_later_round_is_unsubscribed() -> None:
    pub: Publisher[int] = Publisher("numbers")
    out = Recorder()
    calls: list[int] = []

    def reenter(value: int) -> None:
        if value == 1:
            pub.emit(2)

    def broken(value: int) -> None:
        calls.append(value)
        if value == 2:
            raise RuntimeError("subscriber bug")

    pub.stream.subscribe(reenter)
    pub.stream.subscribe(broken)
    out.subscribe_to(pub.stream)
    pub.emit(1)
    pub.emit(3)

    assert calls == [1, 2]
    assert out.values == [1, 2, 3]


def test_derived_publish_inside_a_round_leaves_everyone_on_the_current_value() -> None:
    box = {"history": ["a", "b"]}
    pub = DerivedPublisher(lambda: list(box["history"]), "messages")
    stream = pub.stream
    other = Recorder()

    def clear_when_two(history: list[str]) -> None:
        if len(history) == 2:
            box["history"] = []
            pub.publish()  # clear_messages() from a subscriber

    stream.subscribe(clear_when_two)
    other.subscribe_to(stream)

    assert other.values[-1] == [] == stream.value
