"""Configuration: one small, immutable value object with named defaults.

Intervals are in seconds, as asyncio counts them (the TypeScript client this
library mirrors counts milliseconds). A value that looks like milliseconds is
refused, or warned about, with the conversion spelled out (:data:`SECONDS_LIMITS`);
a keyword that names no option is an :class:`~nexus_reactive.errors.UnknownOption`
naming the closest one. The API key never appears in a ``repr``: it shows where
the key comes from (``<set>``, ``<callable>``, ``<from NEXUS_API_KEY>``).
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import ssl as _ssl
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .config_checks import (
    UrlSource,
    check_frames,
    check_lazy,
    check_option_names,
    check_proxy,
    check_subprotocols,
    check_url,
    milliseconds_message,
    redact_url,
)
from .config_numbers import check_numbers
from .errors import ConfigError, NexusConnectionError
from .journal_keys import PersistKey, check_persist_key
from .telemetry import Telemetry, check_telemetry

if TYPE_CHECKING:
    # Only an annotation here: cryptography loads when a key is used (signing.py).
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_MAX_MESSAGES",
    "SECONDS_LIMITS",
    "ApiKey",
    "UrlSource",
    "WebSocketConfig",
]

#: The environment variable read when no ``api_key`` is given.
API_KEY_ENV = "NEXUS_API_KEY"

#: An API key, or a callable (sync or async) that returns a fresh one per attempt.
ApiKey = str | Callable[[], str | Awaitable[str]]

_SECRET_FIELDS = frozenset({"api_key", "signing_key", "persist_key"})
# Shown redacted: query values, a proxy's credentials (config_checks.redact_url).
_URL_FIELDS = frozenset({"url", "proxy"})

#: How many received messages a store keeps by default (``max_messages``).
DEFAULT_MAX_MESSAGES = 1_000

# Store options that used to be config fields; accepted, with a warning, until the
# next release. They belong to the store: use_websocket(..., max_messages=...).
_DEPRECATED_STORE_OPTIONS = ("max_messages", "batch_interval")
# Keywords of use_websocket / WebSocketStore that are no connection setting at all.
_STORE_ONLY_OPTIONS = ("scheduler", "share", "team_id")
# Fields copied from another config by from_options: warned about once, when first set.
_INHERITED: ContextVar[frozenset[str]] = ContextVar("nexus_inherited", default=frozenset())

#: The options in seconds, and where a value stops looking like seconds: ``(warn
#: above, refuse above)``. The TypeScript design counts milliseconds, so
#: ``reconnect_interval=1000`` is most likely one second, not 16 minutes. Refused
#: (a :class:`~nexus_reactive.errors.ConfigError`) above the second number; above the
#: first, a ``UserWarning``: a value that is unusual but may be meant (a two-minute
#: backoff cap, a ten-minute ask). Both spell out the value in milliseconds' reading.
#:
#: - ``reconnect_interval`` over a minute is refused: the first retry's delay is never
#:   meant to be longer, and ``max_reconnect_interval`` bounds the later ones.
#: - ``request_timeout`` bounds an ask, which may legitimately take minutes (a long
#:   answer): warned over 10 minutes, refused over an hour (``None`` is no bound);
#:   ``lazy_grace`` likewise (an idle connection kept for minutes is plausible).
#: - every other interval: warned over a minute, refused over 10 minutes.
SECONDS_LIMITS: dict[str, tuple[float | None, float]] = {
    "reconnect_interval": (None, 60.0),
    "max_reconnect_interval": (60.0, 600.0),
    "reset_backoff_after": (60.0, 600.0),
    "connect_timeout": (60.0, 600.0),
    "auth_timeout": (60.0, 600.0),
    "heartbeat": (60.0, 600.0),
    "metrics_interval": (60.0, 600.0),
    "request_timeout": (600.0, 3600.0),
    "lazy_grace": (600.0, 3600.0),
}
# The TypeScript design's names for the options it has.
_TYPESCRIPT_NAMES = {
    "url": "url",
    "api_key": "apiKey",
    "reconnect_interval": "reconnectInterval",
    "max_reconnect_attempts": "maxReconnectAttempts",
}


@dataclass(frozen=True, kw_only=True)
class WebSocketConfig:
    """How to reach a Nexus server and how to behave when things go wrong.

    Args:
        url: ``ws://`` or ``wss://`` URL of the server; or a callable (sync or async)
            returning one, called once per connection attempt (a fresh token in the
            query string). Query values are redacted wherever a URL is shown.
        api_key: the key sent in the ``x-api-key`` header, or a callable returning
            one (called on every connection attempt); ``None`` reads ``NEXUS_API_KEY``.
        reconnect_interval: delay before the first retry; it doubles on each retry.
        max_reconnect_interval: cap on the delay between attempts.
        reconnect_jitter: fraction of each delay drawn at random (0 disables jitter).
        max_reconnect_attempts: retries after the first attempt fails; ``None``
            retries forever.
        reset_backoff_after: a connection open this long resets the retry count.
        should_reconnect: optional hook overriding whether a failure is retried.
        connect_timeout: bound on one attempt (TCP, TLS and the upgrade).
        request_timeout: bound on an ask, across reconnects; ``None``: no bound.
        heartbeat: seconds without data after which the client pings; nothing
            within half of it more means the link is dead. ``None`` disables pings.
        outbox_limit: how many messages may wait for a connection.
        dedupe_size: how many answered (and how many abandoned) ask ids the client
            remembers, to drop a server's repeated answers; a repeat of an older id
            counts as new. About 150 bytes an id.
        max_messages: deprecated: a store option now
            (``use_websocket(..., max_messages=...)``); still honoured, with a
            ``DeprecationWarning``, until the next release.
        batch_interval: deprecated, likewise (``use_websocket(..., batch_interval=...)``).
        max_message_size: largest frame accepted, in bytes.
        headers: extra HTTP headers for the upgrade request.
        signing_key: an Ed25519 private key (the key object, a PEM file path, PEM
            bytes, a raw 32-byte seed, or that seed in hex) to answer the server's
            ``challenge``; ``None`` if the server does not require it.
        server_key: the server's Ed25519 public key to pin (64 hex digits, or the path
            of the ``.pub``, PEM or OpenSSH file it is in): every frame both ways is then
            signed, and the server's checked against it (needs ``signing_key``).
        encrypt: also encrypt every frame end to end (HPKE; needs ``server_key`` and
            the ``encryption`` extra).
        auth_timeout: how long to wait for the challenge and for ``auth_ok``.
        ssl: for ``wss://``: ``True`` verifies certificates and host names against
            the system's CAs (the default); an ``ssl.SSLContext`` for a private CA or
            client certificates. ``False`` disables verification: never in production.
        allow_insecure: allow sending the API key over plain ``ws://`` to a host
            that is not loopback.
        rate: at most this many messages per second go out (``None``: no limit);
            excess messages wait, they are never dropped.
        burst: how many messages may go out at once before ``rate`` applies.
        persist: a SQLite file (``~`` is expanded) that keeps the outbox, pending
            asks and history across restarts and crashes (see
            :mod:`nexus_reactive.persist`).
        persist_key: encrypt the journal at rest (AES-256-GCM): 32 random bytes, 64
            hex characters, or a callable (sync) returning either, called when the
            journal opens. Never shown (``<set>``, ``<callable>``).
        proxy: ``http://[user:password@]host:port`` (HTTP CONNECT) or
            ``socks5://...`` (the ``socks`` extra); credentials are never shown.
        trust_env: without ``proxy``, take the proxy from ``HTTPS_PROXY`` /
            ``HTTP_PROXY`` / ``ALL_PROXY``, honouring ``NO_PROXY`` (docs/networks.md).
        compression: offer permessage-deflate; used if the server accepts it.
        subprotocols: WebSocket subprotocols to offer, in order of preference; the
            server must choose one of them (``state.value.subprotocol``).
        metrics: count frames, bytes, reconnects and asks, and time asks and pings:
            ``service.metrics`` (off: nothing is counted, at no cost).
        metrics_interval: seconds between ``service.metrics`` emissions while it has
            subscribers (``.value`` is always current).
        telemetry: OpenTelemetry (the ``otel`` extra): ``True`` for the global
            providers, or a :class:`~nexus_reactive.telemetry.Telemetry`; a span per
            ask, metric instruments, trace context to the server. Implies ``metrics``.
        lazy: open the connection only when something needs it (a subscriber to
            ``messages``, a send or an ask), not at ``connect()``/``use_websocket``,
            and close it after ``lazy_grace`` without one (docs/reliability.md).
        lazy_grace: with ``lazy=True``, seconds an unneeded connection stays open.
    """

    # The one field that may also be given positionally: WebSocketConfig(url, ...).
    url: UrlSource = field(default="ws://localhost:8000", kw_only=False)
    api_key: ApiKey | None = field(default=None, repr=False)
    reconnect_interval: float = 1.0
    max_reconnect_interval: float = 30.0
    reconnect_jitter: float = 0.5
    max_reconnect_attempts: int | None = 10
    reset_backoff_after: float = 10.0
    should_reconnect: Callable[[NexusConnectionError], bool] | None = None
    connect_timeout: float = 10.0
    request_timeout: float | None = 60.0
    heartbeat: float | None = 15.0
    outbox_limit: int = 10_000
    dedupe_size: int = 10_000
    max_messages: int | None = None  # deprecated: a store option
    batch_interval: float | None = None  # deprecated: a store option
    max_message_size: int = 4 * 1024 * 1024
    headers: Mapping[str, str] = field(default_factory=dict)
    signing_key: Ed25519PrivateKey | str | os.PathLike[str] | None = field(default=None, repr=False)
    server_key: Ed25519PublicKey | str | os.PathLike[str] | None = None
    encrypt: bool = False
    auth_timeout: float = 10.0
    ssl: _ssl.SSLContext | bool = True
    allow_insecure: bool = False
    rate: float | None = None
    burst: int | None = None
    persist: str | os.PathLike[str] | None = None
    persist_key: PersistKey | None = field(default=None, repr=False)
    proxy: str | None = None
    trust_env: bool = False
    compression: bool = False
    subprotocols: Sequence[str] = ()
    metrics: bool = False
    metrics_interval: float = 1.0
    telemetry: bool | Telemetry = False
    lazy: bool = False
    lazy_grace: float = 30.0

    def __post_init__(self) -> None:
        check_proxy(self.proxy)
        check_persist_key(self.persist, self.persist_key)
        if not callable(self.url):
            check_url(self.url, allow_insecure=self.allow_insecure, proxy=self.proxy)
        object.__setattr__(self, "subprotocols", check_subprotocols(self.subprotocols))
        check_numbers(self)
        inherited = _INHERITED.get()
        check_lazy(self.lazy, self.lazy_grace, "lazy_grace" in inherited)
        for name, (warn_above, refuse_above) in SECONDS_LIMITS.items():
            value = getattr(self, name)
            if value is None or value <= (refuse_above if warn_above is None else warn_above):
                continue
            if math.isinf(value):
                raise ConfigError(
                    f"{name} must be a finite number of seconds"
                    + (", or None for no bound" if name == "request_timeout" else "")
                )
            if value > refuse_above:
                raise ConfigError(
                    milliseconds_message(name, value, refuse_above, _TYPESCRIPT_NAMES.get(name))
                )
            if name not in inherited:
                warnings.warn(
                    milliseconds_message(name, value, None, _TYPESCRIPT_NAMES.get(name)),
                    UserWarning,
                    stacklevel=_caller_level(),
                )
        for name in _DEPRECATED_STORE_OPTIONS:
            if getattr(self, name) is not None and name not in inherited:
                warnings.warn(
                    f"WebSocketConfig({name}=...) is deprecated and will be removed in the "
                    f"next release: it is a store option. Pass it to the store instead: "
                    f"use_websocket(..., {name}=...) or WebSocketStore(..., {name}=...)",
                    DeprecationWarning,
                    stacklevel=_caller_level(),
                )
        if not (self.api_key is None or isinstance(self.api_key, str) or callable(self.api_key)):
            raise ConfigError("api_key must be a string, a callable returning one, or None")
        check_telemetry(self.telemetry)
        if any(k.lower() == "x-api-key" for k in self.headers):
            raise ConfigError("pass the API key as api_key=..., not in headers")
        check_frames(self.signing_key, self.server_key, self.encrypt)

    @classmethod
    def from_options(cls, config: WebSocketConfig | None = None, **options: Any) -> WebSocketConfig:
        """Build a config from another one and/or keyword options.

        Raises:
            UnknownOption: an option that ``WebSocketConfig`` does not have (it names
                the closest one).
            ConfigError: an option's value is invalid.
        """
        _check_option_names(options)
        if config is None:
            return cls(**options)
        values = {f.name: getattr(config, f.name) for f in fields(cls)}
        values.update(options)
        token = _INHERITED.set(frozenset(values) - set(options))
        try:
            return cls(**values)
        finally:
            _INHERITED.reset(token)

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS:
                shown.append(f"{f.name}={_source(f.name, value)}")
            elif f.name in _URL_FIELDS and value is not None:
                shown.append(f"{f.name}={self._shown(value)!r}")
            elif f.name == "headers":
                shown.append(f"headers={sorted(value)!r}")
            else:
                shown.append(f"{f.name}={value!r}")
        return f"WebSocketConfig({', '.join(shown)})"

    __str__ = __repr__

    @property
    def shown_url(self) -> str:
        """The URL as it may be shown (logs, reprs): query values and credentials
        redacted; ``<callable>`` for a URL provider."""
        return self._shown(self.url)

    @staticmethod
    def _shown(value: object) -> str:
        if value is None or isinstance(value, str):
            return "None" if value is None else redact_url(value)
        return "<callable>"

    async def resolve_url(self) -> str:
        """The URL for this connection attempt (a provider is called once).

        Raises:
            ConfigError: the provider returned no valid URL (or an insecure one).
        """
        source = self.url
        if isinstance(source, str):
            return source
        url = source()
        if inspect.isawaitable(url):
            url = await url
        check_url(url, allow_insecure=self.allow_insecure, proxy=self.proxy)
        assert isinstance(url, str)
        return url

    async def resolve_api_key(self) -> str:
        """The key for this connection attempt.

        Raises:
            ConfigError: neither ``api_key`` nor ``NEXUS_API_KEY`` gives a key.
        """
        source = self.api_key
        if source is None:
            key: object = os.environ.get(API_KEY_ENV, "")
        elif isinstance(source, str):
            key = source
        else:
            key = source()
            if inspect.isawaitable(key):
                key = await key
        if not isinstance(key, str) or not key:
            raise ConfigError(
                "no API key: pass api_key=... to WebSocketConfig (or use_websocket), "
                f"or set the {API_KEY_ENV} environment variable"
            )
        return key


def _caller_level() -> int:
    """The stack level of the first frame outside this module and dataclasses: the
    code that built the config, whichever way it was built."""
    # Level 1 is the caller of warnings.warn (__post_init__), one frame above this.
    frame = inspect.currentframe()
    frame = frame.f_back if frame is not None else None
    level = 1
    while frame is not None and (
        frame.f_code.co_filename == __file__
        or (frame.f_code.co_name == "__init__" and frame.f_code.co_filename.startswith("<"))
    ):
        frame, level = frame.f_back, level + 1
    return level


def _source(name: str, value: object) -> str:
    """Where a secret comes from, for a repr: never the secret itself."""
    if value is None:
        if name == "api_key" and os.environ.get(API_KEY_ENV):
            return f"<from {API_KEY_ENV}>"
        return "None"
    if callable(value):
        return "<callable>"
    return "<set>"


def _option_names() -> list[str]:
    return [f.name for f in fields(WebSocketConfig) if f.init]


def _check_option_names(options: Mapping[str, object]) -> None:
    """Raise :class:`UnknownOption` for the first keyword that names no option."""
    check_option_names(options, _option_names(), _STORE_ONLY_OPTIONS, SECONDS_LIMITS)


# The generated __init__ raises a bare TypeError for an unknown keyword; checked
# first, it is an UnknownOption naming the closest option. Type checkers still see
# the dataclass's own signature.
_dataclass_init = WebSocketConfig.__init__


@functools.wraps(_dataclass_init)
def _init(self: WebSocketConfig, *args: Any, **kwargs: Any) -> None:
    _check_option_names(kwargs)
    _dataclass_init(self, *args, **kwargs)


WebSocketConfig.__init__ = _init  # type: ignore[method-assign]
