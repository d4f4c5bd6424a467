"""The servers the suite talks to, as run in their child processes.

``python -m bench.server_apps KIND``, started by :mod:`bench.servers` (which owns
their lifecycle):

- ``flood``: an aiohttp app that, on each connection to ``/?n=N`` (``&kind=notice``:
  unsolicited ``notice`` frames of the same size), writes N prebuilt response
  frames then the sentinel, as fast as the socket takes them (whole prebuilt
  WebSocket frames written to the transport, so the server is never the
  bottleneck), then waits for the close;
- ``echo``: asyncio streams, echoes lines;
- ``lean``: a minimal, fast Nexus server for the ask benchmarks;
- ``nexus-heartbeat``: the reference server (echo engine) with server pings;
- ``nexus SERVE-ARGS...``: the CLI's ``serve`` command (``nexus_reactive.cli.main``).

Each one prints ``... listening on URL`` when ready, and exits when its stdin
closes (the parent holds it open), so even a runner killed with SIGKILL leaves no
orphan behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType, web

from . import traffic
from .servers import raise_open_files_limit

__all__ = ["main"]

#: Bytes the flood server lets queue in its transport before waiting for the client.
_HIGH_WATER = 2 * 1024 * 1024


class _Flood:
    """The flood's bytes: one blob of every pool frame, and where each frame ends."""

    def __init__(self, kind: str = "response") -> None:
        frames = [traffic.ws_frame(f) for f in traffic.response_frames(kind=kind)]
        self.blob = b"".join(frames)
        self.ends: list[int] = []
        end = 0
        for frame in frames:
            end += len(frame)
            self.ends.append(end)
        self.sentinel = traffic.ws_frame(traffic.SENTINEL)

    def chunks(self, n: int) -> list[memoryview]:
        """The flood of ``n`` frames as a list of chunks (views of the blob)."""
        view = memoryview(self.blob)
        whole, rest = divmod(n, len(self.ends))
        chunks = [view] * whole
        if rest:
            chunks.append(view[: self.ends[rest - 1]])
        return chunks


async def _flood_handler(request: web.Request, floods: dict[str, _Flood]) -> web.StreamResponse:
    n = int(request.query.get("n", "0"))
    kind = request.query.get("kind", "response")
    if kind not in ("response", "notice"):
        return web.Response(status=400, text="kind: response or notice")
    flood = floods.get(kind)
    if flood is None:
        flood = floods[kind] = _Flood(kind)
    ws = web.WebSocketResponse(compress=False, max_msg_size=0)
    await ws.prepare(request)
    transport = request.transport
    assert transport is not None
    for chunk in flood.chunks(n):
        if transport.is_closing():
            return ws
        transport.write(chunk)
        # Wait for the client rather than buffer the whole flood in memory. aiohttp
        # offers no public drain for raw writes; a 1 ms poll costs the server ~nothing.
        while transport.get_write_buffer_size() > _HIGH_WATER and not transport.is_closing():  # noqa: ASYNC110
            await asyncio.sleep(0.001)
    if not transport.is_closing():
        transport.write(flood.sentinel)
    async for _ in ws:  # until the client closes; aiohttp answers its close frame
        pass
    return ws


