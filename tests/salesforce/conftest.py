"""Real Redis servers for the storage tests (see :mod:`tests._servers`)."""

from __future__ import annotations

from tests._servers import redis_cluster, redis_server

__all__ = ["redis_cluster", "redis_server"]
