"""The client subcommands: ``nexus-reactive ask`` and ``nexus-reactive chat``."""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

from ..config import WebSocketConfig
from ..core import ConnectionState
from ..errors import ConfigError, NexusError, RequestTimeout
from ..messages import AskResponse, ResponseMessage
from ..server import API_KEY_ENV
from ..service import WebSocketService
from . import keys
from .common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    SIGNING_KEY_ENV,
    Subcommands,
    cli_words,
    error,
    exit_code,
    non_negative_int,
    positive_float,
)

__all__ = ["add_ask_parser", "add_chat_parser", "run_ask", "run_chat"]


def add_ask_parser(
    commands: Subcommands[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add ``ask`` and its options to ``commands``."""
    ask = commands.add_parser(
        "ask",
        parents=[common],
        help="ask a server one question and print the answer",
        description="Connect, ask one question, print the answer, and exit.",
    )
    ask.add_argument("question", type=_question, help="the question to ask")
    _client_options(ask)
    ask.add_argument("--team-id", default=None, metavar="ID", help="scope the question to a team")
    ask.add_argument(
        "--timeout",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="seconds to wait for the answer, connecting included (default: 30)",
    )
    ask.add_argument(
        "--retries",
        type=non_negative_int,
        default=2,
        metavar="N",
        help="connection retries before giving up (default: 2)",
    )
    # Failures are printed once, by the command: the library's own warnings about
    # them would say the same again (--log-level warning shows them).
    ask.set_defaults(command=run_ask, default_log_level="error")


def _question(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(
            'it is empty: ask something, such as nexus-reactive ask "What is Nexus?"'
        )
    return text


def add_chat_parser(
    commands: Subcommands[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add ``chat`` and its options to ``commands``."""
    chat = commands.add_parser(
        "chat",
        parents=[common],
        help="chat with a server in the terminal (needs nexus-reactive[tui])",
        description="A terminal chat UI built on the store (Textual).",
    )
    _client_options(chat)
    chat.add_argument("--team-id", default=None, metavar="ID", help="scope the chat to a team")
    chat.set_defaults(command=run_chat, default_log_level="error")


def _client_options(parser: argparse.ArgumentParser) -> None:
    """The flags ``ask`` and ``chat`` share (one definition: the same help in both)."""
    parser.add_argument(
        "--url", default="ws://localhost:8000", help="server URL (default: ws://localhost:8000)"
    )
    parser.add_argument(
        "--api-key",
        dest="api_key",
        metavar="KEY",
        help=f"the API key (default: ${API_KEY_ENV}; prefer it: arguments are visible "
        "to other local users)",
    )
    parser.add_argument(
        "--signing-key",
        metavar="PATH",
        default=None,
        help="the file of the Ed25519 private key (as 'keygen' writes it; a path, not the "
        "key: command lines are visible to other users) for servers that require key-pair "
        f"authentication (default: ${SIGNING_KEY_ENV})",
    )
    parser.add_argument(
        "--server-key",
        metavar="HEX|PATH",
        default=None,
        help="the server's public key to pin: the 64 hex digits 'serve' prints, or the "
        "PATH.pub file 'keygen' wrote. Every frame both ways is then signed and checked. "
        "Needs --signing-key",
    )
    parser.add_argument(
        "--encrypt",
        action="store_true",
        help="also encrypt every frame end to end (needs --server-key and the encryption extra)",
    )
    parser.add_argument(
        "--allow-insecure",
        action="store_true",
        help="send the API key over plain ws:// to a host that is not loopback",
    )
    parser.add_argument(
        "--cafile",
        metavar="PATH",
        default=None,
        help="for a wss:// server whose certificate a private CA signed: trust the CA "
        "certificates in this PEM file (instead of the system's; setting SSL_CERT_FILE "
        "to it works too)",
    )


def run_ask(args: argparse.Namespace) -> int:
    """Ask one question; print the answer as it is written."""
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
        error(f"ask: {cli_words(str(exc), cafile=args.cafile)}")
        return exit_code(exc)
    except KeyboardInterrupt:
        streamed.end_line()
        return EXIT_INTERRUPTED
    if streamed.broken:
        raise BrokenPipeError  # main() ends quietly
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
        #: Standard output's reader went away (``| head -1``): nothing more is written.
        self.broken = False

    def __call__(self, piece: str) -> None:
        self.printed = True
        if self.broken:
            return
        try:
            sys.stdout.write(piece)
            sys.stdout.flush()
        except BrokenPipeError:  # raised here, it would be logged as a subscriber's error
            self.broken = True

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
    """Ask once; hand each piece of the answer to ``on_piece`` as it comes.

    ``timeout`` (``--timeout``) bounds the whole wait, connecting included: a server
    that accepts the TCP connection and never answers the upgrade would otherwise hold
    the command for every attempt's ``connect_timeout`` first.

    Raises:
        RequestTimeout: no answer within ``timeout``, in the command's words.
    """
    service = WebSocketService(config)
    seen = _Seen()
    service.state.subscribe(seen)
    try:
        async with asyncio.timeout(timeout):
            return await _ask(service, question, team_id, timeout, on_piece)
    except TimeoutError as exc:
        if isinstance(exc, RequestTimeout):
            raise
        raise RequestTimeout(seen.explain(timeout)) from None


class _Seen:
    """What the connection got to before ``--timeout`` ran out."""

    def __init__(self) -> None:
        self.connected = False
        self.error: str | None = None

    def __call__(self, state: ConnectionState) -> None:
        self.connected = self.connected or state.connected
        self.error = state.error or self.error

    def explain(self, timeout: float) -> str:
        if self.connected:
            return (
                f"no answer within --timeout ({timeout:g}s); the server may be slow: "
                "raise --timeout"
            )
        last = f"; last error: {self.error}" if self.error else ""
        return (
            f"no connection within --timeout ({timeout:g}s){last}. Check that the "
            "server is running and answers WebSocket upgrades at --url, or raise --timeout"
        )


async def _ask(
    service: WebSocketService,
    question: str,
    team_id: str | None,
    timeout: float,
    on_piece: Callable[[str], None],
) -> AskResponse:
    loop = asyncio.get_running_loop()
    async with service:
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


def run_chat(args: argparse.Namespace) -> int:
    """Run the Textual chat app."""
    try:
        from .. import chat
    except ImportError:
        error("chat: the chat app needs Textual: pip install 'nexus-reactive[tui]'")
        return EXIT_USAGE
    if not (args.api_key or os.environ.get(API_KEY_ENV)):  # as ask: before any screen
        error(f"chat: no API key: pass --api-key, or set the {API_KEY_ENV} environment variable")
        return EXIT_USAGE
    try:
        config = _client_config(args, "chat")
    except NexusError as exc:
        error(f"chat: {cli_words(str(exc), cafile=args.cafile)}")
        return exit_code(exc)
    return chat.run_chat(config, args.team_id, wording=partial(cli_words, cafile=args.cafile))


def _client_config(args: argparse.Namespace, command: str, **options: Any) -> WebSocketConfig:
    """The client's config from the flags; the config's warnings printed in flags' terms."""
    signing_key: str | None
    if args.signing_key:
        signing_key = keys.signing_key(args.signing_key, command, env=SIGNING_KEY_ENV)
    else:
        signing_key = os.environ.get(SIGNING_KEY_ENV) or None
        if signing_key is not None and not keys.is_key_itself(signing_key):
            signing_key = os.path.expanduser(signing_key)
            keys.warn_if_others_can_read(signing_key, SIGNING_KEY_ENV, command)
    server_key = keys.server_key(args.server_key) if args.server_key else None
    if args.cafile is not None:
        options["ssl"] = _trusting(args.cafile)
        if not args.url.lower().startswith("wss://"):
            error(f"{command}: warning: --cafile is for wss:// URLs; --url does not use TLS")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        config = WebSocketConfig(
            url=args.url,
            api_key=args.api_key,
            signing_key=signing_key,
            server_key=server_key,
            encrypt=args.encrypt,
            allow_insecure=args.allow_insecure,
            **options,
        )
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            error(f"{command}: warning: {cli_words(str(warning.message))}")
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return config


def _trusting(cafile: str) -> ssl.SSLContext:
    """A client context that trusts the CA certificates of ``--cafile`` (and checks host
    names), or a :class:`ConfigError` in the command's words."""
    path = os.path.expanduser(cafile)
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "does not exist"
        raise ConfigError(
            f"--cafile {cafile} {what}: give the file of the CA certificate (PEM) that "
            "signed the server's certificate"
        )
    try:
        return ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"--cafile {cafile} holds no CA certificate in PEM form ({exc.reason or exc}): "
            "give the CA's certificate, a text file that starts with "
            "-----BEGIN CERTIFICATE-----"
        ) from None
    except (OSError, ValueError) as exc:  # unreadable (permissions), not text
        raise ConfigError(f"--cafile {cafile} cannot be read: {exc}") from None
