"""Real Salesforce replies, recorded by third parties, against the client and the emulator.

``wire_evidence.json`` holds the captures of ``shared/reference/wire-evidence.md`` (E1-E20,
each with its source). Two things are checked with them:

- the client: a :class:`~sfstream.bayeux.MockTransport` answers with the recorded replies (only
  ``id`` and ``clientId`` swapped for the request's) and the client works through a session,
  its losses (``403::Unknown client`` with either advice), a denied handshake and refused
  subscriptions, as it must against a real org;
- the emulator: its replies in the same situations have the recorded shape, the order of
  their fields included, and Salesforce's exact strings.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sfstream.bayeux import BayeuxClient, ConstantBackoff, Message, MockTransport, Request, decode
from sfstream.emulator import Emulator, ManualClock
from sfstream.exceptions import ServerError

from .conftest import Bayeux, events_of, password_token

EVIDENCE: list[dict[str, Any]] = json.loads(
    (Path(__file__).with_name("wire_evidence.json")).read_text(encoding="utf-8")
)["replies"]
RECORDED: dict[str, dict[str, Any]] = {entry["name"]: entry for entry in EVIDENCE}


def recorded(name: str) -> dict[str, Any]:
    """A recorded reply (a copy)."""
    reply: dict[str, Any] = copy.deepcopy(RECORDED[name]["reply"])
    return reply


def keys(value: Any) -> Any:
    """The shape of a JSON value: nested key lists in wire order (values left out)."""
    if isinstance(value, dict):
        return [(key, keys(item)) for key, item in value.items()]
    return None


def same_shape(ours: dict[str, Any], theirs: dict[str, Any], *, nested: bool = True) -> None:
    """Same fields in the same order; ``advice`` compared as a set (captures disagree)."""
    assert list(ours) == list(theirs), (list(ours), list(theirs))
    for key in ours:
        if key == "advice":
            assert set(ours[key]) == set(theirs[key]), (ours[key], theirs[key])
        elif nested:
            assert keys(ours[key]) == keys(theirs[key]), (key, ours[key], theirs[key])


# -- the client against recorded replies ------------------------------------------------------


@pytest.mark.parametrize("entry", [e for e in EVIDENCE if "reply" in e], ids=lambda e: e["name"])
def test_the_codec_accepts_every_recorded_reply(entry: dict[str, Any]) -> None:
    body = json.dumps([entry["reply"]]).encode()
    [message] = decode(body)
    assert list(message) == list(entry["reply"])


def answer(name: str, message: Message, client_id: str | None = None) -> Message:
    """The recorded reply ``name`` as the answer to ``message``."""
    reply = recorded(name)
    if "id" in reply:
        reply["id"] = message["id"]
    if "clientId" in reply:
        reply["clientId"] = client_id or message["clientId"]
    if "subscription" in reply and "subscription" in message:
        reply["subscription"] = message["subscription"]
    return reply  # type: ignore[return-value]


class RecordedOrg:
    """Answers with recorded replies: ``connects`` scripts the connect replies in turn."""

    def __init__(self, connects: list[list[str]], *, handshakes: list[str] | None = None) -> None:
        self.connects = connects
        self.handshake_script = handshakes or []
        self.handshakes = 0
        self.subscribe_replies: dict[str, str] = {}
        self.replay = 0

    async def __call__(self, request: Request) -> list[Message]:
        replies: list[Message] = []
        for message in request.messages:
            channel = message["channel"]
            if channel == "/meta/handshake":
                name = self.handshake_script.pop(0) if self.handshake_script else "handshake"
                if name == "handshake":
                    self.handshakes += 1
                replies.append(answer(name, message, client_id=f"client{self.handshakes}"))
            elif channel == "/meta/subscribe":
                name = self.subscribe_replies.get(str(message["subscription"]), "subscribe")
                replies.append(answer(name, message))
            elif channel == "/meta/connect":
                replies += await self.connect(message)
            elif channel == "/meta/disconnect":  # on close (no capture: the plain reply)
                replies.append({"channel": channel, "id": message["id"], "successful": True})
            else:
                raise AssertionError(f"unexpected {channel}")
        return replies

    async def connect(self, message: Message) -> list[Message]:
        if not self.connects:
            await asyncio.sleep(0.05)
            return [answer("later-connect", message)]
        out: list[Message] = []
        for name in self.connects.pop(0):
            if name == "push-topic-event":
                self.replay += 1
                data = copy.deepcopy(RECORDED[name]["data"])
                data["event"]["replayId"] = self.replay
                out.append({"channel": "/topic/Accounts", "data": data})
            else:
                out.append(answer(name, message))
        return out


def client_for(org: RecordedOrg, **options: Any) -> BayeuxClient:
    options.setdefault("backoff", ConstantBackoff(0.01))
    options.setdefault("connection_timeout", 5.0)
    return BayeuxClient(
        "https://example.my.salesforce.com/cometd/62.0", transport=MockTransport(org), **options
    )


async def test_a_session_of_recorded_replies_with_both_unknown_client_advices() -> None:
    org = RecordedOrg(
        [
            ["first-connect"],
            ["push-topic-event", "later-connect"],
            ["unknown-client"],  # E1: advice handshake, no clientId
            ["first-connect"],
            ["push-topic-event", "later-connect"],
            ["unknown-client-none"],  # E16: advice none, clientId kept: still a new handshake
            ["first-connect"],
            ["push-topic-event", "later-connect"],
        ]
    )
    async with client_for(org) as client:
        await client.subscribe("/topic/Accounts")
        got: list[Message] = []
        async with asyncio.timeout(10):
            while len(got) < 3:
                got.append(await client.receive())
    assert [m["data"]["event"]["replayId"] for m in got] == [1, 2, 3]
    assert got[0]["data"]["sobject"] == {"Id": "0012x0000048j9mAAA", "Name": "Manager"}
    assert org.handshakes == 3


async def test_a_recorded_handshake_denial_re_authenticates() -> None:
    org = RecordedOrg([["first-connect"]], handshakes=["handshake-denied"])
    calls: list[int] = []

    async def reauthenticate() -> None:
        calls.append(1)

    async with client_for(org, reauthenticate=reauthenticate) as client:
        await client.subscribe("/topic/Accounts")
    assert calls == [1]
    assert org.handshakes == 1


@pytest.mark.parametrize("name", ["daily-limit-subscribe", "invalid-replay-id"])
async def test_a_recorded_subscribe_refusal_reaches_the_caller(name: str) -> None:
    org = RecordedOrg([["first-connect"]])
    org.subscribe_replies["/topic/Accounts"] = name
    async with client_for(org) as client:
        with pytest.raises(ServerError) as caught:
            await client.subscribe("/topic/Accounts")
    assert caught.value.error == RECORDED[name]["reply"]["error"]


# -- the emulator holds to the recorded shapes ------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    # A fractional start: dates that should be whole seconds must drop the .517
    return ManualClock(1_700_000_000.517)


@pytest.fixture
async def org(clock: ManualClock) -> AsyncIterator[Emulator]:
    async with Emulator(
        events={"Order__e": ["Order_Number__c", "Has_Shipped__c"]},
        push_topics={"Accounts": "SELECT Id, Name FROM Account"},
        hold_time=0.3,
        session_expiry=5.0,
        clock=clock,
    ) as emulator:
        yield emulator


async def test_handshake_and_connects(bayeux: Bayeux) -> None:
    same_shape(await bayeux.handshake(), recorded("handshake"))
    [first] = await bayeux.connect()
    same_shape(first, recorded("first-connect"))
    assert first["advice"] == {"interval": 0, "timeout": 300, "reconnect": "retry"}
    [later] = await bayeux.connect()
    same_shape(later, recorded("later-connect"))


async def test_subscribe(bayeux: Bayeux) -> None:
    await bayeux.handshake()
    same_shape(await bayeux.subscribe("/topic/Accounts"), recorded("subscribe"))


async def test_unknown_client_carries_the_load_balancer_cookie(
    bayeux: Bayeux, org: Emulator
) -> None:
    await bayeux.handshake()
    org.expire_sessions()
    async with bayeux.http.post(
        bayeux.url,
        json=[bayeux.message("/meta/connect", connectionType="long-polling")],
        headers=bayeux.headers,
    ) as response:
        [reply] = await response.json()
        cookie = response.cookies.get("sfdc-stream")
    same_shape(reply, recorded("unknown-client"))
    assert reply["advice"] == {"interval": 0, "reconnect": "handshake"}
    assert cookie is not None
    assert (cookie["path"], cookie["samesite"], bool(cookie["secure"])) == ("/", "None", True)
    assert cookie["expires"]


async def test_unknown_client_with_reconnect_none_keeps_the_client_id(
    bayeux: Bayeux, org: Emulator
) -> None:
    await bayeux.handshake()
    org.unknown_client(reconnect="none")
    [reply] = await bayeux.connect()
    same_shape(reply, recorded("unknown-client-none"))
    assert reply["clientId"] == bayeux.client_id
    assert reply["advice"] == {"interval": 0, "reconnect": "none"}


async def test_authentication_invalid_on_connect(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.handshake()
    org.revoke_tokens()
    [reply] = await bayeux.connect()
    same_shape(reply, recorded("authentication-invalid"))
    assert reply["error"] == "401::Authentication invalid"


async def test_handshake_denied(bayeux: Bayeux, org: Emulator) -> None:
    org.revoke_tokens()
    reply = await bayeux.handshake()
    same_shape(reply, recorded("handshake-denied"))
    assert reply["ext"] == recorded("handshake-denied")["ext"]


async def test_concurrent_user_limit(bayeux: Bayeux, org: Emulator) -> None:
    org.concurrent_user_limit()
    reply = await bayeux.handshake()
    same_shape(reply, recorded("concurrent-user-limit"))
    assert reply["ext"] == recorded("concurrent-user-limit")["ext"]


async def test_server_busy_and_connection_limit_write_two_spaces(
    bayeux: Bayeux, org: Emulator
) -> None:
    await bayeux.handshake()
    org.server_busy()
    [busy] = await bayeux.connect()
    assert busy["ext"]["sfdc"]["failureReason"] == RECORDED["server-busy-reason"]["failureReason"]
    assert list(busy)[:3] == ["ext", "clientId", "advice"]  # the HashMap order, as in E1
    org.connection_limit()
    denied = await bayeux.handshake()
    reason = denied["ext"]["sfdc"]["failureReason"]
    assert reason.startswith("403::To protect all customers")
    assert reason.count(".  ") == 2
    assert ". " not in reason.replace(".  ", "")
    same_shape(denied, recorded("handshake-denied"), nested=False)


async def test_daily_limit_on_subscribe_has_no_advice(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.handshake()
    org.daily_limit_exceeded(channel="/meta/subscribe")
    reply = await bayeux.subscribe("/event/Order__e")
    same_shape(reply, recorded("daily-limit-subscribe"))
    assert "advice" not in reply


async def test_invalid_replay_id(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.handshake()
    reply = await bayeux.subscribe("/data/ChangeEvents", 1553783)
    theirs = recorded("invalid-replay-id")
    same_shape(reply, theirs)
    assert reply["error"] == theirs["error"]


async def test_replay_map_without_the_channel(bayeux: Bayeux) -> None:
    await bayeux.handshake()
    reply = await bayeux.subscribe("/topic/Accounts", ext={"replay": {}})
    theirs = recorded("replay-map-without-channel")
    same_shape(reply, theirs)
    assert reply["error"] == theirs["error"].replace("topicName", "Accounts")


async def deliveries(bayeux: Bayeux, count: int) -> dict[str, dict[str, Any]]:
    """The data of the next ``count`` deliveries, by channel."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while len(got) < count:
            got += events_of(await bayeux.connect())
    return {m["channel"]: m["data"] for m in got}


