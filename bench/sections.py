"""The suite: its sizes (:class:`Params`), the section letters (:data:`SECTIONS`) and
:class:`Suite`, which runs each section and owns the flood server they share.

Every section runs its variants round-robin (:mod:`bench.rounds`): each round runs
every variant once, the starting variant rotating from round to round, so slow drift
of the machine (other work, thermal state) spreads over all variants instead of
favouring one; each variant also runs once, unrecorded, before the first round.

Where each section lives:

a ``flood``, b ``asks``      :mod:`bench.throughput` (ask runs: :mod:`bench.askruns`)
c ``history``, d ``memory``  :mod:`bench.history`
e ``restart``                :mod:`bench.restart`
f ``uvloop``                 :mod:`bench.event_loops`
g ``imports``                :mod:`bench.import_time`
h ``stores``                 :mod:`bench.stores`
i ``server``                 :mod:`bench.capacity`
j ``journal``                :mod:`bench.journal`
k ``frames``                 :mod:`bench.frames`
l ``observability``          :mod:`bench.observability`
m ``compression``            :mod:`bench.compression`
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import (
    askruns,
    capacity,
    compression,
    event_loops,
    history,
    import_time,
    observability,
    restart,
    servers,
    stores,
    throughput,
)
from .askruns import Asker
from .journal import journal as journal_section
from .rounds import Run

__all__ = ["SECTIONS", "Params", "Suite"]


@dataclass
class Params:
    """Sizes of the work; :meth:`quick` is the smoke mode."""

    rounds: int = 5
    messages: int = 200_000  # a: frames per flood
    sequential_asks: int = 2_000  # b: asks per sequential run
    inflight_asks: int = 20_000  # b: asks per run with `concurrency` in flight
    concurrency: int = 100
    warmup_asks: int = 100
    history_sizes: tuple[int, ...] = (10_000, 50_000, 200_000)  # c
    history_messages: int = 200_000  # c: messages timed per run
    history_batch: int = 256  # c: messages per event-loop tick
    memory_messages: int = 20_000  # d: messages retained under tracemalloc
    rss_messages: int = 1_000_000  # d: the long flood
    rss_max_messages: int = 1_000
    restart_rounds: int = 5  # e
    reconnect_interval: float = 0.05  # e
    max_reconnect_interval: float = 0.1  # e
    import_runs: int = 15  # g: fresh interpreters per import statement
    stores: int = 1_000  # h: stores on one shared connection
    stores_asks: int = 10  # h: asks per store (answers routed per store)
    stores_flood: int = 20_000  # h: answers no store asked for, on the shared connection
    stores_broadcast: int = 2_000  # h: unsolicited frames, each delivered to every store
    idle_connections: int = 5_000  # i: idle clients of one server process
    idle_heartbeat: float = 5.0  # i: seconds between pings, client and server
    idle_hold: float = 15.0  # i: seconds they stay idle
    server_rounds: int = 1  # i: rounds of the idle-connections run
    journal_asks: int = 20_000  # j: asks recorded per run, plain and encrypted
    journal_rows: int = 1_000  # j: unsent asks (and as many answers) a timed open restores
    compression_asks: int = 500  # m: asks per throughput run, each variant
    compression_in_flight: int = 20  # m

    @classmethod
    def quick(cls) -> Params:
        return cls(
            rounds=1,
            messages=20_000,
            sequential_asks=200,
            inflight_asks=2_000,
            warmup_asks=20,
            history_messages=20_000,
            memory_messages=5_000,
            rss_messages=50_000,
            restart_rounds=1,
            import_runs=3,
            stores=50,
            stores_asks=2,
            stores_flood=1_000,
            stores_broadcast=100,
            idle_connections=100,
            idle_heartbeat=1.0,
            idle_hold=1.5,
            journal_asks=1_000,
            journal_rows=200,
            compression_asks=40,
        )


@dataclass
class Suite:
    """Runs the sections; owns the servers it starts (stopped by :meth:`close`)."""

    params: Params
    api_key: str
    _flood: servers.ServerProcess | None = field(default=None, init=False)

    def flood_url(self) -> str:
        if self._flood is None:
            self._flood = servers.start_flood()
        return self._flood.url

    def close(self) -> None:
        if self._flood is not None:
            self._flood.stop()
            self._flood = None

    # -- how an ask is timed, for every ask section (bench/askruns.py) -----------------

    def _sequential_run(self, client: Asker, server: servers.ServerProcess) -> Run:
        return askruns.sequential_run(self.params, client, server)

    def _inflight_run(self, client: Asker, server: servers.ServerProcess) -> Run:
        return askruns.inflight_run(self.params, client, server)

    # -- the sections, by name (run.py calls them so) -----------------------------------

    async def flood(self) -> dict[str, Any]:
        return await throughput.flood(self)

    async def asks(self) -> dict[str, Any]:
        return await throughput.asks(self)

    async def history(self) -> dict[str, Any]:
        return await history.history(self)

    async def memory(self) -> dict[str, Any]:
        return await history.memory(self)

    async def restart(self) -> dict[str, Any]:
        return await restart.restart(self)

    async def uvloop(self) -> dict[str, Any]:
        return await event_loops.uvloop_section(self)

    async def imports(self) -> dict[str, Any]:
        return await import_time.imports(self)

    async def stores(self) -> dict[str, Any]:
        return await stores.stores(self)

    async def server(self) -> dict[str, Any]:
        return await capacity.server(self)

    async def journal(self) -> dict[str, Any]:
        return await journal_section(self)

    async def frames(self) -> dict[str, Any]:
        from .frames import frames

        return await frames(self)

    async def observability(self) -> dict[str, Any]:
        return await observability.observability(self)

    async def compression(self) -> dict[str, Any]:
        p = self.params
        return await compression.section(
            p.rounds, p.compression_asks, p.compression_in_flight, self.api_key
        )


#: Section keys in order, with the letters of the issue.
SECTIONS: dict[str, str] = {
    "a": "flood",
    "b": "asks",
    "c": "history",
    "d": "memory",
    "e": "restart",
    "f": "uvloop",
    "g": "imports",
    "h": "stores",
    "i": "server",
    "j": "journal",
    "k": "frames",
    "l": "observability",
    "m": "compression",
}
