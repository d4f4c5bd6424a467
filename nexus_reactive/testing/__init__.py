"""A test kit for apps built on nexus-reactive: the reference server, a fault proxy,
and waiting with a deadline. See docs/testing.md ("Testing your app").

- :class:`NexusServer`: the reference server on a free loopback port, with a key;
  its counters, stop, restart on the same port, close connections with a code;
  ``tls=True`` serves ``wss://`` with a throwaway certificate (:mod:`.tls`).
- :class:`FaultProxy`: a TCP proxy in front of any server that drops, delays, stalls,
  cuts mid-frame, refuses the upgrade with an HTTP status, or closes with a code.
- :func:`wait_for_state`, :func:`wait_until`, :func:`poll`: wait for a connection state
  or any condition, failing after a deadline (:data:`EVENTUALLY`) that a loaded
  machine does not trip.
- :func:`client_config`: a client config with test-sized intervals.

Installed with the package is a pytest plugin (named ``nexus_reactive``) with the
fixtures ``nexus_server``, ``nexus_server_factory``, ``nexus_key`` and
``fault_proxy``. Importing it costs nothing: this package is imported when a
fixture is first used, and the server (``aiohttp.web``) only with :class:`NexusServer`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .faults import FaultProxy
from .waiting import EVENTUALLY, HasState, StateWanted, poll, wait_for_state, wait_until

if TYPE_CHECKING:
    from .server import NexusServer, client_config

#: The ``nexus_server_factory`` fixture: ``await factory(**create_app_options)``.
ServerFactory = Callable[..., Awaitable["NexusServer"]]
#: The ``fault_proxy`` fixture: ``await fault_proxy(server_or_url_or_port)``.
ProxyFactory = Callable[["NexusServer | str | int"], Awaitable[FaultProxy]]

__all__ = [
    "EVENTUALLY",
    "FaultProxy",
    "HasState",
    "NexusServer",
    "ProxyFactory",
    "ServerFactory",
    "StateWanted",
    "client_config",
    "poll",
    "wait_for_state",
    "wait_until",
]

_SERVER_NAMES = frozenset({"NexusServer", "client_config"})


def __getattr__(name: str) -> Any:
    # The server's names are imported on first use: aiohttp.web is the heavy part.
    if name in _SERVER_NAMES:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
