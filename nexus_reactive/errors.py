"""Every error nexus-reactive raises or reports.

The tree::

    NexusError
    ├── ConfigError            the configuration cannot work (no API key, bad URL, ...)
    │   └── UnknownOption          a keyword no option has (also a ``TypeError``)
    ├── UsageError             the API was called where it cannot run (no event loop, ...)
    │   └── InvalidArgument        an argument that cannot be right (``ask("")``); also
    │                              a ``ProtocolError``, what it was raised as before
    ├── NexusConnectionError   a connection could not be opened, or was lost
    │   ├── AuthenticationError    the server refused our credentials (fatal)
    │   ├── RedirectRefused        the server redirected the upgrade elsewhere (fatal)
    │   └── RetriesExhausted       every reconnection attempt failed
    ├── ProtocolError          a frame that is not a valid message (never fatal)
    ├── ServerError            the server answered a request with an ``error`` message
    ├── RequestTimeout         no answer in time (also a ``TimeoutError``)
    ├── OutboxFull             too many messages waiting for a connection
    ├── ConnectionClosed       the service was disconnected while a request waited
    └── PersistenceError       the journal (persist=) cannot be used: corrupt, locked, ...

Messages say what happened and what to do about it. None of them ever contains an
API key or private key material: the configuration redacts secrets before any
message is built.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "ConnectionClosed",
    "InvalidArgument",
    "NexusConnectionError",
    "NexusError",
    "OutboxFull",
    "PersistenceError",
    "ProtocolError",
    "RedirectRefused",
    "RequestTimeout",
    "RetriesExhausted",
    "ServerError",
    "UnknownOption",
    "UsageError",
]

#: How much of an offending frame a :class:`ProtocolError` keeps.
FRAME_EXCERPT = 200


class NexusError(Exception):
    """The root of every nexus-reactive error."""


class ConfigError(NexusError, ValueError):
    """The configuration cannot work; raised before any network traffic."""


class UnknownOption(ConfigError, TypeError):
    """A keyword that names no option, e.g. ``WebSocketConfig(reconect_interval=1)``.

    The message names the closest valid option. It is also a ``TypeError``, the
    error Python raises for an unexpected keyword argument, so code written for
    that keeps working.

    Attributes:
        name: the keyword as given.
        suggestion: the closest valid option, or ``None`` when none is close.
    """

    def __init__(self, message: str, *, name: str = "", suggestion: str | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.suggestion = suggestion


class UsageError(NexusError, RuntimeError):
    """The API was used where it cannot work, e.g. without a running event loop."""


class NexusConnectionError(NexusError):
    """A connection could not be opened, or an open one was lost.

    Attributes:
        retryable: whether the reconnection policy would try again.
        status: the HTTP status of a refused upgrade, if that is what happened.
        close_code: the WebSocket close code, if the connection was closed.
        retry_after: seconds the server asked us to wait before trying again.
        cause: what happened, in one word of the vocabulary that
            ``service.metrics`` counts reconnects by (``"connect_timeout"``,
            ``"heartbeat_timeout"``...), where the status and close code do not say it;
            ``None`` otherwise (see :func:`nexus_reactive.core.metrics.cause_of`).
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        status: int | None = None,
        close_code: int | None = None,
        retry_after: float | None = None,
        cause: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.close_code = close_code
        self.retry_after = retry_after
        self.cause = cause


