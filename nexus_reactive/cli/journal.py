"""``nexus-reactive journal``: the key of an encrypted journal (``persist_key=``), and
migrations between plain and encrypted.

::

    nexus-reactive journal keygen [--out journal.key | --out -] [--force]
    nexus-reactive journal encrypt PATH [--key-file KEYFILE]
    nexus-reactive journal decrypt PATH [--key-file KEYFILE]
    nexus-reactive journal rekey PATH [--key-file KEYFILE] [--new-key-file KEYFILE]
    nexus-reactive journal check PATH [--key-file KEYFILE]

A key is never an argument (other users see a command line): it comes from a key
file (``--key-file``; 64 hex characters, as ``keygen`` writes, or 32 raw bytes) or
from the environment (``NEXUS_JOURNAL_KEY``, and ``NEXUS_JOURNAL_NEW_KEY`` for
``rekey``'s new key). The migrations are :func:`nexus_reactive.journal_migrate.migrate`:
atomic, and refused while a client has the journal open.
"""

from __future__ import annotations

import argparse
import os
import secrets
import stat
import sys
from pathlib import Path

from ..errors import ConfigError, PersistenceError
from ..journal_keys import JOURNAL_KEY_ENV, KEY_SIZE, key_bytes, key_like
from .common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, PROG, Subcommands, cli_words, error
from .keygen import make_private_folders, names_a_folder

__all__ = ["NEW_KEY_ENV", "add_parser"]

#: The environment variable ``rekey`` reads the new key from, without ``--new-key-file``.
NEW_KEY_ENV = "NEXUS_JOURNAL_NEW_KEY"
_MAKE = "make one with `nexus-reactive journal keygen --out KEYFILE`"


