"""The send side of a connection: :class:`Sender` writes the outbox to the socket.

It owns what writing needs: the wake-up event, the rate bucket (``rate``, and
the pause a server's ``retry_after`` asks for), the window of asks a server that
refused one for its rate limit gets from then on, whether a write is under way, and
the ``outbox_depth`` stream. The :class:`~nexus_reactive.connection.Connection`
owns the sender and runs its writer task while a connection is open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING

from . import codec
from .core import AskWindow, ClientCore, Phase, TokenBucket
from .derived import DerivedPublisher
from .transport import Transport

if TYPE_CHECKING:
    from .core.outbox import Queued
    from .metrics import Meter
    from .waiter import Waiter

__all__ = ["Sender"]

log = logging.getLogger("nexus_reactive.service")
frames_log = logging.getLogger("nexus_reactive.frames")

# An outbox item's frame and key (see Queued), for map(): no Python code per frame.
_frame_of, _key_of = itemgetter(0), itemgetter(2)
_CONNECTED = Phase.CONNECTED  # a module constant: an enum lookup per ask is measurable

# Frames written to the socket at once, at most.
_BATCH = 256
# Asks queued at once that are written from the task that made the last of them (see
# Sender.flush): the server starts on them while the rest are made.
_RUN = 32
# Seconds the asks under a rate limit's window may go unanswered before the window
# stops counting them (a server that drops an ask must not hold the rest for good).
_WINDOW_SILENCE = 1.0


class Sender:
    """Writes the core's outbox to the open transport, paced by the rate bucket.

    Args:
        core: the pure client whose outbox is written.
        rate: messages per second at most (``None``: unpaced), and ``burst``.
        sent: told of each keyed frame written (a journal's ``sent`` event).
        meter: counts the frames written (``metrics=True``), or ``None``.
    """

    def __init__(
        self,
        core: ClientCore[Waiter],
        rate: float | None,
        burst: int | None,
        sent: Callable[[str], None],
        meter: Meter | None = None,
    ) -> None:
        self._core = core
        self._sent = sent
        self._meter = meter
        self._bucket = TokenBucket(rate, burst)
        #: Bounds the asks awaiting answers after a rate-limit refusal (see AskWindow).
        self.window = AskWindow()
        self._transport: Transport | None = None
        self._wake: asyncio.Event | None = None
        # Whether _wake is set (the writer has not taken the wake-up yet): asks made
        # together kick once, not once each.
        self._woken = False
        self._writing = False  # an ask's task is writing its frame (send_now)
        # The writer task holds frames it took out of the outbox (until written).
        self._writer_holds = False
        # flush() found the socket behind: it waits for the writer task's next write.
        self._stalled = False
        self._queued = core.outbox.items  # read-only here
        self._asks = core.pending.lookups()[0]
        self.outbox_depth = DerivedPublisher(lambda: len(core.outbox), "outbox_depth")
        self._depth = self.outbox_depth.stream  # its subscribers, read per kick
        #: Told when something is queued and when the outbox is written out (a lazy
        #: connection's demand).
        self.changed: Callable[[], None] | None = None

    def kick(self) -> None:
        """Something was queued: wake the writer (when connected)."""
        if self._depth._sinks:  # someone watches outbox_depth (a call less per ask if not)
            self.outbox_depth.refresh()
        if self._wake is not None and not self._woken and self._core.state.phase is _CONNECTED:
            self._woken = True
            self._wake.set()
        if self.changed is not None:
            self.changed()

    def direct(self, now: float) -> bool:
        """Whether a lone ask may be written from the caller's task right now
        (connected, nothing queued or pending, writer idle, no pacing).

        Connected is the phase, not only a transport attached: ``disconnect()`` and
        ``reconnect()`` change the phase at once, and the transport stays attached
        until the connection's task has ended; an ask made in between waits in the
        outbox (as kick() and flush() do), not on the socket being closed."""
        return (
            not self._asks  # (first: with asks in flight, the one that is false)
            and not self._queued  # the containers themselves: no __len__ calls
            and self._transport is not None
            and not self._writing
            and not self._writer_holds
            and self._core.state.phase is _CONNECTED
            and self._bucket.free(now)
            and self.window.size is None
        )

    def queued(self, now: float) -> None:
        """An ask was queued (not written from its task): :meth:`kick`, then
        :meth:`flush` once a run is queued."""
        if not self._woken or self._depth._sinks or self.changed is not None:
            self.kick()  # (else the writer is awake, and nobody else needs telling)
        if len(self._queued) >= _RUN:
            self.flush(now)

    def flush(self, now: float) -> None:
        """Asks made together (answers to one read wake their tasks at once): once a
        run of them is queued, write it from the task that made the last, without
        waiting for the writer task, if the transport can without flow control
        (``write_now``). The writer runs only after every task woken with it, so
        without this the server would wait for all of them, and then the client for
        the server: with it, the two work at once, on two cores."""
        transport = self._transport
        if (
            transport is None
            or self._writing
            or self._writer_holds
            or self._stalled
            or len(self._queued) < _RUN
            or not self._bucket.free(now)
            or self.window.size is not None  # (the writer counts the window's asks)
            or self._core.state.phase is not _CONNECTED
        ):
            return
        write_now = getattr(transport, "write_now", None)
        if write_now is None:
            return
        core = self._core
        batch = core.take_outgoing(_BATCH)
        if not batch:  # (all abandoned meanwhile)
            return
        frames = list(map(_frame_of, batch))
        try:
            written = bool(write_now(frames))
        except Exception:  # the connection is going: the writer finds out and says so
            written = False
        if not written:
            # The socket is behind: the writer task waits for it, and until it has
            # written, nothing is taken out here again (once per stall, not per ask).
            self._stalled = True
            core.untake(batch)
            return
        if frames_log.isEnabledFor(logging.DEBUG):
            for sent in batch:
                frames_log.debug("-> %s", codec.redact(sent[0]))
        self._wrote(batch, frames)
        if self._depth._sinks:
            self.outbox_depth.refresh()

    def _wrote(self, batch: list[Queued], frames: list[bytes]) -> None:
        if self._meter is not None:
            self._meter.wrote(frames)
        keys = list(map(_key_of, batch))
        if keys.count(None) != len(keys):  # some keyed: recorded by an observer (a journal)
            for key in keys:
                if key is not None:
                    self._sent(key)

    async def send_now(self) -> None:
        """Write the head of the outbox from the calling task (see :meth:`direct`)."""
        transport, item = self._transport, self._core.next_outgoing()
        if transport is None or item is None:
            self.kick()
            return
        self._writing = True
        handed = getattr(transport, "handed", None)  # see Transport: None if not said
        try:
            if frames_log.isEnabledFor(logging.DEBUG):
                frames_log.debug("-> %s", codec.redact(item[0]))
            await transport.send(item[0])
            if self._meter is not None:
                self._meter.wrote_one(item[0])
        except asyncio.CancelledError:
            # The caller abandons the ask. Cancelled while waiting to drain, the frame
            # is in the socket already: it goes out once, and waits in no outbox.
            # Otherwise it goes back, and the ask's abandon takes it out again.
            if handed is not None and getattr(transport, "handed", handed) > handed:
                if self._meter is not None:
                    self._meter.wrote_one(item[0])
            else:
                self._core.unsent(item)
            raise
        except Exception as exc:
            # Not the caller's failure: the connection is going. The frame goes back
            # to the head of the outbox and the ask waits, as any other would.
            self._core.unsent(item)
            log.info("write failed (%s); the ask waits for the next connection", exc)
            self.kick()
        finally:
            self._writing = False

    def hold(self, wait: float) -> None:
        """The server refused an ask for its rate limit: send nothing for ``wait``
        seconds (its ``retry_after``), then asks one at a time (:attr:`window`)."""
        until = asyncio.get_running_loop().time() + wait
        self._bucket.pause_until(until)
        self.refused(until)
        self.kick()

    def refused(self, resume: float | None = None) -> None:
        """The server refused something for its rate limit: asks go under
        :attr:`window` from now on (from loop time ``resume``, if it said to wait)."""
        self.window.refused(asyncio.get_running_loop().time(), resume)

    def answered(self, asks: int) -> None:
        """``asks`` asks were answered while :attr:`window` binds: more may go."""
        self.window.answered(asks)
        if self._queued:
            self.kick()

    def attach(self, transport: Transport) -> asyncio.Task[None]:
        """A connection opened: start writing to it; returns the writer task."""
        self._transport = transport
        self._wake = asyncio.Event()
        self._woken = self._stalled = False
        self.window.resumed(asyncio.get_running_loop().time())
        return asyncio.create_task(self._write(transport, self._wake), name="nexus-reactive-writer")

    def detach(self, transport: Transport) -> None:
        """The connection on ``transport`` ended: nothing writes until the next
        :meth:`attach` (unless a newer connection attached already)."""
        if self._transport is transport:
            self._transport = None
            self._wake = None
            # A window whose quiet second passed while connected ends now, not when
            # the next connection counts the time away as no quiet (see attach).
            self.window.room(asyncio.get_running_loop().time())

    async def _write(self, transport: Transport, wake: asyncio.Event) -> None:
        core = self._core
        depth = self.outbox_depth
        bucket = self._bucket
        trace = frames_log.isEnabledFor(logging.DEBUG)
        loop = asyncio.get_running_loop()
        window = self.window
        while True:
            # Everything queued goes out together, one write to the socket (one frame at
            # a time when paced; no more asks than a rate limit's window has room for).
            limit = _BATCH if bucket.free(loop.time()) else 1
            room = window.room(loop.time())
            batch = core.take_outgoing(limit) if room is None else core.take_window(limit, room)
            if not batch:
                # Idle from here: what is queued from now on (by a subscriber of the
                # depth, or whoever changed() tells) wakes the writer again.
                self._woken = self._stalled = False
                wake.clear()
                depth.refresh()
                if self.changed is not None:
                    self.changed()
                if room == 0 and self._queued:  # asks wait for answers under the window
                    await self._await_room(wake)
                else:
                    await wake.wait()
                continue
            if room is not None:
                window.wrote(sum(1 for sent in batch if sent[1] is not None))
            # The batch is out of the outbox: nothing else writes until it is written
            # (a flush() meanwhile would put later frames first). Set before the depth's
            # subscribers run: one of them may ask.
            self._writer_holds = True
            depth.refresh()
            handing = False  # (until then, nothing of the batch reached the socket)
            try:
                delay = bucket.take(loop.time())
                if delay > 0:
                    await asyncio.sleep(delay)
                if trace:
                    for sent in batch:
                        frames_log.debug("-> %s", codec.redact(sent[0]))
                frames = list(map(_frame_of, batch))
                handing = True
                await transport.send_batch(frames)
            except asyncio.CancelledError:
                if not handing:  # cancelled while paced: never written, no attempt
                    core.untake(batch)
                    raise
                for unsent in reversed(batch):
                    core.unsent(unsent)
                raise
            except Exception as exc:
                for unsent in reversed(batch):
                    core.unsent(unsent)
                log.info("write failed (%s); the frames wait for the next connection", exc)
                await transport.close(1011)
                return
            finally:
                self._writer_holds = False
            self._stalled = False
            self._wrote(batch, frames)

    async def _await_room(self, wake: asyncio.Event) -> None:
        """Wait for an answer to free room in the window; after a silence of
        ``_WINDOW_SILENCE``, stop counting the asks under it (dropped by the server?)."""
        try:
            async with asyncio.timeout(_WINDOW_SILENCE):
                await wake.wait()
        except TimeoutError:
            self.window.forget()
