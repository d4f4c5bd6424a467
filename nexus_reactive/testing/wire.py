"""The bytes a :class:`~nexus_reactive.testing.FaultProxy` reads and forges.

It forwards raw TCP, so to close a WebSocket with a code, or to refuse an upgrade with
an HTTP status, it needs to know a little of the wire: where the server's HTTP response
ends and where each server frame ends (:class:`FrameBoundaries`), and how a close frame
and an HTTP response look (:func:`close_frame`, :func:`http_response`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from http import HTTPStatus

__all__ = ["FrameBoundaries", "close_frame", "finish", "http_response", "reset"]

_HEAD_END = b"\r\n\r\n"
_MAX_HEAD = 64 * 1024


class FrameBoundaries:
    """Follows the server-to-client bytes of one connection: the HTTP response head,
    then WebSocket frames, so that a forged frame goes in between two real ones.

    Only headers are parsed (2 to 14 bytes a frame); payloads are skipped by length.
    """

    def __init__(self) -> None:
        self.upgraded = False
        self._head = b""  # the response head so far (before the upgrade)
        self._header = b""  # a frame header so far
        self._remaining = 0  # payload bytes of the current frame still to come

    @property
    def at_boundary(self) -> bool:
        """Upgraded, and between two frames: a forged frame may be sent now."""
        return self.upgraded and not self._header and not self._remaining

    def feed(self, data: bytes, *, stop_at_boundary: bool = False) -> int:
        """Account for ``data``; return how many bytes of it were consumed.

        With ``stop_at_boundary``, stop at the first frame boundary (0 if already at
        one): ``data[:n]`` completes the frame under way.
        """
        pos = 0
        if not self.upgraded:
            self._head += data
            end = self._head.find(_HEAD_END)
            if end < 0:
                self._head = self._head[-_MAX_HEAD:]
                return len(data)
            self.upgraded = self._head.startswith((b"HTTP/1.1 101", b"HTTP/1.0 101"))
            pos = len(data) - (len(self._head) - end - len(_HEAD_END))
            self._head = b""
            if not self.upgraded:
                return len(data)
        while pos < len(data) or (stop_at_boundary and self.at_boundary):
            if stop_at_boundary and self.at_boundary:
                return pos
            if self._remaining:
                step = min(self._remaining, len(data) - pos)
                self._remaining -= step
                pos += step
                continue
            need = self._header_size()
            take = min(need - len(self._header), len(data) - pos)
            self._header += data[pos : pos + take]
            pos += take
            if len(self._header) == self._header_size():
                self._remaining = self._payload_size()
                self._header = b""
        return pos

    def _header_size(self) -> int:
        if len(self._header) < 2:
            return 2
        length = self._header[1] & 0x7F
        masked = 4 if self._header[1] & 0x80 else 0
        return 2 + {126: 2, 127: 8}.get(length, 0) + masked

    def _payload_size(self) -> int:
        length = self._header[1] & 0x7F
        if length == 126:
            return int(struct.unpack("!H", self._header[2:4])[0])
        if length == 127:
            return int(struct.unpack("!Q", self._header[2:10])[0])
        return length


def close_frame(code: int, reason: str = "") -> bytes:
    """A server's (unmasked) WebSocket close frame with ``code`` and ``reason``."""
    payload = struct.pack("!H", code) + reason.encode()[:123]
    return bytes([0x88, len(payload)]) + payload


def http_response(status: int, body: str = "", headers: dict[str, str] | None = None) -> bytes:
    """An HTTP/1.1 response that refuses an upgrade and closes the connection."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Refused"
    content = (body or phrase).encode()
    lines = [f"HTTP/1.1 {status} {phrase}", "Content-Type: text/plain; charset=utf-8"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines += [f"Content-Length: {len(content)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + content


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    """The client's HTTP request head (up to the blank line), or what came before EOF."""
    with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return await reader.readuntil(_HEAD_END)
    return b""


def reset(writer: asyncio.StreamWriter) -> None:
    """Abort ``writer``'s transport so that the peer sees a TCP RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def finish(writer: asyncio.StreamWriter, *, reset_it: bool) -> None:
    """Close (gracefully, flushing) or reset ``writer`` and wait until its socket is gone."""
    if reset_it:
        reset(writer)
    else:
        writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 2.0)
    except TimeoutError:  # peer not reading: give up flushing
        writer.transport.abort()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    except OSError:
        pass
