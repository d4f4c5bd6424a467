"""The ``nexus-reactive`` command (also ``python -m nexus_reactive``).

Subcommands::

    nexus-reactive serve [--host 127.0.0.1] [--port 8000] [--api-key KEY]
                         [--certfile PEM [--keyfile PEM]]
                         [--require-signature] [--allowed-pubkey HEX ...]
                         [--rate PER_SECOND [--burst N]] [--stream [--stream-delay S]]
                         [--engine docs|echo] [--docs DIR]
    nexus-reactive chat [--url ws://localhost:8000] [--api-key KEY] [--signing-key PATH]
                        [--team-id ID] [--allow-insecure]
    nexus-reactive ask [--url ws://localhost:8000] [--api-key KEY] [--signing-key PATH]
                       [--team-id ID] [--allow-insecure] [--timeout S] [--retries N] "question"
    nexus-reactive keygen [--out ./nexus_ed25519] [--force]
    nexus-reactive --version

Each subcommand is a function ``(args) -> exit code`` registered in
:func:`build_parser`; the exit codes are :data:`EXIT_CODES`. The library's errors
speak Python (``api_key=...``); :func:`cli_words` rewrites them in the command's own
terms (``--api-key``) before they are printed, once, on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from .config import WebSocketConfig
from .errors import (
    AuthenticationError,
    ConfigError,
    NexusConnectionError,
    NexusError,
    RequestTimeout,
    UsageError,
)
from .logs import debug_requested, enable_debug_logging
from .messages import AskResponse, ResponseMessage
from .server import API_KEY_ENV, EchoEngine, Engine, run_server
from .service import WebSocketService
from .signing import generate_keypair, write_keypair

__all__ = ["EXIT_CODES", "build_parser", "cli_words", "main"]

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
    "overwrite": "--force",
}
_PHRASES = {
    "DocsEngine(folder=...)": "--docs DIR",
    # A flag's unit is in its help; the library's messages compare with the TypeScript API.
    " (the TypeScript design's unit)": "",
    " to WebSocketConfig (or use_websocket)": "",
    " (None retries forever)": "",
    "ssl_context or certfile/keyfile": "--certfile/--keyfile",
}
# A keyword, and what follows it: a number given to it (kept: "--timeout 30.0"), or
# "=...", "=True"... (dropped: the flag alone says it).
_KEYWORD = re.compile(
    r"(?<![\w-])(" + "|".join(map(re.escape, _FLAGS)) + r")"
    r"(?:=(?P<number>\d+(?:\.\d+)?)(?!\w)|=(?:\.\.\.|True|False|None)?)?(?!\w)"
)

LOG_LEVELS = ("debug", "info", "warning", "error")
#: Where ``keygen`` writes the private key by default (the public key goes to ``.pub``).
DEFAULT_KEY_PATH = "nexus_ed25519"

Command = Callable[[argparse.Namespace], int]


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
        help="how much to log to stderr (default: info for serve, warning for ask)",
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A reactive client, and a reference server, for Nexus.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="run the reference server",
        description="Run the reference Nexus server until Ctrl-C or SIGTERM.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=8000, help="TCP port; 0 picks a free one (default: 8000)"
    )
    serve.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"an accepted API key; repeat for several (default: ${API_KEY_ENV}). "
        f"Prefer {API_KEY_ENV}: arguments are visible to other local users.",
    )
    tls = serve.add_argument_group("TLS (serve wss://)")
    tls.add_argument("--certfile", metavar="PEM", help="the server certificate (chain), PEM")
    tls.add_argument(
        "--keyfile", metavar="PEM", help="its unencrypted private key, PEM (default: in certfile)"
    )
    auth = serve.add_argument_group("key-pair authentication")
    auth.add_argument(
        "--require-signature",
        action="store_true",
        help="challenge every connection; serve only clients that sign it with an Ed25519 key",
    )
    auth.add_argument(
        "--allowed-pubkey",
        action="append",
        dest="allowed_pubkeys",
        metavar="HEX",
        help="a public key let in (as 'keygen' prints it); repeat for several. "
        "Implies --require-signature",
    )
    auth.add_argument(
        "--auth-timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="time a client has to answer the challenge (default: 10)",
    )
    limits = serve.add_argument_group("rate limiting")
    limits.add_argument(
        "--rate",
        type=_positive_float,
        default=None,
        metavar="PER_SECOND",
        help="messages per second allowed per API key (default: no limit)",
    )
    limits.add_argument(
        "--burst",
        type=_positive_int,
        default=None,
        metavar="N",
        help="messages a key may send at once (default: the rate, rounded up)",
    )
    demo = serve.add_argument_group("answers")
    demo.add_argument(
        "--engine",
        choices=("docs", "echo"),
        default="docs",
        help="docs: answer from a folder of Markdown/text (default); echo: repeat the question",
    )
    demo.add_argument(
        "--docs",
        metavar="DIR",
        default=None,
        help="the folder the docs engine answers from (default: the project's own docs)",
    )
    demo.add_argument(
        "--stream",
        action="store_true",
        help="stream answers word by word (response_chunk messages); echo engine only",
    )
    demo.add_argument(
        "--stream-delay",
        type=_non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="pause between streamed words (default: 0)",
    )
    serve.set_defaults(command=_serve)

    ask = commands.add_parser(
        "ask",
        parents=[common],
        help="ask a server one question and print the answer",
        description="Connect, ask one question, print the answer, and exit.",
    )
    ask.add_argument("question", help="the question to ask")
    ask.add_argument(
        "--url", default="ws://localhost:8000", help="server URL (default: ws://localhost:8000)"
    )
    ask.add_argument(
        "--api-key",
        dest="api_key",
        metavar="KEY",
        help=f"the API key (default: ${API_KEY_ENV}; prefer it: arguments are visible "
        "to other local users)",
    )
    _client_options(ask)
    ask.add_argument("--team-id", default=None, metavar="ID", help="scope the question to a team")
    ask.add_argument(
        "--timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="seconds to wait for the answer (default: 30)",
    )
    ask.add_argument(
        "--retries",
        type=_non_negative_int,
        default=2,
        metavar="N",
        help="connection retries before giving up (default: 2)",
    )
    # Failures are printed once, by the command: the library's own warnings about
    # them would say the same again (--log-level warning shows them).
    ask.set_defaults(command=_ask, default_log_level="error")

    keygen = commands.add_parser(
        "keygen",
        parents=[common],
        help="make an Ed25519 key pair for key-pair authentication",
        description="Write a new private key (mode 0600) and its public key (PATH.pub); "
        "print the public key, for the server's --allowed-pubkey.",
    )
    keygen.add_argument(
        "--out",
        default=DEFAULT_KEY_PATH,
        metavar="PATH",
        help=f"where to write the private key (default: ./{DEFAULT_KEY_PATH})",
    )
    keygen.add_argument("--force", action="store_true", help="overwrite an existing key at PATH")
    keygen.set_defaults(command=_keygen, default_log_level="warning")

    chat = commands.add_parser(
        "chat",
        parents=[common],
        help="chat with a server in the terminal (needs nexus-reactive[tui])",
        description="A terminal chat UI built on the store (Textual).",
    )
    chat.add_argument("--url", default="ws://localhost:8000", help="server URL")
    chat.add_argument("--api-key", dest="api_key", metavar="KEY", help=f"default: ${API_KEY_ENV}")
    _client_options(chat)
    chat.add_argument("--team-id", default=None, metavar="ID", help="scope the chat to a team")
    chat.set_defaults(command=_chat, default_log_level="error")

    # --- more subcommands go here: add a parser with parents=[common]
    # --- and set_defaults(command=handler), handler: (argparse.Namespace) -> int.

    return parser


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--signing-key",
        metavar="PATH",
        default=None,
        help="the Ed25519 private key (as 'keygen' writes it) for servers that require "
        f"key-pair authentication (default: ${SIGNING_KEY_ENV})",
    )
    parser.add_argument(
        "--allow-insecure",
        action="store_true",
        help="send the API key over plain ws:// to a host that is not loopback",
    )


def _version() -> str:
    try:
        return metadata.version("nexus-reactive")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "(not installed)"


_EPILOG = "exit codes:\n" + "\n".join(
    f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items()
)


def cli_words(message: str) -> str:
    """Rewrite a library error message in the command's terms: flags, not keywords.

    ``api_key=...`` becomes ``--api-key``, ``signing_key`` ``--signing-key (or
    NEXUS_SIGNING_KEY)``, ``allow_insecure=True`` ``--allow-insecure``,
    ``max_reconnect_attempts`` ``--retries``, ``request_timeout=60000``
    ``--timeout 60000``, and so on.

    Args:
        message: the library's message.

    Returns:
        The message with every keyword it knows replaced by its flag.
    """
    for phrase, replacement in _PHRASES.items():
        message = message.replace(phrase, replacement)
    return _KEYWORD.sub(
        lambda match: _FLAGS[match[1]] + (f" {match['number']}" if match["number"] else ""),
        message,
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
    return command(args)


def _serve(args: argparse.Namespace) -> int:
    api_keys: list[str] | None = args.api_keys or None
    if api_keys is None and not os.environ.get(API_KEY_ENV):
        _error(f"serve: no API key; pass --api-key KEY or set {API_KEY_ENV}")
        return EXIT_USAGE
    if args.burst is not None and args.rate is None:
        _error("serve: --burst needs --rate")
        return EXIT_USAGE
    try:
        engine = _engine(args)
        run_server(
            args.host,
            args.port,
            api_keys=api_keys,
            certfile=args.certfile,
            keyfile=args.keyfile,
            engine=engine,
            require_signature=args.require_signature,
            allowed_pubkeys=args.allowed_pubkeys,
            auth_timeout=args.auth_timeout,
            rate_limit=args.rate,
            rate_burst=args.burst,
        )
    except ConfigError as exc:
        _error(f"serve: {cli_words(str(exc))}")
        return EXIT_USAGE
    except OSError as exc:
        _error(f"serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return EXIT_FAILURE
    return EXIT_OK


def _engine(args: argparse.Namespace) -> Engine:
    if args.engine == "echo" or args.stream:
        if args.engine == "docs" and args.docs is not None:
            raise ConfigError("--stream streams the echo engine; drop --docs or --stream")
        return EchoEngine(stream=args.stream, delay=args.stream_delay)
    from .server.docsearch import DocsEngine

    try:
        engine = DocsEngine(args.docs)
    except ConfigError as exc:
        # Never fall back to echo silently: a server that answers "You asked: ..." when
        # it was meant to answer from the docs looks broken in a way nobody can see.
        where = f"--docs {args.docs}" if args.docs is not None else "the installed docs"
        raise ConfigError(
            f"the docs engine cannot start from {where}: {exc}. Pass --docs DIR (a folder "
            "of .md/.txt/.rst files), or --engine echo to answer by echoing the question"
        ) from None
    logging.getLogger("nexus_reactive.server").info(
        "answering from %d passages of documentation", engine.passages
    )
    return engine


def _chat(args: argparse.Namespace) -> int:
    try:
        from . import chat
    except ImportError:
        _error("chat: the chat app needs Textual: pip install 'nexus-reactive[tui]'")
        return EXIT_USAGE
    try:
        config = _client_config(args, "chat")
    except NexusError as exc:
        _error(f"chat: {cli_words(str(exc))}")
        return _exit_code(exc)
    return chat.run_chat(config, args.team_id)


def _keygen(args: argparse.Namespace) -> int:
    out = Path(os.path.expanduser(args.out))
    try:
        _make_private_folders(out.parent)
        pubkey = write_keypair(out, generate_keypair(), overwrite=args.force)
    except FileExistsError:
        _error(f"keygen: {args.out} or {args.out}.pub already exists; pass --force to replace it")
        return EXIT_FAILURE
    except OSError as exc:
        _error(f"keygen: cannot write {args.out}: {exc.strerror or exc}")
        return EXIT_FAILURE
    print(pubkey)
    print(
        f"wrote the private key to {out} (mode 0600, keep it secret) and the public "
        f"key to {out}.pub",
        file=sys.stderr,
    )
    return EXIT_OK


def _client_config(args: argparse.Namespace, command: str, **options: Any) -> WebSocketConfig:
    """The client's config from the flags; the config's warnings printed in flags' terms."""
    signing_key = args.signing_key or os.environ.get(SIGNING_KEY_ENV) or None
    if signing_key is not None:
        signing_key = os.path.expanduser(signing_key)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        config = WebSocketConfig(
            url=args.url,
            api_key=args.api_key,
            signing_key=signing_key,
            allow_insecure=args.allow_insecure,
            **options,
        )
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            _error(f"{command}: warning: {cli_words(str(warning.message))}")
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return config


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, ConfigError | UsageError):
        return EXIT_USAGE
    if isinstance(exc, AuthenticationError):
        return EXIT_AUTH
    if isinstance(exc, NexusConnectionError):
        return EXIT_UNREACHABLE
    if isinstance(exc, RequestTimeout):
        return EXIT_TIMEOUT
    return EXIT_FAILURE


