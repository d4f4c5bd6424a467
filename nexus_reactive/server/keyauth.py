"""Key-pair authentication, the server's half (docs/protocol.md, "Key-pair authentication").

Right after the upgrade the server sends a ``challenge``; the client answers with
an ``auth`` carrying its public key and its signature over the challenge. This
module makes challenges and judges answers; :mod:`.connection` does the talking.

The verdicts, and the close code each leads to:

- accepted: ``auth_ok``, the connection is open for asks;
- wrong id, wrong challenge string, or a signature that does not verify:
  ``error`` ``auth_failed``, close 4401 (authentication failed);
- a valid signature by a public key that is not in ``allowed_pubkeys``:
  ``error`` ``auth_failed``, close 4403 (forbidden: the client proved who it is,
  and that key is not let in).

Reasons say what was wrong, never what was sent: no signature is ever echoed
or logged.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ConfigError
from ..messages import AuthMessage, ChallengeMessage, ChallengePayload, new_id
from ..signing import is_public_key_hex, verify_signature

__all__ = ["CLOSE_AUTH_FAILED", "CLOSE_FORBIDDEN", "AuthVerdict", "judge", "new_challenge"]

#: Close codes (docs/protocol.md).
CLOSE_AUTH_FAILED = 4401
CLOSE_FORBIDDEN = 4403

_CHALLENGE_BYTES = 32


def new_challenge() -> ChallengeMessage:
    """Make a fresh challenge: a new id, and 32 random bytes, URL-safe base64.

    Returns:
        The ``challenge`` message to send.
    """
    return ChallengeMessage(
        id=new_id(), payload=ChallengePayload(challenge=secrets.token_urlsafe(_CHALLENGE_BYTES))
    )


def normalize_pubkeys(pubkeys: Iterable[str] | None) -> frozenset[str] | None:
    """Validate the allowed public keys and put them in wire form.

    Args:
        pubkeys: hex public keys (either case), or ``None`` for any key.

    Returns:
        The lowercase keys, or ``None``.

    Raises:
        ConfigError: a key is not 64 hex digits, or the collection is empty
            (which would let nobody in; pass ``None`` to allow any key).
    """
    if pubkeys is None:
        return None
    if isinstance(pubkeys, str):
        pubkeys = [pubkeys]
    keys = frozenset(key.lower() if isinstance(key, str) else key for key in pubkeys)
    if not keys:
        raise ConfigError(
            "allowed_pubkeys is empty, so no client could authenticate; pass None to "
            "accept any key that signs its challenge"
        )
    for key in keys:
        if not is_public_key_hex(key):
            # A path is the usual slip (the client's server_key takes one): say so,
            # without quoting what was given (a mistyped private seed looks alike).
            path = isinstance(key, str) and any(c in key for c in "/\\.~")
            raise ConfigError(
                "every allowed_pubkeys entry must be 64 hex digits (the 32-byte raw Ed25519 "
                "public key, as 'nexus-reactive keygen' prints it and writes to PATH.pub); got "
                + (f"{len(key)} characters" if isinstance(key, str) else type(key).__name__)
                + (
                    ", which look like a file's path: pass the key the file holds, not its path"
                    if path
                    else ""
                )
            )
    return keys


@dataclass(frozen=True, slots=True)
class AuthVerdict:
    """How an ``auth`` message was judged.

    Attributes:
        pubkey: the authenticated public key, or ``None`` if refused.
        close_code: the code to close with when refused (4401 or 4403).
        reason: why it was refused, fit to send and to log.
    """

    pubkey: str | None
    close_code: int = 0
    reason: str = ""

    @property
    def accepted(self) -> bool:
        """Whether the client is authenticated."""
        return self.pubkey is not None


def judge(
    challenge: ChallengeMessage, auth: AuthMessage, allowed: frozenset[str] | None
) -> AuthVerdict:
    """Judge a client's answer to ``challenge``.

    Args:
        challenge: the challenge this connection sent.
        auth: the client's answer.
        allowed: the public keys let in, or ``None`` for any.

    Returns:
        The verdict.
    """
    if auth.id != challenge.id:
        return _refused("the auth message's id is not the challenge's id")
    sent = challenge.payload.challenge.encode()
    if not hmac.compare_digest(auth.payload.challenge.encode("utf-8", "replace"), sent):
        return _refused("the auth message does not carry the challenge that was sent")
    pubkey = auth.payload.pubkey
    if not is_public_key_hex(pubkey):
        return _refused("pubkey must be the 32-byte raw public key in lowercase hex")
    if not verify_signature(pubkey, challenge.payload.challenge, auth.payload.signature):
        return _refused("the signature does not verify with the given public key")
    if allowed is not None and pubkey not in allowed:
        return AuthVerdict(None, CLOSE_FORBIDDEN, "this public key is not allowed on this server")
    return AuthVerdict(pubkey)


def _refused(reason: str) -> AuthVerdict:
    return AuthVerdict(None, CLOSE_AUTH_FAILED, reason)
