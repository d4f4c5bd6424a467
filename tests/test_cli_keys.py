"""The flags that take a key, one way in every subcommand.

A public key flag (``serve --allowed-pubkey``, ``ask``/``chat --server-key``) takes the
64 hex digits ``keygen`` prints or the ``PATH.pub`` file it writes (PEM and OpenSSH
public key files too); a private key flag (``--signing-key``, ``journal --key-file``)
takes a file's path, and every form accepted before still is. Errors name the flag,
say what to pass, and never show private key material.

``serve`` and ``ask`` run as real subprocesses over loopback where a server is
involved; configuration errors run in-process through :func:`main`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nexus_reactive.cli import build_parser, main
from nexus_reactive.signing import generate_keypair, public_key_hex, write_keypair

from .test_cli import KEY, run_cli, served

# The library's keywords: the CLI says its flags instead.
PYTHON_WORDS = re.compile(r"\b(server_key|signing_key|allowed_pubkeys|persist_key)\b")
SERVE = ["serve", "--port", "0", "--api-key", KEY, "--engine", "echo"]


def keypair(folder: Path, name: str) -> tuple[Path, Ed25519PrivateKey]:
    """A key pair as ``nexus-reactive keygen`` writes it: ``name`` and ``name.pub``."""
    key = generate_keypair()
    write_keypair(folder / name, key)
    return folder / name, key


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def seed(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return raw.hex()


def assert_no_secret(err: str, key: Ed25519PrivateKey) -> None:
    """Neither the seed nor any line of the key's PEM text is in ``err``."""
    assert seed(key) not in err.lower()
    for line in private_pem(key).decode().splitlines():
        if "-----" not in line:
            assert line not in err


def assert_cli_error(err: str, flag: str) -> None:
    assert flag in err, err
    assert "Traceback" not in err and not PYTHON_WORDS.search(err), err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nexus-reactive "), err


# --- every key flag says which form it takes ---------------------------------------------


def key_flags() -> list[tuple[str, argparse.Action]]:
    """(subcommand, action) for every flag that takes a key, in every subcommand."""
    found: list[tuple[str, argparse.Action]] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}".strip())
            elif any("key" in flag and flag != "--api-key" for flag in action.option_strings):
                found.append((path, action))

    walk(build_parser(), "")
    return found


def test_every_key_flag_says_in_help_whether_it_takes_the_key_or_a_file() -> None:
    flags = {(command, action.option_strings[-1]): action for command, action in key_flags()}
    public = {("serve", "--allowed-pubkey"), ("ask", "--server-key"), ("chat", "--server-key")}
    private = {(c, "--signing-key") for c in ("serve", "ask", "chat")} | {
        *((f"journal {a}", "--key-file") for a in ("encrypt", "decrypt", "rekey", "check")),
        ("journal rekey", "--new-key-file"),
        ("serve", "--keyfile"),
    }
    assert set(flags) == public | private, "a new key flag: say here which form it takes"
    for where in public:
        action = flags[where]
        assert action.metavar == "HEX|PATH", where
        assert action.help is not None and "64 hex digits" in action.help, where
        assert "PATH.pub" in action.help, where
    for where in private:
        action = flags[where]
        assert action.metavar in ("PATH", "KEYFILE", "PEM"), where
        assert action.help is not None, where
        if where[1] != "--keyfile":  # a TLS key: a file by its nature
            assert "a path, n" in action.help, f"{where}: say a path, never the key"


# --- serve --allowed-pubkey: the hex, or a file holding it ------------------------------


async def test_allowed_pubkey_takes_the_hex_the_pub_file_a_pem_or_an_openssh_file(
    tmp_path: Path,
) -> None:
    by_hex, by_pub, by_pem, by_ssh, by_home, stranger = (
        keypair(tmp_path, name) for name in ("hex", "pub", "pem", "ssh", "tilde", "stranger")
    )
    public = {"pem": by_pem[1].public_key(), "ssh": by_ssh[1].public_key()}
    (tmp_path / "pem.pem").write_bytes(
        public["pem"].public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "ssh_id.pub").write_bytes(
        public["ssh"].public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b" someone@example\n"
    )
    home = tmp_path / "home"
    (home / ".nexus").mkdir(parents=True)
    (home / ".nexus" / "client.pub").write_text(public_key_hex(by_home[1]) + "\n")
    allowed = [
        public_key_hex(by_hex[1]).upper(),
        f"{by_pub[0]}.pub",
        str(tmp_path / "pem.pem"),
        str(tmp_path / "ssh_id.pub"),
        "~/.nexus/client.pub",
    ]
    options = [word for value in allowed for word in ("--allowed-pubkey", value)]
    async with serve_logging(*options, env={"HOME": str(home)}) as (url, _):
        for path, _ in (by_hex, by_pub, by_pem, by_ssh, by_home):
            code, out, err = await run_cli(
                ["ask", "--url", url, "--signing-key", str(path), "let in?"], api_key=KEY
            )
            assert code == 0, err
            assert out.startswith("You asked: let in?")
        code, _, err = await run_cli(
            ["ask", "--url", url, "--signing-key", str(stranger[0]), "and me?"], api_key=KEY
        )
    assert code == 3, err
    assert "not allowed" in err


