"""``use_websocket`` for Solara components: the React hook, as a reacton hook.

Install the extra (``pip install 'nexus-reactive[solara]'``); this module is the
only one that imports Solara::

    import solara
    from nexus_reactive.solara import use_websocket

    @solara.component
    def Page():
        state, messages, send_message, clear_messages = use_websocket(url="ws://localhost:8000")
        solara.Text("Connected" if state.connected else "Disconnected")
        for message in messages:
            solara.Markdown(getattr(message.payload, "answer", ""))
        solara.Button("Ask", on_click=lambda: send_message("What is Nexus?"))

What it guarantees, and why (``docs/solara.md`` says more):

- **One connection per component instance**, so per browser tab (each tab is a
  virtual kernel under ``solara run``). Never shared: a shared connection in a
  process that serves many tabs is how one tab ends up showing another's answers.
- **Updates arrive inside the tab's kernel context**, captured when the component
  renders. A state change made outside it would be written to a scope every tab
  shares, or update widgets of no tab.
- **Batched to the render rate**: ``messages`` changes at most once per
  ``batch_interval`` (50 ms), and a render slower than the updates skips to the
  latest value instead of queueing them (:class:`~nexus_reactive.scheduled.ScheduledView`).
- **Never on the server's event loop**: the store runs its own loop thread
  (:func:`~nexus_reactive.use_websocket_sync`), renders happen on a delivery thread
  of the component's own, and the cleanup closes the connection in the background,
  so neither a render nor a slow close ever blocks Solara's loop or another tab.
- **Cleanup**: the connection closes in the effect's cleanup (the component
  unmounts, the tab closes or its kernel is culled) and reopens when the
  connection settings (``url``, the key...) or ``team_id`` change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import ssl
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import reacton
import reacton.core
from reactivex import abc
from reactivex.scheduler import EventLoopScheduler

from .config import WebSocketConfig
from .core import ConnectionState
from .errors import UsageError
from .history import History, HistoryItem
from .sync import SyncWebSocketStore, use_websocket_sync

__all__ = ["DEFAULT_BATCH_INTERVAL", "WebSocketHook", "use_websocket"]

log = logging.getLogger("nexus_reactive.solara")

#: Seconds between two updates of ``messages`` at most: about a browser's useful repaint rate
#: over a WebSocket to the kernel, and what the widgets' round trips sustain.
DEFAULT_BATCH_INTERVAL = 0.05


class WebSocketHook(NamedTuple):
    """What :func:`use_websocket` returns; unpacks like the React hook's value.

    Unlike the store's observables, ``state`` and ``messages`` are plain current
    values: the component renders again whenever either changes.
    """

    #: The connection's state (``.connected``, ``.phase``, ``.error``, ...).
    state: ConnectionState
    #: The received messages in arrival order; a streaming answer is a
    #: :class:`~nexus_reactive.PartialResponse` that grows until its final response.
    messages: History[HistoryItem]
    #: ``send_message(query, team_id=None) -> id``: ask; queued while disconnected.
    send_message: Callable[..., str]
    #: ``clear_messages()``: empty the history.
    clear_messages: Callable[[], None]

    def reconnect(self) -> None:
        """Drop the connection and connect again now, with a fresh retry budget (a
        "Reconnect" button; after a fatal error such as a refused key, the way to try
        again): :meth:`SyncWebSocketStore.reconnect <nexus_reactive.SyncWebSocketStore.reconnect>`.
        A method, not a field: the hook still unpacks into its four values.

        Raises:
            UsageError: the component has unmounted (its connection is closed), or this
                hook was not made by :func:`use_websocket`.
        """
        reconnect = getattr(getattr(self.send_message, "__self__", None), "reconnect", None)
        if reconnect is None:
            raise UsageError(
                "reconnect() needs a hook made by use_websocket(); this one was built by "
                "hand, so there is no connection behind it"
            )
        reconnect()


def _kernel_context() -> contextlib.AbstractContextManager[Any] | None:
    """The virtual kernel (the tab) this render belongs to under ``solara run``;
    ``None`` elsewhere (Jupyter, a plain reacton render): there one kernel serves all."""
    if "solara.server.kernel_context" not in sys.modules:
        return None  # not a Solara server: nothing imports it there
    from solara.server import kernel_context

    if not kernel_context.has_current_context():
        return None
    context: contextlib.AbstractContextManager[Any] = kernel_context.get_current_context()
    return context


@contextlib.contextmanager
def _entered(kernel: contextlib.AbstractContextManager[Any]) -> Iterator[None]:
    """Inside ``kernel`` on this (delivery) thread, and no trace of it after.

    Solara remembers a context per thread name and id; the delivery thread comes
    and goes, so its entry is removed on the way out instead of piling up.
    """
    from solara.server import kernel_context

    with kernel:
        yield
    if not kernel_context.has_current_context():
        kernel_context.clear_context_for_thread(threading.current_thread())


class _Connection:
    """One component instance's connection, for one set of settings.

    Created during the render that first needs it (so ``send_message`` works at
    once), attached to the component's state setters by the effect, closed by the
    effect's cleanup.
    """

    def __init__(
        self,
        config: WebSocketConfig,
        team_id: str | None,
        max_messages: int | None,
        batch_interval: float | None,
    ) -> None:
        self._kernel = _kernel_context()
        self._lock = threading.Lock()
        self._closed = False
        self._subscriptions: list[abc.DisposableBase] = []
        # Deliveries (and so renders) run here: never on the store's loop, whose
        # socket would wait for every render, nor on Solara's loop, which serves
        # every tab. The thread ends when idle and is made again when needed.
        self._scheduler = EventLoopScheduler(
            thread_factory=lambda target: threading.Thread(
                target=target, name="nexus-reactive-solara-delivery", daemon=True
            ),
            exit_if_empty=True,
        )
        self.store: SyncWebSocketStore = use_websocket_sync(
            config,
            scheduler=self._scheduler,
            team_id=team_id,
            share=False,  # one connection per tab: see the module's docstring
            max_messages=max_messages,
            batch_interval=batch_interval,
        )
        self.initial_state: ConnectionState = self.store.state.value
        self.initial_messages: History[HistoryItem] = History([])

    def attach(
        self,
        set_state: Callable[[tuple[_Connection, ConnectionState]], None],
        set_messages: Callable[[tuple[_Connection, History[HistoryItem]]], None],
    ) -> None:
        """Deliver the store's values to the component's setters, in its kernel."""

        def deliver(setter: Callable[[Any], None]) -> Callable[[Any], None]:
            def on_value(value: Any) -> None:
                if self._closed:  # a delivery that raced the cleanup
                    return
                # Tagged with this connection: a late value of a connection the
                # component has replaced is ignored when it renders.
                if self._kernel is None:
                    setter((self, value))
                    return
                with _entered(self._kernel):
                    setter((self, value))

            return on_value

        with self._lock:
            if self._closed:
                return
            self._subscriptions = [
                self.store.state.subscribe(deliver(set_state)),
                self.store.messages.subscribe(deliver(set_messages)),
            ]

    def close(self) -> None:
        """Stop delivering now; close the connection in the background. Idempotent.

        The cleanup may run on Solara's event loop (a tab closing, a kernel
        culled): waiting there for a socket's closing handshake would stall every
        tab, and joining a thread that is rendering into this kernel could wait
        for the very lock the caller holds.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            subscription.dispose()
        threading.Thread(target=self._close, name="nexus-reactive-solara-close").start()

    def _close(self) -> None:
        try:
            self.store.close()
        except Exception:  # pragma: no cover - logged, never raised into a dead thread
            log.exception("closing the Solara component's connection failed")
        finally:
            self._scheduler.dispose()


