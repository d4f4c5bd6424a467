"""A batch of client frames (nexus_reactive/client_frames.py), read back as a server reads
them: every length class of RFC 6455 (7-bit, 16-bit, 64-bit), every frame masked with
its own key, the pure-Python masking identical to aiohttp's. The batches going over real
sockets: the last test here, and the transport and hostile-server tests."""

from __future__ import annotations

import asyncio
import struct

from aiohttp._websocket.helpers import websocket_mask

from nexus_reactive import AskMessage, AskRequest, WebSocketService
from nexus_reactive.client_frames import frame_batch, mask_python
from nexus_reactive.codec import encode
from nexus_reactive.messages import new_id

from .conftest import ServerFactory

FRAMES = [b"", b"a", b"x" * 125, b"y" * 126, b"z" * 65535, b"w" * 65536, "é".encode() * 70]


def read_frames(data: bytes) -> list[tuple[bytes, bytes]]:
    """(key, unmasked payload) of each frame, checking each is a final, masked text frame."""
    frames = []
    at = 0
    while at < len(data):
        assert data[at] == 0x81, "FIN + text"
        second = data[at + 1]
        assert second & 0x80, "a client's frame is masked"
        length, at = second & 0x7F, at + 2
        if length == 126:
            (length,), at = struct.unpack("!H", data[at : at + 2]), at + 2
        elif length == 127:
            (length,), at = struct.unpack("!Q", data[at : at + 8]), at + 8
        key, at = data[at : at + 4], at + 4
        payload = bytearray(data[at : at + length])
        assert len(payload) == length, "the frame is whole"
        websocket_mask(key, payload)
        frames.append((key, bytes(payload)))
        at += length
    return frames


def test_a_batch_reads_back_as_the_frames_in_order_with_either_masking() -> None:
    for mask in (websocket_mask, mask_python):
        for _ in range(2):  # the second time, the headers are the remembered ones
            assert [p for _, p in read_frames(frame_batch(FRAMES, mask))] == FRAMES


def test_every_frame_has_its_own_key() -> None:
    frames = [b"same payload"] * 64
    keys = [key for key, _ in read_frames(frame_batch(frames, websocket_mask))]
    # 64 draws of 32 random bits: a repeat is a one-in-a-few-million event.
    assert len(set(keys)) == len(keys)
    again = [key for key, _ in read_frames(frame_batch(frames, websocket_mask))]
    assert not set(keys) & set(again)


def test_an_empty_batch_is_no_bytes() -> None:
    assert frame_batch([], websocket_mask) == b""


async def test_asks_batched_at_every_length_boundary_arrive_whole_over_a_socket(
    start_nexus: ServerFactory,
) -> None:
    """Asks made together go as one batch; frames of 125, 126, 127, 65535, 65536 and
    70,000 bytes (some of them UTF-8 text of two-byte characters) each reach a real
    server whole, in order, and are answered."""
    nexus = await start_nexus(max_query_length=100_000)
    envelope = len(encode(AskMessage(id=new_id(), payload=AskRequest(""))))

    def query(size: int, text: str) -> str:
        body = text * ((size - envelope) // len(text.encode()))
        return body + "x" * (size - envelope - len(body.encode()))

    queries = [query(size, text) for size in (125, 126, 127, 65535, 65536, 70_000) for text in "aé"]
    async with WebSocketService(nexus.config()) as service:
        answers = await asyncio.gather(service.ask("first"), *map(service.ask, queries))
    assert [a.answer for a in answers] == [f"You asked: {q}" for q in ["first", *queries]]
    assert nexus.stats.asks_received == len(queries) + 1