class AuthenticationError(NexusConnectionError):
    """The server refused our credentials. Fatal: the client does not retry."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        close_code: int | None = None,
    ) -> None:
        super().__init__(message, retryable=False, status=status, close_code=close_code)


class RedirectRefused(NexusConnectionError):
    """The server answered the upgrade with a redirect (HTTP 3xx). Fatal.

    Redirects are never followed: the API key goes only to the configured origin,
    whatever the server answers, so no request is made to the ``Location``.

    Attributes:
        location: where the server wanted the client to go (its ``Location`` header).
    """

    def __init__(self, status: int, location: str, origin: str) -> None:
        super().__init__(
            f"the server answered the WebSocket upgrade with HTTP {status}, a redirect to "
            f"{location or '(no Location header)'!r}. Redirects are not followed, so the "
            f"API key is only ever sent to {origin}: if the server really moved, set url= "
            "to its new address. Not retrying.",
            retryable=False,
            status=status,
        )
        self.location = location


class RetriesExhausted(NexusConnectionError):
    """Every attempt allowed by ``max_reconnect_attempts`` failed.

    Attributes:
        attempts: how many connection attempts were made in all.
        last_error: the failure of the last attempt.
    """

    def __init__(self, attempts: int, last_error: NexusConnectionError) -> None:
        if last_error.close_code == 4429 or last_error.status == 429:
            advice = (
                "The server is rate limiting this client: set rate= (and burst=) under "
                "its limit, so that messages wait instead of being refused, or raise "
                "max_reconnect_attempts (None retries forever)."
            )
        else:
            advice = (
                "Check that the server is running and reachable, or raise "
                "max_reconnect_attempts (None retries forever)."
            )
        super().__init__(
            f"gave up after {attempts} connection attempt{'s' if attempts != 1 else ''}; "
            f"last error: {last_error}. {advice}",
            retryable=False,
            status=last_error.status,
            close_code=last_error.close_code,
        )
        self.attempts = attempts
        self.last_error = last_error


class ProtocolError(NexusError):
    """A frame that is not a valid message of the protocol.

    It is reported (on the ``errors`` stream and in the log) and skipped: it never
    settles a pending request and never breaks the connection.

    Attributes:
        frame: the start of the offending frame: at most ``FRAME_EXCERPT``
            characters, then ``"... (N characters)"`` when it was cut.
        message_id: the ``id`` the frame claimed, when one could be read.
    """

    def __init__(
        self, message: str, frame: bytes | str = b"", *, message_id: str | None = None
    ) -> None:
        self.frame = _excerpt(frame)
        self.message_id = message_id
        super().__init__(f"{message}; frame: {self.frame!r}" if frame else message)


class InvalidArgument(UsageError, ProtocolError):
    """A call with an argument that cannot be right, e.g. ``ask("")``: the caller's
    mistake, refused before anything is queued or sent. The message names the keyword
    and what to pass.

    It is a :class:`UsageError`; it is also a :class:`ProtocolError`, which is what
    such a call raised before, so ``except ProtocolError`` still catches it.
    """


class ServerError(NexusError):
    """The server answered a request with an ``error`` message.

    Attributes:
        code: the protocol's error code (``bad_request``, ``rate_limited``, ...).
        message_id: the id of the request that failed (``""``: the whole connection).
        retry_after: seconds to wait before trying again, when the server says.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        message_id: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"server error {code!r}: {message}")
        self.code = code
        self.message_id = message_id
        self.retry_after = retry_after


class RequestTimeout(NexusError, TimeoutError):
    """No answer arrived within the request's timeout (across reconnects).

    Attributes:
        message_id: the id of the ask that timed out.
    """

    def __init__(self, message: str, *, message_id: str | None = None) -> None:
        super().__init__(message)
        self.message_id = message_id


class OutboxFull(NexusError):
    """The outbox already holds ``outbox_limit`` messages; nothing was dropped."""


class ConnectionClosed(NexusError):
    """The service was disconnected or closed while a request was waiting.

    Attributes:
        message_id: the id of the ask that was waiting, when it is about one.
    """

    def __init__(self, message: str, *, message_id: str | None = None) -> None:
        super().__init__(message)
        self.message_id = message_id


class PersistenceError(NexusError):
    """The journal's database (``persist=``) cannot be used: corrupt, locked by
    another process, or unwritable. The message names the file and what to do."""


def _excerpt(frame: bytes | str) -> str:
    text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
    if len(text) <= FRAME_EXCERPT:
        return text
    return f"{text[:FRAME_EXCERPT]}... ({len(text)} characters)"


def raised_where(exc: BaseException) -> str:
    """``TypeName (at file.py:line, in function)``: what a user's callable raised and
    where, without its text, which might quote a secret (a key provider's)."""
    tb = exc.__traceback__
    if tb is None:
        return type(exc).__name__
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    name = code.co_filename.replace("\\", "/").rsplit("/", 1)[-1]
    return f"{type(exc).__name__} (at {name}:{tb.tb_lineno}, in {code.co_name})"
