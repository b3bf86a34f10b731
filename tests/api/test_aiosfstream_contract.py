"""The documented API of aiosfstream 0.5.0 is sfstream's contract (design.md, section 4).

Each signature below is copied from aiosfstream's API reference: every parameter exists in
sfstream under the same name, in the same order, of the same kind (positional or keyword-only)
and with the same default. sfstream may add keyword-only parameters after them. The deliberate
differences are those docs/migration.md lists; they are named where they apply.
"""

from __future__ import annotations

import copy
import inspect
import json
import pickle
from typing import Any

import pytest

import sfstream
from sfstream import (
    Client,
    ConstantReplayId,
    DefaultMappingStorage,
    MappingStorage,
    PasswordAuthenticator,
    RefreshTokenAuthenticator,
    ReplayMarker,
    ReplayMarkerStorage,
    ReplayMarkerStoragePolicy,
    ReplayOption,
    SalesforceStreamingClient,
    exceptions,
)
from sfstream import auth as sfstream_auth

POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD
KEYWORD = inspect.Parameter.KEYWORD_ONLY
VAR_KEYWORD = inspect.Parameter.VAR_KEYWORD
REQUIRED = inspect.Parameter.empty

_CLIENT_OPTIONS: list[tuple[str, Any, Any]] = [
    ("replay", KEYWORD, ReplayOption.NEW_EVENTS),
    ("replay_fallback", KEYWORD, None),
    ("replay_storage_policy", KEYWORD, ReplayMarkerStoragePolicy.AUTOMATIC),
    ("connection_timeout", KEYWORD, 10.0),
    ("max_pending_count", KEYWORD, 100),
]
_JSON: list[tuple[str, Any, Any]] = [
    ("json_dumps", KEYWORD, json.dumps),
    ("json_loads", KEYWORD, json.loads),
]

#: (callable, [(name, kind, default)]) in aiosfstream's order.
DOCUMENTED: dict[str, tuple[Any, list[tuple[str, Any, Any]]]] = {
    "Client": (
        Client,
        [
            ("authenticator", POSITIONAL, REQUIRED),
            *_CLIENT_OPTIONS,
            *_JSON,
            ("loop", KEYWORD, None),
        ],
    ),
    "SalesforceStreamingClient": (
        SalesforceStreamingClient,
        [
            # required in aiosfstream; optional in sfstream, which also takes
            # simple-salesforce's login parameters (migration.md, "What is new"), and says
            # which are missing when the client is built
            ("consumer_key", KEYWORD, None),
            ("consumer_secret", KEYWORD, None),
            ("username", KEYWORD, None),
            ("password", KEYWORD, None),
            *_CLIENT_OPTIONS,
            ("sandbox", KEYWORD, False),
            *_JSON,
            ("loop", KEYWORD, None),
        ],
    ),
    "AuthenticatorBase": (
        sfstream_auth.AuthenticatorBase,
        [
            ("sandbox", POSITIONAL, False),
            ("json_dumps", POSITIONAL, json.dumps),
            ("json_loads", POSITIONAL, json.loads),
        ],
    ),
    "PasswordAuthenticator": (
        PasswordAuthenticator,
        [
            ("consumer_key", POSITIONAL, REQUIRED),
            ("consumer_secret", POSITIONAL, REQUIRED),
            ("username", POSITIONAL, REQUIRED),
            ("password", POSITIONAL, REQUIRED),
            ("sandbox", POSITIONAL, False),
            ("json_dumps", POSITIONAL, json.dumps),
            ("json_loads", POSITIONAL, json.loads),
        ],
    ),
    "RefreshTokenAuthenticator": (
        RefreshTokenAuthenticator,
        [
            ("consumer_key", POSITIONAL, REQUIRED),
            ("consumer_secret", POSITIONAL, REQUIRED),
            ("refresh_token", POSITIONAL, REQUIRED),
            ("sandbox", POSITIONAL, False),
            ("json_dumps", POSITIONAL, json.dumps),
            ("json_loads", POSITIONAL, json.loads),
        ],
    ),
    "MappingStorage": (MappingStorage, [("mapping", POSITIONAL, REQUIRED)]),
    "DefaultMappingStorage": (
        DefaultMappingStorage,
        [("mapping", POSITIONAL, REQUIRED), ("default_id", POSITIONAL, REQUIRED)],
    ),
    "ConstantReplayId": (
        ConstantReplayId,
        [("default_id", POSITIONAL, REQUIRED), ("kwargs", VAR_KEYWORD, REQUIRED)],
    ),
    "ServerError": (
        exceptions.ServerError,
        # aiosfstream: ServerError(message, response); sfstream lets response default
        [("message", POSITIONAL, REQUIRED), ("response", POSITIONAL, None)],
    ),
    "Client.publish": (
        Client.publish,
        [("channel", POSITIONAL, REQUIRED), ("data", POSITIONAL, REQUIRED)],
    ),
    "Client.subscribe": (Client.subscribe, [("channel", POSITIONAL, REQUIRED)]),
    "Client.unsubscribe": (Client.unsubscribe, [("channel", POSITIONAL, REQUIRED)]),
    "Client.receive": (Client.receive, []),
    "Client.open": (Client.open, []),
    "Client.close": (Client.close, []),
    "Client.create_replay_storage": (
        Client.create_replay_storage,
        [("replay_param", POSITIONAL, REQUIRED)],
    ),
    # sfstream adds api_version after it (migration.md, "Other API details")
    "Client.get_cometd_url": (Client.get_cometd_url, [("instance_url", POSITIONAL, REQUIRED)]),
    "ReplayMarkerStorage.get_replay_marker": (
        ReplayMarkerStorage.get_replay_marker,
        [("subscription", POSITIONAL, REQUIRED)],
    ),
    "ReplayMarkerStorage.set_replay_marker": (
        ReplayMarkerStorage.set_replay_marker,
        [("subscription", POSITIONAL, REQUIRED), ("replay_marker", POSITIONAL, REQUIRED)],
    ),
    "ReplayMarkerStorage.extract_replay_id": (
        ReplayMarkerStorage.extract_replay_id,
        [("message", POSITIONAL, REQUIRED)],
    ),
    "ReplayMarkerStorage.__call__": (
        ReplayMarkerStorage.__call__,
        [("message", POSITIONAL, REQUIRED)],
    ),
}


