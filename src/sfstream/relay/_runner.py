"""The relay runner: one active writer per channel set, a standby ready to take over.

A :class:`Relay` loops between two roles:

* **standby**: it holds no Salesforce connection (Salesforce caps concurrent clients per org)
  and tries to take the lease of its channel set every ``poll_interval`` seconds;
* **leader**: it holds the lease, subscribes to the channels from the positions stored in the
  engine (a :class:`SinkReplayStorage`) and writes what it receives in batches: it waits for one
  event, drains what the client has already queued (up to ``batch_size``) and writes it all in
  one :meth:`Sink.write` call, with up to :attr:`Sink.pipeline_depth` writes in flight while it
  receives the next batches. A task renews the lease every ``ttl / 4`` seconds.

When a write or a renewal says the lease is lost, the leader closes its client and becomes a
standby: the new leader resumes from the position in the engine. When the engine fails (a
:class:`SinkError`), the leader closes its client too and, once the engine answers again,
subscribes anew from the engine's position, so that what the engine lost is fetched again from
Salesforce's retention. Any other Salesforce error ends the term as well, and a new one
subscribes from the engine after a short backoff (after ``max_failed_terms`` failures in a row,
the lease goes to another relay for a while); errors a new subscription cannot fix (credentials
refused at the first login, a replay id beyond retention without ``replay_fallback``) release
the lease and end :meth:`Relay.run` with that error.

:meth:`Relay.stop` (SIGTERM) lets the in-flight write finish, releases the lease and returns.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, Protocol

from sfstream.bayeux import Message, Status, StatusCallback, StatusKind
from sfstream.exceptions import (
    AuthenticationError,
    ClientError,
    InvalidArgumentError,
    ReplayError,
    ServerError,
    SfstreamError,
)
from sfstream.relay._sink import (
    EventRefused,
    Lease,
    LeaseLost,
    RelayBatch,
    RelayEvent,
    Sink,
    SinkError,
)
from sfstream.salesforce import (
    Client,
    ReplayMarker,
    ReplayMarkerStorage,
    ReplayOption,
    channel_key,
    is_replay_error,
    marker_from_message,
    parse_marker_date,
)

if TYPE_CHECKING:
    from sfstream.relay._metrics import RelayMetrics

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_LEASE_TTL",
    "ChannelSet",
    "ClientFactory",
    "Relay",
    "Role",
    "SinkReplayStorage",
    "default_holder",
    "to_relay_batch",
    "to_relay_event",
]

logger = logging.getLogger(__name__)

#: Seconds a lease lives without renewal: a standby takes over at most this long (plus one
#: ``poll_interval``) after the leader died.
DEFAULT_LEASE_TTL: Final = 8.0
#: Seconds a lease may live at most (a day: far beyond any sensible failover time, well within
#: what the engines take as an expiry).
MAX_LEASE_TTL: Final = 86400.0
#: Events written in one call at most.
DEFAULT_BATCH_SIZE: Final = 1000
#: Seconds between two attempts of a standby to take the lease.
DEFAULT_POLL_INTERVAL: Final = 0.5
#: Seconds between attempts to renew the lease after the engine failed.
ENGINE_RETRY: Final = 0.5
#: Seconds before the first new term after Salesforce failed (doubled after each failed term,
#: up to a quarter of the lease TTL).
SALESFORCE_RETRY: Final = 0.2
#: Seconds a leadership term waits for its Salesforce client to close.
CLOSE_TIMEOUT: Final = 5.0
#: Leadership terms in a row that the engine ended (a write or a position read failed) with no
#: successful write since, at which the relay reports itself unhealthy: an engine that renews
#: the lease but refuses every write (Redis at ``maxmemory``) must not look healthy.
UNHEALTHY_ENGINE_TERMS: Final = 3


class Role(Enum):
    """What a relay is doing now."""

    STANDBY = "standby"
    LEADER = "leader"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ChannelSet:
    """Channels of one org relayed together, under one lease."""

    name: str
    """The lease and key name (``orders``); several relays with the same name fail over."""
    channels: tuple[str, ...]
    """Channels to subscribe to (``/event/Order__e``, ``/data/AccountChangeEvent``...)."""
    org: str = "default"
    """The org's configured name, written into each :class:`RelayEvent`."""
    replay: int = int(ReplayOption.NEW_EVENTS)
    """Where a channel starts when the engine holds no position for it yet."""

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidArgumentError("a channel set needs a name")
        if not self.channels:
            raise InvalidArgumentError(f"channel set {self.name!r} has no channels")
        keys = [channel_key(channel) for channel in self.channels]
        if len(set(keys)) != len(keys):
            raise InvalidArgumentError(f"channel set {self.name!r} names a channel twice")


