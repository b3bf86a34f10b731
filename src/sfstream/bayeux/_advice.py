"""Advice, and the one function that decides what to do after every handshake or connect.

:func:`decide` is the only code that chooses between connecting, handshaking,
re-authenticating and stopping. The driver executes the action it returns and never reads
advice itself. Pure module: no IO, no clock (delays are returned, not slept).

Decision table (``failures`` counts consecutive failures, this one included; ``backoff(n)`` is
the policy's backoff for attempt ``n``, 0 for ``n = 0``):

=====================================================  ============================================
what happened                                          action
=====================================================  ============================================
handshake accepted                                     ``Connect(0)`` (the connect asks timeout 0)
connect accepted, advice ``retry`` or none given       ``Connect(interval)``
connect accepted, advice ``handshake``                 ``Handshake(interval)``
refusal whose cause (``failureReason`` first, then     ``Reauthenticate`` once when an
``error``) is a 401 not advising ``handshake`` or      authenticator can; a second time
``retry``, or an HTTP 401                              ``Stop(AuthenticationError)``; with no
                                                       authenticator ``Stop`` with the refusal
                                                       (``ServerError``) or the HTTP error
the server offers no connection type we speak          ``Stop(ClientError)``
any other failure before the first connect succeeded   ``Stop(error)``: ``open()`` fails fast
session lost (unknown client with advice            ``Handshake(backoff(refusals - 1))``: at
``handshake``, a server-sent ``/meta/disconnect``,     once the first time the server says so
a failed resubscription)
refusal with advice ``none`` (not 401)                 ``Handshake(backoff(failures))``: never stop
                                                       silently
handshake refused or its request failed                ``Handshake(backoff(failures))``
connect refused with advice ``retry`` (or kept)        ``Connect(max(interval, backoff(failures)))``
connect request failed (network, timeout, HTTP, JSON)  ``Connect(backoff(failures - 1))``: the
                                                       first retry at once (a reply cut off or a
                                                       reset connection costs no backoff), later
                                                       ones back off; from the policy's
                                                       ``handshake_after`` failures on,
                                                       ``Handshake(backoff(failures - 1))``
=====================================================  ============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

from sfstream.bayeux._backoff import Backoff, ExponentialBackoff
from sfstream.bayeux._messages import META_DISCONNECT, Message
from sfstream.exceptions import (
    AuthenticationError,
    ClientError,
    HTTPStatusError,
    ServerError,
    SfstreamError,
    _reply_cause_code,
    failure_reason,
)

__all__ = [
    "DEFAULT_ADVICE",
    "Action",
    "Advice",
    "Connect",
    "Handshake",
    "Operation",
    "Outcome",
    "Reauthenticate",
    "ReconnectPolicy",
    "Stop",
    "decide",
]


@dataclass(frozen=True, slots=True)
class Advice:
    """The server's latest advice, in seconds.

    Advice on a reply supersedes the previous one key by key; keys a reply leaves out keep
    their last value (the CometD server only sends advice when it changed).
    """

    reconnect: str = "retry"
    interval: float = 0.0
    timeout: float = 60.0
    max_interval: float | None = None

    def updated(self, advice: Mapping[str, Any] | None) -> Advice:
        """This advice with the fields present in a reply's ``advice`` replaced."""
        if not advice:
            return self
        reconnect = advice.get("reconnect", self.reconnect)
        interval = advice.get("interval")
        timeout = advice.get("timeout")
        max_interval = advice.get("maxInterval")
        return Advice(
            reconnect=reconnect if reconnect in ("retry", "handshake", "none") else self.reconnect,
            interval=self.interval if interval is None else _seconds(interval, MAX_INTERVAL),
            timeout=self.timeout if timeout is None else _seconds(timeout, MAX_TIMEOUT),
            max_interval=(
                self.max_interval if max_interval is None else _seconds(max_interval, MAX_TIMEOUT)
            ),
        )


#: The longest ``advice.interval`` obeyed, in seconds (CometD servers send 0; Faye 0-1 s).
MAX_INTERVAL: Final = 60.0
#: The longest ``advice.timeout`` (and ``maxInterval``) obeyed (Salesforce holds 110 s).
MAX_TIMEOUT: Final = 600.0


def _seconds(milliseconds: float, most: float) -> float:
    """Milliseconds of advice as seconds in ``[0, most]`` (compared before dividing: an
    integer too large for a float never reaches the division)."""
    return min(max(milliseconds, 0), most * 1000) / 1000


#: Advice before the server gave any: retry, no interval, a 60 s hold (the CometD default).
DEFAULT_ADVICE: Final = Advice()


