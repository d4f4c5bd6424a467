"""Reading an Ed25519 public key given by a user: the other side's key that a client
pins (``server_key=``, ``--server-key``) or that a server lets in (``--allowed-pubkey``).

One reader for every place a public key is given, so that each takes the same forms:
64 hex digits (either case, as ``nexus-reactive keygen`` and ``serve`` print it), a PEM
public key's text, an OpenSSH public key line (``ssh-ed25519 AAAA...``), the path of a
file holding any of these (``keygen`` writes ``PATH.pub``), or the key object.

Errors name the keyword or flag the key came in by and say what to give instead. A
public key is no secret, but what was given in its place may be: a private key's file
is never quoted, nor a string that looks like key material.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .errors import ConfigError

__all__ = ["PublicKeySource", "load_public_key"]

#: A public key, where it can come from (see the module's docstring).
PublicKeySource: TypeAlias = Ed25519PublicKey | str | os.PathLike[str]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-fA-F]+")
# A key file is a few hundred bytes; refuse to slurp something that is not one.
_MAX_KEY_FILE = 64 * 1024
# At least this long, with no path separator or dot: more likely a key than a file name.
_SECRET_LIKE_LENGTH = 32
_PEM = "-----BEGIN"
_SSH_ED25519 = b"ssh-ed25519 "

#: What ``server_key`` says to give instead of what it got.
SERVER_KEY_INSTEAD = (
    "pin the server's public key instead: the '.pub' file 'nexus-reactive keygen' wrote "
    "next to it, or the 64 hex digits 'nexus-reactive serve' prints"
)
SERVER_KEY_ADVICE = "Pin the public key that 'nexus-reactive serve' prints"


def load_public_key(
    source: PublicKeySource,
    *,
    name: str = "server_key",
    instead: str = SERVER_KEY_INSTEAD,
    advice: str = SERVER_KEY_ADVICE,
) -> Ed25519PublicKey:
    """Read an Ed25519 public key in any of the accepted forms.

    Args:
        source: 64 hex digits (either case, spaces around ignored); a PEM public
            key's text; the path of a file holding either, or an OpenSSH public key
            line; or the key object, returned as is.
        name: the keyword or flag it was given as, for the errors.
        instead: what to give instead of a private key, for the errors.
        advice: where the right key comes from, for the errors.

    Raises:
        ConfigError: it is none of these, or the file cannot be read. The message
            says which form was expected and never quotes private key material.
    """
    if isinstance(source, Ed25519PublicKey):
        return source
    if isinstance(source, str):
        text = source.strip()
        if _HEX64.fullmatch(text.lower()):
            return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
        if _PEM in source:
            return _from_text(source.encode("utf-8", "replace"), name, instead, advice)
    if not isinstance(source, str | os.PathLike):
        raise ConfigError(
            f"{name} must be a public key as 64 hex digits, the path of a file holding "
            f"it, or an Ed25519PublicKey; got a {type(source).__name__}"
        )
    path = Path(source).expanduser()
    given = os.fspath(source).strip()
    if _HEX.fullmatch(given) and not path.exists():
        raise ConfigError(
            f"{name} is {len(given)} hex digits, not 64 (a public key is 32 bytes): was it "
            f"copied whole? {advice}"
        )
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_KEY_FILE + 1)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "cannot read it"
        raise ConfigError(
            f"{name} {_shown(os.fspath(source))} is neither 64 hex digits nor a readable key "
            f"file ({reason}). {advice}"
        ) from None
    where = f"{name} file {str(path)!r}"
    if len(data) > _MAX_KEY_FILE:
        raise ConfigError(f"{where} is too big to be a key file. {advice}")
    return _from_text(data, where, instead, advice)


def _shown(given: str) -> str:
    """``given`` quoted, or only its length when it could be key material."""
    text = given.strip()
    if len(text) >= _SECRET_LIKE_LENGTH and not any(c in text for c in "/\\.~"):
        return f"({len(text)} characters, not shown in case they are key material)"
    return repr(given)


def _from_text(data: bytes, where: str, instead: str, advice: str) -> Ed25519PublicKey:
    text = data.strip()
    if _HEX64.fullmatch(text.decode("ascii", "replace").lower()):
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.decode()))
    if b"PRIVATE KEY-----" in text:
        # The private half: never what is given here (and never quoted).
        raise ConfigError(f"{where} holds a private key; {instead}")
    key: object
    try:
        if text.startswith(_SSH_ED25519):
            key = serialization.load_ssh_public_key(text.split(b"\n")[0])
        else:
            key = serialization.load_pem_public_key(text)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # never the parsers' words
        raise ConfigError(
            f"{where} holds neither 64 hex digits nor a PEM public key (-----BEGIN PUBLIC "
            f"KEY-----) nor an OpenSSH one (ssh-ed25519 ...). {advice}"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(
            f"{where} holds a {type(key).__name__}, not an Ed25519 public key. {advice}"
        )
    return key
