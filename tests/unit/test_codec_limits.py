"""The codec's optional limits: per-message size, nesting depth, and the pre-parse depth check."""

from __future__ import annotations

import json

import pytest

from sfstream.bayeux import _codec
from sfstream.bayeux._codec import decode
from sfstream.exceptions import ProtocolError


def body(*messages: object) -> bytes:
    return json.dumps(list(messages)).encode()


def test_message_size_limit() -> None:
    small = {"channel": "/a", "data": "x"}
    large = {"channel": "/a", "data": "y" * 500}
    assert decode(body(small, small), max_message_size=100) == [small, small]
    # the reply is over the limit, no message is: accepted
    assert decode(body(small, small, small), max_message_size=60) == [small, small, small]
    assert decode(body(small, large), max_message_size=1000) == [small, large]
    with pytest.raises(ProtocolError, match=r"^message 1 of the reply is \d+ bytes, larger"):
        decode(body(small, large), max_message_size=100)


def test_depth_limit_counts_dicts_and_lists() -> None:
    shallow = {"channel": "/a", "data": {"b": [1, 2]}}  # depth 3
    deep_list = {"channel": "/a", "data": [[[1]]]}  # depth 4
    deep_dict = {"channel": "/a", "data": {"b": {"c": {}}}}  # depth 4
    assert decode(body(shallow), max_depth=3) == [shallow]
    for message in (deep_list, deep_dict):
        with pytest.raises(ProtocolError, match="nested deeper than 3 levels"):
            decode(body(shallow, message), max_depth=3)


def test_text_depth_ignores_brackets_inside_strings() -> None:
    assert not _codec._deeper_than_text(b'[{"a": "[[[[[[[["}]', 3)
    assert _codec._deeper_than_text('[[[[["x"]]]]]', 3)
    assert not _codec._deeper_than_text(b"[[]]", 3)  # few brackets: no scan at all
    assert not _codec._deeper_than_text(b"[[[]]] [[[]]] [[[]]]", 3)


def test_a_deep_reply_is_refused_before_parsing_where_the_stack_is_at_risk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_codec, "_native_stack_at_risk", lambda: True)
    deep = "[" * 6000 + "]" * 6000
    with pytest.raises(ProtocolError, match="nested too deeply"):
        decode(deep)
    # a reply within the safe depth parses as usual
    assert decode('[{"channel": "/a", "data": [[1]]}]') == [{"channel": "/a", "data": [[1]]}]


def test_huge_advice_numbers_are_refused() -> None:
    reply = '[{"channel": "/meta/connect", "successful": true, "advice": {"timeout": 1e300}}]'
    with pytest.raises(ProtocolError, match="out of range"):
        decode(reply)
