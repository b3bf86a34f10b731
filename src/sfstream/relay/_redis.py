"""The Redis Streams sink: one stream per channel, the position and the lease next to it.

Keys of one channel set share the hash tag ``{<set>}`` so that they live in one slot of a
Redis Cluster and one script can touch them all::

    sfstream:{orders}:lease              "<token> <holder>", with a TTL (SET NX PX)
    sfstream:{orders}:fence              the fencing token counter (INCR)
    sfstream:{orders}:positions          hash: channel -> replay id of the last entry written
    sfstream:{orders}:/event/Order__e    the stream of one channel (XADD)

Each stream entry has the fields ``replay_id``, ``channel``, ``event`` (the Bayeux message as
received, JSON), ``date`` and, for platform events and CDC, ``event_uuid``.

:meth:`RedisSink.write` runs one script per batch: it checks the lease value (token and holder),
checks that no channel's position went backwards behind the relay's back (a failover that lost
acknowledged writes), appends the entries whose replay id is above the channel's position and
advances the positions. Redis runs a script atomically, so entries and positions are written
together or not at all, also when a master fails over and asynchronous replication loses the
latest writes: they are lost together, and the relay resubscribes from the surviving position.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

from sfstream.exceptions import InvalidArgumentError
from sfstream.relay._sink import Lease, LeaseLost, RelayEvent, Sink, SinkError
from sfstream.salesforce import channel_key

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

__all__ = ["RedisSink", "stream_key"]

logger = logging.getLogger(__name__)

#: The prefix of every key unless told otherwise.
DEFAULT_PREFIX: Final = "sfstream"

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
# per event two values: "<channel index 1..c> <replay id> <date> [<event uuid>]" and the event.
_WRITE: Final = """
local lease = redis.call('GET', KEYS[1])
if lease ~= ARGV[1] then
  return redis.error_reply('SFSTREAM_LEASE held by ' .. tostring(lease))
end
local maxlen = tonumber(ARGV[2])
local m = tonumber(ARGV[3])
local last, text = {}, {}
for i = 0, m - 1 do
  local ch = ARGV[4 + 2 * i]
  local expected = tonumber(ARGV[5 + 2 * i])
  local stored = tonumber(redis.call('HGET', KEYS[2], ch) or '-1')
  if stored < expected then
    return redis.error_reply('SFSTREAM_BEHIND ' .. ch .. ' ' .. stored .. ' ' .. expected)
  end
end
local base = 4 + 2 * m
local c = tonumber(ARGV[base])
for j = 1, c do
  local stored = redis.call('HGET', KEYS[2], ARGV[base + j])
  last[j] = tonumber(stored or '-1')
end
local written = 0
for i = base + c + 1, #ARGV, 2 do
  local j, rid, date, uuid = string.match(ARGV[i], '^(%d+) (%d+) (%S+) ?(%S*)$')
  j = tonumber(j)
  local id = tonumber(rid)
  if id > last[j] then
    local key, ch = KEYS[2 + j], ARGV[base + j]
    if uuid ~= '' then
      if maxlen > 0 then
        redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 'replay_id', rid, 'channel', ch,
                   'date', date, 'event', ARGV[i + 1], 'event_uuid', uuid)
      else
        redis.call('XADD', key, '*', 'replay_id', rid, 'channel', ch, 'date', date,
                   'event', ARGV[i + 1], 'event_uuid', uuid)
      end
    elseif maxlen > 0 then
      redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 'replay_id', rid, 'channel', ch,
                 'date', date, 'event', ARGV[i + 1])
    else
      redis.call('XADD', key, '*', 'replay_id', rid, 'channel', ch, 'date', date,
                 'event', ARGV[i + 1])
    end
    last[j] = id
    text[j] = rid
    written = written + 1
  end
end
for j, rid in pairs(text) do
  redis.call('HSET', KEYS[2], ARGV[base + j], rid)
end
return written
"""


def stream_key(channel_set: str, channel: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The stream of ``channel`` in ``channel_set``: ``sfstream:{orders}:/event/Order__e``.

    A PushTopic filter (``?Type=X``) is not part of the key.
    """
    return f"{prefix}:{{{channel_set}}}:{channel_key(channel)}"


