"""The ``nexus-reactive`` command (also ``python -m nexus_reactive``).

Subcommands::

    nexus-reactive serve [--host 127.0.0.1] [--port 8000] [--api-key KEY]
                         [--certfile PEM [--keyfile PEM]]
                         [--require-signature] [--allowed-pubkey HEX ...]
                         [--rate PER_SECOND [--burst N]] [--stream [--stream-delay S]]
    nexus-reactive chat [--url ws://localhost:8000] [--api-key KEY] [--team-id ID]
    nexus-reactive ask [--url ws://localhost:8000] [--api-key KEY] [--team-id ID] "question"
    nexus-reactive keygen [--out ./nexus_ed25519] [--force]

Each subcommand is a function ``(args) -> exit code`` registered in
:func:`build_parser`. Exit codes: 0 success, 1 runtime failure (e.g. the port is
taken), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence

from .config import WebSocketConfig
from .errors import ConfigError, NexusError, UsageError
from .messages import AskResponse
from .server import API_KEY_ENV, EchoEngine, Engine, run_server
from .service import WebSocketService
from .signing import generate_keypair, write_keypair

__all__ = ["build_parser", "main"]

PROG = "nexus-reactive"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

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
        prog=PROG, description="A reactive client, and a reference server, for Nexus."
    )
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
    ask.add_argument("--team-id", default=None, metavar="ID", help="scope the question to a team")
    ask.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the answer (default: 30)"
    )
    ask.add_argument(
        "--retries",
        type=int,
        default=2,
        help="connection retries before giving up (default: 2)",
    )
    ask.set_defaults(command=_ask, default_log_level="warning")

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
    chat.add_argument("--team-id", default=None, metavar="ID", help="scope the chat to a team")
    chat.set_defaults(command=_chat, default_log_level="error")

    # --- more subcommands go here: add a parser with parents=[common]
    # --- and set_defaults(command=handler), handler: (argparse.Namespace) -> int.

    return parser


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
        _error(f"serve: {exc}")
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
        where = "--docs DIR" if args.docs is not None else "the installed documentation"
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
    argv = ["--url", args.url]
    if args.api_key:
        argv += ["--api-key", args.api_key]
    if args.team_id:
        argv += ["--team-id", args.team_id]
    return chat.main(argv)


def _keygen(args: argparse.Namespace) -> int:
    try:
        pubkey = write_keypair(args.out, generate_keypair(), overwrite=args.force)
    except FileExistsError:
        _error(f"keygen: {args.out} or {args.out}.pub already exists; pass --force to replace it")
        return EXIT_FAILURE
    except OSError as exc:
        _error(f"keygen: cannot write {args.out}: {exc.strerror or exc}")
        return EXIT_FAILURE
    print(pubkey)
    print(
        f"wrote the private key to {args.out} (mode 0600, keep it secret) and the public "
        f"key to {args.out}.pub",
        file=sys.stderr,
    )
    return EXIT_OK


def _ask(args: argparse.Namespace) -> int:
    try:
        config = WebSocketConfig(
            url=args.url, api_key=args.api_key, max_reconnect_attempts=args.retries
        )
        answer = asyncio.run(_ask_once(config, args.question, args.team_id, args.timeout))
    except (ConfigError, UsageError) as exc:
        _error(f"ask: {exc}")
        return EXIT_USAGE
    except NexusError as exc:
        _error(f"ask: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    print(answer.answer)
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


async def _ask_once(
    config: WebSocketConfig, question: str, team_id: str | None, timeout: float
) -> AskResponse:
    async with WebSocketService(config) as service:
        return await service.ask(question, team_id=team_id, timeout=timeout)


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


def _positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return int(value)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _error(message: str) -> None:
    print(f"{PROG} {message}", file=sys.stderr)
