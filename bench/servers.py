"""The servers the suite talks to, each in its own process: their lifecycle.

The servers themselves, as run in the child processes, are in
:mod:`bench.server_apps` (``python -m bench.server_apps KIND``; ``python -m
bench.servers KIND`` runs them too): the flood server, the TCP line echo server,
the lean ask server, and the reference server (the CLI's ``serve`` command, with
only the stdin watchdog added, so that it too can never outlive the suite).

Every process is started through :class:`ServerProcess`, which records it in a
registry; :func:`stop_all` (called in a ``finally`` by the runner) ends them all.
The bench's own servers also exit when their stdin closes, so even a runner killed
with SIGKILL leaves no orphan behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import sys
import tempfile
import time
from typing import IO

__all__ = [
    "ServerProcess",
    "child_argv",
    "nexus_process",
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


def child_argv(kind: str, *args: str) -> list[str]:
    """The command line of the bench's server ``kind`` (see :mod:`bench.server_apps`)."""
    return [sys.executable, "-m", "bench.server_apps", kind, *args]


def start_flood() -> ServerProcess:
    """Start the flood server; its URL takes ``?n=N``."""
    server = ServerProcess("flood server", child_argv("flood"))
    server.start()
    return server


def start_echo() -> ServerProcess:
    """Start the TCP line echo server."""
    server = ServerProcess("echo server", child_argv("echo"))
    server.start()
    return server


def nexus_process(api_key: str, port: int = 0) -> ServerProcess:
    """The reference server's process (not started), on ``port``."""
    argv = child_argv(
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
        child_argv("nexus-heartbeat", "--heartbeat", str(heartbeat)),
        {"NEXUS_API_KEY": api_key},
    )
    server.start()
    return server


def start_lean(api_key: str) -> ServerProcess:
    """Start the lean ask server: it answers each ask at once, parsing only its id."""
    server = ServerProcess("lean ask server", child_argv("lean"), {"NEXUS_API_KEY": api_key})
    server.start()
    return server


def stop_all() -> None:
    """Stop every server process still running (the runner's last ``finally``)."""
    for server in list(_LIVE):
        server.stop(grace=3.0)


def raise_open_files_limit() -> None:
    """Raise the soft limit on open files to the hard one (many idle connections)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


if __name__ == "__main__":  # ``python -m bench.servers KIND``, as before the split
    from .server_apps import main

    main()
