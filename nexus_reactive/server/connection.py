"""One client connection: the upgrade, the receive loop, and answering asks.

The receive loop never dies of bad input: every frame that is not a valid client
message gets an ``error`` reply (the codes of docs/protocol.md) and the loop goes on. Each
``ask`` is answered in its own task, so a slow answer never holds up a fast one
and answers may go out in any order. When the socket closes, every task of the
connection is cancelled and awaited before the handler returns.

Each inbound data frame goes through, in order:

1. key-pair authentication, if the app requires it: while the client has not
   authenticated, an ``auth`` is judged (:mod:`.keyauth`) and anything else is
   answered ``unauthenticated`` and dropped (after the rate limit, below); no
   ``auth`` within the timeout closes with 4401;
2. the rate limit, if the app has one (:mod:`.ratelimit`): a frame over it is
   answered ``rate_limited`` with ``retry_after`` and dropped; a connection that
   keeps sending regardless is closed with 4429;
3. validation (``bad_request`` for a malformed frame), then :class:`~.answers.Answers`
   (limits, and an answer to each ask). Every write goes through :class:`~.wire.Wire`.

On a connection that agreed on signed or sealed frames (:mod:`..negotiation`), each
frame is checked first (:meth:`~..framing.FrameGuard.unwrap`): one that fails is
answered ``bad_frame`` and the connection is closed with 4409; the Wire signs every
frame it writes.
"""

from __future__ import annotations

import asyncio
import logging
import math

from aiohttp import WSCloseCode, WSMsgType, web
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from .. import codec
from ..core.opening import AUTH_HEADER
from ..errors import ProtocolError
from ..framing import CLOSE_BAD_FRAME, CLOSE_FRAMES_REFUSED, FrameGuard, FrameRefused
from ..messages import (
    AuthMessage,
    AuthOkMessage,
    AuthOkPayload,
    ChallengeMessage,
    ChallengePayload,
    Message,
)
from .answers import MAX_MESSAGE_SIZE_HEADER, Answers
from .auth import API_KEY_HEADER
from .keyauth import CLOSE_AUTH_FAILED, CLOSE_FORBIDDEN, judge, new_challenge
from .state import ServerState
from .wire import INTERNAL, Wire

__all__ = ["MAX_MESSAGE_SIZE_HEADER", "handle_upgrade"]

logger = logging.getLogger("nexus_reactive.server")

_CLOSING = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})
#: Close code: rate limited; the client reconnects after ``retry_after``.
CLOSE_RATE_LIMITED = 4429
_CLOSE_REASONS = {
    CLOSE_AUTH_FAILED: b"authentication failed",
    CLOSE_FORBIDDEN: b"forbidden",
}


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
    # Say in the upgrade whether a challenge follows: a client without a key then
    # fails at once, and one without the need opens without waiting for a frame.
    ws.headers[AUTH_HEADER] = "challenge" if state.key_auth is not None else "none"
    if not ws.can_prepare(request).ok:
        return web.json_response(
            {"error": "bad_request", "message": "expected a WebSocket upgrade"}, status=400
        )
    await ws.prepare(request)
    announced = _announced_limit(request.headers.get(MAX_MESSAGE_SIZE_HEADER))
    await _Connection(ws, state, fingerprint, request.remote, announced).serve()
    return ws


