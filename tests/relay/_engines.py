"""Real engines for the relay tests: the ``redis-server`` processes of :mod:`tests._servers`.

There is one way to start redis-server in the tests, :mod:`tests._servers`; this module keeps
the names the relay's tests, chaos campaign and documentation tests import.
:class:`RedisServer` is one ``redis-server``; :class:`RedisCluster` is three masters and three
replicas (short ``cluster-node-timeout``: a killed master fails over within about two seconds).
"""

from __future__ import annotations

from tests._servers import RedisCluster, RedisServer, free_port

__all__ = ["RedisCluster", "RedisServer", "free_port"]
