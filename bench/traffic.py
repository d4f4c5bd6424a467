"""The traffic every variant sees: the same frames, byte for byte.

A flood is ``N`` small ``response`` frames (:data:`FRAME_SIZE` bytes each, with
distinct ids cycling through a pool) followed by one sentinel ``response`` whose
id is ``"done"``. A broadcast flood is the same with ``notice`` frames (a type the
library does not know: a server's unsolicited message). Asks carry :data:`QUERY`.
"""

from __future__ import annotations

import json
import struct
import uuid

__all__ = [
    "FRAME_SIZE",
    "POOL",
    "QUERY",
    "SENTINEL",
    "SENTINEL_ID",
    "ask_frame",
    "response_frame",
    "response_frames",
    "ws_frame",
]

#: The size of one flood frame in bytes: a `response` with a short answer and its usage.
FRAME_SIZE = 213
#: How many distinct flood frames there are; a flood cycles through them.
POOL = 4096
#: The id of the last frame of a flood.
SENTINEL_ID = "done"
SENTINEL = json.dumps(
    {"type": "response", "id": SENTINEL_ID, "payload": {"answer": "done"}},
    separators=(",", ":"),
).encode()
#: The question every ask carries.
QUERY = "What is the Nexus protocol, in one sentence?"


def response_frame(message_id: str, size: int = FRAME_SIZE, kind: str = "response") -> bytes:
    """One ``response`` frame of exactly ``size`` bytes (the answer is padded to fit).

    Args:
        message_id: the frame's id.
        size: the frame's length in bytes.
        kind: the frame's ``type`` (``"notice"``: a broadcast the same size).

    Returns:
        The UTF-8 JSON bytes.
    """
    usage = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}

    def build(answer: str) -> bytes:
        message = {
            "type": kind,
            "id": message_id,
            "payload": {"answer": answer, "usage": usage},
        }
        return json.dumps(message, separators=(",", ":")).encode()

    base = "Nexus answers questions over a WebSocket."
    frame = build(base)
    if len(frame) < size:
        frame = build(base + "." * (size - len(frame)))
    return frame


def response_frames(
    count: int = POOL, size: int = FRAME_SIZE, kind: str = "response"
) -> list[bytes]:
    """``count`` response frames with distinct random ids, each ``size`` bytes."""
    return [response_frame(uuid.uuid4().hex, size, kind) for _ in range(count)]


def ask_frame(message_id: str | None = None, query: str = QUERY) -> bytes:
    """An ``ask`` frame as a naive client writes it (also sizes the echo floor's line)."""
    ask_id = message_id if message_id is not None else uuid.uuid4().hex
    message = {"type": "ask", "id": ask_id, "payload": {"query": query}}
    return json.dumps(message, separators=(",", ":")).encode()


def ws_frame(payload: bytes) -> bytes:
    """``payload`` as one unmasked WebSocket text frame (server to client, RFC 6455)."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload
