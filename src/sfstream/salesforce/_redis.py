"""A replay marker storage in Redis (``redis.asyncio``; the extra ``sfstream[redis]``).

Keys, all sharing the hash tag ``{prefix}`` so that they live in one slot of a Redis Cluster
and one script may touch them together:

``{prefix}:marker:<subscription>``
    a hash: ``date`` (the marker's date as received), ``replay_id``, and ``order``, the
    normalised date and the replay id as one fixed-width string of digits that the script
    compares (40 digits: epoch microseconds and the replay id, each offset by 2**63 to 20
    digits).
``{prefix}:subscriptions``
    a set of the subscription keys that have a marker.

A marker is written by one Lua script that compares ``order`` and writes only if the new
marker is not older: the compare-and-set is atomic on the server, so concurrent writers (other
processes, other hosts) never move a marker backwards.

``redis`` is imported when a storage is created, never by ``import sfstream``.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeAlias
from urllib.parse import urlsplit

from sfstream.exceptions import InvalidArgumentError, ReplayError
from sfstream.salesforce._replay import ReplayMarker, ReplayMarkerStorage
from sfstream.salesforce._sqlite import check_optional_id, marker_order

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster
    from redis.commands.core import AsyncScript

    RedisClient: TypeAlias = Redis | RedisCluster
else:
    RedisClient: TypeAlias = Any

__all__ = ["RedisStorage"]

logger = logging.getLogger(__name__)

_OFFSET: Final = 2**63
_ORDER_DIGITS: Final = 20

#: KEYS[1] the marker hash, KEYS[2] the set of subscriptions;
#: ARGV order, date, replay id, subscription. Returns 1 if stored, 0 if a newer one is kept.
SET_MARKER_SCRIPT: Final = """
local function older(new, current)
  for i = 1, #new, 10 do
    local a = tonumber(string.sub(new, i, i + 9))
    local b = tonumber(string.sub(current, i, i + 9))
    if a ~= b then return a < b end
  end
  return false
end
local current = redis.call('HGET', KEYS[1], 'order')
if current and #current == #ARGV[1] and string.match(current, '^%d+$')
    and older(ARGV[1], current) then
  return 0
end
redis.call('HSET', KEYS[1], 'order', ARGV[1], 'date', ARGV[2], 'replay_id', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[4])
return 1
"""


def _order(marker: ReplayMarker) -> str:
    micros, replay_id = marker_order(marker)
    return f"{micros + _OFFSET:0{_ORDER_DIGITS}d}{replay_id + _OFFSET:0{_ORDER_DIGITS}d}"


def _text(value: str | bytes | None) -> str:
    if value is None:
        raise ValueError("missing")
    return value.decode() if isinstance(value, bytes) else value


def _describe_url(url: str) -> str:
    """Where a URL points, without its user name or password."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or parts.path or "localhost"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "Redis"
    return f"Redis at {host}{port}"


