"""Advice and the one reconnect decision, row by row of ``decide()``'s table."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfstream.bayeux._advice import (
    DEFAULT_ADVICE,
    Action,
    Advice,
    Connect,
    Handshake,
    Operation,
    Outcome,
    Reauthenticate,
    ReconnectPolicy,
    Stop,
    decide,
)
from sfstream.bayeux._backoff import ConstantBackoff, ExponentialBackoff
from sfstream.bayeux._messages import Message
from sfstream.exceptions import (
    AuthenticationError,
    ClientError,
    ClientInvalidOperation,
    HTTPStatusError,
    ProtocolError,
    ServerError,
    SfstreamError,
    TransportTimeoutError,
)

# --- Advice -------------------------------------------------------------------------------


def test_default_advice() -> None:
    assert Advice("retry", 0.0, 60.0, None) == DEFAULT_ADVICE
    assert Advice() == DEFAULT_ADVICE


@pytest.mark.parametrize("advice", [None, {}])
def test_updated_without_advice_is_the_same_object(advice: dict[str, Any] | None) -> None:
    current = Advice("handshake", 1.0, 2.0, 3.0)
    assert current.updated(advice) is current


def test_updated_converts_milliseconds() -> None:
    advice = DEFAULT_ADVICE.updated(
        {"reconnect": "handshake", "interval": 1500, "timeout": 110000, "maxInterval": 10000}
    )
    assert advice == Advice("handshake", 1.5, 110.0, 10.0)


def test_partial_updates_keep_old_values() -> None:
    current = Advice("handshake", 1.0, 2.0, 3.0)
    assert current.updated({"interval": 0}) == Advice("handshake", 0.0, 2.0, 3.0)
    assert current.updated({"timeout": 500}) == Advice("handshake", 1.0, 0.5, 3.0)
    assert current.updated({"reconnect": "none"}) == Advice("none", 1.0, 2.0, 3.0)
    assert current.updated({"maxInterval": 20}) == Advice("handshake", 1.0, 2.0, 0.02)
    assert current.updated({"hosts": ["x"]}) == current
    # null values count as absent
    assert current.updated({"interval": None, "timeout": None, "maxInterval": None}) == current


@pytest.mark.parametrize("reconnect", ["retry", "handshake", "none"])
def test_known_reconnect_values(reconnect: str) -> None:
    assert Advice("handshake").updated({"reconnect": reconnect}).reconnect == reconnect
    assert Advice("none").updated({"reconnect": reconnect}).reconnect == reconnect


@pytest.mark.parametrize("reconnect", ["callback", "", "RETRY", None, 1])
def test_unknown_reconnect_is_ignored(reconnect: Any) -> None:
    current = Advice("handshake", 1.0)
    assert current.updated({"reconnect": reconnect, "interval": 2000}) == Advice("handshake", 2.0)


def test_negative_interval_and_timeout_are_clamped() -> None:
    advice = DEFAULT_ADVICE.updated({"interval": -1, "timeout": -5000})
    assert (advice.interval, advice.timeout) == (0.0, 0.0)


def test_advice_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_ADVICE.reconnect = "none"  # type: ignore[misc]


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "reconnect": st.sampled_from(["retry", "handshake", "none", "other"]),
            "interval": st.integers(-10_000, 10_000) | st.floats(-1e6, 1e6),
            "timeout": st.integers(-10_000, 200_000),
            "maxInterval": st.integers(0, 100_000),
        },
    )
)
def test_updated_property(advice: dict[str, Any]) -> None:
    current = Advice("none", 9.0, 9.0, 9.0)
    new = current.updated(advice)
    assert new.reconnect in ("retry", "handshake", "none")
    assert new.interval >= 0
    assert new.timeout >= 0
    for key, attr, most in (("interval", "interval", 60.0), ("timeout", "timeout", 600.0)):
        if key in advice:
            # milliseconds to seconds, clamped to [0, most]
            assert getattr(new, attr) == pytest.approx(min(max(0.0, advice[key] / 1000), most))
        else:
            assert getattr(new, attr) == 9.0


def test_out_of_range_advice_is_clamped() -> None:
    new = Advice().updated({"interval": 10**400, "timeout": 10**30, "maxInterval": -5})
    assert (new.interval, new.timeout, new.max_interval) == (60.0, 600.0, 0.0)


# --- Outcome ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "successful"),
    [
        (None, False),
        ({"channel": "/meta/connect"}, False),
        ({"channel": "/meta/connect", "successful": False}, False),
        ({"channel": "/meta/connect", "successful": "true"}, False),
        ({"channel": "/meta/connect", "successful": True}, True),
    ],
)
def test_outcome_successful(reply: Message | None, successful: bool) -> None:
    assert Outcome(Operation.CONNECT, reply=reply).successful is successful


# --- decide() -----------------------------------------------------------------------------

#: backoff(n) = 2**(n-1) seconds: 0, 1, 2, 4, 8, ...
POLICY = ReconnectPolicy(
    backoff=ExponentialBackoff(initial=1.0, factor=2.0, maximum=60.0, jitter=0.0),
    handshake_after=3,
)

HS, CN = Operation.HANDSHAKE, Operation.CONNECT
UNKNOWN_CLIENT = "403::Unknown client"
AUTH_INVALID = "401::Authentication invalid"
BUSY = "503::Server is too busy. Please try your request again later."
HTTP_401 = HTTPStatusError("HTTP 401", status=401, reason="Unauthorized")
HTTP_403 = HTTPStatusError("HTTP 403", status=403)
TIMEOUT = TransportTimeoutError("no reply")
CLIENT_ERROR = ClientError("no common connection type")


def ok(operation: Operation) -> Message:
    channel = "/meta/handshake" if operation is HS else "/meta/connect"
    return {"channel": channel, "successful": True}


def refused(operation: Operation, error: str | None = None, reason: str | None = None) -> Message:
    channel = "/meta/handshake" if operation is HS else "/meta/connect"
    message: Message = {"channel": channel, "successful": False}
    if error is not None:
        message["error"] = error
    if reason is not None:
        message["ext"] = {"sfdc": {"failureReason": reason}}
    return message


def run(
    outcome: Outcome,
    advice: Advice = DEFAULT_ADVICE,
    *,
    failures: int = 1,
    established: bool = True,
    can_reauthenticate: bool = True,
    reauthenticated: bool = False,
    policy: ReconnectPolicy = POLICY,
    refusals: int | None = None,
) -> Action:
    return decide(
        outcome,
        advice,
        failures=failures,
        established=established,
        can_reauthenticate=can_reauthenticate,
        reauthenticated=reauthenticated,
        policy=policy,
        refusals=refusals,
    )


RETRY = Advice("retry", interval=0.0)
RETRY_5 = Advice("retry", interval=5.0)
HANDSHAKE_2 = Advice("handshake", interval=2.0)
NONE = Advice("none")

# (id, outcome, advice, keyword overrides, expected action)
TABLE: list[tuple[str, Outcome, Advice, dict[str, Any], Action]] = [
    # handshake accepted: connect at once (whatever the advice says)
    ("handshake-ok", Outcome(HS, reply=ok(HS)), RETRY_5, {"failures": 0}, Connect(0.0)),
    ("handshake-ok-stale-advice", Outcome(HS, reply=ok(HS)), HANDSHAKE_2, {}, Connect(0.0)),
    (
        "handshake-ok-not-established",
        Outcome(HS, reply=ok(HS)),
        RETRY,
        {"established": False},
        Connect(0.0),
    ),
    # connect accepted
    ("connect-ok-retry", Outcome(CN, reply=ok(CN)), RETRY_5, {"failures": 0}, Connect(5.0)),
    (
        "connect-ok-none-given",
        Outcome(CN, reply=ok(CN)),
        DEFAULT_ADVICE,
        {"failures": 0},
        Connect(0.0),
    ),
    (
        "connect-ok-handshake",
        Outcome(CN, reply=ok(CN)),
        HANDSHAKE_2,
        {"failures": 0},
        Handshake(2.0),
    ),
    # session lost: at once the first time, then backoff
    (
        "session-lost-first",
        Outcome(CN, reply=refused(CN, UNKNOWN_CLIENT), session_lost=True),
        HANDSHAKE_2,
        {"failures": 1},
        Handshake(0.0),
    ),
    (
        "session-lost-third",
        Outcome(CN, reply=refused(CN, UNKNOWN_CLIENT), session_lost=True),
        HANDSHAKE_2,
        {"failures": 3},
        Handshake(2.0),
    ),
    (
        "server-disconnect",
        Outcome(CN, reply={"channel": "/meta/disconnect", "successful": True}, session_lost=True),
        RETRY,
        {"failures": 1},
        Handshake(0.0),
    ),
    (
        "resubscription-failed",
        Outcome(CN, error=TIMEOUT, session_lost=True),
        RETRY,
        {"failures": 2},
        Handshake(1.0),
    ),
    (
        "reply-with-handshake-advice",
        Outcome(CN, reply=refused(CN, "402::x")),
        HANDSHAKE_2,
        {"failures": 4},
        Handshake(4.0),
    ),
    # a refused handshake backs off by its own count, whatever advice is kept
    (
        "handshake-refused-with-stale-handshake-advice",
        Outcome(HS, reply=refused(HS, "402::x")),
        HANDSHAKE_2,
        {"failures": 4},
        Handshake(8.0),
    ),
    # advice none, not 401: never stop silently
    (
        "none-unknown-client",
        Outcome(CN, reply=refused(CN, UNKNOWN_CLIENT)),
        NONE,
        {"failures": 1},
        Handshake(1.0),
    ),
    (
        "none-503-behind-401",
        Outcome(CN, reply=refused(CN, AUTH_INVALID, BUSY)),
        NONE,
        {"failures": 2},
        Handshake(2.0),
    ),
    ("none-no-error", Outcome(HS, reply=refused(HS)), NONE, {"failures": 3}, Handshake(4.0)),
    # handshake refused or failed
    (
        "handshake-refused",
        Outcome(HS, reply=refused(HS, "403::Handshake denied")),
        RETRY,
        {"failures": 2},
        Handshake(2.0),
    ),
    ("handshake-timeout", Outcome(HS, error=TIMEOUT), RETRY, {"failures": 1}, Handshake(1.0)),
    ("handshake-http-403", Outcome(HS, error=HTTP_403), RETRY, {"failures": 4}, Handshake(8.0)),
    (
        "handshake-401-kept-retry-advice",
        Outcome(HS, reply=refused(HS, AUTH_INVALID)),
        RETRY,
        {"failures": 1},
        Reauthenticate(),
    ),
    # a 401 whose reply itself advises retry is not an authentication refusal
    (
        "handshake-401-reply-advises-retry",
        Outcome(HS, reply={**refused(HS, AUTH_INVALID), "advice": {"reconnect": "retry"}}),
        RETRY,
        {"failures": 1},
        Handshake(1.0),
    ),
    # connect refused with retry: max(interval, backoff)
    (
        "connect-refused-interval-wins",
        Outcome(CN, reply=refused(CN, "500::x")),
        RETRY_5,
        {"failures": 3},
        Connect(5.0),
    ),
    (
        "connect-refused-backoff-wins",
        Outcome(CN, reply=refused(CN, "500::x")),
        RETRY_5,
        {"failures": 5},
        Connect(16.0),
    ),
    (
        "connect-401-reply-advises-retry",
        Outcome(CN, reply={**refused(CN, AUTH_INVALID), "advice": {"reconnect": "retry"}}),
        RETRY,
        {"failures": 1},
        Connect(1.0),
    ),
    # connect request failed: the first retry at once, then backoff(failures - 1); handshake
    # from handshake_after on
    ("connect-failed-1", Outcome(CN, error=TIMEOUT), RETRY, {"failures": 1}, Connect(0.0)),
    (
        "connect-failed-2",
        Outcome(CN, error=ProtocolError("bad json")),
        RETRY_5,
        {"failures": 2},
        Connect(1.0),
    ),
    ("connect-failed-3", Outcome(CN, error=TIMEOUT), RETRY, {"failures": 3}, Handshake(2.0)),
    ("connect-failed-4", Outcome(CN, error=HTTP_403), RETRY, {"failures": 4}, Handshake(4.0)),
    (
        "connect-failed-stale-handshake-advice",
        Outcome(CN, error=TIMEOUT),
        HANDSHAKE_2,
        {"failures": 1},
        Connect(0.0),
    ),
    # authentication refusals
    (
        "auth-connect-401-none",
        Outcome(CN, reply=refused(CN, AUTH_INVALID)),
        NONE,
        {},
        Reauthenticate(),
    ),
    # a failureReason without a code says nothing of the cause: the error's code counts
    (
        "auth-connect-401-none-reason-without-code",
        Outcome(CN, reply=refused(CN, AUTH_INVALID, "something went wrong")),
        NONE,
        {},
        Reauthenticate(),
    ),
    (
        "auth-handshake-failure-reason",
        Outcome(HS, reply=refused(HS, "403::Handshake denied", "401::Authentication invalid")),
        NONE,
        {},
        Reauthenticate(),
    ),
    ("auth-http-401-connect", Outcome(CN, error=HTTP_401), RETRY, {}, Reauthenticate()),
    ("auth-http-401-handshake", Outcome(HS, error=HTTP_401), HANDSHAKE_2, {}, Reauthenticate()),
    (
        "auth-not-established",
        Outcome(HS, reply=refused(HS, AUTH_INVALID)),
        NONE,
        {"established": False},
        Reauthenticate(),
    ),
    (
        "auth-session-lost",
        Outcome(CN, reply=refused(CN, AUTH_INVALID), session_lost=True),
        NONE,
        {},
        Reauthenticate(),
    ),
]


@pytest.mark.parametrize(
    ("outcome", "advice", "overrides", "expected"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_decision_table(
    outcome: Outcome, advice: Advice, overrides: dict[str, Any], expected: Action
) -> None:
    assert run(outcome, advice, **overrides) == expected


def test_successful_outcome_ignores_failures_and_flags() -> None:
    outcome = Outcome(CN, reply=ok(CN))
    for established in (False, True):
        action = run(
            outcome,
            RETRY_5,
            failures=7,
            established=established,
            reauthenticated=True,
            can_reauthenticate=False,
        )
        assert action == Connect(5.0)


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome(HS, error=CLIENT_ERROR),
        Outcome(CN, error=ClientInvalidOperation("closed")),
        Outcome(CN, error=CLIENT_ERROR, session_lost=True),
    ],
)
@pytest.mark.parametrize("established", [False, True])
def test_client_errors_stop_with_the_same_error(outcome: Outcome, established: bool) -> None:
    action = run(outcome, NONE, established=established)
    assert isinstance(action, Stop)
    assert action.error is outcome.error


@pytest.mark.parametrize(
    ("outcome", "advice", "text"),
    [
        (Outcome(CN, reply=refused(CN, AUTH_INVALID)), NONE, " (401::Authentication invalid)"),
        (
            Outcome(HS, reply=refused(HS, "403::Handshake denied", "401::Authentication invalid")),
            NONE,
            " (403::Handshake denied; failureReason 401::Authentication invalid)",
        ),
        (
            Outcome(HS, reply=refused(HS, None, "401::Authentication invalid")),
            NONE,
            " (no error given; failureReason 401::Authentication invalid)",
        ),
        (Outcome(CN, error=HTTP_401), RETRY, ""),
    ],
)
def test_second_auth_refusal_stops_with_authentication_error(
    outcome: Outcome, advice: Advice, text: str
) -> None:
    action = run(outcome, advice, reauthenticated=True)
    assert isinstance(action, Stop)
    assert type(action.error) is AuthenticationError
    assert str(action.error) == (
        "the server refused the session again after re-authentication" + text
    )


@pytest.mark.parametrize("established", [False, True])
def test_auth_refusal_without_authenticator_stops_with_server_error(established: bool) -> None:
    reply = refused(CN, AUTH_INVALID)
    action = run(Outcome(CN, reply=reply), NONE, can_reauthenticate=False, established=established)
    assert isinstance(action, Stop)
    assert type(action.error) is ServerError
    assert action.error.response is reply
    assert str(action.error) == "connect refused: 401::Authentication invalid"


def test_http_401_without_authenticator_stops_with_the_http_error() -> None:
    action = run(Outcome(CN, error=HTTP_401), RETRY, can_reauthenticate=False)
    assert action == Stop(HTTP_401)


def test_503_behind_401_is_not_an_auth_refusal() -> None:
    # Salesforce's documented example: the real cause hides in failureReason.
    reply = refused(CN, AUTH_INVALID, BUSY)
    action = run(Outcome(CN, reply=reply), NONE, failures=1, reauthenticated=True)
    assert action == Handshake(1.0)
    stopped = run(Outcome(CN, reply=reply), NONE, established=False)
    assert isinstance(stopped, Stop)
    assert type(stopped.error) is ServerError
    assert stopped.error.failure_reason == BUSY


@pytest.mark.parametrize(
    ("outcome", "error_type", "text"),
    [
        (
            Outcome(HS, reply=refused(HS, "403::Handshake denied")),
            ServerError,
            "handshake refused: 403::Handshake denied",
        ),
        (Outcome(CN, reply=refused(CN, "500::x")), ServerError, "connect refused: 500::x"),
        (
            Outcome(CN, reply={"channel": "/meta/disconnect"}, session_lost=True),
            ServerError,
            "the server ended the session",
        ),
        (
            Outcome(CN, reply=refused(CN, UNKNOWN_CLIENT), session_lost=True),
            ServerError,
            "connect refused: 403::Unknown client",
        ),
        (Outcome(HS, error=TIMEOUT), TransportTimeoutError, "no reply"),
        (Outcome(CN, error=HTTP_403), HTTPStatusError, "HTTP 403"),
    ],
)
def test_failures_before_established_stop(
    outcome: Outcome, error_type: type[SfstreamError], text: str
) -> None:
    action = run(outcome, RETRY, established=False)
    assert isinstance(action, Stop)
    assert type(action.error) is error_type
    assert str(action.error) == text
    if outcome.error is not None:
        assert action.error is outcome.error


def test_reauthenticate_once_then_stop() -> None:
    outcome = Outcome(CN, reply=refused(CN, AUTH_INVALID))
    assert run(outcome, NONE, reauthenticated=False) == Reauthenticate()
    assert isinstance(run(outcome, NONE, reauthenticated=True), Stop)


def test_handshake_after_one_for_salesforce() -> None:
    policy = ReconnectPolicy(backoff=ConstantBackoff(3.0), handshake_after=1)
    # a reply cut off (or a reset connection): a new session at once, no backoff...
    assert run(Outcome(CN, error=TIMEOUT), RETRY, failures=1, policy=policy) == Handshake(0.0)
    # ...but a second failure in a row backs off
    assert run(Outcome(CN, error=TIMEOUT), RETRY, failures=2, policy=policy) == Handshake(3.0)


def test_policy_defaults() -> None:
    policy = ReconnectPolicy()
    assert policy.handshake_after == 3
    assert policy.backoff == ExponentialBackoff()


def test_actions_are_values() -> None:
    assert Connect() == Connect(0.0)
    assert Handshake() == Handshake(0.0)
    assert Reauthenticate() == Reauthenticate()
    error = ClientError("x")
    assert Stop(error).error is error


@given(
    operation=st.sampled_from(Operation),
    reconnect=st.sampled_from(["retry", "handshake", "none"]),
    interval=st.floats(0, 100),
    error=st.sampled_from([None, AUTH_INVALID, UNKNOWN_CLIENT, "free text"]),
    reason=st.sampled_from([None, BUSY, AUTH_INVALID]),
    successful=st.booleans(),
    failures=st.integers(0, 50),
    established=st.booleans(),
    can_reauthenticate=st.booleans(),
    reauthenticated=st.booleans(),
    session_lost=st.booleans(),
)
def test_decide_always_returns_a_sane_action(
    operation: Operation,
    reconnect: str,
    interval: float,
    error: str | None,
    reason: str | None,
    successful: bool,
    failures: int,
    established: bool,
    can_reauthenticate: bool,
    reauthenticated: bool,
    session_lost: bool,
) -> None:
    reply = refused(operation, error, reason)
    reply["successful"] = successful
    action = run(
        Outcome(operation, reply=reply, session_lost=session_lost),
        Advice(reconnect, interval),
        failures=failures,
        established=established,
        can_reauthenticate=can_reauthenticate,
        reauthenticated=reauthenticated,
    )
    assert isinstance(action, Connect | Handshake | Reauthenticate | Stop)
    if isinstance(action, Connect | Handshake):
        assert 0 <= action.delay <= max(60.0, interval)
    if isinstance(action, Reauthenticate):
        assert can_reauthenticate
        assert not reauthenticated
    if isinstance(action, Stop):
        assert isinstance(action.error, SfstreamError)
        # An established client only stops on authentication problems.
        assert not established or AUTH_INVALID in (reason, error)


def test_a_lost_session_backs_off_by_refusals_not_by_network_failures() -> None:
    lost = Outcome(CN, reply=refused(CN, UNKNOWN_CLIENT), session_lost=True)
    handshake = Advice("handshake", 0.0)
    # after five failed requests, the server's first "unknown client": handshake at once
    assert run(lost, handshake, failures=6, refusals=1) == Handshake(0.0)
    # the server keeps forgetting sessions: back off by its refusals
    assert run(lost, handshake, failures=6, refusals=3) == Handshake(2.0)
    # without a refusal count, the failures count applies
    assert run(lost, handshake, failures=3) == Handshake(2.0)
