"""A client process for the crash test: `python -m tests.crash_client DB URL N`.

Life 1 (N > 0) sends N asks through a persisted store, waits until the journal has
them durably, prints "queued", then waits for answers until it is killed. Life 2
(N == 0) sends nothing: it restores the journal, lets the restored asks go out, and
prints "done <count>" once the history holds every answer it expects. With
``NEXUS_JOURNAL_KEY`` (64 hex characters) in the environment, the journal is encrypted.
"""

from __future__ import annotations

import asyncio
import os
import sys

from nexus_reactive import ResponseMessage, use_websocket


async def main(db: str, url: str, count: int, expect: int) -> int:
    async with use_websocket(
        url=url,
        persist=db,
        persist_key=os.environ.get("NEXUS_JOURNAL_KEY"),
        reconnect_interval=0.05,
        max_reconnect_interval=0.2,
        max_reconnect_attempts=None,
        max_messages=10_000,
    ) as store:
        all_answered = asyncio.Event()

        def check(history: object) -> None:
            answered = sum(isinstance(m, ResponseMessage) for m in store.messages.value)
            if expect and answered >= expect:
                all_answered.set()

        store.messages.subscribe(check)
        for i in range(count):
            store.send_message(f"question {i}")
        await store.service.flush()
        print("queued", flush=True)
        await all_answered.wait()  # life 1 is killed before this, life 2 gets there
        await store.service.flush()
        print("done", flush=True)
        return 0


if __name__ == "__main__":
    db, url, count, expect = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    raise SystemExit(asyncio.run(main(db, url, count, expect)))