def add_parser(
    commands: Subcommands[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add ``journal`` and its commands to ``commands``."""
    journal = commands.add_parser(
        "journal",
        parents=[common],
        help="encrypt, decrypt, re-key or check a journal (persist=); make its key",
        description="Manage the key of an encrypted journal (persist_key=) and migrate a "
        f"journal between plain and encrypted. Keys come from --key-file or {JOURNAL_KEY_ENV}"
        " (64 hex characters), never from the command line. A journal is changed only "
        "while no client has it open, atomically: on any failure it stays as it was.",
    )
    actions = journal.add_subparsers(title="commands", metavar="COMMAND", required=True)

    keygen = actions.add_parser(
        "keygen",
        parents=[common],
        help="make a journal key (32 random bytes)",
        description="Write a new journal key, as 64 hex characters, to a file readable by "
        "its owner only (0600); `--out -` prints it instead (to pipe into a secret store).",
    )
    keygen.add_argument(
        "--out",
        default="journal.key",
        metavar="PATH",
        help="where to write it (default: ./journal.key; '-' for standard output)",
    )
    keygen.add_argument("--force", action="store_true", help="overwrite an existing file")
    keygen.set_defaults(command=_keygen, default_log_level="warning")

    for name, help_text in (
        ("encrypt", "encrypt a plain journal with the key (every message kept)"),
        ("decrypt", "make an encrypted journal plain again (every message kept)"),
        ("rekey", "re-encrypt a journal under a new key (key rotation)"),
        ("check", "say whether a journal is encrypted; with its key, check every row"),
    ):
        action = actions.add_parser(
            # No abbreviations: `--key` must not pass for `--key-file` (a key there would be
            # on the command line).
            name,
            parents=[common],
            help=help_text,
            description=help_text,
            allow_abbrev=False,
        )
        action.add_argument("path", metavar="PATH", help="the journal's file (persist=)")
        action.add_argument(
            "--key-file",
            metavar="KEYFILE",
            help="the file holding the journal's key"
            + (" (the new key, for encrypt)" if name == "encrypt" else "")
            + ": 64 hex characters, as 'journal keygen' writes them; a path, never the key "
            f"(default: ${JOURNAL_KEY_ENV})",
        )
        if name == "rekey":
            action.add_argument(
                "--new-key-file",
                metavar="KEYFILE",
                help="the file holding the new key, as for --key-file: a path, never the key "
                f"(default: ${NEW_KEY_ENV})",
            )
        action.set_defaults(command=_run, action=name, default_log_level="warning")


def _keygen(args: argparse.Namespace) -> int:
    key = secrets.token_bytes(KEY_SIZE).hex()
    if args.out == "-":
        print(key)
        return EXIT_OK
    if names_a_folder(args.out):
        error(
            f"journal keygen: --out {args.out} is a folder; --out names the key's file: "
            f"--out {os.path.join(args.out, 'journal.key')}"
        )
        return EXIT_USAGE
    out = os.path.expanduser(args.out)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if args.force else os.O_EXCL)
    try:
        make_private_folders(Path(out).parent)  # as keygen's: ~/.nexus/journal.key works
        fd = os.open(out, flags, 0o600)
    except FileExistsError:
        error(f"journal keygen: {args.out} already exists; pass --force to replace it")
        return EXIT_FAILURE
    except OSError as exc:
        error(f"journal keygen: cannot write {args.out}: {exc.strerror or exc}")
        return EXIT_FAILURE
    with os.fdopen(fd, "w") as file:
        os.chmod(out, 0o600)  # an existing file (--force) keeps no wider mode
        file.write(key + "\n")
    print(
        f"wrote a new journal key to {out} (mode 0600): keep it secret and keep a "
        "copy; without it an encrypted journal cannot be read",
        file=sys.stderr,
    )
    return EXIT_OK


def _key(path: str | None, env: str, flag: str) -> bytes | None:
    """The key from ``path`` (``flag``), else from ``env``, else ``None``.

    Raises:
        ConfigError: the file cannot be read or the value is not a key.
    """
    advice = f"{_MAKE}, or write 32 random bytes' 64 hex characters"
    if path is not None:
        path = os.path.expanduser(path)  # as the shell would have, had it not been quoted
        if not os.path.exists(path) and key_like(path):
            raise ConfigError(
                f"{flag} takes the path of a key file; this is no file and looks like a key: "
                "never put a key on the command line (other users can see it). Write it to "
                f"a file readable by you only and pass that, or set {env}"
            )
        if path.endswith(".pub"):
            # keygen's PATH.pub holds 64 hex digits too, so its content would pass.
            raise ConfigError(
                f"{flag} {path} looks like the public half of a key pair ('keygen' writes "
                "PATH.pub): anyone may know a public key, so it cannot keep a journal "
                f"secret; {advice} (a journal key file whose name ends in .pub: rename it)"
            )
        try:
            with open(path, "rb") as file:
                raw = file.read(4096)
                mode = os.fstat(file.fileno()).st_mode
        except OSError as exc:
            raise ConfigError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            print(
                f"{PROG} journal: warning: {flag} {path} is "
                f"readable by other users (mode {stat.S_IMODE(mode):04o}): `chmod 600 {path}`",
                file=sys.stderr,
            )
        if raw.lstrip().startswith(b"-----BEGIN"):
            raise ConfigError(
                f"{flag} {path} holds a PEM key (a signing or TLS key?), not a journal key: "
                f"a journal has a key of its own; {advice}"
            )
        return key_bytes(raw, name=f"{flag} {path}", advice=advice)
    value = os.environ.get(env)
    if value:
        return key_bytes(value, name=env, advice=advice)
    return None


def _run(args: argparse.Namespace) -> int:
    from ..journal_migrate import migrate

    action: str = args.action
    try:
        key = _key(args.key_file, JOURNAL_KEY_ENV, "--key-file")
        if action == "check":
            return _check(args.path, key)
        new_key = None
        if action == "rekey":
            new_key = _key(args.new_key_file, NEW_KEY_ENV, "--new-key-file")
            if new_key is None:
                return _usage(
                    f"rekey needs the new key: --new-key-file KEYFILE ({_MAKE}) or {NEW_KEY_ENV}"
                )
        if key is None:
            which = "the key to encrypt with" if action == "encrypt" else "the journal's key"
            more = f" ({_MAKE})" if action == "encrypt" else ""
            return _usage(f"{action} needs {which}: --key-file KEYFILE{more} or {JOURNAL_KEY_ENV}")
        if action == "encrypt":
            new_key, key = key, None
        done = migrate(args.path, old_key=key, new_key=new_key)
    except ConfigError as exc:
        return _usage(cli_words(str(exc)))
    except PersistenceError as exc:
        error(f"journal {action}: {cli_words(str(exc))}")
        return EXIT_FAILURE
    result = {
        "encrypt": "encrypted",
        "decrypt": "decrypted: it is plain text now",
        "rekey": "re-encrypted under the new key",
    }[action]
    print(
        f"{done.path}: {result} ({done.outbox} outbox and {done.history} history rows"
        + (f"; {done.quarantined} in quarantine" if done.quarantined else "")
        + ")"
    )
    if done.unreadable:
        print(
            f"{done.unreadable} row(s) did not authenticate and were kept in quarantine, "
            f"not restored: `nexus-reactive journal check {done.path}` lists them",
            file=sys.stderr,
        )
    return EXIT_OK


def _usage(message: str) -> int:
    error(f"journal: {message}")
    return EXIT_USAGE


def _check(path: str, key: bytes | None) -> int:
    from ..journal_inspect import inspect_journal

    report = inspect_journal(path, key)
    for line in report.lines:
        print(line)
    for problem in report.problems:
        error(f"journal check: {cli_words(problem)}")
    return EXIT_FAILURE if report.problems else EXIT_OK
