"""Quickstart: the TypeScript design's React example, in Python.

Prints each connection state change and each answer as it arrives.

    NEXUS_API_KEY=... python examples/quickstart.py [--url ws://localhost:8000] [QUESTION ...]
"""

from __future__ import annotations

import argparse
import asyncio

from nexus_reactive import ConnectionState, History, HistoryItem, ResponseMessage, use_websocket

QUESTIONS = [
    "What is nexus-reactive?",
    "How does reconnection work?",
    "How do I authenticate?",
]


async def main(url: str, questions: list[str]) -> int:
    async with use_websocket(url=url) as store:
        state, messages, send_message, _clear_messages = store

        def show_state(s: ConnectionState) -> None:
            print(f"[state] {'Connected' if s.connected else 'Disconnected'} ({s})")

        printed = 0
        all_answered = asyncio.Event()

        def show_answers(history: History[HistoryItem]) -> None:
            nonlocal printed
            for message in history[printed:]:
                if isinstance(message, ResponseMessage):
                    answer = message.payload
                    print(f"[answer {message.id[:8]}] {answer.answer}")
                    if answer.context:
                        print(f"    context: {answer.context[:160]}...")
                    if answer.usage:
                        print(f"    usage: {answer.usage.total_tokens} tokens")
                else:
                    print(f"[{message.type} {message.id[:8]}] {message.payload}")
            printed = len(history)
            if printed >= len(questions):
                all_answered.set()

        state.subscribe(show_state)
        messages.subscribe(show_answers)

        # As in the TypeScript example, send once connected; queued sends would also go out then.
        await store.service.connect()
        for question in questions:
            print(f"[ask] {question}")
            send_message(question)

        try:
            await asyncio.wait_for(all_answered.wait(), timeout=30)
        except TimeoutError:
            print(f"[error] only {len(messages.value)} of {len(questions)} answers arrived")
            return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://localhost:8000")
    parser.add_argument("questions", nargs="*", default=QUESTIONS)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.url, args.questions)))
