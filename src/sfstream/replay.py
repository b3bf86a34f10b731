"""Replay types, under the module name aiosfstream used (``aiosfstream.replay``), and the
storages sfstream adds (:class:`SqliteStorage`, :class:`RedisStorage`)."""

from __future__ import annotations

from sfstream.salesforce._redis import RedisStorage
from sfstream.salesforce._replay import (
    ConstantReplayId,
    DefaultMappingStorage,
    MappingStorage,
    ReplayMarker,
    ReplayMarkerStorage,
    ReplayMarkerStoragePolicy,
    ReplayOption,
)
from sfstream.salesforce._sqlite import SqliteStorage

__all__ = [
    "ConstantReplayId",
    "DefaultMappingStorage",
    "MappingStorage",
    "RedisStorage",
    "ReplayMarker",
    "ReplayMarkerStorage",
    "ReplayMarkerStoragePolicy",
    "ReplayOption",
    "SqliteStorage",
]
