"""Inbound rate limiting: a token bucket per API key, shared by that key's connections.

A message is admitted if its key's bucket holds a whole token, which it takes;
otherwise it is refused (nothing is taken) and the caller is told how many
seconds until a token will be there, for the ``retry_after`` of the ``rate_limited``
error. Refusing rather than queueing keeps a flooding client from piling up work
in the server.

The clock is injected, so the arithmetic is tested without sleeping. Buckets are
keyed by the API key's fingerprint (never the key), and there is one per
configured key at most, so the table cannot grow without bound.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable

__all__ = ["RateLimiter", "TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full.

    Args:
        rate: tokens added per second (positive).
        burst: the most tokens held (at least 1).
        now: the current time on the caller's clock, in seconds.

    Raises:
        ValueError: ``rate`` is not positive or ``burst`` is below 1.
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate must be a positive number of messages per second, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate}, burst={self.burst}, tokens={self._tokens:.3f})"

    def try_take(self, now: float) -> float:
        """Take one token if there is one.

        Args:
            now: the current time on the caller's clock (never going backwards
                is assumed; a step back is treated as no time passing).

        Returns:
            ``0.0`` if a token was taken; otherwise the seconds until one will
            be available (nothing was taken).
        """
        elapsed = max(0.0, now - self._stamp)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        self._stamp = max(self._stamp, now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


class RateLimiter:
    """One :class:`TokenBucket` per key, created on first use.

    Args:
        rate: messages per second allowed per key.
        burst: messages a key may send at once; ``None``: ``max(1, ceil(rate))``.
        clock: a monotonic clock in seconds; tests inject a fake one.

    Raises:
        ValueError: ``rate`` is not positive or ``burst`` is below 1.
    """

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1, math.ceil(rate))
        TokenBucket(self.rate, self.burst, 0.0)  # validate now, not on the first message
        self._clock = clock
        self._buckets: dict[Hashable, TokenBucket] = {}

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate}, burst={self.burst}, keys={len(self._buckets)})"

    def acquire(self, key: Hashable) -> float:
        """Admit one message for ``key``, or say how long until one would be admitted.

        Args:
            key: whose bucket (the API key's fingerprint).

        Returns:
            ``0.0`` if admitted, else the seconds until a token is available.
        """
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.try_take(now)