def _redact(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, parts.query, ""))


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
    """

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        channel_set: str,
        prefix: str = DEFAULT_PREFIX,
        maxlen: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"redis", "rediss", "redis+cluster", "rediss+cluster"}:
            raise InvalidArgumentError(
                f"not a Redis URL: {_redact(url)!r} (redis://, rediss://, redis+cluster://)"
            )
        if not channel_set or any(c in channel_set for c in "{}"):
            raise InvalidArgumentError(f"invalid channel set name {channel_set!r}")
        if maxlen is not None and maxlen < 1:
            raise InvalidArgumentError("maxlen must be positive")
        self.url = url
        self.cluster = parts.scheme.endswith("+cluster")
        self.channel_set = channel_set
        self.prefix = prefix
        self.maxlen = maxlen
        self.timeout = timeout
        self._redis: Redis | RedisCluster | None = None
        self._shas: dict[str, str] = {}
        # The position this sink last read or wrote per channel: a stored position below it
        # means the engine lost writes (a failover), and the relay must start over from it.
        self._expected: dict[str, int] = {}
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
                "the Redis sink needs the redis package: pip install 'sfstream[redis]'"
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
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()

    def _conn(self) -> Redis | RedisCluster:
        if self._redis is None:
            raise SinkError("the Redis sink is not open")
        return self._redis

    async def _script(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        from redis.exceptions import NoScriptError, RedisError, ResponseError

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
        except ResponseError as exc:
            text = str(exc)
            if text.startswith("SFSTREAM_LEASE"):
                raise LeaseLost(f"the lease of {self.channel_set!r} is {text[15:]}") from None
            if text.startswith("SFSTREAM_BEHIND"):
                _, channel, stored, expected = text.rsplit(" ", 3)
                self._expected.pop(channel, None)
                raise SinkError(
                    f"the position of {channel} in Redis went back from {expected} to {stored} "
                    "(a failover lost writes): resubscribe from the engine's position"
                ) from None
            raise SinkError(f"Redis refused a script: {text}") from None
        except (RedisError, OSError) as exc:
            raise SinkError(f"Redis failed: {type(exc).__name__}: {exc}") from None

    def _check_name(self, name: str) -> None:
        if name != self.channel_set:
            raise ValueError(f"this sink serves channel set {self.channel_set!r}, not {name!r}")

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
        position = int(value)
        self._expected[key] = position
        return position

    async def write(self, lease: Lease, events: Sequence[RelayEvent]) -> None:
        if not events:
            return
        self._check_name(lease.name)
        index: dict[str, int] = {}  # channel as delivered, or its key -> slot 1..c
        names: list[str] = []  # the channel keys, by slot
        body: list[Any] = []
        append = body.append
        highest: dict[int, int] = {}
        for event in events:
            slot = index.get(event.channel)
            if slot is None:
                key = channel_key(event.channel)
                slot = index.get(key)
                if slot is None:
                    names.append(key)
                    slot = index[key] = len(names)
                index[event.channel] = slot
            date = event.date.replace(" ", "_")  # the meta value is split on spaces
            uuid_ = event.event_uuid
            append(
                f"{slot} {event.replay_id} {date} {uuid_}"
                if uuid_
                else f"{slot} {event.replay_id} {date}"
            )
            append(event.payload)
            if event.replay_id > highest.get(slot, -1):
                highest[slot] = event.replay_id
        checks = [(name, self._expected[name]) for name in names if name in self._expected]
        head: list[Any] = [self._value(lease), self.maxlen or 0, len(checks)]
        for name, position in checks:
            head += (name, position)
        head.append(len(names))
        head += names
        keys = [self.lease_key, self.positions_key, *(self.stream_key(n) for n in names)]
        await self._script(_WRITE, keys, head + body)
        known = self._expected
        for slot, replay_id in highest.items():
            name = names[slot - 1]
            if replay_id > known.get(name, -1):
                known[name] = replay_id
