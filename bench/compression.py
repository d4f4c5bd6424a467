"""permessage-deflate on or off: bytes on the wire and msg/s for the reference answers.

``python -m bench.compression`` (``--quick``: a smoke run of a few seconds; ``--rounds R``,
``--asks N``, ``--in-flight K``, ``--json PATH``); also section m of ``python -m bench.run``
(``make bench``), with its rounds and its JSON and chart. It starts the reference server in its own
process with its default engine (answers from the project's documentation: the
reference answers), then, for ``compression=False`` and ``compression=True``:

- **bytes on the wire**: each of the distinct questions asked once, one connection,
  through a counting TCP relay in this process; every byte both ways above TCP (the
  upgrade, frames, the close), per ask. Distinct questions, because the deflate
  context carries over between messages: the same answer twice compresses to almost
  nothing, which would flatter compression;
- **msg/s**: answered asks per second, ``--in-flight`` asks at a time, straight to
  the server (no relay), from the first ask to the last answer; and the median of the
  single asks' round trips (sequential).

Variants are interleaved (the order alternates per round, after one unrecorded
warm-up of each); the table shows medians over rounds. Bounded: every wait has a
deadline, and the server process ends with this one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nexus_reactive import WebSocketConfig, WebSocketService

from .servers import ServerProcess, child_argv, stop_all
from .stats import ratio, summarize

__all__ = ["main", "measure", "section"]

#: Questions whose answers come from the documentation (the docs engine).
QUERIES = (
    "How do I reconnect after a network failure?",
    "What is the outbox and when is it full?",
    "How are API keys kept out of logs?",
    "How do I use the store in a Qt application?",
    "What happens when an ask times out?",
    "How does key-pair authentication work?",
    "What does close code 4429 mean?",
    "How do I stream an answer in pieces?",
    "How is the state of the connection observed?",
    "What does max_message_size limit?",
    "How do I pass a signing key?",
    "What is the difference between ask and send_query?",
    "How do I use the client from a thread without asyncio?",
    "What does the reference server check before the upgrade?",
    "How are duplicate answers dropped?",
    "How do I keep the outbox across restarts?",
    "What does RetriesExhausted mean?",
    "How fast is the store?",
    "How do I run the tests?",
    "What does heartbeat do?",
    "How do I share one connection between stores?",
    "What is a ProtocolError?",
    "How do I verify a private CA certificate?",
    "What happens to asks in flight when the connection drops?",
    "How do I show the connection state in a notebook?",
    "What is the rate option?",
    "How are redirects handled?",
    "What does the chat app do?",
    "How is the history of messages bounded?",
    "How do I cancel an ask?",
)
DEADLINE = 120.0  # seconds: no single measurement may take longer


@dataclass
class Relay:
    """A TCP relay on loopback that counts the bytes it carries, both ways."""

    target_port: int
    up: int = 0
    down: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _config(port: int, api_key: str, compression: bool) -> WebSocketConfig:
    return WebSocketConfig(
        f"ws://127.0.0.1:{port}/", api_key=api_key, compression=compression, heartbeat=None
    )


async def _asks(service: WebSocketService, count: int, in_flight: int) -> list[float]:
    """``count`` asks, ``in_flight`` at a time; each one's round trip in seconds."""
    loop = asyncio.get_running_loop()
    times: list[float] = []
    gate = asyncio.Semaphore(in_flight)

    async def one(n: int) -> None:
        async with gate:
            start = loop.time()
            reply = await service.ask(QUERIES[n % len(QUERIES)] + f" ({n})")
            assert reply.answer
            times.append(loop.time() - start)

    await asyncio.gather(*(one(n) for n in range(count)))
    return times


async def _wire(port: int, api_key: str, compression: bool) -> dict[str, float]:
    """Bytes on the wire per ask, through the counting relay: each question once."""
    relay = await Relay(port).start()
    count = len(QUERIES)
    try:
        async with WebSocketService(_config(relay.port, api_key, compression)) as service:
            for query in QUERIES:
                assert (await service.ask(query)).answer
        await asyncio.sleep(0.05)  # the close handshake's last bytes
    finally:
        await relay.close()
    return {"down": relay.down / count, "up": relay.up / count}


