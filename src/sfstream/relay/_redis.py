"""The Redis Streams sink: one stream per channel, the position and the lease next to it.

Keys of one channel set share the hash tag ``{<set>}`` so that they live in one slot of a
Redis Cluster and one script can touch them all::

    sfstream:{orders}:lease              "<token> <holder>", with a TTL (SET NX PX)
    sfstream:{orders}:fence              the fencing token counter (INCR)
    sfstream:{orders}:positions          hash: channel -> replay id of the last entry written
    sfstream:{orders}:/event/Order__e    the stream of one channel (XADD)

Each stream entry has the fields ``replay_id``, ``channel``, ``event`` (the Bayeux message as
received, JSON), ``date`` and, for platform events and CDC, ``event_uuid``.

:meth:`RedisSink.write` runs one script per batch (the batch's events in five arguments: their
lengths, replay ids, dates, uuids and events, each column in one argument). The script checks
the lease value (token and holder), checks that no channel's position went backwards behind the
relay's back (a failover that lost acknowledged writes), appends the entries whose replay id is
above the channel's position and advances the positions. What could make a command of it fail
half-way (a stream key holding another type, a position that is not a number) is checked before
its first write, since Redis keeps what a failed script wrote. Redis runs a script atomically, so
entries and positions are written together or not at all, also when a master fails over and
asynchronous replication loses the latest writes: they are lost together, and the relay
resubscribes from the surviving position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, repeat
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit, urlunsplit

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
from sfstream.salesforce import channel_key

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster
    from redis.asyncio.connection import AbstractConnection

__all__ = ["RedisSink", "stream_key"]

logger = logging.getLogger(__name__)

#: The prefix of every key unless told otherwise.
DEFAULT_PREFIX: Final = "sfstream"
#: Writes in flight at once on a single Redis server: while Redis appends batches, the relay
#: receives and converts the next ones (also while it decodes a large Salesforce response).
DEFAULT_PIPELINE_DEPTH: Final = 8
#: Bytes of events in one script at most: a larger batch takes several scripts, in order (far
#: below Redis's 512 MB limit of one argument, ``proto-max-bulk-len``).
MAX_SCRIPT_BYTES: Final = 32 * 1024 * 1024
#: Bytes of events sent and not yet answered at most (a write waits for room, in order),
#: whatever ``pipeline_depth``: bounds the memory the pipeline takes in the relay and in Redis.
MAX_IN_FLIGHT_BYTES: Final = 64 * 1024 * 1024

_ACQUIRE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
return token
"""