def _announced_limit(value: str | None) -> int | None:
    """The client's announced maximum message size, if it sent a usable one."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value) or None


class _Connection:
    """One open WebSocket: its receive loop and what lets a frame through (key-pair
    authentication, the rate limit); its asks are :class:`~.answers.Answers`'s."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        state: ServerState,
        key: bytes,
        peer: str | None,
        max_reply: int | None = None,
    ) -> None:
        self._ws = ws
        self._state = state
        self._key = key
        self._peer = peer
        self._wire = Wire(ws, peer)
        # Key-pair authentication: the challenge sent, and the loop time by which
        # the auth must come (None once settled, or when not required).
        self._challenge: ChallengeMessage | None = None
        self._auth_deadline: float | None = None
        self._pubkey: str | None = None
        self._seal_key: X25519PrivateKey | None = None
        self._guard: FrameGuard | None = None
        self._limited_in_row = 0
        # The largest frame this client accepts (announced at the upgrade, else ours).
        self._answers = Answers(self._wire, state, key, peer, max_reply or state.max_message_size)

    async def serve(self) -> None:
        state, stats = self._state, self._state.stats
        stats.connections_total += 1
        stats.connections_open += 1
        state.sockets.add(self._wire)
        logger.info("connection from %s opened", self._peer)
        try:
            if state.key_auth is not None:
                await self._send_challenge(state.key_auth.timeout)
            await self._receive_loop()
        finally:
            state.sockets.discard(self._wire)
            self._closed()
            stats.connections_open -= 1
            await self._answers.cancel()

    def _closed(self) -> None:
        """Log how the connection ended and count the code, if the server closed it."""
        sent = self._wire.sent_close
        if sent is not None:
            closes = self._state.stats.closes_sent
            closes[sent] = closes.get(sent, 0) + 1
            logger.info("connection from %s closed by the server (code %d)", self._peer, sent)
            return
        code = self._ws.close_code
        if code is None or code == WSCloseCode.ABNORMAL_CLOSURE:
            logger.info("connection from %s lost (no close frame)", self._peer)
        else:
            logger.info("connection from %s closed by the client (code %d)", self._peer, code)

    @property
    def _awaiting_auth(self) -> bool:
        return self._challenge is not None and self._pubkey is None

    async def _receive_loop(self) -> None:
        ws = self._ws
        while True:
            try:
                msg = await ws.receive(timeout=self._auth_wait())
            except TimeoutError:
                if self._auth_deadline is None:
                    raise  # not ours: only the auth phase has a receive timeout
                await self._auth_timed_out()
                continue  # the next receive sees the close
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                try:
                    await self._on_frame(msg.data if msg.type is WSMsgType.TEXT else None)
                except Exception:
                    # A bug here must cost one frame, not the connection.
                    logger.exception("failed to handle a frame from %s", self._peer)
                    await self._wire.send_error("", "internal", INTERNAL)
            elif msg.type in _CLOSING:
                if msg.type is WSMsgType.ERROR:
                    # e.g. a frame over max_msg_size: aiohttp has closed with 1009.
                    self._wire.closed_by_aiohttp(msg.data)
                    logger.info("connection from %s failed: %s", self._peer, msg.data)
                return

    async def _on_frame(self, data: str | bytes | None) -> None:
        """Handle one data frame: ``data`` is the text, ``None`` for a binary frame."""
        guard = self._guard
        if guard is not None:
            try:
                data = guard.unwrap("" if data is None else data)
            except FrameRefused as exc:
                await self._refuse_frame(exc)
                return
        message: Message | None = None
        problem = "binary frames are not part of the protocol"
        message_id = ""
        if data is not None:
            try:
                message = codec.decode(data)
            except ProtocolError as exc:
                problem, message_id = _reason(exc), exc.message_id or ""
            else:
                message_id = message.id
        if self._awaiting_auth and isinstance(message, AuthMessage):
            # Exempt from the rate limit: one per connection, and refusing it would
            # leave an honest client unable to authenticate.
            await self._authenticate(message)
            return
        if not await self._admit(message_id):
            return
        if self._awaiting_auth:
            assert self._challenge is not None
            await self._wire.send_error(
                message_id,
                "unauthenticated",
                "this server requires key-pair authentication: answer the challenge "
                f"(id {self._challenge.id!r}) with a signed 'auth' message first",
            )
        elif message is None:
            await self._wire.send_error(message_id, "bad_request", problem)
        else:
            await self._answers.dispatch(message, self._pubkey)

    # --- key-pair authentication -----------------------------------------------------

    async def _send_challenge(self, timeout: float) -> None:
        self._challenge = new_challenge()
        frames = self._state.frames
        if frames is not None:
            from ..negotiation import server_offer

            text = self._challenge.payload.challenge
            fields, self._seal_key = server_offer(frames, text)
            payload = ChallengePayload(challenge=text, **fields)
            self._challenge = ChallengeMessage(id=self._challenge.id, payload=payload)
        self._auth_deadline = asyncio.get_running_loop().time() + timeout
        await self._wire.send(codec.encode(self._challenge))

    def _auth_wait(self) -> float | None:
        if self._auth_deadline is None:
            return None
        # Never 0: aiohttp reads a falsy timeout as "no timeout".
        return max(self._auth_deadline - asyncio.get_running_loop().time(), 0.001)

    async def _authenticate(self, auth: AuthMessage) -> None:
        key_auth = self._state.key_auth
        assert self._challenge is not None and key_auth is not None
        self._auth_deadline = None
        verdict = judge(self._challenge, auth, key_auth.allowed)
        if verdict.pubkey is not None:
            if not await self._agree_frames(auth, verdict.pubkey):
                return
            self._pubkey = verdict.pubkey
            self._state.stats.auth_ok += 1
            logger.info("connection from %s authenticated as %s", self._peer, verdict.pubkey)
            await self._wire.send(
                codec.encode(AuthOkMessage(id=auth.id, payload=AuthOkPayload(verdict.pubkey)))
            )
            return
        self._state.stats.auth_failed += 1
        logger.info("refused key-pair authentication from %s: %s", self._peer, verdict.reason)
        await self._wire.send_error(auth.id, "auth_failed", verdict.reason)
        await self._wire.close(verdict.close_code, _CLOSE_REASONS[verdict.close_code])

    async def _agree_frames(self, auth: AuthMessage, pubkey: str) -> bool:
        """Settle signed or sealed frames for an authenticated client; on refusal,
        say why and close with 4406."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        from ..negotiation import accept

        assert self._challenge is not None
        client_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(pubkey))
        text = self._challenge.payload.challenge
        outcome = accept(self._state.frames, text, auth.payload, client_key, self._seal_key)
        self._seal_key = None
        if isinstance(outcome, str):
            self._state.stats.frames_refused += 1
            logger.info("refused frames of %s: %s", self._peer, outcome)
            await self._wire.send_error(auth.id, "frames_refused", outcome)
            await self._wire.close(CLOSE_FRAMES_REFUSED, b"frames refused")
            return False
        if outcome is not None:
            self._state.stats.frames_signed += 1
            # From the auth_ok on, every frame each way is signed (or sealed).
            self._guard = self._wire.guard = outcome
            self._answers.sized = outcome.wrapped_size
        return True

    async def _refuse_frame(self, exc: FrameRefused) -> None:
        self._state.stats.frames_refused += 1
        logger.info("refused a frame from %s (%s): %s", self._peer, exc.kind, exc.reason)
        await self._wire.send_error(
            "",
            "bad_frame",
            f"refused a frame ({exc.kind}): {exc.reason}. Closing ({CLOSE_BAD_FRAME}); "
            "send each frame signed, in order, on its own connection",
        )
        await self._wire.close(CLOSE_BAD_FRAME, b"frame refused")

    async def _auth_timed_out(self) -> None:
        key_auth = self._state.key_auth
        assert key_auth is not None
        self._auth_deadline = None
        self._state.stats.auth_failed += 1
        logger.info(
            "refused key-pair authentication from %s: no auth within %gs",
            self._peer,
            key_auth.timeout,
        )
        await self._wire.send_error(
            "",
            "unauthenticated",
            f"no signed 'auth' message within {key_auth.timeout:g}s of the challenge",
        )
        await self._wire.close(CLOSE_AUTH_FAILED, b"authentication timed out")

    # --- rate limiting ---------------------------------------------------------------

    async def _admit(self, message_id: str) -> bool:
        """Take a token for one inbound frame; on refusal, say so (or close) and return False."""
        limiter = self._state.rate_limiter
        if limiter is None:
            return True
        wait = limiter.acquire(self._key)
        if wait <= 0.0:
            self._limited_in_row = 0
            return True
        stats = self._state.stats
        stats.rate_limited += 1
        self._limited_in_row += 1
        # Rounded up to the millisecond, so retrying after it always finds a token.
        retry_after = math.ceil(wait * 1000) / 1000
        limit = f"{limiter.rate:g} messages per second, burst {limiter.burst}"
        if self._limited_in_row <= self._state.abuse_threshold:
            await self._wire.send_error(
                message_id,
                "rate_limited",
                f"over the rate limit ({limit}); not processed, send it again after "
                f"{retry_after:g}s",
                retry_after,
            )
            return False
        stats.abuse_closes += 1
        logger.warning(
            "closing %s: %d messages in a row over the rate limit",
            self._peer,
            self._limited_in_row,
        )
        await self._wire.send_error(
            "",
            "rate_limited",
            f"more than {self._state.abuse_threshold} messages in a row over the rate "
            f"limit ({limit}); closing. Reconnect after {retry_after:g}s and slow down",
            retry_after,
        )
        await self._wire.close(CLOSE_RATE_LIMITED, f"retry_after={retry_after}".encode())
        return False


def _reason(exc: ProtocolError) -> str:
    # The client has its own frame; the reply says what was wrong, not what was sent.
    text = str(exc)
    return text.removesuffix(f"; frame: {exc.frame!r}") if exc.frame else text
