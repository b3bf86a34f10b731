"""The emulator's pure helpers: SOQL subset, ids, clocks, the event log, JSON, config."""

from __future__ import annotations

import datetime
import threading
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfstream.emulator import (
    ChannelLog,
    Emulator,
    EmulatorConfig,
    EventLog,
    ManualClock,
    OrgState,
    RestError,
    StoredEvent,
    SystemClock,
    _ids,
    _json,
    _soql,
)
from sfstream.emulator._config import parse_version
from sfstream.emulator._state import cdc_channel, iso_time

# -- SOQL ------------------------------------------------------------------------------------


def test_parse_a_push_topic_query() -> None:
    query = _soql.parse("SELECT Id, Name, Status__c FROM Invoice_Statement__c")
    assert query.fields == ("Id", "Name", "Status__c")
    assert query.sobject == "Invoice_Statement__c"
    assert query.where is None
    assert query.limit is None
    assert query.select_fields == {"id", "name", "status__c"}
    assert query.where_fields == frozenset()
    assert query.matches({})


RECORD = {"Name": "Acme", "Amount__c": 50, "Active__c": True, "Region__c": None, "Ratio__c": 0.5}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Name = 'acme'", True),  # case-insensitive strings
        ("Name != 'Acme'", False),
        ("Name <> 'Other'", True),
        ("Amount__c > 10", True),
        ("Amount__c >= 50", True),
        ("Amount__c < 50", False),
        ("Amount__c <= 49.5", False),
        ("Ratio__c = 0.5", True),
        ("Name < 'B'", True),
        ("Active__c = TRUE", True),
        ("Active__c != false", True),
        ("Active__c > true", False),
        ("Region__c = NULL", True),
        ("Region__c != null", False),
        ("Region__c > 1", False),
        ("Missing__c = null", True),
        ("Name = 5", False),
        ("Name != 5", True),
        ("Name IN ('x', 'ACME')", True),
        ("Name NOT IN ('x', 'Acme')", False),
        ("Name LIKE 'Ac%'", True),
        ("Name LIKE 'A_me'", True),
        ("Name LIKE 'B%'", False),
        ("Amount__c LIKE '5%'", False),
        ("Amount__c > 10 AND (Name = 'x' OR NOT Active__c = false)", True),
        ("Amount__c > 100 OR Name = 'Acme' AND Amount__c < 0", False),
        ("name = 'it\\'s'", False),
    ],
)
def test_where_clauses(where: str, expected: bool) -> None:
    query = _soql.parse("select Id from Account where " + where)  # noqa: S608 - a test query
    assert query.matches(RECORD) is expected


def test_where_fields_and_limit() -> None:
    query = _soql.parse(
        "SELECT Id FROM Account WHERE (A = 1 OR NOT B = 2) AND C IN (1) AND D LIKE 'x' LIMIT 10"
    )
    assert query.where_fields == {"a", "b", "c", "d"}
    assert query.limit == 10


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "SELECT",
        "SELECT Id",
        "SELECT Id FROM",
        "SELECT Id, FROM Account",
        "FROM Account",
        "SELECT Id FROM Account WHERE",
        "SELECT Id FROM Account WHERE Name",
        "SELECT Id FROM Account WHERE Name = ",
        "SELECT Id FROM Account WHERE Name = Other",
        "SELECT Id FROM Account WHERE Name LIKE 5",
        "SELECT Id FROM Account WHERE Name NOT = 1",
        "SELECT Id FROM Account WHERE (Name = 1",
        "SELECT Id FROM Account WHERE Name IN 'x'",
        "SELECT Id FROM Account LIMIT x",
        "SELECT Id FROM Account LIMIT 1.5",
        "SELECT Id FROM Account ORDER BY Name",
        "SELECT COUNT() FROM Account",
        "SELECT Id FROM Account WHERE Name = 'x' #",
    ],
)
def test_unsupported_queries(text: str) -> None:
    with pytest.raises(_soql.SOQLError):
        _soql.parse(text)


def test_field_value_is_case_insensitive() -> None:
    assert _soql.field_value({"Name": 1}, "name") == 1
    assert _soql.field_value({"Name": 1}, "Name") == 1
    assert _soql.field_value({}, "x") is None


# -- ids, time ---------------------------------------------------------------------------------


def test_record_ids_have_salesforce_checksums() -> None:
    # Known pairs: 15-character ids and their 18-character forms.
    assert _ids.to_18("001D000000IqhSL") == "001D000000IqhSLIAZ"
    assert _ids.to_18("a0D5000000Ba7Aq") == "a0D5000000Ba7AqEAJ"
    assert _ids.record_id("001", 1) == "001000000000001AAA"
    assert _ids.record_id("001", 62) == "001000000000010AAA"
    with pytest.raises(ValueError, match="15 characters"):
        _ids.to_18("short")
    with pytest.raises(ValueError, match="3 characters"):
        _ids.record_id("0011", 1)
    with pytest.raises(ValueError, match="overflow"):
        _ids.record_id("001", 62**9)


