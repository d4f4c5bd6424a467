"""``import nexus_reactive`` stays light: the heavy parts load when they are used.

Checked through ``sys.modules`` in a fresh interpreter, never by timing (the
benchmark's ``import`` section times it).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Loaded only when used: aiohttp (and yarl) at the first connection, cryptography
#: when a signing key is used, sqlite3 when a journal opens (persist=), the reference
#: server and the CLI when run.
HEAVY = (
    "aiohttp",
    "yarl",
    "cryptography",
    "nexus_reactive.aiohttp_transport",
    "nexus_reactive.server",
    "nexus_reactive.cli",
    "nexus_reactive.signing",
    "nexus_reactive.handshake",
    "sqlite3",
)


def _loaded(statement: str) -> list[str]:
    code = (
        "import json, sys\n"
        f"{statement}\n"
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    loaded: list[str] = json.loads(out)
    return loaded


@pytest.mark.parametrize(
    "statement",
    [
        "import nexus_reactive",
        "from nexus_reactive import WebSocketConfig, WebSocketService, use_websocket",
        "from nexus_reactive.transport import Transport, TransportFactory",
        # A config (the URL is checked with yarl, loaded there) and a store not yet
        # connected: still no aiohttp, cryptography or server.
        "import nexus_reactive as n; n.WebSocketConfig(url='ws://localhost:1')",
    ],
)
def test_importing_the_client_loads_no_heavy_module(statement: str) -> None:
    loaded = [m for m in _loaded(statement) if m != "yarl" or "WebSocketConfig(" not in statement]
    assert loaded == [], f"{statement!r} imported {loaded}: import them where they are used"


def test_the_aiohttp_names_still_import_from_the_transport_module() -> None:
    from nexus_reactive.aiohttp_transport import AiohttpTransport as direct
    from nexus_reactive.transport import AiohttpTransport, open_session, open_transport

    assert AiohttpTransport is direct
    assert callable(open_session) and callable(open_transport)
