"""``/meta/subscribe``: channels, the unknown-channel 400, replay ids and retention, filters."""

from __future__ import annotations

import aiohttp
import pytest

from sfstream.emulator import Emulator, ManualClock

from .conftest import Bayeux, events_of, password_token

HOUR = 3600.0


def invalid_replay(replay: object) -> str:
    return (
        f"400::The replayId {{{replay}}} you provided was invalid.  Please provide a valid ID, "
        "-2 to replay all events, or -1 to replay only new events."
    )


def does_not_exist(channel: str) -> str:
    return f"400::The channel you requested to subscribe to does not exist {{{channel}}}"


async def test_subscribe_reply(bayeux: Bayeux) -> None:
    await bayeux.handshake()
    reply = await bayeux.subscribe("/event/Order__e")
    assert reply == {
        "clientId": bayeux.client_id,
        "channel": "/meta/subscribe",
        "id": "2",
        "successful": True,
        "subscription": "/event/Order__e",
    }


@pytest.mark.parametrize(
    "channel",
    [
        "/topic/Nope",
        "/topic/Nope?Name=x",
        "/u/nope",
        "/event/Nope__e",
        "/event/Nope__chn",
        "/data/Nope__chn",
        "/data/WidgetChangeEvent",
        "/data/Employee__ChangeEvent",
        "/data/ChangeEvent",
        "/data/ChangeEvents?x=1",
        "/event/Order__e?x=1",
        "/foo/bar",
        "/event/*",
        "/meta/connect",
        "/",
    ],
)
async def test_unknown_channels(bayeux: Bayeux, channel: str) -> None:
    await bayeux.handshake()
    reply = await bayeux.subscribe(channel)
    assert reply == {
        "clientId": bayeux.client_id,
        "channel": "/meta/subscribe",
        "id": "2",
        "error": does_not_exist(channel),
        "successful": False,
        "subscription": channel,
    }


@pytest.mark.parametrize(
    "channel",
    ["/data/ChangeEvents", "/data/AccountChangeEvent", "/data/CaseChangeEvent", "/event/Order__e"],
)
async def test_default_channels(bayeux: Bayeux, channel: str) -> None:
    await bayeux.handshake()
    assert (await bayeux.subscribe(channel))["successful"]


async def test_defined_channels(bayeux: Bayeux, org: Emulator) -> None:
    org.create_push_topic("Invoices", "SELECT Id, Name FROM Invoice__c")
    org.create_streaming_channel("/u/notifications")
    org.define_channel("/event/Orders__chn", ["Order__e"])
    org.define_channel("/data/Sales__chn", ["OpportunityChangeEvent", "Employee__c"])
    await bayeux.handshake()
    for channel in (
        "/topic/Invoices",
        "/u/notifications",
        "/event/Orders__chn",
        "/data/Sales__chn",
        "/data/Employee__ChangeEvent",  # members of a custom channel are enabled
    ):
        assert (await bayeux.subscribe(channel))["successful"], channel


async def test_malformed_subscriptions(bayeux: Bayeux) -> None:
    await bayeux.handshake()
    [reply] = await bayeux.send(bayeux.message("/meta/subscribe"))
    assert reply["error"] == "400::Channel name not specified"
    assert "subscription" not in reply
    reply = await bayeux.subscribe("")
    assert reply["error"] == "400::Channel name not specified"
    reply = await bayeux.subscribe("event/Order__e")
    assert reply["error"] == "400::Channel subscriptions must start with a leading '/'"


