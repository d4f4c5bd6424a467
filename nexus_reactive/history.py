"""A store's history: an immutable, O(1) view of the messages received so far."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Generic, TypeAlias, TypeVar, overload

from .messages import Message, PartialResponse

__all__ = ["History", "HistoryItem"]

T = TypeVar("T")

#: What a store's history holds: received messages, and answers being streamed.
HistoryItem: TypeAlias = Message | PartialResponse


class History(Sequence[T], Generic[T]):
    """An immutable view of messages in arrival order.

    It shares the store's storage: the store only appends to that list, except to
    put a final answer where its in-progress version stood, and a view taken while
    that answer was in progress carries its own copy of the in-progress slot
    (``patches``). So the contents of a view never change. Creating one is O(1)
    plus the number of answers streaming at that moment.
    """

    __slots__ = ("_items", "_patches", "_start", "_stop")

    def __init__(
        self,
        items: list[T],
        start: int = 0,
        stop: int | None = None,
        patches: Mapping[int, T] | None = None,
    ) -> None:
        self._items = items
        self._start = start
        self._stop = len(items) if stop is None else stop
        self._patches = patches

    def __len__(self) -> int:
        return self._stop - self._start

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            # Only the slice's own items: history[-20:] costs 20, not the history.
            at, items, patches = self._start, self._items, self._patches
            if patches is None:
                return [items[at + i] for i in range(len(self))[index]]
            return [patches.get(at + i, items[at + i]) for i in range(len(self))[index]]
        n = self._stop - self._start
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("history index out of range")
        at = self._start + index
        patches = self._patches
        if patches is not None and at in patches:
            return patches[at]
        return self._items[at]

    def __iter__(self) -> Iterator[T]:
        items, patches = self._items, self._patches
        if patches is None:
            for i in range(self._start, self._stop):
                yield items[i]
        else:
            for i in range(self._start, self._stop):
                yield patches.get(i, items[i])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"History({len(self)} messages)"

    def _repr_html_(self) -> str:
        from .display import history_html

        return history_html(self)  # type: ignore[arg-type]  # T is HistoryItem here
