"""Edges of the batch receive path (``Receiver.on_frames``) found in review: each
must mean what the same frames meant one by one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nexus_reactive import WebSocketService

from .conftest import client_config
from .faults import wait_for
from .test_receive_batches import burst_after_ask, pushes, response


async def test_a_handler_added_while_the_last_message_of_a_read_is_delivered_hears_it(
    aiohttp_server: Any,
) -> None:
    # One by one, a handler added by a subscriber hears the message it was added
    # during; the last message of a read (of a read of one, the usual case) too.
    url = await burst_after_ask(
        aiohttp_server, lambda ask_id: [response(ask_id), *pushes(0, 20), response("end")]
    )
    handled: list[str] = []
    added: list[Callable[[], None]] = []
    async with WebSocketService(client_config(url)) as service:

        def on_next(message: Any) -> None:
            if message.id == "end" and not added:
                added.append(service.on_message("response", lambda m: handled.append(m.id)))

        service.messages.subscribe(on_next)
        service.send_query("go")
        await wait_for(lambda: bool(added))
        assert handled == ["end"]
