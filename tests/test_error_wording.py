"""Errors a new user meets first, with the newest features: each must say what went
wrong and what to do, in the words of the interface used (flags in the command line,
keywords in Python).

Each case is a slip made while following the documentation literally: a ``.pub`` file
given as the private key, the private key pinned or let in, a flag of another
subcommand, a lazy client waited on by watching its state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nexus_reactive import ConfigError, WebSocketConfig, WebSocketService
from nexus_reactive.cli import main
from nexus_reactive.cli.common import SERVE_FLAGS, cli_words
from nexus_reactive.core.opening import opening
from nexus_reactive.errors import AuthenticationError
from nexus_reactive.framing import load_server_key
from nexus_reactive.signing import generate_keypair, load_signing_key, write_keypair
from nexus_reactive.testing import NexusServer, client_config, wait_for_state

KEY = "error-wording-key"


@pytest.fixture
def keypair(tmp_path: Path) -> Path:
    """A key pair as ``nexus-reactive keygen`` writes it: ``id`` and ``id.pub``."""
    path = tmp_path / "id"
    write_keypair(path, generate_keypair())
    return path


# --- key files, in Python and on the command line ----------------------------------------


def test_a_public_key_given_as_the_signing_key_is_named_as_such(keypair: Path) -> None:
    with pytest.raises(ConfigError, match=r"signing_key file .*id\.pub.* without '\.pub'"):
        load_signing_key(str(keypair) + ".pub")


def test_a_missing_signing_key_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"signing_key file .* `nexus-reactive keygen --out"):
        load_signing_key(str(tmp_path / "nope"))


def test_the_private_key_pinned_as_server_key_says_to_pin_the_public_one(keypair: Path) -> None:
    with pytest.raises(ConfigError, match=r"holds a private key; pin the server's public key"):
        load_server_key(str(keypair))


def test_serve_says_signing_key_without_an_environment_variable_it_does_not_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["serve", "--port", "0", "--api-key", KEY, "--engine", "echo"]
    assert main([*argv, "--require-frames", "sealed"]) == 2
    err = capsys.readouterr().err
    assert "--require-frames needs --signing-key" in err
    assert "NEXUS_SIGNING_KEY" not in err


def test_serve_names_the_flag_when_signing_key_is_the_pub_file(
    keypair: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "--port", "0", "--api-key", KEY, "--engine", "echo"]
    assert main([*argv, "--signing-key", str(keypair) + ".pub"]) == 2
    err = capsys.readouterr().err
    assert "--signing-key file" in err and "without '.pub'" in err


def test_an_allowed_pubkey_given_the_private_key_file_says_to_pass_the_pub_one(
    keypair: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "--port", "0", "--api-key", KEY, "--engine", "echo"]
    assert main([*argv, "--allowed-pubkey", str(keypair)]) == 2
    err = capsys.readouterr().err
    assert "--allowed-pubkey file" in err and "holds a private key" in err
    assert "'.pub' file" in err


def test_a_flag_said_twice_by_a_message_in_both_spellings_is_said_once() -> None:
    server_said = (
        "this server requires sealed frames: pin its public key (server_key=..., "
        "--server-key) and set encrypt=True (--encrypt)"
    )
    assert cli_words(server_said) == (
        "this server requires sealed frames: pin its public key (--server-key) and set --encrypt"
    )
    assert cli_words("needs signing_key", flags=SERVE_FLAGS) == "needs --signing-key"


@pytest.mark.parametrize(
    ("argv", "meant"),
    [
        (["journal", "decrypt", "client.db", "--key", "journal.key"], "--key-file"),
        (["serve", "--server-key", "server.pub"], "--signing-key"),
        (["serve", "--encrypt"], "--require-frames"),
        (["ask", "--sever-key", "ab", "q"], "--server-key"),
    ],
)
def test_an_unknown_flag_gets_its_subcommands_usage_and_the_flag_meant(
    argv: list[str], meant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"usage: nexus-reactive {argv[0]}" in err
    assert f"(did you mean {meant}?)" in err


# --- signed and sealed frames against a server that cannot, or wants more ---------------


def test_a_pinned_server_key_against_a_server_without_key_pairs_names_it() -> None:
    _, refused = opening(True, "none", pins_server_key=True)
    assert refused is not None and "Remove server_key and signing_key" in str(refused)
    _, refused = opening(True, "none")
    assert refused is not None and "Remove signing_key," in str(refused)


async def test_a_server_requiring_sealed_frames_tells_a_signing_client_to_encrypt() -> None:
    server_key, client_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    async with NexusServer(signing_key=server_key, require_frames="sealed") as strict:
        signed_only = client_config(
            strict.url, strict.key, signing_key=client_key, server_key=server_key.public_key()
        )
        with pytest.raises(AuthenticationError, match=r"signed were asked for: .*encrypt=True"):
            async with WebSocketService(signed_only):
                pass


# --- config values ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "1000", 1.5, True])
@pytest.mark.parametrize("name", ["dedupe_size", "outbox_limit", "max_message_size"])
def test_a_count_that_is_not_an_int_is_refused_by_name(name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"{name} must be a whole number"):
        WebSocketConfig(url="ws://localhost:1", api_key=KEY, **{name: value})


def test_a_key_files_path_given_as_persist_key_says_to_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "journal.key").write_text("00" * 32 + "\n")
    monkeypatch.chdir(tmp_path)
    wanted = r"not a file's path .*Path\('journal.key'\)\.read_bytes"
    with pytest.raises(ConfigError, match=wanted):
        WebSocketConfig(
            url="ws://localhost:1", api_key=KEY, persist="client.db", persist_key="journal.key"
        )


# --- lazy=True: waiting on state alone ----------------------------------------------------


async def test_waiting_for_a_lazy_client_to_connect_says_that_watching_opens_nothing() -> None:
    async with NexusServer() as server, WebSocketService(server.config(lazy=True)) as service:
        with pytest.raises(TimeoutError, match="watching state opens nothing"):
            await wait_for_state(service, "connected", timeout=0.2)
        assert server.stats.connections_total == 0