class Operation(Enum):
    """The two requests whose outcome drives the session."""

    HANDSHAKE = "handshake"
    CONNECT = "connect"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a handshake or connect ended: a reply (``reply``) or a failed request (``error``).

    ``session_lost`` marks the end of the session: the server forgot it, sent a
    ``/meta/disconnect`` by itself, or a resubscription failed.
    """

    operation: Operation
    reply: Message | None = None
    error: SfstreamError | None = None
    session_lost: bool = False

    @property
    def successful(self) -> bool:
        return self.reply is not None and self.reply.get("successful") is True


@dataclass(frozen=True, slots=True)
class Connect:
    """Send the next connect after ``delay`` seconds."""

    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Handshake:
    """Start a new session after ``delay`` seconds (and then resubscribe everything)."""

    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Reauthenticate:
    """Get fresh credentials, then handshake at once."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Give up: the session cannot go on. ``error`` is what the user will see."""

    error: SfstreamError


#: What :func:`decide` tells the driver to do next.
Action = Connect | Handshake | Reauthenticate | Stop


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """The knobs of :func:`decide`.

    ``handshake_after``: after this many consecutive failed connect *requests* (network,
    timeout, HTTP errors), start a new session instead of retrying the connect. A Salesforce
    client uses 1: a long-poll reply lost on the wire is only recovered by resubscribing from
    the last received event.
    """

    backoff: Backoff = field(default_factory=ExponentialBackoff)
    handshake_after: int = 3


def _is_auth_refusal(reply: Message) -> bool:
    """A 401 (``failureReason`` first, then ``error``) that does not advise a new handshake.

    Salesforce sends ``401::Authentication invalid`` with ``reconnect: none``, and
    ``403::Handshake denied`` with a 401 ``failureReason`` with or without advice. Faye's
    ``401:<clientId>:Unknown client`` comes with ``reconnect: handshake``: not an auth problem.
    """
    advice = reply.get("advice")
    reconnect = advice.get("reconnect") if isinstance(advice, dict) else None
    return reconnect in (None, "none") and _reply_cause_code(reply) == 401


def decide(
    outcome: Outcome,
    advice: Advice,
    *,
    failures: int,
    established: bool,
    can_reauthenticate: bool,
    reauthenticated: bool,
    policy: ReconnectPolicy,
    refusals: int | None = None,
) -> Action:
    """Choose what follows ``outcome``; see the module docstring for the table.

    Args:
        outcome: the handshake or connect that just ended, or the session that was lost.
        advice: the advice in force, already updated with the reply's advice.
        failures: consecutive failures including this one (0 after a success).
        established: a connect has succeeded in this client's life (``open()`` is done).
        can_reauthenticate: an authenticator can fetch new credentials.
        reauthenticated: credentials were refreshed since the last successful connect.
        policy: backoff and thresholds.
        refusals: how many of the consecutive failures were answers from the server (not
            failed requests); a lost session backs off by this count, so that the first
            "unknown client" after a network outage is followed by a handshake at once.
            Defaults to ``failures``.
    """
    backoff = policy.backoff.compute
    reply, error = outcome.reply, outcome.error
    if outcome.successful and not outcome.session_lost:
        if outcome.operation is Operation.HANDSHAKE:
            return Connect(0.0)
        if advice.reconnect == "handshake":
            return Handshake(advice.interval)
        return Connect(advice.interval)
    if isinstance(error, ClientError):
        return Stop(error)  # this client cannot talk to this server: retrying cannot help

    auth_refusal = (reply is not None and _is_auth_refusal(reply)) or (
        isinstance(error, HTTPStatusError) and error.status == 401
    )
    if auth_refusal and can_reauthenticate:
        if not reauthenticated:
            return Reauthenticate()
        return Stop(
            AuthenticationError(
                "the server refused the session again after re-authentication"
                + (f" ({_describe(reply)})" if reply is not None else "")
            )
        )
    if auth_refusal or not established:
        return Stop(_failure(outcome))

    if outcome.operation is Operation.HANDSHAKE:
        return Handshake(backoff(failures))
    if outcome.session_lost or (reply is not None and advice.reconnect == "handshake"):
        return Handshake(backoff((failures if refusals is None else refusals) - 1))
    if reply is not None and advice.reconnect == "none":
        return Handshake(backoff(failures))
    if reply is not None:
        return Connect(max(advice.interval, backoff(failures)))
    # A failed connect *request* (a reply cut off mid-body, a reset connection, a timeout):
    # the first retry goes at once, since a healthy server answers it; later ones back off.
    if failures >= policy.handshake_after:
        return Handshake(backoff(failures - 1))
    return Connect(backoff(failures - 1))


def _failure(outcome: Outcome) -> SfstreamError:
    """The error a user sees when ``outcome`` stops the client."""
    if outcome.reply is None:
        assert outcome.error is not None, "a failed outcome has a reply or an error"
        return outcome.error
    if outcome.reply.get("channel") == META_DISCONNECT:
        return ServerError("the server ended the session", outcome.reply)
    return ServerError(f"{outcome.operation.value} refused", outcome.reply)


def _describe(reply: Message) -> str:
    reason = failure_reason(reply)
    error = reply.get("error", "no error given")
    return f"{error}; failureReason {reason}" if reason else str(error)
