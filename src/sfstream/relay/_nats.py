"""The NATS JetStream sink: events, positions and the lease of a channel set in JetStream.

Layout in the engine (see ``docs/scaling-nats.md``):

* **Events.** One stream (``SFSTREAM`` unless configured; created when missing, limits
  retention) holding the subjects ``<prefix>.>``. Each Salesforce channel of each org is one
  subject, :func:`channel_subject`: ``sfstream.<org>.event.Order__e``. Each event is one message:
  the payload is the Bayeux message as received, the headers carry the replay id and the rest of
  :class:`~sfstream.relay.RelayEvent`, ``Nats-Msg-Id`` is ``<subject>:<replay id>``.
* **Position.** The replay id in the headers of the subject's last message, read with the
  stream's get-last-message-for-subject API from the stream leader. The event *is* the position:
  one message, so event and position are one atomic write by construction.
* **Lease.** A key-value bucket (``sfstream-leases`` unless configured), one key per channel
  set, written only with an expected revision (compare-and-set).
* **Fencing.** Every event is published only after what this writer last saw: one at a time,
  with ``Nats-Expected-Last-Subject-Sequence`` set to the sequence this writer last saw on that
  subject; in a pipelined batch, chained (see :meth:`NatsSink._write_pipelined`). ``write()``
  checks the lease in the bucket before each batch (with a read sent ahead of the previous
  batch, at most ``_CHECK_FRESH`` seconds before). A writer whose lease was taken is refused by
  the bucket or, if it checked a moment before the takeover, by the stream as soon as the new
  leader has written to the subject.

Retries: a publish whose acknowledgement was lost (a node killed, a leader election, a
reconnect) is sent again with the same ``Nats-Msg-Id`` and expected sequence; JetStream answers
a duplicate with the original sequence, so a retry never stores an event twice.

nats-py is an optional dependency (``pip install '.[nats]'`` in the sfstream checkout): this
module is only imported by whoever uses the NATS sink.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import chain as chained
from itertools import islice, repeat
from operator import add, lt
from typing import Any, TypeGuard, TypeVar, cast
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

try:
    import nats
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.api import DiscardPolicy, RawStreamMsg, RetentionPolicy, StorageType, StreamConfig
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the NATS sink needs nats-py: pip install '.[nats]' in the sfstream checkout"
    ) from error

from sfstream.exceptions import InvalidArgumentError
from sfstream.relay._sink import (
    EventRefused,
    Lease,
    LeaseLost,
    RelayBatch,
    RelayEvent,
    Sink,
    SinkError,
)

__all__ = [
    "NatsSink",
    "NatsSinkStats",
    "channel_subject",
    "decode_token",
    "encode_token",
    "subject_channel",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Defaults of the engine layout.
DEFAULT_STREAM = "SFSTREAM"
DEFAULT_BUCKET = "sfstream-leases"
DEFAULT_PREFIX = "sfstream"
#: pipelined batches in flight at once by default (each is sent as soon as it is made, chained
#: on the one before; JetStream stores them while the relay receives and builds the next)
DEFAULT_PIPELINE_DEPTH = 4

#: Message headers the sink writes on each event (and reads back for the position).
REPLAY_ID_HEADER = "Sfstream-Replay-Id"
DATE_HEADER = "Sfstream-Date"
EVENT_UUID_HEADER = "Sfstream-Event-Uuid"
MSG_ID_HEADER = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
EXPECTED_STREAM = "Nats-Expected-Stream"
KV_OPERATION_HEADER = "KV-Operation"

#: JetStream's error code for "wrong last sequence" (an expected sequence did not match).
_WRONG_LAST_SEQUENCE = {10071, 10164}
#: JetStream's error codes for a broken chain: wrong last message id, wrong last sequence.
_CHAIN_BROKEN = {10070, *_WRONG_LAST_SEQUENCE}
#: Seconds a lease read may have been sent before a batch it clears (see _lease_checked).
_CHECK_FRESH = 0.05
#: Seconds open() waits at least for JetStream to answer about the stream and the bucket (a
#: starting cluster elects its meta leader first).
_SETUP_PATIENCE = 30.0
#: Pieces (three per message) of a pipelined batch handed to the connection at once.
_CHUNK = 3 * 1000
#: JetStream's error code for "no message found" (get-last-message of an empty subject).
_NO_MESSAGE_FOUND = 10037
#: JetStream's error code for "stream name already in use" (created by someone else meanwhile).
_STREAM_NAME_IN_USE = 10058

_SAFE = re.compile(r"[A-Za-z0-9_-]")
_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]+")
_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


# -- subjects -----------------------------------------------------------------------------------


def encode_token(text: str) -> str:
    """``text`` as one NATS subject token (and a valid key-value key).

    Letters, digits, ``_`` and ``-`` stay; every other character becomes ``~`` and the two
    upper-case hex digits of each of its UTF-8 bytes (``?`` → ``~3F``, ``~`` → ``~7E``). The
    empty string becomes ``~`` alone. The result never holds ``.``, ``*``, ``>`` or white space,
    and :func:`decode_token` reverses it.
    """
    if not text:
        return "~"
    out: list[str] = []
    for char in text:
        if _SAFE.fullmatch(char):
            out.append(char)
        else:
            out.extend(f"~{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def decode_token(token: str) -> str:
    """The text :func:`encode_token` turned into ``token``.

    Raises :class:`~sfstream.exceptions.InvalidArgumentError` (a :class:`ValueError`) if
    ``token`` is not one.
    """
    if token == "~":  # noqa: S105 (the empty text, not a password)
        return ""
    raw = bytearray()
    index = 0
    while index < len(token):
        char = token[index]
        if char == "~":
            hex_digits = token[index + 1 : index + 3]
            if len(hex_digits) != 2 or not re.fullmatch(r"[0-9A-F]{2}", hex_digits):
                raise InvalidArgumentError(f"not an encoded subject token: {token!r}")
            raw.append(int(hex_digits, 16))
            index += 3
        elif _SAFE.fullmatch(char):
            raw.append(ord(char))
            index += 1
        else:
            raise InvalidArgumentError(f"not an encoded subject token: {token!r}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidArgumentError(f"not an encoded subject token: {token!r}") from error


def channel_subject(org: str, channel: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The subject of ``channel`` of ``org``: ``<prefix>.<org>.<segment>.<segment>…``.

    Each ``/``-separated segment of the channel is one token (:func:`encode_token`), so that
    ``/event/Order__e`` of org ``00Dxx`` is ``sfstream.00Dxx.event.Order__e`` and a worker can
    take all platform events of the org with ``sfstream.00Dxx.event.>``;
    ``/topic/Acc?Type=Partner`` is ``sfstream.00Dxx.topic.Acc~3FType~3DPartner``.

    Raises :class:`SinkError` if ``channel`` does not start with ``/``.
    """
    if not channel.startswith("/") or channel == "/":
        raise SinkError(f"not a Salesforce channel name: {channel!r}")
    segments = channel[1:].split("/")
    return ".".join([prefix, encode_token(org), *(encode_token(s) for s in segments)])


def subject_channel(subject: str, prefix: str = DEFAULT_PREFIX) -> tuple[str, str]:
    """``(org, channel)`` back from a subject built by :func:`channel_subject`.

    Raises :class:`~sfstream.exceptions.InvalidArgumentError` (a :class:`ValueError`) for a
    subject it did not build.
    """
    head = prefix + "."
    if not subject.startswith(head):
        raise InvalidArgumentError(f"subject {subject!r} does not start with {head!r}")
    tokens = subject[len(head) :].split(".")
    if len(tokens) < 2:
        raise InvalidArgumentError(f"subject {subject!r} names no channel")
    org = decode_token(tokens[0])
    return org, "/" + "/".join(decode_token(token) for token in tokens[1:])


def _header_value(text: str) -> str:
    """A header value that is printable ASCII (percent-encoded otherwise)."""
    if text.isascii() and text.isprintable():
        return text
    return quote(text, safe="/?=&:,;@+$!'()*")


# -- the sink ---------------------------------------------------------------------------------


@dataclass
class NatsSinkStats:
    """Counters for metrics and logs (they only grow)."""

    written: int = 0
    """Events stored by this sink (of a pipelined batch: the events its acknowledgement covers,
    some of which another writer may have stored a moment before, see ``duplicates``)."""
    skipped: int = 0
    """Events not written because the subject already held them (replay id not above)."""
    duplicates: int = 0
    """Publishes JetStream answered as duplicates (a retry whose first ack was lost). Of a
    pipelined batch only the last message is acknowledged: a duplicate before it is not seen."""
    retries: int = 0
    """Requests sent again after a timeout, a lost connection or an unavailable stream leader."""
    conflicts: int = 0
    """Writes refused because another writer had written to the subject meanwhile, and
    pipelined batches that went on from the stored positions (refused or unconfirmed)."""


class _Abandoned(Exception):
    """A request got no answer in time (internal: retried, then reported as SinkError)."""


@dataclass(frozen=True, slots=True)
class _LeaseEntry:
    revision: int
    holder: str
    token: int
    ttl: float


