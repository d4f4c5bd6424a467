"""What answers the questions: the engine protocol, the default engine, token counting.

An engine is any callable that takes an :class:`~nexus_reactive.messages.AskRequest`
and returns one of:

- an :class:`~nexus_reactive.messages.AskResponse` (a plain function);
- an awaitable of one (an ``async def``);
- an :class:`~collections.abc.AsyncIterator` of ``str`` pieces (an ``async def``
  that ``yield`` s): a *streaming* engine. Each non-empty piece goes to the
  client at once as a ``response_chunk`` (``{"delta": piece, "index": n}``,
  ``n`` counting from 0), and when the iterator ends the final ``response``
  carries the whole answer, ``"".join(pieces)``, with usage counted by
  :func:`count_tokens`. Empty pieces are skipped (they use no index).

The server calls it once per distinct ask id (see :mod:`nexus_reactive.server.dedupe`),
each call in its own task, so calls may overlap. If the connection closes
mid-stream, the iterator is closed (``aclose()``), so a ``finally`` in an async
generator engine runs.

A synchronous engine runs on the event loop: it must be quick. One that blocks
(disk, network, heavy CPU) should be ``async`` and push the work elsewhere, e.g.
with :func:`asyncio.to_thread`.

Example of a streaming engine::

    async def engine(request: AskRequest) -> AsyncIterator[str]:
        async for token in my_model.stream(request.query):
            yield token
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeAlias

import msgspec

from ..messages import AskRequest, AskResponse, Usage

__all__ = [
    "EchoEngine",
    "Engine",
    "EngineResult",
    "OnDelta",
    "count_tokens",
    "ensure_usage",
    "run_engine",
]

#: What an engine may return: a response, an awaitable of one, or a stream of pieces.
EngineResult: TypeAlias = AskResponse | Awaitable[AskResponse] | AsyncIterator[str]
#: Receives each piece of a streamed answer as it comes (the server sends a chunk).
OnDelta: TypeAlias = Callable[[str], Awaitable[None]]


class Engine(Protocol):
    """Answers one question, all at once or as a stream of pieces.

    Implement ``__call__`` as a plain method, an ``async`` method, or an async
    generator method (or pass such a function); see the module docstring for
    what each return means on the wire. Raising is allowed (mid-stream too): the
    server turns any exception into an ``error`` reply with code ``internal`` and a
    message that reveals nothing about the exception, and logs the exception itself.

    If a returned response has no ``usage``, the server fills it in with
    :func:`count_tokens`.
    """

    def __call__(self, request: AskRequest, /) -> EngineResult:
        """Answer ``request``.

        Args:
            request: the ask's payload (``query``, optional ``team_id``).

        Returns:
            The response, an awaitable of it, or an async iterator of the
            answer's pieces.
        """
        ...


class EchoEngine:
    """The default engine: answers ``"You asked: <query>"``.

    It exists so that a fresh server gives real, checkable answers with no setup.

    Args:
        stream: answer as a stream of words (each with the whitespace after it),
            to demonstrate ``response_chunk``.
        delay: seconds to wait between streamed words (0: none).

    Raises:
        ValueError: ``delay`` is negative.
    """

    def __init__(self, *, stream: bool = False, delay: float = 0.0) -> None:
        if not delay >= 0:  # also refuses NaN
            raise ValueError(f"delay must not be negative, got {delay}")
        self.stream = stream
        self.delay = delay

    def __call__(self, request: AskRequest, /) -> AskResponse | AsyncIterator[str]:
        """Answer by echoing the query.

        Args:
            request: the ask's payload.

        Returns:
            A response whose answer quotes the query and whose usage is counted;
            or, with ``stream``, the same answer as an async iterator of words.
        """
        answer = f"You asked: {request.query}"
        if self.stream:
            return self._words(answer)
        return AskResponse(answer=answer, usage=_usage(request.query, answer))

    async def _words(self, answer: str) -> AsyncIterator[str]:
        for index, word in enumerate(_WORDS.findall(answer)):
            if index and self.delay:
                await asyncio.sleep(self.delay)
            yield word

    def __repr__(self) -> str:
        if not self.stream:
            return "EchoEngine()"
        return f"EchoEngine(stream=True, delay={self.delay})"


# A word and the whitespace after it (or leading whitespace): joined, the pieces
# give back the text exactly.
_WORDS = re.compile(r"\S+\s*|\s+")


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


async def run_engine(
    engine: Engine, request: AskRequest, on_delta: OnDelta | None = None
) -> AskResponse:
    """Call an engine of any kind and return its response, with usage filled in.

    Args:
        engine: the engine to call.
        request: the question.
        on_delta: awaited with each non-empty piece of a streamed answer, in order,
            before the next piece is asked for (so a slow client slows the engine
            rather than piling up pieces). Not called for a non-streaming engine.

    Returns:
        The engine's response (for a streaming engine: the pieces joined), with
        ``usage`` guaranteed.

    Raises:
        TypeError: the engine returned something that is not one of
            :data:`EngineResult`, or streamed a piece that is not a ``str``.
        Exception: whatever the engine (or ``on_delta``) raised, unchanged.
    """
    result: object = engine(request)
    if inspect.isawaitable(result) and not isinstance(result, AskResponse):
        result = await result
    if isinstance(result, AsyncIterator):
        answer = await _drain(engine, result, on_delta)
        return ensure_usage(request, AskResponse(answer=answer))
    if not isinstance(result, AskResponse):
        raise TypeError(
            f"engine {engine!r} returned {type(result).__name__}, expected AskResponse, "
            "an awaitable of one, or an async iterator of str"
        )
    return ensure_usage(request, result)


async def _drain(engine: Engine, stream: AsyncIterator[object], on_delta: OnDelta | None) -> str:
    pieces: list[str] = []
    try:
        async for piece in stream:
            if not isinstance(piece, str):
                raise TypeError(
                    f"streaming engine {engine!r} yielded {type(piece).__name__}, expected str"
                )
            if not piece:
                continue
            if on_delta is not None:
                await on_delta(piece)
            pieces.append(piece)
    finally:
        # Stopped early (error, or the connection closed): let the engine clean up now,
        # not whenever the garbage collector finds the generator.
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
    return "".join(pieces)


def _usage(query: str, answer: str) -> Usage:
    prompt, completion = count_tokens(query), count_tokens(answer)
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
