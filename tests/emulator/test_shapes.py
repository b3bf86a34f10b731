"""Delivered message shapes per channel kind, exactly as Salesforce sends them."""

from __future__ import annotations

import re
import uuid
from typing import Any

import aiohttp
import pytest

from sfstream.emulator import Emulator, RestError

from .conftest import Bayeux, events_of

STAMP = "2023-11-14T22:13:20.000Z"  # the fixture clock: 1_700_000_000
MILLIS = 1_700_000_000_000
SCHEMA = re.compile(r"^[A-Za-z0-9_-]{22}$")


async def received(bayeux: Bayeux) -> list[dict[str, Any]]:
    return events_of(await bayeux.connect())


async def test_platform_event_shape(
    bayeux: Bayeux, org: Emulator, http: aiohttp.ClientSession, token: str
) -> None:
    await bayeux.start("/event/Order__e")
    async with http.post(
        f"{org.instance_url}/services/data/v62.0/sobjects/Order__e/",
        json={"Printer_Model__c": "XZO-5", "Ink_Percentage__c": 0.2},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 201
        saved = await response.json()
    event_uuid = saved["errors"][0]["message"]
    [message] = await received(bayeux)
    schema = message["data"].pop("schema")
    assert SCHEMA.match(schema)
    assert message == {
        "channel": "/event/Order__e",
        "data": {
            "payload": {
                "CreatedDate": STAMP,
                "CreatedById": org.user_id,
                "Printer_Model__c": "XZO-5",
                "Ink_Percentage__c": 0.2,
            },
            "event": {"EventUuid": event_uuid, "replayId": 1},
        },
    }
    assert "createdDate" not in message["data"]["event"]
    uuid.UUID(event_uuid)


async def test_push_topic_shapes(bayeux: Bayeux, org: Emulator) -> None:
    org.create_push_topic(
        "InvoiceStatementUpdates", "SELECT Id, Name, Status__c FROM Invoice_Statement__c"
    )
    await bayeux.start("/topic/InvoiceStatementUpdates")
    record = org.create_record(
        "Invoice_Statement__c", {"Name": "INV-0001", "Status__c": "Open", "Other__c": 1}
    )
    [created] = await received(bayeux)
    assert created == {
        "channel": "/topic/InvoiceStatementUpdates",
        "data": {
            "event": {"createdDate": STAMP, "type": "created", "replayId": 1},
            "sobject": {"Id": record, "Name": "INV-0001", "Status__c": "Open"},
        },
    }
    org.update_record("Invoice_Statement__c", record, {"Status__c": "Closed"})
    org.update_record("Invoice_Statement__c", record, {"Other__c": 2})  # not referenced
    org.update_record("Invoice_Statement__c", record, {"Status__c": "Closed"})  # no change
    org.delete_record("Invoice_Statement__c", record)
    org.undelete_record(record)
    events = await received(bayeux)
    assert [e["data"]["event"]["type"] for e in events] == ["updated", "deleted", "undeleted"]
    assert [e["data"]["event"]["replayId"] for e in events] == [2, 3, 4]
    assert events[0]["data"]["sobject"]["Status__c"] == "Closed"


@pytest.mark.parametrize(
    ("notify_for_fields", "expected"),
    [
        ("All", ["Name", "Amount__c", "Other__c"]),
        ("Referenced", ["Name", "Amount__c"]),
        ("Select", ["Name"]),
        ("Where", ["Amount__c"]),
    ],
)
async def test_notify_for_fields(
    bayeux: Bayeux, org: Emulator, notify_for_fields: Any, expected: list[str]
) -> None:
    org.create_push_topic(
        "Deals",
        "SELECT Id, Name FROM Deal__c WHERE Amount__c > 10",
        notify_for_fields=notify_for_fields,
        notify_create=False,
    )
    record = org.create_record("Deal__c", {"Name": "a", "Amount__c": 20, "Other__c": 0})
    await bayeux.start("/topic/Deals")
    for field, value in (("Name", "b"), ("Amount__c", 30), ("Other__c", 1)):
        org.update_record("Deal__c", record, {field: value})
    events = await received(bayeux)
    assert len(events) == len(expected)


async def test_where_clause_and_operations(bayeux: Bayeux, org: Emulator) -> None:
    org.create_push_topic(
        "Big", "SELECT Id, Name FROM Deal__c WHERE Amount__c >= 100 AND Stage__c != 'Lost'"
    )
    org.create_push_topic(
        "NoDeletes",
        "SELECT Id FROM Deal__c",
        notify_delete=False,
        notify_update=False,
        notify_undelete=False,
    )
    org.create_push_topic("Where", "SELECT Id FROM Deal__c", notify_for_fields="Where")
    await bayeux.start("/topic/Big", "/topic/NoDeletes", "/topic/Where")
    small = org.create_record("Deal__c", {"Name": "small", "Amount__c": 5})
    big = org.create_record("Deal__c", {"Name": "big", "Amount__c": 500, "Stage__c": "Open"})
    org.update_record("Deal__c", big, {"Stage__c": "Lost"})  # no longer matches: not notified
    org.update_record("Deal__c", small, {"Amount__c": 150})  # now matches
    org.delete_record("Deal__c", small)
    events = await received(bayeux)
    big_events = [
        (e["data"]["event"]["type"], e["data"]["sobject"]["Name"])
        for e in events
        if e["channel"] == "/topic/Big"
    ]
    assert big_events == [("created", "big"), ("updated", "small"), ("deleted", "small")]
    no_deletes = [e["data"]["event"]["type"] for e in events if e["channel"] == "/topic/NoDeletes"]
    assert no_deletes == ["created", "created"]
    where = [e["data"]["event"]["type"] for e in events if e["channel"] == "/topic/Where"]
    assert where == ["created", "created", "updated", "updated", "deleted"]


async def test_publish_directly_to_a_push_topic(bayeux: Bayeux, org: Emulator) -> None:
    org.create_push_topic("Accounts", "SELECT Id, Name FROM Account")
    await bayeux.start("/topic/Accounts")
    published = await org.publish(
        "/topic/Accounts", {"Id": "001000000000001AAA", "Name": "x"}, event_type="updated"
    )
    assert published.id == "001000000000001AAA"
    [event] = await received(bayeux)
    assert event["data"]["event"]["type"] == "updated"
    with pytest.raises(KeyError):
        await org.publish("/topic/Nope", {})


async def test_generic_event_shape(bayeux: Bayeux, org: Emulator) -> None:
    org.create_streaming_channel("/u/notifications/ExampleUserChannel")
    await bayeux.start("/u/notifications/ExampleUserChannel")
    await org.publish("/u/notifications/ExampleUserChannel", "hello world!")
    [event] = await received(bayeux)
    assert event == {
        "channel": "/u/notifications/ExampleUserChannel",
        "data": {"event": {"createdDate": STAMP, "replayId": 1}, "payload": "hello world!"},
    }


def header(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = event["data"]["payload"]["ChangeEventHeader"]
    return result


async def test_change_event_shapes(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start("/data/ChangeEvents", "/data/AccountChangeEvent")
    record = org.create_record("Account", {"Name": "Acme", "Description": "d"})
    events = await received(bayeux)
    assert sorted(e["channel"] for e in events) == [
        "/data/AccountChangeEvent",
        "/data/ChangeEvents",
    ]
    created = next(e for e in events if e["channel"] == "/data/ChangeEvents")
    data = created["data"]
    assert SCHEMA.match(data.pop("schema"))
    head = data["payload"].pop("ChangeEventHeader")
    transaction_key = head.pop("transactionKey")
    uuid.UUID(transaction_key)
    assert isinstance(head.pop("commitNumber"), int)
    assert head == {
        "entityName": "Account",
        "recordIds": [record],
        "changeType": "CREATE",
        "changeOrigin": "com/salesforce/api/rest/67.0",
        "sequenceNumber": 1,
        "commitTimestamp": MILLIS,
        "commitUser": org.user_id,
        "nulledFields": [],
        "diffFields": [],
        "changedFields": [],
    }
    assert data["payload"] == {
        "Name": "Acme",
        "Description": "d",
        "CreatedDate": STAMP,
        "CreatedById": org.user_id,
        "LastModifiedDate": STAMP,
        "LastModifiedById": org.user_id,
        "SystemModstamp": STAMP,
        "OwnerId": org.user_id,
    }
    assert data["event"] == {"replayId": 1}

    org.update_record("Account", record, {"Name": "Acme 2", "Description": None})
    org.delete_record("Account", record)
    org.undelete_record(record)
    events = [e for e in await received(bayeux) if e["channel"] == "/data/AccountChangeEvent"]
    assert [header(e)["changeType"] for e in events] == ["UPDATE", "DELETE", "UNDELETE"]
    update = events[0]["data"]["payload"]
    assert header(events[0])["changedFields"] == ["Name", "Description", "LastModifiedDate"]
    assert header(events[0])["nulledFields"] == ["Description"]
    assert {k: v for k, v in update.items() if k != "ChangeEventHeader"} == {
        "Name": "Acme 2",
        "LastModifiedDate": STAMP,
    }
    assert set(events[1]["data"]["payload"]) == {"ChangeEventHeader"}
    assert events[2]["data"]["payload"]["Name"] == "Acme 2"


async def test_gap_and_overflow_events(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start("/data/AccountChangeEvent")
    org.publish_gap_event("Account", ["001000000000001AAA"])
    org.publish_overflow_event("Account")
    gap, overflow = await received(bayeux)
    assert set(gap["data"]["payload"]) == {"ChangeEventHeader"}
    assert header(gap)["changeType"] == "GAP_UPDATE"
    assert header(gap)["recordIds"] == ["001000000000001AAA"]
    assert header(gap)["sequenceNumber"] == 1
    assert header(overflow)["changeType"] == "GAP_OVERFLOW"
    assert header(overflow)["recordIds"] == []
    assert header(overflow)["entityName"] == "Account"
    with pytest.raises(ValueError, match="gap"):
        org.publish_gap_event("Account", [], "GAP_OVERFLOW")
    with pytest.raises(ValueError, match="changeType"):
        org.state.publish_change_event("Account", "BOGUS", [], now=0, user_id="x")


async def test_custom_object_change_events(bayeux: Bayeux, org: Emulator) -> None:
    org.enable_cdc("Employee__c")
    org.define_channel("/data/People__chn", ["Employee__ChangeEvent"])
    await bayeux.start("/data/Employee__ChangeEvent", "/data/People__chn", "/data/ChangeEvents")
    record = org.create_record("Employee__c", {"Name": "Ada"})
    events = await received(bayeux)
    assert sorted(e["channel"] for e in events) == [
        "/data/ChangeEvents",
        "/data/Employee__ChangeEvent",
        "/data/People__chn",
    ]
    assert all(header(e)["entityName"] == "Employee__c" for e in events)
    assert all(header(e)["recordIds"] == [record] for e in events)
    assert "OwnerId" not in events[0]["data"]["payload"]  # custom objects here have no owner


async def test_publish_change_events_directly(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start("/data/AccountChangeEvent")
    await org.publish(
        "/data/AccountChangeEvent",
        {"Name": "x"},
        change_type="UPDATE",
        record_ids=["001000000000009AAA"],
    )
    await org.publish("/data/AccountChangeEvent", {"Name": "y"})
    first, second = await received(bayeux)
    assert header(first)["changedFields"] == ["Name"]
    assert header(first)["recordIds"] == ["001000000000009AAA"]
    assert header(second)["changeType"] == "CREATE"
    assert header(second)["recordIds"][0].startswith("001")
    with pytest.raises(ValueError, match="not enabled"):
        await org.publish("/data/WidgetChangeEvent", {})
    with pytest.raises(TypeError):
        await org.publish("/data/AccountChangeEvent", "text")


async def test_publish_argument_errors(org: Emulator) -> None:
    with pytest.raises(TypeError):
        await org.publish("/event/Order__e", "text")
    with pytest.raises(TypeError):
        await org.publish("/topic/X", "text")
    with pytest.raises(ValueError, match="member event"):
        await org.publish("/event/Orders__chn", {})
    with pytest.raises(ValueError, match="cannot publish"):
        await org.publish("/foo/bar", {})
    published = await org.publish("/event/New__e", {})  # defined on the fly, no custom fields
    assert published.channel == "/event/New__e"
    assert published.replay_id == 1
    assert published.event_uuid is not None
    assert org.events("/event/New__e")[0]["payload"]["CreatedById"] == org.user_id
    with pytest.raises(RestError, match="No such column 'A__c' on sobject of type New__e"):
        await org.publish("/event/New__e", {"A__c": 1})
