"""aiohttp's private names the transport relies on, each feature-checked with a public
fallback: the writer that frames a batch in one write, the queue of parsed frames the
receive loop drains, the upgrade response's headers, the upgrade's retry switch.

:func:`private_seams` says which are present; ``tests/test_transport_seams.py`` fails
with a clear message when an aiohttp release renames one.
"""

from __future__ import annotations

import functools
import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from .client_frames import Mask, mask_python

__all__ = [
    "RETRY_ATTR",
    "batch_writer",
    "data_hook_available",
    "drain",
    "expire",
    "hook_data_received",
    "mask",
    "parsed_queue",
    "private_seams",
    "response_header",
]

mask: Mask
try:  # aiohttp's masking, in C (a batch is framed here: client_frames)
    from aiohttp._websocket.helpers import websocket_mask as mask
except ImportError:  # moved by a release: the same masking, in Python
    mask = mask_python


# The private names, and what happens without them.
#: ClientSession: re-sends the upgrade once on a reset (fallback: it may, an extra try).
RETRY_ATTR = "_retry_connection"
#: ClientWebSocketResponse -> WebSocketWriter: framing a batch in one write, and a lone
#: frame without send_frame's two coroutines (fallback: ``send_frame`` per frame).
_WRITER_ATTR = "_writer"
_WRITER_ATTRS: tuple[str, ...] = ("_write_websocket_frame", "transport", "protocol")
_WRITER_ATTRS += ("_closing", "_output_size", "_limit")
_PROTOCOL_ATTRS = ("_paused", "_drain_helper")
#: ClientWebSocketResponse -> its WebSocketDataQueue: text frames parsed already are taken
#: by ``read()`` while the connection is open (fallback: ``receive()`` per frame).
_READER_ATTR = "_reader"
_QUEUE_ATTRS = ("_buffer", "read")
_STATE_ATTRS = ("_closing", "_closed")
#: ClientWebSocketResponse -> the upgrade's ClientResponse: its headers (``x-nexus-auth``)
#: (fallback: the header is unknown, and a client without a key waits CHALLENGE_GRACE).
_RESPONSE_ATTR = "_response"
#: ClientWebSocketResponse -> its Connection -> the ResponseHandler: a callback for any
#: data received, which our Heartbeat watches; aiohttp sets it through set_parser's
#: ``data_received_cb`` (fallback, without that: aiohttp's own heartbeat, which
#: reschedules a callback per socket read).
_CONN_ATTR, _PROTOCOL_ATTR, _DATA_CB_ATTR = "_conn", "protocol", "_data_received_cb"
#: ClientWebSocketResponse: what its heartbeat calls on a missing pong (fallback: the
#: connection is closed, and the error reads "connection lost", not the heartbeat).
_EXPIRE_ATTR = "_handle_ping_pong_exception"


def private_seams(ws: object | None = None, session: object | None = None) -> dict[str, bool]:
    """Which of aiohttp's private names this module uses are present (for tests/diagnosis).

    Args:
        ws: an open ``ClientWebSocketResponse``, to check the batch-writing seam.
        session: a ``ClientSession``, to check the upgrade-retry switch.
    """
    seams: dict[str, bool] = {}
    if session is not None:
        seams[f"ClientSession.{RETRY_ATTR}"] = hasattr(session, RETRY_ATTR)
    if ws is not None:
        seams[f"ClientWebSocketResponse.{_RESPONSE_ATTR}"] = hasattr(
            getattr(ws, _RESPONSE_ATTR, None), "headers"
        )
        writer = getattr(ws, _WRITER_ATTR, None)
        seams[f"ClientWebSocketResponse.{_WRITER_ATTR}"] = writer is not None
        for name in _WRITER_ATTRS:
            seams[f"WebSocketWriter.{name}"] = writer is not None and hasattr(writer, name)
        protocol = getattr(writer, "protocol", None)
        for name in _PROTOCOL_ATTRS:
            seams[f"WebSocketWriter.protocol.{name}"] = hasattr(protocol, name)
        reader = getattr(ws, _READER_ATTR, None)
        seams[f"ClientWebSocketResponse.{_READER_ATTR}"] = reader is not None
        for name in _QUEUE_ATTRS:
            seams[f"WebSocketDataQueue.{name}"] = hasattr(reader, name)
        for name in _STATE_ATTRS:
            seams[f"ClientWebSocketResponse.{name}"] = hasattr(ws, name)
        protocol = getattr(getattr(ws, _CONN_ATTR, None), _PROTOCOL_ATTR, None)
        seams[f"ResponseHandler.{_DATA_CB_ATTR}"] = hasattr(protocol, _DATA_CB_ATTR)
        seams[f"ClientWebSocketResponse.{_EXPIRE_ATTR}"] = hasattr(ws, _EXPIRE_ATTR)
    return seams


