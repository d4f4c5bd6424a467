"""Client-side security: API keys (rotating, never leaked), insecure transports,
pacing, and a scan of logs, reprs and errors for secrets."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nexus_reactive import (
    AuthenticationError,
    ConfigError,
    NexusConnectionError,
    WebSocketConfig,
    WebSocketService,
    use_websocket,
)
from nexus_reactive.core import TokenBucket

from .conftest import KEY, Nexus
from .faults import FaultProxy, wait_for

SEED_HEX = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"


def test_ws_to_a_remote_host_needs_allow_insecure() -> None:
    with pytest.raises(ConfigError, match="clear text") as info:
        WebSocketConfig(url="ws://nexus.example.com:8000", api_key="k")
    assert "wss://" in str(info.value) and "allow_insecure" in str(info.value)
    WebSocketConfig(url="ws://nexus.example.com:8000", api_key="k", allow_insecure=True)
    for loopback in ("ws://localhost:1", "ws://127.0.0.1:1", "ws://[::1]:1", "ws://127.8.9.1"):
        WebSocketConfig(url=loopback)
    WebSocketConfig(url="wss://nexus.example.com")


async def test_a_callable_key_is_called_on_every_attempt(start_nexus: Any) -> None:
    server = await start_nexus(api_keys=[f"key-{n}" for n in range(1, 10)])
    calls: list[str] = []

    async def rotating() -> str:
        calls.append(f"key-{len(calls) + 1}")
        return calls[-1]

    proxy = FaultProxy("127.0.0.1", server.port)
    await proxy.start()
    service = WebSocketService(server.config(url=proxy.url(), api_key=rotating))
    try:
        await service.connect()
        await service.ask("with the first key")
        await proxy.cut()
        await wait_for(lambda: proxy.connections == 2 and service.state.value.connected)
        await service.ask("with a fresh key")
    finally:
        await service.close()
        await proxy.close()
    # Exactly one call per attempt (issue 12, item 9: the first attempt called it twice).
    assert calls == [f"key-{n}" for n in range(1, 1 + proxy.connections)]


async def test_a_sync_callable_key_works(nexus: Nexus) -> None:
    async with WebSocketService(nexus.config(api_key=lambda: KEY)) as service:
        assert (await service.ask("sync key")).answer


async def test_the_key_travels_only_in_the_header(aiohttp_server: Any) -> None:
    seen: list[tuple[str, str | None]] = []
    frames: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append((str(request.url), request.headers.get("x-api-key")))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            frames.append(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/path", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    config = WebSocketConfig(url=f"ws://127.0.0.1:{server.port}/path?room=1", api_key=KEY)
    async with WebSocketService(config) as service:
        service.send_query("hello")
        await wait_for(lambda: len(frames) == 1)
    assert len(seen) == 1
    url, header = seen[0]
    assert header == KEY
    assert KEY not in url and url.endswith("/path?room=1")
    assert KEY not in frames[0]


def test_token_bucket_delays_and_never_drops() -> None:
    bucket = TokenBucket(rate=10.0, burst=2, now=0.0)
    waits = [bucket.take(0.0) for _ in range(5)]
    assert waits[:2] == [0.0, 0.0]  # the burst goes at once
    assert waits[2:] == pytest.approx([0.1, 0.2, 0.3])  # then one every 1/rate
    assert bucket.take(10.0) == 0.0  # refilled (up to the burst) after a pause
    bucket.pause_until(20.0)
    assert bucket.take(19.0) == pytest.approx(1.0)  # a server's retry_after holds it


def test_token_bucket_without_rate_only_honours_pauses() -> None:
    bucket = TokenBucket(rate=None)
    assert [bucket.take(0.0) for _ in range(100)] == [0.0] * 100
    bucket.pause_until(5.0)
    assert bucket.take(4.0) == pytest.approx(1.0)


async def test_client_rate_paces_the_wire(nexus: Nexus) -> None:
    loop = asyncio.get_running_loop()
    async with WebSocketService(nexus.config(rate=20.0, burst=1)) as service:
        start = loop.time()
        await asyncio.gather(*(service.ask(f"paced {i}") for i in range(6)))
        elapsed = loop.time() - start
    # Six messages at 20/s with a burst of one cannot all go in under 5/20 s.
    assert elapsed >= 5 / 20 * 0.9
    assert nexus.stats.asks_received == 6  # delayed, none dropped


async def test_secrets_never_appear_in_logs_reprs_or_errors(
    start_nexus: Any, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    """The scan: run the client through success, failure and debug frame tracing,
    and look for the API key and the private key everywhere it could leak."""
    caplog.set_level(logging.DEBUG)
    server = await start_nexus()
    texts: list[str] = []
    key_obj = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(SEED_HEX))

    async with use_websocket(server.config()) as store:
        await wait_for(lambda: store.state.value.connected)
        store.send_message("hello")
        await wait_for(lambda: len(store.messages.value) == 1)
        texts += [repr(store), str(store.service), repr(store.service.config), store._repr_html_()]
        texts += [repr(store.state), repr(store.messages.value), str(store.state.value)]

    bad = WebSocketService(server.config(api_key="wrong-" + KEY))
    with pytest.raises(AuthenticationError) as info:
        await bad.connect()
    texts += [str(info.value), repr(info.value), str(bad.state.value)]
    await bad.close()

    for signing_key in (SEED_HEX, key_obj):
        config = server.config(signing_key=signing_key, auth_timeout=0.3)
        texts += [repr(config), str(config)]

    for junk in (SEED_HEX[:-2] + "zz", SEED_HEX[:62], str(tmp_path / "missing.pem")):
        service = WebSocketService(server.config(signing_key=junk))
        with pytest.raises(ConfigError) as error_info:
            await service.connect()
        texts += [str(error_info.value), repr(error_info.value)]
        await service.close()

    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.args) for record in caplog.records]
    blob = "\n".join(texts)
    assert KEY not in blob
    assert SEED_HEX not in blob and SEED_HEX.upper() not in blob
    assert any("->" in r.getMessage() for r in caplog.records if r.name.endswith("frames"))


async def test_nexus_debug_logs_frames_to_stderr_without_secrets(nexus: Nexus) -> None:
    import os
    import sys

    code = (
        "import asyncio\n"
        "from nexus_reactive import WebSocketService, WebSocketConfig\n"
        "async def main():\n"
        f"    config = WebSocketConfig({nexus.url!r})\n"
        "    async with WebSocketService(config) as service:\n"
        "        await service.ask('debug me')\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "NEXUS_DEBUG": "1", "NEXUS_API_KEY": KEY}
    # Not subprocess.run: the server under test runs on this event loop.
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), 60)
    stdout, stderr = out.decode(), err.decode()
    assert child.returncode == 0, stderr
    assert "nexus_reactive.frames" in stderr and "-> " in stderr
    assert "debug me" in stderr  # the frame itself
    assert "state: connected" in stderr
    assert KEY not in stderr + stdout


async def test_proxy_credentials_and_url_tokens_never_appear_in_logs_reprs_or_errors(
    start_nexus: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan, for the network options' secrets: a proxy's user and password, and a token in the
    URL's query string (fixed, or from a URL provider), through success, a proxy that
    refuses (407), an unreachable server and frame tracing."""
    from .proxy_servers import HttpProxy

    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    caplog.set_level(logging.DEBUG)
    user, password, token = "proxy-user-88", "proxy-pass-93e1", "url-token-c4f7"
    server = await start_nexus()
    base = f"ws://127.0.0.1:{server.port}/?token={token}"
    texts: list[str] = []
    async with HttpProxy(user=user, password=password) as proxy:
        good = f"http://{user}:{password}@127.0.0.1:{proxy.port}"
        async with use_websocket(server.config(url=base, proxy=good)) as store:
            await wait_for(lambda: store.state.value.connected)
            store.send_message("hello")
            await wait_for(lambda: len(store.messages.value) == 1)
            texts += [repr(store), str(store.service), repr(store.service.config)]
            texts += [str(store.state.value), store._repr_html_()]

        bad = server.config(url=lambda: base, proxy=good.replace(password, password + "x"))
        service = WebSocketService(bad)
        with pytest.raises(NexusConnectionError) as info:
            await service.connect()
        texts += [str(info.value), repr(info.value), str(service.state.value), repr(bad)]
        await service.close()

    unreachable = server.config(
        url=f"ws://127.0.0.1:1/?token={token}&room=7", max_reconnect_attempts=1
    )
    service = WebSocketService(unreachable)
    with pytest.raises(NexusConnectionError) as info:
        await service.connect()
    texts += [str(info.value), repr(info.value), str(service.state.value), repr(unreachable)]
    await service.close()
    assert "?token=<redacted>&room=<redacted>" in str(info.value)

    # aiohttp's own access log of the test server is no log of ours (the reference
    # server's runner redacts it: test_the_reference_servers_access_log_redacts_queries).
    records = [r for r in caplog.records if r.name != "aiohttp.access"]
    texts += [record.getMessage() for record in records]
    texts += [str(record.args) for record in records]
    blob = "\n".join(texts)
    for secret in (password, token, user):
        assert secret not in blob, secret
    assert "token=<redacted>" in blob