def _ask(args: argparse.Namespace) -> int:
    streamed = _Printer()
    try:
        # --timeout bounds the one ask: the config's request_timeout, checked as such.
        config = _client_config(
            args, "ask", max_reconnect_attempts=args.retries, request_timeout=args.timeout
        )
        answer = asyncio.run(
            _ask_streaming(config, args.question, args.team_id, args.timeout, streamed)
        )
    except NexusError as exc:
        streamed.end_line()
        _error(f"ask: {cli_words(str(exc))}")
        return _exit_code(exc)
    except KeyboardInterrupt:
        streamed.end_line()
        return EXIT_INTERRUPTED
    if not streamed.printed:
        print(answer.answer, end="")
    print()
    if answer.context:
        print(f"\ncontext: {answer.context}")
    if answer.usage is not None:
        u = answer.usage
        print(
            f"\n(tokens: {u.prompt_tokens} prompt + {u.completion_tokens} completion "
            f"= {u.total_tokens})",
            file=sys.stderr,
        )
    return EXIT_OK


class _Printer:
    """Writes a streamed answer's pieces to stdout as they arrive."""

    def __init__(self) -> None:
        self.printed = False

    def __call__(self, piece: str) -> None:
        self.printed = True
        sys.stdout.write(piece)
        sys.stdout.flush()

    def end_line(self) -> None:
        if self.printed:
            print()


