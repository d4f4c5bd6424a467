"""CPU per ask with no socket: ``python -m bench.profile --asks``.

A transport on the service's ``transport_factory`` seam answers each ask at once, in
the process (the id read with a prebuilt msgspec decoder, a prebuilt response around
it), so what is timed is the library's own work per ask: the id, the frame, the ask
table, the deadline, the write, the receive side, settling, and asyncio's future and
task wake-up, plus this stand-in server's few hundred nanoseconds. It counts the
thread's CPU time (best of ``repeats`` runs), so a loaded machine shifts it little.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Mapping

import msgspec

from nexus_reactive import WebSocketConfig, WebSocketService
from nexus_reactive.errors import NexusConnectionError, ProtocolError
from nexus_reactive.transport import Transport

from . import traffic

__all__ = ["ask_cost"]


class _Id(msgspec.Struct):
    id: str


_read_id = msgspec.json.Decoder(_Id).decode
_HEAD = b'{"type":"response","id":"'
_TAIL = (
    b'","payload":{"answer":"You asked a question","usage":'
    b'{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}}'
)

_FrameHandler = Callable[[bytes], NexusConnectionError | None]


class _Answering:
    """A transport whose far end answers every ask at once (no socket)."""

    auth: str | None = "none"  # the server says: no key-pair challenge

    def __init__(self) -> None:
        self._answers: list[bytes] = []
        self._ready = asyncio.Event()
        self._closed = asyncio.Event()

    def _answer(self, frame: bytes) -> None:
        self._answers.append(_HEAD + _read_id(frame).id.encode() + _TAIL)

    async def send(self, frame: bytes) -> None:
        self._answer(frame)
        self._ready.set()

    async def send_batch(self, frames: list[bytes]) -> None:
        for frame in frames:
            self._answer(frame)
        self._ready.set()

    async def pump(
        self,
        on_frame: _FrameHandler,
        on_invalid: Callable[[ProtocolError], None],
        on_first: _FrameHandler | None = None,
    ) -> NexusConnectionError:
        handle = on_first or on_frame
        while not self._closed.is_set():
            await self._ready.wait()
            self._ready.clear()
            answers, self._answers = self._answers, []
            for frame in answers:
                stop = handle(frame)
                handle = on_frame
                if stop is not None:
                    return stop
        return NexusConnectionError("closed")

    async def receive_frame(self) -> bytes:
        await self._closed.wait()
        raise NexusConnectionError("closed")

    async def close(self, code: int = 1000) -> None:
        self._closed.set()
        self._ready.set()


async def _open(url: str, headers: Mapping[str, str], deadline: float) -> Transport:
    return _Answering()


async def _run(in_flight: int, asks: int, repeats: int) -> float:
    config = WebSocketConfig(url="ws://127.0.0.1:9/", api_key="bench")
    async with WebSocketService(config, transport_factory=_open) as service:
        best = float("inf")
        for _ in range(repeats):
            left = asks

            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await service.ask(traffic.QUERY)

            gc.collect()
            start = time.thread_time()
            await asyncio.gather(*(worker() for _ in range(in_flight)))
            best = min(best, (time.thread_time() - start) / asks)
    return best


def ask_cost(
    repeats: int = 5, runs: tuple[tuple[int, int], ...] = ((100, 20_000), (1, 5_000))
) -> int:
    """Print the CPU microseconds per ask for each ``(in flight, asks a run)`` of ``runs``."""
    print(f"CPU us per ask, no socket, best of {repeats}:")
    for in_flight, asks in runs:
        cost = asyncio.run(_run(in_flight, asks, repeats))
        print(f"  {cost * 1e6:6.2f} us  {in_flight} in flight ({asks:,} asks a run)")
    return 0
