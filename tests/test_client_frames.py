"""A batch of client frames (nexus_reactive/client_frames.py), read back as a server reads
them: every length class of RFC 6455 (7-bit, 16-bit, 64-bit), every frame masked with
its own key, the pure-Python masking identical to aiohttp's. The batches going over real
sockets are covered by the transport and hostile-server tests."""

from __future__ import annotations

import struct

from aiohttp._websocket.helpers import websocket_mask

from nexus_reactive.client_frames import frame_batch, mask_python

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
