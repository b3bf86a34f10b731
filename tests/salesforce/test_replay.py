"""Replay: storages, marker extraction per channel kind, and the replay extension.

The event messages are shaped like the examples of Salesforce's documentation (see
``salesforce-protocol.md`` §4).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import shelve
import sys
import types
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from sfstream.bayeux import BayeuxEngine, Message
from sfstream.exceptions import ReplayError, ServerError
from sfstream.salesforce._replay import (
    ConstantReplayId,
    DefaultMappingStorage,
    MappingStorage,
    ReplayExtension,
    ReplayMarker,
    ReplayMarkerStorage,
    ReplayMarkerStoragePolicy,
    ReplayOption,
    channel_key,
    create_replay_storage,
    is_replay_error,
    marker_from_message,
    parse_marker_date,
)

PUSH_TOPIC: dict[str, Any] = {
    "channel": "/topic/InvoiceStatementUpdates",
    "data": {
        "event": {"createdDate": "2016-03-29T16:40:08.208Z", "replayId": 13, "type": "created"},
        "sobject": {"Name": "INV-0001", "Id": "a00D0000008o6y8IAA", "Status__c": "Open"},
    },
}
GENERIC: dict[str, Any] = {
    "channel": "/u/notifications/ExampleUserChannel",
    "data": {
        "event": {"createdDate": "2021-08-05T17:49:08.990Z", "replayId": 1},
        "payload": "hello world!",
    },
}
PLATFORM_EVENT: dict[str, Any] = {
    "channel": "/event/Low_Ink__e",
    "data": {
        "schema": "dffQ2QLzDNHqwB8_sHMxdA",
        "payload": {
            "CreatedDate": "2023-04-09T18:31:40.517Z",
            "CreatedById": "005D0000001cSZs",
            "Printer_Model__c": "XZO-5",
            "Serial_Number__c": "12345",
            "Ink_Percentage__c": 0.2,
        },
        "event": {"EventUuid": "2ec0e371-1395-457f-9275-be1b527a72f7", "replayId": 2112},
    },
}
CHANGE_EVENT: dict[str, Any] = {
    "channel": "/data/ChangeEvents",
    "data": {
        "schema": "IeRuaY6cbI_HsV8Rv1Mc5g",
        "payload": {
            "ChangeEventHeader": {
                "entityName": "Account",
                "recordIds": ["001xx000003DGb2AAG"],
                "changeType": "CREATE",
                "changeOrigin": "com.salesforce.core",
                "transactionKey": "001b7375-0086-250e-e6ca-b99bc3a8b69f",
                "sequenceNumber": 1,
                "isTransactionEnd": True,
                "commitTimestamp": 1501010206653,
                "commitNumber": 92847272780,
                "commitUser": "005xx000001Svq3AAC",
            },
            "Name": "Acme",
            "Description": "Everyone is talking about the cloud. But what does it mean?",
            "OwnerId": "005xx000001Svq3AAC",
            "CreatedDate": "2017-07-25T19:16:44Z",
            "CreatedById": "005xx000001Svq3AAC",
            "LastModifiedDate": "2017-07-25T19:16:44Z",
            "LastModifiedById": "005xx000001Svq3AAC",
        },
        "event": {"replayId": 6421},
    },
}


def event(
    channel: str, replay_id: int, created: str = "2024-01-01T00:00:00.000Z"
) -> dict[str, Any]:
    """A PushTopic-shaped event."""
    return {
        "channel": channel,
        "data": {"event": {"createdDate": created, "replayId": replay_id, "type": "updated"}},
    }


def subscribe_message(subscription: str, ident: str = "5") -> Message:
    return {
        "channel": "/meta/subscribe",
        "clientId": "6qnbw6zn8dabkws28tn7mawylg9",
        "subscription": subscription,
        "id": ident,
    }


# -- enums and values ------------------------------------------------------------------------


def test_enums_and_marker() -> None:
    assert ReplayOption.ALL_EVENTS == -2
    assert ReplayOption.NEW_EVENTS == -1
    assert ReplayMarkerStoragePolicy.AUTOMATIC.value == 1
    assert ReplayMarkerStoragePolicy.MANUAL.value == 2
    marker = ReplayMarker("2016-03-29T16:40:08.208Z", 13)
    assert marker.date == "2016-03-29T16:40:08.208Z"
    assert marker.replay_id == 13
    assert marker == ReplayMarker(date="2016-03-29T16:40:08.208Z", replay_id=13)


def test_channel_key() -> None:
    assert channel_key("/topic/X?Type=Technology Partner&Phone=(415) 555-1212") == "/topic/X"
    assert channel_key("/event/Low_Ink__e") == "/event/Low_Ink__e"


# -- dates -----------------------------------------------------------------------------------

MOMENT = datetime(2016, 3, 29, 16, 40, 8, 208000, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "2016-03-29T16:40:08.208Z",
        "2016-03-29T16:40:08.208+0000",
        "2016-03-29T16:40:08.208+00:00",
        "2016-03-29T18:40:08.208+0200",
        "2016-03-29T16:40:08.208",
        " 2016-03-29T16:40:08.208Z ",
        1459269608208,
        1459269608208.0,
        "1459269608208",
        MOMENT,
        MOMENT.replace(tzinfo=None),
        MOMENT.astimezone(timezone(timedelta(hours=-7))),
    ],
)
def test_dates_normalise_to_aware_utc(value: str | int | float | datetime) -> None:
    parsed = parse_marker_date(value)
    assert parsed == MOMENT
    assert parsed.tzinfo is UTC


def test_epoch_millisecond_dates() -> None:
    assert parse_marker_date(1501010206653) == datetime(2017, 7, 25, 19, 16, 46, 653000, tzinfo=UTC)
    assert parse_marker_date("-1000") == datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize("value", ["yesterday", "", True, None, [1], 10**30, "9" * 30])
def test_unusable_dates(value: Any) -> None:
    with pytest.raises(ReplayError, match="not a replay marker date"):
        parse_marker_date(value)


# -- extraction per channel kind -------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "marker"),
    [
        (PUSH_TOPIC, ReplayMarker("2016-03-29T16:40:08.208Z", 13)),
        (GENERIC, ReplayMarker("2021-08-05T17:49:08.990Z", 1)),
        (PLATFORM_EVENT, ReplayMarker("2023-04-09T18:31:40.517Z", 2112)),
        # The CDC date is the commit time, not the record's CreatedDate.
        (CHANGE_EVENT, ReplayMarker("1501010206653", 6421)),
    ],
    ids=["pushtopic", "generic", "platform-event", "change-event"],
)
def test_marker_per_channel_kind(message: dict[str, Any], marker: ReplayMarker) -> None:
    assert marker_from_message(message) == marker
    assert ReplayMarkerStorage.get_message_date(message) == marker.date


def test_cdc_commit_timestamp_as_float_or_string() -> None:
    message = copy.deepcopy(CHANGE_EVENT)
    header = message["data"]["payload"]["ChangeEventHeader"]
    header["commitTimestamp"] = 1501010206653.0
    assert marker_from_message(message).date == "1501010206653"
    header["commitTimestamp"] = "1501010206653"
    assert marker_from_message(message).date == "1501010206653"


def without(message: dict[str, Any], *path: str) -> dict[str, Any]:
    result = copy.deepcopy(message)
    target = result
    for name in path[:-1]:
        target = target[name]
    del target[path[-1]]
    return result


@pytest.mark.parametrize(
    ("message", "pattern"),
    [
        (
            without(PUSH_TOPIC, "data"),
            r"no replay marker in the message on channel '/topic/InvoiceStatementUpdates': "
            r"it has no data object",
        ),
        (
            without(PLATFORM_EVENT, "data", "event", "replayId"),
            r"no replay id in the message on channel '/event/Low_Ink__e': "
            r"data\.event\.replayId is missing",
        ),
        (
            without(CHANGE_EVENT, "data", "event"),
            r"no replay id .*'/data/ChangeEvents'.*data\.event\.replayId is missing",
        ),
        (
            {"channel": "/topic/X", "data": {"event": {"replayId": "13", "createdDate": "x"}}},
            r"data\.event\.replayId is not an integer \(str\)",
        ),
        (
            {"channel": "/topic/X", "data": {"event": {"replayId": True}}},
            r"is not an integer \(bool\)",
        ),
        (
            without(PUSH_TOPIC, "data", "event", "createdDate"),
            r"no creation date in the message on channel '/topic/InvoiceStatementUpdates': "
            r"none of data\.event\.createdDate, data\.payload\.ChangeEventHeader\."
            r"commitTimestamp or data\.payload\.CreatedDate is present",
        ),
        (
            without(PLATFORM_EVENT, "data", "payload", "CreatedDate"),
            r"no creation date .*'/event/Low_Ink__e'",
        ),
        (
            {"channel": "/topic/X", "data": {"event": {"replayId": 1, "createdDate": "soon"}}},
            r"unusable creation date in the message on channel '/topic/X': "
            r"data\.event\.createdDate is 'soon'",
        ),
        (
            {"data": {"event": {"replayId": 1}}},
            r"^no creation date in the message: ",
        ),
    ],
)
def test_replay_errors_name_what_is_missing(message: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ReplayError, match=pattern):
        marker_from_message(message)


# -- storages --------------------------------------------------------------------------------


async def test_mapping_storage_round_trip() -> None:
    mapping: dict[str, ReplayMarker] = {}
    storage = MappingStorage(mapping)
    assert storage.mapping is mapping
    assert await storage.get_replay_marker("/topic/X") is None
    assert await storage.get_replay_id("/topic/X") is None
    await storage.set_replay_marker("/topic/X", ReplayMarker("2024-01-01T00:00:00Z", 7))
    assert await storage.get_replay_marker("/topic/X") == ReplayMarker("2024-01-01T00:00:00Z", 7)
    assert await storage.get_replay_id("/topic/X?Type=Partner") == 7
    assert storage.replay_fallback is None


@pytest.mark.parametrize(
    "message", [PUSH_TOPIC, GENERIC, PLATFORM_EVENT, CHANGE_EVENT], ids=lambda m: m["channel"]
)
async def test_extract_replay_id_stores_per_channel(message: dict[str, Any]) -> None:
    mapping: dict[str, ReplayMarker] = {}
    storage = MappingStorage(mapping)
    await storage.extract_replay_id(message)
    assert mapping == {message["channel"]: marker_from_message(message)}


async def test_markers_never_move_backwards() -> None:
    mapping: dict[str, ReplayMarker] = {}
    storage = MappingStorage(mapping)
    await storage.extract_replay_id(event("/topic/X", 20, "2024-01-01T00:00:02.000Z"))
    await storage.extract_replay_id(event("/topic/X", 10, "2024-01-01T00:00:01.000Z"))
    assert mapping["/topic/X"] == ReplayMarker("2024-01-01T00:00:02.000Z", 20)
    # Same instant, lower id: an older event replayed; kept out.
    await storage.extract_replay_id(event("/topic/X", 19, "2024-01-01T00:00:02.000Z"))
    assert mapping["/topic/X"].replay_id == 20
    # Same instant, same or higher id: stored.
    await storage.extract_replay_id(event("/topic/X", 21, "2024-01-01T00:00:02.000Z"))
    assert mapping["/topic/X"].replay_id == 21
    await storage.extract_replay_id(event("/topic/X", 30, "2024-01-01T00:00:03.000Z"))
    assert mapping["/topic/X"] == ReplayMarker("2024-01-01T00:00:03.000Z", 30)


async def test_never_backwards_across_date_formats() -> None:
    """aiosfstream compared strings: '+0000' vs 'Z' and ms strings vs ISO sorted wrongly."""
    mapping: dict[str, ReplayMarker] = {
        "/topic/X": ReplayMarker("2016-03-29T16:40:09.000+0000", 5),
        "/data/ChangeEvents": ReplayMarker("1501010206653", 6421),
    }
    storage = MappingStorage(mapping)
    # As strings, "2016-03-29T16:40:08.500Z" > "2016-03-29T16:40:08.000+0000"... here it is
    # older as a time and must not replace the stored marker.
    await storage.extract_replay_id(event("/topic/X", 4, "2016-03-29T17:40:08.500+0200"))
    assert mapping["/topic/X"].replay_id == 5
    await storage.extract_replay_id(event("/topic/X", 6, "2016-03-29T16:40:09.001Z"))
    assert mapping["/topic/X"] == ReplayMarker("2016-03-29T16:40:09.001Z", 6)
    older = copy.deepcopy(CHANGE_EVENT)
    older["data"]["payload"]["ChangeEventHeader"]["commitTimestamp"] = 999999999999
    older["data"]["event"]["replayId"] = 6000
    await storage.extract_replay_id(older)  # "999999999999" > "1501..." as strings
    assert mapping["/data/ChangeEvents"].replay_id == 6421


async def test_filtered_channels_share_the_plain_key() -> None:
    mapping: dict[str, ReplayMarker] = {}
    storage = DefaultMappingStorage(mapping, ReplayOption.ALL_EVENTS)
    await storage.extract_replay_id(event("/topic/X", 3))
    assert list(mapping) == ["/topic/X"]
    assert await storage.get_replay_id("/topic/X?Type=Partner") == 3
    assert await storage.get_replay_id("/topic/Y?Type=Partner") == ReplayOption.ALL_EVENTS


async def test_unreadable_stored_date_is_replaced(caplog: pytest.LogCaptureFixture) -> None:
    mapping = {"/topic/X": ReplayMarker("garbage", 99)}
    storage = MappingStorage(mapping)
    with caplog.at_level(logging.WARNING):
        await storage.extract_replay_id(event("/topic/X", 3))
    assert mapping["/topic/X"].replay_id == 3
    assert "unreadable date 'garbage'" in caplog.text


async def test_json_backed_values_and_junk() -> None:
    mapping: dict[str, Any] = {
        "/topic/list": ["2024-01-01T00:00:00Z", 4],
        "/topic/ms": [1501010206653, 5],
        "/topic/junk": {"replayId": 4},
        "/topic/badtuple": ("2024-01-01T00:00:00Z", "4"),
    }
    storage = MappingStorage(mapping)
    assert await storage.get_replay_marker("/topic/list") == ReplayMarker("2024-01-01T00:00:00Z", 4)
    assert await storage.get_replay_marker("/topic/ms") == ReplayMarker("1501010206653", 5)
    for key in ("/topic/junk", "/topic/badtuple"):
        with pytest.raises(ReplayError, match=f"stored for channel '{key}' is not a replay"):
            await storage.get_replay_id(key)


async def test_extract_needs_a_channel() -> None:
    message = copy.deepcopy(PUSH_TOPIC)
    del message["channel"]
    with pytest.raises(ReplayError, match="without a channel"):
        await MappingStorage({}).extract_replay_id(message)


async def test_extraction_error_stores_nothing() -> None:
    mapping: dict[str, ReplayMarker] = {}
    with pytest.raises(ReplayError):
        await MappingStorage(mapping).extract_replay_id(without(PUSH_TOPIC, "data", "event"))
    assert mapping == {}


async def test_default_mapping_storage() -> None:
    mapping: dict[str, ReplayMarker] = {}
    storage = DefaultMappingStorage(mapping, ReplayOption.ALL_EVENTS)
    assert storage.default_id == ReplayOption.ALL_EVENTS
    assert await storage.get_replay_id("/topic/X") == -2
    await storage.extract_replay_id(event("/topic/X", 8))
    assert await storage.get_replay_id("/topic/X") == 8
    with pytest.raises(TypeError, match="default_id"):
        DefaultMappingStorage(mapping, "latest")  # type: ignore[arg-type]


async def test_constant_replay_id_stores_nothing() -> None:
    storage = ConstantReplayId(ReplayOption.ALL_EVENTS)
    assert await storage.get_replay_id("/topic/X") == -2
    await storage.extract_replay_id(PUSH_TOPIC)
    await storage.extract_replay_id({"channel": "/topic/X"})  # nothing to extract: no error
    await storage.set_replay_marker("/topic/X", ReplayMarker("2024-01-01T00:00:00Z", 1))
    assert await storage.get_replay_marker("/topic/X") is None
    assert await storage.get_replay_id("/topic/X") == -2
    assert await ConstantReplayId(1234).get_replay_id("/event/E__e") == 1234
    with pytest.raises(TypeError):
        ConstantReplayId(-1, unexpected=True)
    with pytest.raises(TypeError, match="default_id"):
        ConstantReplayId(True)


async def test_context_manager_stores_only_on_success() -> None:
    mapping: dict[str, ReplayMarker] = {}
    storage = MappingStorage(mapping)

    class ProcessingFailed(Exception):
        pass

    with pytest.raises(ProcessingFailed):
        async with storage(event("/topic/X", 1)):
            raise ProcessingFailed
    assert mapping == {}
    async with storage(event("/topic/X", 2)):
        assert mapping == {}  # stored on exit, not on entry
    assert mapping["/topic/X"].replay_id == 2


class SlowStorage(ReplayMarkerStorage):
    """The documentation's custom storage, with a slow backend and no ``__init__`` call."""

    def __init__(self) -> None:  # deliberately does not call super().__init__()
        self.data: dict[str, ReplayMarker] = {}

    async def get_replay_marker(self, subscription: str) -> ReplayMarker | None:
        await asyncio.sleep(0.01)
        return self.data.get(subscription)

    async def set_replay_marker(self, subscription: str, replay_marker: ReplayMarker) -> None:
        await asyncio.sleep(0)
        self.data[subscription] = replay_marker


