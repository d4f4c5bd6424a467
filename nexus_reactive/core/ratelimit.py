"""A token bucket for outgoing messages: it delays, it never drops."""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, up to ``burst`` saved; one token per message.

    Pure: the caller passes the time in, and sleeps for what :meth:`take` returns.
    A server's ``retry_after`` is honoured with :meth:`pause_until`.
    """

    __slots__ = ("_paused_until", "_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float | None, burst: int | None = None, now: float = 0.0) -> None:
        self.rate = rate
        self.burst = float(burst if burst is not None else max(1, int(rate or 1)))
        self._tokens = self.burst
        self._stamp = now
        self._paused_until = 0.0

    def take(self, now: float) -> float:
        """Take a token for one message sent at ``now``.

        Returns:
            0.0 to send now, else the seconds to wait first (the token is taken:
            after waiting, send without asking again).
        """
        wait = max(0.0, self._paused_until - now)
        if self.rate is None:
            return wait
        start = max(now, self._paused_until)
        self._tokens = min(self.burst, self._tokens + (start - self._stamp) * self.rate)
        self._stamp = start
        self._tokens -= 1.0
        if self._tokens >= 0.0:
            return wait
        return wait + (-self._tokens) / self.rate

    def free(self, now: float) -> bool:
        """Whether a message may go at ``now`` with no pacing at all (no rate, no pause)."""
        return self.rate is None and now >= self._paused_until

    def pause_until(self, when: float) -> None:
        """Send nothing before ``when`` (a server said ``retry_after``)."""
        self._paused_until = max(self._paused_until, when)
