"""The ``nexus-reactive`` command: keygen, serve (TLS, key-pair auth, rate, stream) and ask.

``serve`` runs in a real subprocess and is reached over loopback; ``ask`` too,
so that exit codes and output are exactly what a user sees. Fast argument and
configuration errors run in-process through :func:`main`.
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

from nexus_reactive.cli import build_parser, cli_words, main
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
    args: Sequence[str], api_key: str | None, *, pass_fds: tuple[int, ...] = (), **env: str
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nexus_reactive",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**_env(api_key), **env},
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


# --- a CLI that speaks CLI: flags, exit codes, each failure once ---------------------------

PYTHON_KEYWORD = re.compile(r"\b[a-z]+_[a-z_]+=|allow_insecure|max_reconnect_attempts|signing_key")


def assert_speaks_cli(err: str) -> None:
    assert not PYTHON_KEYWORD.search(err), err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"printed {len(lines)} lines, expected the error once: {err}"
    assert lines[0].startswith("nexus-reactive ")


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    from importlib.metadata import version

    assert capsys.readouterr().out.strip() == f"nexus-reactive {version('nexus-reactive')}"


def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for code in ("0 ", "2 ", "3 ", "4 ", "5 "):
        assert f"\n  {code}" in out


def test_keygen_creates_missing_folders_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["keygen", "--out", "~/.nexus/keys/id"]) == 0
    for folder in (tmp_path / ".nexus", tmp_path / ".nexus" / "keys"):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    key = tmp_path / ".nexus" / "keys" / "id"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert (tmp_path / ".nexus" / "keys" / "id.pub").read_text().strip() == (
        capsys.readouterr().out.strip()
    )


async def test_ask_refused_key_exits_3_printed_once() -> None:
    async with served() as url:
        code, out, err = await run_cli(["ask", "--url", url, "hi"], api_key="wrong-key-93b1")
    assert code == 3, err
    assert out == ""
    assert_speaks_cli(err)
    assert "--api-key" in err and "NEXUS_API_KEY" in err


async def test_ask_unreachable_exits_4_and_names_the_flag() -> None:
    code, _, err = await run_cli(
        ["ask", "--url", "ws://127.0.0.1:9", "--retries", "0", "hi"], api_key=KEY
    )
    assert code == 4, err
    assert_speaks_cli(err)
    assert "--retries" in err


async def test_ask_over_plain_ws_to_another_host_names_allow_insecure() -> None:
    code, _, err = await run_cli(["ask", "--url", "ws://example.invalid:9", "hi"], api_key=KEY)
    assert code == 2
    assert_speaks_cli(err)
    assert "--allow-insecure" in err


async def test_a_timeout_that_looks_like_milliseconds_is_refused_in_flags_terms() -> None:
    code, out, err = await run_cli(["ask", "--timeout", "60000", "hi"], api_key=KEY)
    assert code == 2, err
    assert out == ""
    assert_speaks_cli(err)
    assert "--timeout 60000 looks like milliseconds" in err
    assert "this option is in seconds: --timeout 60.0" in err


async def test_an_unusual_timeout_is_warned_about_once_in_flags_terms() -> None:
    code, _, err = await run_cli(
        ["ask", "--url", "ws://127.0.0.1:9", "--retries", "0", "--timeout", "900", "hi"],
        api_key=KEY,
    )
    assert code == 4, err
    warning, failure = [line for line in err.splitlines() if line.strip()]
    assert warning == (
        "nexus-reactive ask: warning: --timeout 900 is 15 min; if you meant milliseconds, "
        "this option is in seconds: --timeout 0.9"
    )
    assert_speaks_cli(failure)


def test_config_errors_read_as_flags() -> None:
    assert cli_words("unknown option api_keys: did you mean api_key?") == (
        "unknown option api_keys: did you mean --api-key?"
    )
    assert cli_words(
        "request_timeout=60000 looks like milliseconds (the TypeScript design's unit); "
        "this option is in seconds: request_timeout=60.0 (at most 3600, i.e. 1 h)"
    ) == (
        "--timeout 60000 looks like milliseconds; this option is in seconds: --timeout 60.0 "
        "(at most 3600, i.e. 1 h)"
    )


async def test_ask_without_an_answer_in_time_exits_5() -> None:
    async with served("--stream", "--stream-delay", "5") as url:
        code, _, err = await run_cli(
            ["ask", "--url", url, "--timeout", "0.5", "slow, please"], api_key=KEY
        )
    assert code == 5, err
    assert "--timeout" in err or "timeout" in err


async def test_ask_signs_with_signing_key_from_the_flag_or_the_environment(
    tmp_path: Path,
) -> None:
    key_path = tmp_path / "id"
    assert main(["keygen", "--out", str(key_path)]) == 0
    pubkey = (tmp_path / "id.pub").read_text().strip()
    async with served("--allowed-pubkey", pubkey) as url:
        code, out, err = await run_cli(
            ["ask", "--url", url, "--signing-key", str(key_path), "signed?"], api_key=KEY
        )
        assert code == 0, err
        assert out.startswith("You asked: signed?")
        code, out, err = await run_cli(
            ["ask", "--url", url, "by env?"], api_key=KEY, NEXUS_SIGNING_KEY=str(key_path)
        )
        assert code == 0, err
        code, out, err = await run_cli(["ask", "--url", url, "unsigned?"], api_key=KEY)
    assert code == 3, err
    assert_speaks_cli(err)
    assert "--signing-key" in err and "NEXUS_SIGNING_KEY" in err


async def test_serve_signs_frames_with_its_key_and_ask_pins_it(tmp_path: Path) -> None:
    assert main(["keygen", "--out", str(tmp_path / "client")]) == 0
    assert main(["keygen", "--out", str(tmp_path / "server")]) == 0
    assert main(["keygen", "--out", str(tmp_path / "other")]) == 0
    client = ["--signing-key", str(tmp_path / "client")]
    printed: list[str] = []
    async with served(
        "--signing-key", str(tmp_path / "server"), "--require-frames", "signed", server_key=printed
    ) as url:
        (pubkey,) = printed
        assert pubkey == (tmp_path / "server.pub").read_text().strip()
        for pin in (pubkey, str(tmp_path / "server.pub")):
            for extra in ([], ["--encrypt"]):
                code, out, err = await run_cli(
                    ["ask", "--url", url, *client, "--server-key", pin, *extra, "pinned?"],
                    api_key=KEY,
                )
                assert code == 0, err
                assert out.startswith("You asked: pinned?")
        # The wrong pin: fatal, in the command's words.
        wrong = (tmp_path / "other.pub").read_text().strip()
        code, _, err = await run_cli(
            ["ask", "--url", url, *client, "--server-key", wrong, "wrong?"], api_key=KEY
        )
        assert code == 3, err
        assert wrong in err and pubkey in err and "--server-key" in err
        assert_speaks_cli(err)
        # Not signing, where the server requires it.
        code, _, err = await run_cli(["ask", "--url", url, *client, "plain?"], api_key=KEY)
        assert code == 3, err
        assert "--server-key" in err and "frames_refused" in err
        assert_speaks_cli(err)
    code, _, err = await run_cli(
        ["ask", "--url", "ws://127.0.0.1:9", "--encrypt", "encrypted?"], api_key=KEY
    )
    assert code == 2 and "--encrypt needs --server-key" in err


async def test_nexus_debug_prints_each_log_line_once() -> None:
    async with served() as url:
        code, _, err = await run_cli(["ask", "--url", url, "debug?"], api_key=KEY, NEXUS_DEBUG="1")
    assert code == 0, err
    lines = [line for line in err.splitlines() if " DEBUG: " in line]
    assert lines, err
    assert len(lines) == len(set(lines)), err
    assert any("nexus_reactive.frames" in line for line in lines)


async def test_ask_prints_a_streamed_answer_as_its_chunks_arrive() -> None:
    async with served("--stream", "--stream-delay", "0.3") as url:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "nexus_reactive",
            "ask",
            "--url",
            url,
            "one two three four",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_env(),
        )
        assert proc.stdout is not None
        try:
            first = await asyncio.wait_for(proc.stdout.read(4), PROCESS_TIMEOUT)
            assert first == b"You "
            assert proc.returncode is None  # still answering: the piece came early
            rest, err = await asyncio.wait_for(proc.communicate(), PROCESS_TIMEOUT)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, err
    assert (first + rest).decode().splitlines()[0] == "You asked: one two three four"


async def test_serve_without_docs_fails_clearly(tmp_path: Path) -> None:
    code, _, err = await run_cli(
        ["serve", "--port", "0", "--docs", str(tmp_path / "missing")], api_key=KEY
    )
    assert code == 2
    assert_speaks_cli(err)
    assert "--docs" in err and "--engine echo" in err