@given(st.integers(min_value=0, max_value=62**9 - 1))
def test_record_ids_are_18_characters(number: int) -> None:
    value = _ids.record_id("a01", number)
    assert len(value) == 18
    assert value[:3] == "a01"


def test_client_ids_and_tokens() -> None:
    client_id = _ids.client_id()
    assert len(client_id) == 27
    assert set(client_id) <= set("0123456789abcdefghijklmnopqrstuvwxyz")
    assert _ids.client_id() != client_id
    token = _ids.access_token("00D000000000001EAA")
    assert token.startswith("00D000000000001!")
    assert _ids.refresh_token().startswith("5Aep861")
    assert len(_ids.schema_id("Order__e")) == 22
    assert _ids.schema_id("Order__e") == _ids.schema_id("Order__e")
    assert len(_ids.hash_secret("x")) == 64


def test_iso_time_and_channels() -> None:
    assert iso_time(1_700_000_000.123456) == "2023-11-14T22:13:20.123Z"
    assert cdc_channel("Account") == "/data/AccountChangeEvent"
    assert cdc_channel("Employee__c") == "/data/Employee__ChangeEvent"


def test_clocks() -> None:
    manual = ManualClock(datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
    assert manual.time() == 1_704_067_200.0
    manual.advance(10)
    assert manual.time() == 1_704_067_210.0
    manual.set(1_704_067_300)
    assert manual.time() == 1_704_067_300.0
    with pytest.raises(ValueError, match="forward"):
        manual.set(0)
    with pytest.raises(ValueError, match="forward"):
        manual.advance(-1)
    with pytest.raises(ValueError, match="naive"):
        ManualClock(datetime.datetime(2024, 1, 1))
    assert "ManualClock" in repr(manual)
    system = SystemClock()
    before = system.time()
    system.advance(3600)
    assert system.time() >= before + 3600
    with pytest.raises(ValueError, match="forward"):
        system.advance(-1)
    assert "offset=3600" in repr(system)
    assert ManualClock().time() > 1_700_000_000


def test_versions() -> None:
    assert parse_version("45.0") == 45.0
    assert parse_version("45") == 45.0
    assert parse_version("v45.0") is None
    assert parse_version("45.0.1") is None


@pytest.mark.parametrize(
    "changes",
    [
        {"hold_time": -1},
        {"session_expiry": 0},
        {"retention": 0},
        {"max_batch": 0},
        {"api_version": "x"},
        # NaN passed every check (it compares false with everything); an infinite hold time
        # failed later, in every connect reply's advice
        {"hold_time": float("nan")},
        {"hold_time": float("inf")},
        {"session_expiry": float("nan")},
        {"retention": float("nan")},
        {"token_lifetime": -1},
        {"token_lifetime": float("nan")},
    ],
)
def test_config_validation(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must|invalid"):
        EmulatorConfig(**changes)


# -- the event log -----------------------------------------------------------------------------


def test_channel_log_replay_window() -> None:
    log = ChannelLog("/event/X__e", retention=100)
    assert not log.is_valid_replay_id(0)
    for t in range(5):
        log.append(float(t * 10), {"event": {}})
    assert [e.data["event"]["replayId"] for e in log.events] == [1, 2, 3, 4, 5]
    assert log.index_after(2) == 2
    assert log.is_valid_replay_id(1)
    assert log.is_valid_replay_id(5)
    assert not log.is_valid_replay_id(6)
    assert not log.is_valid_replay_id(0)
    assert log.purge(125.0) == 3  # events at 0, 10, 20 are older than 100 s
    assert log.purged_through == 3
    assert not log.is_valid_replay_id(3)
    assert log.is_valid_replay_id(4)
    assert log.purge(125.0) == 0
    assert len(log) == 2
    assert "last_id=5" in repr(log)
    log.restore(StoredEvent(4, 0.0, {"event": {"replayId": 4}}))  # not newer: ignored
    assert len(log) == 2


def test_event_log_listeners_and_retention_kinds() -> None:
    events = EventLog(retention=10, high_volume_retention=20)
    seen: list[tuple[str, int]] = []
    events.listeners.append(lambda log, stored: seen.append((log.channel, stored.replay_id)))
    events.append("/topic/T", 0.0, {"event": {}})
    events.append("/event/E__e", 0.0, {"event": {}})
    events.append("/u/x", 0.0, {"event": {}}, frozenset({"005"}))
    assert seen == [("/topic/T", 1), ("/event/E__e", 1), ("/u/x", 1)]
    assert events.channel("/topic/T").retention == 10
    assert events.channel("/data/ChangeEvents").retention == 20
    assert events.purge(15.0) == 2
    events.configure(retention=1, high_volume_retention=2)
    assert events.channel("/event/E__e").retention == 2
    assert len(events) == 1
    assert "events=1" in repr(events)
    assert events.get("/nope") is None


def test_stored_event_variants() -> None:
    stored = StoredEvent(
        1, 0.0, {"payload": {}, "event": {"EventUuid": "u", "EventApiName": "A__e", "replayId": 1}}
    )
    assert b"EventUuid" in stored.encoded_for(0)
    old = stored.encoded_for(1)
    assert b"EventUuid" not in old
    assert b"EventApiName" not in old
    middle = stored.encoded_for(2)
    assert b"EventUuid" in middle
    assert b"EventApiName" not in middle
    assert stored.encoded_for(1) is old  # cached
    assert "replay_id=1" in repr(stored)


# -- JSON --------------------------------------------------------------------------------------


def test_json_round_trip_and_fallbacks() -> None:
    assert _json.dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()
    assert _json.dumps(2**70) == b"1180591620717411303424"  # too wide for orjson
    assert _json.loads(b"123456789012345678901234567890") == 123456789012345678901234567890
    with pytest.raises(ValueError, match="Expecting"):
        _json.loads(b"{")
    with pytest.raises(ValueError, match="deep"):
        _json.loads(b"[" * 100_000 + b"]" * 100_000)


# -- the org -----------------------------------------------------------------------------------


def test_org_state_definitions() -> None:
    state = OrgState()
    with pytest.raises(ValueError, match="platform event name"):
        state.define_event("bad name")
    with pytest.raises(ValueError, match="custom channel"):
        state.define_channel("/event/NotAChannel", [])
    event = state.define_event("/event/Order__e", ["A__c"])
    assert event.name == "Order__e"
    assert event.fields == {"A__c"}
    assert "OrgState" in repr(state)
    assert state.add_user("u@x.org", "pw") is state.add_user("U@X.org")
    assert state.check_password("u@x.org", "pw") is not None
    state.add_user("u@x.org", "new")
    assert state.check_password("u@x.org", "pw") is None
    prefixes = {state.key_prefix(f"Custom{n}__c") for n in range(40)}
    assert len(prefixes) == 40
    assert all(p.startswith("a") for p in prefixes)
    assert state.refresh("unknown", now=0, rotate=False) is None
    assert state.valid_access_token(None, 0, None) is None


def test_orphaned_refresh_tokens_are_refused() -> None:
    state = OrgState()
    token = state.issue_token("refresh", "005nobody", 0.0)
    assert state.refresh(token, now=0.0, rotate=False) is None


def test_undelete_needs_a_deleted_record() -> None:
    state = OrgState()
    from sfstream.emulator._state import RestError

    with pytest.raises(RestError):
        state.undelete_record("001000000000001AAA", now=0, user_id="005")


# -- running in a thread -------------------------------------------------------------------------


def test_emulator_in_a_thread() -> None:
    import json
    import urllib.request

    with Emulator(events={"Order__e": ["Amount__c", "N__c"]}).in_thread() as org:
        assert org.base_url == org.login_url == org.instance_url
        published = org.publish("/event/Order__e", {"Amount__c": 1})
        assert published.replay_id == 1
        assert org.call(org.emulator.define_event, "Other__e") is None
        assert org.call(org.emulator.publish, "/event/Other__e", {}).replay_id == 1
        with urllib.request.urlopen(org.emulator.admin_url) as response:  # noqa: S310
            status = json.loads(response.read())
        assert set(status["platformEvents"]) == {"Order__e", "Other__e"}
        assert threading.current_thread() is threading.main_thread()
    with pytest.raises(RuntimeError, match="not running"):
        org.call(print)
    org.stop()  # idempotent


async def test_lifecycle_errors(http: aiohttp.ClientSession) -> None:
    org = Emulator()
    with pytest.raises(RuntimeError, match="not started"):
        _ = org.base_url
    assert "not started" in repr(org)
    async with org:
        with pytest.raises(RuntimeError, match="already running"):
            await org.start()
        assert org.running
        assert org.cometd_url("45.0").endswith("/cometd/45.0")
        assert org.token_url.endswith("/services/oauth2/token")
    assert not org.running
    await org.close()  # idempotent
    with pytest.raises(KeyError):
        org.issue_access_token("nobody@example.com")
    assert org.events("/event/Nope__e") == []


async def test_binding_the_wildcard_address_names_loopback() -> None:
    async with Emulator(host="0.0.0.0") as org:  # noqa: S104
        assert org.base_url.startswith("http://127.0.0.1:")


async def test_ipv6_loopback() -> None:
    try:
        org = Emulator(host="::1")
        await org.start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert org.base_url.startswith("http://[::1]:")
    finally:
        await org.stop()


async def test_a_port_in_use_is_reported() -> None:
    async with Emulator() as first:
        with pytest.raises(OSError):  # noqa: PT011
            await Emulator(port=first.port).start()


async def test_from_config(http: aiohttp.ClientSession) -> None:
    config = EmulatorConfig(username="cfg@example.com", hold_time=0.2)
    org = Emulator.from_config(config, events={"Cfg__e": ["Amount__c", "N__c"]}, cdc_entities=[])
    assert org.config is config
    assert org.username == "cfg@example.com"
    assert org.state.cdc_entities == set()
    async with org:
        assert org.cometd_url().endswith("/cometd/67.0")
        assert "Cfg__e" in org.state.platform_events


# -- platform events: the __e suffix and declared fields --------------------------------------


@pytest.mark.parametrize("name", ["Order", "/event/Order", "Order__c", "Order__chn", "Order_e"])
def test_a_platform_event_name_ends_in_e(name: str) -> None:
    with pytest.raises(ValueError, match="ends in __e"):
        OrgState().define_event(name)
    with pytest.raises(ValueError, match="ends in __e"):
        Emulator(events=[name])
    with pytest.raises(ValueError, match=r"ends in __e|publish to a member event"):
        Emulator().publish_nowait(f"/event/{name.removeprefix('/event/')}", {})


def test_the_hint_names_the_event_with_its_suffix() -> None:
    with pytest.raises(ValueError, match=r"did you mean Order__e\?"):
        OrgState().define_event("Order")


def test_declared_fields_are_custom_fields() -> None:
    with pytest.raises(ValueError, match="end in __c"):
        OrgState().define_event("Order__e", ["Amount"])
    with pytest.raises(TypeError, match="list of names"):
        Emulator(events={"Order__e": "Amount__c"})


async def test_python_publishing_checks_declared_fields() -> None:
    async with Emulator(events={"Order__e": ["Amount__c"], "Any__e": None}) as org:
        await org.publish("/event/Order__e", {"Amount__c": 1})
        with pytest.raises(RestError) as caught:
            await org.publish("/event/Order__e", {"Amount__c": 1, "Other__c": 2})
        assert isinstance(caught.value, ValueError)
        assert caught.value.body() == [
            {
                "message": "No such column 'Other__c' on sobject of type Order__e",
                "errorCode": "INVALID_FIELD",
            }
        ]
        with pytest.raises(RestError) as caught:  # a bare name declares no custom fields
            await org.publish("/event/Any__e", {"Whatever__c": 1})
        assert caught.value.body() == [
            {
                "message": "No such column 'Whatever__c' on sobject of type Any__e",
                "errorCode": "INVALID_FIELD",
            }
        ]
        await org.publish("/event/Any__e", {})
        assert [e["payload"]["Amount__c"] for e in org.events("/event/Order__e")] == [1]
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{org.admin_url}/publish",
                json={"channel": "/event/Order__e", "payload": {"Nope__c": 1}},
            ) as response,
        ):
            assert response.status == 400
            assert (await response.json())["errorCode"] == "INVALID_FIELD"


