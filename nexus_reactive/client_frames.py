"""A batch of the client's WebSocket text frames, built in one pass (RFC 6455, 5.2-5.3).

The writer sends every frame queued together with one write to the socket. Framing
them one by one through aiohttp's writer costs a method call, a header ``struct.pack``,
a random draw and a few concatenations per frame; here the masking keys of the whole
batch come from one ``os.urandom`` call, each header is built once per frame length,
and the frames are joined once. Every frame still has its own fresh, unpredictable
masking key, as a client's must. No aiohttp here: the transport passes the masking
function (aiohttp's, in C, when it can).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

__all__ = ["frame_batch", "mask_python"]

#: Masks ``data`` in place with the 4-byte ``key`` (a client's frames are masked).
Mask = Callable[[bytes, bytearray], None]

_FIN_TEXT = 0x81  # FIN + opcode 1 (text)
_MASKED = 0x80
_short = struct.Struct("!BB").pack
_medium = struct.Struct("!BBH").pack
_long = struct.Struct("!BBQ").pack

# The header of a masked text frame, by payload length (without the key): the few
# lengths a client sends are built once.
_headers: dict[int, bytes] = {}
_HEADERS_KEPT = 1024


def _header(length: int) -> bytes:
    if length < 126:
        header = _short(_FIN_TEXT, _MASKED | length)
    elif length < 65536:
        header = _medium(_FIN_TEXT, _MASKED | 126, length)
    else:
        header = _long(_FIN_TEXT, _MASKED | 127, length)
    if len(_headers) < _HEADERS_KEPT:
        _headers[length] = header
    return header


def mask_python(key: bytes, data: bytearray) -> None:
    """Mask ``data`` in place with ``key`` (pure Python, when aiohttp's is out of reach)."""
    n = len(data)
    stream = (key * (n // 4 + 1))[:n]
    data[:] = (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        n, "little"
    )


def frame_batch(frames: list[bytes], mask: Mask) -> bytes:
    """The bytes of ``frames`` as masked, final text frames, in order."""
    keys = os.urandom(4 * len(frames))
    out: list[bytes | bytearray] = []
    add = out.append
    known = _headers.get
    at = 0
    for frame in frames:
        length = len(frame)
        key = keys[at : at + 4]
        at += 4
        payload = bytearray(frame)
        mask(key, payload)
        add(known(length) or _header(length))  # (three parts: joined once, below)
        add(key)
        add(payload)
    return b"".join(out)