@dataclass(slots=True)
class _Cursor:
    """What this writer last saw on a subject: the message's stream sequence and replay id.

    The sequence is ``None`` after a pipelined batch wrote the subject but not as its last
    message (only the last is acknowledged): the chain of batches stands in for it.
    """

    sequence: int | None
    replay_id: int | None


class _Ended(enum.Enum):
    """How a write ended, for the write after it (internal)."""

    FAST = "fast"
    """Stored whole by its pipelined batch: a batch chained on it may trust its own answer."""
    STORED = "stored"
    """Stored, some of it another way (one by one): a batch chained on it reads afresh."""
    FAILED = "failed"
    """Raised, or was cancelled: nothing after it may be written in this term."""


#: Where the next message of a chain goes (internal): the stream's last message id and sequence
#: as the chain plans them, and that message's subject when this writer sent it in this chain
#: ("" for a chain's start, read from the stream: whoever wrote that message, and when, is
#: not known).
_Anchor = tuple[str, int, str]


class _Flight:
    """One write among those in flight (internal). ``sent``: the :data:`_Anchor` of the last
    message it handed to the connection as a chain, which the next write's chain expects
    (None: it sent no chain; the next write waits for its end).
    ``done``: how it ended. ``diverted``: its chain was not stored whole (or may not be): it
    goes on another way (a new chain, one message at a time), and from then on nothing may be
    sent chained on it.

    Why that suffices: a write chained on this one sends its messages before ``diverted`` is
    set (on the same connection, so JetStream takes them before anything this write sends
    afterwards), or not at all. Sent before, they follow this write's broken chain and are
    refused, unless that chain was stored whole after all; not sent, they wait for this write's
    end and start a new chain from the stored positions. So no message is ever stored after a
    message id of this write that its other path stored before the rest of its events. (Each
    message also expects the stream's and its subject's last sequence where its chain planned
    them: JetStream checks nothing on a duplicate and keeps its last message id, so an id alone
    could be matched by another writer's copy of that message.)
    """

    __slots__ = ("diverted", "done", "sent")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.sent: asyncio.Future[_Anchor | None] = loop.create_future()
        self.done: asyncio.Future[_Ended] = loop.create_future()
        self.diverted = False

    def mark_sent(self, last: _Anchor | None) -> None:
        if not self.sent.done():
            self.sent.set_result(last)


#: one event's fields, as _write_pipelined reads them
_Row = tuple[str, str, int, str, bytes, "str | None"]


#: in every piece of a pipelined batch, and in no other command this sink sends
_CHAIN_MARK = f"\r\n{EXPECTED_LAST_SEQUENCE}: ".encode()


def _rows(events: Sequence[RelayEvent]) -> Iterable[_Row]:
    """(org, channel, replay id, date, payload, event uuid) of each event, from a
    :class:`RelayBatch`'s columns without an object per event."""
    if isinstance(events, RelayBatch):
        return zip(
            repeat(events.org),
            events.channels,
            events.replay_ids,
            events.dates,
            events.payloads,
            events.event_uuids,
            strict=False,  # the columns have one length (RelayBatch checks); repeat() has none
        )
    return ((e.org, e.channel, e.replay_id, e.date, e.payload, e.event_uuid) for e in events)


def _highest(a: int | None, b: int | None) -> int | None:
    """The larger of two replay ids, either of which may be None."""
    if a is None:
        return b
    return a if b is None or a >= b else b


#: the bytes of printable ASCII but the space
_VISIBLE = bytes(range(0x21, 0x7F))


def _plain(events: Sequence[RelayEvent]) -> bool:
    """Whether every date and event uuid of ``events`` can be a header value as it is:
    printable ASCII, no space (one check of the whole batch, not one per event)."""
    if isinstance(events, RelayBatch):
        dates, uuids = events.dates, events.event_uuids
    else:
        dates = [event.date for event in events]
        uuids = [event.event_uuid for event in events]
    text = "".join(dates) + "".join(filter(None, uuids))
    # ASCII, and nothing left once the visible characters (! to ~) are taken out: a few times
    # faster than str.isprintable()
    return text.isascii() and not text.encode("ascii").translate(None, _VISIBLE)


def _keys(events: Sequence[RelayEvent]) -> set[tuple[str, str]]:
    """The (org, channel) pairs of ``events``."""
    if isinstance(events, RelayBatch):
        return {(events.org, channel) for channel in set(events.channels)}
    return {(event.org, event.channel) for event in events}


def _is_run(events: Sequence[RelayEvent], chunk: int) -> TypeGuard[RelayBatch]:
    """Whether ``events`` is a run: a :class:`RelayBatch` of two events or more of one channel,
    replay ids rising, event uuids on all or none, sent in one piece (``chunk``).

    (Its first event must also go out, not be left out as sent already: the caller checks.)
    """
    if not isinstance(events, RelayBatch) or len(events) < 2 or 3 * len(events) > chunk:
        return False
    channels, ids, uuids = events.channels, events.replay_ids, events.event_uuids
    absent = uuids.count(None)
    return (
        channels.count(channels[0]) == len(channels)
        and all(map(lt, ids, islice(ids, 1, None)))
        and (absent == len(uuids) or (not absent and "" not in uuids))
    )


def _run_commands(
    fixed: tuple[str, str, str, str, str],
    lines: tuple[str, str, str, str],
    run: RelayBatch,
    at: int,
    limit: int,
) -> tuple[list[bytes], int | None]:
    """The HPUB commands of the events of a run but its first (planned, with the pieces
    ``fixed``, before ``at``, the sequence the second expects last), as _write_pipelined makes
    them one by one: the same bytes, made column by column in C loops.

    In a run, each event expects the one before it, of its subject, as the stream's last
    message, at the sequence before its own (so it is its subject's last message too: see
    :meth:`NatsSink._write_pipelined`). Returns the commands (three pieces per event), or the
    index of the first event too large for the server (``limit``) and no commands.
    """
    subject, command, _, head, middle = fixed
    replay_line, sequence_line, id_line, uuid_line = lines
    ids = list(map(str, run.replay_ids))
    sequences = list(map(str, range(at, at + len(ids) - 1)))
    columns: list[Iterable[str]] = [
        repeat(head),
        islice(ids, 1, None),
        repeat(replay_line),
        islice(ids, 1, None),
        repeat(middle),
        islice(run.dates, 1, None),
        repeat(sequence_line),
        sequences,
        repeat(f"{id_line}{subject}:"),
        ids,  # the one before each (zip stops at the shortest column)
    ]
    if run.event_uuids[0] is not None:
        columns += [repeat(uuid_line), islice(cast("list[str]", run.event_uuids), 1, None)]
    columns.append(repeat("\r\n\r\n"))
    headers = list(map("".join, zip(*columns, strict=False)))  # the repeats have no end
    payloads = run.payloads
    sizes = list(map(len, headers))
    totals = list(map(add, sizes, map(len, islice(payloads, 1, None))))
    if max(totals) > limit:
        return [], 1 + next(i for i, total in enumerate(totals) if total > limit)
    commands = map(
        str.encode,
        map(
            "".join,
            zip(
                repeat(command),
                map(str, sizes),
                repeat(" "),
                map(str, totals),
                repeat("\r\n"),
                headers,
            ),
        ),
    )
    return list(
        chained.from_iterable(zip(commands, islice(payloads, 1, None), repeat(b"\r\n")))
    ), None


class _Outcome(enum.Enum):
    """How a pipelined batch ended (internal)."""

    STORED = "stored"
    """The whole batch is stored (or was already)."""
    REFUSED = "refused"
    """JetStream refused the last message: the chain broke (something else was written)."""
    UNCERTAIN = "uncertain"
    """No answer, a duplicate, a lost connection, or not sent: positions must be read afresh."""


