"""When to try again: exponential backoff with jitter, and the retry budget."""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import NexusConnectionError

__all__ = ["Backoff", "Reconnector"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """``delay(n) = min(maximum, initial * factor**n)``, jittered downwards.

    With ``jitter`` j the delay is drawn uniformly from ``[d * (1 - j), d]``: it never
    exceeds the cap, and a crowd of clients that lost the same server spreads out
    instead of returning at the same instant.
    """

    initial: float = 1.0
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5

    def delay(self, retry: int, random: Callable[[], float] = _random.random) -> float:
        """The delay before retry number ``retry`` (0 for the first retry)."""
        # Huge retry counts or factors overflow a float: past the cap it is the cap.
        try:
            base = min(self.maximum, self.initial * self.factor ** min(retry, 1024))
        except OverflowError:
            base = self.maximum
        return base * (1.0 - self.jitter * random())


@dataclass(slots=True)
class Reconnector:
    """The retry budget: counts retries, resets after a healthy connection.

    Args:
        backoff: the delay schedule.
        max_attempts: retries allowed after the first attempt fails (``None``: forever).
        reset_after: a connection open at least this long resets the count; one that
            is accepted and dropped at once does not.
        should_reconnect: an optional hook that overrides whether an error is retried
            (the budget still applies).
        clock: monotonic seconds; injectable for tests.
        random: a source of floats in [0, 1); injectable for tests.
    """

    backoff: Backoff = field(default_factory=Backoff)
    max_attempts: int | None = 10
    reset_after: float = 10.0
    should_reconnect: Callable[[NexusConnectionError], bool] | None = None
    clock: Callable[[], float] = time.monotonic
    random: Callable[[], float] = _random.random
    retries: int = 0
    attempts: int = 0
    exhausted: bool = False
    _opened_at: float | None = None

    def attempt_started(self) -> None:
        self.attempts += 1

    def opened(self) -> None:
        """A connection opened (and authenticated)."""
        self._opened_at = self.clock()

    def next_delay(self, error: NexusConnectionError) -> float | None:
        """Decide about the failure ``error``.

        Returns:
            The delay in seconds before the next attempt, or ``None`` to give up
            (then :attr:`exhausted` tells whether the budget ran out).
        """
        if self._opened_at is not None and self.clock() - self._opened_at >= self.reset_after:
            self.retries = 0
        self._opened_at = None
        self.exhausted = False
        retry = error.retryable
        if self.should_reconnect is not None:
            retry = bool(self.should_reconnect(error))
        if not retry:
            return None
        if self.max_attempts is not None and self.retries >= self.max_attempts:
            self.exhausted = True
            return None
        delay = self.backoff.delay(self.retries, self.random)
        if error.retry_after is not None:
            delay = max(delay, error.retry_after)
        self.retries += 1
        return delay