def _app(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.Application:
    app = web.Application()
    app.router.add_get("/", handler)
    return app


async def _serve_forever(runner: web.AppRunner, name: str, host: str, port: int) -> None:
    """Serve ``runner``'s app on ``host:port``, say where, and run until cancelled."""
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound = runner.addresses[0]
    print(f"bench {name} server listening on ws://{bound[0]}:{bound[1]}/", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


async def _serve_flood(host: str, port: int) -> None:
    floods = {"response": _Flood()}

    async def handler(request: web.Request) -> web.StreamResponse:
        return await _flood_handler(request, floods)

    runner = web.AppRunner(_app(handler), handle_signals=False, shutdown_timeout=1.0)
    await _serve_forever(runner, "flood", host, port)


async def _serve_echo(host: str, port: int) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, host, port)
    bound = server.sockets[0].getsockname()
    print(f"bench echo server listening on tcp://{bound[0]}:{bound[1]}", flush=True)
    async with server:
        await server.serve_forever()


async def _serve_lean(host: str, port: int) -> None:
    """A minimal, fast Nexus server for the ask benchmarks: it checks the key, reads
    each frame's id with a prebuilt msgspec decoder and answers with a prebuilt
    response around it. The reference server does far more per ask (validation,
    de-duplication, an engine, usage); with it, 100 asks in flight measure the
    server's CPU, not the client's.

    Answers go out as a fast native server would send them: the answers to every frame
    parsed from one read of the socket are framed here and written to the socket at
    once, as soon as the last of them is answered (one system call per batch, not per
    answer), the way the flood server writes.
    """
    import struct

    import msgspec

    class _Id(msgspec.Struct):
        id: str

    read_id = msgspec.json.Decoder(_Id).decode
    text = WSMsgType.TEXT
    key = os.environ.get("NEXUS_API_KEY", "")
    head = b'{"type":"response","id":"'
    tail = (
        b'","payload":{"answer":"You asked a question","usage":'
        b'{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}}'
    )
    short, medium = struct.Struct("!BB").pack, struct.Struct("!BBH").pack

    def text_frame(data: bytes) -> bytes:
        """One unmasked, final text frame (a server's), small enough for 16-bit lengths."""
        n = len(data)
        return (short(0x81, n) if n < 126 else medium(0x81, 126, n)) + data

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.headers.get("x-api-key") != key:
            return web.Response(status=401)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        transport = request.transport
        assert transport is not None
        # aiohttp's queue of frames parsed already (bench code may read aiohttp's
        # privates): answered together once no text frame is next in it.
        queued = ws._reader._buffer  # type: ignore[union-attr]
        answers: list[bytes] = []
        receive = ws.receive
        while True:
            msg = await receive()  # returns at once while parsed frames are queued
            if msg.type is not WSMsgType.TEXT:
                break
            answers.append(text_frame(head + read_id(msg.data).id.encode() + tail))
            # The last text frame parsed: write them all. Not only when the queue is
            # empty: receive() handles a ping (or a close) queued next itself and then
            # waits for the next frame, which a client waiting for these never sends.
            if not queued or queued[0][0][0] is not text:  # (message, size); its type
                if not transport.is_closing():
                    transport.write(answers[0] if len(answers) == 1 else b"".join(answers))
                answers.clear()
        return ws

    await _serve_forever(web.AppRunner(_app(handler), access_log=None), "lean", host, port)


async def _serve_nexus_heartbeat(host: str, port: int, heartbeat: float) -> None:
    from nexus_reactive.server import EchoEngine, serve

    def listening(url: str) -> None:
        print(f"bench reference server listening on {url}", flush=True)

    await serve(
        host,
        port,
        api_keys=os.environ.get("NEXUS_API_KEY", ""),
        engine=EchoEngine(),
        heartbeat=heartbeat,
        stop=asyncio.Event(),
        on_listening=listening,
        shutdown_timeout=1.0,
    )


def _exit_when_parent_goes() -> None:
    # The parent holds our stdin open; EOF means it is gone (even if SIGKILLed).
    def watch() -> None:
        with contextlib.suppress(OSError):
            sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.server_apps flood|echo|lean|nexus-heartbeat [--host H] [--port P]``,
    or ``python -m bench.server_apps nexus SERVE-ARGS...`` (the CLI's ``serve``)."""
    argv = sys.argv[1:] if argv is None else argv
    _exit_when_parent_goes()
    if argv[:1] == ["nexus"]:
        from nexus_reactive import cli

        raise SystemExit(cli.main(["serve", *argv[1:]]))
    parser = argparse.ArgumentParser(prog="python -m bench.server_apps")
    parser.add_argument("kind", choices=("flood", "echo", "lean", "nexus-heartbeat"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    if args.kind == "nexus-heartbeat":
        raise_open_files_limit()
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_nexus_heartbeat(args.host, args.port, args.heartbeat))
        return
    serve = {"flood": _serve_flood, "echo": _serve_echo, "lean": _serve_lean}[args.kind]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
