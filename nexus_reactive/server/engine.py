"""What answers the questions: the engine protocol, the default engine, token counting.

An engine is any callable that takes an :class:`~nexus_reactive.messages.AskRequest`
and returns an :class:`~nexus_reactive.messages.AskResponse`, either directly (a plain
function) or as an awaitable (an ``async def``). The server calls it once per
distinct ask id (see :mod:`nexus_reactive.server.dedupe`), each call in its own
task, so calls may overlap.

A synchronous engine runs on the event loop: it must be quick. One that blocks
(disk, network, heavy CPU) should be ``async`` and push the work elsewhere, e.g.
with :func:`asyncio.to_thread`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

import msgspec

from ..messages import AskRequest, AskResponse, Usage

__all__ = ["EchoEngine", "Engine", "count_tokens", "ensure_usage", "run_engine"]


class Engine(Protocol):
    """Answers one question.

    Implement ``__call__`` as a plain or an ``async`` method (or pass a function).
    Raising is allowed: the server turns any exception into an ``error`` reply with
    code ``internal`` and a message that reveals nothing about the exception, and
    logs the exception itself.

    If the returned response has no ``usage``, the server fills it in with
    :func:`count_tokens`.
    """

    def __call__(self, request: AskRequest, /) -> AskResponse | Awaitable[AskResponse]:
        """Answer ``request``.

        Args:
            request: the ask's payload (``query``, optional ``team_id``).

        Returns:
            The response, or an awaitable of it.
        """
        ...


class EchoEngine:
    """The default engine: answers ``"You asked: <query>"``.

    It exists so that a fresh server gives real, checkable answers with no setup.
    """

    def __call__(self, request: AskRequest, /) -> AskResponse:
        """Answer by echoing the query.

        Args:
            request: the ask's payload.

        Returns:
            A response whose answer quotes the query, and whose usage is counted.
        """
        answer = f"You asked: {request.query}"
        return AskResponse(answer=answer, usage=_usage(request.query, answer))

    def __repr__(self) -> str:
        return "EchoEngine()"


def count_tokens(text: str) -> int:
    """Count the tokens of ``text`` the way this server reports usage.

    A token here is a run of non-whitespace characters (``str.split()``): a cheap,
    deterministic stand-in for a real tokenizer, good enough for usage accounting
    by a reference server. ``""`` has 0 tokens.

    Args:
        text: any text.

    Returns:
        The number of whitespace-separated words in ``text``.
    """
    return len(text.split())


def ensure_usage(request: AskRequest, response: AskResponse) -> AskResponse:
    """Return ``response`` with ``usage`` filled in, counting tokens if it is missing.

    Args:
        request: the question (its query gives the prompt tokens).
        response: the engine's answer (its answer gives the completion tokens).

    Returns:
        ``response`` itself if it carries usage, else a copy with counted usage.
    """
    if response.usage is not None:
        return response
    return msgspec.structs.replace(response, usage=_usage(request.query, response.answer))


async def run_engine(engine: Engine, request: AskRequest) -> AskResponse:
    """Call a sync or async engine and return its response, with usage filled in.

    Args:
        engine: the engine to call.
        request: the question.

    Returns:
        The engine's response, with ``usage`` guaranteed.

    Raises:
        TypeError: the engine returned something that is not an ``AskResponse``.
        Exception: whatever the engine raised, unchanged.
    """
    result = engine(request)
    if not isinstance(result, AskResponse):
        result = await result
    if not isinstance(result, AskResponse):
        raise TypeError(f"engine {engine!r} returned {type(result).__name__}, expected AskResponse")
    return ensure_usage(request, result)


def _usage(query: str, answer: str) -> Usage:
    prompt, completion = count_tokens(query), count_tokens(answer)
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
