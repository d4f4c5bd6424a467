"""Section j: what signed and sealed frames cost (docs/protocol.md, "Signed and sealed
frames"), side by side with plain frames in one run.

One reference server process (echo engine) with a signing key; one client key. The
three variants differ only in what the client asks for: ``plain`` authenticates its
key at the challenge and nothing more, ``signed`` also pins the server's key (every
frame both ways signed and checked), ``sealed`` also encrypts (HPKE). Each is
measured sequentially (p50, asks/s) and with ``concurrency`` asks in flight (asks/s),
in interleaved rounds.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nexus_reactive import WebSocketConfig, WebSocketService
from nexus_reactive.signing import generate_keypair, write_keypair

from . import servers, traffic
from .baselines import AskFn
from .rounds import Run, rounds
from .stats import ratio

if TYPE_CHECKING:
    from .sections import Suite

__all__ = ["frames"]

VARIANTS = ("plain", "signed", "sealed")


@asynccontextmanager
async def _asker(
    url: str, api_key: str, client_key: Path, pin: str | None, encrypt: bool
) -> AsyncIterator[AskFn]:
    config = WebSocketConfig(
        url=url, api_key=api_key, signing_key=client_key, server_key=pin, encrypt=encrypt
    )
    async with WebSocketService(config) as service:

        async def ask() -> object:
            return await service.ask(traffic.QUERY)

        yield ask


async def frames(suite: Suite) -> dict[str, Any]:
    p = suite.params
    with tempfile.TemporaryDirectory(prefix="nexus-bench-keys-") as folder:
        server_key, client_key = Path(folder, "server"), Path(folder, "client")
        pin = write_keypair(server_key, generate_keypair())
        write_keypair(client_key, generate_keypair())
        argv = servers.child_argv(
            "nexus",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--log-level",
            "warning",
            "--engine",
            "echo",
            "--signing-key",
            str(server_key),
        )
        server = servers.ServerProcess(
            "reference server (signing key)", argv, {"NEXUS_API_KEY": suite.api_key}
        )
        server.start()
        try:
            url, key = server.url, suite.api_key
            options = {"plain": (None, False), "signed": (pin, False), "sealed": (pin, True)}
            runs: list[tuple[str, Run]] = []
            for name in VARIANTS:
                server_pin, encrypt = options[name]

                def client(server_pin: str | None = server_pin, encrypt: bool = encrypt) -> Any:
                    return _asker(url, key, client_key, server_pin, encrypt)

                runs.append((f"{name} sequential", suite._sequential_run(client, server)))
                runs.append(
                    (f"{name} {p.concurrency} in flight", suite._inflight_run(client, server))
                )
            variants = await rounds("k", p.rounds, runs)
        finally:
            server.stop()

    def med(name: str, metric: str) -> float:
        return float(variants[name][metric]["median"])

    c = p.concurrency
    ratios = {}
    for name in ("signed", "sealed"):
        ratios[f"sequential p50: {name} / plain"] = ratio(
            med(f"{name} sequential", "p50 us"), med("plain sequential", "p50 us")
        )
        ratios[f"{c} in flight asks/s: {name} / plain"] = ratio(
            med(f"{name} {c} in flight", "asks/s"), med(f"plain {c} in flight", "asks/s")
        )
    return {
        "unit": "asks/s; latency in microseconds",
        "driven": "the reference server (echo engine) with a signing key; every variant "
        "authenticates its key at the challenge",
        "variants": variants,
        "ratios": ratios,
    }
