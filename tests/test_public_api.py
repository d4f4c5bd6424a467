"""The public surface: what ``nexus_reactive`` exports, and the errors tree."""

from __future__ import annotations

import nexus_reactive
from nexus_reactive import errors, persist

EXPORTED = [
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


def test_all_is_pinned_sorted_and_importable() -> None:
    assert nexus_reactive.__all__ == EXPORTED  # a change here is an API change: on purpose
    assert sorted(nexus_reactive.__all__) == nexus_reactive.__all__
    for name in nexus_reactive.__all__:
        assert hasattr(nexus_reactive, name), name


def test_every_error_class_is_exported_and_drawn_in_the_tree() -> None:
    classes = [
        getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)
    ]
    tree = errors.__doc__ or ""
    for cls in classes:
        assert issubclass(cls, errors.NexusError)
        assert cls.__name__ in nexus_reactive.__all__, cls
        assert cls.__name__ in tree, cls


def test_persistence_error_is_in_the_errors_tree() -> None:
    assert issubclass(nexus_reactive.PersistenceError, nexus_reactive.NexusError)
    assert persist.PersistenceError is nexus_reactive.PersistenceError
    assert "└── PersistenceError" in (errors.__doc__ or "")
