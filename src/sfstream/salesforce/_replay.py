"""Replay: where a subscription starts, what is stored, and how resubscriptions lose nothing.

Two halves that a client composes:

* **Storage** (:class:`ReplayMarkerStorage` and its implementations) keeps one
  :class:`ReplayMarker` per channel across restarts. It is asynchronous, user-extensible and
  aiosfstream-compatible. Markers are keyed by the full subscribed name, a PushTopic filter
  included (``/topic/X?Field=value``), so that two filtered subscriptions to one topic each
  keep their own position; unfiltered channels keep their plain name. Markers never move
  backwards: dates are normalised to aware datetimes before they are compared.
* **The replay extension** (:class:`ReplayExtension`, a pure
  :class:`~sfstream.bayeux.Extension`) stamps ``ext.replay = {topic: id}`` on each outgoing
  ``/meta/subscribe`` for that subscription only, and records the replay id of every event
  received per subscription, so that each automatic resubscription (after a re-handshake, a
  token refresh, a server disconnect) resumes right after the last event that subscription
  received.

The flow a client follows:

1. ``storage = create_replay_storage(replay)``; ``extension = ReplayExtension()``; register
   the extension with the Bayeux client.
2. On ``subscribe(channel)``: ``await extension.load_replay_id(storage, channel)`` (the stored
   marker's id, else the storage's default id), then send the subscribe. The extension adds
   ``ext.replay`` synchronously from what was loaded.
3. On every automatic resubscription: nothing to do. The extension sends the last received id
   of each channel (or the loaded one if no event came yet).
4. If a subscribe fails and :func:`is_replay_error` says the replay id was refused: with a
   ``replay_fallback``, call ``extension.use_fallback(channel, fallback)`` and subscribe that
   channel again (the fallback is used once, for that channel only, and replaces the refused
   id); without one, report the :class:`~sfstream.exceptions.ServerError`.
5. When an event is handed to the user (AUTOMATIC policy) or when the user says so (MANUAL:
   ``await storage.extract_replay_id(message)`` or ``async with storage(message): ...``), the
   storage stores its marker. A :class:`~sfstream.exceptions.ReplayError` there is reported,
   and the message is still delivered.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import pickle
import re
import shelve
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from enum import Enum, IntEnum
from typing import Any, Final, NamedTuple, TypeAlias

from sfstream.bayeux import Extension, Message, matches
from sfstream.exceptions import InvalidArgumentError, ReplayError, ServerError, failure_reason

__all__ = [
    "ConstantReplayId",
    "DefaultMappingStorage",
    "DropCallback",
    "MappingStorage",
    "ReplayExtension",
    "ReplayMarker",
    "ReplayMarkerStorage",
    "ReplayMarkerStoragePolicy",
    "ReplayOption",
    "ReplayParameter",
    "channel_key",
    "create_replay_storage",
    "is_replay_error",
    "marker_from_message",
    "parse_marker_date",
]

logger = logging.getLogger(__name__)

_META_SUBSCRIBE: Final = "/meta/subscribe"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_REPLAY_ERROR_PATTERNS: Final = (
    re.compile(r"replayId\s+\{?[^{}\s]*\}?\s+you provided was invalid", re.IGNORECASE),
    re.compile(
        r"replayId for channel .*? wasn.t found using the provided replay ID map",
        re.IGNORECASE | re.DOTALL,
    ),
)
#: Where aiosfstream (and its fork) pickled their ReplayMarker, for old shelves.
_LEGACY_MARKER_CLASSES: Final = frozenset(
    {
        ("aiosfstream.replay", "ReplayMarker"),
        ("aiosfstream", "ReplayMarker"),
        ("aiosfstream_ng.replay", "ReplayMarker"),
        ("aiosfstream_ng", "ReplayMarker"),
    }
)


class ReplayOption(IntEnum):
    """Where a subscription starts when there is no stored replay id."""

    ALL_EVENTS = -2
    """Every event still retained (24 h, or 72 h for high-volume events), then new ones."""
    NEW_EVENTS = -1
    """Only events sent after the subscription (Salesforce's default)."""


class ReplayMarkerStoragePolicy(Enum):
    """When the replay marker of a received message is stored."""

    AUTOMATIC = 1
    """As soon as the message is handed to the user, even if processing it then fails."""
    MANUAL = 2
    """Only when the user says the message was processed (``extract_replay_id`` or
    ``async with client.replay_storage(message)``)."""


class ReplayMarker(NamedTuple):
    """The replay id of a message and its creation date."""

    date: str
    """Creation date of the message: an ISO 8601 string, or (Change Data Capture) milliseconds
    since the epoch as a string. Compared after :func:`parse_marker_date`."""
    replay_id: int
    """Replay id of the message."""


def channel_key(channel: str) -> str:
    """The key of the replay map sent to Salesforce: the channel without a PushTopic filter.

    Salesforce looks a filtered subscription up in ``ext.replay`` under this name only.
    Markers are *stored* under the full subscribed name (see :class:`ReplayMarkerStorage`).

    >>> channel_key("/topic/Accounts?Type=Partner")
    '/topic/Accounts'
    """
    return channel.partition("?")[0]


def parse_marker_date(value: str | int | float | datetime) -> datetime:
    """Normalise a replay marker date to an aware UTC datetime.

    Accepts ISO 8601 text (``2016-03-29T16:40:08.208Z``, the pre-37.0
    ``2016-03-29T16:40:08.208+0000``, a naive time taken as UTC) and epoch milliseconds, as a
    number or a string of digits (Change Data Capture ``commitTimestamp``, stored by
    aiosfstream as ``str(ms)``).

    Raises:
        ReplayError: the value is not a date in one of these forms.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, bool):
        raise ReplayError(f"not a replay marker date: {value!r}")
    elif isinstance(value, int | float):
        parsed = _from_millis(value)
    elif isinstance(value, str):
        text = value.strip()
        digits = text.removeprefix("-")
        if digits.isascii() and digits.isdigit():
            if len(digits) > 18:  # beyond any date: no int() of thousands of digits
                raise ReplayError(f"not a replay marker date: {value[:40]!r}")
            parsed = _from_millis(int(text))
        else:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise ReplayError(f"not a replay marker date: {value[:40]!r}") from None
    else:
        raise ReplayError(f"not a replay marker date: {value!r}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00
        raise ReplayError(f"not a replay marker date: {value!r}") from None


def _from_millis(value: int | float) -> datetime:
    try:
        return _EPOCH + timedelta(milliseconds=value)
    except (OverflowError, ValueError, TypeError):
        raise ReplayError(f"not a replay marker date: {value!r}") from None


def _get(mapping: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(name)
    return mapping


def _replay_id(message: Mapping[str, Any]) -> int | None:
    value = _get(message, "data", "event", "replayId")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def marker_from_message(message: Mapping[str, Any]) -> ReplayMarker:
    """The replay marker of a delivered event, for every channel kind.

    The replay id is ``data.event.replayId``. The date is, in this order:
    ``data.event.createdDate`` (PushTopic, generic streaming), the Change Data Capture
    ``data.payload.ChangeEventHeader.commitTimestamp`` (epoch ms, kept as ``str(ms)``), or
    ``data.payload.CreatedDate`` (platform events). The date must parse
    (:func:`parse_marker_date`).

    Raises:
        ReplayError: no usable replay id or date; the message names what is missing and the
            channel.
    """
    channel = message.get("channel")
    where = f"the message on channel {channel!r}" if isinstance(channel, str) else "the message"
    if not isinstance(message.get("data"), Mapping):
        raise ReplayError(f"no replay marker in {where}: it has no data object")
    replay_id = _replay_id(message)
    if replay_id is None:
        raw = _get(message, "data", "event", "replayId")
        problem = "is missing" if raw is None else f"is not an integer ({type(raw).__name__})"
        raise ReplayError(f"no replay id in {where}: data.event.replayId {problem}")
    date: str
    created = _get(message, "data", "event", "createdDate")
    commit = _get(message, "data", "payload", "ChangeEventHeader", "commitTimestamp")
    payload_created = _get(message, "data", "payload", "CreatedDate")
    if isinstance(created, str):
        date, source = created, "data.event.createdDate"
    elif isinstance(commit, int | float | str) and not isinstance(commit, bool):
        source = "data.payload.ChangeEventHeader.commitTimestamp"
        if isinstance(commit, float) and not math.isfinite(commit):
            raise ReplayError(f"unusable creation date in {where}: {source} is {commit!r}")
        date = str(int(commit)) if isinstance(commit, int | float) else commit
    elif isinstance(payload_created, str):
        date, source = payload_created, "data.payload.CreatedDate"
    else:
        raise ReplayError(
            f"no creation date in {where}: none of data.event.createdDate, "
            f"data.payload.ChangeEventHeader.commitTimestamp or data.payload.CreatedDate "
            f"is present"
        )
    try:
        parse_marker_date(date)
    except ReplayError:
        raise ReplayError(f"unusable creation date in {where}: {source} is {date!r}") from None
    return ReplayMarker(date, replay_id)


def _as_marker(value: Any, key: str) -> ReplayMarker:
    """A stored value as a ReplayMarker (JSON-backed mappings give back lists)."""
    if isinstance(value, ReplayMarker):
        return value
    if isinstance(value, tuple | list) and len(value) == 2:
        date, replay_id = value
        if (
            isinstance(date, str | int)
            and isinstance(replay_id, int)
            and not isinstance(date, bool)
            and not isinstance(replay_id, bool)
        ):
            return ReplayMarker(str(date), replay_id)
    raise ReplayError(
        f"the value stored for channel {key!r} is not a replay marker ({type(value).__name__})"
    )


def _not_older(new: ReplayMarker, last: ReplayMarker, key: str) -> bool:
    """True if ``new`` may replace ``last``: a later date, or the same date and no lower id."""
    new_date = parse_marker_date(new.date)
    try:
        last_date = parse_marker_date(last.date)
    except ReplayError:
        logger.warning(
            "the stored replay marker of %s has an unreadable date %r; replacing it", key, last.date
        )
        return True
    if new_date != last_date:
        return new_date > last_date
    return new.replay_id >= last.replay_id


class _LegacyUnpickler(pickle.Unpickler):
    """Reads shelves written by aiosfstream without aiosfstream installed."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _LEGACY_MARKER_CLASSES:
            return ReplayMarker
        return super().find_class(module, name)


def _load_legacy(mapping: MutableMapping[str, Any], key: str) -> Any:
    if not isinstance(mapping, shelve.Shelf):
        raise ReplayError(f"the value stored for channel {key!r} cannot be read")
    shelf: Any = mapping  # typeshed does not declare Shelf.dict / Shelf.keyencoding
    raw = shelf.dict[key.encode(shelf.keyencoding)]
    try:
        return _LegacyUnpickler(io.BytesIO(raw)).load()
    except Exception as exc:
        raise ReplayError(f"the value stored for channel {key!r} cannot be read") from exc


class ReplayMarkerStorage(ABC):
    """Base class of replay marker storages: one :class:`ReplayMarker` per channel.

    Implement :meth:`get_replay_marker` and :meth:`set_replay_marker`; they receive the
    subscribed channel names, a PushTopic filter included (``/topic/X?Type=Partner``). The
    rest is built on them: :meth:`get_replay_id` (where
    a subscription starts), :meth:`extract_replay_id` (store a message's marker unless a newer
    one is stored) and the call form ``async with storage(message):`` (store only if the block
    raised nothing).
    """

    #: Kept for code written for aiosfstream, which set it on the storage. sfstream ignores
    #: it: the fallback is per channel, on :class:`ReplayExtension` (``use_fallback``).
    replay_fallback: ReplayOption | None = None

    _lock: asyncio.Lock | None = None
    _lock_loop: asyncio.AbstractEventLoop | None = None

    @abstractmethod
    async def get_replay_marker(self, subscription: str) -> ReplayMarker | None:
        """The stored marker of ``subscription``, or None if there is none."""

    @abstractmethod
    async def set_replay_marker(self, subscription: str, replay_marker: ReplayMarker) -> None:
        """Store ``replay_marker`` for ``subscription``."""

    async def get_replay_id(self, subscription: str) -> int | None:
        """The replay id a subscription to ``subscription`` starts from.

        The marker stored under the full subscribed name (a PushTopic filter included), else
        None (storages with a default id return it instead). For a filtered subscription with
        nothing stored under its own name, a marker stored under the plain topic (where
        earlier sfstream builds kept it) is used.
        """
        marker = await self.get_replay_marker(subscription)
        if marker is not None:
            return _as_marker(marker, subscription).replay_id
        key = channel_key(subscription)
        if key == subscription:
            return None
        marker = await self.get_replay_marker(key)
        return _as_marker(marker, key).replay_id if marker is not None else None

    @staticmethod
    def get_message_date(message: Mapping[str, Any]) -> str:
        """The creation date of a delivered event, as stored in its marker.

        Raises:
            ReplayError: the message has no usable replay id or date.
        """
        return marker_from_message(message).date

    def _get_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock = asyncio.Lock()
            self._lock_loop = loop
        return self._lock

    async def extract_replay_id(self, message: Mapping[str, Any]) -> None:
        """Extract the replay marker of ``message`` and store it unless it is older.

        A marker never moves backwards: a replayed event older than the stored marker (by
        normalised date, then replay id) leaves the stored one in place.

        Raises:
            ReplayError: the message has no usable replay id or date (the message says what
                is missing), or the stored value is not a marker.
        """
        marker = marker_from_message(message)
        channel = message.get("channel")
        if not isinstance(channel, str):
            raise ReplayError("cannot store a replay marker for a message without a channel")
        key = channel
        async with self._get_lock():
            last = await self.get_replay_marker(key)
            if last is not None and not _not_older(marker, _as_marker(last, key), key):
                logger.debug("kept the newer stored replay marker of %s", key)
                return
            await self.set_replay_marker(key, marker)

    def __call__(self, message: Mapping[str, Any]) -> AbstractAsyncContextManager[None]:
        """A context manager that stores the marker of ``message`` if the block succeeds.

        ``async with storage(message): process(message)``: an exception in the block
        propagates and nothing is stored, so the message is replayed after a restart.
        """

        @asynccontextmanager
        async def store_on_success() -> AsyncIterator[None]:
            yield
            await self.extract_replay_id(message)

        return store_on_success()


class MappingStorage(ReplayMarkerStorage):
    """Replay markers in any ``MutableMapping``: a dict, a ``shelve.Shelf``, a DB driver's map.

    A shelf written by aiosfstream still reads, even without aiosfstream installed. A
    mapping that gives back ``[date, replay_id]`` lists (JSON-backed) works too.

    Args:
        mapping: where the markers live, keyed by channel.
    """

    #: Where the markers live.
    mapping: MutableMapping[str, ReplayMarker]

    def __init__(self, mapping: MutableMapping[str, ReplayMarker]) -> None:
        self.mapping = mapping

    async def set_replay_marker(self, subscription: str, replay_marker: ReplayMarker) -> None:
        """Store ``replay_marker`` under ``subscription`` (and ``sync()`` a mapping that has
        one, such as a ``shelve.Shelf``: a marker must survive the process being killed)."""
        self.mapping[subscription] = replay_marker
        sync = getattr(self.mapping, "sync", None)
        if callable(sync):
            sync()

    async def get_replay_marker(self, subscription: str) -> ReplayMarker | None:
        """The marker stored under ``subscription``, or None.

        Raises:
            ReplayError: the stored value is not a marker or cannot be read.
        """
        try:
            value: Any = self.mapping[subscription]
        except KeyError:
            return None
        except (ImportError, AttributeError):
            # A pickle naming a class that is gone, such as aiosfstream's ReplayMarker.
            value = _load_legacy(self.mapping, subscription)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as exc:
            # e.g. a shelf on dbm.dumb whose process was killed while updating the marker
            raise ReplayError(
                f"the value stored for channel {subscription!r} cannot be read "
                f"({type(exc).__name__})"
            ) from exc
        return _as_marker(value, subscription)


class _DefaultReplayIdMixin(ReplayMarkerStorage):
    default_id: int

    async def get_replay_id(self, subscription: str) -> int | None:
        """The stored marker's replay id, else :attr:`default_id`."""
        replay_id = await super().get_replay_id(subscription)
        return self.default_id if replay_id is None else replay_id


def _check_default_id(default_id: object) -> int:
    if not isinstance(default_id, int) or isinstance(default_id, bool):
        raise TypeError(f"default_id must be an int or a ReplayOption, got {default_id!r}")
    return default_id


class DefaultMappingStorage(_DefaultReplayIdMixin, MappingStorage):
    """:class:`MappingStorage` that starts channels with nothing stored at ``default_id``.

    ``DefaultMappingStorage(shelf, ReplayOption.ALL_EVENTS)`` replays everything retained on
    the first run, then continues from the stored markers.

    Args:
        mapping: where the markers live, keyed by channel.
        default_id: the replay id (or :class:`ReplayOption`) for channels with no marker.
    """

    #: The replay id for channels with no stored marker.
    default_id: int

    def __init__(self, mapping: MutableMapping[str, ReplayMarker], default_id: int) -> None:
        super().__init__(mapping)
        self.default_id = _check_default_id(default_id)


class ConstantReplayId(_DefaultReplayIdMixin):
    """Every subscription starts at ``default_id``; nothing is stored.

    This is what ``Client(replay=ReplayOption.NEW_EVENTS)`` (the default) uses.

    Args:
        default_id: the replay id (or :class:`ReplayOption`) of every subscription.
    """

    #: The replay id of every subscription.
    default_id: int

    def __init__(self, default_id: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.default_id = _check_default_id(default_id)

    async def get_replay_marker(self, subscription: str) -> ReplayMarker | None:
        """Always None: nothing is stored."""
        return None

    async def set_replay_marker(self, subscription: str, replay_marker: ReplayMarker) -> None:
        """Does nothing."""

    async def extract_replay_id(self, message: Mapping[str, Any]) -> None:
        """Does nothing: there is nothing to store, so nothing to extract."""


#: What ``Client(replay=...)`` accepts.
ReplayParameter: TypeAlias = (
    ReplayOption | int | ReplayMarkerStorage | MutableMapping[str, ReplayMarker] | None
)


def create_replay_storage(replay: ReplayParameter) -> ReplayMarkerStorage | None:
    """The storage for a ``replay`` argument.

    A :class:`ReplayMarkerStorage` is used as is; a :class:`ReplayOption` (or an int replay
    id) becomes :class:`ConstantReplayId`; a ``MutableMapping`` becomes
    :class:`MappingStorage`; None stays None.

    Raises:
        TypeError: any other value.
    """
    if replay is None or isinstance(replay, ReplayMarkerStorage):
        return replay
    if isinstance(replay, int) and not isinstance(replay, bool):
        if replay < -2:
            raise InvalidArgumentError(
                f"replay must be -2 (all events), -1 (new events) or a replay id, not {replay}"
            )
        return ConstantReplayId(replay)
    if isinstance(replay, MutableMapping):
        return MappingStorage(replay)
    raise TypeError(
        "replay must be a ReplayOption, a ReplayMarkerStorage or a MutableMapping, "
        f"not {type(replay).__name__}"
    )


def is_replay_error(error: ServerError | Mapping[str, Any] | str | None) -> bool:
    """True if a failed subscribe was refused because of its replay id.

    Matches Salesforce's ``400::The replayId {N} you provided was invalid...`` (an id outside
    the retention window) and ``400::The replayId for channel {...} wasn't found using the
    provided replay ID map...``, in the ``error`` field or in ``ext.sfdc.failureReason``.

    Args:
        error: a :class:`~sfstream.exceptions.ServerError`, a reply message, or an error text.
    """
    texts: list[str | None]
    if isinstance(error, ServerError):
        texts = [error.error, error.failure_reason]
    elif isinstance(error, Mapping):
        value = error.get("error")
        texts = [value if isinstance(value, str) else None, failure_reason(error)]
    else:
        texts = [error]
    return any(
        text is not None and any(pattern.search(text) for pattern in _REPLAY_ERROR_PATTERNS)
        for text in texts
    )


#: Called by ReplayExtension when it drops a delivery: ``(reason, channel, message)`` with
#: reason ``"unsubscribed"`` (nobody subscribed to its channel), ``"skipped"`` (created before
#: a gap-safe resubscription took effect) or ``"repeated"`` (received before on the same
#: subscription).
DropCallback: TypeAlias = Callable[[str, str, Message], None]


class ReplayExtension(Extension):
    """Stamps each ``/meta/subscribe`` with the replay id its subscription resumes from.

    Resume state is kept **per subscription**, under the full subscribed name, filter
    included: ``/topic/Acc?Type=Partner`` and ``/topic/Acc?Type=Customer`` each resume after
    their own last event. The id sent for a subscription is, in this order: a pending fallback
    (:meth:`use_fallback`, used once), the id of the last event received on it (so every
    resubscription within the client's life resumes right after it), or the id loaded before
    the first subscribe (:meth:`set_replay_id` / :meth:`load_replay_id`). With none of them, no
    ``ext.replay`` is sent and the server starts with new events.

    The map is keyed by the channel *without* its filter (Salesforce refuses a map keyed by the
    filtered name: "The replayId for channel {/topic/X} wasn't found using the provided replay
    ID map {{/topic/X?F=v=-1}}"). Several subscriptions may share that key; when this one
    resumes from a replay id, the id sent is the **lowest** position of all the subscriptions
    to the same topic, so whichever way the server applies it, each of them restarts at or
    before its own last event: the cost can only be duplicates, never a skipped event. The
    repeats this causes on a subscription (replay ids up to its own last event) are dropped
    until a later event arrives.

    Deliveries are attributed by their ``channel``. Salesforce labels the deliveries of a
    filtered subscription with the full subscribed name, filter included (EMP-Connector, the
    Salesforce sample client, registers its listener on the filtered name and strips the query
    string from each delivery's channel before keying its replay map). A delivery labelled
    with the plain topic while only filtered subscriptions to it exist cannot be attributed:
    it is delivered, and moves no subscription's position (a later resume may repeat it, never
    skip what another subscription has not seen). A delivery on a channel no subscription
    covers is dropped (``on_drop``), and a replay id lower than the last one of the same
    subscription never moves its position backwards. Pure: no IO, no clock.

    Args:
        on_drop: called as ``on_drop(reason, channel, message)`` for each delivery the
            extension drops; reason is ``"unsubscribed"`` (nobody subscribed to its channel),
            ``"skipped"`` (created before a gap-safe resubscription took effect) or
            ``"repeated"`` (received before on the same subscription).
    """

    def __init__(self, on_drop: Callable[[str, str, Message], None] | None = None) -> None:
        self.on_drop = on_drop
        #: subscriptions made (their ``/meta/subscribe`` went out), by full name
        self._subscribed: dict[str, None] = {}
        #: topics (without filter) -> subscriptions to them
        self._by_topic: dict[str, dict[str, None]] = {}
        self._wildcards = False
        self._loaded: dict[str, int] = {}
        self._received: dict[str, int] = {}
        self._fallback: dict[str, int] = {}
        self._fallback_counts: dict[str, int] = {}
        #: when a subscription that started with new events only was made (server time)
        self._started: dict[str, datetime] = {}
        #: subscriptions resubscribed with ALL_EVENTS: deliveries older than this are skipped
        self._skip_before: dict[str, datetime] = {}
        #: subscriptions resumed from a lower position than their own (shared topic):
        #: deliveries up to their own last event are repeats, dropped until one goes past it
        self._repeats_until: dict[str, int] = {}
        #: events skipped by the current gap-safe resubscription of each subscription
        self._skipped: dict[str, int] = {}
        #: how many deliveries were dropped, by reason ("unsubscribed", "skipped", "repeated")
        self.dropped: dict[str, int] = {}

    # -- positions ---------------------------------------------------------------------------

    def set_replay_id(self, channel: str, replay_id: int | None) -> None:
        """Set where a subscription to ``channel`` starts if no event was received yet.

        None removes it (the server's default, new events, applies).
        """
        if replay_id is None:
            self._loaded.pop(channel, None)
        else:
            self._loaded[channel] = int(replay_id)

    async def load_replay_id(self, storage: ReplayMarkerStorage | None, channel: str) -> int | None:
        """Load where ``channel`` starts from ``storage`` (:meth:`set_replay_id`); return it.

        Raises:
            ReplayError: the storage holds an unreadable value for the channel.
        """
        replay_id = await storage.get_replay_id(channel) if storage is not None else None
        self.set_replay_id(channel, replay_id)
        return replay_id

    def last_received(self, channel: str) -> int | None:
        """The replay id of the last event received on subscription ``channel``, or None."""
        return self._received.get(channel)

    def replay_id(self, channel: str) -> int | None:
        """Where subscription ``channel`` resumes from (None: no ``ext``), without the lowest
        position rule (see :meth:`sent_replay_id`)."""
        for source in (self._fallback, self._received, self._loaded):
            if channel in source:
                return source[channel]
        return None

    def use_fallback(self, channel: str, option: int) -> None:
        """Send ``option`` on the next subscribe to ``channel`` only, replacing a refused id.

        Call it after :func:`is_replay_error` matched a failed subscribe, then subscribe
        again. When that subscribe goes out, the refused id (loaded or last received) is
        dropped and ``option`` becomes where the channel starts until an event arrives.
        """
        self._fallback[channel] = int(option)

    def skipped(self, channel: str) -> int:
        """How many events the latest gap-safe resubscription of ``channel`` skipped."""
        return self._skipped.get(channel, 0)

    def fallback_count(self, channel: str | None = None) -> int:
        """How many fallbacks were sent for ``channel``, or for all channels if None."""
        if channel is None:
            return sum(self._fallback_counts.values())
        return self._fallback_counts.get(channel, 0)

    def forget(self, channel: str) -> None:
        """Drop everything known about subscription ``channel`` (it is no longer made)."""
        self._loaded.pop(channel, None)
        self._received.pop(channel, None)
        self._fallback.pop(channel, None)
        self._started.pop(channel, None)
        self._skip_before.pop(channel, None)
        self.unregister(channel)

    def unregister(self, channel: str) -> None:
        """Record that subscription ``channel`` was unsubscribed: its deliveries are dropped
        from now on and its position no longer lowers the others', but it is kept, so that
        subscribing again within the client's life resumes after its last event."""
        self._repeats_until.pop(channel, None)
        self._subscribed.pop(channel, None)
        topic = channel_key(channel)
        sharing = self._by_topic.get(topic)
        if sharing is not None:
            sharing.pop(channel, None)
            if not sharing:
                del self._by_topic[topic]
        self._wildcards = any("*" in name for name in self._subscribed)

    def mark_subscribed(self, channel: str, since: datetime | None) -> None:
        """Record that a subscription to ``channel`` took effect no earlier than ``since``
        (a time *of the server*: events are dated by the server's clock), or None when the
        server's time is unknown.

        It matters only for a subscription that starts with new events only (``-1``, or no
        replay id) and has received nothing yet: if the session is lost before its first event,
        a ``-1`` resubscription would silently skip what was published in between. Such a
        resubscription asks for all retained events (``-2``) instead, and deliveries created
        before ``since`` are skipped (each skip reported through ``on_drop``). Nothing is lost
        as long as ``since`` is not later than the moment the subscription took effect on the
        server; with ``since=None`` nothing is skipped (every retained event is delivered).
        """
        if channel in self._received or self._loaded.get(channel, ReplayOption.NEW_EVENTS) != -1:
            return
        self._started.setdefault(channel, since if since is not None else _NOT_KNOWN)

    def _position(self, channel: str) -> int | None:
        """Where ``channel`` stands for the lowest-position rule (None: it does not count)."""
        if channel in self._received:
            return self._received[channel]
        if channel in self._fallback:
            return self._fallback[channel]
        if channel in self._started:
            return int(ReplayOption.ALL_EVENTS)  # a gap-safe resubscription is pending
        loaded = self._loaded.get(channel)
        return loaded if loaded is not None and loaded != ReplayOption.NEW_EVENTS else None

    def _own_replay_id(self, channel: str) -> int | None:
        fallback = self._fallback.pop(channel, None)
        if fallback is not None:
            self._repeats_until.pop(channel, None)
            self._received.pop(channel, None)
            self._started.pop(channel, None)
            self._skip_before.pop(channel, None)
            self._loaded[channel] = fallback
            self._fallback_counts[channel] = self._fallback_counts.get(channel, 0) + 1
            logger.debug("subscribing to %s with the replay fallback %d", channel, fallback)
            return fallback
        if channel in self._received:
            return self._received[channel]
        started = self._started.get(channel)
        if started is not None:
            if started is not _NOT_KNOWN:
                self._skip_before[channel] = started
                self._skipped[channel] = 0
            logger.debug("resubscribing to %s with all events after %s", channel, started)
            return int(ReplayOption.ALL_EVENTS)
        return self._loaded.get(channel)

    def _lowest(self, channel: str, replay_id: int) -> int:
        """``replay_id`` lowered to the position of any other subscription to the same topic."""
        for other in self._by_topic.get(channel_key(channel), ()):
            if other != channel:
                position = self._position(other)
                if position is not None and position < replay_id:
                    replay_id = position
        return replay_id

    def sent_replay_id(self, channel: str) -> int | None:
        """The replay id a subscribe to ``channel`` would send now (a preview: nothing is used
        up), after the lowest-position rule."""
        own = self.replay_id(channel)
        if own is None and channel in self._started:
            own = int(ReplayOption.ALL_EVENTS)
        if own is None or own < 0:
            return own
        return self._lowest(channel, own)

    # -- the extension -----------------------------------------------------------------------

    def _register(self, channel: str) -> None:
        if channel in self._subscribed:
            return
        self._subscribed[channel] = None
        self._by_topic.setdefault(channel_key(channel), {})[channel] = None
        if "*" in channel:
            self._wildcards = True

    def outgoing(self, message: Message) -> None:
        """Add ``ext.replay`` to a ``/meta/subscribe`` for its topic; register the subscription
        (before it is sent, so that its first deliveries are recognised)."""
        if message.get("channel") != _META_SUBSCRIBE:
            return
        subscription = message.get("subscription")
        if not isinstance(subscription, str):
            return
        self._register(subscription)
        replay_id = self._own_replay_id(subscription)
        if replay_id is None:
            return
        if replay_id >= 0:
            lowest = self._lowest(subscription, replay_id)
            if lowest < replay_id:
                self._repeats_until[subscription] = replay_id
            else:
                self._repeats_until.pop(subscription, None)
            replay_id = lowest
        ext = message.get("ext")
        if not isinstance(ext, dict):
            ext = message["ext"] = {}
        ext["replay"] = {channel_key(subscription): replay_id}

    def _drop(self, reason: str, channel: str, message: Message) -> bool:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if self.on_drop is not None:
            self.on_drop(reason, channel, message)
        return False

    def attributed(self, channel: str) -> bool:
        """True if a delivery on ``channel`` belongs to exactly one known subscription: its
        marker may be stored. False for a delivery labelled with a plain topic that only
        filtered subscriptions cover, or on a channel nobody subscribed to."""
        return channel in self._subscribed

    def _covered(self, channel: str) -> bool:
        if channel_key(channel) in self._by_topic:
            return True
        return self._wildcards and any(matches(pattern, channel) for pattern in self._subscribed)

    def incoming_deliveries(self, channel: str, messages: list[Message]) -> list[Message] | None:
        """A run of deliveries on one channel (#13): the usual case at once, else None.

        The usual case is :meth:`incoming`'s short way for every message: a subscribed
        channel, no resubscription in progress, an int replay id in each event. The position
        moves to the highest of them, as it would one event at a time; nothing is dropped.
        """
        if channel not in self._subscribed or self._repeats_until or self._skip_before:
            return None
        try:
            replay_ids = [message["data"]["event"]["replayId"] for message in messages]
        except (KeyError, TypeError):
            return None
        if set(map(type, replay_ids)) != _INT_ONLY:
            return None
        highest = max(replay_ids)
        last = self._received.get(channel)
        if last is None or highest > last:
            self._received[channel] = highest
        if self._started:
            self._started.pop(channel, None)
        return messages

    def incoming(self, message: Message) -> bool | None:
        """Record the replay id of a delivered event for its subscription.

        Returns False (drop it) for a delivery on a channel no subscription covers, and for an
        event replayed by a gap-safe resubscription (see :meth:`mark_subscribed`) that was
        created before the subscription took effect.
        """
        # Called for every delivered event: the usual case (a delivery on a subscribed
        # channel, JSON objects, an int replay id, no resubscription in progress) takes the
        # short way (#13); anything else goes through the general helpers.
        channel = message.get("channel")
        if (
            type(channel) is str
            and channel in self._subscribed
            and not self._repeats_until
            and not self._skip_before
        ):
            try:
                replay_id = message["data"]["event"]["replayId"]
            except (KeyError, TypeError):
                replay_id = None
            if type(replay_id) is int:
                received = self._received
                last = received.get(channel)
                if last is None or replay_id > last:
                    received[channel] = replay_id
                if self._started:
                    self._started.pop(channel, None)
                return None
        if not isinstance(channel, str) or channel.startswith("/meta/"):
            return None
        if channel not in self._subscribed:
            if "data" not in message:
                return None  # a publish reply, not a delivery
            if not self._covered(channel):
                return self._drop("unsubscribed", channel, message)
            return None  # delivered, but nobody's position moves (see the class docstring)
        if self._repeats_until:
            until = self._repeats_until.get(channel)
            if until is not None:
                repeated = _replay_id(message)
                if repeated is not None and repeated <= until:
                    # received before on this very subscription: the lower start was ours
                    return self._drop("repeated", channel, message)
                del self._repeats_until[channel]
        if self._skip_before:
            skip_before = self._skip_before.get(channel)
            if skip_before is not None:
                if _created_before(message, skip_before):
                    self._skipped[channel] = self._skipped.get(channel, 0) + 1
                    return self._drop("skipped", channel, message)
                del self._skip_before[channel]
        try:
            replay_id = message["data"]["event"]["replayId"]
        except (KeyError, TypeError):
            replay_id = None
        if type(replay_id) is not int:
            replay_id = _replay_id(message)
            if replay_id is None:
                return None
        last = self._received.get(channel)
        if last is None or replay_id > last:
            self._received[channel] = replay_id
        if self._started:
            self._started.pop(channel, None)
        return None


#: The types of a run's replay ids when all of them are ints (bools excluded).
_INT_ONLY: Final = frozenset({int})

#: ``since`` unknown: a gap-safe resubscription skips nothing.
_NOT_KNOWN: Final = datetime.min.replace(tzinfo=UTC)


def _created_before(message: Message, moment: datetime) -> bool:
    try:
        return parse_marker_date(marker_from_message(message).date) < moment
    except (ReplayError, ValueError, OverflowError):
        return False  # no usable date: deliver it rather than risk losing it