def test_allowed_pubkey_given_the_private_key_file_says_to_pass_the_pub_without_showing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, key = keypair(tmp_path, "id")
    assert main([*SERVE, "--allowed-pubkey", str(path)]) == 2
    err = capsys.readouterr().err
    assert_cli_error(err, "--allowed-pubkey")
    assert "holds a private key" in err and "'.pub' file" in err
    assert_no_secret(err, key)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("missing.pub", "No such file"),
        (".", "Is a directory"),
        ("ab" * 31, "62 hex digits, not 64"),
        ("ab" * 33, "66 hex digits, not 64"),
        ("junk.txt", "neither 64 hex digits nor a PEM public key"),
    ],
)
@pytest.mark.parametrize(("argv", "flag"), [(SERVE, "--allowed-pubkey"), (None, "--server-key")])
def test_a_public_key_flag_that_is_neither_a_key_nor_a_key_file_says_what_to_pass(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    value: str,
    said: str,
    argv: list[str] | None,
    flag: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.txt").write_text("not a key\n")
    client_key, _ = keypair(tmp_path, "client")
    if argv is None:
        argv = ["ask", "--url", "ws://127.0.0.1:9", "--signing-key", str(client_key), "q?"]
    assert main([*argv, flag, value]) == 2
    err = capsys.readouterr().err
    assert_cli_error(err, flag)
    assert said in err
    assert "64 hex digits" in err and "PATH.pub" in err  # what to pass instead
    if re.fullmatch(r"[0-9a-f]+", value):
        assert value not in err  # could be a mistyped private seed


def test_key_material_given_to_a_public_key_flag_is_never_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = generate_keypair()
    pem = private_pem(key).decode()
    looks_secret = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2FsZG8"
    for value in (pem, seed(key) + "ff", looks_secret):
        assert main([*SERVE, "--allowed-pubkey", value]) == 2
        err = capsys.readouterr().err
        assert_cli_error(err, "--allowed-pubkey")
        assert_no_secret(err, key)
        assert looks_secret not in err


# --- ask --server-key: the same forms, checked before connecting ------------------------


async def test_server_key_takes_the_hex_or_the_pub_file_and_a_wrong_one_fails_before_connecting(
    tmp_path: Path,
) -> None:
    server, _ = keypair(tmp_path, "server")
    client, _ = keypair(tmp_path, "client")
    pinned = (tmp_path / "server.pub").read_text().strip()
    async with served("--signing-key", str(server), "--require-frames", "signed") as url:
        for pin in (pinned, pinned.upper(), str(tmp_path / "server.pub")):
            code, out, err = await run_cli(
                ["ask", "--url", url, "--signing-key", str(client), "--server-key", pin, "hi?"],
                api_key=KEY,
            )
            assert code == 0, err
            assert out.startswith("You asked: hi?")
    # The private key pinned by mistake: refused before any connection (none listens).
    pins_private = ["--signing-key", str(client), "--server-key", str(server)]
    code, _, err = await run_cli(
        ["ask", "--url", "ws://127.0.0.1:9", *pins_private, "hi?"], api_key=KEY
    )
    assert code == 2, err
    assert_cli_error(err, "--server-key")
    assert "holds a private key" in err and "cannot connect" not in err


# --- --signing-key: a file's path; the key itself still works, with a warning -------------


async def test_a_signing_key_seed_on_the_command_line_still_works_with_a_warning(
    tmp_path: Path,
) -> None:
    client = generate_keypair()
    async with served("--allowed-pubkey", public_key_hex(client)) as url:
        code, out, err = await run_cli(
            ["ask", "--url", url, "--signing-key", seed(client), "seeded?"], api_key=KEY
        )
    assert code == 0, err
    assert out.startswith("You asked: seeded?")
    assert "warning: --signing-key was given the key itself" in err
    assert "NEXUS_SIGNING_KEY" in err and "keygen --out PATH" in err
    assert_no_secret(err, client)


async def test_serve_with_a_signing_key_seed_warns_and_serves(tmp_path: Path) -> None:
    server = generate_keypair()
    async with serve_logging("--signing-key", seed(server)) as (url, logged):
        assert url.startswith("ws://")
    err = logged()
    assert "warning: --signing-key was given the key itself" in err
    assert "NEXUS_SIGNING_KEY" not in err  # serve reads no environment variable for it
    assert_no_secret(err, server)


@pytest.mark.skipif(os.name != "posix", reason="file modes")
async def test_a_signing_key_file_other_users_can_read_is_warned_about(tmp_path: Path) -> None:
    path, key = keypair(tmp_path, "id")
    path.chmod(0o644)
    code, _, err = await run_cli(
        ["ask", "--url", "ws://127.0.0.1:9", "--retries", "0", "--signing-key", str(path), "q"],
        api_key=KEY,
    )
    assert code == 4, err  # nothing listens: the key itself was used
    assert f"--signing-key {path} is readable by other users (mode 0644)" in err
    assert f"chmod 600 {path}" in err
    code, _, err = await run_cli(
        ["ask", "--url", "ws://127.0.0.1:9", "--retries", "0", "q"],
        api_key=KEY,
        NEXUS_SIGNING_KEY=str(path),
    )
    assert f"NEXUS_SIGNING_KEY {path} is readable by other users" in err
    assert_no_secret(err, key)
    # A .pub given as the private key: the error says so, with no warning about its mode.
    code, _, err = await run_cli(
        ["ask", "--url", "ws://127.0.0.1:9", "--signing-key", f"{path}.pub", "q"], api_key=KEY
    )
    assert code == 2, err
    assert_cli_error(err, "--signing-key")
    assert "without '.pub'" in err


def pipe_holding(data: bytes) -> int:
    """The read end of a pipe holding ``data``, written whole and closed: what a shell's
    ``<(pass show key)`` gives a command as ``/dev/fd/N``."""
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    return read


@pytest.mark.skipif(not Path("/dev/fd").is_dir(), reason="needs /dev/fd")
async def test_keys_through_pipes_are_read_once_and_work(tmp_path: Path) -> None:
    """A key kept off the disk (``<(...)``): checking the file first must not empty it."""
    client = generate_keypair()
    allowed = pipe_holding(public_key_hex(client).encode() + b"\n")
    signing = pipe_holding(private_pem(client))
    try:
        async with serve_logging("--allowed-pubkey", f"/dev/fd/{allowed}", pass_fds=(allowed,)) as (
            url,
            _,
        ):
            ask = ["ask", "--url", url, "--signing-key", f"/dev/fd/{signing}", "piped?"]
            code, out, err = await run_cli(ask, api_key=KEY, pass_fds=(signing,))
    finally:
        os.close(allowed)
        os.close(signing)
    assert code == 0, err
    assert out.startswith("You asked: piped?")
    assert "warning" not in err


# --- journal --key-file: a file's path, never a signing key -----------------------------


def test_journal_key_file_given_a_signing_key_says_it_is_another_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, key = keypair(tmp_path, "id")
    assert main(["journal", "check", str(tmp_path / "client.db"), "--key-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert_cli_error(err, "--key-file")
    assert "holds a PEM key" in err and "journal keygen" in err
    assert_no_secret(err, key)


def test_journal_key_file_given_a_public_key_file_refuses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # keygen's PATH.pub holds 64 hex digits, which would pass for a journal key.
    path, _ = keypair(tmp_path, "id")
    public = Path(f"{path}.pub")
    assert public.exists()
    db = str(tmp_path / "client.db")
    assert main(["journal", "encrypt", db, "--key-file", str(public)]) == 2
    err = capsys.readouterr().err
    assert_cli_error(err, "--key-file")
    assert "public half of a key pair" in err and "journal keygen" in err
    assert not Path(db).exists()


# --- what serve logs about a close it sent ------------------------------------------------


@contextlib.asynccontextmanager
async def serve_logging(
    *options: str, env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()
) -> AsyncIterator[tuple[str, Callable[[], str]]]:
    """:func:`served` at ``--log-level info``; yield its URL and a function that
    returns what it wrote on stderr, once it has stopped."""
    written: list[str] = []
    async with served(
        *options, log_level="info", env=env, pass_fds=pass_fds, logged=written
    ) as url:
        yield url, lambda: written[0]


async def test_serve_logs_4406_after_refusing_a_client_that_does_not_sign_frames(
    tmp_path: Path,
) -> None:
    server, _ = keypair(tmp_path, "server")
    client, _ = keypair(tmp_path, "client")
    async with serve_logging("--signing-key", str(server), "--require-frames", "signed") as (
        url,
        logged,
    ):
        code, _, err = await run_cli(
            ["ask", "--url", url, "--signing-key", str(client), "plain?"], api_key=KEY
        )
        assert code == 3, err
        assert "frames_refused" in err and "--server-key" in err
    log = logged()
    assert re.search(r"connection from \S+ closed by the server \(code 4406\)", log), log
    assert "(code 1000)" not in log
    assert KEY not in log