def use_websocket(
    config: WebSocketConfig | None = None,
    /,
    *,
    team_id: str | None = None,
    max_messages: int | None = None,
    batch_interval: float | None = DEFAULT_BATCH_INTERVAL,
    **options: Any,
) -> WebSocketHook:
    """The connection of this component instance: call it inside a Solara component.

    Example::

        state, messages, send_message, clear_messages = use_websocket(url="ws://localhost:8000")

    Each component instance (so each browser tab) gets a connection of its own and
    sees only its own answers. The component renders again when the state or the
    messages change, at most once per ``batch_interval`` for messages. The
    connection closes when the component unmounts (the tab closes, its kernel is
    culled) and is replaced when the settings or ``team_id`` change.

    Args:
        config: a :class:`~nexus_reactive.WebSocketConfig`, or its fields as keywords
            (``url=..., api_key=...``; the key defaults to ``NEXUS_API_KEY``). The
            connection is replaced only when a setting's value changes: a callable
            (``url``, ``api_key``, ``should_reconnect``) made anew in each render
            counts as the same setting while its code is the same, and the live
            connection calls the newest one; an ``ssl`` context or a ``signing_key``
            object is the same setting while its type is (change ``team_id`` or
            remount the component to use a new one).
        team_id: scope the connection's asks to a team.
        max_messages: how many received messages the history keeps (1,000).
        batch_interval: ``messages`` changes at most once per this many seconds
            (0.05); ``None``: once per event-loop tick of the connection's thread.

    Returns:
        ``(state, messages, send_message, clear_messages)``, a :class:`WebSocketHook`.

    Raises:
        ConfigError: an option is invalid or unknown (no API key, a bad URL...).
    """
    resolved = WebSocketConfig.from_options(config, **options) if options else config
    if resolved is None:
        resolved = WebSocketConfig()
    # The newest config, for the live connection's callables (see _live).
    latest = reacton.use_ref(resolved)
    latest.current = resolved
    # Keyed on the settings' values, not the config's identity: a lambda or an
    # SSLContext made in the component body is new at every render, and a new
    # connection per render would be a reconnect storm.
    settings = (fingerprint(resolved), team_id, max_messages, batch_interval)

    def connect() -> _Connection:
        return _Connection(_live(resolved, latest), team_id, max_messages, batch_interval)

    connection: _Connection = reacton.use_memo(connect, dependencies=list(settings))
    delivered_state, set_state = reacton.use_state((connection, connection.initial_state), eq=_same)
    delivered_messages, set_messages = reacton.use_state(
        (connection, connection.initial_messages), eq=_same
    )

    def attach() -> Callable[[], None]:
        connection.attach(set_state, set_messages)
        return connection.close

    reacton.use_effect(attach, [connection])

    owner, state = delivered_state
    if owner is not connection:  # the settings changed: the new connection's values
        state = connection.initial_state
    owner, messages = delivered_messages
    if owner is not connection:
        messages = connection.initial_messages
    return WebSocketHook(
        state, messages, connection.store.send_message, connection.store.clear_messages
    )


