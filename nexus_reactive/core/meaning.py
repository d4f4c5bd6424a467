"""What the server's messages mean for the connection: pure decisions, no I/O.

The asyncio layer reads a frame and asks here what it means: whether an ``error``
reply is a rate limit (the ask goes again later) or an answer, what a ``challenge``
means for a client with or without a signing key, and how the handshake's error
codes map to fatal or retryable failures. The close-code and HTTP-status table is
:mod:`.policy`.
"""

from __future__ import annotations

from ..errors import AuthenticationError, NexusConnectionError, ServerError
from ..messages import ErrorMessage

__all__ = [
    "AUTH_REJECTED",
    "FRAMES_REFUSED",
    "RATE_LIMITED",
    "challenge_error",
    "connection_retry_after",
    "handshake_error",
    "rate_limit_wait",
    "server_error",
]

#: The error code of a request the server refused for now; the same ask goes again.
RATE_LIMITED = "rate_limited"
#: Handshake error codes that reject our key: fatal.
AUTH_REJECTED = frozenset({"auth_failed", "unauthenticated"})
#: The handshake's error code when the two sides cannot agree on signed or sealed frames.
FRAMES_REFUSED = "frames_refused"


def rate_limit_wait(code: str, retry_after: float | None, default: float) -> float | None:
    """How long to hold sending after an ``error`` reply, or ``None`` if it is not a
    rate limit (then it is the ask's answer).

    Args:
        code: the reply's error code.
        retry_after: what the server asked for, if anything.
        default: the wait when the server did not say (``reconnect_interval``).
    """
    if code != RATE_LIMITED:
        return None
    return default if retry_after is None else max(0.0, retry_after)


def connection_retry_after(message_id: str, retry_after: float | None) -> float | None:
    """The wait a connection-wide ``error`` (id ``""``) asks for before reconnecting
    (a server about to close with 4429 says how long to stay away); ``None`` otherwise."""
    return retry_after if message_id == "" else None


def challenge_error(has_signing_key: bool, authenticated: bool) -> AuthenticationError | None:
    """What a ``challenge`` frame means outside the handshake.

    Returns:
        ``None`` to ignore it (a second challenge on a connection we authenticated
        already is odd but harmless), else the fatal error for a client that has no
        key to answer it with.
    """
    if has_signing_key and authenticated:
        return None
    return AuthenticationError(
        "the server requires key-pair authentication (it sent a challenge), and "
        "this client has no signing key configured: pass signing_key=... "
        "(see `nexus-reactive keygen`). Not retrying."
    )


def handshake_error(code: str, text: str, retry_after: float | None) -> NexusConnectionError:
    """An ``error`` answered to the handshake: fatal when it rejects the key, else a
    failed attempt that the reconnection policy retries."""
    if code == FRAMES_REFUSED:
        return AuthenticationError(
            f"the server refused the frames this client asked for ({code}: {text}). Not retrying."
        )
    if code in AUTH_REJECTED:
        return AuthenticationError(
            f"the server rejected key-pair authentication ({code}: {text}). Check that "
            "its allowed keys include this client's public key. Not retrying."
        )
    return NexusConnectionError(
        f"the server answered the handshake with {code!r}: {text}",
        retry_after=retry_after,
        cause="handshake",
    )


def server_error(message: ErrorMessage) -> ServerError:
    """An ``error`` reply as the exception an ask fails with (or ``errors`` reports)."""
    p = message.payload
    return ServerError(p.code, p.message, message_id=message.id, retry_after=p.retry_after)
