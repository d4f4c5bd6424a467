"""What a failed attempt to open a WebSocket means, and why an open one ended: aiohttp's
and the OS's failures as the library's own errors (the policy table in
:mod:`nexus_reactive.core.policy`), every message redacted
(:func:`~nexus_reactive.config_checks.redact_url`). Used by
:mod:`nexus_reactive.aiohttp_transport`; :func:`unexpected` by the attempt loop, for a
failure of no known kind (its text may quote a URL with a token: it is redacted too).
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .config_checks import ProxyUrl, redact_url
from .core.policy import close_error, close_retry_after, header_retry_after, http_error
from .errors import NexusConnectionError, RedirectRefused
from .proxies import proxy_error

if TYPE_CHECKING:
    # Imported by the aiohttp transport only, which has loaded aiohttp already; the
    # functions import it themselves so this module stays light on its own.
    import aiohttp

__all__ = [
    "RECORD_LAYER_FAILURE",
    "Redirected",
    "ended",
    "failure",
    "not_tls",
    "plain_answer",
    "plain_url",
    "refuse_redirect",
    "subprotocol_refused",
    "unexpected",
]


def unexpected(
    what: str, exc: BaseException, log: logging.Logger, *, retryable: bool = True
) -> NexusConnectionError:
    """A failure of no known kind as a redacted error, logged redacted: a WARNING with
    the message, and the traceback (redacted too) at DEBUG. Never the raw exception,
    whose text may quote a URL with a token or a proxy's credentials."""
    text = redact_url(f"{what}: {type(exc).__name__}: {exc}")
    log.warning("%s", text)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s", redact_url("".join(traceback.format_exception(exc)).rstrip()))
    return NexusConnectionError(text, retryable=retryable, cause="internal")


class Redirected(Exception):
    """Raised from aiohttp's redirect hook: the redirect is refused, not followed."""

    def __init__(self, status: int, location: str) -> None:
        super().__init__(status, location)
        self.status = status
        self.location = location


async def refuse_redirect(
    _session: aiohttp.ClientSession,
    _context: object,
    params: aiohttp.TraceRequestRedirectParams,
) -> None:
    """The session's redirect hook (``open_session``): raise :class:`Redirected`.

    aiohttp calls it with the 3xx response in hand, before it makes any request to the
    Location: raising here means the credentials never go anywhere else. (ws_connect has
    no allow_redirects switch; the trace hook is public API since aiohttp 3.0.)
    """
    response = params.response
    raise Redirected(response.status, response.headers.get("Location", ""))


def failure(
    exc: Exception,
    url: str,
    proxy: ProxyUrl | None,
    connect_timeout: float,
    *,
    ssl: object = True,
) -> NexusConnectionError:
    """An attempt's failure, as the library's error (every message redacted).

    ``ssl`` is the attempt's (the config's ``ssl``): a rejected certificate's advice
    depends on which CA certificates were tried."""
    import aiohttp

    forwarded = url[:5].lower() == "ws://"  # through an HTTP proxy: no tunnel
    if proxy is not None and (refused := proxy_error(exc, proxy, forwarded)) is not None:
        return refused
    if isinstance(exc, Redirected):
        return RedirectRefused(exc.status, redact_url(exc.location), _origin(url))
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        retry_after = header_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        return http_error(exc.status, retry_after)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return _rejected(exc, url, ssl)
    if (reason := not_tls(exc)) is not None:
        if reason == RECORD_LAYER_FAILURE:
            # Not definitive (see _NOT_TLS): said, and retried. Unless a probe of the
            # port (tls_hints) told which it was, through a proxy say.
            return NexusConnectionError(
                redact_url(
                    f"cannot connect to {url}: the TLS handshake failed ({reason}): if "
                    "every attempt says so, the server may not use TLS: try ws:// "
                    f"({plain_url(url)})"
                ),
                cause="connect_failed",
            )
        return plain_answer(url, reason)
    if isinstance(exc, TimeoutError):
        return NexusConnectionError(
            f"no connection within connect_timeout ({connect_timeout:g}s)", cause="connect_timeout"
        )
    if isinstance(exc, aiohttp.ClientError | OSError):
        return NexusConnectionError(
            redact_url(f"cannot connect to {url}: {_describe(exc)}"), cause="connect_failed"
        )
    raise exc


