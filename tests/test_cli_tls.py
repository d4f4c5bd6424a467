"""TLS as each interface's user meets it: ``--cafile`` (and ``SSL_CERT_FILE``) for the
command's ``wss://`` servers of a private CA, the advice a rejected certificate gets
(``--cafile`` in the command, ``ssl=`` in Python), and a ``wss://`` URL of a server that
does not speak TLS. Real servers on loopback; ``ask`` runs as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nexus_reactive import NexusConnectionError, WebSocketConfig, WebSocketService
from nexus_reactive.cli import main

from .conftest import KEY, Nexus, ServerFactory
from .test_cli import _env, assert_speaks_cli, run_cli
from .tlsutil import make_tls

EXIT_USAGE, EXIT_UNREACHABLE = 2, 4


async def tls_nexus(start_nexus: ServerFactory, tmp_path: Path) -> tuple[Nexus, Path]:
    """A ``wss://`` reference server of a throwaway CA, and that CA's certificate file."""
    nexus = await start_nexus(tls=True)
    assert nexus.ca_pem is not None
    ca = tmp_path / "ca.pem"
    ca.write_bytes(nexus.ca_pem)
    return nexus, ca


def ask(url: str, *options: str) -> list[str]:
    return ["ask", "--url", url, "--retries", "0", *options, "over tls?"]


async def test_cafile_trusts_a_private_ca(start_nexus: ServerFactory, tmp_path: Path) -> None:
    nexus, ca = await tls_nexus(start_nexus, tmp_path)
    code, out, err = await run_cli(ask(nexus.url, "--cafile", str(ca)), KEY)
    assert code == 0, err
    assert "over tls?" in out  # the echo engine's answer


async def test_ssl_cert_file_trusts_a_private_ca_too(
    start_nexus: ServerFactory, tmp_path: Path
) -> None:
    nexus, ca = await tls_nexus(start_nexus, tmp_path)
    code, out, err = await run_cli(ask(nexus.url), KEY, SSL_CERT_FILE=str(ca))
    assert code == 0, err
    assert "over tls?" in out


async def test_a_rejected_certificate_names_cafile_in_the_command(
    start_nexus: ServerFactory, tmp_path: Path
) -> None:
    nexus, _ = await tls_nexus(start_nexus, tmp_path)
    # No CA given at all (some systems set SSL_CERT_FILE to their own bundle).
    code, _, err = await run_cli(ask(nexus.url), KEY, unset=("SSL_CERT_FILE",))
    assert code == EXIT_UNREACHABLE
    assert_speaks_cli(err)
    assert "certificate was rejected" in err
    assert "--cafile PATH" in err and "SSL_CERT_FILE" in err
    assert "ssl=" not in err and "SSLContext" not in err


async def test_a_rejected_certificate_names_ssl_in_python(
    start_nexus: ServerFactory, tmp_path: Path
) -> None:
    nexus, _ = await tls_nexus(start_nexus, tmp_path)
    service = WebSocketService(nexus.config(ssl=True, max_reconnect_attempts=0))
    with pytest.raises(NexusConnectionError) as info:
        await service.connect()
    await service.close()
    assert "ssl=<an ssl.SSLContext that trusts it>" in str(info.value)
    assert "--cafile" not in str(info.value)


async def test_wss_to_a_plain_server_says_try_ws_in_the_command(nexus: Nexus) -> None:
    wss = nexus.url.replace("ws://", "wss://")
    code, _, err = await run_cli(ask(wss, "--retries", "3"), KEY)
    assert code == EXIT_UNREACHABLE
    assert_speaks_cli(err)
    assert f"the server may not use TLS: try ws:// ({nexus.url})" in err
    assert "gave up" not in err  # not retried: it would answer the same again


