"""A ``ws://`` URL of a server that requires TLS: how the failed upgrade shows it, and
the error that says so (the other direction, ``wss://`` to a plain server, is OpenSSL's
"wrong version number": :func:`nexus_reactive.failures.failure`).

A TLS server given a plain HTTP request either answers in TLS (an alert record, which
aiohttp's parser quotes as a bad status line) or hangs up without a byte (OpenSSL and
Python's ``ssl`` do). The first is recognised from the bytes; the second only by asking
the port for a TLS handshake (:func:`requires_tls`): nothing is sent but a hello, and
no certificate is trusted or checked, since only "does it speak TLS" is asked.

Either way the answer is definitive, the same on every attempt: the error is not retried
(as ``wss://`` to a plain server is not).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl

from yarl import URL

from .config_checks import redact_url
from .errors import NexusConnectionError

__all__ = ["requires_tls"]

# aiohttp's C parser quotes the bytes it could not read as a status line: a TLS record
# starts with its type (21 an alert, 22 a handshake) and the major version 3.
_TLS_RECORD = re.compile(r"b'\\x1[56]\\x03\\x0[0-4]")


async def requires_tls(exc: Exception, url: str, deadline: float) -> NexusConnectionError | None:
    """The error for a ``ws://`` upgrade that failed because the server speaks TLS, or
    ``None``. ``exc`` is the attempt's failure; the probe, when one is needed, ends by
    ``deadline`` (the attempt's, loop time). Not for an attempt through a proxy: the
    probe would go around it."""
    import aiohttp

    if url[:5].lower() != "ws://":
        return None
    if isinstance(exc, aiohttp.ClientResponseError) and not isinstance(
        exc, aiohttp.WSServerHandshakeError
    ):
        if _TLS_RECORD.search(str(exc.message)):
            return _error(url, "the server answered the plain upgrade request in TLS")
        return None
    # Only a clean hang-up after the request was read: a reset (a port that accepts and
    # drops at once, a proxy refusing) keeps its one socket per attempt, unprobed.
    if isinstance(exc, aiohttp.ServerDisconnectedError) and await _speaks_tls(url, deadline):
        return _error(
            url,
            "the server hung up on the plain upgrade request, and completes a TLS "
            "handshake on the same port",
        )
    return None


def _error(url: str, what: str) -> NexusConnectionError:
    secure = "wss://" + url.partition("://")[2]
    return NexusConnectionError(
        redact_url(
            f"cannot connect to {url}: {what}: the server may require TLS: try wss:// "
            f"({secure}). Not retrying."
        ),
        retryable=False,
    )


async def _speaks_tls(url: str, deadline: float) -> bool:
    """Whether ``url``'s host and port complete a TLS handshake by ``deadline``."""
    try:
        parsed = URL(url)
    except ValueError:
        return False
    if parsed.host is None or parsed.port is None:
        return False
    # A handshake only: no certificate is trusted or checked, nothing is sent after it.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    loop = asyncio.get_running_loop()
    if deadline <= loop.time():
        return False
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout_at(deadline):
            _, writer = await asyncio.open_connection(
                parsed.host, parsed.port, ssl=context, server_hostname=parsed.host
            )
    except (OSError, TimeoutError, ssl.SSLError, ValueError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
    return True
