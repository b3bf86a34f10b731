"""The Bayeux session state machine: the only place where the session state changes.

Rule 1: every state and every transition lives here, in :data:`TRANSITIONS`, one table keyed by
``(state, input)``. A pair that is not in the table is illegal: it raises
:class:`~sfstream.exceptions.ProtocolError` and moves the machine to :attr:`State.ERROR`.

Rule 2: this module knows nothing of messages, advice or time; the engine feeds it inputs.

The docs' state diagram is generated from :data:`TRANSITIONS`. Pure module: no IO.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType
from typing import Final

from sfstream.exceptions import ProtocolError

__all__ = ["TRANSITIONS", "Input", "State", "StateMachine"]


class State(Enum):
    """Where a Bayeux session stands."""

    #: No session: never handshaken, or the server forgot us and a new handshake is due.
    UNCONNECTED = "unconnected"
    #: A handshake is in flight.
    HANDSHAKING = "handshaking"
    #: A session exists, but no connect has succeeded since the handshake or the last failure:
    #: the next connect asks the server to answer at once (``advice.timeout = 0``).
    HANDSHAKEN = "handshaken"
    #: That first connect is in flight.
    CONNECTING = "connecting"
    #: The last connect succeeded; nothing is being polled right now.
    CONNECTED = "connected"
    #: A held connect (long poll) is in flight.
    POLLING = "polling"
    #: A disconnect is in flight.
    DISCONNECTING = "disconnecting"
    #: Closed by the client. Final.
    DISCONNECTED = "disconnected"
    #: Stopped by an unrecoverable error. Final.
    ERROR = "error"


class Input(Enum):
    """What can happen to a session."""

    #: The client sends a handshake.
    SEND_HANDSHAKE = "send handshake"
    #: The server accepted the handshake.
    HANDSHAKE_OK = "handshake ok"
    #: The handshake was refused or its request failed.
    HANDSHAKE_FAILED = "handshake failed"
    #: The client sends a connect.
    SEND_CONNECT = "send connect"
    #: The server answered the connect with ``successful: true``.
    CONNECT_OK = "connect ok"
    #: The connect was refused (the session may live on) or its request failed.
    CONNECT_FAILED = "connect failed"
    #: The server forgot the session (unknown client, ``reconnect: handshake``, or a
    #: server-sent ``/meta/disconnect``).
    SESSION_LOST = "session lost"
    #: The client sends a disconnect.
    SEND_DISCONNECT = "send disconnect"
    #: The disconnect was answered or gave up.
    DISCONNECT_DONE = "disconnect done"
    #: The client closes without a session to disconnect.
    CLOSE = "close"
    #: An unrecoverable error.
    FAIL = "fail"


S, In = State, Input

_LIVE_SESSION = (S.HANDSHAKEN, S.CONNECTING, S.CONNECTED, S.POLLING)
_NOT_FINAL = (S.UNCONNECTED, S.HANDSHAKING, *_LIVE_SESSION, S.DISCONNECTING)

#: Every legal transition. Anything else is a protocol error.
TRANSITIONS: Final[Mapping[tuple[State, Input], State]] = MappingProxyType(
    {
        (S.UNCONNECTED, In.SEND_HANDSHAKE): S.HANDSHAKING,
        (S.HANDSHAKING, In.HANDSHAKE_OK): S.HANDSHAKEN,
        (S.HANDSHAKING, In.HANDSHAKE_FAILED): S.UNCONNECTED,
        (S.HANDSHAKEN, In.SEND_CONNECT): S.CONNECTING,
        (S.CONNECTED, In.SEND_CONNECT): S.POLLING,
        (S.CONNECTING, In.CONNECT_OK): S.CONNECTED,
        (S.POLLING, In.CONNECT_OK): S.CONNECTED,
        (S.CONNECTING, In.CONNECT_FAILED): S.HANDSHAKEN,
        (S.POLLING, In.CONNECT_FAILED): S.HANDSHAKEN,
        **{(state, In.SESSION_LOST): S.UNCONNECTED for state in _LIVE_SESSION},
        **{(state, In.SEND_DISCONNECT): S.DISCONNECTING for state in _LIVE_SESSION},
        (S.DISCONNECTING, In.DISCONNECT_DONE): S.DISCONNECTED,
        (S.UNCONNECTED, In.CLOSE): S.DISCONNECTED,
        (S.HANDSHAKING, In.CLOSE): S.DISCONNECTED,
        **{(state, In.FAIL): S.ERROR for state in _NOT_FINAL},
    }
)


class StateMachine:
    """Holds the current :class:`State` and applies inputs through :data:`TRANSITIONS`."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = State.UNCONNECTED

    def process(self, event: Input) -> State:
        """Apply ``event`` and return the new state.

        Raises:
            ProtocolError: the input is illegal in the current state; the machine is then in
                :attr:`State.ERROR`.
        """
        try:
            self.state = TRANSITIONS[(self.state, event)]
        except KeyError:
            old = self.state
            self.state = State.ERROR
            raise ProtocolError(
                f"illegal Bayeux transition: {event.value!r} in state {old.value!r}"
            ) from None
        return self.state

    @property
    def has_session(self) -> bool:
        """True while the server knows a clientId for us."""
        return self.state in _LIVE_SESSION

    @property
    def is_final(self) -> bool:
        """True once the session is closed or failed for good."""
        return self.state in (State.DISCONNECTED, State.ERROR)

    def __repr__(self) -> str:
        return f"<StateMachine {self.state.value}>"
