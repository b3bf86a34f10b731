"""Fixtures of the relay tests: real redis-server processes (see ``_engines.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.relay._engines import RedisCluster, RedisServer, have_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if not have_redis():  # pragma: no cover - CI installs it (.ci/run)
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_cluster() -> Iterator[RedisCluster]:
    if not have_redis():  # pragma: no cover - CI installs it (.ci/run)
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    cluster = RedisCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()
