"""``sfstream publish CHANNEL JSON``: publish through Salesforce's REST API.

- ``/event/<Name>__e`` (or ``<Name>__e``): ``POST /services/data/vXX.X/sobjects/<Name>__e/``
  with the JSON object as the event's fields. Salesforce answers 201 with an
  ``OPERATION_ENQUEUED`` entry whose message is the EventUuid, which is printed.
- ``/u/<name>``: generic streaming. The StreamingChannel's id is looked up by name
  (``GET query?q=SELECT Id FROM StreamingChannel WHERE Name = '/u/<name>'``), then
  ``POST sobjects/StreamingChannel/<id>/push`` sends the payload (a string: a JSON string
  argument is decoded, anything else is sent as the text given).

:class:`RestClient` is also what ``sfstream demo`` publishes with.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import aiohttp
from yarl import URL

from sfstream._http import describe, read_limited, safe_cause
from sfstream.exceptions import AuthenticationError
from sfstream.salesforce import DEFAULT_API_VERSION, AuthenticatorBase

from ._args import load_json, not_utf8, utf8_text
from ._channels import known_channels, suggest_channel
from ._credentials import (
    add_credential_arguments,
    build_authenticator,
    resolve_credentials,
    terminal_password_prompt,
)
from ._errors import CliError, ExitCode, _host, to_cli_error
from ._output import Console, json_line

__all__ = ["PublishResult", "RestClient", "RestError", "add_arguments", "run"]

_TIMEOUT: Final = 30.0
#: The largest REST reply accepted, in decoded bytes.
MAX_BODY: Final = 4 * 1024 * 1024


class RestError(Exception):
    """Salesforce answered a REST request with an error (``[{"errorCode", "message"}]``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def from_reply(cls, status: int, body: Any) -> RestError:
        entry = body[0] if isinstance(body, list) and body else body
        if isinstance(entry, Mapping):
            code = entry.get("errorCode") or entry.get("error") or ""
            message = entry.get("message") or entry.get("error_description") or ""
            if code or message:
                return cls(status, str(code), str(message))
        return cls(status, f"HTTP {status}", "the reply carries no error details")


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What a platform event publish returned."""

    event_uuid: str | None
    id: str | None
    reply: Any


class RestClient:
    """The few REST calls the command line makes, with the authenticator's token.

    A 401 re-authenticates once (when the authenticator can) and retries.

    Args:
        auth: the authenticator (authenticated on first use).
        session: the aiohttp session for every request (never closed here).
        api_version: the REST API version, e.g. ``67.0``.
        max_body: the largest reply accepted, in decoded bytes (a compressed reply is inflated
            only as far as this).
    """

    def __init__(
        self,
        auth: AuthenticatorBase,
        session: aiohttp.ClientSession,
        api_version: str = DEFAULT_API_VERSION,
        *,
        max_body: int = MAX_BODY,
    ) -> None:
        self.auth = auth
        self.session = session
        self.api_version = api_version
        self.max_body = max_body
        #: How many times a 401 made this client fetch a new token.
        self.reauthentications = 0

    def _url(self, path: str) -> str:
        instance = (self.auth.instance_url or "").rstrip("/")
        return f"{instance}/services/data/v{self.api_version}/{path}"

    async def _send(
        self, method: str, path: str, body: Any, params: Mapping[str, str] | None
    ) -> tuple[int, Any]:
        url = self._url(path)
        headers = {
            "Authorization": self.auth.authorization_header(),
            "Accept": "application/json",
        }
        failure: CliError | None = None
        try:
            async with self.session.request(
                method,
                url,
                json=body,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=_TIMEOUT),
                allow_redirects=False,
            ) as response:
                status, reason = response.status, response.reason
                too_large = partial(_too_large, url, self.max_body)
                raw = await read_limited(response, self.max_body, too_large)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # As listen and the login report it: the host with its port, the OS's reason
            # (it was "ClientConnectorError: Cannot connect to host ... ssl:default [...]").
            if isinstance(exc, TimeoutError):
                reason = "timed out"
            elif isinstance(exc, aiohttp.ClientConnectorError):
                reason = str(exc.os_error) or type(exc.os_error).__name__
            else:
                reason = describe(exc)
            failure = CliError(
                f"cannot reach {_host(url)}: {reason}",
                ExitCode.CONNECTION,
                "check the instance URL and the network",
            )
            # aiohttp's error holds the request headers (the access token): only a scrubbed
            # stand-in is chained, and the error is raised out of the except block.
            failure.__cause__ = safe_cause(exc)
        if failure is not None:
            raise failure
        if not raw.strip():
            return status, None
        try:
            return status, json.loads(raw)
        except ValueError:
            pass
        # The status line says what went wrong ("Request Entity Too Large"), not the body.
        raise RestError(
            status,
            f"HTTP {status}",
            f"{reason} (the reply is not JSON)" if reason else "the reply is not JSON",
        )

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """Send a request to ``/services/data/vXX.X/<path>``; return the JSON reply.

        Raises:
            RestError: Salesforce refused it, or the reply is not JSON or too large.
            AuthenticationError: the token was refused and could not be renewed.
            CliError: the host cannot be reached.
        """
        if not self.auth.authenticated:
            await self.auth.authenticate()
        generation = self.auth.generation
        status, reply = await self._send(method, path, body, params)
        if status == 401:
            if not self.auth.can_refresh:
                raise AuthenticationError(
                    f"Salesforce refused the access token and {type(self.auth).__name__} "
                    "cannot get a new one"
                )
            if self.auth.generation == generation:
                await self.auth.authenticate()
            self.reauthentications += 1
            status, reply = await self._send(method, path, body, params)
            if status == 401:
                raise AuthenticationError(
                    "Salesforce refused the access token again after re-authentication"
                )
        if not 200 <= status < 300:
            raise RestError.from_reply(status, reply)
        return reply

    async def publish_event(self, name: str, fields: Mapping[str, Any]) -> PublishResult:
        """Publish one platform event; the result holds its EventUuid."""
        reply = await self.request("POST", f"sobjects/{name}/", dict(fields))
        uuid: str | None = None
        record_id: str | None = None
        if isinstance(reply, Mapping):
            record_id = reply.get("id") if isinstance(reply.get("id"), str) else None
            errors = reply.get("errors")
            for entry in errors if isinstance(errors, list) else ():
                if isinstance(entry, Mapping) and entry.get("statusCode") == "OPERATION_ENQUEUED":
                    message = entry.get("message")
                    uuid = message if isinstance(message, str) else None
        return PublishResult(uuid, record_id, reply)

    async def streaming_channel_id(self, name: str) -> str:
        """The id of the StreamingChannel named ``name`` (``/u/...``).

        Raises:
            CliError: there is none.
        """
        quoted = name.replace("\\", "\\\\").replace("'", "\\'")
        reply = await self.request(
            "GET",
            "query",
            # A SOQL string literal, quoted above; the REST API takes no bind variables.
            params={"q": f"SELECT Id, Name FROM StreamingChannel WHERE Name = '{quoted}'"},  # noqa: S608
        )
        records = reply.get("records") if isinstance(reply, Mapping) else None
        for record in records if isinstance(records, list) else ():
            if isinstance(record, Mapping) and isinstance(record.get("Id"), str):
                return str(record["Id"])
        raise CliError(
            f"there is no StreamingChannel named {name}",
            ExitCode.ERROR,
            "create it first (Setup > Streaming Channels, or POST sobjects/StreamingChannel)",
        )

    async def push(self, channel_id: str, payload: str, user_ids: Sequence[str] = ()) -> list[Any]:
        """Push a generic streaming event; returns Salesforce's fan-out results."""
        reply = await self.request(
            "POST",
            f"sobjects/StreamingChannel/{channel_id}/push",
            {"pushEvents": [{"payload": payload, "userIds": list(user_ids)}]},
        )
        return reply if isinstance(reply, list) else [reply]

    async def create_record(self, sobject: str, fields: Mapping[str, Any]) -> str:
        """Create a record; returns its id."""
        reply = await self.request("POST", f"sobjects/{sobject}/", dict(fields))
        return str(reply.get("id")) if isinstance(reply, Mapping) else ""

    async def update_record(self, sobject: str, record_id: str, fields: Mapping[str, Any]) -> None:
        """Change fields of a record."""
        await self.request("PATCH", f"sobjects/{sobject}/{record_id}", dict(fields))


def _too_large(url: str, limit: int, declared: int | None) -> CliError:
    size = f" ({declared} bytes)" if declared is not None else ""
    return CliError(
        f"the reply from {URL(url).host or url} is larger than the limit of {limit} bytes{size}",
        ExitCode.ERROR,
    )


# -- the command ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "channel",
        metavar="CHANNEL",
        help="/event/<Name>__e (a platform event) or /u/<name> (generic streaming)",
    )
    parser.add_argument(
        "payload",
        metavar="JSON",
        help="platform event: a JSON object of fields; generic: the text to push "
        "(a JSON string is decoded); - reads it from stdin",
    )
    parser.add_argument(
        "--user-id",
        dest="user_ids",
        action="append",
        default=[],
        metavar="ID",
        help="generic streaming: push only to this user (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print Salesforce's whole reply")
    add_credential_arguments(parser)


