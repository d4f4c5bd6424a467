"""A UI scheduler that cannot take calls yet (Tk before its main loop runs) delays
delivery; it never drops the subscriber nor the latest value."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import reactivex
from reactivex import abc, typing
from reactivex.scheduler import ImmediateScheduler

from nexus_reactive import scheduled
from nexus_reactive.scheduled import ScheduledView, deliver_on
from nexus_reactive.streams import ValuePublisher
from nexus_reactive.testing import wait_until


class NotReadyScheduler(ImmediateScheduler):
    """Raises what Tk raises from another thread until :attr:`ready`; counts attempts."""

    def __init__(self) -> None:
        super().__init__()
        self.ready = False
        self.attempts = 0

    def schedule(
        self, action: typing.ScheduledAction[Any], state: Any = None
    ) -> abc.DisposableBase:
        self.attempts += 1
        if not self.ready:
            raise RuntimeError("main thread is not in main loop")
        return super().schedule(action, state)


async def test_values_wait_for_a_scheduler_that_is_not_ready_then_the_latest_arrives() -> None:
    source = ValuePublisher("A")
    scheduler = NotReadyScheduler()
    view = ScheduledView(source.stream, scheduler)
    seen: list[str] = []
    view.subscribe(on_next=seen.append)
    for value in "BCD":
        source.set(value)
    await wait_until(lambda: scheduler.attempts >= 3)
    assert seen == [] and view.pending == 1  # one delivery waits; nothing was dropped
    scheduler.ready = True
    await wait_until(lambda: seen == ["D"])  # conflated to the latest value
    source.set("E")
    assert seen == ["D", "E"]  # still subscribed


async def test_retries_stop_once_nobody_wants_the_delivery() -> None:
    source = ValuePublisher("A")
    scheduler = NotReadyScheduler()
    view = ScheduledView(source.stream, scheduler)
    subscription = view.subscribe(on_next=lambda _: None)
    source.set("B")
    await wait_until(lambda: scheduler.attempts >= 2)
    subscription.dispose()
    await wait_until(lambda: view.pending == 0)
    attempts = scheduler.attempts
    probe = ValuePublisher(0)  # a few loop turns, then no further attempts were made
    await wait_until(lambda: probe.stream.value == 0)
    assert scheduler.attempts <= attempts + 1


async def test_a_scheduler_never_ready_gives_up_with_a_warning_and_keeps_the_subscriber(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(scheduled, "NOT_READY_PATIENCE", 0.05)
    source = ValuePublisher("A")
    scheduler = NotReadyScheduler()
    view = ScheduledView(source.stream, scheduler)
    seen: list[str] = []
    view.subscribe(on_next=seen.append)
    with caplog.at_level(logging.WARNING, "nexus_reactive.streams"):
        source.set("B")
        await wait_until(lambda: view.pending == 0)
    assert "could not be delivered on NotReadyScheduler" in caplog.text
    scheduler.ready = True
    source.set("C")
    assert seen == ["C"]
    assert view.observer_count == 1


async def test_ordered_delivery_waits_for_the_scheduler_too() -> None:
    subject: reactivex.Subject[int] = reactivex.Subject()
    scheduler = NotReadyScheduler()
    seen: list[int] = []
    deliver_on(subject, scheduler).subscribe(on_next=seen.append)
    for value in range(3):
        subject.on_next(value)
    await wait_until(lambda: scheduler.attempts >= 2)
    scheduler.ready = True
    await wait_until(lambda: seen == [0, 1, 2])


async def test_ordered_delivery_stops_retrying_once_disposed() -> None:
    subject: reactivex.Subject[int] = reactivex.Subject()
    scheduler = NotReadyScheduler()
    subscription = deliver_on(subject, scheduler).subscribe(on_next=lambda _: None)
    subject.on_next(1)
    await wait_until(lambda: scheduler.attempts >= 2)
    subscription.dispose()
    attempts = scheduler.attempts
    probe = ValuePublisher(0)  # a few loop turns: at most the retry under way
    await wait_until(lambda: probe.stream.value == 0)
    await asyncio.sleep(0)
    assert scheduler.attempts <= attempts + 1