class NatsSink(Sink):
    """A :class:`~sfstream.relay.Sink` on NATS JetStream.

    ``url`` is a NATS server URL (``nats://host:4222``) or a comma-separated list of them for a
    cluster (``nats://a:4222,nats://b:4222``). Its query string may set ``stream``, ``bucket``,
    ``prefix``, ``replicas`` and ``creds`` (a credentials file for JWT/NKey authentication;
    ``nats://a:4222,nats://b:4222?replicas=3``); keyword arguments win over the query string.
    ``tls://`` connects with TLS (the system's CAs, or ``SSL_CERT_FILE``); user and password or
    a token go into a server's URL (``nats://user:pass@host:4222``) and are never logged.

    ``replicas`` is used when the sink creates the stream and the bucket (use 3 in a 3-node
    cluster); existing ones are used as they are. ``max_msgs_per_subject`` and ``max_age``
    (seconds) bound the stream's retention, but the last message of each subject is the relay's
    position: never use a retention that can remove it while the relay may need it
    (``max_msgs_per_subject`` keeps the last ones; a ``max_age`` shorter than the longest quiet
    period of a channel loses its position).

    ``request_timeout`` bounds each request to the server; a request that times out or finds no
    stream leader is retried (same message id) for up to ``retry_for`` seconds before
    :class:`SinkError` is raised.

    ``pipeline_depth`` writes may be in flight at once (:attr:`Sink.pipeline_depth`): each
    batch is published as soon as it is made, chained on the batch before it, so that
    JetStream stores one while the relay receives the next. A batch is stored only right after
    the one before it; one that fails leaves nothing after it in the stream, and the writes
    after it raise. ``pipeline=False`` publishes one event at a time, awaiting each.
    """

    kind = "nats"
    takes_batches = True

    def __init__(
        self,
        url: str,
        *,
        stream: str | None = None,
        bucket: str | None = None,
        prefix: str | None = None,
        replicas: int | None = None,
        max_msgs_per_subject: int = -1,
        max_age: float | None = None,
        duplicate_window: float = 120.0,
        request_timeout: float = 2.0,
        retry_for: float = 20.0,
        connect_timeout: float = 5.0,
        name: str = "sfstream-relay",
        pipeline: bool = True,
        pipeline_depth: int = DEFAULT_PIPELINE_DEPTH,
    ) -> None:
        servers, options = _parse_url(url)
        self._servers = servers
        #: a NATS credentials file (JWT and NKey seed: decentralised auth), from ``?creds=``
        self._creds = options.get("creds")
        self._stream = stream or options.get("stream") or DEFAULT_STREAM
        self._bucket = bucket or options.get("bucket") or DEFAULT_BUCKET
        self._prefix = prefix or options.get("prefix") or DEFAULT_PREFIX
        replicas_option = options.get("replicas")
        try:
            self._replicas = replicas or (int(replicas_option) if replicas_option else 1)
        except ValueError:
            raise SinkError(f"replicas must be an integer, not {replicas_option!r}") from None
        if not 1 <= self._replicas <= 5:
            raise SinkError(f"replicas must be between 1 and 5, not {self._replicas}")
        if not _STREAM_NAME.fullmatch(self._stream):
            raise SinkError(f"invalid stream name {self._stream!r} (letters, digits, _ and -)")
        if not _STREAM_NAME.fullmatch(self._bucket):
            raise SinkError(f"invalid bucket name {self._bucket!r} (letters, digits, _ and -)")
        if not _PREFIX.fullmatch(self._prefix):
            raise SinkError(f"invalid subject prefix {self._prefix!r}")
        if request_timeout <= 0 or retry_for < 0 or connect_timeout <= 0:
            raise SinkError("request_timeout and connect_timeout must be > 0, retry_for >= 0")
        if type(pipeline_depth) is not int or pipeline_depth < 1:
            raise InvalidArgumentError(
                f"pipeline_depth must be a positive integer, not {pipeline_depth!r}"
            )
        self._max_msgs_per_subject = max_msgs_per_subject
        self._max_age = max_age
        self._duplicate_window = duplicate_window
        self._request_timeout = request_timeout
        self._retry_for = retry_for
        self._connect_timeout = connect_timeout
        self._name = name
        #: publish a batch at once, chained (see _write_pipelined); False: one by one only
        self._pipeline = pipeline
        self.pipeline_depth = pipeline_depth if pipeline else 1
        #: the last write begun, until it ends: the next one chains on it
        self._flight: _Flight | None = None
        #: writes in flight (begun, not ended)
        self._writing = 0
        #: per subject, the highest replay id this writer handed to the connection (or is about
        #: to) in this term: a later chain leaves those events out (see _write_pipelined)
        self._sent: dict[str, int] = {}
        self._nc: NatsClient | None = None
        #: pipelined publishes: reply-subject prefix, counter, futures awaiting their answer
        self._ack_prefix: str | None = None
        self._ack_counter = 0
        self._acks: dict[str, asyncio.Future[tuple[int, bool]]] = {}
        #: lease reads sent ahead of a batch: futures awaiting the raw answer
        self._reads: dict[str, asyncio.Future[bytes]] = {}
        self._js: JetStreamContext | None = None
        self._closed = False
        #: per subject, what this writer last saw (reset when a lease is acquired)
        self._cursors: dict[str, _Cursor] = {}
        #: (message id, stream sequence) of the last message of this writer's last pipelined
        #: batch, when that batch was stored whole: the next batch's first message expects it
        self._chain: _Anchor | None = None
        #: the lease read for the next batch, started when the last one was stored:
        #: (lease, monotonic time it was sent, its answer)
        self._next_check: tuple[Lease, float, asyncio.Future[_LeaseEntry | None]] | None = None
        #: (org, channel) -> subject, computed once
        self._subjects: dict[tuple[str, str], str] = {}
        #: per lease key, (revision, monotonic time this sink first saw it) of another holder
        self._observed: dict[str, tuple[int, float]] = {}
        #: per (lease key, token), the monotonic time until which no standby can have taken it:
        #: the send time of the last write of the lease (acquiring or renewing) plus its TTL
        self._valid_until: dict[tuple[str, int], float] = {}
        self.stats = NatsSinkStats()

    def __repr__(self) -> str:
        servers = ",".join(_redact(server) for server in self._servers)
        return f"NatsSink({servers!r}, stream={self._stream!r}, bucket={self._bucket!r})"

    @property
    def stream(self) -> str:
        """The stream holding the events."""
        return self._stream

    @property
    def bucket(self) -> str:
        """The key-value bucket holding the leases."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The first token of every event subject."""
        return self._prefix

    def subject(self, org: str, channel: str) -> str:
        """The subject the events of ``channel`` of ``org`` go to (:func:`channel_subject`)."""
        key = (org, channel)
        subject = self._subjects.get(key)
        if subject is None:
            subject = channel_subject(org, channel, self._prefix)
            if len(self._subjects) < 10_000:
                self._subjects[key] = subject
        return subject

    @property
    def _kv_stream(self) -> str:
        return f"KV_{self._bucket}"

    def _kv_subject(self, name: str) -> str:
        return f"$KV.{self._bucket}.{encode_token(name)}"

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._nc is not None:
            return
        if self._closed:
            raise SinkError("this NatsSink was closed; create a new one")
        shown = ",".join(_redact(server) for server in self._servers)
        try:
            nc = await _isolated(self._connect, self._connect_timeout * 3 * len(self._servers) + 5)
        except (OSError, TimeoutError, nats.errors.Error, _Abandoned) as error:
            raise SinkError(f"cannot connect to NATS at {shown}: {type(error).__name__}") from None
        nc.options["max_reconnect_attempts"] = -1
        self._nc = nc
        # nats-py's own request timeout is a fallback: _retrying() bounds each request itself.
        self._js = nc.jetstream(timeout=self._request_timeout + 5)
        try:
            await self._ensure_stream()
            await self._ensure_bucket()
        except BaseException:
            await self.close()
            self._closed = False
            raise
        logger.info("NATS sink open: %s, stream %s, bucket %s", shown, self._stream, self._bucket)

    async def _connect(self) -> NatsClient:
        return await nats.connect(
            servers=self._servers,
            name=self._name,
            connect_timeout=max(1, round(self._connect_timeout)),
            allow_reconnect=True,
            # A few rounds over the servers for the first connection (so that open() fails with
            # a clear error when none answers); once connected, open() sets "forever".
            max_reconnect_attempts=2,
            reconnect_time_wait=0.25,
            user_credentials=self._creds,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )

    async def close(self) -> None:
        self._closed = True
        self._forget()
        nc, self._nc, self._js = self._nc, None, None
        self._ack_prefix = None
        if nc is not None and not nc.is_closed:
            try:
                await _isolated(nc.close, 10.0)
            except Exception:  # closing a broken connection
                logger.debug("closing the NATS connection failed", exc_info=True)

    async def _on_error(self, error: Exception) -> None:
        logger.warning("NATS connection: %s", type(error).__name__)

    async def _on_disconnected(self) -> None:
        if not self._closed:
            logger.warning("NATS connection lost; reconnecting")
        self._drop_unsent_chains()

    def _drop_unsent_chains(self) -> None:
        """Take the pipelined batches that were not written yet out of the connection's queue:
        nats-py writes its queue after it reconnected, however late, and a chain must not reach
        JetStream after this writer's lease may have expired (another writer may have stored
        some of its events by then, and JetStream does not check a message it finds to be a
        duplicate, so the message after it could be stored after a gap). Their writes get no
        answer and go on one message at a time, each checked against the subject's sequence."""
        nc = self._nc
        pending = getattr(nc, "_pending", None)
        if not isinstance(pending, list):
            return
        kept = [command for command in pending if _CHAIN_MARK not in command]
        if len(kept) != len(pending):
            logger.debug("dropped %d unsent pipelined pieces", len(pending) - len(kept))
            pending[:] = kept
            nc._pending_data_size = sum(map(len, kept))  # type: ignore[union-attr]

    async def _on_reconnected(self) -> None:
        nc = self._nc
        where = _redact(nc.connected_url.geturl()) if nc and nc.connected_url else "?"
        logger.warning("NATS connection re-established to %s", where)

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise SinkError("the NATS sink is not open (use 'async with sink:' or await open())")
        return self._js

    async def _ensure_stream(self) -> None:
        wanted = f"{self._prefix}.>"
        config = StreamConfig(
            name=self._stream,
            description="Salesforce events relayed by sfstream (one subject per channel)",
            subjects=[wanted],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=self._replicas,
            duplicate_window=self._duplicate_window,
            max_msgs_per_subject=self._max_msgs_per_subject,
            max_age=self._max_age,
            discard=DiscardPolicy.OLD,
        )
        info = await self._create_stream(config)
        subjects = info.config.subjects or []
        if wanted not in subjects:
            raise SinkError(
                f"stream {self._stream!r} exists but does not hold the subjects {wanted!r} "
                f"(it holds {subjects}); choose another stream name or subject prefix"
            )
        if info.config.retention not in (None, RetentionPolicy.LIMITS):
            raise SinkError(
                f"stream {self._stream!r} has {info.config.retention} retention; the relay keeps "
                "its position in the last message of each subject and needs limits retention"
            )

    async def _ensure_bucket(self) -> None:
        # A key-value bucket as `nats kv add` makes it (history 1), except that reads go to the
        # stream leader (no direct get from a possibly stale replica).
        config = StreamConfig(
            name=self._kv_stream,
            description="sfstream relay leases",
            subjects=[f"$KV.{self._bucket}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=self._replicas,
            max_msgs_per_subject=1,
            discard=DiscardPolicy.NEW,
            allow_rollup_hdrs=True,
            deny_delete=True,
            duplicate_window=self._duplicate_window,
        )
        await self._create_stream(config)

    async def _create_stream(self, config: StreamConfig) -> Any:
        assert config.name is not None
        js = self._jetstream()
        name = config.name
        # Connected, but JetStream may not answer yet: a cluster that is starting (or lost
        # its quorum for a moment) elects its meta leader first. Worth a longer wait than one
        # request of a running relay: the alternative is a relay that exits at start.
        patience = max(self._retry_for, _SETUP_PATIENCE)
        try:
            return await self._retrying(
                f"stream info {name}", lambda: js.stream_info(name), patience=patience
            )
        except nats.js.errors.NotFoundError:
            pass
        try:
            info = await self._retrying(
                f"create stream {name}", lambda: js.add_stream(config), patience=patience
            )
            logger.info("created JetStream stream %s (R%s)", name, config.num_replicas)
            return info
        except nats.js.errors.APIError as error:
            if error.err_code == _STREAM_NAME_IN_USE:  # another relay created it meanwhile
                return await self._retrying(
                    f"stream info {name}", lambda: js.stream_info(name), patience=patience
                )
            raise SinkError(f"cannot create stream {name!r}: {error.description}") from None

    # -- retries ----------------------------------------------------------------------------------

    async def _retrying(
        self,
        what: str,
        request: Callable[[], Awaitable[T]],
        until: float | None = None,
        *,
        patience: float | None = None,
    ) -> T:
        """Run ``request``; retry while the engine is transiently unavailable, up to retry_for
        (or ``patience`` seconds) and never past the monotonic time ``until``.

        API errors other than "service unavailable" are raised as they are (the callers map them).
        """
        loop = asyncio.get_running_loop()
        patience = self._retry_for if patience is None else patience
        deadline = loop.time() + patience
        if until is not None:
            deadline = min(deadline, until)
        delay = 0.05
        while True:
            if self._nc is None or self._nc.is_closed:
                raise SinkError(f"{what}: the NATS connection is closed")
            try:
                return await self._bounded(request)
            except nats.js.errors.APIError as error:
                # nats-py raises a 503 status reply ("no responders": JetStream not there yet)
                # as a ServiceUnavailableError without a code.
                unavailable = isinstance(error, nats.js.errors.ServiceUnavailableError)
                if not unavailable and (error.code is None or error.code < 500):
                    raise
                reason = f"{error.code or 503} {error.description or 'service unavailable'}"
            except (
                nats.errors.TimeoutError,
                nats.errors.NoRespondersError,
                nats.js.errors.NoStreamResponseError,
                nats.errors.ConnectionReconnectingError,
                nats.errors.OutboundBufferLimitError,
                TimeoutError,
                _Abandoned,
            ) as error:
                reason = type(error).__name__
            except nats.errors.ConnectionClosedError:
                raise SinkError(f"{what}: the NATS connection is closed") from None
            if loop.time() + delay > deadline:
                raise SinkError(f"{what}: NATS did not answer ({reason}) for {patience:g} s")
            self.stats.retries += 1
            logger.debug("%s: %s; retrying in %.2f s", what, reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _bounded(self, request: Callable[[], Awaitable[T]]) -> T:
        """One request, given up after ``request_timeout`` (:func:`_isolated`)."""
        return await _isolated(request, self._request_timeout)

    async def _last_message(self, stream: str, subject: str) -> RawStreamMsg | None:
        """The subject's last message, read from the stream leader; ``None`` if it has none."""
        js = self._jetstream()
        try:
            message: RawStreamMsg = await self._retrying(
                f"last message of {subject}", lambda: js.get_last_msg(stream, subject)
            )
        except nats.js.errors.NotFoundError as error:
            if error.err_code in (None, _NO_MESSAGE_FOUND):
                return None
            raise SinkError(f"cannot read {subject} in {stream!r}: {error.description}") from None
        except nats.js.errors.APIError as error:
            raise SinkError(f"cannot read {subject} in {stream!r}: {error.description}") from None
        return message

    async def _stream_end(self) -> _Anchor:
        """The stream's last sequence, where a new chain starts (no message id, no subject)."""
        js = self._jetstream()
        try:
            info = await self._retrying(
                f"stream info {self._stream}", lambda: js.stream_info(self._stream)
            )
        except nats.js.errors.APIError as error:
            raise SinkError(f"cannot read stream {self._stream!r}: {error.description}") from None
        return "", int(info.state.last_seq or 0), ""

    # -- lease ----------------------------------------------------------------------------------

    async def _read_lease(self, name: str) -> tuple[int, _LeaseEntry | None]:
        """``(revision, entry)``: the key's last revision (0 if never written) and the lease in
        it (``None`` when deleted or released)."""
        message = await self._last_message(self._kv_stream, self._kv_subject(name))
        if message is None:
            return 0, None
        operation = _headers(message).get(KV_OPERATION_HEADER.lower())
        return _lease_entry(name, message.seq or 0, operation, message.data or b"")

    def _lease_read(self, lease: Lease) -> tuple[bytes, asyncio.Future[_LeaseEntry | None]]:
        """A raw get-last-message request for ``lease``'s key, to be sent ahead of a batch on
        the connection (JetStream answers it before it stores the batch), and the future of
        what it finds (``_current``'s answer). A missing or unreadable answer falls back to
        ``_current``, with its retries."""
        assert self._ack_prefix is not None
        self._ack_counter += 1
        token = f"L{self._ack_counter}"
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._reads[token] = answer
        answer.add_done_callback(functools.partial(self._forget_read, token))
        body = json.dumps({"last_by_subj": self._kv_subject(lease.name)}).encode()
        command = (
            f"PUB $JS.API.STREAM.MSG.GET.{self._kv_stream} {self._ack_prefix}.{token} "
            f"{len(body)}\r\n"
        ).encode()
        check = asyncio.ensure_future(self._lease_answered(lease, answer))
        check.add_done_callback(_consume)
        # A check given up (even before it started) gives its answer up: no entry stays behind.
        check.add_done_callback(lambda _check: answer.cancel())
        return command + body + b"\r\n", check

    async def _lease_answered(
        self, lease: Lease, answer: asyncio.Future[bytes]
    ) -> _LeaseEntry | None:
        try:
            raw = await _answer(answer, self._request_timeout)
            reply = json.loads(raw)
            error = reply.get("error")
            if error:
                if error.get("err_code") != _NO_MESSAGE_FOUND:
                    raise ValueError(error)
                entry = None
            else:
                found = reply["message"]
                operation = None
                if found.get("hdrs"):
                    for line in base64.b64decode(found["hdrs"]).split(b"\r\n")[1:]:
                        key, _, value = line.partition(b":")
                        if key.strip().lower() == KV_OPERATION_HEADER.lower().encode():
                            operation = value.strip().decode()
                data = base64.b64decode(found.get("data") or "")
                _, entry = _lease_entry(lease.name, int(found["seq"]), operation, data)
        except (TimeoutError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.debug("lease read ahead of a batch failed (%r); reading it again", exc)
            return await self._current(lease)
        return entry if _holds(lease, entry) else None

    def _forget_read(self, token: str, answer: asyncio.Future[bytes]) -> None:
        self._reads.pop(token, None)
        if not answer.cancelled():
            answer.exception()

    async def _write_lease(self, name: str, value: dict[str, Any], expected: int) -> int | None:
        """Compare-and-set the lease key: the new revision, ``None`` if ``expected`` is stale."""
        js = self._jetstream()
        subject = self._kv_subject(name)
        data = json.dumps(value).encode()
        headers = {EXPECTED_LAST_SUBJECT_SEQUENCE: str(expected)}
        try:
            ack = await self._retrying(
                f"lease {name}",
                lambda: js.publish(subject, data, headers=dict(headers), stream=self._kv_stream),
            )
        except nats.js.errors.APIError as error:
            if error.err_code in _WRONG_LAST_SEQUENCE:
                return None
            raise SinkError(f"cannot write lease {name!r}: {error.description}") from None
        seq: int = ack.seq
        return seq

    async def acquire(self, name: str, holder: str, ttl: float) -> Lease | None:
        """Take the lease if it is free, released or expired.

        Expiry is judged by this process's monotonic clock, never by comparing clocks: an entry
        is expired once this sink has seen the same revision of it for longer than the TTL its
        holder wrote (the holder renews by writing a new revision). Hosts' wall clocks may
        disagree by seconds; an elapsed time measured by one clock does not depend on them. A
        standby that polls takes a dead leader's lease within TTL (plus its poll interval) of
        the leader's last renewal; a process that starts while an entry is there waits one TTL.
        """
        if ttl <= 0:
            raise SinkError(f"the lease TTL must be > 0, not {ttl}")
        loop = asyncio.get_running_loop()
        revision, entry = await self._read_lease(name)
        now = loop.time()
        if entry is not None:
            seen = self._observed.get(name)
            if seen is None or seen[0] != revision:
                self._observed[name] = (revision, now)
                return None
            if now - seen[1] < entry.ttl:
                return None
            logger.warning(
                "lease %r of %s expired (revision %s unchanged for %.1f s); taking it over",
                name,
                entry.holder,
                revision,
                now - seen[1],
            )
        sent = loop.time()
        new_revision = await self._write_lease(
            name, {"holder": holder, "token": None, "ttl": ttl}, revision
        )
        if new_revision is None:  # someone else wrote the key meanwhile
            return None
        self._observed.pop(name, None)
        self._valid_until = {key: v for key, v in self._valid_until.items() if key[0] != name}
        self._valid_until[(name, new_revision)] = sent + ttl
        self._forget()  # a new term: read every subject afresh before writing
        self._settled()
        logger.info("acquired lease %r as %s (token %s)", name, holder, new_revision)
        return Lease(name=name, holder=holder, token=new_revision, ttl=ttl)

    async def _current(self, lease: Lease) -> _LeaseEntry | None:
        """The lease's entry if ``lease`` is still the current holder, else ``None``."""
        _revision, entry = await self._read_lease(lease.name)
        return entry if _holds(lease, entry) else None

    async def renew(self, lease: Lease) -> Lease:
        entry = await self._current(lease)
        if entry is None:
            raise LeaseLost(f"lease {lease.name!r} is no longer held by {lease.holder}")
        value = {"holder": lease.holder, "token": lease.token, "ttl": lease.ttl}
        sent = asyncio.get_running_loop().time()
        if await self._write_lease(lease.name, value, entry.revision) is None:
            raise LeaseLost(f"lease {lease.name!r} was taken over while renewing")
        self._valid_until[(lease.name, lease.token)] = sent + lease.ttl
        return replace(lease)

    def _check_valid(self, lease: Lease) -> float:
        """The monotonic time until which ``lease`` is surely still this writer's; raises
        :class:`LeaseLost` once it has passed (a standby may hold the lease by now: no further
        event may be sent, even while JetStream is still electing a leader)."""
        until = self._valid_until.get((lease.name, lease.token))
        if until is None:
            # A lease this sink did not take or renew (another instance's): trust the engine's
            # fencing alone for one TTL from now.
            until = self._valid_until[(lease.name, lease.token)] = (
                asyncio.get_running_loop().time() + lease.ttl
            )
        if asyncio.get_running_loop().time() >= until:
            raise LeaseLost(
                f"lease {lease.name!r} may have expired (not renewed within its TTL): "
                "no more writes under it"
            )
        return until

    async def release(self, lease: Lease) -> None:
        try:
            entry = await self._current(lease)
            if entry is None:
                return
            js = self._jetstream()
            headers = {
                KV_OPERATION_HEADER: "DEL",
                EXPECTED_LAST_SUBJECT_SEQUENCE: str(entry.revision),
            }
            subject = self._kv_subject(lease.name)
            await self._retrying(
                f"release {lease.name}",
                lambda: js.publish(subject, b"", headers=dict(headers), stream=self._kv_stream),
            )
            logger.info("released lease %r", lease.name)
        except nats.js.errors.APIError as error:
            if error.err_code not in _WRONG_LAST_SEQUENCE:
                raise SinkError(
                    f"cannot release lease {lease.name!r}: {error.description}"
                ) from None

    # -- events ---------------------------------------------------------------------------------

    async def _read_cursor(self, subject: str) -> _Cursor:
        message = await self._last_message(self._stream, subject)
        if message is None:
            return _Cursor(0, None)
        return _Cursor(message.seq or 0, _replay_id_of(message))

    async def position(self, org: str, channel: str) -> int | None:
        subject = self.subject(org, channel)
        cursor = await self._read_cursor(subject)
        # What the stream holds now, also for the next write: a cursor kept from before (the
        # engine may have lost its tail since) would make that write skip the events the
        # relay resubscribes for as stored.
        self._cursors[subject] = cursor
        self._sent.pop(subject, None)
        self._settled()
        return cursor.replay_id

    async def write(self, lease: Lease, events: Sequence[RelayEvent]) -> None:
        if not events:
            return
        before = self._flight
        flight = self._flight = _Flight(asyncio.get_running_loop())
        self._writing += 1
        ended = _Ended.FAILED
        try:
            ended = await self._write(lease, events, before, flight)
        finally:
            self._writing -= 1
            flight.mark_sent(None)
            flight.done.set_result(ended)
            if ended is _Ended.FAILED:
                self._sent.clear()  # what it was to write is its caller's again
            # A write that failed while others were in flight stays: the writes after it
            # fail too, also those begun after it failed while an earlier one was still in
            # flight (its caller learns of the failure only once that one is answered), until
            # the positions are read again (position(), acquire()).
            if self._flight is flight and (ended is not _Ended.FAILED or not self._writing):
                self._flight = None

    async def _write(
        self,
        lease: Lease,
        events: Sequence[RelayEvent],
        before: _Flight | None,
        flight: _Flight,
    ) -> _Ended:
        """Write ``events`` after the write ``before`` (in flight, or None); how it ended."""
        anchor = self._chain
        if before is not None and before.done.done():
            await self._after(before)  # raises if it failed
            before = None
        if before is not None:
            # Its chain is sent: this batch's goes right behind it. Otherwise its end first.
            anchor = await asyncio.shield(before.sent)
            if anchor is None:
                await self._after(before)
                before, anchor = None, self._chain
        check = self._lease_check(lease)
        subjects = {self.subject(*key) for key in _keys(events)}
        if not self._pipeline:
            await self._lease_checked(lease, *check)
        else:
            # What the writes before this one sent (this one's own retries must not skip its
            # events: the positions are read again for them).
            floor = dict(self._sent)
            outcome = await self._write_pipelined(
                lease, events, subjects, check, anchor, flight, floor, before
            )
            if outcome is not _Outcome.STORED:
                flight.diverted = True
            if before is not None:
                await self._after(before)  # in order: what it leaves, then this batch
            if outcome is _Outcome.REFUSED and anchor is not None:
                # Something was written to the stream since this writer's last batch (another
                # channel set sharing the stream, an ex-leader): start a new chain from the
                # subjects' stored positions, read afresh.
                if await self._current(lease) is None:
                    self._forget()
                    raise LeaseLost(f"lease {lease.name!r} was taken over; the stream moved on")
                outcome = await self._write_pipelined(
                    lease, events, subjects, None, None, flight, floor
                )
            if outcome is _Outcome.STORED:
                return _Ended.FAST
            # The chain broke, or its end is uncertain: maybe another writer. Only a current
            # lease may go on, one message at a time from the stored positions.
            if await self._current(lease) is None:
                self._forget()
                raise LeaseLost(f"lease {lease.name!r} was taken over; the stream moved on")
        flight.mark_sent(None)
        batches: dict[str, list[RelayEvent]] = {}
        for event in events:
            batches.setdefault(self.subject(event.org, event.channel), []).append(event)
        stop = asyncio.Event()
        results = await asyncio.gather(
            *(self._write_subject(lease, s, batch, stop) for s, batch in batches.items()),
            return_exceptions=True,
        )
        failures = [result for result in results if isinstance(result, BaseException)]
        for failure in failures:
            if isinstance(failure, LeaseLost):
                self._forget()
                raise failure
        for failure in failures:
            raise failure
        return _Ended.STORED

    async def _after(self, before: _Flight) -> _Ended:
        """Wait for the write ``before`` to end; :class:`SinkError` if it failed (this write
        then writes nothing more: what it would write would follow a gap)."""
        ended = await asyncio.shield(before.done)
        if ended is _Ended.FAILED:
            self._forget()
            raise SinkError(
                "an earlier write failed; nothing more is written until the positions are read "
                "again (position())"
            )
        return ended

    def _settled(self) -> None:
        """The positions are read again: a failed write no longer stops the next ones."""
        if self._flight is not None and self._flight.done.done():
            self._flight = None

    def _start_check(self, lease: Lease) -> tuple[float, asyncio.Future[_LeaseEntry | None]]:
        """Start reading the lease: (the monotonic time of the request, its future)."""
        check = asyncio.ensure_future(self._current(lease))
        check.add_done_callback(_consume)
        return asyncio.get_running_loop().time(), check

    def _lease_check(self, lease: Lease) -> tuple[float, asyncio.Future[_LeaseEntry | None]]:
        """The lease read for the next batch: the one started when the previous batch was
        stored, or a new one. It is awaited (and read again if it is older than
        ``_CHECK_FRESH``) before anything of the batch is sent."""
        ahead, self._next_check = self._next_check, None
        if ahead is not None:
            if ahead[0] == lease:
                return ahead[1], ahead[2]
            ahead[2].cancel()
        return self._start_check(lease)

    async def _lease_checked(
        self, lease: Lease, issued: float, check: asyncio.Future[_LeaseEntry | None]
    ) -> None:
        """Await the lease read ``check`` (sent at ``issued``); :class:`LeaseLost` if ``lease``
        is not current. A read sent more than ``_CHECK_FRESH`` ago is made again."""
        if asyncio.get_running_loop().time() - issued > _CHECK_FRESH:
            check.cancel()
            check = self._start_check(lease)[1]
        try:
            entry = await check
        except asyncio.CancelledError:
            check.cancel()
            raise
        if entry is None:
            self._forget()
            raise LeaseLost(f"lease {lease.name!r} is no longer held by {lease.holder}")

    def _forget(self) -> None:
        """Read every subject afresh before the next write; start a new chain."""
        self._cursors.clear()
        self._sent.clear()
        self._chain = None
        if self._next_check is not None:
            self._next_check[2].cancel()
            self._next_check = None

    async def _write_pipelined(
        self,
        lease: Lease,
        events: Sequence[RelayEvent],
        subjects: set[str],
        check: tuple[float, asyncio.Future[_LeaseEntry | None]] | None,
        chain: _Anchor | None,
        flight: _Flight,
        floor: dict[str, int],
        before: _Flight | None = None,
    ) -> _Outcome:
        """The fast path: publish the whole batch as a chain; STORED if all of it is stored.

        Each message expects, with ``Nats-Expected-Last-Msg-Id``, that the stream's last message
        is the one before it in this batch (the first: ``chain``, the end of this writer's
        previous batch, stored whole or still in flight as ``before``), with
        ``Nats-Expected-Last-Sequence`` that it lands at the sequence this chain planned for it
        (from ``chain``'s sequence, or the stream's last sequence read for a new chain), and
        with ``Nats-Expected-Last-Subject-Sequence`` that its subject's last message is where
        the subject's previous event was planned (for its first: the subject's last sequence as
        read, or as an earlier batch of this term planned it). So a message is stored only
        right after its predecessor, and the first one only after what this writer last saw (a
        batch chained on one in flight only if that one is stored; its own answer is trusted
        only once that one ended stored whole). Anything else writing to the stream (another
        channel set, an ex-leader) breaks the chain: JetStream refuses the rest. Events that
        ``floor`` says a write of this term sent already are left out: JetStream checks nothing
        on a duplicate, nor does it move the last message id for one.

        A message that follows one of its own subject in the chain (in this batch, or the
        last of the batch this one is chained on) carries neither the subject expectation nor
        ``Nats-Expected-Stream``: stored, it was stored right after the message of the id it
        expects, at the sequence it expects, and that id names its subject
        (``<subject>:<replay id>``), so its subject's last message was the one the subject
        expectation would name, in the stream where that one landed, which is this stream (a
        message of these ids lands nowhere else: the first of a chain, and each one after
        another subject's, expects the stream). Each expectation costs JetStream a lookup per
        message, and the subject's costs more: nats-server 2.9 loads the subject's last message
        for it, and a stream whose messages are read keeps its whole write buffer in memory and
        grows it as it writes (about 2.5 µs of the server's CPU per message, measured with one
        such message per batch of 1000 against none).

        Only the last message asks for an acknowledgement: stored (not a duplicate) at the
        planned sequence, it says that the event before it was the stream's last message just
        before, and so on back to the first, so every event of the batch is in the stream, in
        order. An error answer
        (REFUSED), a duplicate, no answer in time, a lost connection or a lease that may expire
        before the batch is sent (UNCERTAIN): the caller reads the subjects' positions afresh.
        The messages are built here as protocol commands and handed to the connection in large
        pieces (:func:`_raw_sender`): one round trip and one acknowledgement for a batch instead
        of one per event, and no per-message work in the client library.
        """
        nc = self._nc
        raw = _raw_sender(nc) if nc is not None else None
        if check is None:
            check = self._lease_check(lease)
        await self._lease_checked(lease, *check)  # before anything is sent
        until = self._check_valid(lease)
        self._chain = None  # unknown until this batch is known to be stored
        if nc is None or not nc.is_connected or raw is None:
            return _Outcome.UNCERTAIN
        send, flush = raw
        prefix = await self._ack_inbox(nc)
        cursors = self._cursors
        # Every message expects its subject's last sequence: a cursor without one is read again.
        for subject in subjects:
            cursor = cursors.get(subject)
            if cursor is not None and cursor.sequence is None:
                del cursors[subject]
        missing = [subject for subject in subjects if subject not in cursors]
        if missing:
            read = await asyncio.gather(*(self._read_cursor(subject) for subject in missing))
            cursors.update(zip(missing, read, strict=True))
        if chain is None:
            # A new chain starts from the stream's last message, read after the positions (a
            # message stored in between makes JetStream refuse the chain).
            chain = await self._stream_end()
        try:
            # This batch's view of the positions (an earlier write may drop them meanwhile)
            mine = {subject: cursors[subject] for subject in subjects}
            subject_last = {subject: mine[subject].sequence or 0 for subject in subjects}
        except KeyError:
            self._forget_batch(subjects)
            return _Outcome.UNCERTAIN  # dropped while they were read: read them again
        loop = asyncio.get_running_loop()
        # The lease read that clears the next batch goes out in front of this one: JetStream
        # answers it before it stores this batch (it is made again if the next batch is late).
        lease_read, next_check = self._lease_read(lease)
        issued = loop.time()
        # Not above what the subject holds, nor what a write of this term sent already: an
        # event delivered again must not be in a chain twice (JetStream does not check a
        # duplicate, nor does it move the stream's last message id: the message after it would
        # be checked against another message of that id).
        last_id = {
            subject: _highest(cursor.replay_id, floor.get(subject))
            for subject, cursor in mine.items()
        }
        planned = 0
        plain = _plain(events)  # no date or uuid needs _header_value: no check per event
        parts: list[bytes] = [lease_read]
        append = parts.append
        # Every piece of a header is printable ASCII (subjects, ids, _header_value), so a
        # string's length is its length in bytes. The pieces that do not change from one
        # message to the next are made once: for all, and per (org, channel).
        common = f"NATS/1.0\r\n{EXPECTED_STREAM}: {self._stream}\r\n{MSG_ID_HEADER}: "
        after = f"NATS/1.0\r\n{MSG_ID_HEADER}: "  # for a message after one of its subject
        replay_line = f"\r\n{REPLAY_ID_HEADER}: "
        sequence_line = f"\r\n{EXPECTED_LAST_SEQUENCE}: "
        subject_line = f"\r\n{EXPECTED_LAST_SUBJECT_SEQUENCE}: "
        id_line = f"\r\n{EXPECTED_LAST_MSG_ID}: "
        uuid_line = f"\r\n{EVENT_UUID_HEADER}: "
        described: dict[tuple[str, str], tuple[str, str, str, str, str]] = {}
        first = dict(subject_last)
        # The id of the message before the next one ("": none), its subject if this writer sent
        # it in this chain, and the stream's last sequence, as this chain plans them.
        previous, at, previous_subject = chain
        chunk = _CHUNK
        limit = nc.max_payload
        ack: asyncio.Future[tuple[int, bool]] | None = None
        # A run (see _run_commands) whose first event goes out (not already sent): that event
        # as any other, the rest column by column.
        run = False
        if plain and _is_run(events, chunk):
            stored = last_id[self.subject(events.org, events.channels[0])]
            run = stored is None or events.replay_ids[0] > stored
        try:
            rows = _rows(events)
            for org, channel, replay_id, date, payload, uuid in islice(rows, 1) if run else rows:
                key = (org, channel)
                fixed = described.get(key)
                if fixed is None:
                    subject = self.subject(*key)
                    fixed = described[key] = (
                        subject,
                        f"HPUB {subject} ",
                        f"{common}{subject}:",
                        f"{after}{subject}:",
                        f"\r\n{DATE_HEADER}: ",
                    )
                subject, command, head, head_after, middle = fixed
                stored = last_id[subject]
                if stored is not None and replay_id <= stored:
                    continue  # counted as skipped below, or by the careful path
                if len(parts) >= chunk:
                    # All but the last message so far (it may be the batch's last, which gets
                    # a reply subject): JetStream starts storing while the rest is built.
                    if self._must_stop(nc, until, before):
                        self._forget_batch(subjects)
                        return _Outcome.UNCERTAIN  # the careful path says why
                    await send(b"".join(parts[:-3]))
                    await flush()
                    del parts[:-3]
                    await asyncio.sleep(0)  # nats-py's flusher writes it out
                last_id[subject] = replay_id
                if not plain:
                    date = _header_value(date).strip()
                    if uuid:
                        uuid = _header_value(uuid).strip()
                # Where JetStream stores it if the chain holds: right after the message before
                # it, at the next sequence, and right after the last message of its subject.
                # Right after a message of its own subject, the chain implies the subject's
                # last message and the stream (see above): neither is expected again.
                chained = subject == previous_subject
                header = (
                    f"{head_after if chained else head}{replay_id}{replay_line}{replay_id}"
                    f"{middle}{date}{sequence_line}{at}"
                    f"{'' if chained else f'{subject_line}{subject_last[subject]}'}"
                    f"{id_line if previous else ''}{previous}"
                    f"{uuid_line if uuid else ''}{uuid or ''}\r\n\r\n"
                )
                at += 1
                subject_last[subject] = at
                size = len(header)
                total = size + len(payload)
                if total > limit:
                    self._forget_batch(subjects)
                    raise EventRefused(
                        f"an event of {subject} (replay id {replay_id}) is {len(payload)} bytes "
                        f"long: more than the NATS server takes in a message ({limit} bytes)"
                    )
                append(f"{command}{size} {total}\r\n{header}".encode())
                append(payload)
                append(b"\r\n")
                previous = f"{subject}:{replay_id}"
                previous_subject = subject
                planned += 1
            if run and planned:
                assert isinstance(events, RelayBatch)
                assert fixed is not None
                ids = events.replay_ids
                commands, too_large = _run_commands(
                    fixed,
                    (replay_line, sequence_line, id_line, uuid_line),
                    events,
                    at,
                    limit,
                )
                if too_large is not None:
                    self._forget_batch(subjects)
                    raise EventRefused(
                        f"an event of {subject} (replay id {ids[too_large]}) is "
                        f"{len(events.payloads[too_large])} bytes long: more than the NATS server "
                        f"takes in a message ({limit} bytes)"
                    )
                parts += commands
                planned += len(ids) - 1
                at += len(ids) - 1
                subject_last[subject] = at
                last_id[subject] = ids[-1]
                previous = f"{subject}:{ids[-1]}"
            started = [subject for subject, seq in subject_last.items() if seq != first[subject]]
            sent = self._sent
            for subject in started:
                highest = last_id[subject]  # an event's replay id: it was planned
                if highest is not None:
                    sent[subject] = _highest(sent.get(subject), highest)  # type: ignore[assignment]
            if not planned:
                self._chain = chain  # nothing written: the stream's end is still that one
                self._skipped(len(events), len(events))
                await send(lease_read)  # the next batch's lease read, on its own
                await flush()
                self._next_check = (lease, issued, next_check)
                # The stream's end is still the chain's, but a write chained on one in flight
                # waits for this one's end: that one may yet be diverted.
                flight.mark_sent(chain if before is None else None)
                return _Outcome.STORED
            # The last message asks for an answer: its HPUB line gets a reply subject.
            self._ack_counter += 1
            token = str(self._ack_counter)
            ack = loop.create_future()
            self._acks[token] = ack
            ack.add_done_callback(functools.partial(self._forget_ack, token))
            hpub, subject_name, rest = parts[-3].split(b" ", 2)
            parts[-3] = b" ".join((hpub, subject_name, f"{prefix}.{token}".encode(), rest))
            if self._must_stop(nc, until, before):
                ack.cancel()
                self._forget_batch(subjects)
                return _Outcome.UNCERTAIN
            # No await between that check and the messages joining the connection's queue.
            await send(b"".join(parts))
            await flush()
            self._next_check = (lease, issued, next_check)
            # Where JetStream stores these if the chain holds: a batch made before the answer
            # expects them (and is refused with this one otherwise).
            for subject in started:
                cursor = cursors.get(subject)
                if cursor is not None:
                    cursor.sequence = subject_last[subject]
            flight.mark_sent((previous or "", at, previous_subject))
        except (nats.errors.Error, OSError) as exc:
            flight.diverted = True
            logger.debug("pipelined write of %d events not sent whole (%r)", planned, exc)
            if ack is not None:
                ack.cancel()  # forgotten: no answer is awaited
            self._forget_batch(subjects)
            return _Outcome.UNCERTAIN
        except BaseException:
            flight.diverted = True
            if ack is not None:
                ack.cancel()
            raise
        finally:
            if self._next_check is None or self._next_check[2] is not next_check:
                next_check.cancel()  # its request never went out
        assert ack is not None
        try:
            sequence, duplicate = await _answer(ack, self._request_timeout)
        except (TimeoutError, nats.errors.Error, OSError, SinkError) as exc:
            flight.diverted = True  # before anything else: nothing more goes out chained on it
            if before is not None:
                await self._after(before)  # its outcome first (raises if it failed)
            refused = isinstance(exc, nats.js.errors.APIError) and exc.err_code in _CHAIN_BROKEN
            logger.debug(
                "pipelined write of %d events %s (%r); going on from the stored positions",
                planned,
                "refused" if refused else "unconfirmed",
                getattr(exc, "description", None) or exc,
            )
            self.stats.conflicts += 1
            self._forget_batch(subjects)
            return _Outcome.REFUSED if refused else _Outcome.UNCERTAIN
        if duplicate:
            flight.diverted = True
        if before is not None and await self._after(before) is not _Ended.FAST:
            # Stored after a batch that was written (partly) one by one: the positions that
            # batch left are not known here.
            self._forget_batch(subjects)
            return _Outcome.UNCERTAIN
        if duplicate or sequence != at:
            # Stored already by someone (an ex-leader, a new leader, an earlier attempt): what
            # came before it in this batch is not known.
            self.stats.duplicates += 1
            self._forget_batch(subjects)
            return _Outcome.UNCERTAIN
        self.stats.written += planned
        self._skipped(len(events) - planned, len(events))
        # With no write begun after this one, its end is the stream's: the next batch can
        # expect it. Otherwise the writes after it set (or clear) the chain.
        latest = self._flight is flight
        for subject in started:
            cursor = cursors.get(subject)
            if cursor is None:
                continue  # read afresh before its next write
            cursor.replay_id = last_id[subject]
            # (its sequence was set to the planned one when the batch was sent; a batch sent
            # since may have moved it further)
        self._chain = (previous or "", sequence, previous_subject) if latest else None
        return _Outcome.STORED

    def _skipped(self, count: int, total: int) -> None:
        """Count events of a write left out, and say so: never in a relay's usual course (a
        term subscribes after the stored positions), they are either stored already (a write
        gone on one by one after its batch was partly stored, an event delivered again) or
        lost because Salesforce's replay ids went back, which the positions cannot tell
        apart."""
        if count:
            self.stats.skipped += count
            logger.warning(
                "%s: %d of %d events were not written: their replay ids are not above their "
                "subject's position in JetStream (already stored, or Salesforce's replay ids "
                "went back: a refreshed sandbox, a migrated org)",
                self._stream,
                count,
                total,
            )

    def _must_stop(self, nc: NatsClient, until: float, before: _Flight | None) -> bool:
        """Whether the rest of a pipelined batch must not be sent: the lease may expire, the
        batch it is chained on went another way, or the connection is down (queued, it would go
        out whenever nats-py reconnects)."""
        if not nc.is_connected:
            self.stats.conflicts += 1  # unconfirmed: the positions are read again
            return True
        return asyncio.get_running_loop().time() >= until or (
            before is not None and before.diverted
        )

    def _forget_batch(self, subjects: set[str]) -> None:
        """Read the positions of the batch's subjects afresh before writing them again."""
        for subject in subjects:
            self._cursors.pop(subject, None)

    async def _ack_inbox(self, nc: NatsClient) -> str:
        """The prefix of the reply subjects of pipelined publishes (one subscription)."""
        if self._ack_prefix is None:
            prefix = nc.new_inbox()
            await nc.subscribe(f"{prefix}.*", cb=self._on_ack)
            self._ack_prefix = prefix
        return self._ack_prefix

    async def _on_ack(self, message: Msg) -> None:
        """JetStream's answer to a pipelined publish or a lease read: resolve its future."""
        token = message.subject.rpartition(".")[2]
        read = self._reads.get(token)
        if read is not None:
            if not read.done():
                read.set_result(message.data)
            return
        ack = self._acks.get(token)
        if ack is None or ack.done():
            return
        if message.headers and message.headers.get("Status") == "503":
            ack.set_exception(nats.errors.NoRespondersError())
            return
        try:
            answer = json.loads(message.data)
            error = answer.get("error")
            if error:
                ack.set_exception(
                    nats.js.errors.APIError(
                        code=error.get("code"),
                        err_code=error.get("err_code"),
                        description=error.get("description"),
                    )
                )
            else:
                ack.set_result((int(answer["seq"]), bool(answer.get("duplicate"))))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            ack.set_exception(SinkError(f"unreadable JetStream acknowledgement: {exc}"))

    def _forget_ack(self, token: str, ack: asyncio.Future[tuple[int, bool]]) -> None:
        self._acks.pop(token, None)
        if not ack.cancelled():
            ack.exception()  # retrieved: an abandoned batch leaves no "never retrieved" noise

    async def _write_subject(
        self, lease: Lease, subject: str, events: list[RelayEvent], stop: asyncio.Event
    ) -> None:
        """Publish ``events`` of one subject one after the other (each expects the previous)."""
        skipped = 0
        try:
            cursor = self._cursors.get(subject)
            if cursor is None or cursor.sequence is None:
                cursor = await self._read_cursor(subject)
            else:
                # Its own copy until it is done: a later write changes the shared one when it
                # sends (those sent before this write was diverted).
                cursor = _Cursor(cursor.sequence, cursor.replay_id)
            for event in events:
                if stop.is_set():
                    return
                if cursor.replay_id is not None and event.replay_id <= cursor.replay_id:
                    skipped += 1
                    continue
                await self._publish(lease, subject, event, cursor)
            self._cursors[subject] = cursor
        except BaseException:
            stop.set()
            self._cursors.pop(subject, None)
            raise
        finally:
            self._skipped(skipped, len(events))

    async def _publish(
        self, lease: Lease, subject: str, event: RelayEvent, cursor: _Cursor
    ) -> None:
        """Store ``event`` after the message ``cursor`` points at; advance ``cursor``."""
        js = self._jetstream()
        headers = {
            MSG_ID_HEADER: f"{subject}:{event.replay_id}",
            REPLAY_ID_HEADER: str(event.replay_id),
            DATE_HEADER: _header_value(event.date),
        }
        if event.event_uuid:
            headers[EVENT_UUID_HEADER] = _header_value(event.event_uuid)
        while True:
            headers[EXPECTED_LAST_SUBJECT_SEQUENCE] = str(cursor.sequence)
            until = self._check_valid(lease)
            try:
                ack = await self._retrying(
                    f"publish to {subject}",
                    lambda: js.publish(
                        subject, event.payload, headers=dict(headers), stream=self._stream
                    ),
                    until,
                )
            except nats.js.errors.APIError as error:
                if error.err_code not in _WRONG_LAST_SEQUENCE:
                    raise SinkError(
                        f"JetStream refused an event for {subject}: {error.description}"
                    ) from None
            else:
                if ack.duplicate:
                    # The message id is stored already: by this sink's own earlier attempt whose
                    # ack was lost, or by another writer. Only a current lease may go on.
                    self.stats.duplicates += 1
                    if await self._current(lease) is None:
                        raise LeaseLost(f"lease {lease.name!r} was taken over; {subject} moved on")
                else:
                    self.stats.written += 1
                cursor.sequence, cursor.replay_id = ack.seq, event.replay_id
                known = self._sent.get(subject)
                self._sent[subject] = (
                    event.replay_id if known is None else max(known, event.replay_id)
                )
                return
            # Someone else wrote to the subject since this writer last looked at it.
            self.stats.conflicts += 1
            if await self._current(lease) is None:
                raise LeaseLost(f"lease {lease.name!r} was taken over; {subject} has a new writer")
            latest = await self._read_cursor(subject)
            logger.warning(
                "%s changed under lease %r (another writer, sequence %s, replay id %s)",
                subject,
                lease.name,
                latest.sequence,
                latest.replay_id,
            )
            cursor.sequence, cursor.replay_id = latest.sequence, latest.replay_id
            if cursor.replay_id is not None and event.replay_id <= cursor.replay_id:
                self.stats.skipped += 1
                return


# -- helpers ----------------------------------------------------------------------------------


async def _isolated(call: Callable[[], Awaitable[T]], limit: float) -> T:
    """Await ``call()`` in a task of its own; :class:`_Abandoned` after ``limit`` seconds.

    Giving up cancels that task, never the caller's, and a ``CancelledError`` that escapes
    the client library's own timers (seen with a tracer on Python 3.11) ends the helper task
    only: it counts as "no answer" here and is retried like a timeout.
    """

    async def run() -> T:
        return await call()

    task = asyncio.ensure_future(run())
    task.add_done_callback(_consume)
    try:
        done, _ = await asyncio.wait({task}, timeout=limit)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        raise _Abandoned("no answer in time")
    if task.cancelled():
        raise _Abandoned("cancelled inside the client library")
    return task.result()


async def _answer(future: asyncio.Future[T], limit: float) -> T:
    """The result of ``future`` (a reply nobody else awaits), waiting ``limit`` seconds at
    most (:class:`TimeoutError`, and the future is given up). Unlike ``asyncio.timeout``, the
    caller's own cancellation state plays no part: only a cancellation of the caller cancels."""
    try:
        await asyncio.wait({future}, timeout=limit)
    except asyncio.CancelledError:
        future.cancel()
        raise
    if not future.done():
        future.cancel()
        raise TimeoutError("no answer in time")
    if future.cancelled():
        raise TimeoutError("the answer was given up")
    return future.result()


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a request task that may have been given up (no log noise)."""
    if not task.cancelled():
        task.exception()


def _raw_sender(
    nc: NatsClient,
) -> tuple[Callable[[bytes], Awaitable[None]], Callable[[], Awaitable[Any]]] | None:
    """nats-py's raw command queue and its flush (``None`` if this nats-py has none).

    Pipelined batches are built as protocol commands and handed to the connection in a few
    large pieces, in order with the client's own commands (and kept across a reconnection like
    them): nats-py's ``publish()`` costs several microseconds per message in header encoding
    and awaits. Without them the sink writes one message at a time with the public API.
    """
    send = getattr(nc, "_send_command", None)
    flush = getattr(nc, "_flush_pending", None)
    if not callable(send) or not callable(flush):
        return None
    return send, flush


def _lease_entry(
    name: str, revision: int, operation: str | None, data: bytes
) -> tuple[int, _LeaseEntry | None]:
    """``(revision, entry)`` of a lease key's last message (``None`` when deleted or released)."""
    if operation in ("DEL", "PURGE"):
        return revision, None
    try:
        value = json.loads(data)
        holder = str(value["holder"])
        token = value.get("token")
        ttl = float(value["ttl"])
    except (ValueError, KeyError, TypeError):
        logger.warning("lease %r holds an unreadable value; treating it as free", name)
        return revision, None
    # The acquiring write cannot know its own revision: it stores no token, and the token of
    # that lease is the revision of that write. Renewals store it explicitly.
    return revision, _LeaseEntry(revision, holder, int(token or revision), ttl)


def _holds(lease: Lease, entry: _LeaseEntry | None) -> bool:
    """Whether ``entry`` (a lease key's content) is ``lease``: still its holder's."""
    return entry is not None and entry.token == lease.token and entry.holder == lease.holder


def _headers(message: RawStreamMsg) -> dict[str, str]:
    """The message's headers with lower-case names."""
    raw: dict[str, Any] = message.headers or {}
    return {str(key).lower(): str(value) for key, value in raw.items()}


def _replay_id_of(message: RawStreamMsg) -> int | None:
    value = _headers(message).get(REPLAY_ID_HEADER.lower())
    if value is None:
        raise SinkError(
            f"the last message of {message.subject} (sequence {message.seq}) has no "
            f"{REPLAY_ID_HEADER} header: something other than the relay writes to that subject"
        )
    try:
        return int(value)
    except ValueError:
        raise SinkError(f"{message.subject}: invalid {REPLAY_ID_HEADER} {value!r}") from None


def _parse_url(url: str) -> tuple[list[str], dict[str, str]]:
    """The server URLs of ``url`` (comma-separated) and the options of its query string."""
    servers: list[str] = []
    options: dict[str, str] = {}
    for part in url.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            split = urlsplit(part)
            _ = split.port
        except ValueError:
            raise SinkError(f"invalid NATS URL {_redact(part)!r}") from None
        if split.scheme not in ("nats", "tls") or not split.hostname:
            raise SinkError(f"not a NATS URL (nats://host:port): {_redact(part)!r}")
        for key, values in parse_qs(split.query).items():
            if key not in ("stream", "bucket", "prefix", "replicas", "creds"):
                raise SinkError(f"unknown NATS sink option {key!r} in the URL")
            options[key] = values[-1]
        servers.append(urlunsplit((split.scheme, split.netloc, "", "", "")))
    if not servers:
        raise SinkError("no NATS server URL given (nats://host:port)")
    return servers, options


def _redact(url: str) -> str:
    """``url`` without a password or token in its user part."""
    try:
        split = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if "@" not in split.netloc:
        return url
    host = split.netloc.rsplit("@", 1)[1]
    return urlunsplit((split.scheme, f"***@{host}", split.path, split.query, split.fragment))
