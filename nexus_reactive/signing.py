"""Ed25519 keys for key-pair authentication (docs/protocol.md), shared by client and server.

The client signs the UTF-8 bytes of the server's challenge string; the server
checks the signature against the public key the client names. On the wire both
are lowercase hex: 64 characters for the 32-byte raw public key, 128 for the
64-byte signature.

Private key material never leaves this module in text form: errors name the path
of a key file, never its contents, and never a seed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import ConfigError

__all__ = [
    "PUBLIC_KEY_HEX_LENGTH",
    "SIGNATURE_HEX_LENGTH",
    "SigningKeySource",
    "generate_keypair",
    "is_public_key_hex",
    "load_signing_key",
    "public_key_hex",
    "sign_challenge",
    "verify_signature",
    "write_keypair",
]

#: A private key, where it can come from: the key itself, a PEM file's path, a
#: 32-byte seed as 64 hex characters, or bytes (the raw 32-byte seed, or PEM data).
SigningKeySource: TypeAlias = Ed25519PrivateKey | str | os.PathLike[str] | bytes

#: Lowercase hex of the 32-byte raw public key.
PUBLIC_KEY_HEX_LENGTH = 64
#: Lowercase hex of the 64-byte signature.
SIGNATURE_HEX_LENGTH = 128

_SEED_BYTES = 32
# Only hex digits: bytes.fromhex() alone would also accept spaces.
_HEX_SEED = re.compile(r"[0-9a-fA-F]{64}")
# A string this long with no path separator or dot is more likely a mistyped key
# than a file name: it is never quoted back.
_SECRET_LIKE_LENGTH = 32
_PUBLIC_HEX = re.compile(r"[0-9a-f]{64}")
# A key file holding only 64 hex digits (a line): what keygen writes to PATH.pub.
_HEX64_LINE = re.compile(rb"\s*[0-9a-fA-F]{64}\s*")
_SIGNATURE_HEX = re.compile(r"[0-9a-f]{128}")
# A key file is a few hundred bytes; refuse to slurp something that is not one.
_MAX_KEY_FILE = 64 * 1024
_OPENSSH_HEADER = b"-----BEGIN OPENSSH PRIVATE KEY-----"
_PEM_HEADER = b"-----BEGIN "


def load_signing_key(key: SigningKeySource) -> Ed25519PrivateKey:
    """Turn any accepted form of an Ed25519 private key into the key object.

    Args:
        key: one of

            - an :class:`Ed25519PrivateKey`, returned as is;
            - a ``str`` of exactly 64 hex digits (spaces around are ignored):
              the 32-byte seed;
            - a ``str`` containing ``-----BEGIN``: PEM text, as below;
            - any other ``str`` or an :class:`os.PathLike`: the path of a PEM
              file, unencrypted PKCS#8 (``-----BEGIN PRIVATE KEY-----``, as
              :func:`write_keypair` and ``openssl genpkey -algorithm ed25519``
              write it) or OpenSSH (``ssh-keygen -t ed25519 -N ""``);
            - ``bytes`` of length 32: the raw seed; other ``bytes``: PEM data.

    Returns:
        The private key.

    Raises:
        ConfigError: the key cannot be read or is not an unencrypted Ed25519
            private key. The message names the path, if there is one, and never
            contains key material.
    """
    if isinstance(key, Ed25519PrivateKey):
        return key
    if isinstance(key, bytes):
        if len(key) == _SEED_BYTES:
            return Ed25519PrivateKey.from_private_bytes(key)
        if key.lstrip().startswith(_PEM_HEADER):
            return _from_pem(key, "the PEM data given")
        raise ConfigError(
            "a signing key given as bytes must be the 32-byte raw seed or PEM data; "
            f"got {len(key)} bytes that are neither"
        )
    if isinstance(key, str):
        if _HEX_SEED.fullmatch(key.strip()):
            return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key.strip()))
        # Key material pasted where a path goes must not end up in a "file not
        # found" message: PEM text is read as such, a near-seed is refused unquoted.
        if _PEM_HEADER.decode() in key:
            return _from_pem(key.encode("utf-8", "replace"), "the PEM text given")
        if _could_be_secret(key) and not os.path.exists(key):
            raise ConfigError(
                f"signing_key ({len(key)} characters, not shown in case it is key "
                "material) is neither a 32-byte seed as 64 hex digits nor the path of an "
                "existing key file: pass the private key's file (`nexus-reactive keygen "
                "--out PATH` makes a key pair)"
            )
    if isinstance(key, str | os.PathLike):
        return _from_file(Path(key).expanduser())
    raise ConfigError(
        "signing_key must be an Ed25519PrivateKey, a PEM file path, or a 32-byte seed "
        f"as 64 hex characters; got a {type(key).__name__}"
    )


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Return the wire form of a public key.

    Args:
        key: a private key (its public half is used) or a public key.

    Returns:
        The lowercase hex of the 32-byte raw public key (64 characters).
    """
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def sign_challenge(key: Ed25519PrivateKey, challenge: str) -> str:
    """Sign a server's challenge as the protocol asks.

    Args:
        key: the client's private key.
        challenge: the challenge string exactly as received.

    Returns:
        The lowercase hex of the 64-byte signature over the UTF-8 bytes of
        ``challenge`` (128 characters).

    Raises:
        UnicodeEncodeError: ``challenge`` holds lone surrogates, so it has no
            UTF-8 form.
    """
    return key.sign(challenge.encode("utf-8")).hex()


