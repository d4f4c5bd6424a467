"""What a client counts, without I/O: the numbers behind ``service.metrics``.

:class:`Counters` holds plain integers that the asyncio layer increments, each at
the one place its event happens (a frame read, a batch written, an ask settled, a
connection lost), and two :class:`LatencyWindow` rings of the last samples. Nothing
is allocated per event, and percentiles are computed only when a snapshot is taken:
:meth:`Counters.snapshot` builds the immutable :class:`Metrics` an application reads.

Reconnects are counted by cause (:data:`RECONNECT_CAUSES`, :func:`cause_of`), asks
by how they ended (:data:`ASK_OUTCOMES`).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..errors import NexusConnectionError

__all__ = [
    "ASK_OUTCOMES",
    "DEFAULT_WINDOW",
    "RECONNECT_CAUSES",
    "Counters",
    "Latency",
    "LatencyWindow",
    "Metrics",
    "cause_of",
]

#: Samples each latency window keeps (the last ones).
DEFAULT_WINDOW = 1_024

#: Why a connection (or an attempt) was lost, as ``Metrics.reconnects`` counts it.
RECONNECT_CAUSES: Mapping[str, str] = MappingProxyType(
    {
        "connection_lost": "the link dropped without a close frame (1006, a reset)",
        "server_closed": "the server closed the connection with a close code",
        "heartbeat_timeout": "no pong within half the heartbeat: a dead link",
        "connect_failed": "an attempt could not reach the server (refused, DNS, a proxy)",
        "connect_timeout": "an attempt took longer than connect_timeout",
        "upgrade_refused": "the server answered the upgrade with HTTP 5xx or 408",
        "rate_limited": "HTTP 429 at the upgrade, or close 4429",
        "message_too_big": "a message over the size limit (1009)",
        "handshake": "key-pair authentication failed in a way that is retried",
        "provider": "the API key or URL provider raised or was too slow",
        "internal": "anything else: a bug, reported in the log",
    }
)

#: How an ask ended, as the ask counters and the telemetry spans say it.
ASK_OUTCOMES: Mapping[str, str] = MappingProxyType(
    {
        "answered": "its response arrived",
        "server_error": "the server answered it with an error",
        "timed_out": "no answer within its timeout (request_timeout)",
        "cancelled": "its caller stopped waiting (a cancelled task, a disposed ask_rx)",
        "failed": "the connection gave up, or disconnect() was called while it waited",
        "closed": "the service closed while it waited (fire-and-forget; kept by persist=)",
    }
)


def cause_of(error: NexusConnectionError) -> str:
    """The reconnect cause (a key of :data:`RECONNECT_CAUSES`) of a failure."""
    if error.cause is not None:
        return error.cause
    if error.status == 429 or error.close_code == 4429:
        return "rate_limited"
    if error.status is not None:
        return "upgrade_refused"
    code = error.close_code
    if code is None or code == 1006:
        return "connection_lost"
    if code == 1009:
        return "message_too_big"
    return "server_closed"


@dataclass(frozen=True, slots=True)
class Latency:
    """Latencies over a sliding window of the last samples, in seconds.

    Attributes:
        samples: how many samples the window holds (at most its size, 1,024).
        p50: the median; ``None`` without samples.
        p99: the 99th percentile (nearest rank); ``None`` without samples.
        max: the largest sample in the window; ``None`` without samples.
    """

    samples: int = 0
    p50: float | None = None
    p99: float | None = None
    max: float | None = None

    def __str__(self) -> str:
        if self.p50 is None or self.p99 is None:
            return "no samples"
        return f"p50 {self.p50 * 1e3:.2f} ms, p99 {self.p99 * 1e3:.2f} ms ({self.samples})"


_NO_SAMPLES = Latency()


class LatencyWindow:
    """The last ``size`` samples, in a preallocated ring: adding one allocates nothing."""

    __slots__ = ("_next", "_ring", "size", "total")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if size < 1:
            raise ValueError("a latency window holds at least one sample")
        self.size = size
        self._ring = array("d", bytes(8 * size))
        self._next = 0
        #: Samples added since the start (the window keeps the last ``size``).
        self.total = 0

    def add(self, seconds: float) -> None:
        """Record one sample."""
        at = self._next
        self._ring[at] = seconds
        self._next = at + 1 if at + 1 < self.size else 0
        self.total += 1

    def summary(self) -> Latency:
        """p50, p99 and the maximum of the window (a sort of at most ``size`` floats)."""
        n = min(self.total, self.size)
        if n == 0:
            return _NO_SAMPLES
        ordered = sorted(self._ring[:n] if n < self.size else self._ring)
        return Latency(samples=n, p50=_rank(ordered, 50), p99=_rank(ordered, 99), max=ordered[-1])


def _rank(ordered: list[float], percent: int) -> float:
    """The nearest-rank percentile of sorted samples."""
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class Metrics:
    """One snapshot of a service's counters and latencies (``service.metrics.value``).

    Counters count since the service was created; bytes are the frames' payloads
    (JSON text, before any permessage-deflate compression). Frames of the key-pair
    handshake are not counted.

    Attributes:
        frames_in: text frames received.
        frames_out: text frames written to the socket (an ask sent again after a
            reconnect counts again).
        bytes_in: bytes of the frames received.
        bytes_out: bytes of the frames written.
        connects: connections opened (the first one and every reconnect).
        reconnects: lost connections and failed attempts the client retried, by cause
            (see :data:`RECONNECT_CAUSES`); causes never seen are absent.
        asks: asks made (``ask``, ``send_query``, ``send`` of an ask...), and those
            a journal (``persist=``) restored.
        asks_answered: asks whose response arrived.
        asks_failed: asks answered with an ``error``, or failed by the connection
            (it gave up, or ``disconnect()`` while they waited).
        asks_timed_out: asks with no answer within their timeout.
        asks_cancelled: asks whose caller stopped waiting.
        asks_pending: asks waiting for their answer now.
        outbox_depth: messages waiting to be written now.
        duplicates_dropped: repeated answers to an ask already answered, dropped.
        ask_latency: from an ask being made to its answer (``response`` or
            ``error``), as its caller waits: over the last 1,024 answers.
        ping_rtt: WebSocket ping to pong, over the last 1,024 pings (one per
            ``heartbeat``, and one as each connection opens; none without heartbeat).
    """

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    connects: int = 0
    reconnects: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    asks: int = 0
    asks_answered: int = 0
    asks_failed: int = 0
    asks_timed_out: int = 0
    asks_cancelled: int = 0
    asks_pending: int = 0
    outbox_depth: int = 0
    duplicates_dropped: int = 0
    ask_latency: Latency = _NO_SAMPLES
    ping_rtt: Latency = _NO_SAMPLES

    @property
    def reconnects_total(self) -> int:
        """Every reconnect, whatever its cause."""
        return sum(self.reconnects.values())

    def __str__(self) -> str:
        causes = ", ".join(f"{k} {v}" for k, v in sorted(self.reconnects.items()))
        return (
            f"frames in {self.frames_in} ({self.bytes_in} B), out {self.frames_out} "
            f"({self.bytes_out} B); connects {self.connects}, reconnects "
            f"{self.reconnects_total}{f' ({causes})' if causes else ''}; asks {self.asks}: "
            f"{self.asks_answered} answered, {self.asks_failed} failed, {self.asks_timed_out} "
            f"timed out, {self.asks_cancelled} cancelled, {self.asks_pending} pending; outbox "
            f"{self.outbox_depth}; duplicates dropped {self.duplicates_dropped}; ask latency "
            f"{self.ask_latency}; ping rtt {self.ping_rtt}"
        )


class Counters:
    """The mutable counts behind :class:`Metrics`; the shell increments the fields.

    Args:
        window: samples kept by each latency window.
    """

    __slots__ = (
        "ask_latency",
        "asks",
        "asks_answered",
        "asks_cancelled",
        "asks_failed",
        "asks_timed_out",
        "bytes_in",
        "bytes_out",
        "connects",
        "duplicates_dropped",
        "frames_in",
        "frames_out",
        "ping_rtt",
        "reconnects",
    )

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self.frames_in = 0
        self.frames_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.connects = 0
        self.reconnects: dict[str, int] = {}
        self.asks = 0
        self.asks_answered = 0
        self.asks_failed = 0
        self.asks_timed_out = 0
        self.asks_cancelled = 0
        self.duplicates_dropped = 0
        self.ask_latency = LatencyWindow(window)
        self.ping_rtt = LatencyWindow(window)

    def lost(self, error: NexusConnectionError) -> str:
        """A lost connection or failed attempt that will be retried; returns its cause."""
        cause = cause_of(error)
        self.reconnects[cause] = self.reconnects.get(cause, 0) + 1
        return cause

    def ended(self, outcome: str) -> None:
        """An ask ended with ``outcome`` (a key of :data:`ASK_OUTCOMES`)."""
        if outcome == "answered":
            self.asks_answered += 1
        elif outcome == "timed_out":
            self.asks_timed_out += 1
        elif outcome == "cancelled":
            self.asks_cancelled += 1
        elif outcome != "closed":
            self.asks_failed += 1

    def snapshot(self, outbox_depth: int, asks_pending: int) -> Metrics:
        """The counts now, as an immutable :class:`Metrics` (percentiles computed here)."""
        return Metrics(
            frames_in=self.frames_in,
            frames_out=self.frames_out,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            connects=self.connects,
            reconnects=MappingProxyType(dict(self.reconnects)),
            asks=self.asks,
            asks_answered=self.asks_answered,
            asks_failed=self.asks_failed,
            asks_timed_out=self.asks_timed_out,
            asks_cancelled=self.asks_cancelled,
            asks_pending=asks_pending,
            outbox_depth=outbox_depth,
            duplicates_dropped=self.duplicates_dropped,
            ask_latency=self.ask_latency.summary(),
            ping_rtt=self.ping_rtt.summary(),
        )
