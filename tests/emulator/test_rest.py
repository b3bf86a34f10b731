"""The REST API: publishing platform events, composite batches, PushTopics, StreamingChannels,
records, queries, and Salesforce's error format."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from sfstream.emulator import Emulator

from .conftest import Bayeux, events_of

NOT_FOUND = [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


class Rest:
    def __init__(self, http: aiohttp.ClientSession, org: Emulator, token: str) -> None:
        self.http = http
        self.base = f"{org.instance_url}/services/data/v62.0"
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None, **kw: Any
    ) -> tuple[int, Any]:
        headers = dict(self.headers)
        if raw is not None:
            headers["Content-Type"] = "application/json"
        async with self.http.request(
            method,
            self.base + path,
            json=body if raw is None and body is not None else None,
            data=raw,
            headers=headers,
            **kw,
        ) as response:
            if response.status == 204:
                return 204, None
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()


@pytest.fixture
def rest(http: aiohttp.ClientSession, org: Emulator, token: str) -> Rest:
    return Rest(http, org, token)


async def test_versions_and_resources(
    rest: Rest, http: aiohttp.ClientSession, org: Emulator
) -> None:
    for path in ("/services/data", "/services/data/"):
        async with http.get(org.instance_url + path) as response:
            versions = await response.json()
        assert versions[0]["version"] == "37.0"
        assert versions[-1] == {
            "label": "API 67.0",
            "url": "/services/data/v67.0",
            "version": "67.0",
        }
    status, body = await rest.call("GET", "/")
    assert status == 200
    assert body["sobjects"] == "/services/data/v62.0/sobjects"
    status, body = await rest.call("GET", "")
    assert status == 200
    status, body = await rest.call("POST", "/")
    assert status == 405
    assert body[0]["errorCode"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize("version", ["v99.0", "v19.0", "vabc"])
async def test_unknown_api_versions(
    http: aiohttp.ClientSession, org: Emulator, token: str, version: str
) -> None:
    async with http.get(
        f"{org.instance_url}/services/data/{version}/sobjects",
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 404
        assert await response.json() == NOT_FOUND


@pytest.mark.parametrize("header", [None, "Bearer nope", "OAuth nope"])
async def test_invalid_session(
    http: aiohttp.ClientSession, org: Emulator, header: str | None
) -> None:
    async with http.post(
        f"{org.instance_url}/services/data/v62.0/sobjects/Order__e/",
        json={},
        headers={} if header is None else {"Authorization": header},
    ) as response:
        assert response.status == 401
        assert await response.json() == [
            {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
        ]


async def test_publish_a_platform_event(rest: Rest, bayeux: Bayeux) -> None:
    await bayeux.start("/event/Order__e")
    status, body = await rest.call("POST", "/sobjects/Order__e/", {"Serial__c": "12345"})
    assert status == 201
    assert body["success"] is True
    assert body["id"].startswith("e00")
    assert len(body["id"]) == 18
    [error] = body["errors"]
    assert error["statusCode"] == "OPERATION_ENQUEUED"
    assert error["fields"] == []
    [event] = events_of(await bayeux.connect())
    assert event["data"]["event"]["EventUuid"] == error["message"]
    # OAuth scheme and no trailing slash work as well
    rest.headers = {"Authorization": rest.headers["Authorization"].replace("Bearer", "OAuth")}
    status, _ = await rest.call("POST", "/sobjects/Order__e", {"Serial__c": "6"})
    assert status == 201


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"Bogus": 1}, "INVALID_FIELD", "No such column 'Bogus' on sobject of type Order__e"),
        (
            {"CreatedDate": "x"},
            "INVALID_FIELD",
            "No such column 'CreatedDate' on sobject of type Order__e",
        ),
        ({"A__c": {"nested": 1}}, "JSON_PARSER_ERROR", None),
        ({"A__c": [1]}, "JSON_PARSER_ERROR", None),
    ],
)
async def test_platform_event_field_errors(
    rest: Rest, body: dict[str, Any], code: str, message: str | None
) -> None:
    status, answer = await rest.call("POST", "/sobjects/Order__e/", body)
    assert status == 400
    assert answer[0]["errorCode"] == code
    if message is not None:
        assert answer[0]["message"] == message


async def test_declared_fields_are_enforced(rest: Rest, org: Emulator) -> None:
    org.define_event("Strict__e", fields=["Allowed__c"])
    assert (await rest.call("POST", "/sobjects/Strict__e/", {"Allowed__c": 1}))[0] == 201
    status, body = await rest.call("POST", "/sobjects/Strict__e/", {"Other__c": 1})
    assert (status, body[0]["errorCode"]) == (400, "INVALID_FIELD")


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", b'"text"'])
async def test_json_parser_errors(rest: Rest, raw: bytes) -> None:
    status, body = await rest.call("POST", "/sobjects/Order__e/", raw=raw)
    assert status == 400
    assert body[0]["errorCode"] == "JSON_PARSER_ERROR"
    assert set(body[0]) == {"message", "errorCode"}


@pytest.mark.parametrize(
    "raw", [b'{"A__c": "\\udcff"}', b'{"A__c": "x\\uD800"}', b'{"A__c": "\xed\xb3\xbf"}']
)
async def test_a_lone_surrogate_is_a_json_parser_error_and_stores_nothing(
    rest: Rest, org: Emulator, raw: bytes
) -> None:
    # (it was stored, then the reply failed with HTTP 500, as would every reply carrying it)
    status, body = await rest.call("POST", "/sobjects/Order__e/", raw=raw)
    assert (status, body[0]["errorCode"]) == (400, "JSON_PARSER_ERROR")
    assert org.events("/event/Order__e") == []
    # a pair of surrogates is one character, and fine
    status, _ = await rest.call("POST", "/sobjects/Order__e/", raw=b'{"A__c": "\\ud83d\\ude00"}')
    assert status == 201
    assert [e["payload"]["A__c"] for e in org.events("/event/Order__e")] == ["\U0001f600"]


async def test_unknown_objects_and_paths(rest: Rest) -> None:
    assert await rest.call("POST", "/sobjects/Nope__e/", {}) == (404, NOT_FOUND)
    assert await rest.call("POST", "/sobjects/Widget/", {}) == (404, NOT_FOUND)
    assert await rest.call("GET", "/nowhere") == (404, NOT_FOUND)
    assert await rest.call("GET", "/sobjects/Account/001/extra/path") == (404, NOT_FOUND)
    assert await rest.call("GET", "/sobjects/Widget") == (404, NOT_FOUND)
    status, body = await rest.call("PUT", "/sobjects/Account")
    assert (status, body[0]["errorCode"]) == (405, "METHOD_NOT_ALLOWED")
    status, body = await rest.call("PUT", "/sobjects/Account/001000000000001AAA")
    assert status == 405


async def test_describe(rest: Rest, org: Emulator) -> None:
    org.create_record("Thing__c", {"Name": "x"})
    status, body = await rest.call("GET", "/sobjects")
    assert status == 200
    names = {s["name"] for s in body["sobjects"]}
    assert {"Order__e", "PushTopic", "StreamingChannel", "Account", "Thing__c"} <= names
    status, body = await rest.call("GET", "/sobjects/Order__e")
    assert (status, body["objectDescribe"]["name"]) == (200, "Order__e")
    status, _ = await rest.call("POST", "/sobjects", {})
    assert status == 405


async def test_composite_publish(rest: Rest, bayeux: Bayeux) -> None:
    await bayeux.start("/event/Order__e")
    records = [{"attributes": {"type": "Order__e"}, "N__c": n} for n in range(3)]
    status, body = await rest.call(
        "POST", "/composite/sobjects", {"allOrNone": False, "records": records}
    )
    assert status == 200
    assert [r["success"] for r in body] == [True, True, True]
    assert all(r["errors"][0]["statusCode"] == "OPERATION_ENQUEUED" for r in body)
    events = events_of(await bayeux.connect())
    assert [e["data"]["payload"]["N__c"] for e in events] == [0, 1, 2]


async def test_composite_partial_failure_and_all_or_none(rest: Rest, org: Emulator) -> None:
    records = [
        {"attributes": {"type": "Order__e"}, "N__c": 1},
        {"attributes": {"type": "Order__e"}, "Bad": 1},
        {"N__c": 2},
        {"attributes": {"type": "Account"}, "Name": "Acme"},
        {"attributes": {"type": "StreamingChannel"}, "Name": "bad-name"},
        {"attributes": {"type": "PushTopic"}, "Name": "T", "Query": "SELECT Id FROM Account"},
    ]
    status, body = await rest.call("POST", "/composite/sobjects", {"records": records})
    assert status == 200
    assert [r["success"] for r in body] == [True, False, False, True, False, True]
    assert body[1]["errors"] == [
        {
            "statusCode": "INVALID_FIELD",
            "message": "No such column 'Bad' on sobject of type Order__e",
            "fields": [],
        }
    ]
    assert body[2]["errors"][0]["statusCode"] == "INVALID_TYPE"
    assert body[4]["errors"][0]["statusCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert len(org.events("/event/Order__e")) == 1
    status, body = await rest.call(
        "POST", "/composite/sobjects", {"allOrNone": True, "records": records[:2]}
    )
    assert [r["success"] for r in body] == [False, False]
    assert body[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert len(org.events("/event/Order__e")) == 1


async def test_composite_limits_and_errors(rest: Rest) -> None:
    records = [{"attributes": {"type": "Order__e"}}] * 201
    status, body = await rest.call("POST", "/composite/sobjects", {"records": records})
    assert (status, body[0]["errorCode"]) == (400, "EXCEEDED_ID_LIMIT")
    status, body = await rest.call("POST", "/composite/sobjects", {"records": "x"})
    assert (status, body[0]["errorCode"]) == (400, "JSON_PARSER_ERROR")
    status, _ = await rest.call("GET", "/composite/sobjects")
    assert status == 405
    status, _ = await rest.call("POST", "/composite/other", {})
    assert status == 404


async def test_push_topic_lifecycle(rest: Rest, bayeux: Bayeux, org: Emulator) -> None:
    status, body = await rest.call(
        "POST",
        "/sobjects/PushTopic/",
        {
            "Name": "InvoiceStatementUpdates",
            "Query": "SELECT Id, Name, Status__c FROM Invoice_Statement__c",
            "ApiVersion": 62.0,
            "NotifyForOperationCreate": True,
            "NotifyForOperationUpdate": True,
            "NotifyForOperationUndelete": True,
            "NotifyForOperationDelete": True,
            "NotifyForFields": "Referenced",
        },
    )
    assert status == 201
    assert body == {"id": body["id"], "success": True, "errors": []}
    topic_id = body["id"]
    assert topic_id.startswith("0IF")
    status, topic = await rest.call("GET", f"/sobjects/PushTopic/{topic_id}")
    assert status == 200
    assert topic["attributes"] == {
        "type": "PushTopic",
        "url": f"/services/data/v62.0/sobjects/PushTopic/{topic_id}",
    }
    assert topic["Name"] == "InvoiceStatementUpdates"
    assert topic["IsActive"] is True
    await bayeux.start("/topic/InvoiceStatementUpdates")
    status, created = await rest.call(
        "POST", "/sobjects/Invoice_Statement__c/", {"Name": "INV-1", "Status__c": "Open"}
    )
    assert status == 201
    [event] = events_of(await bayeux.connect())
    assert event["data"]["sobject"] == {"Id": created["id"], "Name": "INV-1", "Status__c": "Open"}
    # changing the query takes effect at once
    status, _ = await rest.call(
        "PATCH",
        f"/sobjects/PushTopic/{topic_id}",
        {
            "Query": "SELECT Id, Name FROM Invoice_Statement__c",
            "Description": "d",
            "ApiVersion": "63.0",
        },
    )
    assert status == 204
    await rest.call(
        "POST", "/sobjects/Invoice_Statement__c/", {"Name": "INV-2", "Status__c": "Open"}
    )
    [event] = events_of(await bayeux.connect())
    assert event["data"]["sobject"] == {"Id": event["data"]["sobject"]["Id"], "Name": "INV-2"}
    assert (await rest.call("PATCH", f"/sobjects/PushTopic/{topic_id}", {"Name": "Renamed"}))[
        0
    ] == 204
    assert org.state.topic_by_name("Renamed") is not None
    assert (await rest.call("DELETE", f"/sobjects/PushTopic/{topic_id}"))[0] == 204
    assert await rest.call("GET", f"/sobjects/PushTopic/{topic_id}") == (404, NOT_FOUND)
    assert await rest.call("DELETE", f"/sobjects/PushTopic/{topic_id}") == (404, NOT_FOUND)
    assert await rest.call("PATCH", f"/sobjects/PushTopic/{topic_id}", {}) == (404, NOT_FOUND)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"Query": "SELECT Id FROM Account"}, "REQUIRED_FIELD_MISSING"),
        ({"Name": "T"}, "REQUIRED_FIELD_MISSING"),
        ({"Name": "T", "Query": "SELECT Id FROM Account", "Bogus": 1}, "INVALID_FIELD"),
        ({"Name": "T", "Query": "SELECT Name FROM Account"}, "INVALID_FIELD"),
        ({"Name": "T", "Query": "SELECT FROM"}, "INVALID_FIELD"),
        ({"Name": "T", "Query": "SELECT Id FROM Widget"}, "INVALID_TYPE"),
        ({"Name": "T" * 26, "Query": "SELECT Id FROM Account"}, "STRING_TOO_LONG"),
        (
            {"Name": "T", "Query": "SELECT Id FROM Account WHERE Name = '" + "x" * 1300 + "'"},
            "STRING_TOO_LONG",
        ),
        (
            {"Name": "T", "Query": "SELECT Id FROM Account", "Description": "d" * 401},
            "STRING_TOO_LONG",
        ),
        (
            {"Name": "T", "Query": "SELECT Id FROM Account", "NotifyForFields": "Some"},
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        ),
        (
            {"Name": "T", "Query": "SELECT Id FROM Account", "ApiVersion": 20.0},
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            {"Name": "T", "Query": "SELECT Id FROM Account", "ApiVersion": "x"},
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            {"Name": "T", "Query": "SELECT Id FROM Account", "IsActive": "yes"},
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
        ),
        ({"Name": 5, "Query": "SELECT Id FROM Account"}, "INVALID_TYPE_ON_FIELD_IN_RECORD"),
        (
            {"Name": "T", "Query": "SELECT Id FROM Account", "ApiVersion": True},
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
        ),
    ],
)
async def test_push_topic_errors(rest: Rest, fields: dict[str, Any], code: str) -> None:
    status, body = await rest.call("POST", "/sobjects/PushTopic/", fields)
    assert status == 400
    assert body[0]["errorCode"] == code
    # Salesforce names the field in "fields", except for an unknown column (named in the message)
    assert ("fields" in body[0]) == (code != "INVALID_FIELD" or "Bogus" not in fields)


async def test_push_topic_names_are_unique(rest: Rest, org: Emulator) -> None:
    topic = org.create_push_topic("T", "SELECT Id FROM Account")
    other = org.create_push_topic("U", "SELECT Id FROM Account")
    status, body = await rest.call(
        "POST", "/sobjects/PushTopic/", {"Name": "T", "Query": "SELECT Id FROM Account"}
    )
    assert (status, body[0]["errorCode"]) == (400, "DUPLICATE_VALUE")
    assert topic.id in body[0]["message"]
    status, body = await rest.call("PATCH", f"/sobjects/PushTopic/{other.id}", {"Name": "T"})
    assert (status, body[0]["errorCode"]) == (400, "DUPLICATE_VALUE")


async def test_streaming_channel_push(rest: Rest, bayeux: Bayeux, org: Emulator) -> None:
    status, body = await rest.call(
        "POST", "/sobjects/StreamingChannel/", {"Name": "/u/notifications", "Description": "d"}
    )
    assert status == 201
    channel_id = body["id"]
    assert channel_id.startswith("0M6")
    push = f"/sobjects/StreamingChannel/{channel_id}/push"
    assert await rest.call("GET", push) == (
        200,
        {"OnlineUserIds": [], "ChannelName": "/u/notifications"},
    )
    status, body = await rest.call(
        "POST", push, {"pushEvents": [{"payload": "nobody listens", "userIds": []}]}
    )
    assert body == [{"fanoutCount": 0, "userOnlineStatus": {}}]
    await bayeux.start("/u/notifications")
    assert (await rest.call("GET", push))[1]["OnlineUserIds"] == [org.user_id]
    status, body = await rest.call(
        "POST",
        push,
        {
            "pushEvents": [
                {"payload": "hello world!", "userIds": [org.user_id, "005000000000099AAA"]},
                {"payload": "broadcast to everybody (empty user list)!", "userIds": []},
            ]
        },
    )
    assert status == 200
    assert body == [
        {"fanoutCount": 1, "userOnlineStatus": {org.user_id: True, "005000000000099AAA": False}},
        {"fanoutCount": -1, "userOnlineStatus": {}},
    ]
    payloads = [e["data"]["payload"] for e in events_of(await bayeux.connect())]
    assert payloads == ["hello world!", "broadcast to everybody (empty user list)!"]
    status, record = await rest.call("GET", f"/sobjects/StreamingChannel/{channel_id}")
    assert record["Name"] == "/u/notifications"
    assert (await rest.call("PATCH", f"/sobjects/StreamingChannel/{channel_id}", {}))[0] == 405
    assert (await rest.call("PUT", push))[0] == 405
    assert (await rest.call("DELETE", f"/sobjects/StreamingChannel/{channel_id}"))[0] == 204
    assert await rest.call("GET", push) == (404, NOT_FOUND)
    assert await rest.call("GET", f"/sobjects/StreamingChannel/{channel_id}") == (404, NOT_FOUND)
    assert await rest.call("DELETE", f"/sobjects/StreamingChannel/{channel_id}") == (404, NOT_FOUND)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "INVALID_FIELD"),
        ({"pushEvents": []}, "INVALID_FIELD"),
        ({"pushEvents": [{"payload": 1}]}, "INVALID_FIELD"),
        ({"pushEvents": ["x"]}, "INVALID_FIELD"),
        ({"pushEvents": [{"payload": "x" * 3001}]}, "STRING_TOO_LONG"),
        ({"pushEvents": [{"payload": "x", "userIds": "005"}]}, "INVALID_FIELD"),
    ],
)
async def test_push_errors(rest: Rest, org: Emulator, body: dict[str, Any], code: str) -> None:
    channel = org.create_streaming_channel("/u/x")
    status, answer = await rest.call("POST", f"/sobjects/StreamingChannel/{channel.id}/push", body)
    assert (status, answer[0]["errorCode"]) == (400, code)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"Name": "no-slash-u"}, "FIELD_INTEGRITY_EXCEPTION"),
        ({"Name": "/u/"}, "FIELD_INTEGRITY_EXCEPTION"),
        ({}, "REQUIRED_FIELD_MISSING"),
        ({"Name": "/u/x", "Other": 1}, "INVALID_FIELD"),
    ],
)
async def test_streaming_channel_errors(rest: Rest, fields: dict[str, Any], code: str) -> None:
    status, body = await rest.call("POST", "/sobjects/StreamingChannel/", fields)
    assert (status, body[0]["errorCode"]) == (400, code)


async def test_streaming_channel_names_are_unique(rest: Rest, org: Emulator) -> None:
    org.create_streaming_channel("/u/x")
    status, body = await rest.call("POST", "/sobjects/StreamingChannel/", {"Name": "/u/x"})
    assert (status, body[0]["errorCode"]) == (400, "DUPLICATE_VALUE")


async def test_records(rest: Rest, org: Emulator, bayeux: Bayeux) -> None:
    await bayeux.start("/data/AccountChangeEvent")
    status, body = await rest.call(
        "POST", "/sobjects/Account/", {"Name": "Acme", "Industry": "Tech"}
    )
    assert status == 201
    record_id = body["id"]
    assert record_id.startswith("001")
    assert len(record_id) == 18
    status, record = await rest.call("GET", f"/sobjects/Account/{record_id}")
    assert status == 200
    assert record["attributes"]["type"] == "Account"
    assert record["Name"] == "Acme"
    assert record["Id"] == record_id
    assert (await rest.call("PATCH", f"/sobjects/Account/{record_id}", {"name": "Acme 2"}))[
        0
    ] == 204
    status, record = await rest.call("GET", f"/sobjects/Account/{record_id}")
    assert record["Name"] == "Acme 2"  # field names are case-insensitive
    assert (await rest.call("DELETE", f"/sobjects/Account/{record_id}"))[0] == 204
    assert await rest.call("GET", f"/sobjects/Account/{record_id}") == (404, NOT_FOUND)
    assert await rest.call("GET", f"/sobjects/Contact/{record_id}") == (404, NOT_FOUND)
    assert await rest.call("DELETE", f"/sobjects/Account/{record_id}") == (404, NOT_FOUND)
    kinds = [
        e["data"]["payload"]["ChangeEventHeader"]["changeType"]
        for e in events_of(await bayeux.connect())
    ]
    assert kinds == ["CREATE", "UPDATE", "DELETE"]
    for method in ("GET", "PATCH", "DELETE"):
        status, _ = await rest.call(method, "/sobjects/Order__e/e00000000000001AAA", {})
        assert status == 404


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"Id": "001000000000001AAA"}, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        ({"CreatedDate": "2020-01-01"}, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        ({"Bad Name": 1}, "INVALID_FIELD"),
        ({"Nested": {"a": 1}}, "JSON_PARSER_ERROR"),
    ],
)
async def test_record_errors(rest: Rest, fields: dict[str, Any], code: str) -> None:
    status, body = await rest.call("POST", "/sobjects/Account/", fields)
    assert (status, body[0]["errorCode"]) == (400, code)


async def test_query(rest: Rest, org: Emulator) -> None:
    channel = org.create_streaming_channel("/u/TestStreaming")
    org.create_push_topic("T", "SELECT Id FROM Account")
    org.create_record("Account", {"Name": "a", "Amount__c": 5})
    org.create_record("Account", {"Name": "b", "Amount__c": 50})
    status, body = await rest.call(
        "GET",
        "/query",
        params={"q": "SELECT Id, Name FROM StreamingChannel WHERE Name = '/u/TestStreaming'"},
    )
    assert status == 200
    assert body == {
        "totalSize": 1,
        "done": True,
        "records": [
            {
                "attributes": {
                    "type": "StreamingChannel",
                    "url": f"/services/data/v62.0/sobjects/StreamingChannel/{channel.id}",
                },
                "Id": channel.id,
                "Name": "/u/TestStreaming",
            }
        ],
    }
    _, body = await rest.call("GET", "/query", params={"q": "SELECT Name FROM PushTopic"})
    assert body["records"] == [{"attributes": {"type": "PushTopic"}, "Name": "T"}]
    _, body = await rest.call(
        "GET", "/query", params={"q": "select name from Account where Amount__c > 10 limit 5"}
    )
    assert [r["name"] for r in body["records"]] == ["b"]
    _, body = await rest.call("GET", "/query", params={"q": "SELECT Id FROM Account LIMIT 1"})
    assert body["totalSize"] == 1
    status, body = await rest.call("GET", "/query", params={"q": "SELECT FROM"})
    assert (status, body[0]["errorCode"]) == (400, "MALFORMED_QUERY")
    status, body = await rest.call("GET", "/query", params={"q": "SELECT Id FROM Widget"})
    assert (status, body[0]["errorCode"]) == (400, "INVALID_TYPE")
    status, body = await rest.call("GET", "/query")
    assert (status, body[0]["errorCode"]) == (400, "MALFORMED_QUERY")
    assert (await rest.call("POST", "/query", {}))[0] == 405
