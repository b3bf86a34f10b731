"""Channel names: validation, kinds and Bayeux wildcard matching."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfstream.bayeux._channels import (
    is_meta,
    is_service,
    is_wildcard,
    matches,
    validate_channel,
    validate_subscription,
)

VALID_CHANNELS = [
    "/foo",
    "/foo/bar",
    "/meta/connect",
    "/service/echo",
    "/topic/InvoiceStatementUpdates",
    "/event/Order_Event__e",
    "/data/ChangeEvents",
    "/data/AccountChangeEvent",
    "/u/notifications/ExampleUserChannel",
    "/a-b_c!d~e(f)g$h@i.j",
    "/topic/X?Type=Technology Partner",
    "/topic/X?Type=A&Industry=B",
    "/topic/X?",
    "/0/1/2",
]

INVALID_CHANNELS = [
    "",
    "/",
    "foo",
    "foo/bar",
    "//foo",
    "/foo/",
    "/foo//bar",
    "/foo bar",
    "/foo/*",
    "/foo/**",
    "/**",
    "/foo/*/bar",
    "/**/foo",
    "/foo\n",
    "/foo\nbar",
    "/foo\n?Type=A",
    "/fo#o",
    "/é",
    "/foo/?Type=A",
    "?Type=A",
]


@pytest.mark.parametrize("channel", VALID_CHANNELS)
def test_valid_channels(channel: str) -> None:
    assert validate_channel(channel) is channel


@pytest.mark.parametrize("channel", INVALID_CHANNELS)
def test_invalid_channels(channel: str) -> None:
    with pytest.raises(ValueError, match=r"^invalid channel name "):
        validate_channel(channel)


@pytest.mark.parametrize("channel", [None, 1, b"/foo", ["/foo"]])
def test_channel_must_be_a_str(channel: object) -> None:
    with pytest.raises(TypeError, match=r"^a channel name must be a str, not "):
        validate_channel(channel)
    with pytest.raises(TypeError):
        validate_subscription(channel)


@pytest.mark.parametrize(
    "channel",
    [
        "/foo",
        "/foo/*",
        "/foo/**",
        "/*",
        "/**",
        "/foo/bar/*",
        "/topic/X?Type=Technology Partner",
        "/service/echo",
        "/service/*",
    ],
)
def test_valid_subscriptions(channel: str) -> None:
    assert validate_subscription(channel) is channel


@pytest.mark.parametrize(
    "channel",
    ["/**/foo", "/foo/*/bar", "/foo/***", "/foo*", "/foo/*?x", "/foo/*\n", "*", "/foo/", ""],
)
def test_invalid_subscriptions(channel: str) -> None:
    with pytest.raises(ValueError, match=r"^invalid channel name "):
        validate_subscription(channel)


@pytest.mark.parametrize(
    "channel", ["/meta/connect", "/meta/subscribe", "/meta/foo", "/meta/*", "/meta/**"]
)
def test_meta_subscriptions_are_refused(channel: str) -> None:
    with pytest.raises(ValueError, match=r"^cannot subscribe to the meta channel "):
        validate_subscription(channel)


@pytest.mark.parametrize(
    ("channel", "meta", "service", "wildcard"),
    [
        ("/meta/connect", True, False, False),
        ("/meta/*", True, False, True),
        ("/metadata", False, False, False),
        ("/meta", False, False, False),
        ("/service/echo", False, True, False),
        ("/services", False, False, False),
        ("/foo/*", False, False, True),
        ("/foo/**", False, False, True),
        ("/**", False, False, True),
        ("/foo*", False, False, False),
        ("/foo", False, False, False),
    ],
)
def test_kinds(channel: str, meta: bool, service: bool, wildcard: bool) -> None:
    assert is_meta(channel) is meta
    assert is_service(channel) is service
    assert is_wildcard(channel) is wildcard


@pytest.mark.parametrize(
    ("pattern", "channel", "expected"),
    [
        ("/foo/bar", "/foo/bar", True),
        ("/foo/bar", "/foo/baz", False),
        ("/foo/bar", "/foo", False),
        ("/foo/*", "/foo/bar", True),
        ("/foo/*", "/foo", False),
        ("/foo/*", "/foobar", False),
        ("/foo/*", "/foo/bar/boo", False),
        ("/foo/*", "/bar/foo", False),
        ("/foo/**", "/foo/bar", True),
        ("/foo/**", "/foo/bar/boo", True),
        ("/foo/**", "/foo", False),
        ("/foo/**", "/foobar", False),
        ("/foo/**", "/foobar/x", False),
        ("/foo/bar/*", "/foo/bar/x", True),
        ("/foo/bar/*", "/foo/baz/x", False),
        ("/*", "/foo", True),
        ("/*", "/foo/bar", False),
        ("/**", "/foo", True),
        ("/**", "/foo/bar/boo", True),
        ("/**", "/meta/connect", True),
    ],
)
def test_matches(pattern: str, channel: str, expected: bool) -> None:
    assert matches(pattern, channel) is expected


SEGMENT = st.text(alphabet=st.sampled_from("abcXYZ019-_!~()$@."), min_size=1, max_size=5)
CHANNEL = st.lists(SEGMENT, min_size=1, max_size=5).map(lambda parts: "/" + "/".join(parts))


@given(CHANNEL)
def test_every_generated_channel_is_valid_and_matches_itself(channel: str) -> None:
    assert validate_channel(channel) == channel
    assert validate_subscription(channel) == channel
    assert matches(channel, channel)
    assert matches("/**", channel)


@given(CHANNEL, CHANNEL)
def test_wildcard_semantics(prefix: str, suffix: str) -> None:
    channel = prefix + suffix
    depth = suffix.count("/")
    assert validate_subscription(prefix + "/*") == prefix + "/*"
    assert validate_subscription(prefix + "/**") == prefix + "/**"
    assert matches(prefix + "/*", channel) is (depth == 1)
    assert matches(prefix + "/**", channel)
    assert not matches(prefix + "/*", prefix)
    assert not matches(prefix + "/**", prefix)


@given(CHANNEL, CHANNEL)
def test_a_concrete_pattern_matches_only_itself(pattern: str, channel: str) -> None:
    assert matches(pattern, channel) is (pattern == channel)


@given(st.text(max_size=12))
def test_validation_accepts_or_raises_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert validate_channel(text) == text
    try:
        result = validate_subscription(text)
    except ValueError:
        return
    assert result == text
    assert text.startswith("/")
    assert not is_meta(text)
    assert "\n" not in text.partition("?")[0]
