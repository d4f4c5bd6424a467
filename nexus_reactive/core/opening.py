"""How a connection opens: what the server's ``x-nexus-auth`` upgrade header means for
a client with or without a signing key (docs/protocol.md, "Key-pair authentication").

A server that requires key-pair authentication says so in its upgrade response
(``x-nexus-auth: challenge``); one that does not says ``x-nexus-auth: none``. With
the header the client knows at once; without it (an older or third-party server)
a client without a key waits a short grace for a challenge before it reports the
connection open.
"""

from __future__ import annotations

import enum

from ..errors import AuthenticationError

__all__ = ["AUTH_HEADER", "Opening", "auth_required", "opening"]

#: The upgrade response header that says whether key-pair authentication is required.
AUTH_HEADER = "x-nexus-auth"
_REQUIRED = {"challenge": True, "none": False}


class Opening(enum.Enum):
    """What to do once the upgrade succeeded."""

    HANDSHAKE = "handshake"  # answer the challenge, then open
    OPEN = "open"  # open at once: no challenge will come
    GRACE = "grace"  # open once the first frame is not a challenge, or after a grace


def auth_required(header: str | None) -> bool | None:
    """The header's meaning: required, not required, or ``None`` (absent or unknown)."""
    if header is None:
        return None
    return _REQUIRED.get(header.strip().lower())


def opening(
    has_signing_key: bool, header: str | None, pins_server_key: bool = False
) -> tuple[Opening, AuthenticationError | None]:
    """Decide how to open, from the key we hold and what the server advertised
    (``pins_server_key``: signed frames were asked for, which need the handshake too).

    Returns:
        The plan, and the fatal error instead of it when the two cannot meet (the
        server requires a key we do not have, or we hold a key it will not ask for).
    """
    required = auth_required(header)
    if has_signing_key:
        if required is False:
            return Opening.HANDSHAKE, AuthenticationError(
                f"the server does not use key-pair authentication ({AUTH_HEADER}: none), "
                "so no challenge will come"
                + (
                    " and it cannot sign frames. Remove server_key and signing_key, or start "
                    "the server with a signing key"
                    if pins_server_key
                    else ". Remove signing_key, or check the server's configuration"
                )
                + ". Not retrying."
            )
        return Opening.HANDSHAKE, None
    if required is True:
        return Opening.HANDSHAKE, AuthenticationError(
            f"the server requires key-pair authentication ({AUTH_HEADER}: challenge), "
            "and this client has no signing key configured: pass signing_key=... "
            "(see `nexus-reactive keygen`). Not retrying."
        )
    return (Opening.OPEN if required is False else Opening.GRACE), None
