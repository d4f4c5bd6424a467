"""The fault-injection proxy of the test kit (:mod:`nexus_reactive.testing.faults`),
under the names the suite has always used."""

from __future__ import annotations

from nexus_reactive.testing import FaultProxy
from nexus_reactive.testing.faults import CHUNK_SIZE

from .waiting import wait_for

__all__ = ["CHUNK_SIZE", "FaultProxy", "wait_for"]