class RedisStorage(ReplayMarkerStorage):
    """Replay markers in Redis (or a Redis Cluster), shared by every process that uses them.

    Each marker is stored by one server-side script that compares it with the stored one (by
    normalised date, then replay id) and keeps the newer: several consumers writing the same
    subscription never move it backwards. Works with both storage policies.

    Example::

        async with RedisStorage("redis://localhost:6379/0", prefix="orders") as replay:
            async with Client(auth, replay=replay) as client:
                ...

    Needs the ``redis`` package: ``pip install '.[redis]'`` in the sfstream checkout.

    Args:
        redis: a ``redis://`` (or ``rediss://``, ``unix://``) URL, or a ``redis.asyncio.Redis``
            or ``redis.asyncio.RedisCluster`` client of yours (it is not closed by
            :meth:`aclose`; it may decode responses or not).
        prefix: what the keys start with, as the hash tag ``{prefix}``: storages with different
            prefixes are independent. No ``{`` or ``}``.
        default_id: where channels with no stored marker start (a replay id or a
            :class:`~sfstream.ReplayOption`); None (the default) leaves it to the client's
            ``replay`` default, new events.
        cluster: with a URL, connect to a Redis Cluster (``RedisCluster.from_url``).

    Raises:
        ImportError: ``redis`` is not installed.
    """

    #: The replay id for channels with no stored marker (None: the client's default).
    default_id: int | None
    #: The hash tag of the keys.
    prefix: str

    def __init__(
        self,
        redis: str | RedisClient,
        *,
        prefix: str = "sfstream",
        default_id: int | None = None,
        cluster: bool = False,
    ) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise InvalidArgumentError(
                f"prefix must be a non-empty string without braces, not {prefix!r}"
            )
        default_id = check_optional_id(default_id)
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - the test environment has redis
            raise ImportError(
                "RedisStorage needs the redis package: "
                "pip install '.[redis]' in the sfstream checkout"
            ) from exc
        self.prefix = prefix
        self.default_id = default_id
        self._owned = isinstance(redis, str)
        client: RedisClient
        if isinstance(redis, str):
            factory = aioredis.RedisCluster if cluster else aioredis.Redis
            client = factory.from_url(redis)
            self._where = _describe_url(redis)
        else:
            client = redis
            self._where = f"Redis ({type(redis).__name__})"
        self._client = client
        self._script: AsyncScript = client.register_script(SET_MARKER_SCRIPT)
        self._index = f"{{{prefix}}}:subscriptions"

    @property
    def client(self) -> RedisClient:
        """The Redis client in use."""
        return self._client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._where} prefix={self.prefix!r}>"

    def key(self, subscription: str) -> str:
        """The Redis key of the marker of ``subscription``."""
        return f"{{{self.prefix}}}:marker:{subscription}"

    def _failure(self, action: str, subscription: str, exc: Exception) -> ReplayError:
        reason = str(exc) or type(exc).__name__
        return ReplayError(
            f"cannot {action} the replay marker of {subscription!r} in {self._where}: {reason}"
        )

    async def get_replay_marker(self, subscription: str) -> ReplayMarker | None:
        """The marker stored for ``subscription``, or None.

        Raises:
            ReplayError: Redis cannot be reached, or the stored value is not a marker.
        """
        from redis.exceptions import RedisError

        try:
            date, replay_id = await self._client.hmget(
                self.key(subscription), ["date", "replay_id"]
            )
        except (RedisError, OSError, UnicodeError) as exc:
            raise self._failure("read", subscription, exc) from exc
        if date is None and replay_id is None:
            return None
        try:
            return ReplayMarker(_text(date), int(_text(replay_id)))
        except (TypeError, ValueError, UnicodeError):
            raise ReplayError(
                f"the value stored for channel {subscription!r} in {self._where} is not a "
                "replay marker"
            ) from None

    async def set_replay_marker(self, subscription: str, replay_marker: ReplayMarker) -> None:
        """Store ``replay_marker`` for ``subscription``, unless a newer one is stored.

        Raises:
            ReplayError: the marker's date does not parse, or Redis cannot be written.
        """
        from redis.exceptions import RedisError

        date = str(replay_marker[0])
        marker = ReplayMarker(date, replay_marker[1])
        order = _order(marker)
        try:
            stored = await self._script(
                keys=[self.key(subscription), self._index],
                args=[order, date, marker.replay_id, subscription],
            )
        except (RedisError, OSError, UnicodeError) as exc:
            raise self._failure("store", subscription, exc) from exc
        if not stored:
            logger.debug("kept the newer stored replay marker of %s", subscription)

    async def get_replay_id(self, subscription: str) -> int | None:
        """The stored marker's replay id, else :attr:`default_id`."""
        replay_id = await super().get_replay_id(subscription)
        return self.default_id if replay_id is None else replay_id

    async def markers(self) -> dict[str, ReplayMarker]:
        """Every stored marker of this prefix, by subscription key.

        Raises:
            ReplayError: Redis cannot be reached, or a stored value is not a marker.
        """
        from redis.exceptions import RedisError

        try:
            members = await self._client.smembers(self._index)
        except (RedisError, OSError) as exc:
            raise ReplayError(f"cannot read the replay markers in {self._where}: {exc}") from exc
        markers = {}
        for member in sorted(_text(member) for member in members):
            marker = await self.get_replay_marker(member)
            if marker is not None:
                markers[member] = marker
        return markers

    async def aclose(self) -> None:
        """Close the client if the storage created it (from a URL). Idempotent."""
        if self._owned:
            self._owned = False
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