def _same(a: Any, b: Any) -> bool:
    # Identity: each delivery is a new value. Comparing two histories item by item
    # on every delivery would cost O(n) for nothing.
    return a is b


#: The config's callables that the live connection takes from the newest render.
_LIVE = ("url", "api_key", "should_reconnect")


def fingerprint(config: WebSocketConfig) -> tuple[Any, ...]:
    """The config's settings as a value that is equal across renders with equal
    settings: callables by their code, other objects (an ``SSLContext``, a key) by type."""
    return tuple((f.name, _token(getattr(config, f.name))) for f in dataclasses.fields(config))


def _token(value: Any) -> Any:
    if value is None or isinstance(value, str | bytes | int | float | os.PathLike):
        return value
    if isinstance(value, ssl.SSLContext):
        return ("ssl.SSLContext", type(value))
    if callable(value):
        function = getattr(value, "__func__", value)
        return ("callable", getattr(function, "__code__", type(value)))
    if isinstance(value, Mapping):
        return ("mapping", tuple(sorted((str(k), _token(v)) for k, v in value.items())))
    if isinstance(value, tuple | list):
        return ("sequence", tuple(_token(item) for item in value))
    return ("object", type(value))


def _live(config: WebSocketConfig, latest: Any) -> WebSocketConfig:
    """``config`` with each callable setting calling the newest render's one."""

    def newest(name: str) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            return getattr(latest.current, name)(*args)

        return call

    live: dict[str, Any] = {name: newest(name) for name in _LIVE if callable(getattr(config, name))}
    return dataclasses.replace(config, **live) if live else config
