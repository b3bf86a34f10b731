"""Replay types, under the module name aiosfstream used (``aiosfstream.replay``)."""

from __future__ import annotations

from sfstream.salesforce._replay import (
    ConstantReplayId,
    DefaultMappingStorage,
    MappingStorage,
    ReplayMarker,
    ReplayMarkerStorage,
    ReplayMarkerStoragePolicy,
    ReplayOption,
)

__all__ = [
    "ConstantReplayId",
    "DefaultMappingStorage",
    "MappingStorage",
    "ReplayMarker",
    "ReplayMarkerStorage",
    "ReplayMarkerStoragePolicy",
    "ReplayOption",
]
