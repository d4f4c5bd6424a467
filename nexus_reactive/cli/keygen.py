"""``nexus-reactive keygen``: make an Ed25519 key pair for key-pair authentication."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..signing import generate_keypair, write_keypair
from .common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Subcommands, error

__all__ = ["DEFAULT_KEY_PATH", "add_parser", "make_private_folders", "names_a_folder", "run"]

#: Where ``keygen`` writes the private key by default (the public key goes to ``.pub``).
DEFAULT_KEY_PATH = "nexus_ed25519"


def add_parser(
    commands: Subcommands[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add ``keygen`` and its options to ``commands``."""
    keygen = commands.add_parser(
        "keygen",
        parents=[common],
        help="make an Ed25519 key pair for key-pair authentication",
        description="Write a new private key (mode 0600, for --signing-key) and its public "
        "key (PATH.pub); print the public key. Give the public key, or PATH.pub, to a "
        "server's --allowed-pubkey or (a server's key) to a client's --server-key.",
    )
    keygen.add_argument(
        "--out",
        default=DEFAULT_KEY_PATH,
        metavar="PATH",
        help=f"where to write the private key (default: ./{DEFAULT_KEY_PATH})",
    )
    keygen.add_argument("--force", action="store_true", help="overwrite an existing key at PATH")
    keygen.set_defaults(command=run, default_log_level="warning")


def run(args: argparse.Namespace) -> int:
    """Write a new key pair; print the public key."""
    out = Path(os.path.expanduser(args.out))
    if names_a_folder(args.out):
        error(
            f"keygen: --out {args.out} is a folder; --out names the private key's file "
            f"(its public key goes next to it, with .pub): "
            f"--out {os.path.join(args.out, DEFAULT_KEY_PATH)}"
        )
        return EXIT_USAGE
    try:
        make_private_folders(out.parent)
        pubkey = write_keypair(out, generate_keypair(), overwrite=args.force)
    except FileExistsError:
        error(f"keygen: {args.out} or {args.out}.pub already exists; pass --force to replace it")
        return EXIT_FAILURE
    except OSError as exc:
        error(f"keygen: cannot write {args.out}: {exc.strerror or exc}")
        return EXIT_FAILURE
    print(pubkey)
    print(
        f"wrote the private key to {out} (mode 0600, keep it secret) and the public "
        f"key to {out}.pub",
        file=sys.stderr,
    )
    return EXIT_OK


def names_a_folder(out: str) -> bool:
    """Whether ``--out`` names a folder (an existing one, or with a trailing slash)
    rather than the file to write: "already exists; pass --force" would be wrong advice
    there, and ``keys/`` would silently become a file named ``keys``."""
    return out.endswith(("/", os.sep)) or os.path.isdir(os.path.expanduser(out))


def make_private_folders(folder: Path) -> None:
    """Create ``folder`` and any missing parents, each readable by its owner only (0700)."""
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
