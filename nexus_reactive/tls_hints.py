"""A URL whose scheme is not the server's, where the failure alone does not say so for
sure: a ``ws://`` URL of a server that requires TLS, and a ``wss://`` URL of a plain
server where OpenSSL's reason is not definitive. (Where it is, "wrong version number",
:func:`nexus_reactive.failures.failure` says so itself.)

A TLS server given a plain HTTP request answers in TLS (an alert record, which
aiohttp's parser quotes as a bad status line), hangs up without a byte (OpenSSL and
Python's ``ssl`` do), or answers in plain HTTP with 400 (nginx: "The plain HTTP request
was sent to HTTPS port"; Go: "Client sent an HTTP request to an HTTPS server"). The
first is recognised from the bytes; the others only by asking the port for a TLS
handshake (:func:`scheme_hint`): nothing is sent but a hello, and no certificate is
trusted or checked, since only "does it speak TLS" is asked.

Either way the answer is definitive, the same on every attempt: the error is not retried
(as ``wss://`` to a plain server is not).

The other direction needs a probe only where OpenSSL's reason is not definitive: its
"record layer failure" (:data:`~nexus_reactive.failures.RECORD_LAYER_FAILURE`) may be a
plain server's answer or a TLS record damaged on the way. The probe sends the port a TLS
hello and reads the first bytes of the answer: a TLS record means the server does speak
TLS (the failure is retried, without the hint); anything else that it does not (fatal,
with it); no answer, that it cannot tell (retried, the hint hedged).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl

from yarl import URL

from .config_checks import redact_url
from .errors import NexusConnectionError
from .failures import RECORD_LAYER_FAILURE, not_tls, plain_answer

__all__ = ["scheme_hint"]

# aiohttp's C parser quotes the bytes it could not read as a status line: a TLS record
# starts with its type (21 an alert, 22 a handshake) and the major version 3.
_TLS_RECORD = re.compile(r"b'\\x1[56]\\x03\\x0[0-4]")
_BAD_REQUEST = 400


async def scheme_hint(exc: Exception, url: str, deadline: float) -> NexusConnectionError | None:
    """The error for an attempt that failed because the URL's scheme is not the server's
    (``ws://`` to a TLS server; ``wss://`` to a plain one where OpenSSL could not say
    so for sure), or ``None``: :func:`~nexus_reactive.failures.failure` tells. ``exc``
    is the attempt's failure; a probe, when one is needed, ends by ``deadline`` (the
    attempt's, loop time). Not for an attempt through a proxy: a probe would go around
    it."""
    import aiohttp

    if url[:6].lower() == "wss://":
        if not_tls(exc) != RECORD_LAYER_FAILURE:
            return None
        return _answered(url, await _first_bytes(url, deadline))
    if url[:5].lower() != "ws://":
        return None
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        # nginx and Go answer a plain request on a TLS port with a plain HTTP 400. A
        # 400 is fatal anyway (not retried), so the probe runs once.
        if exc.status == _BAD_REQUEST and await _speaks_tls(url, deadline):
            return _error(
                url,
                "the server refused the plain upgrade request (HTTP 400), and completes "
                "a TLS handshake on the same port",
            )
        return None
    if isinstance(exc, aiohttp.ClientResponseError):
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


def _answered(url: str, first: bytes | None) -> NexusConnectionError | None:
    """What the first bytes of a ``wss://`` server's answer to a TLS hello say."""
    if first is None:
        return None  # no answer: failure() says it may not be TLS, and retries
    if _is_tls_record(first):
        return NexusConnectionError(
            redact_url(
                f"cannot connect to {url}: the TLS handshake failed "
                f"({RECORD_LAYER_FAILURE}), though the server answers in TLS: a record "
                "was damaged or refused on the way (a proxy or the network?)"
            ),
            cause="connect_failed",
        )
    return plain_answer(url, f"{RECORD_LAYER_FAILURE}: the server's answer is not TLS")


def _is_tls_record(first: bytes) -> bool:
    return first[:1] in (b"\x15", b"\x16") and first[1:2] == b"\x03"


def _error(url: str, what: str) -> NexusConnectionError:
    secure = "wss://" + url.partition("://")[2]
    return NexusConnectionError(
        redact_url(
            f"cannot connect to {url}: {what}: the server may require TLS: try wss:// "
            f"({secure}). Not retrying."
        ),
        retryable=False,
    )


def _address(url: str) -> tuple[str, int] | None:
    try:
        parsed = URL(url)
    except ValueError:
        return None
    if parsed.host is None or parsed.port is None:
        return None
    return parsed.host, parsed.port


def _no_checks() -> ssl.SSLContext:
    """A client context that checks nothing: a probe only asks whether TLS is spoken,
    and sends nothing but a hello."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _first_bytes(url: str, deadline: float) -> bytes | None:
    """The first two bytes ``url``'s host and port answer a TLS hello with, by
    ``deadline``; ``None`` if none came (or no connection)."""
    address = _address(url)
    if address is None or deadline <= asyncio.get_running_loop().time():
        return None
    host, port = address
    outgoing = ssl.MemoryBIO()
    hello = _no_checks().wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=host)
    with contextlib.suppress(ssl.SSLWantReadError):
        hello.do_handshake()  # writes the hello to ``outgoing``; it waits for the answer
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout_at(deadline):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(outgoing.read())
            return await reader.readexactly(2)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
        return None
    finally:
        if writer is not None:
            await _close(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
        async with asyncio.timeout(1.0):
            await writer.wait_closed()


async def _speaks_tls(url: str, deadline: float) -> bool:
    """Whether ``url``'s host and port complete a TLS handshake by ``deadline``."""
    address = _address(url)
    if address is None or deadline <= asyncio.get_running_loop().time():
        return False
    host, port = address
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout_at(deadline):
            _, writer = await asyncio.open_connection(
                host, port, ssl=_no_checks(), server_hostname=host
            )
    except (OSError, TimeoutError, ssl.SSLError, ValueError):
        return False
    finally:
        if writer is not None:
            await _close(writer)
    return True
