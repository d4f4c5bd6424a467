"""The key-pair authentication handshake (docs/protocol.md), run before a connection
counts as open: wait for ``challenge``, answer with a signed ``auth``, wait for
``auth_ok``. Queued messages are held until it succeeds.

With a pinned server key it also agrees on signed (or sealed) frames
(:mod:`.negotiation`): then ``auth_ok`` must come signed, and the connection's
:class:`~.framing.FrameGuard` is returned."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import codec
from .core.meaning import handshake_error
from .errors import AuthenticationError, NexusConnectionError, NexusError, ProtocolError
from .framing import FrameGuard, FrameRefused
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
    server_key: Ed25519PublicKey | None = None,
    encrypt: bool = False,
) -> FrameGuard | None:
    """Answer the server's challenge on a fresh connection.

    Args:
        transport: the connection, just upgraded.
        key: the Ed25519 private key to sign with.
        timeout: bound on each step (the challenge, then ``auth_ok``).
        deliver: receives the handshake's messages (for the ``messages`` stream).
        report: receives malformed frames seen meanwhile.
        server_key: the pinned server public key: ask for signed frames.
        encrypt: ask for sealed (encrypted) frames; needs ``server_key``.

    Returns:
        The connection's guard when signed or sealed frames were agreed, else ``None``.

    Raises:
        AuthenticationError: the server rejected the signature, or sent no challenge
            in time (it does not use key-pair authentication). Fatal.
        NexusConnectionError: the connection ended or ``auth_ok`` did not come in
            time (retryable).
    """
    try:
        async with asyncio.timeout(timeout):
            challenge = await _next(
                transport, ChallengeMessage, deliver, report, pinned=server_key is not None
            )
    except TimeoutError:
        raise AuthenticationError(
            f"no challenge from the server within auth_timeout ({timeout:g}s): it does not "
            "appear to use key-pair authentication. Remove signing_key, or check the "
            "server's configuration. Not retrying."
        ) from None
    pubkey = public_key_hex(key)
    text = challenge.payload.challenge
    if "\x00" in text:
        # The key signs the challenge as it is and every signed frame; a frame's signed
        # bytes hold NUL (after its label), a challenge's never do: one that does could
        # be a frame's bytes, chosen by whoever changed it, to have the key sign them.
        raise NexusConnectionError(
            "the server's challenge holds a NUL character: no server sends one, and "
            "signing it could forge a signed frame; something on the way changed it. "
            "Not signed; reconnecting",
            cause="handshake",
        )
    offer = None
    if server_key is not None:
        from .negotiation import offer as make_offer

        offer = make_offer(challenge.payload, key, server_key, encrypt)
    auth = AuthMessage(
        id=challenge.id,
        payload=AuthPayload(
            pubkey=pubkey,
            signature=sign_challenge(key, text),
            challenge=text,
            **(offer.fields() if offer is not None else {}),
        ),
    )
    await transport.send(codec.encode(auth))
    guard = None if offer is None else offer.guard
    try:
        async with asyncio.timeout(timeout):
            reply = await _next(
                transport, AuthOkMessage, deliver, report, challenge.id, guard, guard is not None
            )
    except TimeoutError:
        raise NexusConnectionError(
            f"the server did not confirm authentication within auth_timeout ({timeout:g}s)",
            cause="handshake",
        ) from None
    if reply.payload.pubkey != pubkey:
        raise AuthenticationError(
            "the server confirmed a different public key than ours; not trusting it"
        )
    return guard


M = TypeVar("M", ChallengeMessage, AuthOkMessage)


async def _next(
    transport: Transport,
    kind: type[M],
    deliver: Callable[[Message], None],
    report: Callable[[NexusError], None],
    auth_id: str | None = None,
    guard: FrameGuard | None = None,
    pinned: bool = False,
) -> M:
    """The next message of type ``kind``; what comes before it is delivered.

    ``pinned``: signed frames are asked for (or will be). Nothing is authenticated
    before the server's signed ``auth_ok``, so then only the ``challenge`` and signed
    frames are delivered; an unsigned ``error`` ends the handshake (as its reason,
    never delivered), and any other unsigned message is dropped and reported.
    """
    while True:
        frame = await transport.receive_frame()
        signed = False
        if guard is not None:
            try:
                frame = guard.unwrap(frame)
                signed = True
            except FrameRefused as exc:
                if exc.kind != "unsigned":
                    from .guarded import refused_error

                    raise refused_error(exc) from None
        try:
            message = codec.decode(frame)
        except ProtocolError as exc:
            report(exc)
            continue
        if guard is not None and not signed and not isinstance(message, ErrorMessage):
            # Only the server's refusal may come unsigned (it may hold no key to sign
            # with): anything else unsigned is a downgrade, by the server or on the way.
            raise AuthenticationError(
                f"the server answered with an unsigned {message.type!r} after signed frames "
                "were asked for: it does not support them, or something on the way removed "
                "them. Remove server_key, or check what is between. Not retrying."
            )
        trusted = signed or not pinned or isinstance(message, ChallengeMessage)
        if isinstance(message, ErrorMessage) and message.id in ("", auth_id):
            if trusted:
                deliver(message)
            payload = message.payload
            raise handshake_error(payload.code, payload.message, payload.retry_after)
        if not trusted:
            # Unauthenticated: whatever sits on the path may have sent it.
            report(
                ProtocolError(
                    f"dropped an unsigned {message.type[:40]!r} message received during the "
                    "handshake: signed frames were asked for (server_key), so only the "
                    "server's signed frames are delivered; something on the way sent it"
                )
            )
            continue
        deliver(message)
        if isinstance(message, kind):
            return message
