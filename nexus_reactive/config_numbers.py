"""The numeric options' checks: durations, counts and rates.

Split out of :mod:`nexus_reactive.config`. Each error names the keyword and what it
accepts, in the words of ``WebSocketConfig(...)``.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import ConfigError

__all__ = ["check_numbers", "positive"]


def check_numbers(config: Any) -> None:
    """Raise :class:`ConfigError` for the first numeric option out of its range."""
    for name in (
        "reconnect_interval",
        "max_reconnect_interval",
        "connect_timeout",
        "auth_timeout",
        "metrics_interval",
    ):
        if not positive(getattr(config, name)):
            raise ConfigError(f"{name} must be a positive number of seconds")
    for name in ("request_timeout", "heartbeat", "batch_interval"):
        value = getattr(config, name)
        if value is not None and not positive(value):
            raise ConfigError(f"{name} must be a positive number of seconds, or None")
    if config.rate is not None and not positive(config.rate):
        raise ConfigError("rate must be a positive number of messages per second, or None")
    if not (config.reset_backoff_after >= 0 and math.isfinite(config.reset_backoff_after)):
        raise ConfigError("reset_backoff_after must be a number of seconds >= 0")
    if not 0 <= config.reconnect_jitter <= 1:
        raise ConfigError("reconnect_jitter must be between 0 and 1")
    if config.max_reconnect_attempts is not None and config.max_reconnect_attempts < 0:
        raise ConfigError("max_reconnect_attempts must be >= 0, or None to retry forever")
    for name in ("outbox_limit", "dedupe_size", "max_message_size"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int):
            # A count: 1.5, "1000" or None would fail later, far from the cause.
            raise ConfigError(
                f"{name} must be a whole number (an int) of at least 1, got {value!r}"
            )
        if value < 1:
            raise ConfigError(f"{name} must be at least 1")
    if config.max_messages is not None and config.max_messages < 1:
        raise ConfigError("max_messages must be at least 1")
    if config.burst is not None and config.burst < 1:
        raise ConfigError("burst must be at least 1")


def positive(value: object) -> bool:
    """A positive, non-NaN number (``not (x > 0)`` also rejects NaN)."""
    return isinstance(value, (int, float)) and value > 0 and not math.isnan(value)