def _parameters(target: Any) -> list[inspect.Parameter]:
    parameters = list(inspect.signature(target).parameters.values())
    if parameters and parameters[0].name == "self":
        parameters = parameters[1:]
    return parameters


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_documented_parameters(name: str) -> None:
    """Positional parameters in aiosfstream's order; keyword-only ones by name (their order
    does not matter to a caller). Parameters sfstream adds have defaults, and are keyword-only
    unless they come after every documented one."""
    target, documented = DOCUMENTED[name]
    actual = _parameters(target)
    by_name = {parameter.name: parameter for parameter in actual}
    positional = [p for p in actual if p.kind is not KEYWORD]
    expected_positional = [entry for entry in documented if entry[1] is not KEYWORD]
    for index, (expected_name, kind, default) in enumerate(documented):
        assert expected_name in by_name, f"{name} has no parameter {expected_name}"
        parameter = by_name[expected_name]
        assert parameter.kind is kind, f"{name}({expected_name}) is {parameter.kind}"
        assert parameter.default == default, f"{name}({expected_name}={parameter.default!r})"
        if kind is not KEYWORD:
            assert positional.index(parameter) == index, f"{name}: {expected_name} moved"
    known = {entry[0] for entry in documented}
    for parameter in actual:
        if parameter.name in known:
            continue
        assert parameter.default is not REQUIRED, f"{name} requires {parameter.name}"
        if parameter.kind is not KEYWORD:
            assert positional.index(parameter) >= len(expected_positional), (
                f"{name}: {parameter.name} comes before a documented positional parameter"
            )


def test_streaming_client_takes_every_option_of_client() -> None:
    """SalesforceStreamingClient's "other parameters are those of Client"."""
    client = inspect.signature(Client).parameters
    streaming = inspect.signature(SalesforceStreamingClient).parameters
    for name, parameter in client.items():
        if name == "authenticator":
            continue
        assert name in streaming, f"SalesforceStreamingClient has no {name}="
        assert streaming[name].kind is KEYWORD
        assert streaming[name].default == parameter.default, name


