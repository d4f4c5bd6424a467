"""One client connection: the upgrade, the receive loop, and answering asks.

The receive loop never dies of bad input: every frame that is not a valid client
message gets an ``error`` reply (PROTOCOL.md codes) and the loop goes on. Each
``ask`` is answered in its own task, so a slow answer never holds up a fast one
and answers may go out in any order. When the socket closes, every task of the
connection is cancelled and awaited before the handler returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Hashable
from typing import Any, assert_never

from aiohttp import WSMsgType, web

from .. import codec
from ..errors import ProtocolError
from ..messages import (
    AskMessage,
    AuthMessage,
    AuthOkMessage,
    ChallengeMessage,
    ErrorMessage,
    ErrorPayload,
    Message,
    ResponseChunkMessage,
    ResponseMessage,
    UnknownMessage,
)
from .auth import API_KEY_HEADER
from .engine import run_engine
from .state import ServerState

__all__ = ["handle_upgrade"]

logger = logging.getLogger("nexus_reactive.server")

_INTERNAL = "the server failed to answer; try again later"
_CLOSING = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})


async def handle_upgrade(request: web.Request, state: ServerState) -> web.StreamResponse:
    """Authenticate an upgrade request, then serve the WebSocket until it closes.

    Args:
        request: the HTTP upgrade request.
        state: the app's state.

    Returns:
        A 401 response (missing or wrong ``x-api-key``, nothing upgraded), a 400
        response (not a WebSocket upgrade), or the closed WebSocket response.
    """
    fingerprint = state.api_keys.match(request.headers.get(API_KEY_HEADER))
    if fingerprint is None:
        reason = "invalid" if API_KEY_HEADER in request.headers else "missing"
        logger.info("refused %s: %s API key", request.remote, reason)
        return web.json_response(
            {"error": "unauthenticated", "message": f"{reason} {API_KEY_HEADER} header"},
            status=401,
        )
    ws = web.WebSocketResponse(max_msg_size=state.max_message_size, heartbeat=state.heartbeat)
    if not ws.can_prepare(request).ok:
        return web.json_response(
            {"error": "bad_request", "message": "expected a WebSocket upgrade"}, status=400
        )
    await ws.prepare(request)
    await _Connection(ws, state, fingerprint, request.remote).serve()
    return ws


class _Connection:
    """The state of one open WebSocket: its tasks, and a lock that orders writes."""

    def __init__(
        self, ws: web.WebSocketResponse, state: ServerState, key: bytes, peer: str | None
    ) -> None:
        self._ws = ws
        self._state = state
        self._key = key
        self._peer = peer
        self._tasks: set[asyncio.Task[None]] = set()
        self._write_lock = asyncio.Lock()

    async def serve(self) -> None:
        state, stats = self._state, self._state.stats
        stats.connections_total += 1
        stats.connections_open += 1
        state.sockets.add(self._ws)
        logger.info("connection from %s opened", self._peer)
        try:
            await self._receive_loop()
        finally:
            state.sockets.discard(self._ws)
            stats.connections_open -= 1
            await self._cancel_tasks()
            logger.info("connection from %s closed (code %s)", self._peer, self._ws.close_code)

    async def _receive_loop(self) -> None:
        ws = self._ws
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                try:
                    await self._on_text(msg.data)
                except Exception:
                    # A bug here must cost one frame, not the connection.
                    logger.exception("failed to handle a frame from %s", self._peer)
                    await self._send_error("", "internal", _INTERNAL)
            elif msg.type is WSMsgType.BINARY:
                await self._send_error(
                    "", "bad_request", "binary frames are not part of the protocol"
                )
            elif msg.type in _CLOSING:
                if msg.type is WSMsgType.ERROR:
                    # e.g. a frame over max_msg_size: aiohttp has closed with 1009.
                    logger.info("connection from %s failed: %s", self._peer, msg.data)
                return

    async def _on_text(self, data: str) -> None:
        try:
            message = codec.decode(data)
        except ProtocolError as exc:
            await self._send_error(exc.message_id or "", "bad_request", _reason(exc))
            return
        await self._dispatch(message)

    async def _dispatch(self, message: Message) -> None:
        match message:
            case AskMessage(id=""):
                await self._send_error("", "bad_request", "an ask needs a non-empty id")
            case AskMessage():
                self._state.stats.asks_received += 1
                self._spawn(self._answer(message))
            case AuthMessage():
                await self._send_error(
                    message.id,
                    "bad_request",
                    "this server does not require key-pair authentication",
                )
            case UnknownMessage():
                await self._send_error(
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
                await self._send_error(
                    message.id,
                    "unknown_type",
                    f"{message.type!r} messages go from server to client; this server "
                    "understands 'ask'",
                )
            case _:
                assert_never(message)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, ask: AskMessage) -> None:
        key: Hashable = (self._key, ask.id)
        try:
            reply, replayed = await self._state.replies.get_or_compute(
                key, lambda: self._compute(ask)
            )
        except Exception:
            logger.exception("failed to answer ask %s", ask.id)
            reply, replayed = _error(ask.id, "internal", _INTERNAL), False
        if replayed:
            self._state.stats.asks_replayed += 1
        await self._send(reply)

    async def _compute(self, ask: AskMessage) -> tuple[bytes, bool]:
        self._state.stats.engine_calls += 1
        try:
            response = await run_engine(self._state.engine, ask.payload)
        except Exception:
            logger.exception("the engine failed on ask %s", ask.id)
            return _error(
                ask.id, "internal", _INTERNAL
            ), False  # a retry should try the engine again
        return codec.encode(ResponseMessage(id=ask.id, payload=response)), True

    async def _send_error(self, message_id: str, code: str, text: str) -> None:
        await self._send(_error(message_id, code, text))

    async def _send(self, frame: bytes) -> None:
        if self._ws.closed:
            return
        async with self._write_lock:
            try:
                await self._ws.send_frame(frame, WSMsgType.TEXT)
            except ConnectionError:
                # The peer went away mid-write; the receive loop will see the close.
                logger.debug("dropped a reply to %s: connection lost", self._peer)

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                logger.error("an ask task failed", exc_info=result)


def _error(message_id: str, code: str, text: str) -> bytes:
    return codec.encode(ErrorMessage(id=message_id, payload=ErrorPayload(code=code, message=text)))


def _reason(exc: ProtocolError) -> str:
    # The client has its own frame; the reply says what was wrong, not what was sent.
    text = str(exc)
    return text.removesuffix(f"; frame: {exc.frame!r}") if exc.frame else text