async def _ask_streaming(
    config: WebSocketConfig,
    question: str,
    team_id: str | None,
    timeout: float,
    on_piece: Callable[[str], None],
) -> AskResponse:
    """Ask once; hand each piece of the answer to ``on_piece`` as it comes."""
    loop = asyncio.get_running_loop()
    async with WebSocketService(config) as service:
        final: asyncio.Future[AskResponse] = loop.create_future()

        def on_response(message: ResponseMessage) -> None:
            if not final.done():
                final.set_result(message.payload)

        def on_error(exc: Exception) -> None:
            if not final.done():
                final.set_exception(exc)

        # The one ask of this process: the only response the service will see.
        responses = service.responses.subscribe(on_response)
        pieces = service.ask_stream(question, team_id=team_id, timeout=timeout).subscribe(
            on_next=on_piece, on_error=on_error
        )
        try:
            return await final
        finally:
            pieces.dispose()
            responses.dispose()


def _make_private_folders(folder: Path) -> None:
    """Create ``folder`` and any missing parents, each readable by its owner only (0700)."""
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask


def _number(text: str, kind: type[float] | type[int]) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _positive_float(text: str) -> float:
    value = _number(text, float)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text, float)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return int(value)


def _positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return int(value)


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


def _error(message: str) -> None:
    print(f"{PROG} {message}", file=sys.stderr)
