"""The receive side: :class:`Receiver` turns each frame into what it means and who
hears of it.

It decodes a frame, asks the core what it means (an answer, a repeat, a rate limit,
a challenge...), settles the ask through the :class:`~nexus_reactive.asks.AskTracker`,
tells the observer (a journal), and delivers the message to ``messages`` and the
``on_message`` handlers. It owns the ``messages`` publisher and the handlers.

This is the client's hot path: dispatch is on ``type(message)`` (an ``isinstance``
against a msgspec class costs several times more), a ``response`` (the common case)
takes the shortest way through, and everything it calls is bound once, here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING

from . import codec
from .asks import AskTracker
from .connection import Connection
from .core import Reply
from .core.events import ClientEvents
from .core.meaning import connection_retry_after, rate_limit_wait, server_error
from .delivery import Delivery, Handler
from .errors import NexusConnectionError, NexusError, ProtocolError
from .messages import (
    AuthOkMessage,
    ChallengeMessage,
    ErrorMessage,
    Message,
    ResponseChunkMessage,
    ResponseMessage,
)

if TYPE_CHECKING:
    from .metrics import Meter
    from .waiter import Waiter

__all__ = ["Handler", "Receiver"]

log = logging.getLogger("nexus_reactive.service")


# Module constants: an enum attribute lookup per message is measurable.
_FIRST = Reply.FIRST
_LATE = Reply.LATE
_DUPLICATE = Reply.DUPLICATE
_decode = codec.decode
_decode_known = codec.decode_known
_DECODE_ERRORS = codec.DECODE_ERRORS
#: The types of a batch that are all responses.
_PUSHES = {ResponseMessage}


class Receiver(Delivery):
    """Decode, settle and deliver inbound frames (to ``messages`` and the handlers:
    :class:`~nexus_reactive.delivery.Delivery`).

    Args:
        tracker: settles the asks that frames answer.
        connection: told of rate limits and challenges.
        events: the observer (a journal) of received messages, or ``None``.
        report: where malformed frames and unawaited failures go.
        rate_limit_default: the wait after a ``rate_limited`` reply without
            ``retry_after`` (``reconnect_interval``).

    The connection's meter (``metrics=True``), if any, is told of answers and of
    repeated answers dropped.
    """

    __slots__ = (
        "_abandoned",
        "_answered",
        "_answered_window",
        "_answers",
        "_asks",
        "_chunk",
        "_connection",
        "_default_wait",
        "_events",
        "_first",
        "_first_answers",
        "_meter",
        "_piece",
        "_reply",
        "_report",
        "_resend",
        "_settle",
        "_settle_all",
        "_waiters",
        "_window",
    )

    def __init__(
        self,
        tracker: AskTracker,
        connection: Connection,
        events: ClientEvents | None,
        report: Callable[[NexusError], None],
        rate_limit_default: float,
    ) -> None:
        super().__init__()
        self._meter: Meter | None = connection.meter
        self._connection = connection
        self._events = events
        self._report = report
        self._default_wait = rate_limit_default
        # Bound once: one attribute load per call on the hot path.
        self._reply = tracker.reply
        self._settle = tracker.settle
        self._first = tracker.first
        self._first_answers = tracker.first_answers
        self._settle_all = tracker.settle_all
        self._waiters: list[Waiter] = []  # see on_frames
        self._answers: list[ResponseMessage] = []
        self._chunk = tracker.chunk
        self._piece = tracker.piece
        self._resend = tracker.resend
        # The ask table's dicts (stable objects): an id in none of them is a push.
        self._asks, self._answered, self._abandoned = tracker.lookups
        # After a rate limit's refusal, answers make room for more asks (see AskWindow).
        self._window = connection.sender.window
        self._answered_window = connection.sender.answered

    def on_frame(self, frame: bytes) -> NexusConnectionError | None:
        """Decode, settle and deliver one frame; an error return ends the connection."""
        try:
            message: Message = _decode_known(frame)
        except _DECODE_ERRORS:
            found = self._second_look(frame)
            if found is None:
                return None
            message = found
        return self._dispatch(message, frame)

    def on_frames(self, frames: list[bytes]) -> NexusConnectionError | None:
        """:meth:`on_frame` for each of ``frames`` in order (what one socket read brought).

        The same meaning and the same order, with the work done per message moved to
        the batch: the responses of a read (pushes, and answers to pending asks) go to
        the subscribers in one call, not a call per message. An answer settles its ask
        as it is decoded; whoever awaits the ask runs once the read is handled, as one
        by one. Responses are matched against the asks as they are decoded, before the
        subscribers hear of the read's earlier messages: an ask a subscriber makes
        meanwhile (with its own ``message_id``) is not answered by a response of the
        same read, which the server sent before the ask existed (a frame handled on
        its own, an error or a piece, is matched against the asks as they are then).
        An error return ends the connection; the frames after it are not looked at.
        """
        if len(frames) == 1:  # (asks one at a time: what a batch sets up costs more)
            return self.on_frame(frames[0])
        if self._events is not None:  # recorded: each frame its own way
            for frame in frames:
                stop = self.on_frame(frame)
                if stop is not None:
                    return stop
            return None
        asks, answered, abandoned = self._asks, self._answered, self._abandoned
        # No ask of ours pending or remembered: every response is a push (a frame that
        # came in before an ask was made cannot answer it). Looked at again after each
        # frame dispatched one by one, which may settle or abandon one.
        plain = not (asks or answered or abandoned)
        meter = self._meter
        decoded: list[Message] | None = None  # None: each frame is decoded below
        try:  # the whole read decoded in C, without Python code per frame
            decoded = list(map(_decode_known, frames))
        except _DECODE_ERRORS:
            pass  # an unknown type, or malformed: each frame is looked at below
        else:
            if plain and {*map(type, decoded)} == _PUSHES:  # a flood of pushes, in one call
                self._deliver_run(decoded)
                return None
        run: list[Message] = []  # pushes not yet delivered, in order
        # The asks answered in run, settled together before it is delivered (nothing
        # runs in between: whoever awaits them runs once the read is handled). Lists
        # kept across reads (emptied as they are settled): none made per read.
        waiters, answers = self._waiters, self._answers
        start = 0
        if decoded is not None and not plain and meter is None:
            # The common case of asks in flight: the read's first frames (often all of
            # them) answer pending asks; taken out of the table at once.
            start = self._first_answers(decoded, ResponseMessage, waiters, answers)
            if start == len(decoded):
                self._deliver_answered(decoded, waiters, answers)
                return None
            run = decoded[:start]
        try:
            for index, frame in enumerate(islice(frames, start, None), start):
                try:
                    message: Message = _decode_known(frame) if decoded is None else decoded[index]
                except _DECODE_ERRORS:
                    if run:  # reported after what came before it, as one by one
                        self._deliver_answered(run, waiters, answers)
                        run = []
                    found = self._second_look(frame)
                    if found is None:
                        continue
                    message = found
                if type(message) is ResponseMessage:
                    if plain:
                        run.append(message)  # a push: what on_frame does is deliver it
                        continue
                    mid = message.id
                    if mid in asks:  # the answer to a pending ask: settled, then delivered
                        entry = self._first(mid)  # what _on_reply does, metered or not
                        if entry.waiter is not None:  # (first: settled even if the meter raises)
                            waiters.append(entry.waiter)
                            answers.append(message)
                        if meter is not None:
                            meter.answered(message, entry, False)
                        run.append(message)
                        continue
                    elif mid not in answered and mid not in abandoned:
                        run.append(message)
                        continue
                if run:  # everything before this one is delivered before it settles anything
                    self._deliver_answered(run, waiters, answers)
                    run = []
                stop = self._dispatch(message, frame)
                if stop is not None:
                    return stop
                plain = not (asks or answered or abandoned)
        except BaseException:
            # Something raised (a meter's span processor): the asks taken out of the
            # table are settled all the same, as one by one (none waits untimed).
            if waiters:
                self._settle_answers(waiters, answers)
            raise
        if run:
            self._deliver_answered(run, waiters, answers)
        return None

    def _deliver_answered(
        self, run: list[Message], waiters: list[Waiter], answers: list[ResponseMessage]
    ) -> None:
        """Settle the asks ``answers`` answered (emptying both lists), then deliver
        ``run``: each answer is settled before anyone hears of it, as one by one."""
        if waiters:
            self._settle_answers(waiters, answers)
        self._deliver_run(run)

    def _settle_answers(self, waiters: list[Waiter], answers: list[ResponseMessage]) -> None:
        """Settle the asks ``answers`` answered, emptying both lists (before their run
        is delivered, or when the read failed midway)."""
        if self._window.size is not None:  # (a read's answers, counted at once)
            self._answered_window(len(waiters))
        try:
            if len(waiters) == 1:  # asks one at a time: settle() makes no lists
                self._settle(waiters[0], answers[0])
            else:
                self._settle_all(waiters, answers)
        finally:
            waiters.clear()
            answers.clear()

    def _second_look(self, frame: bytes) -> Message | None:
        """A frame the known types did not decode: an unknown type, or malformed
        (reported; ``None``)."""
        try:
            return _decode(frame)
        except ProtocolError as exc:
            self._report(exc)
            return None

    def _dispatch(self, message: Message, frame: bytes) -> NexusConnectionError | None:
        """Settle and deliver a decoded ``message`` (``frame``: its bytes, for the journal)."""
        if type(message) is ResponseMessage:
            message_id = message.id
            if self._events is None:  # recorded nowhere: the two common cases, inline
                if message_id in self._asks:
                    if self._meter is not None:
                        return self._on_reply(message, frame)
                    # The answer to a pending ask: what _on_reply does, without the call.
                    entry = self._reply(message_id)[1]  # its first answer: FIRST
                    if self._window.size is not None:  # (room for the next ask)
                        self._answered_window(1)
                    if entry is not None and entry.waiter is not None:
                        self._settle(entry.waiter, message)
                elif message_id in self._answered or message_id in self._abandoned:
                    return self._on_reply(message, frame)  # a repeat, or a late answer
                # else the common case of a flood: a response no ask of ours waits for.
                self._emit(message)
                if self.handlers:
                    self._handle(message)
                return None
            return self._on_reply(message, frame)
        if type(message) is ErrorMessage:
            return self._on_reply(message, frame)
        if type(message) is ResponseChunkMessage:
            try:
                pieces = self._chunk(message.id, message.payload.index, message)
            except ProtocolError as exc:  # too many pieces ahead of a gap: dropped
                self._report(exc)
                return None
            for piece in pieces:
                self._piece(piece)
                self.deliver(piece)
            return None
        if type(message) is ChallengeMessage:
            return self._connection.challenged()
        if self._events is not None and type(message) is not AuthOkMessage:
            self._events.received(frame)
        self.deliver(message)
        return None

    def _on_reply(
        self, message: ResponseMessage | ErrorMessage, frame: bytes
    ) -> NexusConnectionError | None:
        if type(message) is ErrorMessage:
            p = message.payload
            wait = rate_limit_wait(p.code, p.retry_after, self._default_wait)
            if wait is not None and self._resend(message.id):
                # Not an answer: the server will take the same ask (same id) later.
                log.info("rate limited: ask %s waits %.2fs, as the server asked", message.id, wait)
                self._report(server_error(message))
                self._connection.sender.hold(wait)
                return None
        outcome, entry = self._reply(message.id)
        if outcome is _DUPLICATE:
            log.debug("dropped a second answer to %s", message.id)
            if self._meter is not None:
                self._meter.duplicate()
            return None
        if self._window.size is not None and (outcome is _FIRST or outcome is _LATE):
            self._answered_window(1)
        events = self._events
        try:
            if events is not None:
                # One operation: the answer is durable exactly when its ask is done.
                if outcome is _FIRST:
                    events.answered(message.id, frame)
                else:
                    events.received(frame)
            if entry is not None and self._meter is not None:
                self._meter.answered(message, entry, type(message) is ErrorMessage)
        finally:  # (settled even if a journal or a meter's span processor raised)
            if entry is not None and entry.waiter is not None:
                self._settle(entry.waiter, message)
        if entry is None and type(message) is ErrorMessage:
            retry_after = connection_retry_after(message.id, message.payload.retry_after)
            if retry_after is not None:
                self._connection.server_wait(retry_after)
            self._report(server_error(message))
        self._emit(message)  # deliver(), inline
        if self.handlers:
            self._handle(message)
        return None
