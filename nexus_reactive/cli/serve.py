"""``nexus-reactive serve``: run the reference server."""

from __future__ import annotations

import argparse
import logging
import os

from ..errors import ConfigError
from ..server import API_KEY_ENV, EchoEngine, Engine, run_server
from . import keys
from .common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    SERVE_FLAGS,
    Subcommands,
    cli_words,
    error,
    non_negative_float,
    positive_float,
    positive_int,
)

__all__ = ["add_parser", "run"]


def add_parser(
    commands: Subcommands[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add ``serve`` and its options to ``commands``."""
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
        metavar="HEX|PATH",
        help="a client's public key to let in: the 64 hex digits 'keygen' prints, or the "
        "PATH.pub file it writes; repeat for several. Implies --require-signature",
    )
    auth.add_argument(
        "--signing-key",
        metavar="PATH",
        default=None,
        help="the file of the server's own Ed25519 private key (as 'keygen' writes it; a "
        "path, not the key: command lines are visible to other users): sign, and with the "
        "encryption extra decrypt, frames for clients that pin its public key (printed at "
        "start). Implies --require-signature",
    )
    auth.add_argument(
        "--require-frames",
        choices=("signed", "sealed"),
        default=None,
        help="refuse clients that do not ask for signed (or sealed: encrypted) frames; "
        "needs --signing-key",
    )
    auth.add_argument(
        "--auth-timeout",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="time a client has to answer the challenge (default: 10)",
    )
    limits = serve.add_argument_group("rate limiting")
    limits.add_argument(
        "--rate",
        type=positive_float,
        default=None,
        metavar="PER_SECOND",
        help="messages per second allowed per API key (default: no limit)",
    )
    limits.add_argument(
        "--burst",
        type=positive_int,
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
        help="stream answers word by word (response_chunk messages); the echo engine "
        "streams, so this implies --engine echo",
    )
    demo.add_argument(
        "--stream-delay",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="pause between streamed words (default: 0)",
    )
    serve.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    """Run the server until Ctrl-C or SIGTERM."""
    api_keys: list[str] | None = args.api_keys or None
    if api_keys is None and not os.environ.get(API_KEY_ENV):
        error(f"serve: no API key; pass --api-key KEY or set {API_KEY_ENV}")
        return EXIT_USAGE
    if args.burst is not None and args.rate is None:
        error("serve: --burst needs --rate")
        return EXIT_USAGE
    try:
        allowed = keys.allowed_pubkeys(args.allowed_pubkeys)
        signing_key = keys.signing_key(args.signing_key, "serve") if args.signing_key else None
        engine = _engine(args)
        run_server(
            args.host,
            args.port,
            api_keys=api_keys,
            certfile=args.certfile,
            keyfile=args.keyfile,
            engine=engine,
            require_signature=args.require_signature,
            allowed_pubkeys=allowed,
            signing_key=signing_key,
            require_frames=args.require_frames,
            auth_timeout=args.auth_timeout,
            rate_limit=args.rate,
            rate_burst=args.burst,
        )
    except ConfigError as exc:
        error(f"serve: {cli_words(str(exc), flags=SERVE_FLAGS)}")
        return EXIT_USAGE
    except OSError as exc:
        error(f"serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return EXIT_FAILURE
    return EXIT_OK


def _engine(args: argparse.Namespace) -> Engine:
    if args.engine == "echo" or args.stream:
        if args.engine == "docs" and args.docs is not None:
            raise ConfigError("--stream streams the echo engine; drop --docs or --stream")
        logging.getLogger("nexus_reactive.server").info(
            "answering by echoing the question%s",
            " (--stream: word by word, with --engine echo)" if args.stream else "",
        )
        return EchoEngine(stream=args.stream, delay=args.stream_delay)
    from ..server.docsearch import DocsEngine

    try:
        engine = DocsEngine(args.docs)
    except ConfigError as exc:
        # Never fall back to echo silently: a server that answers "You asked: ..." when
        # it was meant to answer from the docs looks broken in a way nobody can see.
        where = f"--docs {args.docs}" if args.docs is not None else "the installed docs"
        # The engine's message ends with what to pass it (--docs DIR, in cli_words).
        raise ConfigError(
            f"the docs engine cannot start from {where}: {exc}; or pass --engine echo to "
            "answer by echoing the question"
        ) from None
    logging.getLogger("nexus_reactive.server").info(
        "answering from %d passages of documentation", engine.passages
    )
    return engine
