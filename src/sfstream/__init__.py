"""sfstream: stream Salesforce events (PushTopics, generic channels, Platform Events, Change Data
Capture) over the Streaming API with asyncio.
"""

from __future__ import annotations

from sfstream import exceptions
from sfstream.exceptions import (
    AiosfstreamException,
    AuthenticationError,
    ClientError,
    ClientInvalidOperation,
    ReplayError,
    ServerError,
    SfstreamError,
    TransportConnectionClosed,
    TransportError,
    TransportInvalidOperation,
    TransportTimeoutError,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "AiosfstreamException",
    "AuthenticationError",
    "ClientError",
    "ClientInvalidOperation",
    "ReplayError",
    "ServerError",
    "SfstreamError",
    "TransportConnectionClosed",
    "TransportError",
    "TransportInvalidOperation",
    "TransportTimeoutError",
    "__version__",
    "exceptions",
]
