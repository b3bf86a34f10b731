"""Exit codes, and turning any failure into one line that says what to do.

Every error the command line reports goes through :func:`to_cli_error`: it knows the
library's exception tree and Salesforce's error texts, and adds the hint a user needs
("check username/password/security token", "use --replay all"...). Messages never contain a
secret: the library's messages do not, and these hints name options, never their values.
"""

from __future__ import annotations

import enum
from typing import Final

import aiohttp
from yarl import URL

from sfstream.exceptions import (
    AuthenticationError,
    AuthenticationTransportError,
    ClientError,
    ReplayError,
    ServerError,
    SfstreamError,
    TransportError,
    TransportTimeoutError,
)
from sfstream.salesforce import is_replay_error

__all__ = ["CliError", "ExitCode", "to_cli_error"]


class ExitCode(enum.IntEnum):
    """What ``sfstream`` returns to the shell."""

    #: Success (also: ``listen`` stopped by ``--count`` or ``--timeout``).
    OK = 0
    #: A runtime error: Salesforce refused a subscription or a publish, the demo lost events.
    ERROR = 1
    #: The command line is wrong: unknown option, missing credentials, bad value.
    USAGE = 2
    #: Authentication failed: the token endpoint refused the credentials, or no credentials
    #: could be obtained (e.g. ``sf`` is missing).
    AUTHENTICATION = 3
    #: A host could not be reached or failed (the login server answered an HTTP 5xx or no
    #: token; Salesforce refused as too busy), or the connection was lost for too long.
    CONNECTION = 4
    #: ``listen --count N --timeout S``: fewer than N events arrived within S seconds.
    TIMEOUT = 5
    #: Interrupted (Ctrl-C, SIGTERM).
    INTERRUPTED = 130


class CliError(Exception):
    """An error the command line reports as one line, with an exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.ERROR, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


# (error, part of error_description) -> what to do. Checked in order; "" matches anything.
_AUTH_HINTS: Final[tuple[tuple[str, str, str], ...]] = (
    ("invalid_grant", "authentication failure", "check username/password/security token"),
    (
        "invalid_grant",
        "expired access/refresh token",
        "the refresh token is expired or revoked: get a new one",
    ),
    (
        "invalid_grant",
        "invalid assertion",
        "check that the JWT key (--jwt-key) matches the certificate of the connected app",
    ),
    (
        "invalid_grant",
        "audience is invalid",
        "use --sandbox for a sandbox, or the right --login-url",
    ),
    (
        "invalid_grant",
        "user hasn't approved this consumer",
        "pre-authorise the user for the connected app (profile or permission set)",
    ),
    (
        "invalid_grant",
        "no client credentials user enabled",
        "set a 'Run As' user for the client credentials flow on the connected app",
    ),
    ("invalid_grant", "ip restricted", "log in from an allowed IP or add a security token"),
    ("invalid_client_id", "", "check the consumer key (--consumer-key / SFSTREAM_CONSUMER_KEY)"),
    (
        "invalid_client",
        "",
        "check the consumer secret (--consumer-secret / SFSTREAM_CONSUMER_SECRET)",
    ),
    (
        "unsupported_grant_type",
        "",
        "this OAuth flow is not enabled for the connected app (or not on this login URL)",
    ),
)

_NETWORK_ERRORS: Final = (aiohttp.ClientError, OSError, TimeoutError)


def _auth_hint(error: str | None, description: str | None) -> str:
    for code, part, hint in _AUTH_HINTS:
        if error == code and part in (description or "").lower():
            return hint
    return "check the credentials"


def _reason(exc: BaseException) -> str:
    """A short reason for a network failure."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return str(exc.os_error) or type(exc.os_error).__name__
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _host(url: str | None) -> str:
    if not url:
        return "the server"
    parsed = URL(url)
    if parsed.host is None:
        return url
    port = parsed.explicit_port
    return f"{parsed.host}:{port}" if port else parsed.host


def _authentication(exc: AuthenticationError, login_url: str | None) -> CliError:
    cause = exc.__cause__
    if str(exc).startswith("Network request failed") and isinstance(cause, _NETWORK_ERRORS):
        return CliError(
            f"cannot reach {_host(login_url)}: {_reason(cause)}",
            ExitCode.CONNECTION,
            "check --login-url (or SFSTREAM_LOGIN_URL) and the network",
        )
    if isinstance(exc, AuthenticationTransportError):
        # The login server failed (HTTP 5xx, a reply that is not a token), not the credentials.
        detail = str(exc).removeprefix("Network request failed: ")
        return CliError(
            f"no token from {_host(login_url)}: {detail}",
            ExitCode.CONNECTION,
            "the login server failed, not the credentials: try again later, and check "
            "--login-url (or SFSTREAM_LOGIN_URL)",
        )
    if "cannot get a new one" in str(exc):
        return CliError(
            "authentication failed: Salesforce refused the access token",
            ExitCode.AUTHENTICATION,
            "the token is expired or revoked: get a new one (e.g. sf org login web), "
            "or use credentials that can log in again",
        )
    if exc.error is not None:
        detail = ": ".join(part for part in (exc.error, exc.error_description) if part)
        return CliError(
            f"authentication failed: {detail}",
            ExitCode.AUTHENTICATION,
            _auth_hint(exc.error, exc.error_description),
        )
    message = str(exc)
    text = message[0].lower() + message[1:] if message else "authentication failed"
    if exc.status is not None and 300 <= exc.status < 500 and "not JSON" in message:
        # A page that is no token endpoint (a login URL with a path, a proxy's redirect):
        # the URL is wrong, not the credentials.
        return CliError(
            text,
            ExitCode.AUTHENTICATION,
            f"no OAuth token endpoint answered at {_host(login_url)}: check --login-url (or "
            "SFSTREAM_LOGIN_URL): your My Domain or https://login.salesforce.com, without a path",
        )
    if not text.startswith("authentication failed"):
        text = f"authentication failed: {text}"
    return CliError(text, ExitCode.AUTHENTICATION, "check the credentials")