async def test_custom_storage_and_concurrent_extraction() -> None:
    storage = SlowStorage()
    newer = event("/topic/X", 20, "2024-01-01T00:00:02.000Z")
    older = event("/topic/X", 10, "2024-01-01T00:00:01.000Z")
    await asyncio.gather(storage.extract_replay_id(newer), storage.extract_replay_id(older))
    assert storage.data["/topic/X"].replay_id == 20
    assert await storage.get_replay_id("/topic/X") == 20
    assert storage.replay_fallback is None


def test_storage_built_before_the_loop() -> None:
    storage = SlowStorage()

    async def store(replay_id: int) -> None:
        await asyncio.gather(
            storage.extract_replay_id(event("/topic/X", replay_id)),
            storage.extract_replay_id(event("/topic/Y", replay_id)),
        )

    asyncio.run(store(1))
    asyncio.run(store(2))  # a second loop gets its own lock
    assert storage.data["/topic/X"].replay_id == 2


def test_storage_is_abstract() -> None:
    with pytest.raises(TypeError):
        ReplayMarkerStorage()  # type: ignore[abstract]


async def test_shelve_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "replay.db")
    with shelve.open(path) as shelf:
        storage = MappingStorage(shelf)
        await storage.extract_replay_id(PUSH_TOPIC)
        await storage.extract_replay_id(CHANGE_EVENT)
    with shelve.open(path) as shelf:
        storage = DefaultMappingStorage(shelf, ReplayOption.ALL_EVENTS)
        assert await storage.get_replay_id("/topic/InvoiceStatementUpdates") == 13
        assert await storage.get_replay_marker("/data/ChangeEvents") == ReplayMarker(
            "1501010206653", 6421
        )
        assert await storage.get_replay_id("/event/Low_Ink__e") == -2
        assert shelf["/topic/InvoiceStatementUpdates"].replay_id == 13