async def test_wss_to_a_plain_server_says_try_ws_in_python(nexus: Nexus) -> None:
    wss = nexus.url.replace("ws://", "wss://")
    service = WebSocketService(nexus.config(url=wss, ssl=True, max_reconnect_attempts=5))
    with pytest.raises(NexusConnectionError) as info:
        await service.connect()
    await service.close()
    assert not info.value.retryable
    assert "the TLS handshake failed (wrong version number)" in str(info.value)
    assert f"the server may not use TLS: try ws:// ({nexus.url})" in str(info.value)
    assert nexus.stats.connections_total == 0  # no WebSocket was ever opened


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda d: d / "missing.pem", "does not exist"),
        (lambda d: d, "is a folder"),
        (lambda d: _write(d / "key.txt", "not a certificate\n"), "holds no CA certificate in PEM"),
    ],
)
def test_a_cafile_that_is_no_ca_bundle_is_a_usage_error_in_flags(
    make: object,
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in _env().items():
        monkeypatch.setenv(name, value)
    path = make(tmp_path)  # type: ignore[operator]
    assert main(ask("wss://127.0.0.1:9/", "--cafile", str(path))) == EXIT_USAGE
    err = capsys.readouterr().err
    assert_speaks_cli(err)
    assert f"--cafile {path} {said}" in err


def test_cafile_with_a_plain_url_warns_that_it_does_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from nexus_reactive.cli import build_parser, client
    from nexus_reactive.testing.tls import throwaway_tls

    ca = _write(tmp_path / "ca.pem", throwaway_tls().ca_pem.decode())
    args = build_parser().parse_args(ask("ws://127.0.0.1:9/", "--cafile", str(ca)))
    monkeypatch.setenv("NEXUS_API_KEY", KEY)
    config = client._client_config(args, "ask")
    assert config.ssl is not True  # built, and harmless on ws://
    assert "--cafile is for wss:// URLs" in capsys.readouterr().err


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


async def test_a_certificate_for_other_names_says_so_not_to_trust_a_ca(tmp_path: Path) -> None:
    """The CA is trusted (``--cafile``, ``ssl=``) but the certificate names ``localhost``
    and ``127.0.0.1``, not ``::1``: no CA would help, so the advice is the URL's host."""
    tls = make_tls(tmp_path)
    try:
        server = await asyncio.start_server(_hang_up, "::1", 0, ssl=tls.server_context())
    except OSError:
        pytest.skip("no IPv6 loopback here")
    url = f"wss://[::1]:{server.sockets[0].getsockname()[1]}/"
    try:
        code, _, err = await run_cli(ask(url, "--cafile", str(tls.ca_cert)), KEY)
        config = WebSocketConfig(
            url=url, api_key=KEY, ssl=tls.client_context(), max_reconnect_attempts=0
        )
        service = WebSocketService(config)
        with pytest.raises(NexusConnectionError) as info:
            await service.connect()
        await service.close()
    finally:
        server.close()
        await server.wait_closed()
    assert code == EXIT_UNREACHABLE
    assert_speaks_cli(err)
    for said in (err, str(info.value)):
        assert f"cannot connect to {url}: the server's TLS certificate does not name" in said
        assert "certificate is not valid for '::1')" in said  # OpenSSL's reason, one stop
        assert "Use a host name the certificate names in the URL" in said
        assert "--cafile" not in said and "ssl=" not in said and "private CA" not in said
    assert not info.value.retryable


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


# --- a CA was given, and it is not the server's ------------------------------------------


def _other_ca(tmp_path: Path) -> Path:
    """The certificate of a CA that signed nothing the server has."""
    from nexus_reactive.testing.tls import throwaway_tls

    return _write(tmp_path / "other-ca.pem", throwaway_tls().ca_pem.decode())


def _says_the_given_ca_does_not_vouch(said: str) -> None:
    assert "certificate was rejected (" in said
    assert "do not vouch for it" in said
    assert "check that the server sends its whole chain" in said
    assert "If the server uses a private CA" not in said  # as if none had been given
    assert "BEGIN" not in said and "PRIVATE KEY" not in said  # a path, never what is in it


async def test_a_cafile_that_does_not_vouch_for_the_server_is_named(
    start_nexus: ServerFactory, tmp_path: Path
) -> None:
    nexus, _ = await tls_nexus(start_nexus, tmp_path)
    other = _other_ca(tmp_path)
    code, _, err = await run_cli(ask(nexus.url, "--cafile", str(other)), KEY)
    assert code == EXIT_UNREACHABLE
    assert_speaks_cli(err)
    _says_the_given_ca_does_not_vouch(err)
    assert f"the CA certificates in --cafile {other} do not vouch for it" in err
    assert "Pass --cafile the certificate (PEM) of the CA that signed it" in err
    assert "--cafile PATH" not in err and "ssl=" not in err and "SSLContext" not in err


async def test_an_ssl_cert_file_that_does_not_vouch_for_the_server_is_named(
    start_nexus: ServerFactory, tmp_path: Path
) -> None:
    nexus, _ = await tls_nexus(start_nexus, tmp_path)
    other = _other_ca(tmp_path)
    code, _, err = await run_cli(ask(nexus.url), KEY, SSL_CERT_FILE=str(other))
    assert code == EXIT_UNREACHABLE
    assert_speaks_cli(err)
    _says_the_given_ca_does_not_vouch(err)
    assert f"the CA certificates in SSL_CERT_FILE ({other}) do not vouch for it" in err
    assert "Pass --cafile the certificate (PEM) of the CA that signed it" in err
    assert "ssl=" not in err and "SSLContext" not in err


async def test_an_ssl_context_that_does_not_vouch_for_the_server_says_so_in_python(
    start_nexus: ServerFactory, tmp_path: Path
) -> None:
    import ssl

    nexus, _ = await tls_nexus(start_nexus, tmp_path)
    context = ssl.create_default_context(cafile=str(_other_ca(tmp_path)))
    service = WebSocketService(nexus.config(ssl=context, max_reconnect_attempts=3))
    with pytest.raises(NexusConnectionError) as info:
        await service.connect()
    await service.close()
    said = str(info.value)
    _says_the_given_ca_does_not_vouch(said)
    assert "the CA certificates of the ssl= context given do not vouch for it" in said
    assert "Pass ssl=<an ssl.SSLContext that trusts the CA that signed it>" in said
    assert "--cafile" not in said
    assert not info.value.retryable  # the same CA would be refused the same way again
    assert nexus.stats.connections_total == 0


# --- ws:// to a server that requires TLS -------------------------------------------------


async def test_ws_to_a_tls_server_says_try_wss_in_python(
    start_nexus: ServerFactory, tmp_path: Path
) -> None:
    nexus, _ = await tls_nexus(start_nexus, tmp_path)
    plain = nexus.url.replace("wss://", "ws://")
    service = WebSocketService(nexus.config(url=plain, max_reconnect_attempts=5))
    with pytest.raises(NexusConnectionError) as info:
        await service.connect()
    await service.close()
    said = str(info.value)
    assert "hung up on the plain upgrade request" in said
    assert f"the server may require TLS: try wss:// ({nexus.url})" in said
    assert not info.value.retryable  # the same port answers the same way every time
    assert "gave up" not in said
    assert nexus.stats.connections_total == 0


async def test_ws_to_a_tls_server_says_try_wss_in_the_command(
    start_nexus: ServerFactory, tmp_path: Path
) -> None:
    nexus, _ = await tls_nexus(start_nexus, tmp_path)
    plain = nexus.url.replace("wss://", "ws://")
    code, _, err = await run_cli(ask(plain, "--retries", "3"), KEY)
    assert code == EXIT_UNREACHABLE
    assert_speaks_cli(err)
    assert f"the server may require TLS: try wss:// ({nexus.url})" in err
    assert "gave up" not in err  # not retried: it would answer the same again


@pytest.mark.parametrize("reads_first", [False, True], ids=["reset", "disconnected"])
async def test_a_plain_server_that_hangs_up_gets_no_tls_hint_and_is_retried(
    reads_first: bool,
) -> None:
    """A hang-up alone is no sign of TLS (a server restarting hangs up too): only a port
    that completes a TLS handshake gets the hint; this one is retried as before."""
    hung_up: list[int] = []

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung_up.append(1)
        if reads_first:  # the request read: a clean close, not a reset
            await reader.read(1 << 16)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    try:
        config = WebSocketConfig(
            url=url, api_key=KEY, max_reconnect_attempts=2, reconnect_interval=0.01
        )
        service = WebSocketService(config)
        with pytest.raises(NexusConnectionError) as info:
            await service.connect()
        await service.close()
    finally:
        server.close()
        await server.wait_closed()
    assert "TLS" not in str(info.value) and "wss://" not in str(info.value)
    assert "gave up after 3 connection attempts" in str(info.value)
    # Three upgrades (the first and two retries); a clean hang-up after the request is
    # followed by one TLS probe each, a reset by none (one socket per attempt).
    assert len(hung_up) == (6 if reads_first else 3)


def _c_parser() -> bool:
    from aiohttp import http_parser

    return http_parser.HttpResponseParser is not http_parser.HttpResponseParserPy


@pytest.mark.skipif(not _c_parser(), reason="only aiohttp's C parser quotes the bytes")
async def test_a_tls_alert_to_the_plain_upgrade_says_try_wss() -> None:
    """A server that answers the plain request with a TLS alert (as some TLS stacks do),
    and the probe's hello with one too: the bytes alone say it, without a probe."""
    seen: list[bytes] = []

    async def alert(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(5))
        writer.write(b"\x15\x03\x01\x00\x02\x02\x46")  # fatal protocol_version
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(alert, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    try:
        config = WebSocketConfig(url=url, api_key=KEY, max_reconnect_attempts=3)
        service = WebSocketService(config)
        with pytest.raises(NexusConnectionError) as info:
            await service.connect()
        await service.close()
    finally:
        server.close()
        await server.wait_closed()
    assert "the server answered the plain upgrade request in TLS" in str(info.value)
    assert f"try wss:// ({url.replace('ws://', 'wss://')})" in str(info.value)
    assert not info.value.retryable
    assert seen == [b"GET /"]  # one attempt, no probe


# --- ws:// to a TLS port whose server answers plain HTTP with 400 (nginx, Go) -----------

_GO_ANSWER = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"


@contextlib.asynccontextmanager
async def _plain_400_port(context: ssl.SSLContext | None) -> AsyncIterator[tuple[str, list[str]]]:
    """A port that answers a plain HTTP request with a plain 400, as nginx's and Go's TLS
    servers do; with ``context``, it completes a TLS handshake for a client hello.
    Yields its ``ws://`` URL and each connection seen (``"plain"`` or ``"tls"``); on
    exit, stops the server and every connection's handler (none outlives the test)."""
    seen: list[str] = []
    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            first = await reader.read(1)
            if first == b"\x16" and context is not None:  # a TLS record: the hello
                seen.append("tls")
                await _handshake(context, first, reader, writer)
            else:
                seen.append("plain")
                await reader.read(1 << 16)
                writer.write(_GO_ANSWER)
                await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/", seen
    finally:
        server.close()
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def _handshake(
    context: ssl.SSLContext,
    first: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Complete a server-side TLS handshake whose first byte was already read."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(first)
    while True:
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            writer.write(outgoing.read())
            data = await reader.read(1 << 16)
            if not data:
                return
            incoming.write(data)
        else:
            writer.write(outgoing.read())
            await writer.drain()
            await reader.read(1 << 16)  # until the client hangs up
            return


async def _connect_to_a_400_port(
    context: ssl.SSLContext | None,
) -> tuple[NexusConnectionError, list[str], str]:
    """``connect()`` to :func:`_plain_400_port`: the error, the connections it saw,
    and its ``ws://`` URL."""
    async with _plain_400_port(context) as (url, seen):
        service = WebSocketService(WebSocketConfig(url=url, api_key=KEY))
        with pytest.raises(NexusConnectionError) as info:
            await service.connect()
        await service.close()
    return info.value, seen, url


async def test_ws_to_a_tls_port_that_answers_plain_http_400_says_try_wss(
    tmp_path: Path,
) -> None:
    """nginx and Go answer a plain request on their TLS port with a plain HTTP 400; the
    port completes a TLS handshake, so the 400 gets the hint, once, not retried."""
    error, seen, url = await _connect_to_a_400_port(make_tls(tmp_path).server_context())
    said = str(error)
    assert "refused the plain upgrade request (HTTP 400)" in said
    assert f"the server may require TLS: try wss:// ({url.replace('ws://', 'wss://')})" in said
    assert not error.retryable
    assert KEY not in said
    assert seen == ["plain", "tls"]  # one upgrade, one probe


async def test_ws_to_a_tls_port_that_answers_plain_http_400_says_try_wss_in_the_command(
    tmp_path: Path,
) -> None:
    async with _plain_400_port(make_tls(tmp_path).server_context()) as (url, _):
        code, _, err = await run_cli(ask(url, "--retries", "3"), KEY)
    assert code == EXIT_UNREACHABLE
    assert_speaks_cli(err)
    assert f"the server may require TLS: try wss:// ({url.replace('ws://', 'wss://')})" in err


async def test_a_plain_server_answering_400_gets_no_tls_hint() -> None:
    """A 400 from a port that does not speak TLS is the request's fault: the probe finds
    no TLS, and the error is the 400's own, fatal as before."""
    error, seen, _ = await _connect_to_a_400_port(None)
    said = str(error)
    assert "400" in said
    assert "TLS" not in said and "wss://" not in said
    assert not error.retryable
    assert seen == ["plain", "plain"]  # the upgrade, and the probe's hello (not TLS)
