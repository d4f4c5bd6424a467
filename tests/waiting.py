"""Waiting in tests, sized for a loaded CI machine: the test kit's helpers.

CI runs the suite on a 2-core machine that may be busy with other work, in asyncio
debug mode. So a test never sleeps and hopes: it polls the condition it waits for
with :func:`wait_for` (the kit's :func:`nexus_reactive.testing.wait_until`), and gives
up only after :data:`EVENTUALLY` seconds. A correct program on a slow machine then
makes the test slower, never red; the deadline only turns a broken program's hang into
a failure that says what it waited for.

Intervals that the behaviour under test depends on (heartbeats, request and connect
timeouts, how long a connection counts as healthy) are chosen in each test with a
wide margin over the scheduling delays of a loaded machine (half a second and more),
or the time is injected. A test that checks that something does *not* happen
watches for a while; a slow machine can only make it watch longer.
"""

from __future__ import annotations

from nexus_reactive.testing import EVENTUALLY, poll, wait_for_state
from nexus_reactive.testing import wait_until as wait_for

__all__ = ["EVENTUALLY", "poll", "wait_for", "wait_for_state"]