async def test_push_topic_event_fields_in_salesforce_order(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start("/topic/Accounts")
    org.create_record("Account", {"Name": "Manager"})
    push_topic = (await deliveries(bayeux, 1))["/topic/Accounts"]
    same_shape(push_topic, RECORDED["push-topic-event"]["data"])
    assert list(push_topic["event"]) == ["createdDate", "replayId", "type"]
    assert push_topic["event"]["createdDate"] == "2023-11-14T22:13:20.517Z"  # milliseconds kept


async def test_platform_event_shape(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start("/event/Order__e")
    await org.publish("/event/Order__e", {"Order_Number__c": "17", "Has_Shipped__c": False})
    platform = (await deliveries(bayeux, 1))["/event/Order__e"]
    same_shape(platform, RECORDED["platform-event"]["data"])
    assert platform["payload"]["CreatedDate"] == "2023-11-14T22:13:20.517Z"


async def test_change_events_have_whole_second_commit_timestamps(
    bayeux: Bayeux, org: Emulator
) -> None:
    await bayeux.start("/data/AccountChangeEvent")
    org.create_record("Account", {"Name": "Manager"})
    header = (await deliveries(bayeux, 1))["/data/AccountChangeEvent"]["payload"][
        "ChangeEventHeader"
    ]
    assert RECORDED["change-event-header"]["commitTimestamp"] % 1000 == 0
    assert header["commitTimestamp"] == 1_700_000_000_000


async def test_record_dates_are_whole_seconds(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start("/data/AccountChangeEvent")
    record_id = org.create_record("Account", {"Name": "Manager"})
    change = (await deliveries(bayeux, 1))["/data/AccountChangeEvent"]["payload"]
    evidence = RECORDED["change-event-header"]["date"]
    assert change["CreatedDate"] == "2023-11-14T22:13:20.000Z"
    assert len(change["CreatedDate"]) == len(evidence)
    fields = org.state.records[record_id].fields
    assert fields["LastModifiedDate"] == fields["SystemModstamp"] == "2023-11-14T22:13:20.000Z"


async def test_client_credentials_token(http: aiohttp.ClientSession, org: Emulator) -> None:
    async with http.post(
        org.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": org.consumer_key,
            "client_secret": org.consumer_secret,
        },
    ) as response:
        body = await response.json()
    assert list(body) == list(RECORDED["client-credentials-token"]["token"])
    assert body["api_instance_url"] == org.base_url


async def test_an_undeclared_platform_event_field(
    http: aiohttp.ClientSession, org: Emulator
) -> None:
    token = await password_token(http, org)
    async with http.post(
        f"{org.base_url}/services/data/v62.0/sobjects/Order__e/",
        json={"Order_Number__c": "1", "FavoritePet__c": "Dog"},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        status, body = response.status, await response.json()
    evidence = RECORDED["invalid-field"]
    assert status == evidence["status"]
    assert body == [
        {
            "message": "No such column 'FavoritePet__c' on sobject of type Order__e",
            "errorCode": "INVALID_FIELD",
        }
    ]
    assert [list(entry) for entry in body] == [list(entry) for entry in evidence["body"]]
