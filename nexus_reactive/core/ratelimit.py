"""Pacing outgoing messages: a token bucket (``rate``), and the window of asks a server
that refused one for its rate limit gets from then on. Both delay; neither drops."""

from __future__ import annotations

__all__ = ["AskWindow", "TokenBucket"]

#: The window stops binding once this many asks may await answers at once: as many as
#: the sender writes at once anyway.
WINDOW_LIMIT = 256
#: Seconds without a refusal after which the window is gone.
WINDOW_QUIET = 1.0
# Up to this size a window doubles each round trip (TCP's slow start), then grows by one.
_FIRST_THRESHOLD = 16


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


class AskWindow:
    """How many asks may await their answers at once, after the server refused one
    for its rate limit (``rate_limited``, or a close with 4429).

    Before any refusal there is no bound (:attr:`size` is ``None``). A refusal says
    that what went together was too much for the server's limit, whatever kind of
    limit it is (a token bucket, so many per minute): from then on one ask goes out
    at a time, and the window grows with the answers, as TCP's congestion window
    does: by one per answer (doubling each round trip) up to a threshold, then by one
    per round trip. A refusal under the window halves the threshold and starts over
    at one. The window is gone once it no longer binds (:data:`WINDOW_LIMIT` asks), or
    once the server has refused nothing for :data:`WINDOW_QUIET` seconds. Frames that
    are not asks are never held by it.

    Pure: the sender asks :meth:`room` before it writes and says what it wrote; the
    receiver says what was answered; the caller passes the time in.
    """

    __slots__ = ("_grown", "_since", "_threshold", "out", "size")

    def __init__(self) -> None:
        #: Asks that may await answers at once; ``None``: no bound.
        self.size: int | None = None
        #: Asks written under the window and not answered (nor refused) yet.
        self.out = 0
        self._threshold = _FIRST_THRESHOLD
        self._grown = 0  # answers toward the next step, past the threshold
        self._since = 0.0  # when the server last refused

    def refused(self, now: float, resume: float | None = None) -> None:
        """The server refused an ask for its rate limit: one at a time again.

        ``resume``: when the server lets the client send again (its ``retry_after``),
        if later than ``now``: the quiet second counts from then, as nothing is sent
        before (a wait the server asked for is no quiet)."""
        if self.size is not None:
            self._threshold = max(2, self.size // 2)
        self.size = 1
        self._grown = 0
        self._since = now if resume is None else max(now, resume)
        self.out = max(0, self.out - 1)  # (the refused one awaits nothing now)

    def room(self, now: float) -> int | None:
        """How many more asks may be written at ``now``; ``None``: no bound."""
        if self.size is None:
            return None
        if now - self._since >= WINDOW_QUIET:
            self._end()
            return None
        return max(0, self.size - self.out)

    def wrote(self, asks: int) -> None:
        """``asks`` asks were written (under the window)."""
        if self.size is not None:
            self.out += asks

    def answered(self, asks: int) -> None:
        """``asks`` asks were answered: each makes room, and the window grows. Only
        answers to asks written under the window count (:attr:`out`): the others went
        before the refusal, or were forgotten, and say nothing of what the server
        takes now (as TCP's window grows only with the acks of what it sent)."""
        size = self.size
        if size is None:
            return
        asks = min(asks, self.out)
        self.out -= asks
        while asks and size < self._threshold:  # slow start
            size += 1
            asks -= 1
        self._grown += asks
        while self._grown >= size:  # then one per round trip
            self._grown -= size
            size += 1
        self.size = size
        if size >= WINDOW_LIMIT:
            self._end()

    def resumed(self, now: float) -> None:
        """A new connection opened at ``now``: nothing written before awaits an answer
        on it (:meth:`forget`), and a window that still binds counts its quiet second
        from now: the time away (a 4429's ``retry_after``) was no quiet."""
        self.out = 0
        if self.size is not None:
            self._since = max(self._since, now)

    def forget(self) -> None:
        """What was written is awaited no longer (a new connection; a server silent
        about the asks under the window for a while): count none of it."""
        self.out = 0

    def _end(self) -> None:
        self.size = None
        self.out = self._grown = 0
        self._threshold = _FIRST_THRESHOLD