def test_declaring_fields_again_on_a_kept_org() -> None:
    state = OrgState()
    Emulator(state=state, events=["Order__e"])
    assert state.platform_events["Order__e"].fields == frozenset()
    Emulator(state=state, events={"Order__e": ["A__c"]})
    assert state.platform_events["Order__e"].fields == {"A__c"}
    Emulator(state=state, events=["Order__e"])  # a bare name keeps what the org has
    assert state.platform_events["Order__e"].fields == {"A__c"}


async def test_an_event_stored_without_fields_by_an_older_state_file_accepts_none() -> None:
    state = OrgState()
    meta = state.metadata()
    meta["platform_events"] = {"Old__e": None, "Kept__e": ["Amount__c"]}  # older sfstream: null
    state.load_metadata(meta)
    assert state.platform_events["Old__e"].fields == frozenset()
    assert state.platform_events["Kept__e"].fields == frozenset({"Amount__c"})
    assert state.metadata()["platform_events"] == {"Old__e": [], "Kept__e": ["Amount__c"]}
    async with Emulator(state=state, events=["Old__e"]) as org:
        with pytest.raises(RestError, match="No such column 'Amount__c' on sobject of type Old__e"):
            await org.publish("/event/Old__e", {"Amount__c": 1})
        await org.publish("/event/Kept__e", {"Amount__c": 1})
