"""The suite runs on the loop ``NEXUS_TEST_LOOP`` names (``make test-uvloop``)."""

from __future__ import annotations

import asyncio

from .conftest import TEST_LOOP


async def test_the_suite_runs_on_the_chosen_loop() -> None:
    module = type(asyncio.get_running_loop()).__module__
    if TEST_LOOP == "uvloop":
        assert module.startswith("uvloop"), module
    else:
        assert module.startswith("asyncio"), module