async def _rate(
    port: int, api_key: str, compression: bool, count: int, in_flight: int
) -> dict[str, float]:
    """asks/s with ``in_flight`` asks at a time, and the sequential round trip."""
    async with WebSocketService(_config(port, api_key, compression)) as service:
        await _asks(service, in_flight, in_flight)  # warm the connection
        start = time.perf_counter()
        await _asks(service, count, in_flight)
        rate = count / (time.perf_counter() - start)
        sequential = await _asks(service, max(10, count // 10), 1)
    return {"asks_per_s": rate, "rtt_ms": statistics.median(sequential) * 1000}


async def _samples(
    rounds: int, count: int, in_flight: int, api_key: str
) -> dict[bool, list[dict[str, float]]]:
    """Each round's measurements of both variants, against a fresh reference server."""
    argv = child_argv("nexus", "--host", "127.0.0.1", "--port", "0", "--log-level", "warning")
    server = ServerProcess("reference server", argv, {"NEXUS_API_KEY": api_key})
    server.start()
    samples: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    try:
        for compression in (False, True):  # warm-up, unrecorded
            await asyncio.wait_for(_rate(server.port, api_key, compression, 20, 5), DEADLINE)
        for n in range(rounds):
            for compression in (False, True) if n % 2 == 0 else (True, False):
                wire = await asyncio.wait_for(_wire(server.port, api_key, compression), DEADLINE)
                rate = await asyncio.wait_for(
                    _rate(server.port, api_key, compression, count, in_flight), DEADLINE
                )
                samples[compression].append({**wire, **rate})
    finally:
        server.stop()
    return samples


async def measure(rounds: int, count: int, in_flight: int) -> dict[str, Any]:
    """Run the comparison against a fresh reference server; return the medians."""
    try:
        samples = await _samples(rounds, count, in_flight, secrets.token_urlsafe(16))
    finally:
        stop_all()
    result: dict[str, Any] = {"rounds": rounds, "asks": count, "in_flight": in_flight}
    for compression, runs in samples.items():
        name = "compression" if compression else "no compression"
        result[name] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    return result


#: The metrics of section m, as the suite's table names them.
METRICS = {
    "down": "bytes down per ask",
    "up": "bytes up per ask",
    "asks_per_s": "asks/s",
    "rtt_ms": "sequential round trip, ms",
}


async def section(rounds: int, count: int, in_flight: int, api_key: str) -> dict[str, Any]:
    """Section j of ``python -m bench.run`` (``make bench``): both variants, interleaved,
    each metric summarized over the rounds, and compression's ratio to no compression."""
    samples = await _samples(rounds, count, in_flight, api_key)
    variants = {
        name: {label: summarize([r[key] for r in samples[on]]) for key, label in METRICS.items()}
        for name, on in (("no compression", False), ("compression", True))
    }
    off, on = variants["no compression"], variants["compression"]
    return {
        "unit": "bytes per ask, asks/s and ms; the reference answers",
        "driven": f"{count} asks, {in_flight} in flight; bytes counted by a relay",
        "variants": variants,
        "ratios": {
            f"{label}: compression / none": ratio(on[label]["median"], off[label]["median"])
            for label in METRICS.values()
        },
    }


def print_table(result: dict[str, Any]) -> None:
    off, on = result["no compression"], result["compression"]
    print(
        f"\npermessage-deflate, reference answers (docs engine): {result['asks']} asks, "
        f"{result['in_flight']} in flight, median of {result['rounds']} rounds\n"
    )
    print(f"{'':28}{'off':>12}{'on':>12}{'on/off':>9}")
    rows = [
        ("bytes down per ask", "down", "{:,.0f}"),
        ("bytes up per ask", "up", "{:,.0f}"),
        ("asks/s", "asks_per_s", "{:,.0f}"),
        ("sequential round trip (ms)", "rtt_ms", "{:.2f}"),
    ]
    for label, key, fmt in rows:
        ratio = on[key] / off[key] if off[key] else float("nan")
        print(f"{label:28}{fmt.format(off[key]):>12}{fmt.format(on[key]):>12}{ratio:>9.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compression", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round, few asks")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--asks", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None, help="also write the medians here")
    args = parser.parse_args(argv)
    rounds, count = (1, 40) if args.quick else (args.rounds, args.asks)
    os.chdir(Path(__file__).resolve().parent.parent)  # the server reads the docs from here
    result = asyncio.run(measure(rounds, count, args.in_flight))
    print_table(result)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
