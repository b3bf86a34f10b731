"""Fault injection: what the next requests should suffer instead of (or before) a normal reply.

A fault is armed for ``count`` requests (``None``: until cleared) on one *target*: the CometD
endpoint (``"cometd"``), the OAuth endpoints (``"token"``), the REST API (``"rest"``) or all of
them (``"any"``). Bayeux faults answer one message on a given meta channel with an error and
advice; HTTP faults change the whole response (status, invalid JSON, dropped connection, delay).
Faults are taken first come, first served; each request suffers at most one HTTP fault.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, Literal

__all__ = [
    "PRESETS",
    "Fault",
    "FaultKind",
    "FaultQueue",
    "Target",
    "authentication_invalid",
    "concurrent_user_limit",
    "daily_limit_exceeded",
    "handshake_denied",
    "server_busy",
    "unknown_client",
]

Target = Literal["cometd", "token", "rest", "any"]
TARGETS: Final = ("cometd", "token", "rest", "any")


class FaultKind(Enum):
    BAYEUX = "bayeux"  # answer a Bayeux message with error/advice/ext
    STATUS = "status"  # HTTP status (500, 502, ...) with an HTML body
    INVALID_JSON = "invalid_json"  # 200 with a body that is not JSON
    DROP = "drop"  # close the TCP connection (before or in the middle of the response)
    DELAY = "delay"  # wait, then answer normally


@dataclass(eq=False)
class Fault:
    """One armed fault. See :class:`FaultQueue`."""

    kind: FaultKind
    count: int | None = 1
    target: Target = "cometd"
    #: Only requests carrying a message on this Bayeux channel trigger it (None: any request).
    channel: str | None = None
    # Bayeux faults
    error: str | None = None
    advice: dict[str, Any] | None = None
    ext: dict[str, Any] | None = None
    #: Forget the Bayeux session too (as for ``403::Unknown client``).
    expire_session: bool = False
    #: Echo the message's ``clientId`` even when the session is forgotten (as Salesforce's
    #: ``403::Unknown client`` with ``reconnect: none`` does, wire evidence E16).
    keep_client_id: bool = False
    # HTTP faults
    status: int = 500
    seconds: float = 0.0
    #: DROP: "before_response" (reset, no bytes) or "mid_response" (half a body, then close).
    when: Literal["before_response", "mid_response"] = "mid_response"
    #: How many times it fired.
    fired: int = field(default=0)

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly description (the admin endpoint lists these)."""
        out: dict[str, Any] = {
            "kind": self.kind.value,
            "count": self.count,
            "target": self.target,
            "channel": self.channel,
            "fired": self.fired,
        }
        if self.kind is FaultKind.BAYEUX:
            out.update(error=self.error, advice=self.advice, ext=self.ext)
            out["expire_session"] = self.expire_session
            out["keep_client_id"] = self.keep_client_id
        elif self.kind is FaultKind.STATUS:
            out["status"] = self.status
        elif self.kind is FaultKind.DELAY:
            out["seconds"] = self.seconds
        elif self.kind is FaultKind.DROP:
            out["when"] = self.when
        return out