def test_documented_constants_and_attributes() -> None:
    assert {option.name: option.value for option in ReplayOption} == {
        "ALL_EVENTS": -2,
        "NEW_EVENTS": -1,
    }
    assert {policy.name: policy.value for policy in ReplayMarkerStoragePolicy} == {
        "AUTOMATIC": 1,
        "MANUAL": 2,
    }
    assert ReplayMarker._fields == ("date", "replay_id")
    assert issubclass(ReplayMarker, tuple)
    for attribute in (
        "closed",
        "subscriptions",
        "connection_type",
        "pending_count",
        "has_pending_messages",
        "replay_storage",
        "replay_storage_policy",
    ):
        assert hasattr(Client, attribute), attribute
    client = Client(PasswordAuthenticator("key", "secret", "user", "password"))
    assert client.replay_fallback is None
    assert client.closed is True
    assert client.subscriptions == set()
    assert client.connection_type is None
    assert client.pending_count == 0
    assert client.has_pending_messages is False
    assert isinstance(client.replay_storage, ConstantReplayId)
    assert client.replay_storage_policy is ReplayMarkerStoragePolicy.AUTOMATIC
    password = PasswordAuthenticator("key", "secret", "user", "password")
    assert (password.client_id, password.client_secret) == ("key", "secret")
    assert (password.username, password.password) == ("user", "password")
    refresh = RefreshTokenAuthenticator("key", "secret", "token")
    assert (refresh.client_id, refresh.client_secret, refresh.refresh_token) == (
        "key",
        "secret",
        "token",
    )
    error = exceptions.ServerError("refused", {"error": "400:a,b:The replayId {1} was invalid"})
    assert (error.message, error.error) == ("refused", "400:a,b:The replayId {1} was invalid")
    assert (error.error_code, error.error_args) == (400, ["a", "b"])
    assert error.error_message == "The replayId {1} was invalid"
    assert error.response == {"error": "400:a,b:The replayId {1} was invalid"}


def test_documented_module_paths() -> None:
    # aiosfstream.X, aiosfstream.auth.AuthenticatorBase, aiosfstream.exceptions.X
    for name in (
        "Client",
        "SalesforceStreamingClient",
        "PasswordAuthenticator",
        "RefreshTokenAuthenticator",
        "ReplayOption",
        "ReplayMarker",
        "ReplayMarkerStorage",
        "ReplayMarkerStoragePolicy",
        "MappingStorage",
        "DefaultMappingStorage",
        "ConstantReplayId",
    ):
        assert name in sfstream.__all__, name
    assert sfstream_auth.AuthenticatorBase is sfstream.AuthenticatorBase
    for name in (
        "AiosfstreamException",
        "AuthenticationError",
        "ClientError",
        "ClientInvalidOperation",
        "TransportError",
        "TransportInvalidOperation",
        "TransportTimeoutError",
        "TransportConnectionClosed",
        "ServerError",
        "ReplayError",
    ):
        assert name in exceptions.__all__, name
        assert issubclass(getattr(exceptions, name), exceptions.AiosfstreamException)


@pytest.mark.parametrize(
    "error",
    [
        exceptions.SfstreamError("failed"),
        exceptions.ServerError("refused", {"error": "403::Unknown client"}),
        exceptions.AuthenticationError("refused", error="invalid_grant", status=400),
        exceptions.AuthenticationTransportError("unreachable", status=503),
        exceptions.HTTPStatusError("HTTP 502", status=502, reason="Bad Gateway"),
        exceptions.ProtocolError("not Bayeux"),
        exceptions.InvalidArgumentError("bad"),
        exceptions.ReplayError("no marker"),
        exceptions.TransportTimeoutError("timeout"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_every_exception_survives_pickle_and_copy(error: Exception) -> None:
    """multiprocessing, concurrent.futures and copy.copy() rebuild exceptions from
    ``__reduce__``; HTTPStatusError's required keyword ``status`` used to break that."""
    for rebuilt in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(rebuilt) is type(error)
        assert str(rebuilt) == str(error)
        assert vars(rebuilt) == vars(error)
