"""Whether the reference server traces the asks that carry W3C trace context.

An ``ask`` may carry its client span's ``traceparent`` (the client's ``telemetry=``);
the server answers it inside a span that is that span's child, so that both sides
show in one trace. :class:`AskTracing` decides once, lazily, where that span goes:

- ``telemetry=None`` (the default): to OpenTelemetry's global tracer provider, if the
  OpenTelemetry API is installed; it is imported on the first ask that carries trace
  context, never before (a server whose clients send none never loads it);
- ``telemetry=True`` or a :class:`~nexus_reactive.telemetry.Telemetry`: to the global
  provider or the one it names, checked when the app is created;
- ``telemetry=False``: nowhere.
"""

from __future__ import annotations

import logging
from typing import Any

from ..telemetry import Telemetry, check_telemetry

__all__ = ["AskTracing"]

logger = logging.getLogger("nexus_reactive.server")


class AskTracing:
    """The server's tracer for asks with trace context, found on first use.

    Raises:
        ConfigError: ``telemetry`` is set but OpenTelemetry's API is not installed.
    """

    __slots__ = ("_resolved", "_settings", "_tracer")

    def __init__(self, telemetry: bool | Telemetry | None = None) -> None:
        self._settings: Telemetry | None = None
        self._tracer: Any = None
        self._resolved = telemetry is False
        if telemetry is not None and telemetry is not False:
            self._settings = check_telemetry(telemetry, "create_app(telemetry=...)")

    def tracer(self) -> Any:
        """The tracer to use, or ``None``: do not trace."""
        if not self._resolved:
            self._resolved = True
            try:
                from ..otel import server_tracer
            except ImportError:  # no OpenTelemetry here: asks are answered untraced
                logger.debug("asks carry trace context; OpenTelemetry is not installed")
                return None
            self._tracer = server_tracer(self._settings)
        return self._tracer
