"""The key-pair authentication handshake (docs/protocol.md), run before a connection
counts as open: wait for ``challenge``, answer with a signed ``auth``, wait for
``auth_ok``. Queued messages are held until it succeeds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import codec
from .core.meaning import handshake_error
from .errors import AuthenticationError, NexusConnectionError, NexusError, ProtocolError
from .messages import (
    AuthMessage,
    AuthOkMessage,
    AuthPayload,
    ChallengeMessage,
    ErrorMessage,
    Message,
)
from .signing import public_key_hex, sign_challenge
from .transport import Transport

__all__ = ["authenticate"]


async def authenticate(
    transport: Transport,
    key: Ed25519PrivateKey,
    timeout: float,
    deliver: Callable[[Message], None],
    report: Callable[[NexusError], None],
) -> None:
    """Answer the server's challenge on a fresh connection.

    Args:
        transport: the connection, just upgraded.
        key: the Ed25519 private key to sign with.
        timeout: bound on each step (the challenge, then ``auth_ok``).
        deliver: receives the handshake's messages (for the ``messages`` stream).
        report: receives malformed frames seen meanwhile.

    Raises:
        AuthenticationError: the server rejected the signature, or sent no challenge
            in time (it does not use key-pair authentication). Fatal.
        NexusConnectionError: the connection ended or ``auth_ok`` did not come in
            time (retryable).
    """
    try:
        async with asyncio.timeout(timeout):
            challenge = await _next(transport, ChallengeMessage, deliver, report)
    except TimeoutError:
        raise AuthenticationError(
            f"no challenge from the server within auth_timeout ({timeout:g}s): it does not "
            "appear to use key-pair authentication. Remove signing_key, or check the "
            "server's configuration. Not retrying."
        ) from None
    pubkey = public_key_hex(key)
    text = challenge.payload.challenge
    auth = AuthMessage(
        id=challenge.id,
        payload=AuthPayload(pubkey=pubkey, signature=sign_challenge(key, text), challenge=text),
    )
    await transport.send(codec.encode(auth))
    try:
        async with asyncio.timeout(timeout):
            reply = await _next(transport, AuthOkMessage, deliver, report, challenge.id)
    except TimeoutError:
        raise NexusConnectionError(
            f"the server did not confirm authentication within auth_timeout ({timeout:g}s)",
            cause="handshake",
        ) from None
    if reply.payload.pubkey != pubkey:
        raise AuthenticationError(
            "the server confirmed a different public key than ours; not trusting it"
        )


M = TypeVar("M", ChallengeMessage, AuthOkMessage)


async def _next(
    transport: Transport,
    kind: type[M],
    deliver: Callable[[Message], None],
    report: Callable[[NexusError], None],
    auth_id: str | None = None,
) -> M:
    while True:
        frame = await transport.receive_frame()
        try:
            message = codec.decode(frame)
        except ProtocolError as exc:
            report(exc)
            continue
        deliver(message)
        if isinstance(message, kind):
            return message
        if isinstance(message, ErrorMessage) and message.id in ("", auth_id):
            payload = message.payload
            raise handshake_error(payload.code, payload.message, payload.retry_after)
