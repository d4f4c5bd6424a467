"""OpenTelemetry settings (the ``otel`` extra): :class:`Telemetry`, for
``WebSocketConfig(telemetry=...)`` and the reference server's ``create_app(telemetry=...)``.

This module never imports OpenTelemetry: :mod:`nexus_reactive.otel` does, and only
a service or server configured with telemetry loads it. With ``telemetry=True`` the
global providers are used (``opentelemetry.trace.set_tracer_provider(...)``, or
``opentelemetry-instrument``); a :class:`Telemetry` names its own.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = ["Telemetry", "check_telemetry"]


@dataclass(frozen=True)
class Telemetry:
    """Where a service's (or the reference server's) spans and metrics go.

    Args:
        tracer_provider: an OpenTelemetry ``TracerProvider``; ``None``: the global one.
        meter_provider: an OpenTelemetry ``MeterProvider``; ``None``: the global one.
        propagate: carry each ask's W3C trace context (``traceparent``,
            ``tracestate``) on its frame, so that the server's spans join the trace.
    """

    tracer_provider: Any = None
    meter_provider: Any = None
    propagate: bool = True


def check_telemetry(value: object, keyword: str = "telemetry") -> Telemetry | None:
    """``telemetry=`` as a :class:`Telemetry`, or ``None`` when off.

    Raises:
        ConfigError: not a bool or a :class:`Telemetry`, or OpenTelemetry's API is
            not installed.
    """
    if value is False or value is None:
        return None
    if value is True:
        value = Telemetry()
    if not isinstance(value, Telemetry):
        raise ConfigError(
            f"{keyword} must be True, False or a nexus_reactive.Telemetry(...), "
            f"got {type(value).__name__}"
        )
    try:
        found = importlib.util.find_spec("opentelemetry.trace") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise ConfigError(
            f"{keyword}= needs OpenTelemetry's API, which is not installed: "
            "pip install 'nexus-reactive[otel]' (and the SDK and exporters you send to)"
        )
    return value
