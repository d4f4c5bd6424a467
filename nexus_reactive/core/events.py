"""What happens to the messages a client sends and receives: the events an observer
(the journal, ``persist=``) records, in one hook instead of checks spread over the shell.

The asyncio layer reports each event once, at the place it happens:

- ``queued``: a message was accepted to send (an ask, or any other message);
- ``sent``: a message other than an ask was written to the wire: it is done;
- ``answered``: the first answer to a pending ask arrived (the ask is done);
- ``abandoned``: an ask failed for its caller (timeout, cancel, disconnect);
- ``received``: any other message for the history arrived;
- ``cleared``: the application emptied its history.

:class:`ClientEvents` does nothing with them; an observer overrides what it records.
"""

from __future__ import annotations

__all__ = ["ClientEvents"]


class ClientEvents:
    """An observer of the client's message events; every method here does nothing."""

    __slots__ = ()

    def queued(self, key: str, is_ask: bool, frame: bytes) -> None:
        """A message was queued to send; ``key`` is the ask's id for an ask."""

    def sent(self, key: str) -> None:
        """A message other than an ask (queued with ``key``) was written to the wire."""

    def answered(self, ask_id: str, frame: bytes) -> None:
        """``frame`` is the first answer to the pending ask ``ask_id``."""

    def abandoned(self, ask_id: str) -> None:
        """The ask ``ask_id`` failed for its caller: it is not to be sent again."""

    def received(self, frame: bytes) -> None:
        """A message for the history that settles no ask of ours."""

    def cleared(self) -> None:
        """The application cleared its history."""