def ended(
    kind: object,
    data: object,
    extra: object,
    exc: BaseException | None,
    code: int | None,
    compressed: bool,
) -> NexusConnectionError:
    """Why an open connection ended: its last message (``kind``, ``data``, ``extra``), the
    exception aiohttp kept, the close code, and whether frames were compressed."""
    import aiohttp

    if kind is aiohttp.WSMsgType.CLOSE and isinstance(data, int):
        reason = extra if isinstance(extra, str) else ""
        return close_error(data, reason, retry_after=close_retry_after(reason))
    if isinstance(exc, aiohttp.WebSocketError) and exc.code == 1009:
        return close_error(
            1009,
            "a received message exceeded max_message_size"
            + (" once decompressed" if compressed else ""),
        )
    if isinstance(exc, TimeoutError):
        return NexusConnectionError(
            "the server stopped answering pings (no pong within the heartbeat); "
            "the link is treated as dead",
            close_code=code,
            cause="heartbeat_timeout",
        )
    if exc is not None:
        what = "an invalid compressed frame" if "decompress" in str(exc).lower() else ""
        return NexusConnectionError(
            redact_url(f"connection lost{': ' + what if what else ''}: {exc}"),
            close_code=code,
            cause="connection_lost",
        )
    return close_error(code)


def subprotocol_refused(chosen: str | None, offered: Sequence[str]) -> NexusConnectionError | None:
    """Why the server's choice of subprotocol (RFC 6455 section 4.1) is unacceptable."""
    if chosen is None:
        if not offered:
            return None
        return NexusConnectionError(
            f"the server accepted none of the subprotocols offered ({', '.join(offered)}): "
            "it does not speak them. Check subprotocols= (or the server). Not retrying.",
            retryable=False,
        )
    if chosen in offered:
        return None
    return NexusConnectionError(
        f"the server chose the subprotocol {chosen!r}, which this client did not offer "
        f"(subprotocols={list(offered)!r}); a client must fail such a connection "
        "(RFC 6455, section 4.1). Not retrying.",
        retryable=False,
    )


def _origin(url: str) -> str:
    from yarl import URL

    try:
        return str(URL(url).origin())
    except ValueError:
        return url


def _rejected(
    exc: aiohttp.ClientConnectorCertificateError, url: str, ssl: object
) -> NexusConnectionError:
    """A certificate the client did not accept: why, and what would help, given which
    CA certificates were tried (``ssl``: the config's). Names a CA file's path, never
    anything read from it."""
    import ssl as _ssl

    custom = isinstance(ssl, _ssl.SSLContext)
    why = _cert_reason(exc)
    code = getattr(exc.certificate_error, "verify_code", None)
    if code in _OTHER_NAMES:
        # Trusted, but issued for other names: no CA would help; the URL's host would.
        advice = (
            f"does not name this URL's host ({why}). Use a host name the certificate "
            "names in the URL, or give the server a certificate for this one"
        )
    else:
        tried = CUSTOM_CONTEXT if custom else _cert_file(ssl)
        if tried is None:
            advice = (
                f"was rejected ({why}). If the server uses a private CA, pass "
                "ssl=<an ssl.SSLContext that trusts it>; check that the URL's host name "
                "matches the certificate"
            )
        elif code is not None and code not in _UNTRUSTED:
            # Expired, not yet valid, revoked...: the certificate itself, whatever the CA.
            advice = f"was rejected ({why}), checked against {tried}"
        else:
            advice = (
                f"was rejected ({why}): {tried} do not vouch for it. "
                + (_OTHER_CONTEXT if custom else _OTHER_CA_FILE)
                + ", or check that the server sends its whole chain (its certificate, "
                "then any intermediate CA's certificate)"
            )
    return NexusConnectionError(
        redact_url(
            f"cannot connect to {url}: the server's TLS certificate {advice}. Not retrying."
        ),
        retryable=False,
    )


