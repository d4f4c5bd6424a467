"""The flags that take a key, read one way in every subcommand.

- A **public** key (``--server-key`` of ``ask`` and ``chat``, ``--allowed-pubkey`` of
  ``serve``) is the key or a file holding it: the 64 hex digits ``nexus-reactive
  keygen`` prints (``serve`` prints its own), or the path of the ``PATH.pub`` file
  ``keygen`` writes (a PEM or OpenSSH public key file too). Public keys are no secret.
- A **private** key (``--signing-key``; ``journal``'s ``--key-file`` and
  ``--new-key-file``; ``serve``'s TLS ``--keyfile``) is a file's path: a command line
  is visible to other local users. ``--signing-key`` still takes the key itself (its
  64-hex seed, or PEM text), as it always has, with a warning that says so; the
  ``journal`` flags refuse it. A key file that other users can read is warned about.

Errors name the flag and say what to pass; none quotes a private key, or anything
that could be one.
"""

from __future__ import annotations

import os
import re
import stat
import sys

from .common import PROG

__all__ = [
    "allowed_pubkeys",
    "is_key_itself",
    "server_key",
    "signing_key",
    "warn_if_others_can_read",
]

# A private key typed where its file's path goes: a 64-hex seed or PEM text.
_SEED = re.compile(r"\s*[0-9a-fA-F]{64}\s*")
_PEM = "-----BEGIN"
# In a PEM (PKCS#8, OpenSSH) private key file; a key file is a few hundred bytes.
_PRIVATE = b"PRIVATE KEY-----"
_MAX_KEY_FILE = 64 * 1024


def server_key(value: str) -> str:
    """``--server-key``: the server's public key, from its hex or a file holding it.

    Returns:
        The key as 64 lowercase hex digits.

    Raises:
        ConfigError: it is neither, in the flag's words.
    """
    return _public_key(
        value,
        "--server-key",
        instead="pin the server's public key instead: the '.pub' file 'nexus-reactive "
        "keygen' wrote next to it, or the 64 hex digits 'nexus-reactive serve' prints",
        advice="Pin the server's public key: the 64 hex digits 'nexus-reactive serve' "
        "prints at start, or the PATH.pub file 'nexus-reactive keygen' wrote for it",
    )


def allowed_pubkeys(values: list[str] | None) -> list[str] | None:
    """``--allowed-pubkey`` (repeated): each client's public key, from its hex or a file.

    Returns:
        The keys as 64 lowercase hex digits each, or ``None`` if none was given.

    Raises:
        ConfigError: one is neither, in the flag's words.
    """
    if not values:
        return None
    return [
        _public_key(
            value,
            "--allowed-pubkey",
            instead="let in the client's public key instead: the '.pub' file "
            "'nexus-reactive keygen' wrote next to it, or the 64 hex digits it printed",
            advice="Pass a client's public key: the 64 hex digits 'nexus-reactive keygen' "
            "printed, or the PATH.pub file it wrote",
        )
        for value in values
    ]


def signing_key(value: str, command: str, env: str | None = None) -> str:
    """``--signing-key``: the path of the private key's file, ``~`` expanded.

    The key itself (a 64-hex seed, PEM text) is still taken, with a warning on stderr:
    other local users can read a command line. So is a key file other users can read.

    Args:
        value: what was given.
        command: the subcommand, for the warnings.
        env: the environment variable that may hold the key instead, if the
            subcommand reads one.

    Returns:
        What to give the library's ``signing_key``.
    """
    if is_key_itself(value):
        seed = " (read as the private key's 32-byte seed)" if _PEM not in value else ""
        elsewhere = f", or set {env}" if env else ""
        print(
            f"{PROG} {command}: warning: --signing-key was given the key itself{seed}, "
            "not its file's path: other local users can see a command line. Write the "
            "key to a file readable by you only (`nexus-reactive keygen --out PATH` "
            f"makes a new one) and pass its PATH{elsewhere}",
            file=sys.stderr,
        )
        return value
    path = os.path.expanduser(value)
    warn_if_others_can_read(path, "--signing-key", command)
    return path


def is_key_itself(value: str) -> bool:
    """Whether ``value``, given where a private key file's path goes, is the key itself."""
    return bool(_SEED.fullmatch(value) or _PEM in value) and not os.path.exists(value)


def warn_if_others_can_read(path: str, flag: str, command: str) -> None:
    """Warn on stderr if the private key file at ``path`` is readable by other users.

    Nothing for a file that cannot be read, or holds no private key (a ``.pub`` file
    given by mistake): the error that follows says what is wrong with it. Only a
    regular file is read: a pipe (``--signing-key <(pass show nexus)``) would be
    emptied before the key is read from it.
    """
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode) or not mode & (stat.S_IRWXG | stat.S_IRWXO):
            return
        with open(path, "rb") as file:
            private = _PRIVATE in file.read(_MAX_KEY_FILE)
    except (OSError, ValueError):
        return
    if private:
        print(
            f"{PROG} {command}: warning: {flag} {path} is readable by other users "
            f"(mode {stat.S_IMODE(mode):04o}): `chmod 600 {path}`",
            file=sys.stderr,
        )


def _public_key(value: str, flag: str, *, instead: str, advice: str) -> str:
    from ..public_keys import load_public_key
    from ..signing import public_key_hex

    return public_key_hex(load_public_key(value, name=flag, instead=instead, advice=advice))
