"""The codec: untrusted reply bodies become validated messages, or a ProtocolError."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfstream.bayeux._codec import DEFAULT_MAX_MESSAGES, RUN_MIN, decode, encode
from sfstream.bayeux._messages import Message
from sfstream.exceptions import ProtocolError

HANDSHAKE_REPLY: Message = {
    "channel": "/meta/handshake",
    "id": "1",
    "successful": True,
    "clientId": "c1",
    "version": "1.0",
    "minimumVersion": "1.0",
    "supportedConnectionTypes": ["long-polling"],
    "ext": {"replay": True, "payload.format": True},
    "advice": {"reconnect": "retry", "interval": 0, "timeout": 110000, "maxInterval": 1500},
}


def test_encode_is_a_json_array_of_utf8() -> None:
    messages: list[Message] = [{"channel": "/x", "data": {"text": "é"}}]
    body = encode(messages)
    assert isinstance(body, bytes)
    assert json.loads(body.decode("utf-8")) == [{"channel": "/x", "data": {"text": "é"}}]


def test_encode_accepts_any_sequence() -> None:
    messages: tuple[Message, ...] = ({"channel": "/a"}, {"channel": "/b"})
    assert json.loads(encode(messages)) == [{"channel": "/a"}, {"channel": "/b"}]


def test_encode_with_a_dumps_returning_bytes() -> None:
    seen: list[Any] = []

    def dumps(value: Any) -> bytes:
        seen.append(value)
        return b"BYTES"

    assert encode([{"channel": "/a"}], dumps=dumps) == b"BYTES"
    assert seen == [[{"channel": "/a"}]]


def test_encode_with_a_dumps_returning_str() -> None:
    assert encode([{"channel": "/a"}], dumps=lambda value: '["é"]') == '["é"]'.encode()


@pytest.mark.parametrize("as_bytes", [False, True])
def test_round_trip(as_bytes: bool) -> None:
    messages: list[Message] = [
        HANDSHAKE_REPLY,
        {"channel": "/topic/X", "data": {"event": {"replayId": 5}}, "id": "e1"},
        {"channel": "/meta/subscribe", "successful": False, "subscription": ["/a", "/b"]},
    ]
    body = encode(messages)
    assert decode(body if as_bytes else body.decode()) == messages


def test_decode_with_a_custom_loads() -> None:
    seen: list[str | bytes] = []

    def loads(body: str | bytes) -> Any:
        seen.append(body)
        return [{"channel": "/x", "data": 1}]

    assert decode(b"anything", loads=loads) == [{"channel": "/x", "data": 1}]
    assert seen == [b"anything"]


def test_single_object_is_a_batch_of_one() -> None:
    assert decode('{"channel": "/meta/connect", "successful": true}') == [
        {"channel": "/meta/connect", "successful": True}
    ]


def test_empty_array() -> None:
    assert decode(b"[]") == []


def test_int_id_is_normalised_to_str() -> None:
    [message] = decode('[{"channel": "/meta/connect", "id": 42, "successful": true}]')
    assert message["id"] == "42"
    [delivery] = decode('[{"channel": "/x", "id": 7, "data": null}]')
    assert delivery["id"] == "7"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        pytest.param(b"not json", "not valid JSON", id="not-json"),
        pytest.param(b"\xff\xfe\x00garbage", "not valid JSON", id="bad-bytes"),
        pytest.param(b"", "not valid JSON", id="empty-body"),
        pytest.param("[1", "not valid JSON", id="truncated"),
        pytest.param("42", "a JSON int, not an array", id="number"),
        pytest.param('"text"', "a JSON str, not an array", id="string"),
        pytest.param("null", "a JSON null, not an array", id="null"),
        pytest.param("true", "a JSON bool, not an array", id="bool"),
        pytest.param("[1]", "message 0 of the reply is a int, not an object", id="int-item"),
        pytest.param(
            '[{"channel": "/a"}, null]', "message 1 of the reply is a null", id="null-item"
        ),
        pytest.param('[["/a"]]', "message 0 of the reply is a list", id="list-item"),
        pytest.param("[{}]", "message 0 of the reply has no channel", id="no-channel"),
        pytest.param('[{"channel": null}]', "has no channel", id="null-channel"),
        pytest.param('[{"channel": 5}]', "has an invalid channel 5", id="int-channel"),
        pytest.param('[{"channel": "meta/x"}]', "invalid channel 'meta/x'", id="no-slash"),
        pytest.param('[{"channel": ""}]', "invalid channel ''", id="empty-channel"),
        pytest.param('[{"channel": "/x", "id": true}]', "an id of type bool", id="bool-id"),
        pytest.param('[{"channel": "/x", "id": 1.5}]', "an id of type float", id="float-id"),
        pytest.param('[{"channel": "/x", "id": null}]', "an id of type null", id="null-id"),
        pytest.param('[{"channel": "/x", "id": ["1"]}]', "an id of type list", id="list-id"),
    ],
)
def test_malformed_replies(body: str | bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(fragment)):
        decode(body)


FIELD_CASES = [
    ("clientId", 1, "int"),
    ("clientId", None, "null"),
    ("successful", "true", "str"),
    ("successful", 1, "int"),
    ("successful", None, "null"),
    ("error", 403, "int"),
    ("error", None, "null"),
    ("advice", [], "list"),
    ("advice", "retry", "str"),
    ("ext", "x", "str"),
    ("ext", [1], "list"),
    ("ext", None, "null"),
    ("subscription", 1, "int"),
    ("subscription", {"a": 1}, "dict"),
    ("version", 1.0, "float"),
    ("supportedConnectionTypes", "long-polling", "str"),
]


@pytest.mark.parametrize(("field", "value", "type_name"), FIELD_CASES)
@pytest.mark.parametrize("channel", ["/meta/connect", "/topic/X"])
def test_wrongly_typed_fields(field: str, value: Any, type_name: str, channel: str) -> None:
    message = {"channel": channel, "id": "3", field: value}
    with pytest.raises(ProtocolError) as info:
        decode(json.dumps([{"channel": "/ok"}, message]))
    assert str(info.value) == (f"message 1 ({channel}) has a field {field!r} of type {type_name}")


@pytest.mark.parametrize(("field", "value", "type_name"), FIELD_CASES)
def test_wrongly_typed_fields_next_to_data_are_refused(
    field: str, value: Any, type_name: str
) -> None:
    # A delivery with only channel, data and one more field is still checked.
    with pytest.raises(ProtocolError, match=f"has a field '{field}' of type {type_name}"):
        decode(json.dumps([{"channel": "/topic/X", "data": {}, field: value}]))


@pytest.mark.parametrize(
    ("advice", "fragment"),
    [
        ({"reconnect": 1}, "advice.reconnect of type int"),
        ({"reconnect": True}, "advice.reconnect of type bool"),
        ({"interval": "0"}, "advice.interval of type str"),
        ({"interval": True}, "advice.interval of type bool"),
        ({"timeout": False}, "advice.timeout of type bool"),
        ({"timeout": [1]}, "advice.timeout of type list"),
        ({"maxInterval": {}}, "advice.maxInterval of type dict"),
        ({"maxInterval": True}, "advice.maxInterval of type bool"),
    ],
)
def test_wrongly_typed_advice(advice: dict[str, Any], fragment: str) -> None:
    body = json.dumps([{"channel": "/meta/connect", "successful": True, "advice": advice}])
    with pytest.raises(ProtocolError, match=rf"^message 0 \(/meta/connect\) has {fragment}$"):
        decode(body)


@pytest.mark.parametrize(
    "advice",
    [
        {},
        {"reconnect": "handshake", "interval": 0, "timeout": 1.5, "maxInterval": 10000},
        {"interval": None, "timeout": None, "reconnect": None, "maxInterval": None},
        {"hosts": ["a"], "callback-polling": {"reconnect": "none"}},
    ],
)
def test_well_typed_advice_is_accepted(advice: dict[str, Any]) -> None:
    message = {"channel": "/meta/connect", "successful": True, "advice": advice}
    assert decode(json.dumps(message)) == [message]


def test_plain_deliveries_need_no_field_checks() -> None:
    messages = [
        {"channel": "/topic/X", "data": {"successful": "anything"}},
        {"channel": "/topic/X", "data": None, "id": "1"},
        {"channel": "/service/x", "id": 5},
        {"channel": "/topic/X"},
    ]
    assert decode(json.dumps(messages)) == [
        {"channel": "/topic/X", "data": {"successful": "anything"}},
        {"channel": "/topic/X", "data": None, "id": "1"},
        {"channel": "/service/x", "id": "5"},
        {"channel": "/topic/X"},
    ]


def test_unknown_fields_pass_through() -> None:
    message = {"channel": "/meta/connect", "successful": True, "timestamp": 1, "x-custom": [1]}
    assert decode(json.dumps([message])) == [message]


def test_too_many_messages() -> None:
    body = json.dumps([{"channel": "/x", "data": i} for i in range(4)])
    assert len(decode(body, max_messages=4)) == 4
    with pytest.raises(
        ProtocolError, match=r"^the reply carries 4 messages, more than the limit of 3$"
    ):
        decode(body, max_messages=3)
    assert DEFAULT_MAX_MESSAGES == 100_000


def test_deep_nesting_is_a_protocol_error() -> None:
    depth = 100_000
    with pytest.raises(ProtocolError, match=r"^the reply is nested too deeply to parse$"):
        decode("[" * depth + "]" * depth)


def test_loads_type_error_is_a_protocol_error() -> None:
    def loads(body: str | bytes) -> Any:
        raise TypeError("the JSON object must be str, bytes or bytearray")

    with pytest.raises(ProtocolError, match="not valid JSON: the JSON object must be str"):
        decode(b"[]", loads=loads)


def test_other_loads_errors_propagate() -> None:
    # Only parse errors become ProtocolError; a bug in the loader is not hidden.
    def loads(body: str | bytes) -> Any:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        decode(b"[]", loads=loads)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(["/meta/connect", "/meta/handshake", "/topic/X", "x"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "channel",
                    "id",
                    "clientId",
                    "successful",
                    "error",
                    "advice",
                    "ext",
                    "data",
                    "subscription",
                    "version",
                    "supportedConnectionTypes",
                    "reconnect",
                    "interval",
                    "timeout",
                    "maxInterval",
                ]
            )
            | st.text(max_size=4),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@given(JSON)
def test_arbitrary_json_is_decoded_or_refused_cleanly(value: Any) -> None:
    try:
        messages = decode(json.dumps(value))
    except ProtocolError:
        return
    assert isinstance(messages, list)
    for message in messages:
        assert isinstance(message, dict)
        assert isinstance(message["channel"], str)
        assert message["channel"].startswith("/")
        assert "id" not in message or isinstance(message["id"], str)
        advice = message.get("advice")
        if advice is not None and not message.keys() <= {"channel", "data", "id"}:
            assert isinstance(advice, dict)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_are_decoded_or_refused_cleanly(body: bytes) -> None:
    try:
        messages = decode(body)
    except ProtocolError:
        return
    assert all(isinstance(message, dict) for message in messages)


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN"])
def test_non_finite_advice_is_refused(value: str) -> None:
    body = '[{"channel": "/meta/connect", "successful": true, "advice": {"interval": %s}}]'
    with pytest.raises(ProtocolError, match=r"advice\.interval"):
        decode(body % value)


def test_two_key_messages_that_are_not_plain_deliveries_get_the_full_check() -> None:
    assert decode('[{"channel": "/meta/connect", "data": 1}]') == [
        {"channel": "/meta/connect", "data": 1}
    ]
    with pytest.raises(ProtocolError, match="invalid channel 5"):
        decode('[{"channel": 5, "data": 1}]')
    with pytest.raises(ProtocolError, match="invalid channel 'x'"):
        decode('[{"channel": "x", "data": 1}]')


# -- the usual busy reply, checked per reply (#13) ------------------------------------------

RUN = [{"channel": "/event/A__e", "data": {"n": n}} for n in range(RUN_MIN)]
CONNECT = {"channel": "/meta/connect", "id": "7", "successful": True}
LAST = len(RUN)  # the index of a message after the run


@pytest.mark.parametrize(
    "messages",
    [
        RUN,
        [*RUN, CONNECT],
        [*RUN, {"channel": "/event/B__e", "data": 1}],  # a last delivery on another channel
        [*RUN, {"channel": "/event/A__e", "data": 1, "id": 9}],  # an id, normalised
        [CONNECT, *RUN],  # the connect answer first: message by message
        [RUN[0], {"channel": "/event/B__e", "data": 1}, *RUN],  # mixed channels
        [*RUN, {"channel": "/event/A__e", "other": 1}],  # two keys, no data
        [{"channel": "/event/A__e", "data": 1, "id": "3"}, *RUN],  # a third key in the run
        [{"channel": "/event/A__e", "other": 1}, *RUN],
        RUN[:2],  # a short reply: message by message
    ],
)
def test_usual_and_nearly_usual_replies_decode_as_they_came(messages: list[Message]) -> None:
    decoded = decode(json.dumps(messages))
    assert [m["channel"] for m in decoded] == [m["channel"] for m in messages]
    assert [m.get("data") for m in decoded] == [m.get("data") for m in messages]
    assert all(type(m.get("id", "")) is str for m in decoded)


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([*RUN, {"channel": "/meta/connect", "successful": "yes"}], f"message {LAST} (/meta/"),
        ([*RUN, {"data": 1}], f"message {LAST} of the reply has no channel"),
        ([*RUN, [1, 2]], f"message {LAST} of the reply is a list"),
        ([*RUN, "text"], f"message {LAST} of the reply is a str"),
        ([{"channel": 5, "data": 1}, *RUN], "message 0 of the reply has an invalid channel 5"),
        ([{"channel": "x", "data": 1}, *RUN], "message 0 of the reply has an invalid channel"),
        (
            [*RUN[:-1], {"channel": "/event/A__e", "data": 1, "id": []}],
            f"message {LAST - 1} (/event/A__e)",
        ),
        ([*RUN, {"channel": "/x", "data": 1, "ext": 3}], f"message {LAST} (/x) has a field 'ext'"),
    ],
)
def test_a_bad_message_after_or_in_a_run_is_named(messages: list[Any], fragment: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(fragment)):
        decode(json.dumps(messages))