def _server(
    exc: ServerError,
    store: str | None,
    suggestion: str | None = None,
    replay_note: str | None = None,
) -> CliError:
    response = exc.response or {}
    subscription = response.get("subscription")
    channel = subscription if isinstance(subscription, str) else None
    text = exc.error_message or exc.error or exc.message
    where = f"{channel}: " if channel else ""
    cause = exc.cause_code  # failureReason first: a 503 hides behind a 401 error
    if cause == 401:
        return CliError(
            f"authentication failed: Salesforce refused the session ({exc})",
            ExitCode.AUTHENTICATION,
            "check the credentials",
        )
    if cause is not None and cause >= 500:
        return CliError(
            f"{where}Salesforce is too busy: {exc}",
            ExitCode.CONNECTION,
            "try again in a few minutes (Salesforce asks for a small delay)",
        )
    if is_replay_error(exc):
        hint = "use --replay all or --replay new (or --fallback all)"
        if store:
            hint += f", or delete the store {store}"
        # Not "expired": the same refusal meets an id this channel never issued (replay ids
        # are per channel and per org), and only a stored id can be known to be old.
        why = replay_note or (
            "Salesforce accepts only an id this channel issued within its retention window: "
            "24 h, or 72 h for platform events and CDC"
        )
        return CliError(
            f"{where}Salesforce refused the replay id: {text}", ExitCode.ERROR, f"{hint} ({why})"
        )
    if "does not exist" in text and suggestion is not None:
        return CliError(
            f"{where}{text}",
            ExitCode.ERROR,
            f"did you mean {suggestion}? (channel names are case-sensitive)",
        )
    if "does not exist" in text:
        return CliError(
            f"{where}{text}",
            ExitCode.ERROR,
            "check the channel name (it is case-sensitive): /event/<Name>__e, /topic/<Name>, "
            "/u/<name>, /data/<Entity>ChangeEvent; and that your user may see it",
        )
    return CliError(f"{where}Salesforce refused: {exc}", ExitCode.ERROR)


def to_cli_error(
    exc: BaseException,
    *,
    login_url: str | None = None,
    store: str | None = None,
    suggestion: str | None = None,
    replay_note: str | None = None,
) -> CliError | None:
    """The one-line report of ``exc``, or None if it is not an error we know.

    Args:
        exc: what was raised.
        login_url: where tokens were requested (to name the host that cannot be reached).
        store: the replay store file in use (to suggest deleting it).
        suggestion: the org's channel closest to one Salesforce says does not exist.
        replay_note: why a refused replay id was refused, when the store tells (its date).
    """
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, BrokenPipeError):
        return None  # stdout was closed (| head): the command line ends quietly
    if isinstance(exc, AuthenticationError):
        return _authentication(exc, login_url)
    if isinstance(exc, ServerError):
        return _server(exc, store, suggestion, replay_note)
    if isinstance(exc, TransportTimeoutError):
        return CliError(
            f"connection lost: {exc}",
            ExitCode.CONNECTION,
            "check the network; --connection-timeout waits longer",
        )
    if isinstance(exc, TransportError):
        return CliError(f"connection failed: {exc}", ExitCode.CONNECTION, "check the network")
    if isinstance(exc, ReplayError):
        return CliError(f"replay store: {exc}", ExitCode.ERROR, _store_hint(exc, store))
    if isinstance(exc, ClientError):
        return CliError(str(exc), ExitCode.USAGE)
    if isinstance(exc, SfstreamError):
        return CliError(str(exc), ExitCode.ERROR)
    if isinstance(exc, OSError) and exc.filename is not None:
        return CliError(f"{exc.filename}: {exc.strerror or exc}", ExitCode.ERROR)
    if isinstance(exc, _NETWORK_ERRORS):
        return CliError(f"cannot reach {_host(login_url)}: {_reason(exc)}", ExitCode.CONNECTION)
    return None


def _store_hint(exc: ReplayError, store: str | None) -> str:
    """What to do about a replay store error: wait for a busy store, reach an unreachable one,
    and only for a store that cannot be read suggest starting again without it."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        where = f" {store}" if store else ""
        return f"another process is writing the store{where}: wait for it, or stop it"
    if "redis at" in text or "connect" in text:
        return "check that the store's server is running and reachable"
    if store:
        return f"if the store is damaged, delete {store} (its positions are lost)"
    return "check the replay store"