class FaultQueue:
    """The armed faults, in the order they were added."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        if fault.target not in TARGETS:
            raise ValueError(f"fault target must be one of {TARGETS}, not {fault.target!r}")
        if fault.count is not None and fault.count < 1:
            raise ValueError("a fault must fire at least once (count >= 1, or None for always)")
        self._faults.append(fault)
        return fault

    def _consume(self, fault: Fault) -> Fault:
        fault.fired += 1
        if fault.count is not None:
            fault.count -= 1
            if fault.count == 0:
                self._faults.remove(fault)
        return fault

    def take_http(self, target: str, channels: Collection[str] = ()) -> Fault | None:
        """The first HTTP-level fault for a request to ``target`` carrying ``channels``."""
        for fault in self._faults:
            if fault.kind is FaultKind.BAYEUX or fault.target not in (target, "any"):
                continue
            if fault.channel is not None and fault.channel not in channels:
                continue
            return self._consume(fault)
        return None

    def take_bayeux(self, channel: str) -> Fault | None:
        """The first Bayeux fault for a message on ``channel``."""
        for fault in self._faults:
            if fault.kind is not FaultKind.BAYEUX:
                continue
            if fault.channel is not None and fault.channel != channel:
                continue
            return self._consume(fault)
        return None

    def clear(self) -> int:
        """Disarm everything; returns how many faults were armed."""
        count = len(self._faults)
        self._faults.clear()
        return count

    def __len__(self) -> int:
        return len(self._faults)

    def __iter__(self) -> Iterator[Fault]:
        return iter(list(self._faults))


# -- presets: the failures Salesforce is documented (or observed) to produce --------------------

#: ``ext.sfdc.failureReason`` when a server refuses a handshake for its connection limit.
#: Salesforce writes two spaces between the sentences (wire evidence E6).
CONNECTION_LIMIT_REASON: Final = (
    "403::To protect all customers from excessive use and Denial of Service attacks, we limit "
    "the number of simultaneous connections per server.  Your request has been denied because "
    "this limit has been exceeded.  Please try your request again later."
)
#: Two spaces after the full stop, as in Salesforce's example (wire evidence E6).
SERVER_BUSY_REASON: Final = "503::Server is too busy.  Please try your request again later."
_HANDSHAKE_EXT: Final = {"replay": True, "payload.format": True}


def unknown_client(
    count: int | None = 1, *, reconnect: Literal["handshake", "none", "retry"] = "handshake"
) -> Fault:
    """``403::Unknown client`` on the next connects; the session is forgotten.

    ``reconnect="handshake"`` is the documented advice (and the reply has no ``clientId``);
    ``"none"`` was observed too, with the ``clientId`` echoed (wire evidence E16).
    """
    return Fault(
        FaultKind.BAYEUX,
        count,
        channel="/meta/connect",
        error="403::Unknown client",
        advice={"interval": 0, "reconnect": reconnect},
        expire_session=True,
        keep_client_id=reconnect == "none",
    )


def authentication_invalid(count: int | None = 1, *, channel: str = "/meta/connect") -> Fault:
    """``401::Authentication invalid`` with ``reconnect: none`` (as for a revoked token)."""
    return Fault(
        FaultKind.BAYEUX,
        count,
        channel=channel,
        error="401::Authentication invalid",
        advice={"reconnect": "none", "interval": 0},
    )


def server_busy(count: int | None = 1, *, channel: str = "/meta/connect") -> Fault:
    """A 503 in ``ext.sfdc.failureReason`` behind a ``401::Authentication invalid`` error."""
    return Fault(
        FaultKind.BAYEUX,
        count,
        channel=channel,
        error="401::Authentication invalid",
        advice={"reconnect": "none", "interval": 0},
        ext={"sfdc": {"failureReason": SERVER_BUSY_REASON}},
    )


def daily_limit_exceeded(
    count: int | None = 1,
    *,
    channel: str = "/meta/connect",
    advice: dict[str, Any] | None = None,
) -> Fault:
    """``403::Organization total events daily limit exceeded``.

    Salesforce documents the string on ``/meta/connect`` (and a check at subscribe). On
    ``/meta/subscribe`` a captured reply carries no advice (wire evidence E12), so none is
    sent there; the advice on ``/meta/connect`` is not documented, so the default there is
    ``{"reconnect": "none", "interval": 0}``. Pass ``advice`` to send another.
    """
    if advice is None and channel != "/meta/subscribe":
        advice = {"reconnect": "none", "interval": 0}
    return Fault(
        FaultKind.BAYEUX,
        count,
        channel=channel,
        error="403::Organization total events daily limit exceeded",
        advice=advice,
    )


def handshake_denied(count: int | None = 1, *, reason: str = CONNECTION_LIMIT_REASON) -> Fault:
    """``403::Handshake denied`` with ``reason`` as ``ext.sfdc.failureReason``."""
    return Fault(
        FaultKind.BAYEUX,
        count,
        channel="/meta/handshake",
        error="403::Handshake denied",
        advice={"reconnect": "none"},
        ext={"sfdc": {"failureReason": reason}, **_HANDSHAKE_EXT},
    )


def concurrent_user_limit(count: int | None = 1) -> Fault:
    """A handshake denial for ``403::Organization concurrent user limit exceeded``."""
    return handshake_denied(count, reason="403::Organization concurrent user limit exceeded")


def _unknown_client_none(count: int | None = 1) -> Fault:
    return unknown_client(count, reconnect="none")


#: Preset faults by the names the admin endpoint uses.
PRESETS: Final[dict[str, Callable[[int | None], Fault]]] = {
    "unknown-client": unknown_client,
    "unknown-client-none": _unknown_client_none,
    "authentication-invalid": authentication_invalid,
    "server-busy": server_busy,
    "daily-limit": daily_limit_exceeded,
    "connection-limit": handshake_denied,
    "concurrent-user-limit": concurrent_user_limit,
}
