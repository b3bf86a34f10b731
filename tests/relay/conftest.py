"""Fixtures of the relay tests: a real redis-server (or Redis Cluster), or a real nats-server with
JetStream, of each test's own.

The servers come from :mod:`tests._servers` (the one implementation); unlike its session-wide
fixtures, these are per test, since relay tests kill servers and reuse lease names.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._servers import RedisCluster, RedisServer
from tests.relay._nats_servers import NatsServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path / "redis-cluster").start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    with NatsServer(tmp_path) as server:
        yield server
