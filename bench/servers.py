"""The servers the suite talks to, each in its own process, and their lifecycle.

- the flood server (``python -m bench.servers flood``): an aiohttp app that, on each
  connection to ``/?n=N`` (``&kind=notice``: unsolicited ``notice`` frames of the
  same size), writes N prebuilt response frames then the sentinel, as
  fast as the socket takes them (whole prebuilt WebSocket frames written to the
  transport, so the server is never the bottleneck), then waits for the close;
- the echo server (``python -m bench.servers echo``): asyncio streams, echoes lines;
- the reference server: the CLI's ``serve`` command (``nexus_reactive.cli.main``)
  run by ``python -m bench.servers nexus ...``, which only adds the stdin watchdog
  below, so that it too can never outlive the suite.

Every process is started through :class:`ServerProcess`, which records it in a
registry; :func:`stop_all` (called in a ``finally`` by the runner) ends them all.
The bench's own servers also exit when their stdin closes, so even a runner killed
with SIGKILL leaves no orphan behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO

from aiohttp import WSMsgType, web

from . import traffic

__all__ = [
    "ServerProcess",
    "raise_open_files_limit",
    "start_echo",
    "start_flood",
    "start_lean",
    "start_nexus",
    "start_nexus_heartbeat",
    "stop_all",
]

_LISTENING = re.compile(r"listening on (\S+)")
_LIVE: set[ServerProcess] = set()

#: Bytes the flood server lets queue in its transport before waiting for the client.
_HIGH_WATER = 2 * 1024 * 1024


class ServerProcess:
    """A server in a child process that prints ``... listening on URL`` when ready.

    Args:
        name: what to call it in messages.
        argv: the command line.
        env: extra environment variables.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.env = {**os.environ, **(env or {})}
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[bytes] | None = None

    def spawn(self) -> None:
        """Start the process (without waiting for it to listen)."""
        # Closed by _reap(), which every way of ending the process goes through.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            # Its own session: a Ctrl-C in the terminal reaches the runner only,
            # whose finally-blocks stop the servers in order.
            start_new_session=True,
        )
        _LIVE.add(self)

    def wait_listening(self, timeout: float = 30.0) -> float:
        """Wait for the startup line; set :attr:`url`.

        Returns:
            The ``time.perf_counter()`` at which the line was read.

        Raises:
            RuntimeError: the process exited or printed nothing in time.
        """
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        seen = time.perf_counter()
        match = _LISTENING.search(line)
        if match is None:
            self.stop()
            raise RuntimeError(
                f"the {self.name} did not start (first line {line!r}); stderr:\n{self.stderr()}"
            )
        self.url = match.group(1)
        return seen

    def start(self, timeout: float = 30.0) -> str:
        """Spawn and wait until it listens; return its URL."""
        self.spawn()
        self.wait_listening(timeout)
        return self.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/", 1)[0])

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the process has used so far; ``None`` off Linux."""
        proc = self._proc
        if proc is None:
            return None
        try:
            with open(f"/proc/{proc.pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            return None
        # Fields 14 and 15 of stat(5) (utime, stime), counted after "pid (comm)".
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int | None:
        """The process's resident set size now; ``None`` off Linux."""
        proc = self._proc
        if proc is None:
            return None
        try:
            with open(f"/proc/{proc.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL, as a crash would, and reap it."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        self._reap()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; reap it. Idempotent."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._reap()

    def _reap(self) -> None:
        proc = self._proc
        if proc is not None:
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        _LIVE.discard(self)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def start_flood() -> ServerProcess:
    """Start the flood server; its URL takes ``?n=N``."""
    server = ServerProcess("flood server", _python_module("bench.servers", "flood"))
    server.start()
    return server


def start_echo() -> ServerProcess:
    """Start the TCP line echo server."""
    server = ServerProcess("echo server", _python_module("bench.servers", "echo"))
    server.start()
    return server


def nexus_process(api_key: str, port: int = 0) -> ServerProcess:
    """The reference server's process (not started), on ``port``."""
    argv = _python_module(
        "bench.servers",
        "nexus",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--engine",
        "echo",  # the asks measure the protocol path, not an answer engine
    )
    return ServerProcess("reference server", argv, {"NEXUS_API_KEY": api_key})


def start_nexus(api_key: str, port: int = 0) -> ServerProcess:
    """Start the reference server (``nexus-reactive serve``)."""
    server = nexus_process(api_key, port)
    server.start()
    return server


def start_nexus_heartbeat(api_key: str, heartbeat: float) -> ServerProcess:
    """Start the reference server (echo engine) with server pings every ``heartbeat``
    seconds (the CLI has no switch for it): the idle-connections section."""
    server = ServerProcess(
        "reference server (heartbeat)",
        _python_module("bench.servers", "nexus-heartbeat", "--heartbeat", str(heartbeat)),
        {"NEXUS_API_KEY": api_key},
    )
    server.start()
    return server


def start_lean(api_key: str) -> ServerProcess:
    """Start the lean ask server: it answers each ask at once, parsing only its id."""
    server = ServerProcess(
        "lean ask server", _python_module("bench.servers", "lean"), {"NEXUS_API_KEY": api_key}
    )
    server.start()
    return server


def stop_all() -> None:
    """Stop every server process still running (the runner's last ``finally``)."""
    for server in list(_LIVE):
        server.stop(grace=3.0)


# -- the servers themselves (run in the child processes) -----------------------------


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


async def _serve_flood(host: str, port: int) -> None:
    floods = {"response": _Flood()}

    async def handler(request: web.Request) -> web.StreamResponse:
        return await _flood_handler(request, floods)

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    print(f"bench flood server listening on ws://{bound[0]}:{bound[1]}/", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


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
    server's CPU, not the client's."""
    import msgspec

    class _Id(msgspec.Struct):
        id: str

    read_id = msgspec.json.Decoder(_Id).decode
    key = os.environ.get("NEXUS_API_KEY", "")
    head = '{"type":"response","id":"'
    tail = (
        '","payload":{"answer":"You asked a question","usage":'
        '{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}}'
    )

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.headers.get("x-api-key") != key:
            return web.Response(status=401)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        receive, send = ws.receive, ws.send_str
        while True:
            msg = await receive()
            if msg.type is not WSMsgType.TEXT:
                break
            await send(head + read_id(msg.data).id + tail)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    print(f"bench lean server listening on ws://{bound[0]}:{bound[1]}/", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


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


def raise_open_files_limit() -> None:
    """Raise the soft limit on open files to the hard one (many idle connections)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _exit_when_parent_goes() -> None:
    # The parent holds our stdin open; EOF means it is gone (even if SIGKILLed).
    def watch() -> None:
        with contextlib.suppress(OSError):
            sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.servers flood|echo [--host H] [--port P]``, or
    ``python -m bench.servers nexus SERVE-ARGS...`` (the CLI's ``serve``)."""
    argv = sys.argv[1:] if argv is None else argv
    _exit_when_parent_goes()
    if argv[:1] == ["nexus"]:
        from nexus_reactive import cli

        raise SystemExit(cli.main(["serve", *argv[1:]]))
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
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
