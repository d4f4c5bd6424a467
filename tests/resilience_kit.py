"""Fixtures of the resilience tests (tests/test_resilience*.py). Modules import them; each
function is named apart from the argument it fills, so the import does not shadow the
tests' arguments. The autouse one checks every test of a module that imports it: no
library task is left behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from .conftest import Nexus, library_tasks
from .faults import FaultProxy
from .resilience_servers import HttpGate, Script, ScriptServer, start_script_server

__all__ = ["no_task_left_behind_fixture", "proxy_fixture", "script_server_fixture"]


@pytest.fixture(autouse=True, name="_no_task_left_behind")
async def no_task_left_behind_fixture() -> AsyncIterator[None]:
    """Lifecycle hygiene: every test closes its services, and they leave no task."""
    yield
    left = library_tasks()
    for task in left:  # a failed test must not leak its tasks into the next one
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    assert left == []


@pytest.fixture(name="script_server")
def script_server_fixture(
    aiohttp_server: Any,
) -> Callable[..., Any]:
    async def start(script: Script, http: HttpGate | None = None) -> ScriptServer:
        return await start_script_server(aiohttp_server, script, http)

    return start


@pytest.fixture(name="proxy")
async def proxy_fixture(nexus: Nexus) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the reference server."""
    async with FaultProxy("127.0.0.1", nexus.port) as fault_proxy:
        yield fault_proxy
