"""The engine's pass per reply (#13): a run of deliveries on one channel, maybe followed by the
``/meta/connect`` answer, goes to each extension at once; anything else goes message by
message, and both ways give the same events and the same effects."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sfstream.bayeux._codec import RUN_MIN
from sfstream.bayeux._engine import BayeuxEngine
from sfstream.bayeux._events import Deliveries, Event, PublishReplied
from sfstream.bayeux._extensions import Extension
from sfstream.bayeux._messages import Message
from sfstream.bayeux._state import State
from tests.unit._helpers import connect_ok, event, publish_ok, wire
from tests.unit.test_engine import connected, make, only


class Runs(Extension):
    """Takes runs at once (or declines them), drops deliveries whose data is "drop"."""

    def __init__(self, log: list[tuple[Any, ...]], *, batches: bool = True) -> None:
        self.log = log
        self.batches = batches

    def incoming(self, message: Message) -> bool | None:
        self.log.append(("one", message["channel"]))
        return False if message.get("data") == "drop" else None

    def incoming_deliveries(self, channel: str, messages: list[Message]) -> list[Message] | None:
        if not self.batches:
            self.log.append(("declined", len(messages)))
            return None
        self.log.append(("run", channel, len(messages)))
        return [message for message in messages if message["data"] != "drop"]


def polling_engine(*extensions: Extension, subscribe: tuple[str, ...] = ("/a",)) -> BayeuxEngine:
    engine = make(extensions=list(extensions))
    connected(engine)
    for channel in subscribe:
        engine.subscribe(channel)
    for extension in extensions:
        if isinstance(extension, Runs):
            extension.log.clear()  # the handshake and the first connect went through it
    return engine


def deliveries(events: list[Event]) -> list[Any]:
    return [m["data"] for e in events if isinstance(e, Deliveries) for m in e.messages]


def run(*data: Any, channel: str = "/a") -> list[Message]:
    """Deliveries on ``channel``, RUN_MIN of them at least (filled up with numbers)."""
    values = [*data, *range(100, 100 + RUN_MIN - len(data))]
    return [event(channel, value) for value in values]


def test_a_run_with_the_connect_answer_goes_to_the_batch_hook_once() -> None:
    log: list[tuple[Any, ...]] = []
    engine = polling_engine(Runs(log))
    held = only(engine.connect())
    events = engine.receive(wire([*run(1, 2, 3), connect_ok(held)]))
    assert deliveries(events)[:3] == [1, 2, 3]
    assert len(deliveries(events)) == RUN_MIN
    assert log == [("run", "/a", RUN_MIN), ("one", "/meta/connect")]
    assert engine.state is State.CONNECTED


def test_a_run_without_the_connect_answer() -> None:
    log: list[tuple[Any, ...]] = []
    engine = polling_engine(Runs(log))
    events = engine.receive(wire(run(1, "drop", 3)))
    assert deliveries(events)[:2] == [1, 3]
    assert len(deliveries(events)) == RUN_MIN - 1
    assert log == [("run", "/a", RUN_MIN)]


def test_hooks_run_in_the_incoming_order_and_a_declining_one_goes_message_by_message() -> None:
    log: list[tuple[Any, ...]] = []
    outer = Runs(log)
    inner = Runs(log, batches=False)  # registered last: its incoming hooks run first
    engine = polling_engine(outer, inner)
    events = engine.receive(wire(run("drop", 2)))
    assert deliveries(events)[0] == 2
    # the declining one drops "drop" on its own, message by message; the next sees the rest
    assert log == [
        ("declined", RUN_MIN),
        *[("one", "/a")] * RUN_MIN,
        ("run", "/a", RUN_MIN - 1),
    ]


def test_a_run_dropped_whole_gives_no_deliveries_but_the_connect_is_answered() -> None:
    log: list[tuple[Any, ...]] = []
    engine = polling_engine(Runs(log))
    held = only(engine.connect())
    events = engine.receive(wire([*run(*["drop"] * RUN_MIN), connect_ok(held)]))
    assert events == []
    assert engine.state is State.CONNECTED
    assert log == [("run", "/a", RUN_MIN), ("one", "/meta/connect")]


def test_the_base_extension_declines_runs() -> None:
    assert Extension().incoming_deliveries("/a", [event("/a", 1)]) is None
    engine = polling_engine(Extension())
    assert deliveries(engine.receive(wire(run(1, 2))))[:2] == [1, 2]


def test_without_extensions_a_run_is_delivered_as_it_came() -> None:
    engine = polling_engine()
    messages = wire(run(1, 2))
    [delivered] = engine.receive(messages)
    assert delivered == Deliveries(messages)


def replies(engine: BayeuxEngine) -> dict[str, list[Message]]:
    held = only(engine.connect())
    publish = only(engine.publish("/a", "x"))
    return {
        "mixed channels": [*run(1), event("/b", 2), event("/a", 3)],
        "meta first": [connect_ok(held), *run(1, 2)],
        "a publish reply in the run": [*run(1), publish_ok(publish)],
        "a second connect answer": [*run(1), connect_ok(held), connect_ok(held)],
        "a short reply": [event("/a", 1), event("/a", 2), connect_ok(held)],
        "an unsubscribed channel": run(1, 2, channel="/gone"),
    }


@pytest.mark.parametrize(
    "name",
    [
        "mixed channels",
        "meta first",
        "a publish reply in the run",
        "a second connect answer",
        "a short reply",
        "an unsubscribed channel",
    ],
)
def test_other_replies_go_message_by_message(name: str) -> None:
    log: list[tuple[Any, ...]] = []
    engine = polling_engine(Runs(log), subscribe=("/a", "/b", "/gone"))
    engine.unsubscribe("/gone")
    reply = replies(engine)[name]
    events = engine.receive(wire(reply))
    assert all(entry[0] == "one" for entry in log)
    assert len(log) == len(reply)
    if name == "a publish reply in the run":
        assert any(isinstance(e, PublishReplied) for e in events)
    if name == "an unsubscribed channel":
        assert events == []


def test_a_run_and_the_same_reply_message_by_message_have_the_same_effects() -> None:
    def receive(as_list: bool) -> tuple[list[Event], list[tuple[Any, ...]], State]:
        log: list[tuple[Any, ...]] = []
        engine = polling_engine(Runs(log, batches=False), subscribe=("/a", "/gone"))
        engine.unsubscribe("/gone")
        held = only(engine.connect())
        reply = wire([*run(1, "drop", 3), connect_ok(held)])
        # an iterator is not a list: the engine takes it message by message
        events = engine.receive(reply if as_list else iter(copy.deepcopy(reply)))
        return events, log, engine.state

    fast, slow = receive(True), receive(False)
    assert fast[0] == slow[0]
    assert deliveries(fast[0])[:2] == [1, 3]
    assert fast[1] == [("declined", RUN_MIN), *slow[1]]  # then the same calls, in order
    assert fast[2] is slow[2] is State.CONNECTED