class ClientFactory(Protocol):
    """Builds the Salesforce client of one leadership term (a new one each time)."""

    def __call__(self, replay: ReplayMarkerStorage, on_status: StatusCallback) -> Client: ...


class SinkReplayStorage(ReplayMarkerStorage):
    """Replay markers read from the engine: a subscription starts at the sink's position.

    :meth:`set_replay_marker` does nothing: writing the event into the engine is what advances
    the position. Use it with ``ReplayMarkerStoragePolicy.MANUAL`` (nothing else stores).
    """

    def __init__(self, sink: Sink, org: str, default: int = int(ReplayOption.NEW_EVENTS)):
        self.sink = sink
        self.org = org
        self.default_id = default

    async def get_replay_marker(self, subscription: str) -> ReplayMarker | None:
        try:
            position = await self.sink.position(self.org, subscription)
        except SinkError as exc:
            raise ReplayError(f"cannot read the position of {subscription}: {exc}") from exc
        return None if position is None else ReplayMarker("", position)

    async def get_replay_id(self, subscription: str) -> int | None:
        marker = await self.get_replay_marker(channel_key(subscription))
        return self.default_id if marker is None else marker.replay_id

    async def set_replay_marker(self, subscription: str, replay_marker: ReplayMarker) -> None:
        """Does nothing: the sink's write advances the position."""