async def test_subscribe_to_a_list(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.handshake()
    [reply] = await bayeux.send(
        bayeux.message("/meta/subscribe", subscription=["/event/Order__e", "/data/ChangeEvents"])
    )
    assert reply["successful"]
    assert reply["subscription"] == ["/event/Order__e", "/data/ChangeEvents"]
    await bayeux.connect()
    await org.publish("/event/Order__e", {"N__c": 1})
    org.create_record("Account", {"Name": "Acme"})
    channels = {m["channel"] for m in events_of(await bayeux.connect())}
    assert channels == {"/event/Order__e", "/data/ChangeEvents"}


async def test_replay_minus_one_gets_new_events_only(bayeux: Bayeux, org: Emulator) -> None:
    await org.publish("/event/Order__e", {"N__c": 1})
    await bayeux.start("/event/Order__e", replay=-1)
    await org.publish("/event/Order__e", {"N__c": 2})
    events = events_of(await bayeux.connect())
    assert [e["data"]["payload"]["N__c"] for e in events] == [2]


async def test_no_replay_extension_means_minus_one(bayeux: Bayeux, org: Emulator) -> None:
    await org.publish("/event/Order__e", {"N__c": 1})
    replies = await bayeux.start("/event/Order__e")
    assert events_of(replies) == []


async def test_replay_minus_two_gets_everything_retained(bayeux: Bayeux, org: Emulator) -> None:
    for n in range(3):
        await org.publish("/event/Order__e", {"N__c": n})
    events = events_of(await bayeux.start("/event/Order__e", replay=-2))
    assert [e["data"]["event"]["replayId"] for e in events] == [1, 2, 3]


async def test_replay_from_an_id(bayeux: Bayeux, org: Emulator) -> None:
    for n in range(5):
        await org.publish("/event/Order__e", {"N__c": n})
    events = events_of(await bayeux.start("/event/Order__e", replay=3))
    assert [e["data"]["event"]["replayId"] for e in events] == [4, 5]


async def test_replay_id_of_the_newest_event(bayeux: Bayeux, org: Emulator) -> None:
    await org.publish("/event/Order__e", {"N__c": 1})
    assert events_of(await bayeux.start("/event/Order__e", replay=1)) == []


@pytest.mark.parametrize("replay", [0, 2, 99, -3, "abc", 1.5, True])
async def test_invalid_replay_ids(bayeux: Bayeux, org: Emulator, replay: object) -> None:
    await org.publish("/event/Order__e", {"N__c": 1})
    await bayeux.handshake()
    reply = await bayeux.subscribe("/event/Order__e", replay)
    assert reply["successful"] is False
    assert reply["error"] == invalid_replay(replay)
    assert reply["subscription"] == "/event/Order__e"


async def test_replay_id_as_a_string(bayeux: Bayeux, org: Emulator) -> None:
    await org.publish("/event/Order__e", {"N__c": 1})
    events = events_of(await bayeux.start("/event/Order__e", replay="-2"))
    assert len(events) == 1


async def test_replay_map_without_the_channel(bayeux: Bayeux) -> None:
    await bayeux.handshake()
    [reply] = await bayeux.send(
        bayeux.message(
            "/meta/subscribe",
            subscription="/event/Order__e",
            ext={"replay": {"/event/Other__e": 5, "/topic/X": -1}},
        )
    )
    assert reply["error"] == (
        "400::The replayId for channel {/event/Order__e} wasn't found using the provided replay "
        "ID map {{/event/Other__e=5, /topic/X=-1}}. Ensure that the channel name you provided in "
        "the replay map is valid and matches the channel name used for subscribing."
    )
    [reply] = await bayeux.send(
        bayeux.message("/meta/subscribe", subscription="/event/Order__e", ext={"replay": {}})
    )
    assert "provided replay ID map {{}}." in reply["error"]


async def test_replay_map_with_several_channels(bayeux: Bayeux, org: Emulator) -> None:
    # EMP-Connector sends its whole map on every subscribe.
    await org.publish("/event/Order__e", {"N__c": 1})
    await bayeux.handshake()
    [reply] = await bayeux.send(
        bayeux.message(
            "/meta/subscribe",
            subscription="/event/Order__e",
            ext={"replay": {"/event/Other__e": 5, "/event/Order__e": -2}},
        )
    )
    assert reply["successful"]
    assert len(events_of(await bayeux.connect())) == 1


async def test_retention_on_the_org_clock(bayeux: Bayeux, org: Emulator) -> None:
    org.create_push_topic("Accounts", "SELECT Id, Name FROM Account")
    org.create_record("Account", {"Name": "old"})
    await org.publish("/event/Order__e", {"N__c": 1})
    org.advance_clock(25 * HOUR)
    org.create_record("Account", {"Name": "new"})
    await org.publish("/event/Order__e", {"N__c": 2})
    await bayeux.handshake()
    # PushTopic events are kept 24 hours: replay id 1 is gone
    assert (await bayeux.subscribe("/topic/Accounts", 1))["error"] == invalid_replay(1)
    assert (await bayeux.subscribe("/topic/Accounts", 2))["successful"]
    # platform events are kept 72 hours: replay id 1 is still valid
    assert (await bayeux.subscribe("/event/Order__e", 1))["successful"]
    org.advance_clock(48 * HOUR)
    assert (await bayeux.subscribe("/event/Order__e", 1))["error"] == invalid_replay(1)
    assert (await bayeux.subscribe("/event/Order__e", 2))["successful"]
    # -2 gives what is left
    await bayeux.subscribe("/event/Order__e", -2)
    await bayeux.subscribe("/topic/Accounts", -2)
    events = events_of(await bayeux.connect())
    names = [e["data"].get("sobject", {}).get("Name") for e in events if "sobject" in e["data"]]
    orders = [e["data"]["payload"]["N__c"] for e in events if e["channel"] == "/event/Order__e"]
    assert names == []  # 48 hours old: gone as well
    assert orders == [2]


async def test_retention_can_be_configured(http: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"]},
        retention=10,
        high_volume_retention=20,
        clock=clock,
    ) as org:
        await org.publish("/event/Order__e", {"N__c": 1})
        await org.publish("/u/news", "hello")
        assert org.advance_clock(15) == 1
        assert org.events("/u/news") == []
        assert len(org.events("/event/Order__e")) == 1
        assert org.advance_clock(10) == 1
        client = Bayeux(http, org, await password_token(http, org))
        await client.handshake()
        assert (await client.subscribe("/event/Order__e", 1))["error"] == invalid_replay(1)


async def test_replay_ids_are_per_channel(bayeux: Bayeux, org: Emulator) -> None:
    org.define_event("Other__e")
    first = [await org.publish("/event/Order__e", {}) for _ in range(3)]
    second = [await org.publish("/event/Other__e", {}) for _ in range(2)]
    assert [p.replay_id for p in first] == [1, 2, 3]
    assert [p.replay_id for p in second] == [1, 2]


async def test_resubscribing_moves_the_cursor(bayeux: Bayeux, org: Emulator) -> None:
    for n in range(3):
        await org.publish("/event/Order__e", {"N__c": n})
    await bayeux.start("/event/Order__e", replay=-1)
    await bayeux.subscribe("/event/Order__e", 1)
    events = events_of(await bayeux.connect())
    assert [e["data"]["event"]["replayId"] for e in events] == [2, 3]


async def test_unsubscribe(bayeux: Bayeux, org: Emulator) -> None:
    await bayeux.start("/event/Order__e", "/data/ChangeEvents")
    [reply] = await bayeux.send(bayeux.message("/meta/unsubscribe", subscription="/event/Order__e"))
    assert reply == {
        "clientId": bayeux.client_id,
        "channel": "/meta/unsubscribe",
        "id": reply["id"],
        "successful": True,
        "subscription": "/event/Order__e",
    }
    await org.publish("/event/Order__e", {"N__c": 1})
    org.create_record("Account", {"Name": "x"})
    channels = [m["channel"] for m in events_of(await bayeux.connect())]
    assert channels == ["/data/ChangeEvents"]
    [reply] = await bayeux.send(bayeux.message("/meta/unsubscribe", subscription=["/nope"]))
    assert reply["successful"]
    [reply] = await bayeux.send(bayeux.message("/meta/unsubscribe"))
    assert reply["error"] == "400::Channel name not specified"


async def test_push_topic_filters(bayeux: Bayeux, org: Emulator) -> None:
    org.create_push_topic("Invoices", "SELECT Id, Name, Status__c, Paid__c FROM Invoice__c")
    channel = "/topic/Invoices?Status__c=Open&Paid__c=false"
    await bayeux.start(channel)
    org.create_record("Invoice__c", {"Name": "a", "Status__c": "Open", "Paid__c": False})
    org.create_record("Invoice__c", {"Name": "b", "Status__c": "Closed", "Paid__c": False})
    org.create_record("Invoice__c", {"Name": "c", "Status__c": "Open", "Paid__c": True})
    events = events_of(await bayeux.connect())
    assert [e["channel"] for e in events] == [channel]
    assert [e["data"]["sobject"]["Name"] for e in events] == ["a"]


async def test_filters_with_encoded_values_and_replay_key_without_filter(
    bayeux: Bayeux, org: Emulator
) -> None:
    org.create_push_topic("Accounts", "SELECT Id, Name, Type FROM Account")
    org.create_record("Account", {"Name": "a", "Type": "Technology Partner"})
    org.create_record("Account", {"Name": "b", "Type": None})
    await bayeux.handshake()
    # EMP-Connector keys its replay map by the channel without the filter
    reply = await bayeux.subscribe("/topic/Accounts?Type=Technology%20Partner", -2)
    assert reply["successful"]
    assert (await bayeux.subscribe("/topic/Accounts?Type=null", -2))["successful"]
    events = events_of(await bayeux.connect())
    assert sorted(e["data"]["sobject"]["Name"] for e in events) == ["a", "b"]


async def test_filters_on_unknown_fields(bayeux: Bayeux, org: Emulator) -> None:
    org.create_push_topic("Invoices", "SELECT Id, Name FROM Invoice__c")
    await bayeux.handshake()
    reply = await bayeux.subscribe("/topic/Invoices?Bogus=1&Name=x&Other")
    assert reply["error"] == "400::Query fields {Bogus, Other} do not exist on the topic entity"


async def test_inactive_push_topics_do_not_exist(bayeux: Bayeux, org: Emulator) -> None:
    topic = org.create_push_topic("Invoices", "SELECT Id FROM Invoice__c")
    topic.is_active = False
    await bayeux.handshake()
    assert (await bayeux.subscribe("/topic/Invoices"))["error"] == does_not_exist("/topic/Invoices")


async def test_generic_events_for_some_users(http: aiohttp.ClientSession, org: Emulator) -> None:
    org.create_streaming_channel("/u/news")
    second_user = org.add_user("second@example.com", "pw")
    alice = Bayeux(http, org, org.issue_access_token())
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other_http:
        bob = Bayeux(other_http, org, org.issue_access_token("second@example.com"))
        await alice.start("/u/news")
        await bob.start("/u/news")
        await org.publish("/u/news", "for bob", user_ids=[second_user])
        await org.publish("/u/news", "for all")
        await org.publish("/u/news", {"structured": True})
        alice_got = [e["data"]["payload"] for e in events_of(await alice.connect())]
        bob_got = [e["data"]["payload"] for e in events_of(await bob.connect())]
    assert alice_got == ["for all", '{"structured":true}']
    assert bob_got == ["for bob", "for all", '{"structured":true}']


@pytest.mark.parametrize(
    ("version", "uuid", "api_name"),
    [
        ("45.0", False, False),
        ("51.0", False, False),
        ("52.0", True, False),
        ("54.0", True, False),
        ("55.0", True, True),
        ("62.0", True, True),
    ],
)
async def test_event_fields_follow_the_api_version(
    http: aiohttp.ClientSession,
    org: Emulator,
    token: str,
    version: str,
    uuid: bool,
    api_name: bool,
) -> None:
    org.define_channel("/event/Orders__chn", ["Order__e"])
    client = Bayeux(http, org, token, version=version)
    await client.start("/event/Order__e", "/event/Orders__chn")
    await org.publish("/event/Order__e", {"N__c": 1})
    await org.publish("/event/Order__e", {"N__c": 2})
    events = events_of(await client.connect())
    direct = [e["data"]["event"] for e in events if e["channel"] == "/event/Order__e"]
    grouped = [e["data"]["event"] for e in events if e["channel"] == "/event/Orders__chn"]
    assert len(direct) == len(grouped) == 2
    for event in direct:
        assert ("EventUuid" in event) is uuid
        assert "EventApiName" not in event
    for event in grouped:
        assert ("EventUuid" in event) is uuid
        assert (event.get("EventApiName") == "Order__e") is api_name
