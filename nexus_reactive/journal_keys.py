"""The journal's key (``persist_key=``): what it may be, and how it is checked.

A journal key is 32 random bytes. It is given as the bytes themselves, as 64 hex
characters (``str`` or ``bytes``: the text of a key file that
``nexus-reactive journal keygen`` wrote, or an environment variable), or as a provider:
a callable (sync) returning either, called once each time a journal opens (a key kept
in a secret store or the system's keyring).

Nothing here imports ``cryptography`` (a config is checked at ``import`` cost); the
AEAD is :mod:`nexus_reactive.journal_crypto`. No message built here contains a key or
any part of one: they state lengths and types only.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable

from .errors import ConfigError, PersistenceError, raised_where

__all__ = [
    "GENERATE",
    "JOURNAL_KEY_ENV",
    "KEY_SIZE",
    "PersistKey",
    "check_persist_key",
    "key_bytes",
    "key_like",
    "resolve_key",
]

#: Bytes in a journal key (AES-256).
KEY_SIZE = 32
#: The environment variable the ``journal`` commands read a key from (64 hex characters).
JOURNAL_KEY_ENV = "NEXUS_JOURNAL_KEY"

#: A journal key: 32 bytes, 64 hex characters, or a callable returning either.
PersistKey = bytes | bytearray | memoryview | str | Callable[[], bytes | str]

_HEX_KEY = re.compile(rb"\s*([0-9a-fA-F]{64})\s*")
_KEYISH = re.compile(r"[0-9a-fA-F]{32,}")
GENERATE = (
    "make one with `nexus-reactive journal keygen --out journal.key` "
    "(then persist_key=Path('journal.key').read_bytes), or secrets.token_bytes(32)"
)


def key_bytes(value: object, *, name: str = "persist_key", advice: str = GENERATE) -> bytes:
    """The 32 key bytes ``value`` stands for.

    Args:
        value: 32 bytes, or 64 hex characters (``str`` or ``bytes``, surrounding
            whitespace ignored, as in a key file with a final newline).
        name: the keyword the user gave it as, for the error.
        advice: how to make a key, in the user's words.

    Raises:
        ConfigError: anything else; the message says what was given (its type and
            length, never its content) and how to make a key.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if len(raw) == KEY_SIZE:
            return raw
        match = _HEX_KEY.fullmatch(raw)
        if match is not None:
            return bytes.fromhex(match[1].decode("ascii"))
        raise ConfigError(
            f"{name} must be {KEY_SIZE} random bytes (or those bytes as 64 hex characters), "
            f"got {len(raw)} bytes; {advice}"
        )
    if isinstance(value, str):
        match = _HEX_KEY.fullmatch(value.encode("utf-8", "replace"))
        if match is not None:
            return bytes.fromhex(match[1].decode("ascii"))
        if (
            name == "persist_key"
            and len(value) < 4096
            and os.path.isfile(os.path.expanduser(value))
        ):
            # signing_key= and server_key= take a path; this keyword takes the key.
            raise ConfigError(
                f"{name} takes the key, not a file's path ({value!r} is a file): pass "
                f"persist_key=Path({value!r}).read_bytes, called each time the journal opens"
            )
        raise ConfigError(
            f"{name} as a string must be 64 hex characters ({KEY_SIZE} bytes), got a "
            f"string of {len(value)} characters; a password is not a key: {advice}"
        )
    raise ConfigError(
        f"{name} must be {KEY_SIZE} bytes, 64 hex characters, or a callable returning "
        f"either; got {type(value).__name__}"
    )


def key_like(text: str) -> bool:
    """Whether ``text`` looks like a key or much of one (a run of 32 or more hex
    characters, ``0x`` and quotes around it or not), e.g. given where a path goes: such
    a text is never repeated in a message."""
    return _KEYISH.search(text) is not None


def check_persist_key(persist: object, key: object) -> None:
    """Check ``persist_key`` when a config is made (a provider is checked when called).

    Raises:
        ConfigError: a key without ``persist``, or a key that is not one.
    """
    if key is None:
        return
    if persist is None:
        raise ConfigError(
            "persist_key= is set but persist= is not: pass persist='client.db' (the "
            "journal's file) as well, or drop persist_key"
        )
    if not callable(key):
        key_bytes(key)


def resolve_key(source: PersistKey, path: str | os.PathLike[str]) -> bytes:
    """The key for the journal at ``path``: ``source`` itself, or what its provider returns.

    Raises:
        PersistenceError: the provider raised (the message names its exception's
            type and where it was raised, never its text, which might quote a secret;
            it is not chained either: a printed chain would show that text).
        ConfigError: the provider returned no key (or an awaitable).
    """
    if not callable(source):
        return key_bytes(source)
    failed = ""
    try:
        value = source()
    except Exception as exc:
        failed = raised_where(exc)
    if failed:  # raised outside the handler: not even __context__ holds its text
        raise PersistenceError(
            f"the journal {os.fspath(path)} cannot be opened: persist_key's provider "
            f"raised {failed}. Check where it reads the key from"
        )
    if inspect.isawaitable(value):
        close = getattr(value, "close", None)
        if callable(close):
            close()  # a coroutine never awaited would warn
        raise ConfigError(
            "persist_key's provider must return the key, not an awaitable: the journal "
            "opens when the service is made, outside any event loop. Read the key first"
        )
    return key_bytes(value, name="the key persist_key's provider returned")