class LegacyMarker(NamedTuple):
    date: str
    replay_id: int


@pytest.fixture
def legacy_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pretend aiosfstream is installed, as when the shelf was written."""
    package = types.ModuleType("aiosfstream")
    module = types.ModuleType("aiosfstream.replay")
    LegacyMarker.__module__ = "aiosfstream.replay"
    LegacyMarker.__qualname__ = "ReplayMarker"
    module.ReplayMarker = LegacyMarker  # type: ignore[attr-defined]
    package.replay = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aiosfstream", package)
    monkeypatch.setitem(sys.modules, "aiosfstream.replay", module)
    yield
    LegacyMarker.__module__ = __name__
    LegacyMarker.__qualname__ = "LegacyMarker"


async def test_shelf_written_by_aiosfstream(
    tmp_path: Path, legacy_module: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "replay.db")
    with shelve.open(path) as shelf:
        # What aiosfstream 0.5.0 stored: ISO strings, and str(ms) for CDC.
        shelf["/topic/Old"] = LegacyMarker("2019-03-08T10:00:00.000+0000", 41)
        shelf["/data/ChangeEvents"] = LegacyMarker("1551999600000", 77)
        shelf["/topic/Broken"] = LegacyMarker("2019-03-08T10:00:00.000+0000", 1)
    monkeypatch.delitem(sys.modules, "aiosfstream")
    monkeypatch.delitem(sys.modules, "aiosfstream.replay")
    with shelve.open(path) as shelf:
        with pytest.raises(ModuleNotFoundError):
            shelf["/topic/Old"]
        storage = MappingStorage(shelf)
        assert await storage.get_replay_marker("/topic/Old") == ReplayMarker(
            "2019-03-08T10:00:00.000+0000", 41
        )
        assert await storage.get_replay_id("/data/ChangeEvents") == 77
        # The old marker is compared by time, and replaced by the new one.
        await storage.extract_replay_id(event("/topic/Old", 42, "2019-03-08T10:00:01Z"))
        assert shelf["/topic/Old"] == ReplayMarker("2019-03-08T10:00:01Z", 42)
        await storage.extract_replay_id(event("/data/ChangeEvents", 70, "2019-03-07T00:00:00Z"))
        assert await storage.get_replay_id("/data/ChangeEvents") == 77
        # A pickle naming some other missing class is not a marker.
        raw = shelf.dict[b"/topic/Broken"]  # type: ignore[attr-defined]
        shelf.dict[b"/topic/Broken"] = raw.replace(  # type: ignore[attr-defined]
            b"aiosfstream.replay", b"nosuchpackage.repl"
        )
        shelf.cache.clear()  # type: ignore[attr-defined]
        with pytest.raises(ReplayError, match="'/topic/Broken' cannot be read"):
            await storage.get_replay_marker("/topic/Broken")


async def test_unreadable_value_in_another_mapping() -> None:
    class Failing(dict[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise ModuleNotFoundError("No module named 'aiosfstream'")

    storage = MappingStorage(Failing())
    with pytest.raises(ReplayError, match="cannot be read"):
        await storage.get_replay_marker("/topic/X")


def test_create_replay_storage() -> None:
    assert create_replay_storage(None) is None
    custom = SlowStorage()
    assert create_replay_storage(custom) is custom
    constant = create_replay_storage(ReplayOption.NEW_EVENTS)
    assert isinstance(constant, ConstantReplayId)
    assert constant.default_id is ReplayOption.NEW_EVENTS
    by_id = create_replay_storage(1234)
    assert isinstance(by_id, ConstantReplayId)
    assert by_id.default_id == 1234
    mapping: MutableMapping[str, ReplayMarker] = {}
    wrapped = create_replay_storage(mapping)
    assert isinstance(wrapped, MappingStorage)
    assert wrapped.mapping is mapping
    with pytest.raises(TypeError, match="replay must be"):
        create_replay_storage("latest")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        create_replay_storage(True)


# -- the replay-error predicate --------------------------------------------------------------

INVALID_ID = (
    "400::The replayId {1553783} you provided was invalid.  Please provide a valid ID, -2 to "
    "replay all events, or -1 to replay only new events."
)
NOT_IN_MAP = (
    "400::The replayId for channel {/topic/topicName} wasn't found using the provided replay "
    "ID map {{}}. Ensure that the channel name you provided in the replay map is valid and "
    "matches the channel name used for subscribing."
)


def refused(error: str, **extra: Any) -> dict[str, Any]:
    return {
        "channel": "/meta/subscribe",
        "subscription": "/topic/X",
        "successful": False,
        "error": error,
        **extra,
    }


@pytest.mark.parametrize(
    "error",
    [
        INVALID_ID,
        INVALID_ID.replace("{1553783}", "1"),
        INVALID_ID.replace(".  Please", ". Please"),
        NOT_IN_MAP,
        NOT_IN_MAP.replace("wasn't", "wasn\u2019t"),
    ],
)
def test_replay_errors_are_recognised(error: str) -> None:
    assert is_replay_error(ServerError("subscribe refused", refused(error)))
    assert is_replay_error(refused(error))
    assert is_replay_error(error)


def test_replay_error_in_failure_reason() -> None:
    reply = refused("403::Subscribe denied", ext={"sfdc": {"failureReason": INVALID_ID}})
    assert is_replay_error(reply)
    assert is_replay_error(ServerError("subscribe refused", reply))


@pytest.mark.parametrize(
    "error",
    [
        "403::Unknown client",
        "400::The channel you requested to subscribe to does not exist {/topic/AccountUpdates}",
        "403::Organization total events daily limit exceeded",
        "401::Authentication invalid",
    ],
)
def test_other_errors_are_not_replay_errors(error: str) -> None:
    assert not is_replay_error(ServerError("subscribe refused", refused(error)))
    assert not is_replay_error(refused(error))
    assert not is_replay_error(error)


def test_replay_error_predicate_edge_cases() -> None:
    assert not is_replay_error(None)
    assert not is_replay_error(ServerError("no response"))
    assert not is_replay_error({"channel": "/meta/subscribe", "error": 400})


# -- the replay extension --------------------------------------------------------------------


def test_extension_leaves_other_messages_alone() -> None:
    extension = ReplayExtension()
    extension.set_replay_id("/topic/X", 5)
    for message in (
        {"channel": "/meta/handshake", "version": "1.0", "id": "1"},
        {"channel": "/meta/connect", "clientId": "c", "connectionType": "long-polling"},
        {"channel": "/meta/unsubscribe", "clientId": "c", "subscription": "/topic/X"},
        {"channel": "/meta/subscribe", "clientId": "c", "subscription": ["/topic/X"]},
        {"channel": "/topic/X", "data": {"n": 1}},
    ):
        sent: Message = copy.deepcopy(message)  # type: ignore[assignment]
        extension.outgoing(sent)
        assert sent == message


def test_no_replay_id_no_ext() -> None:
    message = subscribe_message("/topic/X")
    ReplayExtension().outgoing(message)
    assert "ext" not in message


def test_subscribe_is_stamped_for_its_channel_only() -> None:
    extension = ReplayExtension()
    extension.set_replay_id("/topic/A", 11)
    extension.set_replay_id("/event/B__e", ReplayOption.ALL_EVENTS)
    first = subscribe_message("/topic/A", "5")
    second = subscribe_message("/event/B__e", "6")
    extension.outgoing(first)
    extension.outgoing(second)
    assert first["ext"] == {"replay": {"/topic/A": 11}}
    assert second["ext"] == {"replay": {"/event/B__e": -2}}
    assert type(second["ext"]["replay"]["/event/B__e"]) is int


def test_existing_ext_is_kept() -> None:
    extension = ReplayExtension()
    extension.set_replay_id("/topic/A", 11)
    message = subscribe_message("/topic/A")
    message["ext"] = {"payload.format": {"/topic/A": "EXPANDED"}}
    extension.outgoing(message)
    assert message["ext"] == {
        "payload.format": {"/topic/A": "EXPANDED"},
        "replay": {"/topic/A": 11},
    }


def subscribe(extension: ReplayExtension, *channels: str) -> None:
    """Send a subscribe for each channel through the extension (registers them)."""
    for channel in channels:
        extension.outgoing(subscribe_message(channel))


def test_filtered_subscription_is_stamped_under_the_plain_topic_only() -> None:
    # Salesforce refuses a map keyed by the filtered name (wire evidence E15)
    extension = ReplayExtension()
    extension.set_replay_id("/topic/A?Type=Partner", 11)
    assert extension.replay_id("/topic/A?Type=Partner") == 11
    assert extension.replay_id("/topic/A") is None
    message = subscribe_message("/topic/A?Type=Partner")
    extension.outgoing(message)
    assert message["ext"]["replay"] == {"/topic/A": 11}


def test_two_filtered_subscriptions_keep_their_own_positions() -> None:
    extension = ReplayExtension()
    partner, customer = "/topic/A?Type=Partner", "/topic/A?Type=Customer"
    for channel in (partner, customer):
        extension.set_replay_id(channel, ReplayOption.ALL_EVENTS)
    subscribe(extension, partner, customer)
    for replay_id in (1, 2, 3):
        extension.incoming(event(partner, replay_id))  # type: ignore[arg-type]
    for replay_id in (4, 5, 30, 31):
        extension.incoming(event(customer, replay_id))  # type: ignore[arg-type]
    assert extension.last_received(partner) == 3
    assert extension.last_received(customer) == 31
    # the session is lost: each resubscription starts at or before its own last event, at
    # the lowest position of the subscriptions sharing the topic (duplicates, never a skip)
    assert extension.sent_replay_id(partner) == 3
    assert extension.sent_replay_id(customer) == 3
    resubscribe = subscribe_message(customer)
    extension.outgoing(resubscribe)
    assert resubscribe["ext"]["replay"] == {"/topic/A": 3}
    # what the customer subscription already received comes again: dropped as repeats
    assert extension.incoming(event(customer, 30)) is False  # type: ignore[arg-type]
    assert extension.incoming(event(customer, 31)) is False  # type: ignore[arg-type]
    assert extension.incoming(event(customer, 32)) is None  # type: ignore[arg-type]
    assert extension.incoming(event(customer, 29)) is None  # type: ignore[arg-type]
    assert extension.dropped == {"repeated": 2}
    assert extension.last_received(customer) == 32
    # the partner subscription is the lowest: it resumes from its own position, no window
    extension.outgoing(subscribe_message(partner))
    assert extension.incoming(event(partner, 3)) is None  # type: ignore[arg-type]
    # a subscription on another topic is not lowered
    extension.set_replay_id("/topic/B", 2)
    subscribe(extension, "/topic/B")
    extension.incoming(event("/topic/B", 40))  # type: ignore[arg-type]
    assert extension.sent_replay_id("/topic/B") == 40


def test_a_plain_topic_delivery_for_filtered_subscriptions_moves_no_position() -> None:
    extension = ReplayExtension()
    subscribe(extension, "/topic/A?Type=Partner", "/topic/A?Type=Customer")
    extension.incoming(event("/topic/A?Type=Partner", 3))  # type: ignore[arg-type]
    # labelled without the filter: it cannot be attributed, so it is delivered and moves
    # nobody (a position moved by another subscription's event could skip events)
    assert extension.incoming(event("/topic/A", 50)) is None  # type: ignore[arg-type]
    assert extension.last_received("/topic/A?Type=Partner") == 3
    assert extension.last_received("/topic/A?Type=Customer") is None
    assert extension.last_received("/topic/A") is None
    assert not extension.attributed("/topic/A")
    assert extension.attributed("/topic/A?Type=Partner")


def test_deliveries_on_unsubscribed_channels_are_dropped() -> None:
    dropped: list[tuple[str, str]] = []
    extension = ReplayExtension(
        on_drop=lambda reason, channel, _: dropped.append((reason, channel))
    )
    subscribe(extension, "/topic/A", "/u/*")
    assert extension.incoming(event("/topic/Other", 7)) is False  # type: ignore[arg-type]
    assert extension.incoming(event("/u/x", 8)) is None  # type: ignore[arg-type]
    assert extension.incoming(event("/topic/A", 9)) is None  # type: ignore[arg-type]
    publish_reply: Any = {"channel": "/topic/Other", "successful": False, "id": "4"}
    assert extension.incoming(publish_reply) is None
    assert dropped == [("unsubscribed", "/topic/Other")]
    assert extension.dropped == {"unsubscribed": 1}
    assert extension.last_received("/topic/Other") is None
    extension.forget("/topic/A")
    assert extension.incoming(event("/topic/A", 10)) is False  # type: ignore[arg-type]
    extension.forget("/u/*")
    assert extension.incoming(event("/u/x", 11)) is False  # type: ignore[arg-type]


def test_a_lower_replay_id_does_not_move_the_position_back() -> None:
    extension = ReplayExtension()
    subscribe(extension, "/topic/A")
    extension.incoming(event("/topic/A", 20))  # type: ignore[arg-type]
    extension.incoming(event("/topic/A", 12))  # type: ignore[arg-type]
    assert extension.last_received("/topic/A") == 20
    assert extension.sent_replay_id("/topic/A") == 20


def test_received_ids_win_over_loaded_ones() -> None:
    extension = ReplayExtension()
    extension.set_replay_id("/topic/A", ReplayOption.NEW_EVENTS)
    subscribe(extension, "/topic/A", "/topic/B")
    assert extension.last_received("/topic/A") is None
    for replay_id in (101, 102, 103):
        extension.incoming(event("/topic/A", replay_id))  # type: ignore[arg-type]
    extension.incoming(event("/topic/B", 7))  # type: ignore[arg-type]
    assert extension.last_received("/topic/A") == 103
    assert extension.last_received("/topic/A?Type=Partner") is None
    message = subscribe_message("/topic/A")
    extension.outgoing(message)
    assert message["ext"]["replay"] == {"/topic/A": 103}
    again = subscribe_message("/topic/A")
    extension.outgoing(again)
    assert again["ext"]["replay"] == {"/topic/A": 103}


def test_incoming_ignores_meta_and_events_without_an_id() -> None:
    extension = ReplayExtension()
    extension.incoming({"channel": "/meta/connect", "successful": True})
    extension.incoming({"channel": "/meta/subscribe", "data": {"event": {"replayId": 5}}})
    extension.incoming({"channel": "/topic/A", "data": {"event": {"replayId": "5"}}})
    extension.incoming({"channel": "/topic/A", "data": "plain"})
    extension.incoming({"data": {"event": {"replayId": 5}}})
    assert extension.last_received("/topic/A") is None
    assert extension.last_received("/meta/subscribe") is None


def test_set_replay_id_none_removes_it() -> None:
    extension = ReplayExtension()
    extension.set_replay_id("/topic/A", 5)
    extension.set_replay_id("/topic/A", None)
    assert extension.replay_id("/topic/A") is None


async def test_load_replay_id_from_a_storage() -> None:
    extension = ReplayExtension()
    storage = MappingStorage(
        {
            "/topic/A": ReplayMarker("2024-01-01T00:00:00Z", 9),
            "/topic/A?Type=Partner": ReplayMarker("2024-01-01T00:00:00Z", 4),
        }
    )
    assert await extension.load_replay_id(storage, "/topic/A?Type=Partner") == 4
    # nothing under its own name: the plain topic's marker (older sfstream stores) is used
    assert await extension.load_replay_id(storage, "/topic/A?Type=Customer") == 9
    assert await extension.load_replay_id(storage, "/topic/B") is None
    assert await extension.load_replay_id(storage, "/topic/B?Type=X") is None
    assert extension.replay_id("/topic/A?Type=Partner") == 4
    assert extension.replay_id("/topic/B") is None
    assert await extension.load_replay_id(ConstantReplayId(-2), "/topic/C") == -2
    assert await extension.load_replay_id(None, "/topic/A?Type=Partner") is None
    assert extension.replay_id("/topic/A?Type=Partner") is None


async def test_markers_are_stored_per_filtered_subscription() -> None:
    mapping: dict[str, ReplayMarker] = {}
    storage = MappingStorage(mapping)
    await storage.extract_replay_id(event("/topic/A?Type=Partner", 3))
    await storage.extract_replay_id(event("/topic/A?Type=Customer", 30))
    await storage.extract_replay_id(event("/topic/B", 5))
    assert {key: marker.replay_id for key, marker in mapping.items()} == {
        "/topic/A?Type=Partner": 3,
        "/topic/A?Type=Customer": 30,
        "/topic/B": 5,
    }
    assert await storage.get_replay_id("/topic/A?Type=Partner") == 3


def test_fallback_is_one_shot_per_channel() -> None:
    extension = ReplayExtension()
    extension.set_replay_id("/topic/A", 1553783)
    extension.set_replay_id("/topic/B", 400)
    extension.use_fallback("/topic/A", ReplayOption.ALL_EVENTS)
    assert extension.replay_id("/topic/A") == -2  # a preview does not use it up
    assert extension.fallback_count() == 0
    # Another channel's subscribe does not take A's fallback.
    other = subscribe_message("/topic/B")
    extension.outgoing(other)
    assert other["ext"]["replay"] == {"/topic/B": 400}
    retry = subscribe_message("/topic/A")
    extension.outgoing(retry)
    assert retry["ext"]["replay"] == {"/topic/A": -2}
    assert extension.fallback_count("/topic/A") == 1
    assert extension.fallback_count("/topic/B") == 0
    # The refused id is gone: a later resubscription before any event starts at the fallback,
    # without counting a new fallback.
    later = subscribe_message("/topic/A")
    extension.outgoing(later)
    assert later["ext"]["replay"] == {"/topic/A": -2}
    assert extension.fallback_count() == 1
    # Once events arrive, resubscriptions resume after the last one.
    extension.incoming(event("/topic/A", 1600000))  # type: ignore[arg-type]
    resumed = subscribe_message("/topic/A")
    extension.outgoing(resumed)
    assert resumed["ext"]["replay"] == {"/topic/A": 1600000}


def test_fallback_replaces_a_refused_received_id() -> None:
    extension = ReplayExtension()
    extension.incoming(event("/topic/A", 13))  # type: ignore[arg-type]
    extension.use_fallback("/topic/A", ReplayOption.NEW_EVENTS)
    message = subscribe_message("/topic/A")
    extension.outgoing(message)
    assert message["ext"]["replay"] == {"/topic/A": -1}
    assert extension.last_received("/topic/A") is None


def test_forget() -> None:
    extension = ReplayExtension()
    extension.set_replay_id("/topic/A", 1)
    subscribe(extension, "/topic/A")
    extension.incoming(event("/topic/A", 2))  # type: ignore[arg-type]
    extension.use_fallback("/topic/A", -2)
    extension.forget("/topic/A?Type=Partner")  # another subscription: nothing changes
    assert extension.replay_id("/topic/A") == -2
    extension.forget("/topic/A")
    assert extension.replay_id("/topic/A") is None
    assert extension.last_received("/topic/A") is None


def handshake(engine: BayeuxEngine, client_id: str) -> None:
    engine.handshake()
    engine.receive(
        [
            {
                "channel": "/meta/handshake",
                "successful": True,
                "clientId": client_id,
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
                "ext": {"replay": True, "payload.format": True},
            }
        ]
    )


def test_with_the_bayeux_engine() -> None:
    """Registered on the engine: each subscribe has its id; resubscriptions resume."""
    extension = ReplayExtension()
    engine = BayeuxEngine(extensions=[extension])
    handshake(engine, "client1")
    extension.set_replay_id("/topic/A", ReplayOption.NEW_EVENTS)
    extension.set_replay_id("/data/AccountChangeEvent", 6000)
    first = engine.subscribe("/topic/A")
    second = engine.subscribe("/data/AccountChangeEvent")
    third = engine.subscribe("/event/C__e")
    assert first is not None
    assert second is not None
    assert third is not None
    assert first.messages[0]["ext"] == {"replay": {"/topic/A": -1}}
    assert second.messages[0]["ext"] == {"replay": {"/data/AccountChangeEvent": 6000}}
    assert "ext" not in third.messages[0]
    received = copy.deepcopy(CHANGE_EVENT)
    received["channel"] = "/data/AccountChangeEvent"
    engine.receive([event("/topic/A", 55), received])  # type: ignore[list-item]
    # The session is lost; the new one resubscribes every channel where it stopped.
    handshake(engine, "client2")
    stamps = {
        request.messages[0]["subscription"]: request.messages[0].get("ext")
        for request in engine.resubscribe()
    }
    assert stamps == {
        "/topic/A": {"replay": {"/topic/A": 55}},
        "/data/AccountChangeEvent": {"replay": {"/data/AccountChangeEvent": 6421}},
        "/event/C__e": None,
    }


# -- gap-safe resubscription before the first event --------------------------------------------

SINCE = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


def stamped(extension: ReplayExtension, channel: str) -> Any:
    message = subscribe_message(channel)
    extension.outgoing(message)
    return message.get("ext", {}).get("replay", {}).get(channel_key(channel))


@pytest.mark.parametrize("loaded", [None, ReplayOption.NEW_EVENTS])
def test_resubscription_before_the_first_event_replays_all_but_skips_older(
    loaded: int | None,
) -> None:
    extension = ReplayExtension()
    extension.set_replay_id("/event/E__e", loaded)
    assert stamped(extension, "/event/E__e") == loaded
    extension.mark_subscribed("/event/E__e", SINCE)
    # the session is lost before any event arrived: ask for everything retained
    assert stamped(extension, "/event/E__e") == ReplayOption.ALL_EVENTS
    older = event("/event/E__e", 1, "2024-01-01T11:59:59.000Z")
    newer = event("/event/E__e", 2, "2024-01-01T12:00:01.000Z")
    later_but_older_date = event("/event/E__e", 3, "2024-01-01T11:00:00.000Z")
    assert extension.incoming(older) is False  # type: ignore[arg-type]
    assert extension.incoming(newer) is None  # type: ignore[arg-type]
    # once an event went through, nothing more is skipped
    assert extension.incoming(later_but_older_date) is None  # type: ignore[arg-type]
    assert extension.last_received("/event/E__e") == 3
    assert stamped(extension, "/event/E__e") == 3


def test_skipping_on_one_channel_leaves_the_others_alone() -> None:
    skipped: list[str] = []
    extension = ReplayExtension(on_drop=lambda reason, channel, _: skipped.append(reason))
    extension.mark_subscribed("/event/E__e", SINCE)
    assert stamped(extension, "/event/E__e") == ReplayOption.ALL_EVENTS
    subscribe(extension, "/event/F__e")
    # E__e still skips its old events; a delivery on another channel is not looked at for it
    other = event("/event/F__e", 5, "2000-01-01T00:00:00.000Z")
    assert extension.incoming(other) is None  # type: ignore[arg-type]
    assert extension.last_received("/event/F__e") == 5
    old = event("/event/E__e", 1, "2000-01-01T00:00:00.000Z")
    assert extension.incoming(old) is False  # type: ignore[arg-type]
    assert skipped == ["skipped"]
    assert extension.dropped == {"skipped": 1}
    assert extension.skipped("/event/E__e") == 1
    assert extension.skipped("/event/F__e") == 0


def test_an_unknown_server_time_skips_nothing() -> None:
    extension = ReplayExtension()
    extension.mark_subscribed("/event/E__e", None)
    assert stamped(extension, "/event/E__e") == ReplayOption.ALL_EVENTS
    old = event("/event/E__e", 1, "2000-01-01T00:00:00.000Z")
    assert extension.incoming(old) is None  # type: ignore[arg-type]
    assert extension.last_received("/event/E__e") == 1


def test_a_pending_gap_safe_resubscription_lowers_the_others() -> None:
    extension = ReplayExtension()
    subscribe(extension, "/topic/A?T=1", "/topic/A?T=2")
    extension.mark_subscribed("/topic/A?T=1", SINCE)
    extension.incoming(event("/topic/A?T=2", 8))  # type: ignore[arg-type]
    assert extension.sent_replay_id("/topic/A?T=1") == ReplayOption.ALL_EVENTS
    assert extension.sent_replay_id("/topic/A?T=2") == ReplayOption.ALL_EVENTS
    extension.use_fallback("/topic/A?T=1", ReplayOption.NEW_EVENTS)
    assert extension.sent_replay_id("/topic/A?T=2") == ReplayOption.NEW_EVENTS


def test_incoming_takes_replay_ids_of_any_int_type_and_filtered_channels() -> None:
    class Id(int):
        pass

    extension = ReplayExtension()
    subscribe(extension, "/topic/A", "/topic/A?Type=Partner")
    extension.incoming(event("/topic/A", Id(12)))  # type: ignore[arg-type]
    assert extension.last_received("/topic/A") == 12
    extension.incoming(event("/topic/A?Type=Partner", 13))  # type: ignore[arg-type]
    assert extension.last_received("/topic/A") == 12
    assert extension.last_received("/topic/A?Type=Partner") == 13
    extension.incoming({"channel": "/topic/A", "data": {"event": {"replayId": True}}})
    extension.incoming({"channel": "/topic/A", "data": {"event": ["replayId"]}})
    extension.incoming({"channel": "/topic/A", "data": {"payload": {}}})
    assert extension.last_received("/topic/A") == 12


def test_gap_safe_resubscription_delivers_events_without_a_date() -> None:
    extension = ReplayExtension()
    extension.mark_subscribed("/u/C", SINCE)
    assert stamped(extension, "/u/C") == ReplayOption.ALL_EVENTS
    undated: dict[str, Any] = {"channel": "/u/C", "data": {"event": {"replayId": 4}}}
    assert extension.incoming(undated) is None  # type: ignore[arg-type]
    assert extension.last_received("/u/C") == 4


def test_mark_subscribed_is_ignored_for_explicit_starts_and_after_events() -> None:
    extension = ReplayExtension()
    extension.set_replay_id("/topic/A", ReplayOption.ALL_EVENTS)
    extension.mark_subscribed("/topic/A", SINCE)
    assert stamped(extension, "/topic/A") == ReplayOption.ALL_EVENTS
    assert extension.incoming(event("/topic/A", 1, "2000-01-01T00:00:00Z")) is None  # type: ignore[arg-type]
    extension.set_replay_id("/topic/B", 42)
    extension.mark_subscribed("/topic/B", SINCE)
    assert stamped(extension, "/topic/B") == 42
    subscribe(extension, "/topic/C")
    extension.incoming(event("/topic/C", 9))  # type: ignore[arg-type]
    extension.mark_subscribed("/topic/C", SINCE)
    assert stamped(extension, "/topic/C") == 9


def test_fallback_and_forget_clear_the_gap_state() -> None:
    extension = ReplayExtension()
    extension.mark_subscribed("/topic/A", SINCE)
    extension.use_fallback("/topic/A", ReplayOption.NEW_EVENTS)
    assert stamped(extension, "/topic/A") == ReplayOption.NEW_EVENTS
    assert stamped(extension, "/topic/A") == ReplayOption.NEW_EVENTS  # loaded now
    extension.mark_subscribed("/topic/B", SINCE)
    assert stamped(extension, "/topic/B") == ReplayOption.ALL_EVENTS
    extension.forget("/topic/B")
    assert stamped(extension, "/topic/B") is None


# -- the server's time (issue #10, item 3) ---------------------------------------------------


class _Dated:
    """Stands for a BayeuxClient: only ``server_date`` is read."""

    def __init__(self, server_date: tuple[str, float] | None) -> None:
        self.server_date = server_date


async def test_the_server_time_comes_from_the_date_header_plus_the_time_since() -> None:
    from sfstream import AccessTokenAuthenticator, Client

    client = Client(AccessTokenAuthenticator("token", "https://example.my.salesforce.com"))
    now = asyncio.get_running_loop().time()
    dated: Any = _Dated(("Tue, 01 Jan 2030 10:00:00 GMT", now - 5.0))
    server_time = client._server_time(dated)
    assert server_time is not None
    assert datetime(2030, 1, 1, 10, 0, 5, tzinfo=UTC) <= server_time
    assert server_time < datetime(2030, 1, 1, 10, 0, 7, tzinfo=UTC)
    for unusable in (None, ("not a date", now), ("Tue, 01 Jan 2030 10:00:00 -0000", now)):
        assert client._server_time(_Dated(unusable)) is None  # type: ignore[arg-type]


def test_positions_never_go_back_on_the_short_way_or_the_long_one() -> None:
    extension = ReplayExtension()
    partner, customer = "/topic/A?Type=Partner", "/topic/A?Type=Customer"
    other = "/event/Other__e"
    for channel in (partner, customer):
        extension.set_replay_id(channel, ReplayOption.ALL_EVENTS)
    subscribe(extension, partner, customer, other)
    # the short way (no resubscription in progress): a lower id does not move the position
    for replay_id in (7, 5):
        assert extension.incoming(event(other, replay_id)) is None  # type: ignore[arg-type]
    assert extension.last_received(other) == 7
    for replay_id in (1, 30):
        extension.incoming(event(partner if replay_id == 1 else customer, replay_id))  # type: ignore[arg-type]
    extension.outgoing(subscribe_message(customer))  # a repeat window opens for customer
    # the long way (a window is open, for another subscription): positions still only rise
    assert extension.incoming(event(other, 6)) is None  # type: ignore[arg-type]
    assert extension.incoming(event(other, 9)) is None  # type: ignore[arg-type]
    assert extension.last_received(other) == 9
    assert extension.incoming(event(customer, 30)) is False  # type: ignore[arg-type]


# -- a run of deliveries at once (#13) ---------------------------------------------------------


def state(extension: ReplayExtension) -> tuple[Any, ...]:
    return (
        dict(extension._received),
        dict(extension._started),
        dict(extension._skip_before),
        dict(extension._repeats_until),
        dict(extension.dropped),
    )


def one_by_one(extension: ReplayExtension, messages: list[Message]) -> list[Message]:
    return [message for message in messages if extension.incoming(message) is not False]


def test_a_run_moves_the_position_to_its_highest_id_as_one_by_one_would() -> None:
    runs = [[20, 25, 22], [3, 4], [30]]
    at_once, single = ReplayExtension(), ReplayExtension()
    for extension in (at_once, single):
        subscribe(extension, "/topic/A")
        extension.mark_subscribed("/topic/A", datetime(2024, 1, 1, tzinfo=UTC))
    for ids in runs:
        messages: list[Message] = [event("/topic/A", i) for i in ids]  # type: ignore[misc]
        assert at_once.incoming_deliveries("/topic/A", messages) is messages
        assert one_by_one(single, copy.deepcopy(messages)) == messages
        assert state(at_once) == state(single)
    assert at_once.last_received("/topic/A") == 30
    assert not at_once._started  # the first event ended the wait for it


def test_a_run_declined_changes_nothing() -> None:
    extension = ReplayExtension()
    subscribe(extension, "/topic/A", "/topic/F?x=1", "/topic/F?x=2")
    extension.incoming(event("/topic/A", 5))  # type: ignore[arg-type]
    before = state(extension)
    unusual: list[list[dict[str, Any]]] = [
        [event("/topic/A", 6), {"channel": "/topic/A", "data": {"event": {}}}],  # no id
        [event("/topic/A", 6), {"channel": "/topic/A", "data": "plain"}],  # not an object
        [event("/topic/A", 6), event("/topic/A", True)],  # a bool is no replay id  # type: ignore[arg-type]
        [event("/topic/A", 6), {"channel": "/topic/A", "data": {"event": {"replayId": "7"}}}],
    ]
    for messages in unusual:
        assert extension.incoming_deliveries("/topic/A", messages) is None  # type: ignore[arg-type]
    # a channel no subscription is made for
    assert extension.incoming_deliveries("/topic/B", [event("/topic/B", 1)]) is None  # type: ignore[list-item]
    assert state(extension) == before


def test_a_run_during_a_resubscription_goes_one_by_one() -> None:
    # a gap-safe resubscription in progress: deliveries created before it are skipped
    skipping = ReplayExtension()
    subscribe(skipping, "/topic/A")
    skipping.mark_subscribed("/topic/A", datetime(2024, 6, 1, tzinfo=UTC))
    subscribe(skipping, "/topic/A")  # the session was lost before any event
    assert skipping._skip_before
    assert skipping.incoming_deliveries("/topic/A", [event("/topic/A", 1)]) is None  # type: ignore[list-item]
    # a shared topic resumed from a lower position: repeats are dropped
    repeating = ReplayExtension()
    subscribe(repeating, "/topic/F?x=1", "/topic/F?x=2")
    repeating.incoming(event("/topic/F?x=1", 10))  # type: ignore[arg-type]
    repeating.incoming(event("/topic/F?x=2", 4))  # type: ignore[arg-type]
    subscribe(repeating, "/topic/F?x=1")
    assert repeating._repeats_until
    assert repeating.incoming_deliveries("/topic/F?x=1", [event("/topic/F?x=1", 9)]) is None  # type: ignore[list-item]
