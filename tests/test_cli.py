"""The ``nexus-reactive`` command: keygen, serve (TLS, key-pair auth, rate, stream) and ask.

``serve`` runs in a real subprocess and is reached over loopback; ``ask`` too,
so that exit codes and output are exactly what a user sees. Fast argument and
configuration errors run in-process through :func:`main`. Flags, exit codes and each
failure said once: test_cli_words.py (with the helpers of this file).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import stat
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType

from nexus_reactive.cli import build_parser, main
from nexus_reactive.signing import (
    generate_keypair,
    load_signing_key,
    public_key_hex,
    sign_challenge,
)

from .test_server import TIMEOUT, assert_usable, recv
from .tlsutil import make_tls

KEY = "cli-test-key-5d1e8b"  # distinctive, so output can be scanned for it
PROCESS_TIMEOUT = 30.0
ANNOUNCE = re.compile(rb"nexus-reactive server listening on (wss?://127\.0\.0\.1:\d+)\n")


def _env(api_key: str | None = KEY) -> dict[str, str]:
    unset = ("NEXUS_API_KEY", "NEXUS_SIGNING_KEY", "NEXUS_DEBUG")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    if api_key is not None:
        env["NEXUS_API_KEY"] = api_key
    return env


@contextlib.asynccontextmanager
async def served(
    *options: str,
    server_key: list[str] | None = None,
    log_level: str | None = "warning",
    engine: str | None = "echo",
    env: dict[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
    logged: list[str] | None = None,
) -> AsyncIterator[str]:
    """Run ``nexus-reactive serve --port 0 [--log-level L] [--engine E] <options>``;
    yield its announced URL. With ``--signing-key``, the public key it prints next goes
    into ``server_key``; what it wrote on stderr goes into ``logged`` once it stopped.
    ``log_level``/``engine`` ``None``: serve's own defaults (tests pin the echo engine
    unless they choose: its answers are predictable).

    On exit the server gets SIGTERM and must stop cleanly (exit 0, nothing more on
    stdout, the API key nowhere on stderr).
    """
    chosen = [*(("--log-level", log_level) if log_level else ())]
    if engine is not None and "--engine" not in options:
        chosen += ["--engine", engine]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nexus_reactive",
        "serve",
        "--port",
        "0",
        *chosen,
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**_env(), **(env or {})},
        pass_fds=pass_fds,
    )
    assert proc.stdout is not None and proc.stderr is not None
    # Read as it comes: a full pipe would stall the server (--log-level info).
    stderr = asyncio.ensure_future(proc.stderr.read())
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), PROCESS_TIMEOUT)
        match = ANNOUNCE.fullmatch(line)
        if match is None:
            await asyncio.wait_for(proc.wait(), PROCESS_TIMEOUT)
            pytest.fail(f"no startup line: {line!r}; stderr: {(await stderr).decode()}")
        if "--signing-key" in options:
            line = await asyncio.wait_for(proc.stdout.readline(), PROCESS_TIMEOUT)
            printed = re.fullmatch(rb"server public key: ([0-9a-f]{64})\n", line)
            assert printed is not None, line
            if server_key is not None:
                server_key.append(printed.group(1).decode())
        yield match.group(1).decode()
        proc.terminate()
        out = await asyncio.wait_for(proc.stdout.read(), PROCESS_TIMEOUT)
        await asyncio.wait_for(proc.wait(), PROCESS_TIMEOUT)
        err = (await asyncio.wait_for(stderr, PROCESS_TIMEOUT)).decode()
        if logged is not None:
            logged.append(err)
        assert proc.returncode == 0, err
        assert out == b""
        assert KEY not in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        stderr.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stderr


async def run_cli(
    args: Sequence[str],
    api_key: str | None,
    *,
    pass_fds: tuple[int, ...] = (),
    unset: tuple[str, ...] = (),
    **env: str,
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nexus_reactive",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in {**_env(api_key), **env}.items() if k not in unset},
        pass_fds=pass_fds,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), PROCESS_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


PYTHON_KEYWORD = re.compile(r"\b[a-z]+_[a-z_]+=|allow_insecure|max_reconnect_attempts|signing_key")


def assert_speaks_cli(err: str) -> None:
    assert not PYTHON_KEYWORD.search(err), err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"printed {len(lines)} lines, expected the error once: {err}"
    assert lines[0].startswith("nexus-reactive ")


# --- keygen ------------------------------------------------------------------------------


def test_keygen_writes_an_owner_only_key_and_prints_the_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "client_key"
    assert main(["keygen", "--out", str(path)]) == 0
    out, err = capsys.readouterr()
    pubkey = out.strip()
    assert out == pubkey + "\n"
    assert re.fullmatch(r"[0-9a-f]{64}", pubkey)
    if os.name == "posix":
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert (tmp_path / "client_key.pub").read_text() == pubkey + "\n"
    assert public_key_hex(load_signing_key(path)) == pubkey
    assert str(path) in err
    body = path.read_text().splitlines()[1]
    assert body not in out + err


def test_keygen_refuses_to_overwrite_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "client_key"
    assert main(["keygen", "--out", str(path)]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["keygen", "--out", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "already exists" in err
    assert "--force" in err
    assert public_key_hex(load_signing_key(path)) == first
    assert main(["keygen", "--out", str(path), "--force"]) == 0
    second = capsys.readouterr().out.strip()
    assert second != first
    assert public_key_hex(load_signing_key(path)) == second


def test_keygen_default_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["keygen"]) == 0
    pubkey = capsys.readouterr().out.strip()
    assert (tmp_path / "nexus_ed25519.pub").read_text().strip() == pubkey


# --- serve: configuration errors ---------------------------------------------------------


def test_serve_refuses_a_malformed_allowed_pubkey_without_echoing_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    value = "ab" * 31  # looks like a key (could be a mistyped private seed)
    assert main(["serve", "--port", "0", "--api-key", KEY, "--allowed-pubkey", value]) == 2
    err = capsys.readouterr().err
    assert "64 hex digits" in err
    assert value not in err


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--burst", "5"], "--burst needs --rate"),
        (["--keyfile", "k.pem"], "--keyfile needs --certfile"),
        (["--certfile", "/nonexistent/cert.pem"], "does not exist"),
    ],
)
def test_serve_option_errors_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], mentions: str
) -> None:
    assert main(["serve", "--port", "0", "--api-key", KEY, *args]) == 2
    assert mentions in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--rate", "0"], ["--rate", "fast"], ["--burst", "0"]])
def test_serve_rejects_bad_numbers(capsys: pytest.CaptureFixture[str], bad: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", "0", "--api-key", KEY, *bad])
    assert info.value.code == 2
    assert bad[0] in capsys.readouterr().err


# --- serve: over real sockets ------------------------------------------------------------


async def test_serve_over_tls_announces_wss(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    tls = make_tls(tmp_path)
    async with served("--certfile", str(tls.server_cert), "--keyfile", str(tls.server_key)) as url:
        assert url.startswith("wss://127.0.0.1:")
        async with session.ws_connect(
            url, headers={"x-api-key": KEY}, ssl=tls.client_context()
        ) as ws:
            await assert_usable(ws)
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.ws_connect(url, headers={"x-api-key": KEY})


async def test_serve_with_key_pair_auth_rate_limit_and_streaming(
    session: aiohttp.ClientSession,
) -> None:
    key, stranger = generate_keypair(), generate_keypair()
    options = ("--allowed-pubkey", public_key_hex(key), "--stream", "--rate", "50", "--burst", "50")
    async with served(*options) as url:
        async with session.ws_connect(url, headers={"x-api-key": KEY}) as ws:
            challenge = await recv(ws)
            assert challenge["type"] == "challenge"
            text = challenge["payload"]["challenge"]
            await ws.send_str(
                json.dumps(
                    {
                        "type": "auth",
                        "id": challenge["id"],
                        "payload": {
                            "pubkey": public_key_hex(key),
                            "signature": sign_challenge(key, text),
                            "challenge": text,
                        },
                    }
                )
            )
            assert (await recv(ws))["type"] == "auth_ok"
            await ws.send_str(json.dumps({"type": "ask", "id": "a", "payload": {"query": "hi"}}))
            kinds = []
            while not kinds or kinds[-1] != "response":
                kinds.append((await recv(ws))["type"])
            assert kinds == ["response_chunk", "response_chunk", "response_chunk", "response"]
        async with session.ws_connect(url, headers={"x-api-key": KEY}) as ws:
            challenge = await recv(ws)
            text = challenge["payload"]["challenge"]
            auth = {
                "pubkey": public_key_hex(stranger),
                "signature": sign_challenge(stranger, text),
                "challenge": text,
            }
            await ws.send_str(json.dumps({"type": "auth", "id": challenge["id"], "payload": auth}))
            assert (await recv(ws))["payload"]["code"] == "auth_failed"
            msg = await ws.receive(timeout=TIMEOUT)
            assert msg.type is WSMsgType.CLOSE
            assert msg.data == 4403


# --- ask ---------------------------------------------------------------------------------


async def test_ask_prints_the_answer_and_exits_0() -> None:
    async with served() as url:
        code, out, err = await run_cli(["ask", "--url", url, "what is nexus?"], api_key=KEY)
    assert code == 0, err
    assert out.splitlines()[0] == "You asked: what is nexus?"
    assert "tokens" in err
    assert KEY not in out + err


async def test_ask_with_a_wrong_key_fails_clearly_without_showing_any_key() -> None:
    wrong = "wrong-key-0c4f2a9e"
    async with served() as url:
        code, out, err = await run_cli(["ask", "--url", url, "hello?"], api_key=wrong)
    assert code != 0
    assert out == ""
    assert "401" in err
    assert "API key" in err
    assert wrong not in out + err
    assert KEY not in out + err


async def test_serve_answers_from_the_project_docs_by_default() -> None:
    async with served("--engine", "docs") as url:
        code, out, err = await run_cli(
            ["ask", "--url", url, "How does the client decide when to reconnect?"], api_key=KEY
        )
    assert code == 0, err
    assert out.startswith("From ")  # an extractive answer, quoting a real passage
    assert "reconnect" in out.lower()
    assert "\ncontext: " in out
    assert "tokens" in err


async def test_serve_answers_from_a_docs_folder(tmp_path: Path) -> None:
    (tmp_path / "cheese.md").write_text("# Cheese\n\nGouda is a Dutch cheese aged for months.\n")
    async with served("--engine", "docs", "--docs", str(tmp_path)) as url:
        code, out, err = await run_cli(["ask", "--url", url, "Where is gouda from?"], api_key=KEY)
    assert code == 0, err
    assert "Dutch" in out


def test_chat_is_a_subcommand() -> None:
    parser = build_parser()
    args = parser.parse_args(["chat", "--url", "ws://localhost:9", "--team-id", "t"])
    assert args.team_id == "t" and callable(args.command)
