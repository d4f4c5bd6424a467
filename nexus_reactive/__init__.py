"""nexus-reactive: a typed, reactive asyncio client for the Nexus WebSocket protocol.

The API of the TypeScript design (a React Native client) that this library mirrors::

    from nexus_reactive import WebSocketConfig, WebSocketService, use_websocket

    async with use_websocket(url="ws://localhost:8000") as store:
        state, messages, send_message, clear_messages = store
        messages.subscribe(lambda history: print(history[-1].payload.answer))
        send_message("What is Nexus?")

Everything public is importable from here; the submodules are the architecture:
``messages`` and ``codec`` (the wire), ``core`` (the pure client rules),
``transport`` (aiohttp), ``service`` (asyncio), ``store`` (reactive state),
``server`` (the reference server) and ``cli``.
"""

import logging as _logging

from .codec import decode, encode
from .config import API_KEY_ENV, WebSocketConfig
from .core import ConnectionState, Phase
from .core.metrics import Latency, Metrics
from .errors import (
    AuthenticationError,
    ConfigError,
    ConnectionClosed,
    InvalidArgument,
    NexusConnectionError,
    NexusError,
    OutboxFull,
    PersistenceError,
    ProtocolError,
    RedirectRefused,
    RequestTimeout,
    RetriesExhausted,
    ServerError,
    UnknownOption,
    UsageError,
)
from .messages import (
    AskMessage,
    AskRequest,
    AskResponse,
    AuthMessage,
    AuthOkMessage,
    AuthOkPayload,
    AuthPayload,
    ChallengeMessage,
    ChallengePayload,
    ErrorMessage,
    ErrorPayload,
    Message,
    PartialResponse,
    ResponseChunkMessage,
    ResponseChunkPayload,
    ResponseMessage,
    UnknownMessage,
    Usage,
    new_id,
)
from .service import WebSocketService
from .store import History, HistoryItem, WebSocketStore, use_websocket
from .streams import Stream, ValueStream
from .sync import SyncWebSocketStore, use_websocket_sync
from .telemetry import Telemetry

__version__ = "0.1.0"

# A library logs; the application decides where logs go.
_logging.getLogger("nexus_reactive").addHandler(_logging.NullHandler())

__all__ = [
    "API_KEY_ENV",
    "AskMessage",
    "AskRequest",
    "AskResponse",
    "AuthMessage",
    "AuthOkMessage",
    "AuthOkPayload",
    "AuthPayload",
    "AuthenticationError",
    "ChallengeMessage",
    "ChallengePayload",
    "ConfigError",
    "ConnectionClosed",
    "ConnectionState",
    "ErrorMessage",
    "ErrorPayload",
    "History",
    "HistoryItem",
    "InvalidArgument",
    "Latency",
    "Message",
    "Metrics",
    "NexusConnectionError",
    "NexusError",
    "OutboxFull",
    "PartialResponse",
    "PersistenceError",
    "Phase",
    "ProtocolError",
    "RedirectRefused",
    "RequestTimeout",
    "ResponseChunkMessage",
    "ResponseChunkPayload",
    "ResponseMessage",
    "RetriesExhausted",
    "ServerError",
    "Stream",
    "SyncWebSocketStore",
    "Telemetry",
    "UnknownMessage",
    "UnknownOption",
    "Usage",
    "UsageError",
    "ValueStream",
    "WebSocketConfig",
    "WebSocketService",
    "WebSocketStore",
    "__version__",
    "decode",
    "encode",
    "new_id",
    "use_websocket",
    "use_websocket_sync",
]
