"""Handshake authentication: which API keys the server accepts, and checking one.

Keys are kept as bytes and compared with :func:`hmac.compare_digest` against every
allowed key (no early exit), so the time taken says nothing about which key, or
how much of one, matched. A key is never logged or echoed; the rest of the server
only ever sees its :attr:`ApiKeys.fingerprint`, a SHA-256 digest.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable

from ..errors import ConfigError

__all__ = ["API_KEY_ENV", "API_KEY_HEADER", "ApiKeys"]

#: The environment variable read when no keys are passed explicitly.
API_KEY_ENV = "NEXUS_API_KEY"
#: The upgrade request's header that carries the key (docs/protocol.md).
API_KEY_HEADER = "x-api-key"


class ApiKeys:
    """The set of API keys a server accepts.

    Args:
        keys: one key, several, or ``None`` to read ``NEXUS_API_KEY``.

    Raises:
        ConfigError: no key was given and ``NEXUS_API_KEY`` is unset or empty,
            or a given key is empty.
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: str | Iterable[str] | None = None) -> None:
        if keys is None:
            keys = os.environ.get(API_KEY_ENV) or None
        if keys is None:
            raise ConfigError(
                f"the server needs at least one API key: pass api_keys=... or set "
                f"the {API_KEY_ENV} environment variable"
            )
        listed = [keys] if isinstance(keys, str) else list(keys)
        if not listed:
            raise ConfigError(
                f"api_keys is empty: pass at least one key, or None to read {API_KEY_ENV}"
            )
        if any(not isinstance(key, str) or not key for key in listed):
            raise ConfigError("every API key in api_keys must be a non-empty string")
        self._keys = tuple(_to_bytes(key) for key in listed)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"ApiKeys(<{len(self)} redacted>)"

    def match(self, candidate: str | None) -> bytes | None:
        """Check a presented key.

        Args:
            candidate: the ``x-api-key`` header's value, or ``None`` if absent.

        Returns:
            The fingerprint of the key if it is allowed, else ``None``.
        """
        if candidate is None:
            return None
        presented = _to_bytes(candidate)
        matched: bytes | None = None
        for key in self._keys:
            if hmac.compare_digest(presented, key):
                matched = key
        return None if matched is None else self.fingerprint(matched)

    @staticmethod
    def fingerprint(key: bytes) -> bytes:
        """Return the digest that stands for ``key`` wherever the server keeps state.

        Args:
            key: the key's bytes.

        Returns:
            The SHA-256 digest of ``key``.
        """
        return hashlib.sha256(key).digest()


def _to_bytes(key: str) -> bytes:
    # aiohttp decodes header bytes as UTF-8 with surrogateescape; undo it exactly.
    return key.encode("utf-8", "surrogateescape")
