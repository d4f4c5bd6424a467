"""A reactivex scheduler that stands for a busy UI thread."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from reactivex import abc, typing
from reactivex.disposable import Disposable
from reactivex.scheduler.scheduler import Scheduler


class SlowThreadScheduler(Scheduler):
    """Runs every action, in order, on one thread and sleeps ``delay`` seconds after
    each (a UI callback that takes that long). Counts the actions waiting."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.queued = 0  # actions scheduled and not yet started
        self.max_queued = 0
        self.ran = 0
        self._thread = threading.Thread(target=self._work, name="slow-ui", daemon=True)
        self._thread.start()

    def schedule(
        self, action: typing.ScheduledAction[Any], state: Any = None
    ) -> abc.DisposableBase:
        with self._lock:
            self.queued += 1
            self.max_queued = max(self.max_queued, self.queued)
        self._queue.put((action, state))
        return Disposable()

    def schedule_relative(
        self, duetime: typing.RelativeTime, action: typing.ScheduledAction[Any], state: Any = None
    ) -> abc.DisposableBase:
        return self.schedule(action, state)

    def schedule_absolute(
        self, duetime: typing.AbsoluteTime, action: typing.ScheduledAction[Any], state: Any = None
    ) -> abc.DisposableBase:
        return self.schedule(action, state)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            with self._lock:
                self.queued -= 1
            action, state = item
            action(self, state)
            self.ran += 1
            time.sleep(self.delay)
