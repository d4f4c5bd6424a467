"""What every subcommand shares: exit codes, the command's words for the library's
keywords (:func:`cli_words`), how errors are printed, and the argument types."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping

from ..errors import (
    AuthenticationError,
    ConfigError,
    NexusConnectionError,
    RequestTimeout,
    UsageError,
)
from ..failures import CUSTOM_CONTEXT

__all__ = ["EXIT_CODES", "SERVE_FLAGS", "Command", "Subcommands", "cli_words", "error", "exit_code"]

PROG = "nexus-reactive"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_UNREACHABLE = 4
EXIT_TIMEOUT = 5
EXIT_INTERRUPTED = 130
#: Every exit code, and what it means (the ``--help`` epilog lists them).
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILURE: "any other failure (the server answered with an error, the port is taken...)",
    EXIT_USAGE: "usage or configuration error (a bad option, no API key...)",
    EXIT_AUTH: "authentication failed (API key refused, key-pair authentication failed)",
    EXIT_UNREACHABLE: "the server could not be reached (every connection attempt failed)",
    EXIT_TIMEOUT: "no answer within --timeout",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}
#: The environment variable ``ask`` and ``chat`` read the signing key's path from.
SIGNING_KEY_ENV = "NEXUS_SIGNING_KEY"

#: A subcommand's handler: the parsed arguments in, the exit code out.
Command = Callable[[argparse.Namespace], int]
#: What a subcommand's module adds its parser to (``parser.add_subparsers()``).
Subcommands = argparse._SubParsersAction

# The library's keywords, as this command spells them.
_FLAGS = {
    "api_key": "--api-key",
    "signing_key": f"--signing-key (or {SIGNING_KEY_ENV})",
    "allow_insecure": "--allow-insecure",
    "max_reconnect_attempts": "--retries",
    "request_timeout": "--timeout",
    "certfile": "--certfile",
    "keyfile": "--keyfile",
    "rate_limit": "--rate",
    "rate_burst": "--burst",
    "allowed_pubkeys": "--allowed-pubkey",
    "server_key": "--server-key",
    "require_frames": "--require-frames",
    "overwrite": "--force",
    "persist_key": "--key-file",
}
#: ``serve``'s spelling where it differs: its key comes from the flag only.
SERVE_FLAGS = {"signing_key": "--signing-key"}
# "(--server-key, --server-key)" and "--encrypt (--encrypt)": a flag said twice.
_TWICE_LISTED = re.compile(r"\((--[a-z][a-z-]*), \1\)")
_TWICE_GLOSSED = re.compile(r"(--[a-z][a-z-]*) \(\1\)")
_PHRASES = {
    # A rejected certificate when a CA was given: --cafile is the command's way.
    "Pass ssl=<an ssl.SSLContext that trusts the CA that signed it>": "Pass --cafile the "
    "certificate (PEM) of the CA that signed it",
    "Point SSL_CERT_FILE at the certificate of the CA that signed it "
    "(or pass ssl=<an ssl.SSLContext that trusts it>)": "Pass --cafile the "
    "certificate (PEM) of the CA that signed it (or point SSL_CERT_FILE at it)",
    "encrypt=True": "--encrypt",
    "DocsEngine(folder=...)": "--docs DIR",
    # A flag's unit is in its help; the library's messages compare with the TypeScript API.
    " (the TypeScript design's unit)": "",
    " to WebSocketConfig (or use_websocket)": "",
    " (None retries forever)": "",
    "ssl_context or certfile/keyfile": "--certfile/--keyfile",
    # A client's private CA: a flag (or OpenSSL's variable), not a Python object.
    "pass ssl=<an ssl.SSLContext that trusts it>": "pass --cafile PATH, the CA's "
    "certificate (PEM), or set SSL_CERT_FILE=PATH",
    # An ask's timeout: the flag is the knob; the state stream is no CLI user's.
    "Raise the timeout or check state.error.": "Raise --timeout.",
    # The client commands have no pacing flag: one command is not what floods a server.
    "set rate= (and burst=) under its limit, so that messages wait instead of being "
    "refused, or raise": "try again later, or raise",
}
# The url keyword's own checks: "url" alone is in too many URLs' text to be replaced.
_URL = re.compile(r"(?<![\w/-])url (must be|is not a valid URL)")
# connect_timeout has no flag: the client commands keep its default, each attempt's limit.
_CONNECT_TIMEOUT = re.compile(r"within connect_timeout \(([\d.]+s)\)")
# A keyword, and what follows it: a number given to it (kept: "--timeout 30.0"), or
# "=...", "=True"... (dropped: the flag alone says it).
_KEYWORD = re.compile(
    r"(?<![\w-])(" + "|".join(map(re.escape, _FLAGS)) + r")"
    r"(?:=(?P<number>\d+(?:\.\d+)?)(?!\w)|=(?:\.\.\.|True|False|None)?)?(?!\w)"
)


def cli_words(
    message: str, *, flags: Mapping[str, str] | None = None, cafile: str | None = None
) -> str:
    """Rewrite a library error message in the command's terms: flags, not keywords.

    ``api_key=...`` becomes ``--api-key``, ``signing_key`` ``--signing-key (or
    NEXUS_SIGNING_KEY)``, ``allow_insecure=True`` ``--allow-insecure``,
    ``max_reconnect_attempts`` ``--retries``, ``request_timeout=60000``
    ``--timeout 60000``, and so on.

    Args:
        message: the library's message.
        flags: a command's own spelling of some keywords, over the shared one (``serve``
            reads no ``NEXUS_SIGNING_KEY``: :data:`SERVE_FLAGS`).
        cafile: the ``--cafile`` given, if any: the ``ssl=`` context a rejected
            certificate's message speaks of is that file's.

    Returns:
        The message with every keyword it knows replaced by its flag.
    """
    words = _FLAGS if flags is None else {**_FLAGS, **flags}
    given = f"in --cafile {cafile}" if cafile else "of --cafile"
    message = message.replace(CUSTOM_CONTEXT, f"the CA certificates {given}")
    for phrase, replacement in _PHRASES.items():
        message = message.replace(phrase, replacement)
    message = _CONNECT_TIMEOUT.sub(r"within \1 (each attempt's limit)", message)
    message = _URL.sub(r"--url \1", message)
    message = _KEYWORD.sub(
        lambda match: words[match[1]] + (f" {match['number']}" if match["number"] else ""),
        message,
    )
    # A message that gave both spellings ("server_key=... (--server-key)", as the
    # server's refusals do for any client) now says the flag twice: once is enough.
    return _TWICE_GLOSSED.sub(r"\1", _TWICE_LISTED.sub(r"(\1)", message))


def exit_code(exc: BaseException) -> int:
    """The exit code a library error ends the command with (see :data:`EXIT_CODES`)."""
    if isinstance(exc, ConfigError | UsageError):
        return EXIT_USAGE
    if isinstance(exc, AuthenticationError):
        return EXIT_AUTH
    if isinstance(exc, NexusConnectionError):
        return EXIT_UNREACHABLE
    if isinstance(exc, RequestTimeout):
        return EXIT_TIMEOUT
    return EXIT_FAILURE


def error(message: str) -> None:
    """Print a failure on stderr, once, prefixed with the program's name."""
    print(f"{PROG} {message}", file=sys.stderr)


# -- argument types ---------------------------------------------------------------------


def _number(text: str, kind: type[float] | type[int]) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return int(value)


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return int(value)
