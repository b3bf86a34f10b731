"""The exception tree, the ``error`` field parser and ``failure_reason``."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfstream import exceptions
from sfstream.bayeux._channels import validate_subscription
from sfstream.exceptions import (
    AiosfstreamException,
    AuthenticationError,
    AuthenticationTransportError,
    ClientError,
    ClientInvalidOperation,
    ErrorField,
    HTTPStatusError,
    InvalidArgumentError,
    ProtocolError,
    ReplayError,
    ServerError,
    SfstreamError,
    TransportConnectionClosed,
    TransportError,
    TransportInvalidOperation,
    TransportTimeoutError,
    failure_reason,
    parse_error_field,
)

REPLAY_INVALID = (
    "400::The replayId {1} you provided was invalid. Please provide a valid ID, "
    "-2 to replay all events, or -1 to replay only new events."
)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param("403::Unknown client", ErrorField(403, [], "Unknown client"), id="salesforce"),
        pytest.param(
            "401:abc123:Unknown client", ErrorField(401, ["abc123"], "Unknown client"), id="faye"
        ),
        pytest.param(
            "403:xj3,/foo/bar:Subscription denied",
            ErrorField(403, ["xj3", "/foo/bar"], "Subscription denied"),
            id="args-with-commas",
        ),
        pytest.param(
            REPLAY_INVALID,
            ErrorField(
                400,
                [],
                "The replayId {1} you provided was invalid. Please provide a valid ID, "
                "-2 to replay all events, or -1 to replay only new events.",
            ),
            id="message-with-commas",
        ),
        pytest.param(
            "400::a: b: c", ErrorField(400, [], "a: b: c"), id="message-keeps-further-colons"
        ),
        pytest.param("402:x:y:z", ErrorField(402, ["x"], "y:z"), id="args-then-message-with-colon"),
        pytest.param("405:,:x", ErrorField(405, ["", ""], "x"), id="empty-args-kept"),
        pytest.param("500:no second colon", ErrorField(500, [], "no second colon"), id="two-parts"),
        pytest.param(
            "Extension refused the message",
            ErrorField(None, [], "Extension refused the message"),
            id="free-text",
        ),
        pytest.param(
            "Error: something broke", ErrorField(None, [], "Error: something broke"), id="text-head"
        ),
        pytest.param("40::short code", ErrorField(None, [], "40::short code"), id="two-digit-code"),
        pytest.param("4031::long", ErrorField(None, [], "4031::long"), id="four-digit-code"),
        pytest.param("abc::x", ErrorField(None, [], "abc::x"), id="letters-code"),
        pytest.param("²³⁴::x", ErrorField(None, [], "²³⁴::x"), id="superscript-digits"),
        pytest.param("١٢٣::x", ErrorField(None, [], "١٢٣::x"), id="non-ascii-digits"),
        pytest.param("", ErrorField(None, [], ""), id="empty"),
    ],
)
def test_parse_error_field(error: str, expected: ErrorField) -> None:
    assert parse_error_field(error) == expected


@given(st.text())
def test_parse_error_field_never_raises_and_keeps_the_text(error: str) -> None:
    field = parse_error_field(error)
    if field.code is None:
        assert field == ErrorField(None, [], error)
    else:
        assert 100 <= field.code <= 999
        assert error.startswith(f"{field.code:03d}:")
        assert error.endswith(field.message)


@given(
    st.integers(100, 999),
    st.lists(st.text(st.characters(exclude_characters=",:"), min_size=1), max_size=4),
    st.text(),
)
def test_parse_error_field_round_trips_the_grammar(
    code: int, args: list[str], message: str
) -> None:
    assert parse_error_field(f"{code}:{','.join(args)}:{message}") == ErrorField(
        code, args, message
    )


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (None, None),
        ({}, None),
        ({"ext": "not a mapping"}, None),
        ({"ext": {}}, None),
        ({"ext": {"sfdc": ["not", "a", "mapping"]}}, None),
        ({"ext": {"sfdc": {}}}, None),
        ({"ext": {"sfdc": {"failureReason": 503}}}, None),
        (
            {"ext": {"sfdc": {"failureReason": "503::Server is too busy."}}},
            "503::Server is too busy.",
        ),
    ],
)
def test_failure_reason(response: dict[str, Any] | None, expected: str | None) -> None:
    assert failure_reason(response) == expected


def test_server_error_with_error_and_failure_reason() -> None:
    response = {
        "channel": "/meta/connect",
        "successful": False,
        "error": "401:a,b:Authentication invalid",
        "ext": {"sfdc": {"failureReason": "503::Server is too busy."}},
    }
    error = ServerError("connect refused", response)
    assert error.message == "connect refused"
    assert error.response is response
    assert error.error == "401:a,b:Authentication invalid"
    assert error.error_code == 401
    assert error.error_args == ["a", "b"]
    assert error.error_message == "Authentication invalid"
    assert error.failure_reason == "503::Server is too busy."
    assert str(error) == (
        "connect refused: 401:a,b:Authentication invalid: failureReason 503::Server is too busy."
    )
    assert error.args == ("connect refused", response)


@pytest.mark.parametrize(
    ("error", "reason", "code"),
    [
        ("401::Authentication invalid", "503::Server is too busy.", 503),  # the reason first
        ("403::Handshake denied", "401::Authentication invalid", 401),
        ("403::Unknown client", None, 403),
        ("403::Handshake denied", "not a code", 403),  # a reason without one: the error's
        ("not allowed", None, None),
        (None, None, None),
    ],
)
def test_server_error_cause_code(error: str | None, reason: str | None, code: int | None) -> None:
    response: dict[str, Any] = {"channel": "/meta/subscribe", "successful": False}
    if error is not None:
        response["error"] = error
    if reason is not None:
        response["ext"] = {"sfdc": {"failureReason": reason}}
    assert ServerError("refused", response).cause_code == code


def test_server_error_with_free_text_error() -> None:
    error = ServerError("publish refused", {"channel": "/x", "error": "not allowed"})
    assert (error.error_code, error.error_args, error.error_message) == (None, [], "not allowed")
    assert error.failure_reason is None
    assert str(error) == "publish refused: not allowed"


@pytest.mark.parametrize(
    "response", [None, {"channel": "/meta/connect"}, {"channel": "/x", "error": 42}]
)
def test_server_error_without_usable_error(response: dict[str, Any] | None) -> None:
    error = ServerError("refused", response)
    assert error.response is response
    assert error.error is None
    assert error.error_code is None
    assert error.error_args is None
    assert error.error_message is None
    assert error.failure_reason is None
    assert str(error) == "refused"


def test_server_error_with_failure_reason_only() -> None:
    error = ServerError("x", {"ext": {"sfdc": {"failureReason": "401::Request requires auth"}}})
    assert str(error) == "x: failureReason 401::Request requires auth"


def test_authentication_error_fields() -> None:
    error = AuthenticationError(
        "login refused",
        error="invalid_grant",
        error_description="authentication failure",
        status=400,
    )
    assert str(error) == "login refused"
    assert (error.error, error.error_description, error.status) == (
        "invalid_grant",
        "authentication failure",
        400,
    )
    bare = AuthenticationError("no")
    assert (bare.error, bare.error_description, bare.status) == (None, None, None)


def test_http_status_error_fields() -> None:
    error = HTTPStatusError("HTTP 401", status=401, reason="Unauthorized")
    assert (str(error), error.status, error.reason) == ("HTTP 401", 401, "Unauthorized")
    assert HTTPStatusError("HTTP 500", status=500).reason == ""


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (AuthenticationError, SfstreamError),
        (ClientError, SfstreamError),
        (ClientInvalidOperation, ClientError),
        (TransportError, SfstreamError),
        (TransportInvalidOperation, TransportError),
        (TransportTimeoutError, TransportError),
        (TransportConnectionClosed, TransportError),
        (HTTPStatusError, TransportError),
        (ProtocolError, TransportError),
        (ServerError, SfstreamError),
        (ReplayError, SfstreamError),
        (SfstreamError, Exception),
    ],
)
def test_tree(cls: type[Exception], parent: type[Exception]) -> None:
    assert cls.__bases__ == (parent,)


def test_a_network_failure_at_login_is_both_kinds() -> None:
    error = AuthenticationTransportError("Network request failed: no token", status=503)
    assert AuthenticationTransportError.__bases__ == (AuthenticationError, TransportError)
    assert isinstance(error, AuthenticationError)
    assert isinstance(error, TransportError)
    assert isinstance(error, SfstreamError)
    assert (str(error), error.status, error.error, error.error_description) == (
        "Network request failed: no token",
        503,
        None,
        None,
    )


def test_an_argument_error_is_a_value_error() -> None:
    assert InvalidArgumentError.__bases__ == (SfstreamError, ValueError)
    error = InvalidArgumentError("bad channel")
    assert isinstance(error, ValueError)
    assert str(error) == "bad channel"


@pytest.mark.parametrize("channel", ["event/NoSlash", "/meta/connect", "/a b", ""])
def test_bad_channel_names_are_argument_errors(channel: str) -> None:
    with pytest.raises(InvalidArgumentError):
        validate_subscription(channel)


def test_the_tree_in_the_docstring_names_every_class() -> None:
    doc = exceptions.__doc__ or ""
    classes = {
        value
        for value in vars(exceptions).values()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    assert len(classes) == 14
    for cls in classes:
        assert cls.__name__ in doc, cls


def test_aiosfstream_alias_and_all() -> None:
    assert AiosfstreamException is SfstreamError
    for name in exceptions.__all__:
        assert hasattr(exceptions, name)
