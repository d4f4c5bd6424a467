"""One connection's life, and the asks in flight on it: the part of
:class:`~nexus_reactive.WebSocketService` that works behind its public API.

A supervisor task makes attempts (retrying per the core's policy), answers the
key-pair challenge, runs a writer task and the receive loop while connected,
and sleeps out the backoff between attempts. The asks in flight are tracked
here too: their deadlines (one timer for all), and what settles or fails them.
Every decision is the pure core's; this module performs the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import codec
from .config import WebSocketConfig
from .core import ClientCore, ConnectionState, Deadlines, Reply, TokenBucket
from .core.meaning import challenge_error, connection_retry_after, rate_limit_wait
from .errors import (
    ConfigError,
    NexusConnectionError,
    NexusError,
    ProtocolError,
    RequestTimeout,
    ServerError,
)
from .messages import (
    AskResponse,
    AuthOkMessage,
    ChallengeMessage,
    ErrorMessage,
    Message,
    ResponseChunkMessage,
    ResponseMessage,
)
from .persist import Journal
from .streams import DerivedPublisher, Publisher, ValuePublisher
from .transport import Transport, open_session, open_transport

__all__ = ["CHALLENGE_GRACE", "Handler"]

# The service's loggers: this module is the service's inside.
log = logging.getLogger("nexus_reactive.service")
frames_log = logging.getLogger("nexus_reactive.frames")

#: An ``on_message`` handler.
Handler = Callable[[Any], None]
#: Seconds a client without a signing key waits for a first frame (a server that
#: requires key-pair authentication sends its challenge first) before it reports the
#: connection open. Messages are not held meanwhile.
CHALLENGE_GRACE = 0.05
# Frames written to the socket at once, at most.
_BATCH = 256
# Module constants: an enum attribute lookup per message is measurable.
_FIRST = Reply.FIRST
_DUPLICATE = Reply.DUPLICATE


class _Waiter:
    """What the core holds for an ask: its future (if awaited), its deadline bucket,
    and who wants its streamed pieces."""

    __slots__ = ("future", "limit", "on_piece", "slot")

    def __init__(
        self,
        future: asyncio.Future[AskResponse] | None,
        on_piece: Callable[[str], None] | None = None,
    ) -> None:
        self.future = future
        self.on_piece = on_piece
        self.slot: int | None = None  # its bucket in the service's Deadlines
        self.limit = 0.0


class _Link:
    """The connection and its asks in flight; :class:`WebSocketService` builds on it.

    The state below is set by ``WebSocketService.__init__``.
    """

    _config: WebSocketConfig
    _core: ClientCore[_Waiter]
    _state: ValuePublisher[ConnectionState]
    _messages: Publisher[Message]
    _errors: Publisher[NexusError]
    _handlers: dict[str, tuple[Handler, ...]]
    _outbox_depth: DerivedPublisher[int]
    _loop: asyncio.AbstractEventLoop | None
    _supervisor: asyncio.Task[None] | None
    _ready: asyncio.Future[None] | None
    _transport: Transport | None
    _wake: asyncio.Event | None
    _failure: NexusConnectionError | None
    _retry_after: float | None
    _signing_key: Ed25519PrivateKey | None
    _bucket: TokenBucket
    _trace: bool
    _writing: bool
    _deadlines: Deadlines[str]
    _deadline_timer: asyncio.TimerHandle | None
    _deadline_at: float | None
    _journal: Journal | None

    # -- the asks in flight ----------------------------------------------------------

    def _track(
        self,
        ask_id: str,
        frame: bytes,
        future: asyncio.Future[AskResponse] | None,
        timeout: float | None = None,
        on_piece: Callable[[str], None] | None = None,
        kick: bool = True,
    ) -> None:
        waiter = _Waiter(future, on_piece)
        self._core.submit_ask(ask_id, frame, waiter)
        if self._journal is not None:
            self._journal.queued(ask_id, True, frame)
        limit = timeout if timeout is not None else self._config.request_timeout
        if limit is not None:
            loop = self._loop or asyncio.get_running_loop()
            waiter.limit = limit
            waiter.slot = slot = self._deadlines.add(ask_id, loop.time() + limit)
            if self._deadline_at is None or slot * self._deadlines.resolution < self._deadline_at:
                self._arm_deadlines(loop)
        if kick:
            self._kick()

    async def _send_now(self) -> None:
        """Write the head of the outbox from the calling task (see ``_ask``)."""
        transport, item = self._transport, self._core.next_outgoing()
        if transport is None or item is None:
            self._kick()
            return
        self._writing = True
        try:
            if self._trace:
                frames_log.debug("-> %s", codec.redact(item.frame))
            await transport.send(item.frame)
        except asyncio.CancelledError:
            self._core.unsent(item)  # the caller's _ask abandons the ask
            raise
        except Exception as exc:
            # Not the caller's failure: the connection is going. The frame goes back
            # to the head of the outbox and the ask waits, as any other would.
            self._core.unsent(item)
            log.info("write failed (%s); the ask waits for the next connection", exc)
            self._kick()
        finally:
            self._writing = False

    def _expire(self, ask_id: str, limit: float) -> None:
        entry = self._core.abandon(ask_id)
        if entry is None:
            return
        if self._journal is not None:
            self._journal.abandoned(ask_id)
        error = RequestTimeout(
            f"no answer to ask {ask_id} within {limit:g}s (request_timeout); the server "
            "may be slow or unreachable. Raise the timeout or check state.error.",
            message_id=ask_id,
        )
        self._finish(ask_id, entry.waiter, error)

    def _abandon(self, ask_id: str) -> None:
        entry = self._core.abandon(ask_id)
        if entry is not None and self._journal is not None:
            self._journal.abandoned(ask_id)
        if entry is not None and entry.waiter is not None:
            self._untime(ask_id, entry.waiter)

    def _untime(self, ask_id: str, waiter: _Waiter) -> None:
        if waiter.slot is not None:
            self._deadlines.remove(ask_id, waiter.slot)
            waiter.slot = None

    def _arm_deadlines(self, loop: asyncio.AbstractEventLoop) -> None:
        """Keep one timer, for the earliest deadline bucket."""
        when = self._deadlines.next_due()
        if when == self._deadline_at:
            return
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        self._deadline_timer = None if when is None else loop.call_at(when, self._on_deadlines)
        self._deadline_at = when

    def _on_deadlines(self) -> None:
        self._deadline_timer = self._deadline_at = None
        loop = asyncio.get_running_loop()
        pending = self._core.pending
        for ask_id in self._deadlines.pop_due(loop.time()):
            entry = pending.get(ask_id)
            if entry is not None and entry.waiter is not None:
                entry.waiter.slot = None
                self._expire(ask_id, entry.waiter.limit)
        self._arm_deadlines(loop)

    def _finish(self, ask_id: str, waiter: _Waiter | None, error: NexusError) -> None:
        """Fail one ask: its future if awaited, else report on ``errors``."""
        if waiter is None:
            return
        self._untime(ask_id, waiter)
        future = waiter.future
        if future is None:
            self._report(error)
        elif not future.done():
            future.set_exception(error)

    def _kick(self) -> None:
        self._outbox_depth.refresh()
        if self._wake is not None and self._core.state.connected:
            self._wake.set()

    # -- the connection ------------------------------------------------------------

    async def _supervise(self) -> None:
        # The session lives exactly as long as this task: close() awaits it, and a
        # supervisor that gives up leaves nothing open behind it.
        async with open_session() as session:
            await self._run(session)

    async def _run(self, session: aiohttp.ClientSession) -> None:
        core = self._core
        try:
            while True:
                self._publish(core.attempt())
                try:
                    transport = await self._open(session)
                except NexusConnectionError as exc:
                    error = exc
                except Exception as exc:  # any failure of an attempt is one
                    log.warning("a connection attempt failed unexpectedly", exc_info=True)
                    error = NexusConnectionError(f"the connection attempt failed: {exc!r}")
                else:
                    try:
                        error = await self._serve(transport)
                    except Exception as exc:  # a bug of ours: retried per the policy
                        log.warning("the connection failed unexpectedly", exc_info=True)
                        error = NexusConnectionError(f"the connection failed: {exc!r}")
                self._report(error)
                decision = core.lost(error)
                self._publish(core.state)
                if decision.delay is None:
                    log.warning("giving up: %s", decision.error)
                    self._give_up(decision.error)
                    return
                log.info("%s; next attempt in %.2fs", error, decision.delay)
                await asyncio.sleep(decision.delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: surface it instead of hanging the callers
            log.exception("the connection supervisor failed")
            fatal = NexusConnectionError(f"internal error: {exc!r}", retryable=False)
            core.lost(fatal)
            self._publish(core.state)  # never left in a phase that no task drives
            self._give_up(fatal)

    async def _open(self, session: aiohttp.ClientSession) -> Transport:
        """One attempt: the key (the provider is called exactly once), then the upgrade,
        both within ``connect_timeout``."""
        config = self._config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.connect_timeout
        try:
            async with asyncio.timeout_at(deadline):
                api_key = await config.resolve_api_key()
        except TimeoutError:
            raise NexusConnectionError(
                "the API key provider did not return a key within connect_timeout "
                f"({config.connect_timeout:g}s)"
            ) from None
        except ConfigError as exc:
            raise NexusConnectionError(f"{exc}. Not retrying.", retryable=False) from exc
        except Exception as exc:
            raise NexusConnectionError(
                f"the API key provider raised {type(exc).__name__}: {exc}"
            ) from exc
        # x-max-message-size: a server that would send a bigger reply refuses that ask
        # (error too_large) instead of having it closed with 1009 on every reconnect.
        headers = {
            **config.headers,
            "x-api-key": api_key,
            "x-max-message-size": str(config.max_message_size),
        }
        return await open_transport(
            session,
            config.url,
            headers=headers,
            ssl=config.ssl,
            heartbeat=config.heartbeat,
            connect_timeout=config.connect_timeout,
            max_message_size=config.max_message_size,
            deadline=deadline,
        )

    async def _serve(self, transport: Transport) -> NexusConnectionError:
        """Run one open connection until it ends; return why it ended."""
        writer: asyncio.Task[None] | None = None
        grace: asyncio.TimerHandle | None = None
        try:
            if self._signing_key is not None:
                from .handshake import authenticate

                self._publish(self._core.authenticating())
                try:
                    await authenticate(
                        transport,
                        self._signing_key,
                        self._config.auth_timeout,
                        self._messages.emit,
                        self._report,
                    )
                except NexusConnectionError as exc:
                    return exc
            self._transport = transport
            self._wake = asyncio.Event()
            # Checked once per connection, so the hot path pays one bool test.
            self._trace = frames_log.isEnabledFor(logging.DEBUG)
            self._core.opened()  # messages flow from now on
            writer = asyncio.create_task(self._write(transport), name="nexus-reactive-writer")
            self._retry_after = None
            first: Callable[[bytes], NexusConnectionError | None] | None = None
            if self._signing_key is None:
                # A server that requires key-pair authentication sends its challenge as
                # the first frame after the upgrade: the connection counts as open (state,
                # connect()) once the first frame is not a challenge, or once
                # CHALLENGE_GRACE has passed without a frame. Messages flow meanwhile.
                first = self._on_first_frame
                grace = asyncio.get_running_loop().call_later(CHALLENGE_GRACE, self._confirm_open)
            else:
                self._confirm_open()
            error = await transport.pump(self._on_frame, self._report, first)
            if self._retry_after is not None and error.retry_after is None and error.retryable:
                error.retry_after = self._retry_after
            return error
        finally:
            if grace is not None:
                grace.cancel()
            self._transport = None
            self._wake = None
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            await transport.close()

    async def _write(self, transport: Transport) -> None:
        core = self._core
        wake = self._wake
        depth = self._outbox_depth
        bucket = self._bucket
        journal = self._journal
        loop = asyncio.get_running_loop()
        assert wake is not None
        while True:
            item = core.next_outgoing()
            if item is None:
                depth.refresh()
                wake.clear()
                await wake.wait()
                continue
            batch = [item]
            if bucket.free(loop.time()):
                # Everything queued goes out together: one write to the socket.
                while len(batch) < _BATCH and (more := core.next_outgoing()) is not None:
                    batch.append(more)
            depth.refresh()
            try:
                delay = bucket.take(loop.time())
                if delay > 0:
                    await asyncio.sleep(delay)
                if self._trace:
                    for sent in batch:
                        frames_log.debug("-> %s", codec.redact(sent.frame))
                self._writing = True
                try:
                    await transport.send_batch([sent.frame for sent in batch])
                finally:
                    self._writing = False
            except asyncio.CancelledError:
                for unsent in reversed(batch):
                    core.unsent(unsent)
                raise
            except Exception as exc:
                for unsent in reversed(batch):
                    core.unsent(unsent)
                log.info("write failed (%s); the frames wait for the next connection", exc)
                await transport.close(1011)
                return
            if journal is not None:
                for sent in batch:
                    if sent.key is not None:
                        journal.written(sent.key)

    def _confirm_open(self) -> None:
        """The connection counts as open: publish ``connected``, release ``connect()``."""
        core = self._core
        if not core.state.connected or self._state.value.connected:
            return
        self._publish(core.state)
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_result(None)

    def _on_first_frame(self, frame: bytes) -> NexusConnectionError | None:
        """The first frame of a connection without a signing key: a challenge is fatal
        before the connection was ever reported open."""
        try:
            message = codec.decode(frame)
        except ProtocolError:
            message = None
        if type(message) is ChallengeMessage:
            if self._trace:
                frames_log.debug("<- %s", codec.redact(frame))
            self._deliver(message)
            return self._on_challenge()
        self._confirm_open()
        return self._on_frame(frame)

    def _on_frame(self, frame: bytes) -> NexusConnectionError | None:
        """Decode, settle and deliver one frame; an error return ends the connection.

        The hot path of the client: dispatch is on ``type(message)`` (an
        ``isinstance`` against a msgspec class costs several times more), and a
        ``response`` (the common case) takes the shortest way through.
        """
        if self._trace:
            frames_log.debug("<- %s", codec.redact(frame))
        try:
            message = codec.decode(frame)
        except ProtocolError as exc:
            self._report(exc)
            return None
        if type(message) is ResponseMessage or type(message) is ErrorMessage:
            return self._on_reply(message, frame)
        if type(message) is ResponseChunkMessage:
            for piece in self._core.chunk(message.id, message.payload.index, message):
                self._deliver_piece(piece)
            return None
        if type(message) is ChallengeMessage:
            return self._on_challenge()
        if self._journal is not None and type(message) is not AuthOkMessage:
            self._journal.received(frame)
        self._deliver(message)
        return None

    def _on_reply(
        self, message: ResponseMessage | ErrorMessage, frame: bytes
    ) -> NexusConnectionError | None:
        if type(message) is ErrorMessage:
            wait = rate_limit_wait(
                message.payload.code, message.payload.retry_after, self._config.reconnect_interval
            )
            if wait is not None and self._core.resend(message.id):
                # Not an answer: the server will take the same ask (same id) later.
                self._hold(message, wait)
                return None
        outcome, entry = self._core.reply(message.id)
        if outcome is _DUPLICATE:
            log.debug("dropped a second answer to %s", message.id)
            return None
        if self._journal is not None:
            # One operation: the answer is durable exactly when its ask is done.
            self._journal.received(frame, message.id if outcome is _FIRST else None)
        if entry is not None:
            if entry.waiter is not None:
                self._settle(entry.waiter, message)
        elif type(message) is ErrorMessage:
            retry_after = connection_retry_after(message.id, message.payload.retry_after)
            if retry_after is not None:
                self._retry_after = retry_after
            self._report(_server_error(message))
        self._deliver(message)
        return None

    def _deliver_piece(self, piece: ResponseChunkMessage) -> None:
        entry = self._core.pending.get(piece.id)
        if entry is not None and entry.waiter is not None and entry.waiter.on_piece is not None:
            try:
                entry.waiter.on_piece(piece.payload.delta)
            except Exception:
                log.exception("an ask_stream subscriber raised")
        self._deliver(piece)

    def _deliver(self, message: Message) -> None:
        self._messages.emit(message)
        if not self._handlers:
            return
        handlers = self._handlers.get(message.type)
        if handlers:
            for handler in handlers:
                try:
                    handler(message)
                except Exception:
                    log.exception("an on_message handler for %r raised", message.type)

    def _hold(self, message: ErrorMessage, wait: float) -> None:
        loop = asyncio.get_running_loop()
        self._bucket.pause_until(loop.time() + wait)
        log.info("rate limited: ask %s waits %.2fs, as the server asked", message.id, wait)
        self._report(_server_error(message))
        self._kick()

    def _settle(self, waiter: _Waiter, message: ResponseMessage | ErrorMessage) -> None:
        if waiter.slot is not None:
            self._deadlines.remove(message.id, waiter.slot)
            waiter.slot = None
        future = waiter.future
        if future is None or future.done():
            return
        if isinstance(message, ResponseMessage):
            future.set_result(message.payload)
        else:
            future.set_exception(_server_error(message))

    def _on_challenge(self) -> NexusConnectionError | None:
        # The receive loop runs after the handshake: a client with a key authenticated.
        has_key = self._signing_key is not None
        error = challenge_error(has_key, authenticated=has_key)
        if error is None:
            log.warning("ignored a second challenge on an authenticated connection")
        return error

    def _give_up(self, error: NexusConnectionError) -> None:
        self._failure = error
        self._fail_ready(error)
        for ask_id, entry in self._core.pending.drain():
            self._finish(ask_id, entry.waiter, error)

    def _fail_ready(self, error: NexusError) -> None:
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_exception(error)
            ready.exception()  # retrieved: a store that never awaits must not warn

    def _publish(self, state: ConnectionState) -> None:
        if state != self._state.value:
            log.debug("state: %s", state)
            self._state.set(state)

    def _report(self, error: NexusError) -> None:
        if isinstance(error, ProtocolError):
            log.warning("%s", error)
        self._errors.emit(error)


def _server_error(message: ErrorMessage) -> ServerError:
    p = message.payload
    return ServerError(p.code, p.message, message_id=message.id, retry_after=p.retry_after)