def verify_signature(pubkey_hex: object, challenge: object, signature_hex: object) -> bool:
    """Check an ``auth`` message's signature. Never raises, whatever the input.

    Args:
        pubkey_hex: the claimed public key, lowercase hex of 32 bytes.
        challenge: the challenge string that was signed.
        signature_hex: the signature, lowercase hex of 64 bytes.

    Returns:
        ``True`` only if all three are well-formed and the signature is valid.
    """
    if not (
        isinstance(pubkey_hex, str)
        and isinstance(signature_hex, str)
        and isinstance(challenge, str)
        and _PUBLIC_HEX.fullmatch(pubkey_hex)
        and _SIGNATURE_HEX.fullmatch(signature_hex)
    ):
        return False
    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(pubkey_hex))
        public.verify(bytes.fromhex(signature_hex), challenge.encode("utf-8"))
    except (InvalidSignature, ValueError, UnicodeError, UnsupportedAlgorithm):
        return False
    return True


def is_public_key_hex(text: object) -> bool:
    """Tell whether ``text`` is a public key in wire form (64 lowercase hex digits).

    Args:
        text: anything.

    Returns:
        Whether it is a string of exactly 64 lowercase hex digits.
    """
    return isinstance(text, str) and _PUBLIC_HEX.fullmatch(text) is not None


def generate_keypair() -> Ed25519PrivateKey:
    """Make a fresh random Ed25519 private key.

    Returns:
        The key; :func:`public_key_hex` gives its public half in wire form.
    """
    return Ed25519PrivateKey.generate()


def write_keypair(
    path: str | os.PathLike[str], key: Ed25519PrivateKey, *, overwrite: bool = False
) -> str:
    """Write a private key file readable by its owner only, and its public key next to it.

    ``path`` gets the private key as unencrypted PKCS#8 PEM, created with mode
    0600 (so it is never readable by others, not even for an instant);
    ``<path>.pub`` gets the public key's hex and a newline.

    Args:
        path: where to write the private key.
        key: the key to write.
        overwrite: replace existing files (the private key file is reset to
            mode 0600). Without it, nothing is written if either file exists.

    Returns:
        The public key in wire form (64 lowercase hex digits).

    Raises:
        FileExistsError: ``path`` or ``<path>.pub`` exists and ``overwrite`` is false.
        OSError: a file cannot be written.
    """
    private_path = Path(path)
    public_path = private_path.with_name(private_path.name + ".pub")
    if not overwrite:
        for existing in (private_path, public_path):
            if existing.exists() or existing.is_symlink():
                raise FileExistsError(
                    f"{existing} already exists; not overwriting a key (pass overwrite=True)"
                )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(private_path, pem, overwrite)
    pubkey = public_key_hex(key)
    public_path.write_text(pubkey + "\n", encoding="ascii")
    return pubkey


def _write_private(path: Path, data: bytes, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    flags |= os.O_TRUNC if overwrite else os.O_EXCL
    fd = os.open(path, flags, 0o600)
    try:
        if hasattr(os, "fchmod"):
            # An overwritten file keeps its old mode: make it owner-only again.
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb", closefd=False) as handle:
            handle.write(data)
    finally:
        os.close(fd)


def _could_be_secret(text: str) -> bool:
    return len(text) >= _SECRET_LIKE_LENGTH and not any(c in text for c in "/\\.")


def _from_file(path: Path) -> Ed25519PrivateKey:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise ConfigError(
            f"signing_key file {str(path)!r} does not exist: make a key pair with "
            "`nexus-reactive keygen --out PATH` and pass the private key's PATH"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"signing_key file {str(path)!r} is a directory") from None
    except ValueError:  # e.g. an embedded NUL: not a path at all, so not quoted
        raise ConfigError("signing_key is neither a key nor the path of a key file") from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read signing_key file {str(path)!r}: {exc.strerror or 'read failed'}"
        ) from None
    if len(data) > _MAX_KEY_FILE:
        raise ConfigError(f"signing_key file {str(path)!r} is too big to be a key file")
    if _HEX64_LINE.fullmatch(data):
        raise ConfigError(
            f"signing_key file {str(path)!r} holds 64 hex digits, which is not a readable "
            "private key: is it the public key 'nexus-reactive keygen' wrote to PATH.pub? "
            "Pass the private key's file, the PATH without '.pub'"
        )
    if data.lstrip().startswith(b"ssh-") or b"PUBLIC KEY-----" in data:
        raise ConfigError(
            f"signing_key file {str(path)!r} holds a public key, which cannot sign: pass "
            "the private key's file (for a '.pub' file, the PATH without '.pub')"
        )
    return _from_pem(data, f"signing_key file {str(path)!r}")


def _from_pem(data: bytes, where: str) -> Ed25519PrivateKey:
    # Errors from the parsers are dropped (`from None`): only our own words,
    # which never quote the data, go into the message.
    key: object
    try:
        if data.lstrip().startswith(_OPENSSH_HEADER):
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(
            f"{where} is encrypted; use an unencrypted key (e.g. one written by "
            "'nexus-reactive keygen') or pass the decrypted Ed25519PrivateKey"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            f"{where} is not a readable private key: expected unencrypted PKCS#8 PEM "
            "(-----BEGIN PRIVATE KEY-----) or OpenSSH format"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(
            f"{where} holds a key of type {type(key).__name__}, not an Ed25519 "
            "private key; key-pair authentication uses Ed25519"
        )
    return key
