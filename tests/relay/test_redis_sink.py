"""The Redis Streams sink against a real redis-server (and a real 3+3 Redis Cluster)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sfstream.exceptions import InvalidArgumentError
from sfstream.relay import EventRefused, Lease, LeaseLost, RelayEvent, SinkError
from sfstream.relay._redis import RedisSink, stream_key
from sfstream.relay._sink import RelayBatch
from tests.relay._engines import RedisCluster, RedisServer, free_port

SET = "orders"
ORDER = "/event/Order__e"
SHIP = "/event/Shipment__e"


def event(replay_id: int, channel: str = ORDER, uuid: str | None = "u") -> RelayEvent:
    message = {"channel": channel, "data": {"event": {"replayId": replay_id}}}
    return RelayEvent(
        org="default",
        channel=channel,
        replay_id=replay_id,
        date="2026-01-01T00:00:00.000Z",
        payload=json.dumps(message).encode(),
        event_uuid=None if uuid is None else f"{uuid}-{replay_id}",
    )


@pytest.fixture
async def sink(redis_server: RedisServer) -> AsyncIterator[RedisSink]:
    async with RedisSink(redis_server.url, channel_set=SET) as opened:
        yield opened


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def entries(raw: aioredis.Redis, channel: str) -> list[dict[str, str]]:
    found = await raw.xrange(stream_key(SET, channel))
    assert found is not None
    return [{str(k): str(v) for k, v in (fields or {}).items()} for _id, fields in found]


async def test_write_appends_entries_and_advances_positions(
    sink: RedisSink, raw: aioredis.Redis
) -> None:
    lease = await sink.acquire(SET, "a", 5)
    assert lease is not None
    assert await sink.position("default", ORDER) is None
    await sink.write(lease, [event(1), event(2, SHIP, None), event(3)])
    assert await sink.position("default", ORDER) == 3
    assert await sink.position("default", SHIP) == 2
    orders = await entries(raw, ORDER)
    assert [e["replay_id"] for e in orders] == ["1", "3"]
    assert orders[0]["channel"] == ORDER
    assert orders[0]["event_uuid"] == "u-1"
    assert json.loads(orders[1]["event"])["data"]["event"]["replayId"] == 3
    assert "event_uuid" not in (await entries(raw, SHIP))[0]


@pytest.mark.parametrize("one_at_a_time", [False, True])
async def test_events_at_or_below_the_position_are_skipped_and_said_so(
    sink: RedisSink, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture, one_at_a_time: bool
) -> None:
    sink.cluster = one_at_a_time  # the path of a Redis Cluster: one script at a time
    lease = await sink.acquire(SET, "a", 5)
    assert lease is not None
    with caplog.at_level("WARNING", logger="sfstream.relay._redis"):
        await sink.write(lease, [event(1), event(2)])
        assert not caplog.records
        # Skipped events are lost if their replay ids went back (a refreshed sandbox with
        # --fallback): never silently.
        await sink.write(lease, [event(2), event(1), event(3)])
    assert [e["replay_id"] for e in await entries(raw, ORDER)] == ["1", "2", "3"]
    assert [r.getMessage() for r in caplog.records] == [
        "orders: 2 of 3 events were not written: their replay ids are not above their "
        "channel's position in Redis (already stored, or Salesforce's replay ids went back: "
        "a refreshed sandbox, a migrated org)"
    ]


async def test_the_lease_is_exclusive_and_tokens_increase(sink: RedisSink) -> None:
    first = await sink.acquire(SET, "a", 5)
    assert first is not None
    assert await sink.acquire(SET, "b", 5) is None
    await sink.release(first)
    second = await sink.acquire(SET, "b", 5)
    assert second is not None
    assert second.token > first.token
    assert await sink.renew(second) == second
    with pytest.raises(LeaseLost):
        await sink.renew(first)
    await sink.release(first)  # not current: does nothing and does not raise
    assert await sink.acquire(SET, "c", 5) is None


async def test_an_ex_leader_whose_lease_expired_is_fenced_out(
    sink: RedisSink, raw: aioredis.Redis, redis_server: RedisServer
) -> None:
    old = await sink.acquire(SET, "a", 0.05)
    assert old is not None
    await sink.write(old, [event(1)])
    await raw.pexpire(sink.lease_key, 1)  # the ex-leader paused past its TTL
    async with RedisSink(redis_server.url, channel_set=SET) as other:
        for _ in range(100):
            new = await other.acquire(SET, "b", 5)
            if new is not None:
                break
        assert new is not None
        assert new.token > old.token
        assert await other.position("default", ORDER) == 1
        with pytest.raises(LeaseLost, match="held by"):
            await sink.write(old, [event(2), event(3)])
        with pytest.raises(LeaseLost):
            await sink.renew(old)
        await other.write(new, [event(2)])
    assert [e["replay_id"] for e in await entries(raw, ORDER)] == ["1", "2"]


async def test_a_lease_of_the_same_token_but_another_holder_cannot_write(
    sink: RedisSink, raw: aioredis.Redis
) -> None:
    lease = await sink.acquire(SET, "a", 5)
    assert lease is not None
    impostor = Lease(SET, "b", lease.token, 5)
    with pytest.raises(LeaseLost):
        await sink.write(impostor, [event(1)])
    assert await entries(raw, ORDER) == []


async def test_a_position_that_went_back_is_refused(sink: RedisSink, raw: aioredis.Redis) -> None:
    lease = await sink.acquire(SET, "a", 5)
    assert lease is not None
    await sink.write(lease, [event(1), event(2)])
    # A failover lost the last write: the marker is back at 1 (and the entry gone with it).
    await raw.hset(sink.positions_key, ORDER, 1)
    with pytest.raises(SinkError, match="is 1, below 2"):
        await sink.write(lease, [event(3)])
    assert await sink.position("default", ORDER) == 1
    await sink.write(lease, [event(2), event(3)])
    assert await sink.position("default", ORDER) == 3


@pytest.mark.parametrize("pipelined", [True, False])
async def test_a_script_that_would_fail_half_way_writes_nothing(
    redis_server: RedisServer, raw: aioredis.Redis, pipelined: bool
) -> None:
    # Redis does not undo what a script wrote before a command of it failed: a key that is
    # not a stream (or a position that is not a number) must be found before the first XADD,
    # or the entries of the batch's other channels stay without their positions, and are
    # written again (duplicates) by every later attempt.
    async with RedisSink(
        redis_server.url, channel_set=SET, pipeline_depth=8 if pipelined else 1
    ) as sink:
        if not pipelined:
            sink.cluster = True  # the one-script-at-a-time path of a cluster
        lease = await sink.acquire(SET, "a", 5)
        assert lease is not None
        await raw.set(stream_key(SET, SHIP), "not a stream")
        for _ in range(2):
            with pytest.raises(EventRefused, match="not a stream") as caught:
                await sink.write(lease, [event(1), event(2, SHIP), event(3)])
            assert stream_key(SET, SHIP) in str(caught.value)
            assert await entries(raw, ORDER) == []
            # The relay's next term reads the positions again.
            assert await sink.position("default", ORDER) is None
            assert await sink.position("default", SHIP) is None
        await raw.delete(stream_key(SET, SHIP))
        await raw.hset(sink.positions_key, SHIP, "garbage")
        with pytest.raises(SinkError, match="not a replay id"):
            await sink.position("default", SHIP)
        for _ in range(2):
            with pytest.raises(SinkError, match="'garbage', not a replay id"):
                await sink.write(lease, [event(1), event(2, SHIP), event(3)])
            assert await entries(raw, ORDER) == []
            assert await sink.position("default", ORDER) is None
        await raw.hdel(sink.positions_key, SHIP)
        assert await sink.position("default", SHIP) is None
        await sink.write(lease, [event(1), event(2, SHIP), event(3)])
        assert [e["replay_id"] for e in await entries(raw, ORDER)] == ["1", "3"]
        assert [e["replay_id"] for e in await entries(raw, SHIP)] == ["2"]


async def test_maxlen_trims_streams(redis_server: RedisServer, raw: aioredis.Redis) -> None:
    async with RedisSink(redis_server.url, channel_set=SET, maxlen=10) as sink:
        lease = await sink.acquire(SET, "a", 5)
        assert lease is not None
        for start in range(1, 2000, 100):
            await sink.write(lease, [event(i) for i in range(start, start + 100)])
    assert await raw.xlen(stream_key(SET, ORDER)) < 2000


async def test_a_large_maxlen_is_sent_as_the_integer_it_is(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    # A Lua number of 17 digits or more goes to Redis as "1e17": the script passes the text.
    async with RedisSink(redis_server.url, channel_set=SET, maxlen=2**63 - 1) as sink:
        lease = await sink.acquire(SET, "a", 5)
        assert lease is not None
        await sink.write(lease, [event(1), event(2, SHIP)])
        async with RedisSink(redis_server.url, channel_set=SET, maxlen=10**17) as other:
            await sink.release(lease)
            lease = await other.acquire(SET, "b", 5)
            assert lease is not None
            await other.write(lease, [event(3), event(4, SHIP)])
    assert [e["replay_id"] for e in await entries(raw, ORDER)] == ["1", "3"]


async def test_errors_are_clear(redis_server: RedisServer) -> None:
    with pytest.raises(InvalidArgumentError, match="not a Redis URL"):
        RedisSink("http://user:secret@host/", channel_set=SET)
    with pytest.raises(InvalidArgumentError, match="channel set"):
        RedisSink(redis_server.url, channel_set="a{b}")
    for maxlen in (0, 2**63):  # (Redis would refuse every write with 2**63)
        with pytest.raises(InvalidArgumentError, match="maxlen must be positive"):
            RedisSink(redis_server.url, channel_set=SET, maxlen=maxlen)
    sink = RedisSink(redis_server.url, channel_set=SET)
    with pytest.raises(SinkError, match="not open"):
        await sink.position("default", ORDER)
    async with sink:
        with pytest.raises(InvalidArgumentError, match="serves channel set"):
            await sink.acquire("other", "a", 5)
    redis_server.kill()
    down = RedisSink(
        redis_server.url.replace("redis://", "redis://user:secret@"), channel_set=SET, timeout=1
    )
    with pytest.raises(SinkError, match="cannot reach Redis") as caught:
        await down.open()
    assert "secret" not in str(caught.value)
    assert "secret" not in repr(down)


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("redis://:secret@127.0.0.1:99999/0", "invalid port"),
        ("rediss://user:secret@127.0.0.1:port/0", "invalid port"),
        ("redis://:secret@127.0.0.1:6379/zero", "invalid database 'zero'"),
        ("redis+cluster://:secret@127.0.0.1:7000/1", "database 0 only"),
        ("redis+cluster://:secret@127.0.0.1:7000,127.0.0.1:7001", "of any node"),
    ],
)
def test_a_url_the_client_cannot_use_is_refused_clearly(url: str, text: str) -> None:
    with pytest.raises(InvalidArgumentError, match=text) as caught:
        RedisSink(url, channel_set=SET)
    assert "secret" not in str(caught.value)


async def test_a_password_in_the_query_is_never_shown(redis_server: RedisServer) -> None:
    redis_server.kill()
    url = redis_server.url + "?password=secret&socket_keepalive=true"
    down = RedisSink(url, channel_set=SET, timeout=1)
    assert "secret" not in repr(down)
    assert "socket_keepalive=true" in repr(down)
    with pytest.raises(SinkError, match="cannot reach Redis") as caught:
        await down.open()
    assert "secret" not in str(caught.value)


def tls_files(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sfstream redis test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert, private = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, private


async def test_rediss_with_a_user_and_password_writes_pipelined_over_tls(tmp_path: Path) -> None:
    # The pipelined writes take a connection of their own, made from the pool's settings:
    # it must speak TLS and authenticate like the others.
    cert, key = tls_files(tmp_path / "tls")
    tls_port = free_port()
    server = RedisServer(
        tmp_path / "redis",
        options=(
            "--tls-port", str(tls_port),
            "--tls-cert-file", str(cert),
            "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(cert),
            "--tls-auth-clients", "no",
            # a user of its own (the default user stays open for the helper's PING)
            "--user", "relay", "on", ">tls-secret", "~*", "&*", "+@all",
        ),
    )  # fmt: skip
    server.start()
    try:
        url = f"rediss://relay:tls-secret@127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}"
        async with RedisSink(url, channel_set=SET) as sink:
            assert "tls-secret" not in repr(sink)
            lease = await sink.acquire(SET, "a", 5)
            assert lease is not None
            await asyncio.gather(
                *(
                    sink.write(lease, [event(i) for i in range(n, n + 10)])
                    for n in range(1, 100, 10)
                )
            )
            assert sink._writer is not None
            assert await sink.position("default", ORDER) == 100
        # Without the CA, the certificate is refused: a clear error, without the password.
        untrusted = RedisSink(url.partition("?")[0], channel_set=SET, timeout=2)
        with pytest.raises(SinkError, match="cannot reach Redis") as caught:
            await untrusted.open()
        assert "tls-secret" not in str(caught.value)
    finally:
        server.stop()


async def test_engine_failure_is_a_sink_error(sink: RedisSink, redis_server: RedisServer) -> None:
    lease = await sink.acquire(SET, "a", 5)
    assert lease is not None
    redis_server.kill()
    with pytest.raises(SinkError):
        await sink.write(lease, [event(1)])
    with pytest.raises(SinkError):
        await sink.position("default", ORDER)


async def test_cluster_keeps_a_channel_set_in_one_slot(redis_cluster: RedisCluster) -> None:
    async with RedisSink(redis_cluster.url, channel_set=SET) as sink:
        lease = await sink.acquire(SET, "a", 5)
        assert lease is not None
        await sink.write(lease, [event(1), event(1, SHIP), event(2)])
        assert await sink.position("default", ORDER) == 2
        master = redis_cluster.master_of(sink.lease_key)
        assert redis_cluster.master_of(sink.stream_key(SHIP)) is master
        # The master of the slot dies; a replica takes over; the sink keeps working.
        redis_cluster.fail_over(sink.lease_key)
        for _ in range(50):
            try:
                position = await sink.position("default", ORDER)
                break
            except SinkError:
                continue
        assert position in (1, 2, None)  # replication is asynchronous
        try:
            lease = await sink.renew(lease)
        except LeaseLost:  # the lease was not replicated yet either
            again = await sink.acquire(SET, "a", 5)
            assert again is not None
            lease = again
        await sink.write(lease, [event(2), event(3)])
        assert await sink.position("default", ORDER) == 3


def batch_of(*events: RelayEvent) -> RelayBatch:
    return RelayBatch.of("default", events)


async def test_a_batch_keeps_every_field_as_given(sink: RedisSink, raw: aioredis.Redis) -> None:
    lease = await sink.acquire(SET, "a", 5)
    assert lease is not None
    odd = RelayEvent(
        "default", ORDER + "?Amount=1", 7, "2026-01-01 00:00 ü", b'{"x":"\xc3\xa9"}', "ü ü"
    )
    await sink.write(lease, batch_of(event(5), odd, event(6, SHIP, None)))
    orders = await entries(raw, ORDER)
    assert [e["replay_id"] for e in orders] == ["5", "7"]
    assert orders[0] == {
        "replay_id": "5",
        "channel": ORDER,
        "date": "2026-01-01T00:00:00.000Z",
        "event": json.dumps({"channel": ORDER, "data": {"event": {"replayId": 5}}}),
        "event_uuid": "u-5",
    }
    # Spaces and non-ASCII text in dates and uuids come back exactly (lengths are in bytes).
    assert orders[1]["date"] == "2026-01-01 00:00 ü"
    assert orders[1]["event_uuid"] == "ü ü"
    assert orders[1]["event"] == '{"x":"é"}'
    assert await entries(raw, SHIP) == [
        {
            "replay_id": "6",
            "channel": SHIP,
            "date": "2026-01-01T00:00:00.000Z",
            "event": json.dumps({"channel": SHIP, "data": {"event": {"replayId": 6}}}),
        }
    ]
    assert await sink.position("default", ORDER) == 7


async def test_a_large_batch_takes_several_scripts_in_order(
    sink: RedisSink, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sfstream.relay._redis.MAX_SCRIPT_BYTES", 300)
    lease = await sink.acquire(SET, "a", 5)
    assert lease is not None
    await raw.config_resetstat()
    await sink.write(lease, [event(i, ORDER if i % 3 else SHIP) for i in range(1, 31)])
    calls = (await raw.info("commandstats"))["cmdstat_eval"]["calls"]
    assert calls >= 5  # about 60 bytes an event: five per script
    ids = [int(e["replay_id"]) for e in await entries(raw, ORDER)]
    assert ids == [i for i in range(1, 31) if i % 3]
    assert await sink.position("default", SHIP) == 30


async def test_a_write_started_during_a_split_one_comes_after_all_its_parts(
    sink: RedisSink, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch too large for one script is split; a write the relay starts while the first
    # part is in flight must not get between the parts (it would move the position past the
    # later parts' events, which the script would then skip as stored: lost).
    monkeypatch.setattr("sfstream.relay._redis.MAX_SCRIPT_BYTES", 300)
    lease = await sink.acquire(SET, "a", 5)
    assert lease is not None
    large = asyncio.ensure_future(sink.write(lease, [event(i) for i in range(1, 21)]))
    await asyncio.sleep(0)
    small = asyncio.ensure_future(sink.write(lease, [event(i) for i in range(21, 24)]))
    await asyncio.gather(large, small)
    assert [int(e["replay_id"]) for e in await entries(raw, ORDER)] == list(range(1, 24))


async def test_a_failed_part_fails_the_parts_after_it_and_the_connection_stays_in_step(
    sink: RedisSink, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sfstream.relay._redis.MAX_SCRIPT_BYTES", 300)
    lease = await sink.acquire(SET, "a", 5)
    assert lease is not None
    await sink.write(lease, [event(1)])
    await raw.xtrim(stream_key(SET, ORDER), maxlen=0)
    await raw.hset(sink.positions_key, ORDER, 0)  # a failover lost the write of 1
    with pytest.raises(SinkError, match="is 0, below 1"):
        await sink.write(lease, [event(i) for i in range(2, 22)])  # several parts
    assert await entries(raw, ORDER) == []
    writer = sink._writer
    assert writer is not None  # every reply was read: the same connection goes on
    assert await sink.position("default", ORDER) == 0
    await sink.write(lease, [event(i) for i in range(1, 22)])
    assert [int(e["replay_id"]) for e in await entries(raw, ORDER)] == list(range(1, 22))
    assert sink._writer is writer


async def test_pipelined_writes_take_effect_in_call_order(
    sink: RedisSink, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Little room in flight: later writes wait for earlier replies, still in order.
    monkeypatch.setattr("sfstream.relay._redis.MAX_IN_FLIGHT_BYTES", 500)
    lease = await sink.acquire(SET, "a", 5)
    assert lease is not None
    assert sink.pipeline_depth > 1
    writes = [
        sink.write(lease, batch_of(*(event(i) for i in range(n, n + 5)))) for n in range(1, 200, 5)
    ]
    await asyncio.gather(*writes)
    assert [int(e["replay_id"]) for e in await entries(raw, ORDER)] == list(range(1, 201))
    assert sink._in_flight == 0


async def test_a_write_after_a_failed_one_writes_nothing(
    sink: RedisSink, raw: aioredis.Redis
) -> None:
    lease = await sink.acquire(SET, "a", 5)
    assert lease is not None
    await sink.write(lease, [event(1)])
    stale = Lease(SET, "a", lease.token - 1, 5)
    first = asyncio.ensure_future(sink.write(stale, [event(2), event(3)]))
    second = asyncio.ensure_future(sink.write(lease, [event(4)]))  # sent before `first` fails
    with pytest.raises(LeaseLost):
        await first
    # Its own lease is fine, but it would write 4 after 2 and 3, which are not in Redis.
    with pytest.raises(SinkError, match="is 1, below 3"):
        await second
    assert [e["replay_id"] for e in await entries(raw, ORDER)] == ["1"]
    assert await sink.position("default", ORDER) == 1  # the relay resubscribes from here
    await sink.write(lease, [event(2), event(3), event(4)])
    assert [e["replay_id"] for e in await entries(raw, ORDER)] == ["1", "2", "3", "4"]


async def test_a_cancelled_write_does_not_leave_its_reply_to_the_next(
    sink: RedisSink, raw: aioredis.Redis
) -> None:
    lease = await sink.acquire(SET, "a", 5)
    assert lease is not None
    await sink.write(lease, [event(1)])
    big, small = [event(i) for i in range(2, 3000)], [event(3000)]
    first = asyncio.ensure_future(sink.write(lease, big))
    second = asyncio.ensure_future(sink.write(lease, small))
    both = sum(len(e.payload) for e in big + small)
    while sink._in_flight < both:  # noqa: ASYNC110 - until both were counted (first is sent)
        await asyncio.sleep(0)
    first.cancel()  # before Redis answered it (a script of 3,000 entries takes milliseconds)
    outcome = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(outcome[0], asyncio.CancelledError)
    # `second` does not take the reply of `first` for its own: it fails (applied or not, as
    # `first`): its connection is out of step, and closed.
    assert isinstance(outcome[1], SinkError)
    assert "earlier write failed" in str(outcome[1])
    assert sink._writer is None
    assert sink._in_flight == 0
    assert await sink.position("default", ORDER) in (1, 2999, 3000)
    await sink.write(lease, [event(i) for i in range(2, 3002)])
    assert [int(e["replay_id"]) for e in await entries(raw, ORDER)] == list(range(1, 3002))


async def test_the_cluster_takes_one_write_at_a_time(redis_cluster: RedisCluster) -> None:
    sink = RedisSink(redis_cluster.url, channel_set=SET, pipeline_depth=8)
    assert sink.pipeline_depth == 1
    with pytest.raises(InvalidArgumentError, match="pipeline_depth"):
        RedisSink("redis://localhost", channel_set=SET, pipeline_depth=0)
