"""Logging in the way Python users know from simple-salesforce, and through the Salesforce CLI.

Two helpers build an authenticator from what a user already has:

:func:`authenticator_from_login`
    simple-salesforce's parameters — ``username``/``password``/``security_token`` (the token is
    appended to the password), ``domain`` (``"login"``, ``"test"`` or a My Domain host), and
    ``instance_url`` with ``session_id``/``access_token`` for a token already held — mapped
    onto :class:`~sfstream.salesforce.PasswordAuthenticator` and
    :class:`~sfstream.salesforce.AccessTokenAuthenticator`.

:func:`authenticator_from_sf_org`
    the access token of an org the Salesforce CLI (``sf``) is logged in to, from
    ``sf org display --json``; without an alias, the CLI's default org
    (:func:`default_sf_org`: ``SF_TARGET_ORG``, else the ``target-org`` of the project's
    ``.sf/config.json``, else of ``~/.sf/config.json``).

Neither prints, logs or puts a secret in an error message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import aiohttp

from sfstream.exceptions import AuthenticationError, InvalidArgumentError
from sfstream.salesforce._auth import (
    PRODUCTION_LOGIN_URL,
    SANDBOX_LOGIN_URL,
    AccessTokenAuthenticator,
    AuthenticatorBase,
    JsonDumper,
    JsonLoader,
    PasswordAuthenticator,
)

__all__ = [
    "SF_TIMEOUT",
    "authenticator_from_login",
    "authenticator_from_sf_org",
    "default_sf_org",
    "domain_login_url",
    "sf_org_display",
]

#: Seconds ``sf org display`` may take.
SF_TIMEOUT: Final = 60.0
_LOOPBACK: Final = ("127.", "localhost", "[::1]")

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def domain_login_url(domain: str) -> str:
    """The login URL of simple-salesforce's ``domain``.

    ``"login"`` is production (``https://login.salesforce.com``), ``"test"`` a sandbox
    (``https://test.salesforce.com``). A My Domain works as a host
    (``"acme.my.salesforce.com"``) or, as in simple-salesforce, without ``.salesforce.com``
    (``"acme.my"``, ``"acme--dev.sandbox.my"``). A full URL (``https://...``, or
    ``http://127.0.0.1:8808`` for an emulator) is used as it is; so is a loopback host.

    Raises:
        InvalidArgumentError: ``domain`` is empty or holds a path or spaces.
    """
    value = domain.strip().rstrip("/")
    if not value or " " in value:
        raise InvalidArgumentError(
            f"domain must be 'login', 'test' or a My Domain host, got {domain!r}"
        )
    if "://" in value:
        return value
    if "/" in value:
        raise InvalidArgumentError(f"domain must be a host, not a path: {domain!r}")
    lowered = value.lower()
    if lowered == "login":
        return PRODUCTION_LOGIN_URL
    if lowered == "test":
        return SANDBOX_LOGIN_URL
    if lowered.startswith(_LOOPBACK):
        return f"http://{value}"
    if lowered.endswith((".salesforce.com", ".force.com")) or ":" in value:
        return f"https://{value}"
    return f"https://{value}.salesforce.com"


def authenticator_from_login(
    *,
    username: str | None = None,
    password: str | None = None,
    security_token: str | None = None,
    consumer_key: str | None = None,
    consumer_secret: str | None = None,
    domain: str | None = None,
    instance_url: str | None = None,
    session_id: str | None = None,
    access_token: str | None = None,
    sandbox: bool = False,
    login_url: str | None = None,
    session: aiohttp.ClientSession | None = None,
    json_dumps: JsonDumper = json.dumps,
    json_loads: JsonLoader = json.loads,
) -> AuthenticatorBase:
    """An authenticator from simple-salesforce's login parameters.

    * ``instance_url`` with ``session_id`` or ``access_token`` (the same thing under two
      names): the token is used as it is (:class:`AccessTokenAuthenticator`; it cannot be
      renewed).
    * ``username``, ``password`` and optionally ``security_token`` with a connected app's
      ``consumer_key`` and ``consumer_secret``: the OAuth username-password flow
      (:class:`PasswordAuthenticator`), the security token appended to the password. Unlike
      simple-salesforce's SOAP login, Salesforce's OAuth endpoint needs the connected app.
    * ``domain`` says where to log in (:func:`domain_login_url`): ``"login"`` (default),
      ``"test"`` (a sandbox, like ``sandbox=True``) or a My Domain host.

    Args:
        username, password, security_token: the user's login.
        consumer_key, consumer_secret: the connected app (OAuth client id and secret).
        domain: ``"login"``, ``"test"`` or a My Domain host.
        instance_url: the org's URL, with a token you hold.
        session_id, access_token: that token.
        sandbox: log in to ``test.salesforce.com`` (as ``domain="test"``).
        login_url: where to log in, as a URL (the emulator's, or your My Domain).
        session: an aiohttp session for the token requests.
        json_dumps, json_loads: as for :class:`AuthenticatorBase`.

    Raises:
        InvalidArgumentError: the parameters do not make one login (say which is missing or in
            conflict), or a URL is refused (not https outside loopback).
    """
    if session_id and access_token and session_id != access_token:
        raise InvalidArgumentError(
            "give session_id or access_token (two names for one token), not both"
        )
    token = session_id or access_token
    if token:
        if username or password or security_token:
            raise InvalidArgumentError(
                "give either a token (session_id/access_token with instance_url) or a "
                "username and password, not both"
            )
        if not instance_url:
            raise InvalidArgumentError(
                "a session_id/access_token needs instance_url (the org's URL, e.g. "
                "https://acme.my.salesforce.com)"
            )
        return AccessTokenAuthenticator(
            token, instance_url, json_dumps=json_dumps, json_loads=json_loads
        )
    if instance_url:
        raise InvalidArgumentError("instance_url goes with session_id or access_token")
    if not (username and password and consumer_key and consumer_secret):
        given = {
            "username": username,
            "password": password,
            "consumer_key": consumer_key,
            "consumer_secret": consumer_secret,
        }
        missing = ", ".join(name for name, value in given.items() if not value)
        raise InvalidArgumentError(
            f"to log in with a password, also give {missing} (the OAuth username-password "
            "flow needs a connected app's consumer key and secret); or give instance_url with "
            "session_id/access_token"
        )
    target, to_sandbox = _login_target(domain, login_url, sandbox)
    return PasswordAuthenticator(
        consumer_key,
        consumer_secret,
        username,
        password + (security_token or ""),
        sandbox=to_sandbox,
        json_dumps=json_dumps,
        json_loads=json_loads,
        login_url=target,
        session=session,
    )


def _login_target(
    domain: str | None, login_url: str | None, sandbox: bool
) -> tuple[str | None, bool]:
    """``(login_url, sandbox)`` for the authenticator: production and sandbox stay the
    authenticator's own defaults."""
    if domain is None:
        return login_url, sandbox
    from_domain = domain_login_url(domain)
    if login_url is not None and login_url.rstrip("/") != from_domain:
        raise InvalidArgumentError("give domain or login_url, not both")
    if sandbox and from_domain != SANDBOX_LOGIN_URL:
        raise InvalidArgumentError(f"sandbox=True means domain='test', not {domain!r}")
    if from_domain == PRODUCTION_LOGIN_URL:
        return None, False
    if from_domain == SANDBOX_LOGIN_URL:
        return None, True
    return from_domain, False


# -- the Salesforce CLI ------------------------------------------------------------------------


def _target_org(path: Path) -> str | None:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("target-org") if isinstance(config, dict) else None
    return value if isinstance(value, str) and value else None


def default_sf_org(
    *,
    cwd: str | os.PathLike[str] | None = None,
    home: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The Salesforce CLI's default org (alias or username), or None if none is set.

    As ``sf`` resolves it: the ``SF_TARGET_ORG`` environment variable, else the
    ``target-org`` of the project's ``.sf/config.json`` (in ``cwd`` or the nearest parent
    that has one: ``sf config set target-org ALIAS``), else of the global
    ``~/.sf/config.json`` (``sf config set target-org ALIAS --global``).
    """
    env = os.environ if environ is None else environ
    if env.get("SF_TARGET_ORG"):
        return env["SF_TARGET_ORG"]
    here = Path.cwd() if cwd is None else Path(cwd)
    for directory in (here, *here.parents):
        found = _target_org(directory / ".sf" / "config.json")
        if found is not None:
            return found
    global_home = Path.home() if home is None else Path(home)
    return _target_org(global_home / ".sf" / "config.json")


def sf_org_display(
    alias: str | None = None,
    *,
    run: Runner = subprocess.run,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``result`` of ``sf org display --json`` (``accessToken``, ``instanceUrl``, ...).

    Args:
        alias: the org's alias or username; None: the CLI's default org (:func:`default_sf_org`).
        run: runs the command (``subprocess.run``; tests pass their own).
        environ: the environment to read ``SF_TARGET_ORG`` from (default ``os.environ``).

    Raises:
        AuthenticationError: ``sf`` is missing, fails, or prints no token; the message says
            what to do and never holds the output (which holds the token).
    """
    executable = shutil.which("sf")
    if executable is None:
        raise AuthenticationError(
            "the Salesforce CLI (sf) is not installed or not on PATH (install it with npm "
            "install --global @salesforce/cli, then log in with sf org login web)"
        )
    target = alias or default_sf_org(environ=environ)
    command = [executable, "org", "display", "--json"]
    if target:
        command += ["--target-org", target]
    shown = f"sf org display --target-org {target}" if target else "sf org display"
    try:
        completed = run(command, capture_output=True, text=True, timeout=SF_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise AuthenticationError(f"cannot run {shown}: {type(exc).__name__}") from None
    try:
        output = json.loads(completed.stdout)
    except ValueError:
        output = None
    if not isinstance(output, dict):
        raise AuthenticationError(
            f"{shown} printed no JSON (exit status {completed.returncode}); check that "
            f"{shown} works"
        )
    result = output.get("result")
    if (
        completed.returncode != 0
        or not isinstance(result, dict)
        or not isinstance(result.get("accessToken"), str)
        or not isinstance(result.get("instanceUrl"), str)
    ):
        message = output.get("message")
        detail = message if isinstance(message, str) and message else "no access token"
        if target:
            advice = f"log in with sf org login web --alias {target}"
        else:
            advice = (
                "no default org is set: name one with --sf-org ALIAS, or set it with "
                "sf config set target-org ALIAS (or SF_TARGET_ORG)"
            )
        raise AuthenticationError(f"{shown} failed: {detail} ({advice})")
    return result


def authenticator_from_sf_org(
    alias: str | None = None,
    *,
    run: Runner = subprocess.run,
    environ: Mapping[str, str] | None = None,
) -> AccessTokenAuthenticator:
    """An authenticator holding the access token of an org the Salesforce CLI is logged in to.

    Runs ``sf org display --json`` (``--target-org alias``, or the default org when ``alias``
    is None) and builds an :class:`AccessTokenAuthenticator` from its ``accessToken`` and
    ``instanceUrl``. The token cannot be renewed by sfstream: when it expires, run this again
    (the CLI refreshes it).

    Raises:
        AuthenticationError: as :func:`sf_org_display`.
    """
    result = sf_org_display(alias, run=run, environ=environ)
    try:
        return AccessTokenAuthenticator(result["accessToken"], result["instanceUrl"])
    except ValueError as exc:
        raise AuthenticationError(f"sf org display gave an unusable org: {exc}") from None
