"""One connection's life: :class:`Connection` owns the socket and everything that
lives with it.

A supervisor task makes attempts (retrying per the core's policy), answers the
key-pair challenge, runs a writer task and the receive loop while connected,
and sleeps out the backoff between attempts. The connection alone holds the
transport, the writer, the wake-up event, the rate bucket, the ``connect()``
future and the state stream. Every decision is the pure core's; this module
performs the I/O. Frames received go to the receive side (:mod:`.inbound`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import codec
from .attempts import dialer, provided, upgrade_headers
from .config import WebSocketConfig
from .core import ClientCore, ConnectionState
from .core.events import ClientEvents
from .core.meaning import challenge_error
from .core.opening import Opening, opening
from .errors import ConfigError, NexusConnectionError, NexusError, ProtocolError
from .failures import unexpected
from .logs import traced_frames
from .messages import ChallengeMessage, Message
from .outbound import Sender
from .streams import ValuePublisher
from .task_stop import stop_tasks
from .transport import Transport, TransportFactory

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from .metrics import Meter
    from .waiter import Waiter

__all__ = ["CHALLENGE_GRACE", "Connection"]

# The service's loggers: this module is the service's inside.
log = logging.getLogger("nexus_reactive.service")
frames_log = logging.getLogger("nexus_reactive.frames")

#: Seconds a client without a signing key waits for a first frame before it reports
#: the connection open, when the server did not say (``x-nexus-auth``) whether it
#: requires key-pair authentication (such a server sends its challenge first).
#: Messages are not held meanwhile.
CHALLENGE_GRACE = 0.05

FrameHandler = Callable[[bytes], NexusConnectionError | None]


class Connection:
    """The socket and its life: attempts, the receive loop, and (through its
    :class:`~nexus_reactive.outbound.Sender`) the writer, wake-up and rate bucket.

    Args:
        config: the connection's settings.
        core: the pure client (state, outbox, retry budget).
        events: told when a message other than an ask was written.
        report: where errors go that nobody awaits (the ``errors`` stream).
        fail_asks: fails every pending ask when the connection gives up.
        transport_factory: opens a transport (url, headers, deadline); by default
            aiohttp's. For tests: a scripted or fault-injecting transport.
        meter: counts frames, connections and reconnects (``metrics=True``), or ``None``.

    Set :attr:`on_frame`, :attr:`on_frames` and :attr:`deliver` (the receive side)
    before :meth:`start`.
    """

    def __init__(
        self,
        config: WebSocketConfig,
        core: ClientCore[Waiter],
        events: ClientEvents,
        report: Callable[[NexusError], None],
        fail_asks: Callable[[NexusError], None],
        transport_factory: TransportFactory | None = None,
        meter: Meter | None = None,
    ) -> None:
        self._config = config
        self.meter = meter
        self._core = core
        self._report = report
        self._fail_asks = fail_asks
        self._factory = transport_factory
        self.on_frame: FrameHandler = _unbound
        #: ``on_frame`` for each of a list, in order (what one socket read brought).
        self.on_frames: Callable[[list[bytes]], NexusConnectionError | None] = _unbound
        self.deliver: Callable[[Message], None] = _unbound
        # Publishers: the connection alone emits; the service hands out the streams.
        self.state = ValuePublisher(core.state, "state")
        #: The send side: writer, wake-up, rate bucket, ``outbox_depth``.
        self.sender = Sender(core, config.rate, config.burst, events.sent, meter)
        self._supervisor: asyncio.Task[None] | None = None
        # Every supervisor started and not yet finished, including ones that
        # stop() cancelled: wait_finished() waits for all of them.
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready: asyncio.Future[None] | None = None
        #: Why the connection gave up for good; cleared by the next start().
        self.failure: NexusConnectionError | None = None
        self._retry_after: float | None = None
        self.signing_key: Ed25519PrivateKey | None = None
        #: The pinned server key (``server_key``): frames are signed both ways.
        self.server_key: Ed25519PublicKey | None = None
        #: Told first when the connection gives up for good (a lazy one stops opening).
        self.gave_up: Callable[[], None] | None = None

    # -- commands ----------------------------------------------------------------------

    async def prepare(self) -> None:
        """Check the credentials before any traffic; load the signing key once.

        A fixed API key is checked now (``ConfigError`` if missing). A key provider
        is called once per attempt, by the attempt itself: a failure there is
        retried per the policy.
        """
        config = self._config
        if not callable(config.api_key):
            await config.resolve_api_key()
        if config.signing_key is not None and self.signing_key is None:
            from .signing import load_signing_key  # only clients that sign need it

            self.signing_key = load_signing_key(config.signing_key)
        if config.server_key is not None and self.server_key is None:
            from .framing import load_server_key

            self.server_key = load_server_key(config.server_key)

    def start(
        self, loop: asyncio.AbstractEventLoop, reason: str | None = None
    ) -> asyncio.Future[None]:
        """Start the supervisor unless it runs; return the future ``connect()`` awaits.

        ``reason``: why, when not ``connect()`` (demand, with ``lazy=True``): shown in
        ``state.reason``, published at once.
        """
        if self._ready is None or self._ready.done():
            self._ready = loop.create_future()
        if not self.running:
            self._launch(loop, reason)
        return self._ready

    def restart(self, loop: asyncio.AbstractEventLoop, reason: str) -> None:
        """``reconnect()``: end the attempt, backoff wait or connection under way (its
        socket closes as its task ends), and start afresh at once, with a fresh budget.

        ``connect()`` keeps waiting, for the new connection. Asks on the wire of the
        old one go again on the new one, as after any reconnect; unwritten frames
        stay queued.
        """
        supervisor = self._supervisor
        if supervisor is not None:
            supervisor.cancel()
        self._launch(loop, reason)

    @property
    def running(self) -> bool:
        """Open, opening, or waiting to retry: a supervisor drives the connection."""
        return self._supervisor is not None and not self._supervisor.done()

    def _launch(self, loop: asyncio.AbstractEventLoop, reason: str | None) -> None:
        state = self._core.restart(reason)
        self.failure = None
        self._supervisor = task = loop.create_task(self._supervise(), name="nexus-reactive")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.publish(state)  # running already: a subscriber sees a consistent client

    def stop(self, reason: NexusError) -> None:
        """Stop the supervisor (it closes the socket as it ends); fail ``connect()``."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
        self._fail_ready(reason)

    async def wait_finished(self) -> None:
        """Wait until every supervisor started has finished."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def close(self) -> None:
        """The service is finished: publish ``closed`` and complete the streams."""
        self.publish(self._core.closed())
        self.state.complete()
        self.sender.outbox_depth.complete()
        if self.meter is not None:
            self.meter.close()

    def server_wait(self, retry_after: float) -> None:
        """The server asked us to stay away this long if it closes (4429)."""
        self._retry_after = retry_after
        self.sender.refused()  # (and, back, asks go one at a time)

    def challenged(self) -> NexusConnectionError | None:
        """What a ``challenge`` in the receive loop means: the handshake ran before it,
        so a client with a key authenticated; one without cannot answer."""
        has_key = self.signing_key is not None
        error = challenge_error(has_key, authenticated=has_key)
        if error is None:
            log.warning("ignored a second challenge on an authenticated connection")
        return error

    def publish(self, state: ConnectionState) -> None:
        if state != self.state.value:
            log.debug("state: %s", state)
            self.state.set(state)

    # -- the supervisor ----------------------------------------------------------------

    async def _supervise(self) -> None:
        if self._factory is not None:
            await self._run(self._factory)
            return
        # The sessions live exactly as long as this task (see attempts.dialer).
        # The meter times its own pings: pongs come to the receive loop then.
        autoping = self.meter is None or self._config.heartbeat is None
        async with dialer(self._config, autoping=autoping) as dial:
            await self._run(dial)

    async def _run(self, dial: TransportFactory) -> None:
        core = self._core
        try:
            while True:
                self.publish(core.attempt())
                try:
                    transport = await self._open(dial)
                except NexusConnectionError as exc:
                    error = exc
                except Exception as exc:  # any failure of an attempt is one
                    error = unexpected("the connection attempt failed", exc, log)
                else:
                    try:
                        error = await self._serve(transport)
                    except Exception as exc:  # a bug of ours: retried per the policy
                        error = unexpected("the connection failed", exc, log)
                self._report(error)
                if self._supervisor is not asyncio.current_task():  # an errors subscriber
                    await asyncio.sleep(0)  # stopped or replaced us: theirs is the last word
                decision = core.lost(error)
                if decision.delay is not None and self.meter is not None:
                    self.meter.lost(error)
                if decision.delay is None:
                    log.warning("giving up: %s", decision.error)
                    # First: a subscriber told of `failed` may reconnect() at once.
                    self._give_up(decision.error)
                    self.publish(core.state)
                    return
                self.publish(core.state)
                log.info("%s; next attempt in %.2fs", error, decision.delay)
                await asyncio.sleep(decision.delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: surface it instead of hanging the callers
            fatal = unexpected("internal error", exc, log, retryable=False)
            core.lost(fatal)
            self._give_up(fatal)
            self.publish(core.state)  # never left in a phase that no task drives

    async def _open(self, dial: TransportFactory) -> Transport:
        """One attempt: the key and the URL (each provider is called exactly once), then
        the upgrade, all within ``connect_timeout``."""
        config = self._config
        deadline = asyncio.get_running_loop().time() + config.connect_timeout
        if (config.signing_key is not None and self.signing_key is None) or (
            config.server_key is not None and self.server_key is None
        ):
            try:  # connect() loaded the keys; reconnect() and demand load them here
                await self.prepare()
            except ConfigError as exc:
                raise NexusConnectionError(f"{exc}. Not retrying.", retryable=False) from exc
        api_key = await provided("API key", config.resolve_api_key, deadline, config)
        url = await provided("URL", config.resolve_url, deadline, config)
        return await dial(url, upgrade_headers(config, api_key), deadline)

    async def _serve(self, transport: Transport) -> NexusConnectionError:
        """Run one open connection until it ends; return why it ended."""
        writer: asyncio.Task[None] | None = None
        probe: asyncio.Task[None] | None = None
        grace: asyncio.TimerHandle | None = None
        try:
            pins = self.server_key is not None
            plan, refused = opening(self.signing_key is not None, transport.auth, pins)
            if refused is not None:
                return refused
            if plan is Opening.HANDSHAKE:
                from .handshake import authenticate

                assert self.signing_key is not None
                self.publish(self._core.authenticating())
                try:
                    guard = await authenticate(
                        transport,
                        self.signing_key,
                        self._config.auth_timeout,
                        self.deliver,
                        self._report,
                        self.server_key,
                        self._config.encrypt,
                    )
                except NexusConnectionError as exc:
                    return exc
                if guard is not None:
                    from .guarded import GuardedTransport

                    transport = GuardedTransport(transport, guard)
            # Messages flow from now on.
            self._core.opened(getattr(transport, "subprotocol", None))
            writer = self.sender.attach(transport)
            self._retry_after = None
            on_frame, on_frames = self.on_frame, self.on_frames
            if self.meter is not None:
                self.meter.opened()
                probe = self.meter.probe(transport)
                on_frame, on_frames = self.meter.counted(on_frame), self.meter.batched(on_frames)
            first: FrameHandler | None = None
            if plan is Opening.GRACE:
                # The server did not say whether it requires key-pair authentication;
                # one that does sends its challenge as the first frame after the
                # upgrade: the connection counts as open (state, connect()) once the
                # first frame is not a challenge, or once CHALLENGE_GRACE has passed
                # without a frame. Messages flow meanwhile.
                first = self._first_frame(on_frame)
                grace = asyncio.get_running_loop().call_later(CHALLENGE_GRACE, self._confirm_open)
            else:
                self._confirm_open()
            batches = getattr(transport, "pump_batches", None)
            if frames_log.isEnabledFor(logging.DEBUG):  # once per connection, not per frame
                on_frame, batches = traced_frames(on_frame), None
                first = None if first is None else traced_frames(first)
            if batches is None:  # a frame at a time: traced, or a transport without batches
                error = await transport.pump(on_frame, self._report, first)
            else:
                error = await batches(on_frames, self._report, first)
            if error.close_code == 4429:  # a refusal too, said before or not: asks windowed
                self.sender.refused()
            if self._retry_after is not None and error.retry_after is None and error.retryable:
                error.retry_after = self._retry_after
            return error
        finally:
            if grace is not None:
                grace.cancel()
            self.sender.detach(transport)
            stopped = await stop_tasks(writer, probe)
            await transport.close()
            if stopped:  # cancelled meanwhile (close(), reconnect()): not swallowed
                raise asyncio.CancelledError

    def _confirm_open(self) -> None:
        """The connection counts as open: publish ``connected``, release ``connect()``."""
        core = self._core
        if not core.state.connected or self.state.value.connected:
            return
        self.publish(core.state)
        ready = self._ready
        # A subscriber told of `connected` may have called reconnect() meanwhile.
        if ready is not None and not ready.done() and core.state.connected:
            ready.set_result(None)

    def _first_frame(self, on_frame: FrameHandler) -> FrameHandler:
        """The handler of the first frame of a connection without a signing key: a
        challenge is fatal before the connection was ever reported open."""

        def first(frame: bytes) -> NexusConnectionError | None:
            try:
                message = codec.decode(frame)
            except ProtocolError:
                message = None
            if type(message) is ChallengeMessage:
                self.deliver(message)
                return self.challenged()
            self._confirm_open()
            return on_frame(frame)

        return first

    def _give_up(self, error: NexusConnectionError) -> None:
        if self.gave_up is not None:
            self.gave_up()
        self.failure = error
        self._fail_ready(error)
        self._fail_asks(error)
        self.sender.outbox_depth.refresh()  # (failed asks left the outbox)

    def _fail_ready(self, error: NexusError) -> None:
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_exception(error)
            ready.exception()  # retrieved: a store that never awaits must not warn


def _unbound(_: object) -> None:
    raise RuntimeError("Connection.on_frame and .deliver must be set before start()")
