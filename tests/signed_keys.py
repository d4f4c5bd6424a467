"""Fixtures of the signed-frames tests: a server key, a client key, and a reference
server that signs with the first. Modules import them; each function is named apart
from the argument it fills, so the import does not shadow the tests' arguments."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nexus_reactive.testing import NexusServer

__all__ = ["client_key_fixture", "server_fixture", "server_key_fixture"]


@pytest.fixture(name="server_key")
def server_key_fixture() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(name="client_key")
def client_key_fixture() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(name="server")
async def server_fixture(server_key: Ed25519PrivateKey) -> AsyncIterator[NexusServer]:
    async with NexusServer(signing_key=server_key) as running:
        yield running
