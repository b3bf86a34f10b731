"""SqliteStorage and RedisStorage: the same contract, on a real SQLite file, a real redis-server
and a real Redis Cluster (3 masters, 3 replicas).

The contract: one marker per subscription key (any string), never moving backwards by
normalised date then replay id, whichever writer (coroutine, process) commits last; usable with
the AUTOMATIC and MANUAL policies; errors are :class:`ReplayError` with a message that says what
and where, without a secret.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from sfstream import (
    Client,
    PasswordAuthenticator,
    RedisStorage,
    ReplayMarker,
    ReplayMarkerStorage,
    ReplayMarkerStoragePolicy,
    ReplayOption,
    SqliteStorage,
)
from sfstream.emulator import Emulator
from sfstream.exceptions import InvalidArgumentError, ReplayError
from sfstream.salesforce._sqlite import marker_order
from tests._servers import RedisClusterServers, RedisServer, free_port, redis_command
from tests.salesforce import _writer

WRITER = Path(_writer.__file__)
EVENT = "/event/Order__e"
ODD_KEYS = [
    "/topic/Accounts?Type='Partner' AND Name = \"Ünïcödé\"",
    "/u/a b=c&d?e",
    "/topic/{brace}}{",
    "'; DROP TABLE sfstream_replay_markers; --",
    "/data/日本語ChangeEvent",
    "",
]
_prefixes = itertools.count()

Backend = str
BACKENDS = ["sqlite", "redis", "cluster"]


def unique_prefix() -> str:
    return f"test{next(_prefixes)}"


@pytest.fixture(params=BACKENDS)
async def storage_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., ReplayMarkerStorage]]:
    """Make storages of one backend that share their data (one file, one prefix)."""
    backend: str = request.param
    made: list[SqliteStorage | RedisStorage] = []
    prefix = unique_prefix()

    def make(**options: Any) -> ReplayMarkerStorage:
        storage: SqliteStorage | RedisStorage
        if backend == "sqlite":
            storage = SqliteStorage(tmp_path / "markers.sqlite3", **options)
        elif backend == "redis":
            server: RedisServer = request.getfixturevalue("redis_server")
            storage = RedisStorage(server.url, prefix=prefix, **options)
        else:
            cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
            storage = RedisStorage(cluster.url, prefix=prefix, cluster=True, **options)
        made.append(storage)
        return storage

    yield make
    for storage in made:
        await storage.aclose()


def writer_target(backend: Backend, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return str(tmp_path / "markers.sqlite3")
    if backend == "redis":
        return f"{request.getfixturevalue('redis_server').url} {unique_prefix()}"
    return f"{request.getfixturevalue('redis_cluster').url} {unique_prefix()}"


def message(channel: str, replay_id: int, date: str = "2026-01-01T00:00:00.000Z") -> dict[str, Any]:
    return {
        "channel": channel,
        "data": {"event": {"replayId": replay_id}, "payload": {"CreatedDate": date}},
    }


# -- the contract, on every backend ----------------------------------------------------------


async def test_round_trip_and_default_id(
    storage_factory: Callable[..., ReplayMarkerStorage],
) -> None:
    storage = storage_factory()
    assert await storage.get_replay_marker(EVENT) is None
    assert await storage.get_replay_id(EVENT) is None
    await storage.set_replay_marker(EVENT, ReplayMarker("2026-01-01T00:00:00.000Z", 7))
    assert await storage.get_replay_marker(EVENT) == ReplayMarker("2026-01-01T00:00:00.000Z", 7)
    assert await storage.get_replay_id(EVENT) == 7
    # a second storage on the same data sees it; with a default id for what is not stored
    other = storage_factory(default_id=ReplayOption.ALL_EVENTS)
    assert await other.get_replay_id(EVENT) == 7
    assert await other.get_replay_id("/event/Other__e") == -2
    assert await other.markers() == {EVENT: ReplayMarker("2026-01-01T00:00:00.000Z", 7)}  # type: ignore[attr-defined]


async def test_subscription_keys_are_opaque(
    storage_factory: Callable[..., ReplayMarkerStorage],
) -> None:
    storage = storage_factory()
    for n, key in enumerate(ODD_KEYS, start=1):
        await storage.set_replay_marker(key, ReplayMarker("2026-01-01T00:00:00Z", n))
    for n, key in enumerate(ODD_KEYS, start=1):
        assert await storage.get_replay_marker(key) == ReplayMarker("2026-01-01T00:00:00Z", n)
    stored = await storage.markers()  # type: ignore[attr-defined]
    assert stored == {
        key: ReplayMarker("2026-01-01T00:00:00Z", n) for n, key in enumerate(ODD_KEYS, 1)
    }
    assert await storage.get_replay_marker("/topic/Accounts") is None


@pytest.mark.parametrize(
    ("first", "second", "kept"),
    [
        # a later date wins, whatever the replay ids (ids restart in a new org)
        (("2026-01-01T00:00:00.000Z", 90), ("2026-01-01T00:00:01.000Z", 3), 3),
        (("2026-01-01T00:00:01.000Z", 3), ("2026-01-01T00:00:00.000Z", 90), 3),
        # the same instant in other forms: then the replay id decides
        (("2026-01-01T00:00:00.000Z", 5), ("2026-01-01T01:00:00.000+0100", 4), 5),
        (("2026-01-01T00:00:00.000Z", 5), ("1767225600000", 6), 6),
        (("1767225600001", 1), ("2026-01-01T00:00:00.000Z", 2), 1),
        # microseconds count
        (("2026-01-01T00:00:00.000002Z", 1), ("2026-01-01T00:00:00.000001Z", 2), 1),
    ],
)
async def test_a_marker_never_moves_backwards(
    storage_factory: Callable[..., ReplayMarkerStorage],
    first: tuple[str, int],
    second: tuple[str, int],
    kept: int,
) -> None:
    storage = storage_factory()
    await storage.set_replay_marker(EVENT, ReplayMarker(*first))
    await storage.set_replay_marker(EVENT, ReplayMarker(*second))
    assert await storage.get_replay_id(EVENT) == kept
    # the same through another storage instance (another connection)
    other = storage_factory()
    await other.set_replay_marker(EVENT, ReplayMarker(*first))
    assert await storage.get_replay_id(EVENT) == kept


async def test_extract_and_the_manual_block(
    storage_factory: Callable[..., ReplayMarkerStorage],
) -> None:
    storage = storage_factory()
    await storage.extract_replay_id(message("/topic/T?Name='x'", 3))
    assert await storage.get_replay_id("/topic/T?Name='x'") == 3
    await storage.extract_replay_id(message(EVENT, 10))
    await storage.extract_replay_id(message(EVENT, 9))  # a replayed older event
    assert await storage.get_replay_id(EVENT) == 10
    with pytest.raises(RuntimeError):
        async with storage(message(EVENT, 11)):
            raise RuntimeError("processing failed")
    assert await storage.get_replay_id(EVENT) == 10
    async with storage(message(EVENT, 11)):
        pass
    assert await storage.get_replay_id(EVENT) == 11


async def test_bad_markers_are_replay_errors(
    storage_factory: Callable[..., ReplayMarkerStorage],
) -> None:
    storage = storage_factory()
    with pytest.raises(ReplayError, match="not a replay marker date"):
        await storage.set_replay_marker(EVENT, ReplayMarker("yesterday", 1))
    with pytest.raises(ReplayError, match="not a replay id"):
        await storage.set_replay_marker(EVENT, ReplayMarker("2026-01-01T00:00:00Z", 2**63))
    with pytest.raises(ReplayError, match="no replay id"):
        await storage.extract_replay_id({"channel": EVENT, "data": {"payload": {}}})
    assert await storage.get_replay_marker(EVENT) is None


async def test_concurrent_coroutines_keep_the_newest(
    storage_factory: Callable[..., ReplayMarkerStorage],
) -> None:
    storages = [storage_factory() for _ in range(4)]
    markers = [_writer.marker(n) for n in range(1, 121)]
    order = markers[::-1] + markers[::2] + markers[1::2]

    async def write(storage: ReplayMarkerStorage, part: list[ReplayMarker]) -> None:
        for marker in part:
            await storage.set_replay_marker(EVENT, marker)

    await asyncio.gather(*(write(s, order[i::4]) for i, s in enumerate(storages)))
    assert await storages[0].get_replay_marker(EVENT) == markers[-1]


async def start_writer(
    backend: Backend, target: str, seed: int, count: int, stdout: int = asyncio.subprocess.DEVNULL
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *(sys.executable, str(WRITER), backend, target, str(seed), str(count)),
        stdin=asyncio.subprocess.PIPE,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.timeout(90)
async def test_concurrent_processes_never_move_a_marker_backwards(
    backend: Backend, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Four processes write increasing markers, each followed by an older one, while this test
    reads: every marker read is not older than the one read before, and the newest one stays."""
    target = writer_target(backend, request, tmp_path)
    count = 150
    writers = [
        await start_writer(backend, target, seed, count, stdout=asyncio.subprocess.PIPE)
        for seed in range(4)
    ]
    for writer in writers:  # all open, then all go
        assert writer.stdout is not None
        assert writer.stderr is not None
        line = await writer.stdout.readline()
        assert line == b"READY\n", (await writer.stderr.read()).decode(errors="replace")
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.write(b"go\n")
    reader = _writer.open_storage(backend, target)
    seen: dict[str, list[int]] = {channel: [] for channel in _writer.CHANNELS}

    async def read_all() -> None:
        for channel in _writer.CHANNELS:
            marker = await reader.get_replay_marker(channel)
            if marker is not None:
                seen[channel].append(marker_order(marker)[1])

    try:
        for writer in writers:  # every writer halfway: a state between the first and the last
            assert writer.stdout is not None
            assert await writer.stdout.readline() == b"HALF\n"
        await read_all()
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write(b"go\n")
        running = [asyncio.ensure_future(writer.communicate()) for writer in writers]
        while not all(task.done() for task in running):
            await read_all()
            await asyncio.sleep(0)
        await read_all()
        for writer, task in zip(writers, running, strict=True):
            _, errors = task.result()
            assert writer.returncode == 0, errors.decode()
        for channel in _writer.CHANNELS:
            assert await reader.get_replay_marker(channel) == _writer.marker(count)
            observed = seen[channel]
            # the halfway state and the last one at least (more as the CPU allows)
            assert len(set(observed)) >= 2, "the reader saw the writers at work"
            assert observed == sorted(observed), f"{channel} moved backwards: {observed}"
    finally:
        await _writer.close_storage(reader)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_a_writer_killed_mid_stream_loses_no_committed_marker(
    backend: Backend, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    target = writer_target(backend, request, tmp_path)
    process = await start_writer(backend, target, 0, 0, stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    try:
        for _ in range(40):  # markers committed (both channels) and acknowledged
            last = int(await process.stdout.readline())
    finally:
        process.send_signal(signal.SIGKILL)
        await process.communicate()
    assert process.returncode == -signal.SIGKILL
    storage = _writer.open_storage(backend, target)
    try:
        for channel in _writer.CHANNELS:
            marker = await storage.get_replay_marker(channel)
            assert marker is not None
            # what was acknowledged is there; a write in flight may have landed too
            assert marker.replay_id >= last
            assert marker == _writer.marker(marker.replay_id)
    finally:
        await _writer.close_storage(storage)
    if backend == "sqlite":
        with sqlite3.connect(target) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        connection.close()


@pytest.mark.parametrize("policy", list(ReplayMarkerStoragePolicy))
@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_client_resumes_from_the_storage(
    backend: Backend,
    policy: ReplayMarkerStoragePolicy,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    target = writer_target(backend, request, tmp_path)
    async with Emulator(events={"Order__e": ["Amount__c", "N__c"]}, hold_time=0.2) as org:
        for n in range(5):
            await org.publish(EVENT, {"N__c": n})

        async def run(count: int) -> list[int]:
            storage = _writer.open_storage(backend, target)
            assert isinstance(storage, SqliteStorage | RedisStorage)
            storage.default_id = int(ReplayOption.ALL_EVENTS)
            auth = PasswordAuthenticator(
                org.consumer_key,
                org.consumer_secret,
                org.username,
                org.password,
                login_url=org.login_url,
            )
            ids = []
            try:
                async with Client(auth, replay=storage, replay_storage_policy=policy) as client:
                    await client.subscribe(EVENT)
                    async with asyncio.timeout(10):
                        for _ in range(count):
                            received = await client.receive()
                            if policy is ReplayMarkerStoragePolicy.MANUAL:
                                async with storage(received):
                                    ids.append(received["data"]["event"]["replayId"])
                            else:
                                ids.append(received["data"]["event"]["replayId"])
            finally:
                await storage.aclose()
            return ids

        first = await run(3)
        second = await run(2)
        assert first + second == [1, 2, 3, 4, 5]


# -- SQLite specifics ------------------------------------------------------------------------


async def test_sqlite_file_settings_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "markers.sqlite3"
    with SqliteStorage(path, synchronous="FULL") as storage:
        assert storage.path == path
        await storage.set_replay_marker(EVENT, ReplayMarker("2026-01-01T00:00:00Z", 1))
        assert "markers.sqlite3" in repr(storage)
    assert storage.closed
    assert "closed" in repr(storage)
    storage.close()  # idempotent
    with pytest.raises(ReplayError, match="is closed"):
        await storage.get_replay_marker(EVENT)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    connection.close()
    async with SqliteStorage(path) as again:
        assert await again.get_replay_id(EVENT) == 1


def test_sqlite_open_errors_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ReplayError) as missing:
        SqliteStorage(tmp_path / "no" / "such" / "markers")
    assert str(missing.value) == (
        f"cannot open the replay store {tmp_path / 'no/such/markers'}: "
        f"the directory {tmp_path / 'no/such'} does not exist"
    )
    with pytest.raises(ReplayError, match="it is a directory"):
        SqliteStorage(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("not a database, but long enough to look like a file header " * 4)
    with pytest.raises(ReplayError, match=r"notes.txt is not an SQLite database$"):
        SqliteStorage(text)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE Dict (key BLOB, value BLOB)")
    connection.close()
    with pytest.raises(ReplayError, match=r"an SQLite database without replay markers .*Dict"):
        SqliteStorage(other)
    with pytest.raises(TypeError, match="default_id"):
        SqliteStorage(tmp_path / "x", default_id="all")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="synchronous"):
        SqliteStorage(tmp_path / "x", synchronous="OFF")  # type: ignore[arg-type]


def test_sqlite_opens_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    """Opening needs to upgrade its lock (to put the file in WAL mode, to make the table); while
    another connection holds the write lock, SQLite refuses that at once instead of waiting with
    the busy timeout (it could deadlock). The storage waits (up to ``timeout``) and opens."""

    def rollback_mode_file(name: str) -> tuple[Path, sqlite3.Connection]:
        path = tmp_path / name
        with sqlite3.connect(path) as seed:
            seed.execute("PRAGMA user_version = 1")  # a database file in rollback mode, no table
        seed.close()
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")  # another writer, in the middle of a transaction
        return path, holder

    path, holder = rollback_mode_file("markers.db")
    try:
        release = threading.Timer(0.3, holder.execute, ("COMMIT",))
        release.start()
        SqliteStorage(path, timeout=10).close()
        release.join()
    finally:
        holder.close()
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    check.close()
    # held for longer than the timeout: a clear error, once the timeout is over
    path, holder = rollback_mode_file("other.db")
    try:
        with pytest.raises(
            ReplayError, match=r"cannot open the replay store .*: database is locked"
        ):
            SqliteStorage(path, timeout=0.2)
    finally:
        holder.close()


async def test_sqlite_write_errors_are_replay_errors(tmp_path: Path) -> None:
    path = tmp_path / "markers.sqlite3"
    async with SqliteStorage(path, timeout=0.05) as storage:
        await storage.set_replay_marker(EVENT, ReplayMarker("2026-01-01T00:00:00Z", 1))
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        try:
            with pytest.raises(ReplayError, match=r"cannot store .*Order__e.*: database is locked"):
                await storage.set_replay_marker(EVENT, ReplayMarker("2026-01-01T00:00:00Z", 2))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await storage.set_replay_marker(EVENT, ReplayMarker("2026-01-01T00:00:00Z", 3))
        assert await storage.get_replay_id(EVENT) == 3
        with pytest.raises(ReplayError, match="cannot read"):
            await storage.get_replay_marker("\udc80")  # not encodable


async def test_sqlite_waits_for_another_writer_off_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "markers.sqlite3"
    async with SqliteStorage(path) as storage:
        blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")  # another process writing
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        release = asyncio.get_running_loop().call_later(0.3, blocker.execute, "COMMIT")
        try:
            await storage.set_replay_marker(EVENT, ReplayMarker("2026-01-01T00:00:00Z", 1))
        finally:
            release.cancel()
            ticking.cancel()
            blocker.close()
        assert ticks >= 10  # the loop ran while the write waited for the lock
        assert await storage.get_replay_id(EVENT) == 1


def stored_row(path: Path) -> tuple[str, int] | None:
    """The marker of EVENT in the file at ``path``, read by a connection of its own."""
    connection = sqlite3.connect(path)
    try:
        row = connection.execute(
            "SELECT date, replay_id FROM sfstream_replay_markers WHERE subscription = ?",
            (EVENT,),
        ).fetchone()
    finally:
        connection.close()
    return None if row is None else (row[0], row[1])


async def held_write(path: Path, storage: SqliteStorage) -> tuple[sqlite3.Connection, Any]:
    """A write of replay id 7 for EVENT, waiting on the storage's worker thread for the write
    lock that another connection (returned) holds."""
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")  # another process writing
    writing = asyncio.create_task(
        storage.set_replay_marker(EVENT, ReplayMarker("2026-01-01T00:00:00Z", 7))
    )
    await asyncio.sleep(0.05)  # the lock is taken: the write went to the worker thread
    assert not writing.done()
    return blocker, writing


async def test_sqlite_aclose_waits_for_a_held_write_while_the_loop_runs(tmp_path: Path) -> None:
    path = tmp_path / "markers.sqlite3"
    storage = SqliteStorage(path, timeout=30)
    blocker, writing = await held_write(path, storage)
    try:
        closing = asyncio.create_task(storage.aclose())
        again = asyncio.create_task(storage.aclose())  # closing twice is harmless
        ticks = 0
        for _ in range(10):  # other tasks run while close waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 10
        assert not closing.done()
        assert not again.done()
        assert not writing.done()
        assert storage.closed
        with pytest.raises(ReplayError, match="is closed"):
            await storage.get_replay_marker(EVENT)
        with pytest.raises(ReplayError, match="is closed"):
            await storage.set_replay_marker(EVENT, ReplayMarker("2026-01-01T00:00:00Z", 8))
        blocker.execute("COMMIT")  # the other process is done: the held write goes on
        async with asyncio.timeout(10):
            await closing
        assert writing.done()  # ended when aclose() returned
        await writing  # ... and landed
        async with asyncio.timeout(10):
            await again
    finally:
        blocker.close()
    assert stored_row(path) == ("2026-01-01T00:00:00Z", 7)
    await storage.aclose()
    storage.close()


async def test_sqlite_close_in_a_coroutine_does_not_block_the_loop(tmp_path: Path) -> None:
    # before: close() waited on the event loop for the worker thread, so the loop could not
    # run what would release the lock; the held write failed with "database is locked" once
    # the store's timeout ran out (and the loop stood still until then)
    path = tmp_path / "markers.sqlite3"
    storage = SqliteStorage(path, timeout=5)
    blocker, writing = await held_write(path, storage)
    try:
        release = asyncio.get_running_loop().call_later(0.2, blocker.execute, "COMMIT")
        storage.close()
        assert storage.closed
        with pytest.raises(ReplayError, match="is closed"):
            await storage.get_replay_marker(EVENT)
        async with asyncio.timeout(10):
            await writing  # landed after close() returned: the loop released the lock
            await storage.aclose()  # waits for the worker thread to close the file
        release.cancel()
    finally:
        blocker.close()
    assert stored_row(path) == ("2026-01-01T00:00:00Z", 7)


async def test_sqlite_aclose_reports_a_held_write_that_fails_to_its_caller(
    tmp_path: Path,
) -> None:
    path = tmp_path / "markers.sqlite3"
    storage = SqliteStorage(path, timeout=1.0)
    blocker, writing = await held_write(path, storage)
    try:
        async with asyncio.timeout(10):
            await storage.aclose()  # the lock is never released: the write times out
        assert writing.done()
        with pytest.raises(ReplayError, match="database is locked"):
            await writing
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert stored_row(path) is None


def file_size(path: str) -> int:
    return os.path.getsize(path)


async def test_sqlite_keeps_the_wal_file_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes on the event loop do not checkpoint: every CHECKPOINT_EVERY writes, one does."""
    from sfstream.salesforce import _sqlite

    monkeypatch.setattr(_sqlite, "CHECKPOINT_EVERY", 50)
    path = tmp_path / "markers.sqlite3"
    async with SqliteStorage(path) as storage:
        for n in range(600):
            await storage.set_replay_marker(EVENT, ReplayMarker("2026-01-01T00:00:00Z", n))
        wal = file_size(f"{path}-wal")
    # one page frame (4 KiB) or more per write: 600 writes without checkpoints make 2.4 MB
    assert wal < 100 * 4096


# -- Redis specifics -------------------------------------------------------------------------


async def test_redis_keys_share_one_hash_tag(redis_cluster: RedisClusterServers) -> None:
    prefixes = ["alpha", "beta", "gamma", "delta"]
    slots = set()
    for prefix in prefixes:
        async with RedisStorage(redis_cluster.url, prefix=prefix, cluster=True) as storage:
            await storage.set_replay_marker(ODD_KEYS[0], ReplayMarker("2026-01-01T00:00:00Z", 1))
            port = redis_cluster.nodes[0].port
            marker_slot = redis_command(port, "CLUSTER", "KEYSLOT", storage.key(ODD_KEYS[0]))
            index_slot = redis_command(port, "CLUSTER", "KEYSLOT", f"{{{prefix}}}:subscriptions")
            assert marker_slot == index_slot
            slots.add(marker_slot)
            assert await storage.markers() == {ODD_KEYS[0]: ReplayMarker("2026-01-01T00:00:00Z", 1)}
    assert len(slots) == len(prefixes)  # different prefixes spread over the cluster


async def test_redis_with_a_client_of_yours(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        prefix = unique_prefix()
        storage = RedisStorage(client, prefix=prefix, default_id=5)
        assert storage.client is client
        assert await storage.get_replay_id(EVENT) == 5
        await storage.set_replay_marker(EVENT, ReplayMarker("2026-01-01T00:00:00Z", 8))
        assert await storage.get_replay_marker(EVENT) == ReplayMarker("2026-01-01T00:00:00Z", 8)
        stored = await client.hgetall(storage.key(EVENT))
        assert stored["date"] == "2026-01-01T00:00:00Z"
        assert stored["replay_id"] == "8"
        await storage.aclose()
        assert await client.ping()  # not closed: it is yours
        # a damaged value
        await client.hset(storage.key(EVENT), "replay_id", "eight")
        with pytest.raises(ReplayError, match="is not a replay marker"):
            await storage.get_replay_marker(EVENT)
        # a damaged order is replaced rather than blocking every later marker
        await client.hset(storage.key(EVENT), mapping={"order": "garbage", "replay_id": "8"})
        await storage.set_replay_marker(EVENT, ReplayMarker("2020-01-01T00:00:00Z", 1))
        assert await storage.get_replay_id(EVENT) == 1
        # a key of another type
        await client.set(storage.key("/u/x"), "a string")
        with pytest.raises(ReplayError, match="WRONGTYPE"):
            await storage.set_replay_marker("/u/x", ReplayMarker("2020-01-01T00:00:00Z", 1))
    finally:
        await client.aclose()
    assert "prefix=" in repr(storage)


async def test_redis_errors_name_the_server_without_the_password() -> None:
    port = free_port()  # nothing listens there
    async with RedisStorage(f"redis://user:s3cret@127.0.0.1:{port}/0") as storage:
        with pytest.raises(ReplayError) as read:
            await storage.get_replay_marker(EVENT)
        with pytest.raises(ReplayError) as write:
            await storage.set_replay_marker(EVENT, ReplayMarker("2026-01-01T00:00:00Z", 1))
        with pytest.raises(ReplayError) as listing:
            await storage.markers()
    for error in (read, write, listing):
        text = str(error.value)
        assert f"Redis at 127.0.0.1:{port}" in text
        assert "s3cret" not in text
        assert "s3cret" not in repr(storage)
    assert str(read.value).startswith(f"cannot read the replay marker of {EVENT!r}")
    assert str(write.value).startswith(f"cannot store the replay marker of {EVENT!r}")


def test_redis_argument_checks() -> None:
    for prefix in ("", "a{b", "c}"):
        with pytest.raises(InvalidArgumentError, match="prefix"):
            RedisStorage("redis://127.0.0.1:1", prefix=prefix)
    with pytest.raises(TypeError, match="default_id"):
        RedisStorage("redis://127.0.0.1:1", default_id=True)


async def test_redis_server_restart_is_reported_then_recovers(tmp_path: Path) -> None:
    from tests._servers import running_redis

    with running_redis(tmp_path / "a") as server:
        async with RedisStorage(server.url) as storage:
            await storage.set_replay_marker(EVENT, ReplayMarker("2026-01-01T00:00:00Z", 1))
            server.kill()
            with pytest.raises(ReplayError, match="cannot store"):
                await storage.set_replay_marker(EVENT, ReplayMarker("2026-01-01T00:00:00Z", 2))


def test_import_sfstream_imports_no_engine() -> None:
    code = (
        "import sys, sfstream, sfstream.replay, sfstream.salesforce\n"
        "engines = sorted(m for m in sys.modules if m.split('.')[0] in ('redis', 'nats'))\n"
        "assert not engines, engines\n"
        "print('ok')"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.stdout == "ok\n", run.stderr


def test_a_missing_server_fails_and_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import _servers

    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(pytest.fail.Exception) as failed:
        _servers.server_binary("redis-server", "/nonexistent/redis-server")
    assert "redis-server is not installed" in str(failed.value)
    assert "`.ci/run` installs it" in str(failed.value)
