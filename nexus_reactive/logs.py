"""Logging: one ``nexus_reactive`` hierarchy, and ``NEXUS_DEBUG=1``.

- ``nexus_reactive.service``: state changes (DEBUG), reconnects and failures (INFO+);
- ``nexus_reactive.frames``: every frame in (``<-``) and out (``->``) at DEBUG,
  signatures redacted (API keys never travel in frames);
- ``nexus_reactive.transport``, ``.streams``, ``.store``, ``.server``.

``NEXUS_DEBUG=1`` in the environment turns all of it on at DEBUG on stderr (the
console logging of the TypeScript client this library mirrors), without touching
the application's logging.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

R = TypeVar("R")

__all__ = ["debug_requested", "enable_debug_from_env", "enable_debug_logging", "traced_frames"]

_ROOT = "nexus_reactive"
_enabled = False


def enable_debug_logging() -> None:
    """Log everything nexus-reactive does, frames included, to stderr at DEBUG."""
    global _enabled
    if _enabled:
        return
    _enabled = True
    logger = logging.getLogger(_ROOT)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def debug_requested() -> bool:
    """Whether ``NEXUS_DEBUG`` is set to ``1`` (or ``true``/``yes``/``on``)."""
    return os.environ.get("NEXUS_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def enable_debug_from_env() -> None:
    """Apply ``NEXUS_DEBUG=1`` (or ``true``/``yes``/``on``) if it is set."""
    if debug_requested():
        enable_debug_logging()


def traced_frames(on_frame: Callable[[bytes], R]) -> Callable[[bytes], R]:
    """``on_frame``, logging each frame it is given (redacted) to ``nexus_reactive.frames``."""
    from . import codec

    log = logging.getLogger("nexus_reactive.frames")

    def traced(frame: bytes) -> R:
        log.debug("<- %s", codec.redact(frame))
        return on_frame(frame)

    return traced
