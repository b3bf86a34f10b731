"""The org's channels, for "did you mean": what the REST API lists, and nothing on failure."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from pytest_aiohttp import AiohttpServer

from sfstream.cli._channels import known_channels, suggest_channel
from sfstream.emulator import Emulator
from sfstream.salesforce import AccessTokenAuthenticator, PasswordAuthenticator


async def test_known_channels_of_an_org() -> None:
    async with Emulator(
        events={"Order__e": ["Amount__c", "N__c"], "Shipment__e": ["Amount__c", "N__c"]},
        push_topics={"Accounts": "SELECT Id, Name FROM Account"},
        streaming_channels=["/u/Notes"],
    ) as org:
        auth = PasswordAuthenticator(
            org.consumer_key,
            org.consumer_secret,
            org.username,
            org.password,
            login_url=org.login_url,
        )
        await auth.authenticate()
        channels = await known_channels(auth, "62.0")
    assert {"/event/Order__e", "/event/Shipment__e", "/topic/Accounts", "/u/Notes"} <= set(channels)
    assert "/data/ChangeEvents" in channels


async def test_known_channels_from_replies_of_every_shape(aiohttp_server: AiohttpServer) -> None:
    replies: dict[str, Any] = {
        "sobjects": {
            "sobjects": [
                {"name": "Order__e"},
                {"name": "AccountChangeEvent"},
                {"name": 42},
                "junk",
                {"name": "Account"},
            ]
        },
        "query": {"records": [{"Name": "Accounts"}, {"Name": None}]},
    }

    async def handle(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind == "query" and "StreamingChannel" in request.query["q"]:
            return web.json_response({"error": "no access"}, status=403)
        return web.json_response(replies[kind])

    app = web.Application()
    app.router.add_get("/services/data/v62.0/{kind}", handle)
    server = await aiohttp_server(app)
    auth = AccessTokenAuthenticator("token-1234", str(server.make_url("")).rstrip("/"))
    channels = await known_channels(auth, "62.0")
    assert channels == [
        "/data/ChangeEvents",
        "/event/Order__e",
        "/data/AccountChangeEvent",
        "/topic/Accounts",
    ]
    replies["sobjects"] = ["not", "a", "describe"]  # an odd reply: no channels from it
    assert await known_channels(auth, "62.0") == ["/data/ChangeEvents", "/topic/Accounts"]


async def test_no_channels_when_the_org_cannot_be_asked(aiohttp_server: AiohttpServer) -> None:
    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="<html>not json</html>")

    app = web.Application()
    app.router.add_get("/services/data/v62.0/{kind}", garbage)
    server = await aiohttp_server(app)
    auth = AccessTokenAuthenticator("token-1234", str(server.make_url("")).rstrip("/"))
    assert await known_channels(auth, "62.0") == ["/data/ChangeEvents"]
    unreachable = AccessTokenAuthenticator("token-1234", "http://127.0.0.1:9")
    assert await known_channels(unreachable, "62.0") == ["/data/ChangeEvents"]
    not_logged_in = PasswordAuthenticator("k", "s", "u", "p")
    assert await known_channels(not_logged_in, "62.0") == []


async def test_known_channels_from_a_large_describe_global(aiohttp_server: AiohttpServer) -> None:
    """A real org's describe global runs to megabytes (about 1 KB per sobject): it is read
    whole, however the server cuts it into chunks."""
    padding = {f"attribute{n}": "x" * 40 for n in range(20)}
    sobjects = [{"name": f"Object{n}__c", **padding} for n in range(1500)]
    sobjects.append({"name": "Order__e", **padding})

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.match_info["kind"] == "query":
            return web.json_response({"records": []})
        body = json.dumps({"sobjects": sobjects}).encode()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        for start in range(0, len(body), 16 * 1024):
            await response.write(body[start : start + 16 * 1024])
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/services/data/v62.0/{kind}", handle)
    server = await aiohttp_server(app)
    auth = AccessTokenAuthenticator("token-1234", str(server.make_url("")).rstrip("/"))
    assert "/event/Order__e" in await known_channels(auth, "62.0")


def test_suggest_channel() -> None:
    known = ["/event/Order__e", "/topic/Accounts", "/u/Notes", "/data/AccountChangeEvent"]
    assert suggest_channel("/event/Ordr__e", known) == "/event/Order__e"
    assert suggest_channel("/event/order__e", known) == "/event/Order__e"
    assert suggest_channel("/data/AcountChangeEvent", known) == "/data/AccountChangeEvent"
    assert suggest_channel("/event/Nope__e", known) is None
    assert suggest_channel("/event/Order__e", known) is None  # itself is no suggestion
    assert suggest_channel("/u/x", []) is None