#: What a rejected certificate's advice says of CA certificates the user gave: a context
#: (the command's words name its --cafile instead, :func:`~nexus_reactive.cli.cli_words`).
CUSTOM_CONTEXT = "the CA certificates of the ssl= context given"
_OTHER_CONTEXT = "Pass ssl=<an ssl.SSLContext that trusts the CA that signed it>"
_OTHER_CA_FILE = (
    "Point SSL_CERT_FILE at the certificate of the CA that signed it "
    "(or pass ssl=<an ssl.SSLContext that trusts it>)"
)
_CERT_FILE_ENV = "SSL_CERT_FILE"


def _cert_file(ssl: object) -> str | None:
    """OpenSSL's ``SSL_CERT_FILE``, in words, when the default context (``ssl=True``)
    read it instead of the system's CA file; else ``None``. (aiohttp makes that context
    once, on import: the variable is read then, as it is set before Python starts.)"""
    path = os.environ.get(_CERT_FILE_ENV)
    if ssl is True and path:
        return f"the CA certificates in {_CERT_FILE_ENV} ({path})"
    return None


def _cert_reason(exc: aiohttp.ClientConnectorCertificateError) -> str:
    error = exc.certificate_error
    reason = getattr(error, "verify_message", None) or str(error) or "verification failed"
    return str(reason).rstrip(".")  # OpenSSL's ends with one; ours follows in brackets


# OpenSSL's verify codes for a certificate valid but issued for other names
# (X509_V_ERR_HOSTNAME_MISMATCH, _EMAIL_MISMATCH, _IP_ADDRESS_MISMATCH).
_OTHER_NAMES = frozenset({62, 63, 64})
# Its codes for a certificate no trusted CA vouches for: the issuer's certificate is
# unknown (2, 20), self-signed (18, 19), or the signature cannot be checked (21).
_UNTRUSTED = frozenset({2, 18, 19, 20, 21})


# OpenSSL's reasons when what came back to the client's hello is not TLS at all (a plain
# HTTP server's answer): "wrong version number", and "packet length too long". Since
# OpenSSL 3.2 Python sees "record layer failure" instead: the generic reason the record
# layer adds on top of whatever it refused, that included (the specific one is deeper in
# OpenSSL's queue, out of Python's reach). It also covers a TLS record damaged on the way
# (a bad MAC, an overflow), which the next attempt may not meet: not definitive. (A reset
# or a hang-up mid-handshake is not among them: OpenSSL reports those as the socket's
# error, or an unexpected EOF.)
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"})
#: ``"record layer failure"``: what :func:`not_tls` returns for the generic reason.
RECORD_LAYER_FAILURE = "record layer failure"


def not_tls(exc: BaseException) -> str | None:
    """OpenSSL's words if ``exc`` says the server answered the TLS hello with no TLS
    (for :data:`RECORD_LAYER_FAILURE`, perhaps)."""
    import ssl

    # aiohttp's ClientConnectorSSLError is an SSLError itself, with OpenSSL's in os_error.
    for cause in (exc, getattr(exc, "os_error", None), exc.__cause__):
        reason = getattr(cause, "reason", None)
        if isinstance(cause, ssl.SSLError) and reason in _NOT_TLS:
            return str(reason).replace("_", " ").lower()
    return None


def plain_url(url: str) -> str:
    """``url`` with ``ws://`` for its ``wss://``."""
    return "ws://" + url.partition("://")[2]


def plain_answer(url: str, reason: str) -> NexusConnectionError:
    """A ``wss://`` server that answered the TLS hello without TLS: fatal, as it would
    answer the same on every attempt."""
    return NexusConnectionError(
        redact_url(
            f"cannot connect to {url}: the TLS handshake failed ({reason}): the server "
            f"may not use TLS: try ws:// ({plain_url(url)}). Not retrying."
        ),
        retryable=False,
    )


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text
