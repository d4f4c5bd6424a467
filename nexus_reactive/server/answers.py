"""Answering one connection's messages once they are admitted: asks, and the rest.

:class:`Answers` checks each valid message (``bad_request`` for a field over its
limit, ``unknown_type`` for what a client does not send) and answers each ``ask``
in its own task, through the server's reply cache (:mod:`.dedupe`), so a slow
answer never holds up a fast one, answers may go out in any order, and an ask
repeated (after a reconnect) joins or replays the first one's answer. An ask that
carries W3C trace context is answered inside a span that joins the client's trace
(:mod:`.tracing`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, assert_never

from .. import codec
from ..messages import (
    AskMessage,
    AskRequest,
    AuthMessage,
    AuthOkMessage,
    ChallengeMessage,
    ErrorMessage,
    Message,
    ResponseChunkMessage,
    ResponseChunkPayload,
    ResponseMessage,
    SealedMessage,
    SignedMessage,
    UnknownMessage,
)
from .dedupe import Publish
from .engine import run_engine
from .state import ServerState
from .wire import INTERNAL, Wire, error_frame

__all__ = ["MAX_MESSAGE_SIZE_HEADER", "Answers"]

logger = logging.getLogger("nexus_reactive.server")

#: Upgrade header in which a client announces the largest message it accepts, in bytes.
MAX_MESSAGE_SIZE_HEADER = "x-max-message-size"


class Answers:
    """The asks of one connection: their tasks, limits and replies.

    Args:
        wire: the connection's write side.
        state: the app's state.
        key: the fingerprint of the connection's API key.
        peer: the client's address, for the log.
        max_reply: the largest frame the client accepts.
    """

    def __init__(
        self, wire: Wire, state: ServerState, key: bytes, peer: str | None, max_reply: int
    ) -> None:
        self._wire = wire
        self._state = state
        self._key = key
        self._peer = peer
        self._max_reply = max_reply
        #: A frame's size on the wire: its length, or its signed or sealed envelope's.
        self.sized: Callable[[bytes], int] = len
        self._tasks: set[asyncio.Task[None]] = set()

    async def dispatch(self, message: Message, pubkey: str | None) -> None:
        """Answer one valid, admitted message; ``pubkey``: the client's, if it signed."""
        send_error = self._wire.send_error
        match message:
            case AskMessage(id=""):
                await send_error("", "bad_request", "an ask needs a non-empty id")
            case AskMessage():
                refused = self._refused(message.payload)
                if refused:
                    await send_error(message.id, "bad_request", refused)
                    return
                self._state.stats.asks_received += 1
                self._spawn(self._answer(message, pubkey))
            case AuthMessage():
                await send_error(
                    message.id,
                    "bad_request",
                    "this server does not require key-pair authentication"
                    if self._state.key_auth is None
                    else "this connection is already authenticated",
                )
            case UnknownMessage():
                await send_error(
                    message.id,
                    "unknown_type",
                    f"unknown message type {message.type!r}; this server understands 'ask'",
                )
            case (
                ResponseMessage()
                | ErrorMessage()
                | ChallengeMessage()
                | AuthOkMessage()
                | ResponseChunkMessage()
            ):
                await send_error(
                    message.id,
                    "unknown_type",
                    f"{message.type!r} messages go from server to client; this server "
                    "understands 'ask'",
                )
            case SignedMessage() | SealedMessage():
                # On a connection that agreed on them, they were opened before this.
                await send_error(
                    message.id,
                    "bad_request",
                    f"a {message.type} frame on a connection that did not agree on "
                    f"{message.type} frames: pin the server's key (server_key) to use them",
                )
            case _:
                assert_never(message)

    def _refused(self, request: AskRequest) -> str | None:
        """Why the server refuses this ask's payload (``bad_request``), if it does."""
        state = self._state
        if request.query.isspace():  # (the decoder refused an empty one)
            return "query is only whitespace: send the question to ask"
        if len(request.query) > state.max_query_length:
            return (
                f"query is {len(request.query)} characters long, over this server's "
                f"max_query_length of {state.max_query_length}"
            )
        if request.team_id is not None and len(request.team_id) > state.max_team_id_length:
            return (
                f"team_id is {len(request.team_id)} characters long, over this server's "
                f"max_team_id_length of {state.max_team_id_length}"
            )
        return None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, ask: AskMessage, pubkey: str | None) -> None:
        if ask.traceparent is None or (tracer := self._state.tracing.tracer()) is None:
            await self._reply(ask, pubkey)
            return
        from ..otel import server_span

        with server_span(tracer, ask) as span:
            outcome = await self._reply(ask, pubkey)
            span.set_attribute("nexus.ask.outcome", outcome)
            if outcome in ("internal", "too_large"):
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR, outcome))

    async def _reply(self, ask: AskMessage, pubkey: str | None) -> str:
        """Answer ``ask``; return how: ``answered``, ``replayed``, ``internal`` (the
        engine or the server failed) or ``too_large``."""
        # One client is one API key and, with key-pair authentication, one public key.
        key: Hashable = (self._key, pubkey, ask.id)
        try:
            reply, replayed = await self._state.replies.get_or_compute(
                key,
                lambda publish: self._compute(ask, publish),
                listener=self,
                on_chunk=self._send_chunk,
            )
        except Exception:
            logger.exception("failed to answer ask %s", ask.id)
            await self._wire.send(error_frame(ask.id, "internal", INTERNAL))
            return "internal"
        if replayed:
            # Joined a computation already running (its chunks so far, then the rest),
            # or, once it is done, the remembered final reply alone.
            self._state.stats.asks_replayed += 1
        if self.sized(reply) > self._max_reply:
            # Sent, the client would close with 1009, reconnect and ask again, for the
            # same reply: refuse this ask instead, once.
            self._state.stats.too_large += 1
            logger.warning(
                "refused to send the %d-byte reply to ask %s: over %s's limit of %d bytes",
                len(reply),
                ask.id,
                self._peer,
                self._max_reply,
            )
            await self._wire.send_error(
                ask.id,
                "too_large",
                f"the answer is {len(reply)} bytes, over this connection's limit of "
                f"{self._max_reply} bytes ({MAX_MESSAGE_SIZE_HEADER}, else the server's "
                "max_message_size); ask for less, or raise the client's max_message_size",
            )
            return "too_large"
        await self._wire.send(reply)
        if reply.startswith(b'{"type":"error"'):
            return "internal"  # the engine failed (an error reply, not remembered)
        return "replayed" if replayed else "answered"

    async def _send_chunk(self, frame: bytes) -> None:
        # A chunk over the limit is skipped; the final reply is bigger still, and is
        # refused with too_large.
        if self.sized(frame) <= self._max_reply:
            await self._wire.send(frame)

    async def _compute(self, ask: AskMessage, publish: Publish) -> tuple[bytes, bool]:
        # Runs in the reply cache's task, not this connection's: it may outlive us.
        stats = self._state.stats
        stats.engine_calls += 1
        index = 0

        async def send_chunk(delta: str) -> None:
            nonlocal index
            chunk = ResponseChunkPayload(delta=delta, index=index)
            index += 1
            stats.chunks_sent += 1
            await publish(codec.encode(ResponseChunkMessage(id=ask.id, payload=chunk)))

        try:
            response = await run_engine(self._state.engine, ask.payload, send_chunk)
        except Exception:
            logger.exception("the engine failed on ask %s", ask.id)
            # Not remembered (False): a retry should try the engine again.
            return error_frame(ask.id, "internal", INTERNAL), False
        return codec.encode(ResponseMessage(id=ask.id, payload=response)), True

    async def cancel(self) -> None:
        """Cancel every ask still being answered, and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                logger.error("an ask task failed", exc_info=result)
