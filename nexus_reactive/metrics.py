"""``service.metrics``: the asyncio side of counting (``WebSocketConfig(metrics=True)``).

A :class:`Meter` is the one observer the shell tells of what it counts, each at the
one place it happens: frames read (a wrapper of the receive loop's frame handler,
installed once per connection), frames written (the writer, per batch), asks made
and ended (the ask tracker and the receive side), connections opened and lost (the
connection's supervisor), pings answered (a probe per connection). With metrics off
there is no meter: the shell checks ``meter is None`` once per batch or per ask, and
the receive loop runs without the wrapper, so the hot path is today's.

The counts live in the pure :class:`~nexus_reactive.core.metrics.Counters`.
:class:`MetricsStream` publishes them: its ``.value`` is a fresh snapshot whenever it
is read, and while (and only while) it has subscribers a timer emits one every
``metrics_interval`` seconds if anything changed. OpenTelemetry
(``telemetry=``, :mod:`nexus_reactive.otel`) extends the meter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from reactivex import abc

from .core.metrics import Counters, Metrics
from .derived import DerivedStream
from .errors import NexusConnectionError, UsageError

if TYPE_CHECKING:
    from .config import WebSocketConfig
    from .core import ClientCore, Pending
    from .messages import ErrorMessage, ResponseMessage
    from .transport import Transport
    from .waiter import Waiter

__all__ = ["Meter", "Metrics", "MetricsStream", "metrics_stream", "new_meter"]

log = logging.getLogger("nexus_reactive.service")

FrameHandler = Callable[[bytes], NexusConnectionError | None]
FramesHandler = Callable[[list[bytes]], NexusConnectionError | None]

#: What our ping probes carry, ahead of an 8-byte counter: a pong with another
#: payload (aiohttp's own heartbeat sends an empty one) is not ours to time.
PROBE_PREFIX = b"nexus-rtt:"


class MetricsStream(DerivedStream[Metrics]):
    """A value stream of :class:`Metrics` snapshots.

    ``.value`` is computed when read. While it has subscribers, a timer on the
    service's loop emits a snapshot every ``interval`` seconds when it differs from
    the last one emitted; the last subscriber leaving cancels the timer, so an
    unobserved service runs no timer at all.
    """

    def __init__(
        self,
        getter: Callable[[], Metrics],
        interval: float,
        loop: Callable[[], asyncio.AbstractEventLoop | None],
    ) -> None:
        super().__init__(getter, "metrics")
        self._interval = interval
        self._loop_of = loop
        self._timer: asyncio.TimerHandle | None = None

    @property
    def interval(self) -> float:
        """Seconds between emissions while subscribed."""
        return self._interval

    def _add(self, observer: abc.ObserverBase[Metrics]) -> None:
        super()._add(observer)
        self.wake()

    def _remove(self, observer: abc.ObserverBase[Metrics]) -> None:
        super()._remove(observer)
        if not self._observers:
            self._call(self._stop)

    def wake(self) -> None:
        """Start the timer if someone listens and it does not run (any thread)."""
        if self._observers and self._timer is None and not self._completed:
            self._call(self._start)

    def _call(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the service's loop: now if this is its thread."""
        loop = self._loop_of()
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None:
            loop = running
        if loop is None or loop.is_closed():
            return  # no loop yet: the first connection wakes the timer
        if loop is running:
            action()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(action)

    def _start(self) -> None:
        if self._observers and self._timer is None and not self._completed:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._interval, self._tick)

    def _stop(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _tick(self) -> None:
        self._timer = None
        if not self._observers or self._completed:
            return
        try:
            self._refresh()  # emits only a changed snapshot
        finally:
            self._start()

    def close(self) -> None:
        """Cancel the timer and complete the stream (the service closes)."""
        self._stop()
        self._complete()


class Meter:
    """The service's counting observer: its counters, its stream, its ping probes.

    Args:
        config: ``metrics_interval`` and ``heartbeat`` (the ping probes' interval).
        core: the pure client, whose outbox and pending asks a snapshot reads.
        loop: the service's loop, once it has one.
    """

    def __init__(
        self,
        config: WebSocketConfig,
        core: ClientCore[Waiter],
        loop: Callable[[], asyncio.AbstractEventLoop | None],
    ) -> None:
        self.counts = Counters()
        # Asks a journal (persist=) restored were made, in a previous life: counted, so
        # that asks = answered + failed + timed out + cancelled + pending holds.
        self.counts.asks = len(core.pending)
        self._core = core
        self._ping_every = config.heartbeat
        self._probe_sent: tuple[bytes, float] | None = None
        self._probes = 0
        self.stream = MetricsStream(self.snapshot, config.metrics_interval, loop)

    def snapshot(self) -> Metrics:
        """The counts now."""
        return self.counts.snapshot(*self.depths())

    def depths(self) -> tuple[int, int]:
        """The outbox's depth and the asks pending, now."""
        core = self._core
        return len(core.outbox), len(core.pending)

    # -- frames ------------------------------------------------------------------------

    def counted(self, on_frame: FrameHandler) -> FrameHandler:
        """``on_frame`` that first counts the frame (installed once per connection)."""
        counts = self.counts

        def counted(frame: bytes) -> NexusConnectionError | None:
            counts.frames_in += 1
            counts.bytes_in += len(frame)
            return on_frame(frame)

        return counted

    def batched(self, on_frames: FramesHandler) -> FramesHandler:
        """``on_frames`` that first counts the frames (installed once per connection)."""
        counts = self.counts

        def batched(frames: list[bytes]) -> NexusConnectionError | None:
            counts.frames_in += len(frames)
            counts.bytes_in += sum(map(len, frames))
            return on_frames(frames)

        return batched

    def wrote(self, frames: list[bytes]) -> None:
        """These frames went to the socket."""
        counts = self.counts
        counts.frames_out += len(frames)
        counts.bytes_out += sum(map(len, frames))

    def wrote_one(self, frame: bytes) -> None:
        counts = self.counts
        counts.frames_out += 1
        counts.bytes_out += len(frame)

    # -- asks ---------------------------------------------------------------------------

    def made(self, ask_id: str, frame: bytes, waiter: Waiter) -> bytes:
        """An ask is about to be queued; returns its frame (telemetry adds to it)."""
        self.counts.asks += 1
        waiter.started = perf_counter()
        return frame

    def refused(self, ask_id: str, waiter: Waiter, error: Exception) -> None:
        """The ask :meth:`made` announced was not queued after all (outbox full...)."""
        self.counts.asks -= 1

    def answered(
        self, message: ResponseMessage | ErrorMessage, entry: Pending[Waiter], error: bool
    ) -> None:
        """The first answer to a pending ask (``error``: an ``error`` message)."""
        waiter = entry.waiter
        latency = None if waiter is None else perf_counter() - waiter.started
        if latency is not None:
            self.counts.ask_latency.add(latency)
        self._ended(message.id, entry, "server_error" if error else "answered", latency, message)

    def ended(self, ask_id: str, entry: Pending[Waiter], outcome: str, error: Any = None) -> None:
        """A pending ask ended without an answer (``timed_out``, ``cancelled``, ``failed``,
        ``closed``)."""
        self._ended(ask_id, entry, outcome, None, error)

    def _ended(
        self,
        ask_id: str,
        entry: Pending[Waiter],
        outcome: str,
        latency: float | None,
        detail: Any,
    ) -> None:
        self.counts.ended(outcome)

    def duplicate(self) -> None:
        """A repeated answer to an ask already answered was dropped."""
        self.counts.duplicates_dropped += 1

    # -- the connection -----------------------------------------------------------------

    def opened(self) -> None:
        """A connection opened (on the loop): count it; start the timer if it waits."""
        self.counts.connects += 1
        self.stream.wake()

    def lost(self, error: NexusConnectionError) -> None:
        """A connection or attempt was lost, and will be retried."""
        self.counts.lost(error)

    def probe(self, transport: Transport) -> asyncio.Task[None] | None:
        """Start timing pings on ``transport`` (one now, then one per heartbeat), if it
        can ping; the caller cancels the task when the connection ends."""
        ping = getattr(transport, "ping", None)
        if ping is None or self._ping_every is None:
            return None
        transport.on_pong = self.pong  # type: ignore[attr-defined]
        return asyncio.create_task(self._probe(ping, self._ping_every), name="nexus-reactive-rtt")

    async def _probe(self, ping: Callable[[bytes], Any], every: float) -> None:
        try:
            while True:
                self._probes += 1
                payload = PROBE_PREFIX + self._probes.to_bytes(8, "big")
                self._probe_sent = (payload, perf_counter())
                await ping(payload)
                await asyncio.sleep(every)
        except Exception as exc:  # the connection is going: the receive loop says why
            log.debug("ping probe stopped: %s", exc)
        finally:
            self._probe_sent = None

    def pong(self, payload: bytes) -> None:
        """A pong arrived; the answer to our last probe is timed."""
        sent = self._probe_sent
        if sent is not None and payload == sent[0]:
            self._probe_sent = None
            self.rtt(perf_counter() - sent[1])

    def rtt(self, seconds: float) -> None:
        self.counts.ping_rtt.add(seconds)

    def close(self) -> None:
        """The service is closing: no more emissions, no timer."""
        self.stream.close()


def new_meter(
    config: WebSocketConfig,
    core: ClientCore[Waiter],
    loop: Callable[[], asyncio.AbstractEventLoop | None],
) -> Meter | None:
    """The meter ``config`` asks for: none (metrics off), counting, or with telemetry."""
    if config.telemetry:
        from .otel import TelemetryMeter  # opentelemetry loads only here

        return TelemetryMeter(config, core, loop)
    if config.metrics:
        return Meter(config, core, loop)
    return None


def metrics_stream(meter: Meter | None) -> DerivedStream[Metrics]:
    """``service.metrics``, or a clear error when metrics are off."""
    if meter is None:
        raise UsageError(
            "metrics are off for this service: pass WebSocketConfig(metrics=True) "
            "(or use_websocket(..., metrics=True)) to count frames, reconnects and asks"
        )
    return meter.stream
