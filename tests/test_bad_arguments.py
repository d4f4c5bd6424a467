"""A call with an argument that cannot be right (``ask("")``) is the caller's mistake:
an :class:`InvalidArgument`, a ``UsageError`` and, for code written when it was one, a
``ProtocolError`` too. Nothing is sent or queued; the message names the keyword."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from nexus_reactive import (
    InvalidArgument,
    ProtocolError,
    UsageError,
    WebSocketService,
    use_websocket,
)
from nexus_reactive.testing import wait_until

from .conftest import Nexus


@pytest.mark.parametrize(
    ("query", "team_id", "said"),
    [
        ("", None, "query= must be a non-empty string, the question to ask (got '')"),
        (
            "  \t\n",
            None,
            "query= must be a non-empty string, the question to ask "
            "(got '  \\t\\n', only whitespace)",
        ),
        (
            " " * 5000,
            None,
            "query= must be a non-empty string, the question to ask "
            "(got 5000 characters, only whitespace)",
        ),
        (
            "\u3000",
            None,
            "query= must be a non-empty string, the question to ask "
            f"(got {chr(0x3000)!r}, only whitespace)",  # an ideographic space
        ),
        (None, None, "query= must be a non-empty string, the question to ask (got None)"),
        (b"bytes", None, "query= must be a non-empty string, the question to ask (got bytes)"),
        ("fine", 7, "team_id= must be a string or None (got int)"),
    ],
)
async def test_ask_and_send_query_refuse_a_bad_query_as_both_errors(
    nexus: Nexus, query: Any, team_id: Any, said: str
) -> None:
    async with WebSocketService(nexus.config()) as service:
        for name, call in (
            ("ask", lambda: service.ask(query, team_id)),
            ("send_query", lambda: service.send_query(query, team_id)),
        ):
            with pytest.raises(UsageError) as as_usage:
                await _call(call)
            with pytest.raises(ProtocolError) as as_protocol:  # still caught as before
                await _call(call)
            for info in (as_usage, as_protocol):
                assert isinstance(info.value, InvalidArgument)
                assert str(info.value) == f"{name}(): {said}; nothing was sent"
        assert service.outbox_size == 0
        assert (await service.ask("and a good one")).answer  # the service is fine
    assert nexus.stats.asks_received == 1


def test_the_error_is_both_kinds_and_keeps_protocol_errors_attributes() -> None:
    error = InvalidArgument("ask(): query= must be a non-empty string")
    assert isinstance(error, UsageError) and isinstance(error, ProtocolError)
    assert isinstance(error, RuntimeError)  # as every UsageError
    assert error.frame == "" and error.message_id is None


async def _call(call: Any) -> Any:
    result = call()
    if hasattr(result, "__await__"):
        return await result
    return result


async def test_the_observable_asks_name_themselves_in_the_error(nexus: Nexus) -> None:
    """``ask_rx`` and ``ask_stream`` report a bad query on ``on_error`` at subscription,
    as they always did; the message names the method the caller used."""
    async with WebSocketService(nexus.config()) as service:
        for name, observable in (
            ("ask_rx", service.ask_rx("")),
            ("ask_stream", service.ask_stream("")),
            ("ask_rx", service.ask_rx("   ")),
            ("ask_stream", service.ask_stream("\n\t ")),
        ):
            errors: list[Exception] = []
            observable.subscribe(on_error=errors.append)
            await wait_until(lambda errors=errors: bool(errors))
            assert isinstance(errors[0], InvalidArgument)
            assert str(errors[0]).startswith(f"{name}(): query= must be a non-empty string")
        assert service.outbox_size == 0
    assert nexus.stats.asks_received == 0


@pytest.mark.parametrize("query", ["", "   ", None])
async def test_a_store_refuses_a_bad_query_in_its_own_words_from_any_thread(
    nexus: Nexus, query: Any
) -> None:
    async with use_websocket(nexus.config()) as store:
        with pytest.raises(InvalidArgument, match=r"^send_message\(\): query= must be"):
            store.send_message(query)
        raised: list[BaseException] = []

        def from_a_thread() -> None:
            try:
                store.send_message(query)
            except InvalidArgument as exc:
                raised.append(exc)

        thread = threading.Thread(target=from_a_thread)
        thread.start()
        thread.join()
        assert len(raised) == 1 and str(raised[0]).startswith("send_message(): query=")
        assert store._intake._own is None  # no id remembered for an ask never made
        store.send_message("and a good one")
        await wait_until(lambda: len(store.messages.value) == 1)
    assert nexus.stats.asks_received == 1