_RENEW: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_RELEASE: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: lease, positions, stream 1..c.  ARGV: lease value, maxlen (0: none), number of
# expectations m, m x (channel, expected position), number of channels c, the c channels, then
# five values for the whole batch: the heads, four little-endian 32-bit numbers per event
# (channel index 1..c, bytes of its date, of its event uuid, of its event), the replay ids
# (decimal, separated by spaces), then the dates, the event uuids (empty when none) and the
# events (message JSON), each column's values one after the other. Five values instead of two
# per event: the client and Redis handle a dozen arguments per batch instead of thousands, the
# client builds them column by column (no Python code per event), and nothing needs escaping.
_WRITE: Final = """
local lease = redis.call('GET', KEYS[1])
if lease ~= ARGV[1] then
  return redis.error_reply('SFSTREAM_LEASE held by ' .. tostring(lease))
end
local maxlen, cap = tonumber(ARGV[2]), ARGV[2]  -- (a large Lua number goes out as 1e17)
local m = tonumber(ARGV[3])
local last, text = {}, {}
for i = 0, m - 1 do
  local ch = ARGV[4 + 2 * i]
  local expected = tonumber(ARGV[5 + 2 * i])
  local stored = tonumber(redis.call('HGET', KEYS[2], ch) or '-1')
  if stored == nil then
    return redis.error_reply('SFSTREAM_POSITION ' .. ch .. ' ' .. redis.call('HGET', KEYS[2], ch))
  end
  if stored < expected then
    return redis.error_reply('SFSTREAM_BEHIND ' .. ch .. ' ' .. stored .. ' ' .. expected)
  end
end
local base = 4 + 2 * m
local c = tonumber(ARGV[base])
-- Redis keeps what a script wrote before a command of it failed: everything that could make
-- a command fail is checked here, before the first write.
for j = 1, c do
  local stored = redis.call('HGET', KEYS[2], ARGV[base + j])
  last[j] = tonumber(stored or '-1')
  if last[j] == nil then
    return redis.error_reply('SFSTREAM_POSITION ' .. ARGV[base + j] .. ' ' .. stored)
  end
  local kind = redis.call('TYPE', KEYS[2 + j])['ok']
  if kind ~= 'stream' and kind ~= 'none' then
    return redis.error_reply('SFSTREAM_TYPE ' .. KEYS[2 + j] .. ' ' .. kind)
  end
end
local heads, ids = ARGV[base + c + 1], ARGV[base + c + 2]
local dates, uuids, events = ARGV[base + c + 3], ARGV[base + c + 4], ARGV[base + c + 5]
local sub, call, unpack = string.sub, redis.call, struct.unpack
local next_id = string.gmatch(ids, '%S+')
local at, d, u, e, written = 1, 1, 1, 1, 0
for _ = 1, #heads / 16 do
  local j, dn, un, en
  j, dn, un, en, at = unpack('<I4I4I4I4', heads, at)
  local rid = next_id()
  local id = tonumber(rid)
  local d2, u2, e2 = d + dn, u + un, e + en
  if id > last[j] then
    local key, ch = KEYS[2 + j], ARGV[base + j]
    local date, event = sub(dates, d, d2 - 1), sub(events, e, e2 - 1)
    if u2 > u then
      local uuid = sub(uuids, u, u2 - 1)
      if maxlen > 0 then
        call('XADD', key, 'MAXLEN', '~', cap, '*', 'replay_id', rid, 'channel', ch,
             'date', date, 'event', event, 'event_uuid', uuid)
      else
        call('XADD', key, '*', 'replay_id', rid, 'channel', ch, 'date', date,
             'event', event, 'event_uuid', uuid)
      end
    elseif maxlen > 0 then
      call('XADD', key, 'MAXLEN', '~', cap, '*', 'replay_id', rid, 'channel', ch,
           'date', date, 'event', event)
    else
      call('XADD', key, '*', 'replay_id', rid, 'channel', ch, 'date', date, 'event', event)
    end
    last[j] = id
    text[j] = rid
    written = written + 1
  end
  d, u, e = d2, u2, e2
end
for j, rid in pairs(text) do
  call('HSET', KEYS[2], ARGV[base + j], rid)
end
return written
"""


#: One write script: its keys, its arguments but the last, and the last (the events' JSON).
_Script = tuple[list[str], list[Any], bytes]