def _event_name(channel: str) -> str | None:
    name = channel.removeprefix("/event/")
    if "/" in name or not name.endswith("__e"):
        return None
    return name


def _payload_text(args: argparse.Namespace) -> str:
    """The payload as text, checked to be UTF-8 (what goes on the wire)."""
    if args.payload == "-":
        if sys.stdin is None:  # started with stdin closed (<&-)
            raise CliError("stdin is closed: there is nothing to read", ExitCode.USAGE)
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is None:  # a stdin replaced by a text stream
            return utf8_text(sys.stdin.read(), "stdin")
        raw: bytes = buffer.read()
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise not_utf8("stdin", exc.start, raw[exc.start]) from None
    return utf8_text(args.payload, "JSON")


def _event_fields(text: str) -> dict[str, Any]:
    try:
        fields = load_json(text)
    except ValueError as exc:
        raise CliError(
            f"the event is not valid JSON: {exc}",
            ExitCode.USAGE,
            """give a JSON object of fields, e.g. '{"Amount__c": 42}'""",
        ) from None
    if not isinstance(fields, dict):
        raise CliError(
            "the event must be a JSON object of field values",
            ExitCode.USAGE,
            """e.g. '{"Amount__c": 42}'""",
        )
    return fields


def _push_text(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


async def run(args: argparse.Namespace, console: Console) -> int:
    channel: str = args.channel
    event = _event_name(channel)
    if event is None and not channel.startswith("/u/"):
        raise CliError(
            f"cannot publish to {channel}",
            ExitCode.USAGE,
            "publish to /event/<Name>__e (platform events) or /u/<name> (generic streaming); "
            "PushTopic and Change Data Capture events come from record changes",
        )
    if event is not None and args.user_ids:
        # A platform event goes to every subscriber: ignoring --user-id broadcast what the
        # user meant for a few.
        raise CliError(
            "--user-id is for generic streaming (/u/<name>): a platform event reaches every "
            "subscriber",
            ExitCode.USAGE,
            "leave out --user-id, or publish to a /u/ channel",
        )
    text = _payload_text(args)
    fields = _event_fields(text) if event is not None else None
    credentials = resolve_credentials(args, ask_password=terminal_password_prompt())
    for secret in credentials.secrets():
        console.add_secret(secret)
    auth = build_authenticator(credentials)
    console.add_secret(lambda: auth.access_token)
    console.add_secret(lambda: auth.refresh_token)
    api_version = credentials.api_version or DEFAULT_API_VERSION
    try:
        async with aiohttp.ClientSession() as session:
            auth.session = session
            rest = RestClient(auth, session, api_version)
            if fields is not None:
                assert event is not None
                result = await rest.publish_event(event, fields)
                if args.json:
                    console.print(json_line(result.reply))
                else:
                    console.print(result.event_uuid or result.id or "")
                return ExitCode.OK
            try:
                channel_id = await rest.streaming_channel_id(channel)
            except CliError as missing:
                raise await _did_you_mean(missing, channel, auth, api_version) from None
            results = await rest.push(channel_id, _push_text(text), args.user_ids)
            if args.json:
                console.print(json_line(results))
            else:
                console.print(_describe_fanout(channel, results))
            return ExitCode.OK
    except RestError as exc:
        refused = _rest_error(exc, event, channel)
        if event is not None and exc.status == 404:
            refused = await _did_you_mean(refused, channel, auth, api_version)
        raise refused from exc
    except Exception as exc:
        error = to_cli_error(exc, login_url=auth.login_url)
        if error is None:
            raise
        raise error from exc
    finally:
        auth.session = None


def _describe_fanout(channel: str, results: list[Any]) -> str:
    first = results[0] if results and isinstance(results[0], Mapping) else {}
    fanout = first.get("fanoutCount")
    if fanout == -1:
        who = "every subscriber"
    elif fanout == 0:
        who = "nobody subscribed right now (it is kept for replay for 24 h)"
    elif isinstance(fanout, int):
        who = f"{fanout} subscriber(s)"
    else:
        who = "the channel"
    return f"pushed to {channel}: {who}"


async def _did_you_mean(
    error: CliError, channel: str, auth: AuthenticatorBase, api_version: str
) -> CliError:
    """``error`` (the org has no ``channel``) with the org's closest channel one can publish to
    as its hint, when there is one close enough."""
    known = await known_channels(auth, api_version)
    suggestion = suggest_channel(channel, [c for c in known if c.startswith(("/event/", "/u/"))])
    if suggestion is None:
        return error
    return CliError(
        error.message,
        error.code,
        f"did you mean {suggestion}? (channel names are case-sensitive)",
    )


def _rest_error(exc: RestError, event: str | None, channel: str) -> CliError:
    if event is not None and exc.status == 404:
        return CliError(
            f"Salesforce refused the publish: {exc}",
            ExitCode.ERROR,
            f"is the platform event {event} defined in the org (Setup > Platform Events)?",
        )
    return CliError(f"Salesforce refused the publish to {channel}: {exc}", ExitCode.ERROR)