def response_header(ws: object, name: str) -> str | None:
    """A header of the upgrade response (``x-nexus-auth``), when aiohttp lets us read it."""
    headers = getattr(getattr(ws, _RESPONSE_ATTR, None), "headers", None)
    if headers is None:
        return None
    value = headers.get(name)
    return value if isinstance(value, str) else None


def batch_writer(ws: object) -> Any:
    """aiohttp's WebSocketWriter when every private name batching needs is there and
    the connection does not compress; else ``None`` (frames then go one by one)."""
    writer = getattr(ws, _WRITER_ATTR, None)
    # A client's writer masks (the batch is framed masked, as a client's must be).
    if writer is None or getattr(writer, "compress", True) or not getattr(writer, "use_mask", 0):
        return None
    if not all(hasattr(writer, name) for name in _WRITER_ATTRS):
        return None
    protocol = writer.protocol
    if not all(hasattr(protocol, name) for name in _PROTOCOL_ATTRS):
        return None
    return writer


async def drain(writer: Any) -> None:
    """Flow control as aiohttp's send_frame does it, once the writer's output passed its limit."""
    writer._output_size = 0
    if writer.protocol._paused:
        await writer.protocol._drain_helper()


def parsed_queue(ws: object) -> tuple[deque[Any], Callable[[], Awaitable[Any]]] | None:
    """aiohttp's queue of parsed frames (its deque and its ``read``) when every private
    name the receive loop's drain needs is there; else ``None`` (``receive()`` per frame)."""
    reader = getattr(ws, _READER_ATTR, None)
    buffer = getattr(reader, "_buffer", None)
    read = getattr(reader, "read", None)
    if not isinstance(buffer, deque) or read is None:
        return None
    if not all(isinstance(getattr(ws, name, None), bool) for name in _STATE_ATTRS):
        return None
    if aiohttp.WSMessage._fields[:2] != ("type", "data"):  # the loop indexes messages
        return None
    return buffer, read


@functools.cache
def data_hook_available() -> bool:
    """Whether aiohttp's protocol takes a callback for any data received (what
    :func:`hook_data_received` sets), checked before connecting: without it, the
    connection keeps aiohttp's own heartbeat."""
    from aiohttp.client_proto import ResponseHandler

    try:
        parameters = inspect.signature(ResponseHandler.set_parser).parameters
    except (AttributeError, TypeError, ValueError):
        return False
    return "data_received_cb" in parameters


def hook_data_received(ws: object, callback: Callable[[], None]) -> bool:
    """Have aiohttp call ``callback`` whenever data arrives on ``ws``'s socket (what
    its own heartbeat listens to); whether it could (else nothing was changed)."""
    conn = getattr(ws, _CONN_ATTR, None)
    protocol = getattr(conn, _PROTOCOL_ATTR, None)
    if protocol is None or getattr(protocol, _DATA_CB_ATTR, False) is not None:
        return False  # not there, or taken (aiohttp's own heartbeat)
    setattr(protocol, _DATA_CB_ATTR, callback)
    return True


def expire(ws: Any, exc: BaseException) -> None:
    """End ``ws`` at once with ``exc`` as its exception (a ping unanswered), as aiohttp's
    own heartbeat does; without that private method, by closing its connection."""
    handle = getattr(ws, _EXPIRE_ATTR, None)
    if handle is not None:
        handle(exc)
        return
    response = getattr(ws, _RESPONSE_ATTR, None)
    if response is not None:
        response.close()