def test_the_reference_servers_access_log_redacts_queries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from unittest import mock

    from nexus_reactive.server.runner import RedactedAccessLogger

    caplog.set_level(logging.INFO)
    access = RedactedAccessLogger(logging.getLogger("aiohttp.access"), "")
    request = mock.Mock(remote="127.0.0.1", method="GET", path_qs="/ws?token=s3cr3t&a=1")
    access.log(request, mock.Mock(status=101), 0.25)
    assert caplog.messages == ['127.0.0.1 "GET /ws?token=<redacted>&a=<redacted>" 101 0.250s']


async def test_scheme_less_and_at_sign_proxy_secrets_never_appear(
    start_nexus: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``HTTP_PROXY=user:password@host:port`` (no scheme, as curl accepts) is read as
    ``http://``; a password with an ``@`` is redacted whole; no message quotes a raw
    proxy string."""
    from nexus_reactive.config_checks import redact_url

    from .proxy_servers import HttpProxy

    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ws_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    caplog.set_level(logging.DEBUG)
    user, password = "proxy-user-42", "s3cret@PW-77"
    texts: list[str] = []
    server = await start_nexus()
    async with HttpProxy(user=user, password=password) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"{user}:{password}@127.0.0.1:{proxy.port}")
        async with use_websocket(server.config(trust_env=True)) as store:
            await wait_for(lambda: store.state.value.connected)
            texts += [repr(store), str(store.state.value), repr(store.service.config)]
        assert proxy.forwarded == 1  # through the proxy, with its credentials

    monkeypatch.setenv("HTTP_PROXY", f"{user}:{password}@proxy.corp:3128")  # the reviewer's
    service = WebSocketService(server.config(trust_env=True))
    with pytest.raises(NexusConnectionError) as info:
        await service.connect()
    texts += [str(info.value), repr(info.value), str(service.state.value)]
    await service.close()

    for bad in (f"{user}:{password}@proxy:3128", f"ftp://{user}:{password}@proxy:3128"):
        with pytest.raises(ConfigError) as config_error:
            WebSocketConfig(url="wss://h/", proxy=bad)
        texts.append(str(config_error.value))
    config = WebSocketConfig(url="wss://h/", proxy=f"http://{user}:{password}@proxy:3128")
    assert "proxy='http://<redacted>@proxy:3128'" in repr(config)
    texts.append(repr(config))
    assert redact_url(f"x {user}:{password}@h:1 y") == "x <redacted>@h:1 y"
    assert redact_url("mail a@b.example") == "mail a@b.example"  # no password: kept

    records = [r for r in caplog.records if r.name != "aiohttp.access"]
    texts += [record.getMessage() for record in records]
    blob = "\n".join(texts)
    for secret in (password, "PW-77", user):
        assert secret not in blob, secret


@pytest.mark.parametrize("where", ["provider", "transport"])
async def test_unknown_failures_are_redacted_in_errors_and_logs(
    start_nexus: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """A failure of no known kind (a URL provider's ValueError, or one from the dial
    itself) may quote the URL with its token: the error, state.error and every log
    record, tracebacks included, show it redacted."""
    from nexus_reactive import aiohttp_transport

    caplog.set_level(logging.DEBUG)
    token = "tok-5e1f-secret"
    server = await start_nexus()
    url = f"ws://127.0.0.1:{server.port}/?token={token}"

    def provider() -> str:
        if where == "provider":
            raise ValueError(f"the token service refused {url}")
        return url

    async def broken_dial(session: Any, dialled: Any, **_: Any) -> Any:
        raise ValueError(f"cannot dial {dialled}")

    if where == "transport":
        monkeypatch.setattr(aiohttp_transport, "open_transport", broken_dial)
    service = WebSocketService(server.config(url=provider, max_reconnect_attempts=1))
    with pytest.raises(NexusConnectionError) as info:
        await service.connect()
    state_error = str(service.state.value.error)
    await service.close()

    blob = "\n".join(
        [str(info.value), state_error]
        + [r.getMessage() for r in caplog.records]
        + [logging.Formatter().format(r) for r in caplog.records]
    )
    assert token not in blob
    if where == "provider":  # its type and where, never its text
        assert "URL provider raised ValueError (at test_security_client.py:" in state_error
    else:
        assert "token=<redacted>" in state_error and "ValueError" in state_error
