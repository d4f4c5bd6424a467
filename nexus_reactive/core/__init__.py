"""The pure connection core: no asyncio, aiohttp or reactivex in this package.

- :mod:`.state`: the connection's phases and the immutable state snapshot;
- :mod:`.policy`: the one table of fatal versus retryable failures;
- :mod:`.meaning`: what rate limits, challenges and handshake errors mean;
- :mod:`.backoff`: the backoff schedule and the retry budget;
- :mod:`.outbox`: frames waiting for a connection;
- :mod:`.deadlines`: ask deadlines in buckets, one timer for all;
- :mod:`.pending`: asks waiting for their answer;
- :mod:`.recent`: the bounded memory of answered and abandoned ids;
- :mod:`.ratelimit`: the token bucket that paces outgoing messages;
- :mod:`.metrics`: the counters and latency windows behind ``service.metrics``;
- :mod:`.demand`: when a lazy connection (``lazy=True``) should be open;
- :mod:`.sending`: taking frames out of the outbox for the writer, and putting them back;
- :mod:`.connection`: :class:`ClientCore`, the rules that tie them together.
"""

from .backoff import Backoff, Reconnector
from .connection import ClientCore, Decision
from .deadlines import Deadlines
from .metrics import Counters, Latency, Metrics
from .outbox import Outbox, Outgoing
from .pending import Pending, PendingTable, Reply
from .policy import close_error, http_error
from .ratelimit import AskWindow, TokenBucket
from .recent import DEFAULT_REMEMBER, RecentIds
from .state import ConnectionState, Phase

__all__ = [
    "DEFAULT_REMEMBER",
    "AskWindow",
    "Backoff",
    "ClientCore",
    "ConnectionState",
    "Counters",
    "Deadlines",
    "Decision",
    "Latency",
    "Metrics",
    "Outbox",
    "Outgoing",
    "Pending",
    "PendingTable",
    "Phase",
    "RecentIds",
    "Reconnector",
    "Reply",
    "TokenBucket",
    "close_error",
    "http_error",
]
