"""``sfstream publish``: platform events (the EventUuid) and generic pushes over REST."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sfstream import AccessTokenAuthenticator, PasswordAuthenticator
from sfstream.cli import _publish
from sfstream.cli._errors import CliError
from sfstream.cli._publish import RestClient, RestError
from sfstream.emulator import Emulator, EmulatorThread
from sfstream.exceptions import AuthenticationError
from tests.cli.conftest import (
    EVENT,
    GENERIC,
    CliRunner,
    json_lines,
    make_org,
    password_args,
    password_env,
)


def test_publish_prints_the_event_uuid_the_listener_sees(
    cli: CliRunner, org: EmulatorThread
) -> None:
    published = cli("publish", EVENT, '{"Amount__c": 12.5}', *password_args(org))
    assert published.code == 0, published.err
    uuid = published.out.strip()
    assert len(uuid) == 36
    assert uuid.count("-") == 4
    listened = cli(
        "listen", EVENT, "--replay", "all", "--json", "--count", "1", *password_args(org)
    )
    [message] = json_lines(listened.out)
    assert message["data"]["event"]["EventUuid"] == uuid
    assert message["data"]["payload"]["Amount__c"] == 12.5
    published.assert_no_secret()


def test_publish_in_a_subprocess_with_environment_credentials(
    sfstream: CliRunner, org: EmulatorThread
) -> None:
    run = sfstream("publish", "Order__e", '{"Amount__c": 1}', env=password_env(org))
    assert run.code == 0, run.err
    assert [e["event"]["EventUuid"] for e in org.call(org.emulator.events, EVENT)] == [
        run.out.strip()
    ]
    run.assert_no_secret()


def test_publish_json_prints_the_whole_reply(cli: CliRunner, org: EmulatorThread) -> None:
    run = cli("publish", EVENT, '{"Amount__c": 3}', "--json", *password_args(org))
    assert run.code == 0
    [reply] = json_lines(run.out)
    assert reply["success"] is True
    assert reply["errors"][0]["statusCode"] == "OPERATION_ENQUEUED"


def test_publish_json_gives_errors_as_json_too(cli: CliRunner, org: EmulatorThread) -> None:
    refused = cli("publish", EVENT, '{"Nope__c": 3}', "--json", *password_args(org))
    assert refused.code == 1
    assert refused.out == ""
    [error] = json_lines(refused.err)
    assert error["exitCode"] == 1
    assert "Nope__c" in error["error"]
    mistyped = cli("publish", EVENT, "{}", "--json", "--jsno", *password_args(org))
    assert mistyped.code == 2
    [usage] = json_lines(mistyped.err)
    assert "--jsno" in usage["error"]


def test_publish_reads_stdin(
    cli: CliRunner, org: EmulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"Amount__c": 8}'))
    run = cli("publish", EVENT, "-", *password_args(org))
    assert run.code == 0, run.err
    assert org.call(org.emulator.events, EVENT)[0]["payload"]["Amount__c"] == 8


@pytest.mark.parametrize("channel", [EVENT, GENERIC])
def test_a_payload_that_is_not_utf8_on_stdin_is_a_usage_error(
    cli: CliRunner, org: EmulatorThread, monkeypatch: pytest.MonkeyPatch, channel: str
) -> None:
    # A strict UTF-8 stdin raised UnicodeDecodeError: "unexpected error", exit 1.
    raw = io.BytesIO(b'{"Amount__c": "caf\xe9"}')
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(raw, encoding="utf-8"))
    run = cli("publish", channel, "-", *password_args(org))
    run.assert_one_error_line(2, "stdin is not UTF-8 text: byte 0xe9 at position 18")
    assert org.call(org.emulator.events, channel) == []


@pytest.mark.parametrize("channel", [EVENT, GENERIC])
def test_a_payload_that_is_not_utf8_in_the_arguments_is_a_usage_error(
    cli: CliRunner, org: EmulatorThread, channel: str
) -> None:
    # Python hands undecodable argv bytes over as lone surrogates; they were sent on (the
    # emulator answered HTTP 500, exit 1).
    run = cli("publish", channel, '{"Amount__c": "caf\udce9"}', *password_args(org))
    run.assert_one_error_line(2, "JSON is not UTF-8 text: byte 0xe9 at position 18")
    assert org.call(org.emulator.events, channel) == []


def test_a_closed_stdin_is_a_usage_error(
    cli: CliRunner, org: EmulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python sets sys.stdin to None when started with fd 0 closed (<&-): an AttributeError,
    # "unexpected error".
    monkeypatch.setattr(sys, "stdin", None)
    run = cli("publish", EVENT, "-", *password_args(org))
    run.assert_one_error_line(2, "stdin is closed")


def test_a_utf8_payload_with_a_byte_order_mark_on_stdin_is_published(
    cli: CliRunner, org: EmulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = io.BytesIO('\ufeff{"Amount__c": "café"}'.encode())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(raw, encoding="utf-8"))
    run = cli("publish", EVENT, "-", *password_args(org))
    assert run.code == 0, run.err
    assert org.call(org.emulator.events, EVENT)[0]["payload"]["Amount__c"] == "café"


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_numbers_json_cannot_carry_are_refused(
    cli: CliRunner, org: EmulatorThread, number: str
) -> None:
    # Python's json reads them (NaN, inf) and writes them back as NaN/Infinity, which is not
    # JSON: the request body was invalid JSON.
    run = cli("publish", EVENT, f'{{"Amount__c": {number}}}', *password_args(org))
    run.assert_one_error_line(2, "the event is not valid JSON", f"{number} is not a JSON number")
    assert org.call(org.emulator.events, EVENT) == []


def test_generic_push(cli: CliRunner, org: EmulatorThread) -> None:
    run = cli("publish", GENERIC, "hello world", *password_args(org))
    assert run.code == 0, run.err
    assert run.out.strip() == (
        f"pushed to {GENERIC}: nobody subscribed right now (it is kept for replay for 24 h)"
    )
    quoted = cli("publish", GENERIC, '"a JSON string"', "--json", *password_args(org))
    assert json_lines(quoted.out) == [[{"fanoutCount": 0, "userOnlineStatus": {}}]]
    user = org.call(org.emulator.add_user, "someone@example.com")
    targeted = cli("publish", GENERIC, '{"not": "decoded"}', "--user-id", user, *password_args(org))
    assert targeted.code == 0
    payloads = [e["payload"] for e in org.call(org.emulator.events, GENERIC)]
    assert payloads == ["hello world", "a JSON string", '{"not": "decoded"}']
    listened = cli(
        "listen", GENERIC, "--replay", "all", "--json", "--count", "2", *password_args(org)
    )
    assert [m["data"]["payload"] for m in json_lines(listened.out)] == payloads[:2]


def test_fanout_descriptions() -> None:
    describe = _publish._describe_fanout
    assert describe("/u/x", [{"fanoutCount": -1}]) == "pushed to /u/x: every subscriber"
    assert describe("/u/x", [{"fanoutCount": 2}]) == "pushed to /u/x: 2 subscriber(s)"
    assert describe("/u/x", []) == "pushed to /u/x: the channel"


def test_publish_errors(cli: CliRunner, org: EmulatorThread) -> None:
    creds = password_args(org)
    cli("publish", "/event/Nope__e", "{}", *creds).assert_one_error_line(
        1, "NOT_FOUND", "is the platform event Nope__e defined"
    )
    cli("publish", EVENT, '{"Amount": 1}', *creds).assert_one_error_line(
        1, "INVALID_FIELD", "No such column 'Amount'"
    )
    cli("publish", EVENT, "{oops", *creds).assert_one_error_line(2, "not valid JSON")
    cli("publish", EVENT, "[1, 2]", *creds).assert_one_error_line(2, "must be a JSON object")
    cli("publish", "/topic/Accounts", "{}", *creds).assert_one_error_line(
        2, "cannot publish to /topic/Accounts", "come from record changes"
    )
    cli("publish", "/u/Missing", "x", *creds).assert_one_error_line(
        1, "there is no StreamingChannel named /u/Missing"
    )
    run = cli("publish", EVENT, "{}", *creds[:-4], "--password", "wrong")
    run.assert_one_error_line(3, "authentication failed: invalid_grant: authentication failure")
    run.assert_no_secret()
    line = cli(
        "publish", EVENT, "{}", "--access-token", "x" * 20, "--instance-url", "http://127.0.0.1:9"
    ).assert_one_error_line(4, "cannot reach 127.0.0.1:9: [Errno 111] Connect call failed")
    # as listen and the login say it, not "ClientConnectorError: Cannot connect to host ..."
    assert "ClientConnectorError" not in line


# aiohttp advises streaming a body above 1 MiB (a ResourceWarning, shown only in tests)
@pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")
def test_a_payload_too_large_says_so(cli: CliRunner, org: EmulatorThread) -> None:
    # It said "HTTP 413: the reply is not JSON", and nothing of the size.
    big = json.dumps({"Amount__c": "x" * 1_100_000})
    run = cli("publish", EVENT, big, *password_args(org))
    # (the reason is the server's status line: "Request Entity Too Large", "Content Too Large"
    # from Python 3.13's http module on)
    reason = HTTPStatus.REQUEST_ENTITY_TOO_LARGE.phrase
    run.assert_one_error_line(1, f"HTTP 413: {reason} (the reply is not JSON)")


def test_user_id_with_a_platform_event_is_a_usage_error(
    cli: CliRunner, org: EmulatorThread
) -> None:
    # It was ignored: the event meant for one user went to every subscriber.
    run = cli("publish", EVENT, '{"Amount__c": 1}', "--user-id", "005xx", *password_args(org))
    run.assert_one_error_line(2, "--user-id is for generic streaming")
    assert org.call(org.emulator.events, EVENT) == []


def test_a_channel_the_org_does_not_have_gets_the_closest_it_has(
    cli: CliRunner, org: EmulatorThread
) -> None:
    creds = password_args(org)
    cli("publish", "/event/Ordr__e", "{}", *creds).assert_one_error_line(
        1, "NOT_FOUND", "did you mean /event/Order__e? (channel names are case-sensitive)"
    )
    cli("publish", "/event/order__e", "{}", *creds).assert_one_error_line(
        1, "did you mean /event/Order__e?"
    )
    cli("publish", "/u/Note", "x", *creds).assert_one_error_line(
        1, "there is no StreamingChannel named /u/Note", "did you mean /u/Notes?"
    )
    # Nothing close: the hint says what to check, as before.
    line = cli("publish", "/event/Nope__e", "{}", *creds).assert_one_error_line(
        1, "is the platform event Nope__e defined"
    )
    assert "did you mean" not in line


def test_rest_error_from_replies() -> None:
    error = RestError.from_reply(400, [{"errorCode": "X", "message": "bad"}])
    assert (error.status, error.code, error.message, str(error)) == (400, "X", "bad", "X: bad")
    oauth = RestError.from_reply(400, {"error": "invalid", "error_description": "why"})
    assert str(oauth) == "invalid: why"
    assert str(RestError.from_reply(502, None)) == "HTTP 502: the reply carries no error details"
    assert str(RestError(500, "", "plain")) == "plain"


# -- RestClient against an async emulator --------------------------------------------------------


@pytest.fixture
async def async_org() -> AsyncIterator[Emulator]:
    async with make_org() as emulator:
        yield emulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


def password_auth(org: Emulator, session: aiohttp.ClientSession) -> PasswordAuthenticator:
    return PasswordAuthenticator(
        org.consumer_key,
        org.consumer_secret,
        org.username,
        org.password,
        login_url=org.login_url,
        session=session,
    )


async def test_a_revoked_token_is_renewed_once(
    async_org: Emulator, session: aiohttp.ClientSession
) -> None:
    rest = RestClient(password_auth(async_org, session), session, "67.0")
    first = await rest.publish_event("Order__e", {"Amount__c": 1})
    async_org.revoke_tokens("access")
    second = await rest.publish_event("Order__e", {"Amount__c": 2})
    assert first.event_uuid != second.event_uuid
    assert rest.reauthentications == 1
    record_id = await rest.create_record("Account", {"Name": "A"})
    await rest.update_record("Account", record_id, {"Name": "B"})
    assert [e["sobject"]["Name"] for e in async_org.events("/topic/Accounts")] == ["A", "B"]


async def test_a_refused_fresh_token_raises(
    async_org: Emulator, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = password_auth(async_org, session)
    rest = RestClient(auth, session, "67.0")
    await auth.authenticate()

    async def refused(*_args: Any) -> tuple[int, Any]:
        return 401, [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired"}]

    monkeypatch.setattr(rest, "_send", refused)
    with pytest.raises(AuthenticationError, match="again after re-authentication"):
        await rest.publish_event("Order__e", {})


async def test_an_access_token_cannot_be_renewed(
    async_org: Emulator, session: aiohttp.ClientSession
) -> None:
    auth = AccessTokenAuthenticator(async_org.issue_access_token(), async_org.instance_url)
    rest = RestClient(auth, session, "67.0")
    async_org.revoke_tokens("access")
    with pytest.raises(AuthenticationError, match="cannot get a new one"):
        await rest.publish_event("Order__e", {})


async def test_odd_replies(aiohttp_server: Any, session: aiohttp.ClientSession) -> None:
    async def not_json(request: web.Request) -> web.Response:
        return web.Response(text="<html>maintenance</html>", status=503)

    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=201)

    async def no_uuid(request: web.Request) -> web.Response:
        return web.json_response({"id": "e001", "success": True, "errors": []}, status=201)

    async def no_records(request: web.Request) -> web.Response:
        return web.json_response({"totalSize": 0, "records": []})

    app = web.Application()
    app.router.add_post("/services/data/v67.0/sobjects/Html__e/", not_json)
    app.router.add_post("/services/data/v67.0/sobjects/Empty__e/", empty)
    app.router.add_post("/services/data/v67.0/sobjects/Old__e/", no_uuid)
    app.router.add_get("/services/data/v67.0/query", no_records)
    server = await aiohttp_server(app)
    auth = AccessTokenAuthenticator("token-1234", str(server.make_url("")))
    rest = RestClient(auth, session, "67.0")
    with pytest.raises(RestError, match=r"HTTP 503: Service Unavailable \(the reply is not JSON\)"):
        await rest.publish_event("Html__e", {})
    assert (await rest.publish_event("Empty__e", {})).event_uuid is None
    old = await rest.publish_event("Old__e", {})
    assert (old.event_uuid, old.id) == (None, "e001")
    with pytest.raises(CliError, match="no StreamingChannel named /u/it's"):
        await rest.streaming_channel_id("/u/it's")
