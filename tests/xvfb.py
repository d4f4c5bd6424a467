"""A private X display for GUI tests: Xvfb (a virtual framebuffer X server).

Xvfb picks its own free display number (``-displayfd``) and writes it to a pipe
once it accepts connections, so concurrent test runs never race for a number
and no connect-polling is needed. The server is stopped and reaped on exit.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import IO

import pytest

from .waiting import EVENTUALLY

XVFB = "/usr/bin/Xvfb"
START_TIMEOUT = EVENTUALLY


def xvfb_path() -> str:
    """The Xvfb executable; skips the test if it is not installed."""
    path = XVFB if os.access(XVFB, os.X_OK) else shutil.which("Xvfb")
    if path is None:
        pytest.skip("Xvfb not installed: apt-get install xvfb")
    return path


@contextlib.contextmanager
def virtual_display(size: str = "1024x768x24") -> Iterator[str]:
    """Run Xvfb for the duration of the block.

    Yields:
        The display name, e.g. ``":3"``, for ``DISPLAY``.

    Raises:
        RuntimeError: Xvfb exited or stayed silent for ``START_TIMEOUT`` seconds.
    """
    path = xvfb_path()
    ready, announce = os.pipe()
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(
                [path, "-displayfd", str(announce), "-screen", "0", size, "-nolisten", "tcp"],
                pass_fds=(announce,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        finally:
            os.close(announce)
        try:
            display = _read_display(ready, process, errors)
            yield f":{display}"
        finally:
            os.close(ready)
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _read_display(ready: int, process: subprocess.Popen[bytes], errors: IO[bytes]) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    received = b""
    while not received.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"Xvfb did not report a display within {START_TIMEOUT}s")
        readable, _, _ = select.select([ready], [], [], left)
        if not readable:
            continue
        chunk = os.read(ready, 64)
        if not chunk:  # the pipe closed: Xvfb exited
            process.wait()
            raise RuntimeError(f"Xvfb exited with {process.returncode}: {_tail(errors)}")
        received += chunk
    return int(received)


def _tail(errors: IO[bytes]) -> str:
    errors.seek(0)
    return errors.read().decode(errors="replace").strip()[-500:]