def stream_key(channel_set: str, channel: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The stream of ``channel`` in ``channel_set``: ``sfstream:{orders}:/event/Order__e``.

    A PushTopic filter (``?Type=X``) is not part of the key.
    """
    return f"{prefix}:{{{channel_set}}}:{channel_key(channel)}"


def _command(args: Sequence[str | bytes | int], last: Sequence[bytes]) -> list[bytes]:
    """The request ``args`` and then the concatenation of ``last``, in the Redis protocol: as
    chunks to send one after the other, with no copy of the large ``last`` (the client
    library's packer copies every request into a buffer of its own, page by new page)."""
    chunks = [b"*%d\r\n" % (len(args) + 1)]
    append = chunks.append
    for arg in args:
        value = (
            arg.encode() if isinstance(arg, str) else b"%d" % arg if isinstance(arg, int) else arg
        )
        append(b"$%d\r\n" % len(value))
        append(value)
        append(b"\r\n")
    append(b"$%d\r\n" % sum(map(len, last)))
    chunks += last
    append(b"\r\n")
    return chunks


def _column(values: list[str]) -> tuple[bytes, Iterable[int]]:
    """``values`` one after the other (UTF-8), and the length in bytes of each."""
    text = "".join(values)
    if text.isascii():  # the usual case: one byte per character
        return text.encode(), map(len, values)
    encoded = [value.encode() for value in values]
    return b"".join(encoded), map(len, encoded)


def _redact(url: str) -> str:
    """``url`` without its password, in the user part or as ``?password=`` (for messages and
    logs); never raises, also for a URL that is not valid."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        user = userinfo.partition(":")[0]
        netloc = f"{user}:***@{hostport}" if user else f"***@{hostport}"
    query = "&".join(
        f"{pair.partition('=')[0]}=***"
        if unquote(pair.partition("=")[0]).strip().lower() == "password"
        else pair
        for pair in parts.query.split("&")
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _check_url(url: str, cluster: bool) -> None:
    """Refuse, with a clear message, a port or database the client library would fail on
    deep inside, or ignore (``/x`` silently meant database 0)."""
    parts = urlsplit(url)
    if "," in parts.netloc:
        raise InvalidArgumentError(
            f"one host in a Redis URL, not a list ({_redact(url)!r}): for a Redis Cluster, "
            "redis+cluster://host:port of any node (the others are discovered)"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError when not a port number
    except ValueError:
        raise InvalidArgumentError(
            f"invalid port in the Redis URL {_redact(url)!r} (a number from 1 to 65535)"
        ) from None
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise InvalidArgumentError(
            f"invalid database {database!r} in the Redis URL {_redact(url)!r} "
            "(redis://host:port/NUMBER)"
        )
    if cluster and database not in ("", "0"):
        raise InvalidArgumentError(
            f"a Redis Cluster has database 0 only, not {database} ({_redact(url)!r})"
        )


class RedisSink(Sink):
    """Write a channel set's events into Redis Streams.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://`` for TLS, or
            ``redis+cluster://host:port`` (``rediss+cluster://``) for a Redis Cluster (any
            node; the others are discovered).
        channel_set: the channel set this sink serves; the hash tag of all its keys and the
            only lease name it accepts.
        prefix: the first part of every key.
        maxlen: trim each stream to about this many entries (``XADD MAXLEN ~``); None keeps
            everything (trim with ``XTRIM MINID`` once workers are done).
        timeout: seconds for connecting and for each command.
        pipeline_depth: writes that may be in flight at once (:attr:`Sink.pipeline_depth`). A
            single Redis server takes them on one connection of their own, where they are
            applied in order, and each requires the positions the writes before it leave, so
            that a write after a failed one writes nothing. A Redis Cluster takes one at a time.
    """

    kind = "redis"
    takes_batches = True

    def __init__(
        self,
        url: str,
        *,
        channel_set: str,
        prefix: str = DEFAULT_PREFIX,
        maxlen: int | None = None,
        timeout: float = 5.0,
        pipeline_depth: int = DEFAULT_PIPELINE_DEPTH,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"redis", "rediss", "redis+cluster", "rediss+cluster"}:
            raise InvalidArgumentError(
                f"not a Redis URL: {_redact(url)!r} (redis://, rediss://, redis+cluster://)"
            )
        _check_url(url, parts.scheme.endswith("+cluster"))
        if not channel_set or any(c in channel_set for c in "{}"):
            raise InvalidArgumentError(f"invalid channel set name {channel_set!r}")
        if maxlen is not None and not 1 <= maxlen < 2**63:  # (Redis refuses a larger one)
            raise InvalidArgumentError("maxlen must be positive, below 2**63")
        if pipeline_depth < 1:
            raise InvalidArgumentError("pipeline_depth must be positive")
        self.url = url
        self.cluster = parts.scheme.endswith("+cluster")
        self.channel_set = channel_set
        self.prefix = prefix
        self.maxlen = maxlen
        self.timeout = timeout
        self.pipeline_depth = 1 if self.cluster else pipeline_depth
        self._redis: Redis | RedisCluster | None = None
        self._shas: dict[str, str] = {}
        # The position this sink last read, or that its writes sent so far leave, per channel:
        # a stored position below it means that the engine lost writes (a failover) or that an
        # earlier write failed, and the relay must start over from the engine's position.
        self._expected: dict[str, int] = {}
        # The writes' own connection (a single server): requests go out in call order under
        # _sending, and each write reads its reply once the one before it has read its own.
        self._writer: AbstractConnection | None = None
        self._sending = asyncio.Lock()
        self._replied: asyncio.Future[tuple[AbstractConnection | None, bool]] | None = None
        self._in_flight = 0  # bytes of events sent and not yet answered
        self._room = asyncio.Event()  # set when a reply frees room
        tag = f"{prefix}:{{{channel_set}}}"
        self.lease_key = f"{tag}:lease"
        self.fence_key = f"{tag}:fence"
        self.positions_key = f"{tag}:positions"

    def __repr__(self) -> str:
        return f"<RedisSink {_redact(self.url)} set={self.channel_set!r}>"

    def stream_key(self, channel: str) -> str:
        """The stream that holds ``channel``'s events."""
        return stream_key(self.channel_set, channel, self.prefix)

    # -- connection --------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:  # pragma: no cover - depends on the environment
            raise SinkError(
                "the Redis sink needs the redis package: "
                "pip install '.[redis]' in the sfstream checkout"
            ) from None
        options: dict[str, Any] = {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "decode_responses": False,
        }
        try:
            if self.cluster:
                url = self.url.replace("+cluster", "", 1)
                self._redis = aioredis.RedisCluster.from_url(url, **options)
            else:
                self._redis = aioredis.Redis.from_url(self.url, **options)
            await self._redis.ping()
        except Exception as exc:
            await self.close()
            raise SinkError(
                f"cannot reach Redis at {_redact(self.url)}: {type(exc).__name__}: {exc}"
            ) from None

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                await writer.disconnect()
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()

    def _conn(self) -> Redis | RedisCluster:
        if self._redis is None:
            raise SinkError("the Redis sink is not open")
        return self._redis

    async def _script(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        from redis.exceptions import NoScriptError, RedisError

        redis = self._conn()
        sha = self._shas.get(script)
        try:
            if sha is not None:
                try:
                    return await redis.evalsha(sha, len(keys), *keys, *args)
                except NoScriptError:
                    pass
            result = await redis.eval(script, len(keys), *keys, *args)
            if sha is None:
                import hashlib

                self._shas[script] = hashlib.sha1(
                    script.encode(), usedforsecurity=False
                ).hexdigest()
            return result
        except (RedisError, OSError) as exc:
            raise self._error(exc) from None

    def _error(self, exc: BaseException) -> SinkError:
        """The :class:`SinkError` (or :class:`LeaseLost`) that says what ``exc`` means."""
        from redis.exceptions import ResponseError

        if isinstance(exc, ResponseError):
            text = str(exc)
            if text.startswith("SFSTREAM_LEASE"):
                return LeaseLost(f"the lease of {self.channel_set!r} is {text[15:]}")
            if text.startswith("SFSTREAM_TYPE"):
                _, key, kind = text.rsplit(" ", 2)
                return EventRefused(
                    f"the Redis key {key} holds a {kind}, not a stream: nothing was written; "
                    "delete or rename that key (or relay the set under another name or prefix)"
                )
            if text.startswith("SFSTREAM_POSITION"):
                _, channel, stored = text.split(" ", 2)
                return SinkError(
                    f"the position of {channel} in Redis ({self.positions_key}) is {stored!r}, "
                    "not a replay id: nothing was written"
                )
            if text.startswith("SFSTREAM_BEHIND"):
                _, channel, stored, expected = text.rsplit(" ", 3)
                return SinkError(
                    f"the position of {channel} in Redis is {stored}, below {expected} that "
                    "this relay read or wrote before (a failover lost writes, or an earlier "
                    "write failed): resubscribe from the engine's position"
                )
            return SinkError(f"Redis refused a script: {text}")
        return SinkError(f"Redis failed: {type(exc).__name__}: {exc}")

    async def _write_in_order(self, scripts: Sequence[_Script]) -> int:
        """Run the write script once per entry of ``scripts`` (keys, arguments, and the events'
        JSON, sent as it is) on the writes' own connection, pipelined: all of them sent at
        once, in call order, before any later write; replies read in call order (a write waits
        for the replies of the one before it). Returns the number of entries written."""
        from redis.asyncio import RedisCluster
        from redis.exceptions import RedisError, ResponseError

        # Set when this write is done: its connection, and whether its replies were all read
        # (the connection is still in step), for the write after it.
        mine: asyncio.Future[tuple[AbstractConnection | None, bool]]
        mine = asyncio.get_running_loop().create_future()
        aligned = False
        conn: AbstractConnection | None = None
        size = sum(len(payloads) for _keys, _head, payloads in scripts)
        counted = False
        try:
            async with self._sending:
                # Room for this write (it goes first: later writes wait for the lock).
                while self._in_flight and self._in_flight + size > MAX_IN_FLIGHT_BYTES:
                    self._room.clear()
                    await self._room.wait()
                self._in_flight += size
                counted = True
                previous, self._replied = self._replied, mine
                conn = self._writer
                if conn is None:
                    redis = self._conn()
                    assert not isinstance(redis, RedisCluster)  # a cluster takes _script()
                    pool = redis.connection_pool
                    conn = self._writer = pool.connection_class(**pool.connection_kwargs)
                for keys, head, payloads in scripts:
                    # EVAL (not EVALSHA): a script cache flushed meanwhile cannot fail the
                    # writes already sent; Redis compiles the script once, finds it by hash.
                    command = _command(("EVAL", _WRITE, len(keys), *keys, *head), [payloads])
                    await conn.send_packed_command(command, check_health=False)
            if previous is not None:
                before, in_step = await asyncio.shield(previous)
                if before is conn and not in_step:
                    # Its reply was not read: the next reply on the connection is its own.
                    raise SinkError(
                        "an earlier write failed on the same connection: resubscribe from the "
                        "engine's position"
                    )
            refused: ResponseError | None = None
            written = 0
            for _ in scripts:
                try:
                    written += int(await conn.read_response())
                except ResponseError as exc:
                    # The scripts after it fail too (each requires the positions the ones
                    # before it leave); their replies are read, so the connection stays in step.
                    refused = refused or exc
            aligned = True
            if refused is not None:
                raise self._error(refused) from None
            return written
        except (RedisError, OSError) as exc:
            raise self._error(exc) from None
        finally:
            # Everything the next write looks at first, without awaiting anything: a reply not
            # read (an error, or cancelled) leaves the connection out of step, and the writes
            # sent on it fail without reading; the next write opens a new connection.
            if not aligned and conn is not None and self._writer is conn:
                self._writer = None
            if counted:
                self._in_flight -= size
                self._room.set()
            mine.set_result((conn, aligned))
            if not aligned and conn is not None:
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)

    def _check_name(self, name: str) -> None:
        if name != self.channel_set:
            raise InvalidArgumentError(
                f"this sink serves channel set {self.channel_set!r}, not {name!r}"
            )

    # -- lease -------------------------------------------------------------------------------

    async def acquire(self, name: str, holder: str, ttl: float) -> Lease | None:
        self._check_name(name)
        token = await self._script(
            _ACQUIRE, [self.lease_key, self.fence_key], [holder, max(1, round(ttl * 1000))]
        )
        if token is None:
            return None
        lease = Lease(name=name, holder=holder, token=int(token), ttl=ttl)
        logger.info("lease of %s acquired by %s (token %d)", name, holder, lease.token)
        return lease

    @staticmethod
    def _value(lease: Lease) -> str:
        return f"{lease.token} {lease.holder}"

    async def renew(self, lease: Lease) -> Lease:
        self._check_name(lease.name)
        renewed = await self._script(
            _RENEW, [self.lease_key], [self._value(lease), max(1, round(lease.ttl * 1000))]
        )
        if not renewed:
            raise LeaseLost(f"the lease of {lease.name!r} (token {lease.token}) was taken over")
        return lease

    async def release(self, lease: Lease) -> None:
        self._check_name(lease.name)
        await self._script(_RELEASE, [self.lease_key], [self._value(lease)])

    # -- events ------------------------------------------------------------------------------

    async def position(self, org: str, channel: str) -> int | None:
        from redis.exceptions import RedisError

        key = channel_key(channel)
        try:
            value = await self._conn().hget(self.positions_key, key)
        except (RedisError, OSError) as exc:
            raise SinkError(f"Redis failed: {type(exc).__name__}: {exc}") from None
        if value is None:
            self._expected.pop(key, None)
            return None
        try:
            position = int(value)
        except ValueError:
            raise SinkError(
                f"the position of {key} in Redis ({self.positions_key}) is {value!r}, "
                "not a replay id"
            ) from None
        self._expected[key] = position
        return position

    async def write(self, lease: Lease, events: Sequence[RelayEvent]) -> None:
        if not events:
            return
        self._check_name(lease.name)
        batch = events if isinstance(events, RelayBatch) else RelayBatch.of("", events)
        # Every part is prepared (its expectations taken, the positions it leaves recorded)
        # before anything is awaited, and the parts go out together: a write the relay starts
        # meanwhile comes after all of them, never between two parts of this one.
        scripts = [self._prepare(lease, part) for part in _parts(batch, MAX_SCRIPT_BYTES)]
        if self.cluster:
            written = 0
            for keys, head, payloads in scripts:
                written += int(await self._script(_WRITE, keys, [*head, payloads]))
        else:
            written = await self._write_in_order(scripts)
        if written < len(batch):
            # Never in a relay's usual course (a term subscribes after the stored positions):
            # a write retried after its first attempt was applied, or replay ids that went
            # back, which the positions cannot tell from events already stored.
            logger.warning(
                "%s: %d of %d events were not written: their replay ids are not above their "
                "channel's position in Redis (already stored, or Salesforce's replay ids went "
                "back: a refreshed sandbox, a migrated org)",
                self.channel_set,
                len(batch) - written,
                len(batch),
            )

    def _prepare(self, lease: Lease, batch: RelayBatch) -> _Script:
        """The keys and arguments of one script for ``batch`` (its events' JSON last)."""
        channels, replay_ids = batch.channels, batch.replay_ids
        index: dict[str, int] = {}  # channel as delivered -> slot 1..c
        names: list[str] = []  # the channel keys, by slot
        for channel in dict.fromkeys(channels):
            key = channel_key(channel)  # /topic/A?x=1 is /topic/A
            if key in names:
                index[channel] = names.index(key) + 1
            else:
                names.append(key)
                index[channel] = len(names)
        highest: dict[int, int] = {}
        if len(index) == 1:
            slots: Iterable[int] = repeat(1)
            highest[1] = max(replay_ids)
        else:
            slots = list(map(index.__getitem__, channels))
            for slot, replay_id in zip(slots, replay_ids, strict=True):
                if replay_id > highest.get(slot, -1):
                    highest[slot] = replay_id
        dates, dates_length = _column(batch.dates)
        uuids, uuids_length = _column([uuid_ or "" for uuid_ in batch.event_uuids])
        payloads, lengths = batch.joined()
        heads = struct.pack(
            f"<{4 * len(lengths)}I",
            # (slots may be an endless repeat(1): the columns have the batch's length)
            *chain.from_iterable(zip(slots, dates_length, uuids_length, lengths, strict=False)),
        )
        ids = " ".join(map(str, replay_ids))
        known = self._expected
        checks = [(name, known[name]) for name in names if name in known]
        head: list[Any] = [self._value(lease), self.maxlen or 0, len(checks)]
        for name, position in checks:
            head += (name, position)
        head.append(len(names))
        head += names
        head += (heads, ids, dates, uuids)
        keys = [self.lease_key, self.positions_key, *(self.stream_key(n) for n in names)]
        # The positions this write leaves: a later write requires them (also one sent before
        # this one is answered), so that nothing is written after events that were not.
        for slot, replay_id in highest.items():
            name = names[slot - 1]
            if replay_id > known.get(name, -1):
                known[name] = replay_id
        return keys, head, payloads


def _parts(batch: RelayBatch, limit: int) -> Iterator[RelayBatch]:
    """``batch`` in parts of at most ``limit`` bytes of events each (at least one event)."""
    blob, lengths = batch.joined()
    if len(blob) <= limit:
        yield batch
        return
    start = size = 0
    for index, length in enumerate(lengths):
        if size and size + length > limit:
            yield batch[start:index]
            start, size = index, 0
        size += length
    yield batch[start:]
