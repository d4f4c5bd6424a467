"""Which failures are fatal and which are retried: the one table (docs/protocol.md).

| failure                                  | action                                  |
| ---------------------------------------- | --------------------------------------- |
| HTTP 401 / 403 at the upgrade            | fatal: stop, report                     |
| other HTTP 4xx at the upgrade (not 408)  | fatal: the URL or request is wrong      |
| HTTP 429 at the upgrade                  | retry after ``Retry-After``, or backoff |
| HTTP 5xx / 408 at the upgrade            | backoff, at least ``Retry-After``       |
| network error, timeout, TLS reset        | retry with backoff                      |
| close 1000 not asked for by the client   | retry with backoff                      |
| close 1001 1006 1009 1011 1012 1013      | retry with backoff                      |
| close 4401 / 4403                        | fatal: stop, report                     |
| close 4406 (signed frames not agreed)    | fatal: stop, report                     |
| close 4409 (a signed frame refused)      | retry with backoff                      |
| close 4429                               | retry after ``retry_after``, or backoff |
| any other close code                     | retry with backoff                      |
"""

from __future__ import annotations

import math

from ..errors import AuthenticationError, NexusConnectionError

__all__ = [
    "FATAL_CLOSE_CODES",
    "close_error",
    "close_retry_after",
    "header_retry_after",
    "http_error",
]

FATAL_CLOSE_CODES = frozenset({4401, 4403, 4406})

_CLOSE_MEANING = {
    1000: "the server closed the connection normally",
    1001: "the server is going away",
    1006: "the connection was lost without a close frame",
    1009: "a message was too big for the receiver",
    1011: "the server hit an internal error",
    1012: "the server is restarting",
    1013: "the server asked to try again later",
    4401: "authentication failed",
    4403: "forbidden",
    4406: "signed or sealed frames refused",
    4409: "a signed frame was refused",
    4429: "rate limited",
}


def close_error(
    code: int | None, reason: str = "", *, retry_after: float | None = None
) -> NexusConnectionError:
    """Describe a closed connection as an error, retryable or fatal per the table.

    Args:
        code: the close code, or ``None`` when the socket ended without one.
        reason: the close reason the peer gave, if any.
        retry_after: seconds the server asked us to wait (4429).
    """
    meaning = _CLOSE_MEANING.get(code or 1006, "the server closed the connection")
    text = f"connection closed (code {code}: {meaning})" if code else f"connection lost ({meaning})"
    if reason:
        text += f": {reason}"
    if code == 4406:
        return AuthenticationError(
            f"{text}. The server and this client do not agree on signed or sealed frames "
            "(server_key, encrypt); check both configurations. Not retrying.",
            close_code=code,
        )
    if code in FATAL_CLOSE_CODES:
        return AuthenticationError(
            f"{text}. The server rejected this client's credentials; check the API key "
            "and signing key. Not retrying.",
            close_code=code,
        )
    return NexusConnectionError(text, retryable=True, close_code=code, retry_after=retry_after)


def http_error(status: int, retry_after: float | None = None) -> NexusConnectionError:
    """Describe an upgrade refused with an HTTP status, retryable or fatal per the table."""
    if status == 401:
        return AuthenticationError(
            "the server refused the connection with HTTP 401: the API key is missing or "
            "wrong. Pass api_key=... or set NEXUS_API_KEY. Not retrying.",
            status=status,
        )
    if status == 403:
        return AuthenticationError(
            "the server refused the connection with HTTP 403: this API key is not "
            "allowed here. Not retrying.",
            status=status,
        )
    if status == 429:
        return NexusConnectionError(
            "the server refused the connection with HTTP 429 (rate limited)",
            status=status,
            retry_after=retry_after,
        )
    if status >= 500 or status == 408:
        # A Retry-After (RFC 9110: how long a 503 expects to be down) makes the wait
        # longer, never shorter, as a proxy's 503 does.
        return NexusConnectionError(
            f"the server failed the upgrade with HTTP {status}",
            status=status,
            retry_after=retry_after,
        )
    return NexusConnectionError(
        f"the server refused the WebSocket upgrade with HTTP {status}: check the URL "
        "(scheme, host, port and path). Not retrying.",
        retryable=False,
        status=status,
    )


def close_retry_after(reason: str) -> float | None:
    """The wait a close reason asks for: ``"retry_after=2.5"`` or ``"2.5"`` (4429).

    Not a wait: a negative number, and what ``float()`` reads as infinity or NaN
    (``"inf"``, ``"1e999"``): waited out, it would park the client for good.
    """
    text = reason.strip().removeprefix("retry_after").lstrip(":= ")
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 and math.isfinite(value) else None


def header_retry_after(value: str | None) -> float | None:
    """An HTTP ``Retry-After`` header in seconds (a refused upgrade, 429 or 503);
    ``None`` for an HTTP date, or a value that is not a finite number (see
    :func:`close_retry_after`)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None