def default_holder() -> str:
    """``host:pid:random``: unique per process, readable in metrics and logs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _json_compact(message: Message) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def _default_dumps() -> Callable[[Message], bytes]:
    """orjson's ``dumps`` when installed (``sfstream[orjson]``), else the standard library's."""
    try:
        import orjson
    except ImportError:
        return _json_compact
    dumps: Callable[[Message], bytes] = orjson.dumps
    return dumps


_compact = _default_dumps()


def _default_dumps_each() -> Callable[[list[Message]], list[bytes]] | None:
    """What ``[_compact(m) for m in messages]`` gives, made with one orjson call (None
    without orjson, or with an orjson that has no ``Fragment``).

    orjson is fast at serialising a message, but slow at many outputs that stay alive
    together, as a batch's do (a few µs each, most of a relay's own work per event): the
    messages are serialised as one list with a NUL byte between them, which orjson never
    writes itself (JSON escapes it in a string), and the result is split there.
    """
    try:
        import orjson
    except ImportError:
        return None
    fragment = getattr(orjson, "Fragment", None)
    if fragment is None:
        return None
    dumps: Callable[[Any], bytes] = orjson.dumps
    between = fragment(b"\x00")

    def each(messages: list[Message]) -> list[bytes]:
        if len(messages) > 1:
            items: list[Any] = [between] * (2 * len(messages) - 1)
            items[::2] = messages
            try:
                pieces = dumps(items)[1:-1].split(b",\x00,")
            except TypeError:  # orjson.JSONEncodeError: an integer above 64 bits, say
                pass
            else:
                if len(pieces) == len(messages):
                    return pieces
        return [_serialise(message) for message in messages]

    def _serialise(message: Message) -> bytes:
        try:
            return dumps(message)
        except TypeError:
            return _json_compact(message)  # what orjson cannot write, the standard library can

    return each


_compact_each = _default_dumps_each()


def _marker_fields(message: Message) -> tuple[int, str, str | None]:
    """The replay id, date and event uuid of a delivered message (see :func:`to_relay_event`)."""
    try:
        data = message["data"]
        event = data["event"]
        replay_id = event["replayId"]
        created = event.get("createdDate")
        if type(created) is str:
            date = created
        else:
            payload = data["payload"]
            header = payload.get("ChangeEventHeader")
            if header is not None:
                commit = header["commitTimestamp"]
                if type(commit) is not int:
                    raise TypeError
                date = str(commit)
            else:
                date = payload["CreatedDate"]
                if type(date) is not str:
                    raise TypeError
        if type(replay_id) is not int:
            raise TypeError
        uuid_ = event.get("EventUuid")
    except (KeyError, TypeError, AttributeError):
        marker = marker_from_message(message)  # raises the ReplayError that says what is wrong
        return marker.replay_id, marker.date, None
    return replay_id, date, uuid_ if type(uuid_) is str else None


def to_relay_event(
    org: str, message: Message, dumps: Callable[[Message], bytes] = _compact
) -> RelayEvent:
    """The :class:`RelayEvent` of a delivered message.

    The date is the one :func:`~sfstream.salesforce.marker_from_message` takes (PushTopic and
    generic ``data.event.createdDate``, CDC ``commitTimestamp``, platform events
    ``data.payload.CreatedDate``), read on a fast path for well-formed messages.

    Raises:
        ReplayError: the message has no usable replay id or date.
    """
    replay_id, date, uuid_ = _marker_fields(message)
    return RelayEvent(
        org=org,
        channel=message["channel"],
        replay_id=replay_id,
        date=date,
        payload=dumps(message),
        event_uuid=uuid_,
    )


def to_relay_batch(
    org: str,
    messages: Sequence[Message],
    dumps: Callable[[Message], bytes] = _compact,
    on_error: Callable[[Message, ReplayError], None] | None = None,
) -> RelayBatch:
    """The :class:`RelayBatch` of delivered messages: each as :func:`to_relay_event` makes it,
    without a :class:`RelayEvent` per event.

    A message without a usable replay id or date is left out and passed to ``on_error`` with
    the :class:`ReplayError` (raised when ``on_error`` is None).
    """
    channels: list[str] = []
    replay_ids: list[int] = []
    dates: list[str] = []
    uuids: list[str | None] = []
    accepted: list[Message] = []
    fields = _marker_fields
    # One pass, each message read while it is in the processor's cache (a backlog of queued
    # messages is not), with the usual shape of a platform event first.
    for message in messages:
        try:
            data = message["data"]
            event = data["event"]
            payload = data["payload"]
            replay_id = event["replayId"]
            date = payload["CreatedDate"]
            if (
                type(replay_id) is not int
                or type(date) is not str
                or "createdDate" in event  # PushTopic, generic: that date first
                or "ChangeEventHeader" in payload  # CDC: the commit timestamp
            ):
                raise TypeError
            uuid_ = event.get("EventUuid")
            if type(uuid_) is not str:
                uuid_ = None
        except (KeyError, TypeError, AttributeError):
            try:
                replay_id, date, uuid_ = fields(message)
            except ReplayError as exc:
                if on_error is None:
                    raise
                on_error(message, exc)
                continue
        channels.append(message["channel"])
        replay_ids.append(replay_id)
        dates.append(date)
        uuids.append(uuid_)
        accepted.append(message)
    each = _compact_each
    if dumps is _compact and each is not None:
        payloads = each(accepted)
    else:
        payloads = [dumps(message) for message in accepted]
    return RelayBatch(org, channels, replay_ids, dates, payloads, uuids)


class _Stop(Exception):
    """Internal: the relay was asked to stop."""


class _RefusedAtStart(Exception):
    """Internal: the relay's first login or first subscriptions failed, as they would end
    ``listen`` (wrong credentials, a login server out of reach, a channel that does not
    exist): the relay ends with the error, its ``__cause__``."""


@dataclass
class _Health:
    role: Role = Role.STOPPED
    engine_ok_at: float = 0.0
    last_write_at: float = 0.0
    lease: Lease | None = None
    error: BaseException | None = None
    terms: int = 0
    engine_failed_terms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Relay:
    """Relays one :class:`ChannelSet` into a :class:`Sink`, with failover through its lease.

    Args:
        channel_set: what to relay.
        sink: the engine (not yet open: :meth:`run` opens and closes it).
        client_factory: builds a :class:`~sfstream.Client` for a ``replay`` storage and an
            ``on_status`` callback; it must pass both on, with
            ``replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL``.
        holder: this relay's name in the lease (default: host, process id and a random part).
        lease_ttl: seconds a lease lives without renewal.
        batch_size: events written in one call at most.
        poll_interval: seconds between a standby's attempts to take the lease.
        metrics: where to count (optional; see :class:`~sfstream.relay.RelayMetrics`).
        dumps: serialises a received message into the bytes stored in the engine.
        on_role: called with the relay and its new role each time the role changes.
        max_failed_terms: a Salesforce error (a refused handshake or resubscription, a lost
            connection, a 401 after a new token) ends the leadership term, and a new one
            subscribes again from the engine after a short backoff (at most ``lease_ttl / 4``,
            so the lease is renewed in between); after this many terms in a row failed before
            subscribing, the relay hands the lease over and stands by for one ``lease_ttl``.
            Wrong credentials at the very first login and a replay id Salesforce no longer
            retains (without ``replay_fallback``) end :meth:`run` with the error.
    """

    def __init__(
        self,
        channel_set: ChannelSet,
        sink: Sink,
        client_factory: ClientFactory,
        *,
        holder: str | None = None,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        batch_size: int = DEFAULT_BATCH_SIZE,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        metrics: RelayMetrics | None = None,
        dumps: Callable[[Message], bytes] = _compact,
        on_role: Callable[[Relay, Role], None] | None = None,
        max_failed_terms: int = 5,
    ) -> None:
        if not (0 < lease_ttl <= MAX_LEASE_TTL and 0 < poll_interval <= MAX_LEASE_TTL):
            # (also NaN and infinity, which failed deep inside the sink's first request)
            raise InvalidArgumentError(
                f"lease_ttl and poll_interval must be seconds above 0, at most {MAX_LEASE_TTL:g}"
            )
        if batch_size < 1:
            raise InvalidArgumentError("batch_size must be positive")
        self.channel_set = channel_set
        self.sink = sink
        self.client_factory = client_factory
        self.holder = holder or default_holder()
        self.lease_ttl = lease_ttl
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.metrics = metrics
        self.on_role = on_role
        self._dumps = dumps
        self._health = _Health()
        self._announced: tuple[Role, Lease | None] | None = None  # what on_role was told
        self._stopping = asyncio.Event()
        self._client: Client | None = None
        self._renewed_at = 0.0
        self._failed_terms = 0
        self._subscribed_once = False
        #: Leadership terms in a row that Salesforce ended before anything was written: at
        #: this many, :meth:`run` raises the last error.
        self.max_failed_terms = max_failed_terms
        #: Events written by this relay (all terms).
        self.written = 0

    def __repr__(self) -> str:
        return f"<Relay {self.channel_set.name!r} {self.role.value} holder={self.holder!r}>"

    # -- state -------------------------------------------------------------------------------

    @property
    def role(self) -> Role:
        return self._health.role

    @property
    def lease(self) -> Lease | None:
        """The lease while leader, else None."""
        return self._health.lease if self._health.role is Role.LEADER else None

    @property
    def last_write(self) -> float:
        """``time.time()`` of the last successful write (0: none yet)."""
        return self._health.last_write_at

    def healthy(self, now: float | None = None) -> bool:
        """True while the relay runs, reached its engine within the lease TTL and, as leader,
        did not see the engine end :data:`UNHEALTHY_ENGINE_TERMS` terms in a row without a
        successful write."""
        now = time.monotonic() if now is None else now
        if self._health.role is Role.STOPPED:
            return False
        if self._health.engine_failed_terms >= UNHEALTHY_ENGINE_TERMS:
            return False
        return now - self._health.engine_ok_at <= max(self.lease_ttl, 3 * self.poll_interval)

    def status(self) -> dict[str, Any]:
        """What ``/healthz`` reports for this relay."""
        lease = self.lease
        return {
            "channel_set": self.channel_set.name,
            "role": self.role.value,
            "holder": self.holder,
            "token": lease.token if lease else None,
            "healthy": self.healthy(),
            "last_write": self._health.last_write_at or None,
            "written": self.written,
        }

    def _set_role(self, role: Role, lease: Lease | None = None, *, announce: bool = True) -> None:
        """Take ``role``; tell ``on_role`` unless ``announce`` is False (or it was told)."""
        if role is not Role.LEADER:
            self._health.engine_failed_terms = 0  # a standby writes nothing
        self._health.role = role
        self._health.lease = lease
        if announce and self._announced != (role, lease):
            self._announced = (role, lease)
            if self.on_role is not None:
                self.on_role(self, role)
        if self.metrics is not None:
            self.metrics.set_role(self.channel_set.name, role is Role.LEADER)

    def _engine_ok(self) -> None:
        self._health.engine_ok_at = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to finish the in-flight write, release the lease and return."""
        self._stopping.set()

    async def run(self) -> None:
        """Relay until :meth:`stop`, or until an error no new subscription can fix (raised).

        Raises:
            SinkError: the engine cannot be reached when starting.
            AuthenticationError, ServerError, TransportTimeoutError: from the Salesforce client
                (the lease is released first, so that a standby can try).
        """
        self._engine_ok()
        try:
            await self.sink.open()
            self._engine_ok()
            lease: Lease | None = None
            while not self._stopping.is_set():
                if lease is None:
                    lease = await self._standby()
                    if lease is None:
                        break
                lease = await self._lead(lease)
            if lease is not None:  # stopped between two terms (while renewing, say)
                await self._release(lease)
        finally:
            self._set_role(Role.STOPPED)
            with contextlib.suppress(Exception):
                await self.sink.close()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless stopped meanwhile; True if stopped."""
        if self._stopping.is_set():
            return True
        waiter = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({waiter}, timeout=seconds)
        finally:
            waiter.cancel()
        return self._stopping.is_set()

    async def _standby(self) -> Lease | None:
        """Wait for the lease; None if stopped first.

        The role is STANDBY at once; ``on_role`` hears of it once an attempt did not get the
        lease: a relay that finds it free is not announced as standing by.
        """
        self._set_role(Role.STANDBY, announce=False)
        name = self.channel_set.name
        logged = False
        while not self._stopping.is_set():
            # The lease's TTL runs from before the request that took it (never later than the
            # engine's own clock starts it): the conservative end of this relay's term.
            sent = time.monotonic()
            try:
                lease = await self.sink.acquire(name, self.holder, self.lease_ttl)
                self._renewed_at = sent
                self._engine_ok()
            except SinkError as exc:
                logger.warning("standby of %s cannot reach the engine: %s", name, exc)
            else:
                if lease is not None:
                    return lease
                if not logged:
                    logger.info("%s is relayed by another holder: standing by", name)
                    logged = True
            self._set_role(Role.STANDBY)
            if await self._sleep(self.poll_interval):
                break
        return None

    async def _lead(self, lease: Lease) -> Lease | None:
        """One leadership term. Returns the lease to go on with (None: back to standby)."""
        name = self.channel_set.name
        self._health.terms += 1
        self._set_role(Role.LEADER, lease)
        if self.metrics is not None:
            self.metrics.leadership(name)
        logger.info(
            "%s: leader (token %d), subscribing from the engine's positions", name, lease.token
        )
        renewer = asyncio.create_task(self._keep_lease(lease), name=f"sfstream-relay-lease-{name}")
        pump = asyncio.create_task(self._pump(lease), name=f"sfstream-relay-pump-{name}")
        try:
            done, _ = await asyncio.wait({renewer, pump}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pump.cancel()
            renewer.cancel()
            await asyncio.gather(pump, renewer, return_exceptions=True)
            await self._close_client()
            raise
        # The renewer only ends by losing the lease; the pump by stopping or an error.
        if pump not in done:
            pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
        await self._close_client()
        error = pump.exception() if pump.done() and not pump.cancelled() else None
        if renewer.done() and not renewer.cancelled() and renewer.exception() is not None:
            error = error or renewer.exception()
        if isinstance(error, LeaseLost) or (error is None and not self._stopping.is_set()):
            logger.warning("%s: lease lost (%s): standing by", name, error)
            return None
        if error is None or isinstance(error, _Stop):  # stopping: give the lease up
            await self._release(lease)
            return None
        if isinstance(error, EventRefused):
            # Every term would meet the same event: stop rather than retry it for ever.
            logger.error("%s: %s: stopping", name, error)
            await self._release(lease)
            raise error
        if isinstance(error, SinkError):
            self._health.engine_failed_terms += 1
            logger.warning(
                "%s: engine failed (%s): subscribing again from its positions", name, error
            )
            return await self._recover(lease)
        if self._fatal(error):
            # An error a new subscription would not fix: let a standby try, and stop.
            await self._release(lease)
            if isinstance(error, _RefusedAtStart) and error.__cause__ is not None:
                raise error.__cause__  # what `listen` would end with
            raise error
        self._failed_terms += 1
        if self._failed_terms >= self.max_failed_terms:
            # Maybe this host cannot reach Salesforce: let another relay try for a while.
            logger.warning(
                "%s: Salesforce failed %d times in a row (%s: %s): handing the lease over",
                name,
                self._failed_terms,
                type(error).__name__,
                error,
            )
            self._failed_terms = 0
            await self._release(lease)
            self._set_role(Role.STANDBY)
            await self._sleep(self.lease_ttl)
            return None
        # Short enough to renew the lease in between: a failing term keeps it.
        delay = min(lease.ttl / 4, SALESFORCE_RETRY * 2 ** (self._failed_terms - 1))
        logger.warning(
            "%s: Salesforce failed (%s: %s): subscribing again from the engine's positions in %g s",
            name,
            type(error).__name__,
            error,
            delay,
        )
        if await self._sleep(delay):
            await self._release(lease)
            return None
        return await self._recover(lease)

    def _fatal(self, error: BaseException) -> bool:
        """True for what a new subscription would not fix (a refusal at start included)."""
        if not isinstance(error, SfstreamError) or isinstance(error, ClientError):
            return True
        return isinstance(error, ServerError) and is_replay_error(error)  # see --fallback

    async def _recover(self, lease: Lease) -> Lease | None:
        """After an engine failure: renew ``lease`` as soon as the engine answers again (a new
        term follows), or give up when it may have expired (back to standby)."""
        name = self.channel_set.name
        while time.monotonic() < self._renewed_at + lease.ttl:
            if await self._sleep(ENGINE_RETRY):
                await self._release(lease)
                return None
            sent = time.monotonic()
            try:
                renewed = await self._renew_before(lease, self._renewed_at + lease.ttl)
            except LeaseLost as exc:
                logger.warning("%s: %s: standing by", name, exc)
                return None
            except SinkError as exc:
                logger.warning("%s: the engine still fails (%s)", name, exc)
                continue
            self._renewed_at = sent
            self._engine_ok()
            return renewed
        logger.warning("%s: the lease may have expired meanwhile: standing by", name)
        return None

    async def _release(self, lease: Lease) -> None:
        try:
            await self.sink.release(lease)
            logger.info("%s: lease released", self.channel_set.name)
        except SinkError as exc:
            logger.warning("%s: could not release the lease: %s", self.channel_set.name, exc)

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            # In a task of its own (also when this one is being cancelled), and bounded: a
            # relay never hangs on a Salesforce that does not answer its disconnect.
            closing = asyncio.ensure_future(client.close())
            await asyncio.wait({closing}, timeout=CLOSE_TIMEOUT)
            if not closing.done():
                closing.cancel()
            else:
                with contextlib.suppress(Exception):
                    closing.result()

    async def _renew_before(self, lease: Lease, deadline: float) -> Lease:
        """``sink.renew(lease)``, given up (:class:`LeaseLost`) when ``deadline`` passes first.

        A sink may retry a renewal for a while (NATS during a leader election); once the lease
        may have expired a standby may hold it, so this relay must not wait on as its leader.
        """
        try:
            return await asyncio.wait_for(
                self.sink.renew(lease), timeout=max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            raise LeaseLost(
                f"could not renew the lease of {lease.name!r} before it may have expired"
            ) from None

    async def _keep_lease(self, lease: Lease) -> None:
        """Renew every ttl/4; raise LeaseLost when it is gone or cannot be renewed in time."""
        interval = lease.ttl / 4
        deadline = self._renewed_at + lease.ttl
        while True:
            await asyncio.sleep(interval)
            sent = time.monotonic()
            try:
                lease = await self._renew_before(lease, deadline)
                self._renewed_at = sent
                deadline = sent + lease.ttl
                self._engine_ok()
            except LeaseLost:
                raise
            except SinkError as exc:
                logger.warning("%s: lease renewal failed: %s", lease.name, exc)
                # Stop writing before the lease may have expired (fencing protects anyway).
                if time.monotonic() + interval >= deadline:
                    raise LeaseLost(f"could not renew the lease of {lease.name!r} in time") from exc

    def _on_status(self, status: Status) -> None:
        if self.metrics is not None:
            self.metrics.status(self.channel_set.name, status.kind)
        if status.kind in (StatusKind.SESSION_LOST, StatusKind.REAUTHENTICATED):
            logger.info("%s: %s (%s)", self.channel_set.name, status.kind.value, status.detail)

    async def _pump(self, lease: Lease) -> None:
        channel_set = self.channel_set
        storage = SinkReplayStorage(self.sink, channel_set.org, channel_set.replay)
        client = self._client = self.client_factory(storage, self._on_status)
        stopping = self._stopping
        if not self._subscribed_once:
            # Wrong credentials from the start end the relay, as they end `listen`.
            try:
                await client.auth.authenticate()
            except AuthenticationError as exc:
                raise _RefusedAtStart from exc
        await client.open()
        for channel in channel_set.channels:
            try:
                await client.subscribe(channel)
            except ReplayError as exc:
                if isinstance(exc.__cause__, SinkError):
                    raise exc.__cause__ from None
                raise
            except ServerError as exc:
                cause = exc.cause_code
                if self._subscribed_once or (cause is not None and cause >= 500):
                    # A later term, or Salesforce too busy for now (a 503 behind a 401):
                    # retried (a channel may come back, a standby try).
                    raise
                # A channel refused from the start (it does not exist, the user may not see
                # it) ends the relay, as it ends `listen`, instead of retrying it for ever.
                raise _RefusedAtStart from exc
        self._engine_ok()
        self._subscribed_once = True
        self._failed_terms = 0
        org, dumps, batch_size = channel_set.org, self._dumps, self.batch_size
        as_batch = self.sink.takes_batches
        name = channel_set.name
        stop_waiter = asyncio.ensure_future(stopping.wait())

        def refused(message: Message, exc: ReplayError) -> None:
            logger.error("%s: an event without a replay id was not relayed: %s", name, exc)

        # Up to sink.pipeline_depth writes in flight while the next batch is received and
        # converted; they take effect in order (the sink sees to it), they are awaited in
        # order, and a failed one ends the term.
        depth = max(1, self.sink.pipeline_depth)
        writes: collections.deque[asyncio.Future[None]] = collections.deque()
        try:
            while True:
                if client.pending_count:
                    messages = await client.receive_many(batch_size)
                else:
                    receiving = asyncio.ensure_future(client.receive_many(batch_size))
                    try:
                        await self._idle(receiving, stop_waiter, writes)
                    except BaseException:
                        receiving.cancel()
                        await asyncio.gather(receiving, return_exceptions=True)
                        raise
                    if not receiving.done():
                        receiving.cancel()
                        await asyncio.gather(receiving, return_exceptions=True)
                        raise _Stop
                    messages = receiving.result()
                # What is queued already, in slices (the client lets its poller run between
                # them): the batch ends when the queue is empty or the batch full.
                while len(messages) < batch_size and client.pending_count:
                    messages += await client.receive_many(batch_size - len(messages))
                batch = to_relay_batch(org, messages, dumps, refused)
                del messages
                # Done writes first (a failure ends the term now), then room for this one.
                while writes and (writes[0].done() or len(writes) >= depth):
                    await writes.popleft()
                if batch:
                    events: Sequence[RelayEvent] = batch if as_batch else list(batch)
                    writing = asyncio.ensure_future(self.sink.write(lease, events))
                    writing.add_done_callback(functools.partial(self._written, events))
                    writes.append(writing)
                if stopping.is_set():
                    raise _Stop
        finally:
            stop_waiter.cancel()
            # Finish the writes in flight (stop, or the term ends for another reason).
            for pending in writes:
                with contextlib.suppress(Exception):
                    await asyncio.shield(pending)

    @staticmethod
    async def _idle(
        receiving: asyncio.Future[Any],
        stop_waiter: asyncio.Future[Any],
        writes: collections.deque[asyncio.Future[None]],
    ) -> None:
        """Wait for the next messages or a stop, and meanwhile for the writes in flight: one
        that fails ends the term now (raised here), not once the next event comes, which may
        be long after (a quiet channel) or never."""
        while True:
            oldest = writes[0] if writes else None
            waited = (
                {receiving, stop_waiter} if oldest is None else {receiving, stop_waiter, oldest}
            )
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            if receiving.done() or stop_waiter.done() or oldest is None or not oldest.done():
                return
            await writes.popleft()  # the oldest, done: raises if it failed

    def _written(self, events: Sequence[RelayEvent], write: asyncio.Future[None]) -> None:
        """Count a write once it succeeded (a done callback of the write)."""
        if write.cancelled() or write.exception() is not None:
            return
        now = time.time()
        self._health.last_write_at = now
        self._health.engine_failed_terms = 0
        self._engine_ok()
        self.written += len(events)
        if self.metrics is not None and events:
            self.metrics.written(self.channel_set.name, events, now)


def event_lag(event: RelayEvent, now: float) -> float | None:
    """Seconds between the event's own date and ``now`` (None if its date is unreadable)."""
    try:
        return now - parse_marker_date(event.date).timestamp()
    except ReplayError:
        return None


async def run_relays(relays: Sequence[Relay]) -> None:
    """Run several relays until all return; the first error stops the others and is raised.

    Cancelled, it cancels the relays too: each one's writes in flight finish, but the leases
    are not released (a standby takes over after the lease TTL). :meth:`Relay.stop` is the
    graceful way.
    """
    tasks = [
        asyncio.create_task(relay.run(), name=f"sfstream-relay-{relay.channel_set.name}")
        for relay in relays
    ]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                for relay in relays:
                    relay.stop()
                await asyncio.gather(*pending, return_exceptions=True)
                raise task.exception()  # type: ignore[misc]
    except asyncio.CancelledError:
        for relay in relays:
            relay.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
