"""sfstream: stream Salesforce events (PushTopics, generic channels, Platform Events, Change Data
Capture) over the Streaming API with asyncio.

The names are those of aiosfstream: code written for it runs after changing its import line.
"""

from __future__ import annotations

from sfstream import exceptions
from sfstream.bayeux import Status, StatusKind
from sfstream.exceptions import (
    AiosfstreamException,
    AuthenticationError,
    AuthenticationTransportError,
    ClientError,
    ClientInvalidOperation,
    InvalidArgumentError,
    ReplayError,
    ServerError,
    SfstreamError,
    TransportConnectionClosed,
    TransportError,
    TransportInvalidOperation,
    TransportTimeoutError,
)
from sfstream.salesforce import (
    AccessTokenAuthenticator,
    AuthenticatorBase,
    Client,
    ClientCredentialsAuthenticator,
    ConstantReplayId,
    DefaultMappingStorage,
    JwtBearerAuthenticator,
    MappingStorage,
    PasswordAuthenticator,
    RedisStorage,
    RefreshTokenAuthenticator,
    ReplayMarker,
    ReplayMarkerStorage,
    ReplayMarkerStoragePolicy,
    ReplayOption,
    SalesforceStreamingClient,
    SqliteStorage,
)

__version__ = "0.1.0.dev0"

# Show the public names where users import them from (reprs, pickles of ReplayMarker).
for _name in ("ReplayMarker", "ReplayOption", "ReplayMarkerStoragePolicy"):
    globals()[_name].__module__ = __name__
del _name

__all__ = [
    "AccessTokenAuthenticator",
    "AiosfstreamException",
    "AuthenticationError",
    "AuthenticationTransportError",
    "AuthenticatorBase",
    "Client",
    "ClientCredentialsAuthenticator",
    "ClientError",
    "ClientInvalidOperation",
    "ConstantReplayId",
    "DefaultMappingStorage",
    "InvalidArgumentError",
    "JwtBearerAuthenticator",
    "MappingStorage",
    "PasswordAuthenticator",
    "RedisStorage",
    "RefreshTokenAuthenticator",
    "ReplayError",
    "ReplayMarker",
    "ReplayMarkerStorage",
    "ReplayMarkerStoragePolicy",
    "ReplayOption",
    "SalesforceStreamingClient",
    "ServerError",
    "SfstreamError",
    "SqliteStorage",
    "Status",
    "StatusKind",
    "TransportConnectionClosed",
    "TransportError",
    "TransportInvalidOperation",
    "TransportTimeoutError",
    "__version__",
    "exceptions",
]
