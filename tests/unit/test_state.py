"""The state table: every legal transition, and every illegal one failing into ERROR."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfstream.bayeux._state import TRANSITIONS, Input, State, StateMachine
from sfstream.exceptions import ProtocolError

S, In = State, Input

#: The table written out by hand, so a change to TRANSITIONS must be made twice on purpose.
EXPECTED: dict[tuple[State, Input], State] = {
    (S.UNCONNECTED, In.SEND_HANDSHAKE): S.HANDSHAKING,
    (S.HANDSHAKING, In.HANDSHAKE_OK): S.HANDSHAKEN,
    (S.HANDSHAKING, In.HANDSHAKE_FAILED): S.UNCONNECTED,
    (S.HANDSHAKEN, In.SEND_CONNECT): S.CONNECTING,
    (S.CONNECTED, In.SEND_CONNECT): S.POLLING,
    (S.CONNECTING, In.CONNECT_OK): S.CONNECTED,
    (S.POLLING, In.CONNECT_OK): S.CONNECTED,
    (S.CONNECTING, In.CONNECT_FAILED): S.HANDSHAKEN,
    (S.POLLING, In.CONNECT_FAILED): S.HANDSHAKEN,
    (S.HANDSHAKEN, In.SESSION_LOST): S.UNCONNECTED,
    (S.CONNECTING, In.SESSION_LOST): S.UNCONNECTED,
    (S.CONNECTED, In.SESSION_LOST): S.UNCONNECTED,
    (S.POLLING, In.SESSION_LOST): S.UNCONNECTED,
    (S.HANDSHAKEN, In.SEND_DISCONNECT): S.DISCONNECTING,
    (S.CONNECTING, In.SEND_DISCONNECT): S.DISCONNECTING,
    (S.CONNECTED, In.SEND_DISCONNECT): S.DISCONNECTING,
    (S.POLLING, In.SEND_DISCONNECT): S.DISCONNECTING,
    (S.DISCONNECTING, In.DISCONNECT_DONE): S.DISCONNECTED,
    (S.UNCONNECTED, In.CLOSE): S.DISCONNECTED,
    (S.HANDSHAKING, In.CLOSE): S.DISCONNECTED,
    **{(state, In.FAIL): S.ERROR for state in State if state not in (S.DISCONNECTED, S.ERROR)},
}

ILLEGAL = [pair for pair in itertools.product(State, Input) if pair not in EXPECTED]


def test_table_is_the_expected_one() -> None:
    assert dict(TRANSITIONS) == EXPECTED


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[(S.ERROR, In.SEND_HANDSHAKE)] = S.UNCONNECTED  # type: ignore[index]


def _machine_in(state: State) -> StateMachine:
    machine = StateMachine()
    machine.state = state
    return machine


@pytest.mark.parametrize(
    ("state", "event", "target"),
    [(state, event, target) for (state, event), target in EXPECTED.items()],
    ids=[f"{state.name}-{event.name}" for state, event in EXPECTED],
)
def test_legal_transition(state: State, event: Input, target: State) -> None:
    machine = _machine_in(state)
    assert machine.process(event) is target
    assert machine.state is target


@pytest.mark.parametrize(
    ("state", "event"), ILLEGAL, ids=[f"{state.name}-{event.name}" for state, event in ILLEGAL]
)
def test_illegal_transition_fails_into_error(state: State, event: Input) -> None:
    machine = _machine_in(state)
    with pytest.raises(ProtocolError) as info:
        machine.process(event)
    assert str(info.value) == (
        f"illegal Bayeux transition: {event.value!r} in state {state.value!r}"
    )
    assert info.value.__suppress_context__
    assert machine.state is State.ERROR
    assert machine.is_final


def test_final_states_accept_nothing() -> None:
    for state in (S.DISCONNECTED, S.ERROR):
        assert not any(key[0] is state for key in TRANSITIONS)


def test_every_state_but_the_final_ones_can_be_left() -> None:
    for state in State:
        leaves = any(key[0] is state for key in TRANSITIONS)
        assert leaves is (state not in (S.DISCONNECTED, S.ERROR))


def test_starts_unconnected() -> None:
    machine = StateMachine()
    assert machine.state is State.UNCONNECTED
    assert not machine.has_session
    assert not machine.is_final
    assert repr(machine) == "<StateMachine unconnected>"


@pytest.mark.parametrize(
    ("state", "has_session", "is_final"),
    [
        (S.UNCONNECTED, False, False),
        (S.HANDSHAKING, False, False),
        (S.HANDSHAKEN, True, False),
        (S.CONNECTING, True, False),
        (S.CONNECTED, True, False),
        (S.POLLING, True, False),
        (S.DISCONNECTING, False, False),
        (S.DISCONNECTED, False, True),
        (S.ERROR, False, True),
    ],
)
def test_properties(state: State, has_session: bool, is_final: bool) -> None:
    machine = _machine_in(state)
    assert machine.has_session is has_session
    assert machine.is_final is is_final
    assert repr(machine) == f"<StateMachine {state.value}>"


def test_no_instance_dict() -> None:
    with pytest.raises(AttributeError):
        StateMachine().other = 1  # type: ignore[attr-defined]


def test_a_typical_life() -> None:
    machine = StateMachine()
    for event, state in [
        (In.SEND_HANDSHAKE, S.HANDSHAKING),
        (In.HANDSHAKE_FAILED, S.UNCONNECTED),
        (In.SEND_HANDSHAKE, S.HANDSHAKING),
        (In.HANDSHAKE_OK, S.HANDSHAKEN),
        (In.SEND_CONNECT, S.CONNECTING),
        (In.CONNECT_OK, S.CONNECTED),
        (In.SEND_CONNECT, S.POLLING),
        (In.CONNECT_FAILED, S.HANDSHAKEN),
        (In.SEND_CONNECT, S.CONNECTING),
        (In.SESSION_LOST, S.UNCONNECTED),
        (In.SEND_HANDSHAKE, S.HANDSHAKING),
        (In.HANDSHAKE_OK, S.HANDSHAKEN),
        (In.SEND_DISCONNECT, S.DISCONNECTING),
        (In.DISCONNECT_DONE, S.DISCONNECTED),
    ]:
        assert machine.process(event) is state


@given(st.lists(st.sampled_from(Input), max_size=30))
def test_random_inputs_follow_the_table(events: list[Input]) -> None:
    machine = StateMachine()
    for event in events:
        before = machine.state
        expected = TRANSITIONS.get((before, event))
        if expected is None:
            with pytest.raises(ProtocolError):
                machine.process(event)
            assert machine.state is State.ERROR
        else:
            assert machine.process(event) is expected
        assert machine.has_session is (
            machine.state in (S.HANDSHAKEN, S.CONNECTING, S.CONNECTED, S.POLLING)
        )
