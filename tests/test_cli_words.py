"""A ``nexus-reactive`` that speaks CLI: flags, exit codes, each failure said once, in the
command's words; signing, pinning, debug output and streamed answers through the command.
Subprocesses over loopback, as test_cli.py runs them."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import pytest

from nexus_reactive.cli import cli_words, main

from .test_cli import KEY, PROCESS_TIMEOUT, _env, assert_speaks_cli, run_cli, served

# --- a CLI that speaks CLI: flags, exit codes, each failure once ---------------------------


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
