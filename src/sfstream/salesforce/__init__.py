"""The Salesforce layer: authenticators, replay, and the Salesforce streaming client.

Composed on :mod:`sfstream.bayeux` and never patching it; see ``docs/`` for the guide.
"""

from __future__ import annotations

from sfstream.salesforce._auth import (
    DEFAULT_TOKEN_TIMEOUT,
    JWT_BEARER_GRANT_TYPE,
    JWT_LIFETIME,
    MAX_TOKEN_RESPONSE_SIZE,
    PRODUCTION_LOGIN_URL,
    SANDBOX_LOGIN_URL,
    TOKEN_PATH,
    AccessTokenAuthenticator,
    AuthenticatorBase,
    ClientCredentialsAuthenticator,
    JwtBearerAuthenticator,
    PasswordAuthenticator,
    RefreshTokenAuthenticator,
    TokenRequest,
    check_url,
    send_token_request,
)
from sfstream.salesforce._client import (
    COMETD_PATH,
    DEFAULT_API_VERSION,
    Client,
    SalesforceStreamingClient,
)
from sfstream.salesforce._login import (
    authenticator_from_login,
    authenticator_from_sf_org,
    default_sf_org,
    domain_login_url,
    sf_org_display,
)
from sfstream.salesforce._redis import RedisStorage
from sfstream.salesforce._replay import (
    ConstantReplayId,
    DefaultMappingStorage,
    MappingStorage,
    ReplayExtension,
    ReplayMarker,
    ReplayMarkerStorage,
    ReplayMarkerStoragePolicy,
    ReplayOption,
    ReplayParameter,
    channel_key,
    create_replay_storage,
    is_replay_error,
    marker_from_message,
    parse_marker_date,
)
from sfstream.salesforce._sqlite import SqliteStorage

__all__ = [
    "COMETD_PATH",
    "DEFAULT_API_VERSION",
    "DEFAULT_TOKEN_TIMEOUT",
    "JWT_BEARER_GRANT_TYPE",
    "JWT_LIFETIME",
    "MAX_TOKEN_RESPONSE_SIZE",
    "PRODUCTION_LOGIN_URL",
    "SANDBOX_LOGIN_URL",
    "TOKEN_PATH",
    "AccessTokenAuthenticator",
    "AuthenticatorBase",
    "Client",
    "ClientCredentialsAuthenticator",
    "ConstantReplayId",
    "DefaultMappingStorage",
    "JwtBearerAuthenticator",
    "MappingStorage",
    "PasswordAuthenticator",
    "RedisStorage",
    "RefreshTokenAuthenticator",
    "ReplayExtension",
    "ReplayMarker",
    "ReplayMarkerStorage",
    "ReplayMarkerStoragePolicy",
    "ReplayOption",
    "ReplayParameter",
    "SalesforceStreamingClient",
    "SqliteStorage",
    "TokenRequest",
    "authenticator_from_login",
    "authenticator_from_sf_org",
    "channel_key",
    "check_url",
    "create_replay_storage",
    "default_sf_org",
    "domain_login_url",
    "is_replay_error",
    "marker_from_message",
    "parse_marker_date",
    "send_token_request",
    "sf_org_display",
]
