"""The network options' checks and redactions: ``url``, ``proxy``, ``subprotocols``.

Split out of :mod:`nexus_reactive.config` (the value object stays there); the attempt
loop (:mod:`nexus_reactive.connection`) uses the same checks on a URL that a ``url``
callable returns, once per attempt.

Redaction: a URL is shown with each query value replaced by ``<redacted>`` (servers
that take a token in the query string) and without its user information (a proxy's
user and password): :func:`redact_url` applies to any text, so an error message that
quotes a URL is scrubbed whole.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple

from .errors import ConfigError, UnknownOption

if TYPE_CHECKING:
    # yarl loads where a URL is checked (a config is made), not at `import nexus_reactive`.
    from yarl import URL

__all__ = [
    "PROXY_SCHEMES",
    "REDACTED",
    "SOCKS_SCHEMES",
    "UrlSource",
    "check_frames",
    "check_lazy",
    "check_option_names",
    "check_proxy",
    "check_store_options",
    "check_subprotocols",
    "check_url",
    "duration",
    "is_loopback",
    "milliseconds_message",
    "redact_url",
]

#: What replaces a secret in a shown URL.
REDACTED = "<redacted>"

#: A URL, or a callable (sync or async) that returns a fresh one per attempt.
UrlSource = str | Callable[[], str | Awaitable[str]]

#: Proxy schemes: HTTP CONNECT (aiohttp itself) and SOCKS (the ``socks`` extra).
SOCKS_SCHEMES = ("socks5", "socks5h", "socks4")
PROXY_SCHEMES = ("http", "https", *SOCKS_SCHEMES)

# A query string (up to a fragment, whitespace or a quote) and a URL's user information.
_QUERY = re.compile(r"\?([^#\s'\"]*)")
# User information runs to the LAST "@" before the host (a password may hold "@"); without
# a scheme (``user:password@proxy:3128``, as curl accepts in HTTP_PROXY) it is a word
# with a colon before that "@".
_USERINFO = re.compile(r"(?<=://)[^/\s'\"?#]+@")
_BARE_USERINFO = re.compile(r"(?<![^\s'\"(=,<\[])[^\s/'\"?#:@]+:[^\s/'\"?#]*@")
# RFC 7230 token characters: what a subprotocol name may be made of.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def redact_url(text: str) -> str:
    """``text`` with every query value and every URL's user information redacted.

    ``wss://h/ws?token=abc&room=1`` becomes ``wss://h/ws?token=<redacted>&room=<redacted>``;
    ``http://user:pass@proxy:3128`` becomes ``http://<redacted>@proxy:3128`` (a password
    with an ``@`` in it too, and ``user:pass@proxy:3128`` without a scheme becomes
    ``<redacted>@proxy:3128``). It works on any text (an error message quoting a URL),
    valid URL or not.
    """

    def query(match: re.Match[str]) -> str:
        parts = []
        for part in match.group(1).split("&"):
            name, equals, _ = part.partition("=")
            parts.append(f"{name}={REDACTED}" if equals else (REDACTED if part else ""))
        return "?" + "&".join(parts)

    text = _BARE_USERINFO.sub(f"{REDACTED}@", _USERINFO.sub(f"{REDACTED}@", text))
    return _QUERY.sub(query, text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() in ("localhost", "localhost.") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: object, *, allow_insecure: bool, proxy: str | None) -> URL:
    """Check a server URL (the configured one, or one a ``url`` callable returned).

    Raises:
        ConfigError: not a ``ws://``/``wss://`` URL with a host; or the API key would
            cross a network in clear text (``ws://`` to another host, or through a
            proxy on another host) without ``allow_insecure=True``.
    """
    from yarl import URL

    if not isinstance(url, str):
        raise ConfigError(f"url must be a string (or a callable returning one), got {url!r}")
    shown = redact_url(url)
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"url is not a valid URL ({redact_url(str(exc))}): {shown!r}") from None
    if parsed.scheme not in ("ws", "wss") or not parsed.host:
        raise ConfigError(
            f"url must be a ws:// or wss:// URL with a host, got {shown!r} "
            "(for example ws://localhost:8000)"
        )
    if parsed.scheme == "ws" and not allow_insecure:
        if not is_loopback(parsed.host):
            raise ConfigError(
                f"refusing to send the API key in clear text to {parsed.host} over ws://: "
                "use wss://, or pass allow_insecure=True if this network is trusted"
            )
        proxy_host = URL(proxy).host if proxy else None
        if proxy_host and not is_loopback(proxy_host):
            raise ConfigError(
                f"refusing to send the API key in clear text through the proxy at "
                f"{proxy_host}: over ws:// the proxy (and the network to it) sees it. Use "
                "wss:// (the key then travels inside TLS, through the tunnel), or pass "
                "allow_insecure=True if this network and proxy are trusted"
            )
    return parsed


class ProxyUrl(NamedTuple):
    """A checked proxy URL, split into what the transport needs."""

    scheme: str
    host: str
    port: int
    user: str | None
    password: str | None


def check_proxy(proxy: object) -> ProxyUrl | None:
    """Check ``proxy=``: ``http://[user:password@]host[:port]`` (HTTP CONNECT) or a SOCKS
    URL (``socks5://``, ``socks5h://`` with the proxy resolving names, ``socks4://``).

    Raises:
        ConfigError: anything else; the message never quotes the credentials.
    """
    if proxy is None:
        return None
    from yarl import URL

    if not isinstance(proxy, str):
        raise ConfigError(f"proxy must be a URL string or None, got {type(proxy).__name__}")
    try:
        parsed = URL(proxy)
        port = parsed.port
    except (ValueError, TypeError):
        raise ConfigError(f"proxy is not a valid URL: {_proxy_shown(proxy)}") from None
    if parsed.scheme not in PROXY_SCHEMES or not parsed.host or "://" not in proxy:
        raise ConfigError(
            f"proxy must be a URL with one of the schemes {', '.join(PROXY_SCHEMES)} and a "
            f"host, got {_proxy_shown(proxy)} (for example http://user:password@proxy:3128)"
        )
    if parsed.path not in ("", "/") or parsed.query_string:
        raise ConfigError(
            f"proxy takes no path or query, got one after {_proxy_shown(proxy)}: only the "
            "scheme, credentials, host and port"
        )
    if parsed.scheme in SOCKS_SCHEMES:
        try:
            import aiohttp_socks  # noqa: F401  (checked here, used by the transport)
        except ImportError:
            raise ConfigError(
                f"proxy={parsed.scheme}://... needs the socks extra: "
                "pip install 'nexus-reactive[socks]' (it installs aiohttp-socks)"
            ) from None
        port = parsed.explicit_port or 1080
    return ProxyUrl(parsed.scheme, parsed.host, port or 80, parsed.user, parsed.password)


def _proxy_shown(proxy: str) -> str:
    """A proxy string as an error may show it: its scheme and host (and port), never the
    rest, which may hold credentials (quoted raw, a scheme-less ``user:pw@host`` or a
    malformed URL would show them)."""
    from yarl import URL

    scheme, sep, _ = proxy.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return f"a value without a scheme ({REDACTED}: it may hold credentials)"
    try:
        host = URL(proxy).raw_host
    except (ValueError, TypeError):
        host = None
    if not host:
        return f"{scheme}://{REDACTED}"
    return f"{scheme}://{URL.build(host=host).host_port_subcomponent}"


def check_frames(signing_key: object, server_key: object, encrypt: object) -> None:
    """Check that signed or sealed frames (``server_key``, ``encrypt``) can work.

    The key itself is read when the connection starts (a path may name a file).
    """
    if not isinstance(encrypt, bool):
        raise ConfigError(f"encrypt must be True or False, got {type(encrypt).__name__}")
    if encrypt and server_key is None:
        raise ConfigError(
            "encrypt=True needs server_key=... (the server's public key, as it prints it "
            "at start): frames are encrypted to the server that key names"
        )
    if server_key is not None and signing_key is None:
        raise ConfigError(
            "server_key needs signing_key=... too: with signed frames both sides sign, and "
            "the server checks this client's frames against the key it authenticates with"
        )
    if encrypt:
        from .sealing import require

        require()


def check_store_options(max_messages: object, batch_interval: object) -> None:
    """Check a store's ``max_messages`` and ``batch_interval``.

    Raises:
        ConfigError: either is invalid.
    """
    if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 1:
        raise ConfigError(f"max_messages must be an integer >= 1, got {max_messages!r}")
    if batch_interval is not None and not (
        isinstance(batch_interval, (int, float)) and 0 < batch_interval < float("inf")
    ):
        raise ConfigError("batch_interval must be a positive number of seconds, or None")


#: ``lazy_grace``'s default (``WebSocketConfig``).
DEFAULT_LAZY_GRACE = 30.0


def check_lazy(lazy: object, grace: object, inherited: bool) -> None:
    """Check ``lazy=`` and ``lazy_grace=``.

    Raises:
        ConfigError: ``lazy`` is not a bool; ``lazy_grace`` is not a finite number of
            seconds >= 0; or ``lazy_grace`` was given without ``lazy=True`` (it would
            do nothing).
    """
    if not isinstance(lazy, bool):
        raise ConfigError(f"lazy must be True or False, got {lazy!r}")
    if (
        isinstance(grace, bool)
        or not isinstance(grace, (int, float))
        or not (grace >= 0 and math.isfinite(grace))
    ):
        raise ConfigError(
            f"lazy_grace must be a finite number of seconds >= 0, got {grace!r} (0 closes "
            "an unneeded lazy connection at once)"
        )
    if not lazy and grace != DEFAULT_LAZY_GRACE and not inherited:
        raise ConfigError(
            f"lazy_grace={grace!r} has no effect without lazy=True: pass lazy=True too, or "
            "drop lazy_grace"
        )


def check_subprotocols(value: object) -> tuple[str, ...]:
    """``subprotocols=`` as a tuple of distinct, valid names (in order of preference).

    Raises:
        ConfigError: a single string (a list was meant), an empty or invalid name, or
            the same name twice.
    """
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigError(
            f"subprotocols must be a list of names, e.g. subprotocols=['nexus.v2'], got {value!r}"
        )
    names = tuple(value)
    for name in names:
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ConfigError(
                f"subprotocols: {name!r} is not a valid subprotocol name (letters, digits "
                "and !#$%&'*+-.^_`|~, no spaces or commas)"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"subprotocols lists a name twice: {list(names)!r}")
    return names


def check_option_names(
    options: Mapping[str, object],
    known: list[str],
    store_only: tuple[str, ...],
    in_seconds: Mapping[str, object],
) -> None:
    """Raise :class:`UnknownOption` for the first keyword in ``options`` that is not
    one of the ``known`` options (naming the closest one; ``store_only`` options and
    the TypeScript design's camelCase spellings get their own hints)."""
    unknown = sorted(set(options) - set(known))
    if not unknown:
        return
    name = unknown[0]
    others = f" (and {', '.join(unknown[1:])})" if unknown[1:] else ""
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()
    if name in store_only:
        raise UnknownOption(
            f"{name} is a store option, not a connection setting: pass it to the store, "
            f"use_websocket(..., {name}=...) or WebSocketStore(..., {name}=...)",
            name=name,
        )
    if snake != name and snake in known:
        suggestion: str | None = snake
        hint = f"{name} is the TypeScript design's spelling; this option is {snake}"
        if snake in in_seconds:
            hint += " (in seconds, not milliseconds)"
    else:
        close = difflib.get_close_matches(name, [*known, *store_only], n=1, cutoff=0.6)
        suggestion = close[0] if close else None
        hint = (
            f"did you mean {suggestion}?"
            if suggestion
            else f"the options are {', '.join(sorted(known))}"
        )
        if suggestion in store_only:
            hint += f" (a store option: use_websocket(..., {suggestion}=...))"
    raise UnknownOption(
        f"unknown option {name}{others}: {hint}",
        name=name,
        suggestion=suggestion,
    )


def milliseconds_message(
    name: str, value: float, refused_above: float | None, typescript: str | None
) -> str:
    """Why ``value`` looks like milliseconds, and what it is in seconds."""
    design = f"the TypeScript design's {typescript or 'unit'}"
    seconds = f"this option is in seconds: {name}={value / 1000!r}"
    # As written: 1000, not the 1000.0 a command line's float parser makes of it.
    shown = int(value) if float(value).is_integer() else value
    if refused_above is not None:
        return (
            f"{name}={shown!r} looks like milliseconds ({design}); {seconds} "
            f"(at most {refused_above:g}, i.e. {duration(refused_above)})"
        )
    return f"{name}={shown!r} is {duration(value)}; if you meant milliseconds ({design}), {seconds}"


def duration(seconds: float) -> str:
    """``seconds`` in words: ``"1 h 2 min"``, ``"45 s"``."""
    if not math.isfinite(seconds):
        return f"{seconds} s"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    parts.append(f"{rest} s" if rest or not (hours or minutes) else "")
    return " ".join(p for p in parts if p)
