"""The ``nexus-reactive`` command (also ``python -m nexus_reactive``).

Subcommands::

    nexus-reactive serve [--host 127.0.0.1] [--port 8000] [--api-key KEY]
                         [--certfile PEM [--keyfile PEM]]
                         [--require-signature] [--allowed-pubkey HEX|PATH ...]
                         [--signing-key PATH [--require-frames signed|sealed]]
                         [--rate PER_SECOND [--burst N]] [--stream [--stream-delay S]]
                         [--engine docs|echo] [--docs DIR]
    nexus-reactive chat [--url ws://localhost:8000] [--api-key KEY] [--signing-key PATH]
                        [--server-key HEX|PATH [--encrypt]] [--team-id ID] [--allow-insecure]
                        [--cafile PEM]
    nexus-reactive ask [--url ws://localhost:8000] [--api-key KEY] [--signing-key PATH]
                       [--server-key HEX|PATH [--encrypt]] [--team-id ID] [--allow-insecure]
                       [--cafile PEM] [--timeout S] [--retries N] "question"
    nexus-reactive keygen [--out ./nexus_ed25519] [--force]
    nexus-reactive journal keygen [--out journal.key] [--force]
    nexus-reactive journal encrypt|decrypt|check PATH [--key-file KEYFILE]
    nexus-reactive journal rekey PATH [--key-file KEYFILE] [--new-key-file KEYFILE]
    nexus-reactive --version

Each subcommand is a module of this package (``serve``, ``client`` for ``ask`` and
``chat``, ``keygen``, ``journal``) with a parser and a function ``(args) -> exit code``,
registered in :func:`build_parser`; what they share (the exit codes,
:data:`EXIT_CODES`) is in ``common``. The library's errors speak Python
(``api_key=...``); :func:`cli_words` rewrites them in the command's own terms
(``--api-key``) before they are printed, once, on stderr.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import re
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import NoReturn, cast

from ..logs import debug_requested, enable_debug_logging
from . import client, journal, keygen, serve
from .common import (
    EXIT_CODES,
    EXIT_FAILURE,
    EXIT_USAGE,
    PROG,
    Command,
    Subcommands,
    cli_words,
)

__all__ = ["EXIT_CODES", "build_parser", "cli_words", "main"]

LOG_LEVELS = ("debug", "info", "warning", "error")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand.

    Returns:
        The parser; each subcommand sets ``args.command`` to its handler.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=None,
        help="how much to log to stderr (default: info for serve; error for ask and chat, "
        "which print their failure once themselves; warning for keygen and journal)",
    )
    parser = _Parser(
        prog=PROG,
        description="A reactive client, and a reference server, for Nexus.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    # Its parsers are _Parsers too (argparse makes them of the parent's class).
    commands = cast(
        "Subcommands[argparse.ArgumentParser]",
        parser.add_subparsers(title="commands", metavar="COMMAND"),
    )

    serve.add_parser(commands, common)
    client.add_ask_parser(commands, common)
    keygen.add_parser(commands, common)
    client.add_chat_parser(commands, common)
    journal.add_parser(commands, common)
    # --- more subcommands go here: a module with add_parser(commands, common), whose
    # --- parser has parents=[common] and set_defaults(command=handler),
    # --- handler: (argparse.Namespace) -> int.
    return parser


class _Parser(argparse.ArgumentParser):
    """A parser whose usage errors never repeat a key typed where it does not belong
    (``--key 64hex...``); its subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        super().error(_KEY_WORD.sub("<a key? not shown>", message))

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None:
            # A subcommand's own parser: refuse an unknown flag here, with this
            # subcommand's usage and its closest flag, rather than leave it to the top
            # parser's bare "unrecognized arguments" and its usage line.
            flags = [f for f in self._option_string_actions if f.startswith("--")]
            self.error(f"unrecognized arguments: {' '.join(_hint(w, flags) for w in extras)}")
        return parsed, extras


# Another command's flag, and this one's for the same thing (serve pins no key: it
# has one, --signing-key; it encrypts when a client asks, or --require-frames sealed).
_OTHER_COMMANDS_FLAGS = {"--server-key": "--signing-key", "--encrypt": "--require-frames"}


def _hint(word: str, flags: list[str]) -> str:
    """``word`` (an argument no flag of this command took), with the flag meant."""
    if not word.startswith("--"):
        return word
    name = word.split("=")[0]
    meant = _OTHER_COMMANDS_FLAGS.get(name)
    # A prefix first (journal's commands take no abbreviations: --key for --key-file).
    close = (
        [meant]
        if meant in flags
        else [f for f in flags if f.startswith(name)][:1]
        or difflib.get_close_matches(name, flags, 1, 0.75)
    )
    return f"{word} (did you mean {close[0]}?)" if close else word


# 64 hex characters: a journal key or an Ed25519 seed.
_KEY_WORD = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")


def _version() -> str:
    try:
        return metadata.version("nexus-reactive")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "(not installed)"


_EPILOG = "exit codes:\n" + "\n".join(
    f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items()
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The process exit code.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command | None = getattr(args, "command", None)
    if command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _configure_logging(args.log_level or getattr(args, "default_log_level", "info"))
    try:
        code = command(args)
        sys.stdout.flush()  # a closed pipe shows here, not as Python's noise at exit
    except BrokenPipeError:
        return _reader_gone()
    return code


def _reader_gone() -> int:
    """Whatever read standard output has gone (``nexus-reactive ask ... | head -1``):
    nothing more can be shown, so end quietly, without a traceback. Python flushes
    stdout once more at exit, which would fail again: it goes to /dev/null instead."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is no file (a test's capture)
        pass
    return EXIT_FAILURE


def _configure_logging(level: str) -> None:
    if debug_requested():
        # NEXUS_DEBUG=1: the library's own stderr handler shows everything at DEBUG;
        # a root handler as well would print each line twice.
        enable_debug_logging()
        return
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
