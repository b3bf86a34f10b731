"""Credentials for ``listen`` and ``publish``: flags, ``SFSTREAM_*`` variables, or ``sf``.

Every value comes from its flag, else from its environment variable (:data:`ENVIRONMENT`).
The OAuth flow is ``--auth`` when given, else chosen from the values present, in this order:

1. ``--sf-org ALIAS``: the token of an org the Salesforce CLI is logged in to (``--sf-org``
   alone: the CLI's default org);
2. ``--access-token`` (with ``--instance-url``): a token you already hold;
3. ``--jwt-key FILE`` (with ``--consumer-key`` and ``--username``): the JWT bearer flow;
4. ``--refresh-token`` (with ``--consumer-key``): the refresh token flow;
5. ``--username`` (with ``--password``, ``--consumer-key``, ``--consumer-secret``): password;
6. ``--client-credentials``, or a consumer key and secret alone: client credentials (needs
   ``--login-url``, your My Domain).

When any of these choosing flags is on the command line, only the command line chooses (a
``SFSTREAM_USERNAME`` in the environment does not turn ``--access-token`` into a password
login); the other values still fall back to the environment. Values are never printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from sfstream.exceptions import AuthenticationError
from sfstream.salesforce import (
    DEFAULT_API_VERSION,
    AccessTokenAuthenticator,
    AuthenticatorBase,
    ClientCredentialsAuthenticator,
    JwtBearerAuthenticator,
    PasswordAuthenticator,
    RefreshTokenAuthenticator,
)
from sfstream.salesforce import sf_org_display as library_sf_org_display

from ._errors import CliError, ExitCode

__all__ = [
    "ENVIRONMENT",
    "FLOWS",
    "Credentials",
    "add_credential_arguments",
    "build_authenticator",
    "resolve_credentials",
    "sf_org_display",
]

#: Option (``args`` attribute) -> environment variable.
ENVIRONMENT: Final = {
    "consumer_key": "SFSTREAM_CONSUMER_KEY",
    "consumer_secret": "SFSTREAM_CONSUMER_SECRET",
    "username": "SFSTREAM_USERNAME",
    "password": "SFSTREAM_PASSWORD",
    "security_token": "SFSTREAM_SECURITY_TOKEN",
    "refresh_token": "SFSTREAM_REFRESH_TOKEN",
    "jwt_key": "SFSTREAM_JWT_KEY_FILE",
    "jwt_key_password": "SFSTREAM_JWT_KEY_PASSWORD",
    "client_credentials": "SFSTREAM_CLIENT_CREDENTIALS",
    "access_token": "SFSTREAM_ACCESS_TOKEN",
    "instance_url": "SFSTREAM_INSTANCE_URL",
    "sf_org": "SFSTREAM_SF_ORG",
    "login_url": "SFSTREAM_LOGIN_URL",
    "sandbox": "SFSTREAM_SANDBOX",
    "api_version": "SFSTREAM_API_VERSION",
    "auth": "SFSTREAM_AUTH",
}

FLOWS: Final = (
    "sf-org",
    "access-token",
    "jwt",
    "refresh-token",
    "password",
    "client-credentials",
)
_BOOLEANS: Final = frozenset({"client_credentials", "sandbox"})
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
#: The option that selects each flow when present.
_CHOOSERS: Final = (
    ("sf-org", "sf_org"),
    ("access-token", "access_token"),
    ("jwt", "jwt_key"),
    ("refresh-token", "refresh_token"),
    ("password", "username"),
    ("client-credentials", "client_credentials"),
)


def add_credential_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the credential and org options to a subcommand's parser."""
    group = parser.add_argument_group(
        "credentials (each flag falls back to its SFSTREAM_* environment variable; "
        "prefer the variables for secrets: flags show in the process list)"
    )
    group.add_argument(
        "--auth",
        choices=FLOWS,
        help="the OAuth flow (default: chosen from the credentials given)",
    )
    group.add_argument("--consumer-key", metavar="KEY", help="connected app consumer key")
    group.add_argument("--consumer-secret", metavar="SECRET", help="connected app secret")
    group.add_argument("--username", metavar="USER", help="Salesforce username")
    group.add_argument(
        "--password",
        metavar="PASSWORD",
        help="password (asked for on a terminal when missing)",
    )
    group.add_argument(
        "--security-token", metavar="TOKEN", help="appended to the password when set"
    )
    group.add_argument("--refresh-token", metavar="TOKEN", help="refresh token flow")
    group.add_argument(
        "--jwt-key", metavar="FILE", help="JWT bearer flow: the RSA private key (PEM file)"
    )
    group.add_argument("--jwt-key-password", metavar="PASSWORD", help="password of the key file")
    group.add_argument(
        "--client-credentials",
        action="store_true",
        default=None,
        help="client credentials flow (consumer key and secret; needs --login-url)",
    )
    group.add_argument("--access-token", metavar="TOKEN", help="an access token you hold")
    group.add_argument("--instance-url", metavar="URL", help="the org's URL, with --access-token")
    group.add_argument(
        "--sf-org",
        metavar="ALIAS",
        nargs="?",
        const="",
        help="use an org the Salesforce CLI is logged in to (sf org display); without ALIAS "
        "(put it after the channels), the CLI's default org (sf config set target-org)",
    )
    org = parser.add_argument_group("org")
    org.add_argument(
        "--login-url",
        metavar="URL",
        help="where to log in: your My Domain, or an emulator (default login.salesforce.com)",
    )
    org.add_argument(
        "--sandbox",
        action="store_true",
        default=None,
        help="log in to test.salesforce.com",
    )
    org.add_argument(
        "--api-version", metavar="X.Y", help="Salesforce API version (default: a current one)"
    )


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """The chosen flow and the values it uses (secrets included: never print one)."""

    flow: str
    values: Mapping[str, Any]

    def get(self, name: str) -> Any:
        return self.values.get(name)

    @property
    def login_url(self) -> str | None:
        value = self.values.get("login_url")
        return value if isinstance(value, str) else None

    @property
    def api_version(self) -> str | None:
        value = self.values.get("api_version")
        return value if isinstance(value, str) else None

    def secrets(self) -> list[str]:
        """Every secret value, to scrub from output."""
        names = (
            "consumer_secret",
            "password",
            "security_token",
            "refresh_token",
            "jwt_key_password",
            "access_token",
        )
        return [v for v in (self.values.get(n) for n in names) if isinstance(v, str) and v]

    def __repr__(self) -> str:
        return f"Credentials(flow={self.flow!r}, fields={sorted(self.values)!r})"


def _from_environment(name: str, environ: Mapping[str, str]) -> Any:
    raw = environ.get(ENVIRONMENT[name])
    if raw is None or raw == "":
        return None
    if name in _BOOLEANS:
        word = raw.strip().lower()
        if word not in _TRUE | _FALSE:
            # e.g. SFSTREAM_SANDBOX=sandbox read as "no": a login to the wrong org.
            raise CliError(
                f"{ENVIRONMENT[name]}={raw!r}: expected 1, true, yes or on (or 0, false, no, off)",
                ExitCode.USAGE,
            )
        return word in _TRUE
    return raw


def _choose_flow(flags: Mapping[str, Any], values: Mapping[str, Any], explicit: str | None) -> str:
    if explicit is not None:
        if explicit not in FLOWS:  # SFSTREAM_AUTH (--auth is checked by argparse)
            raise CliError(
                f"{ENVIRONMENT['auth']}={explicit!r}: not a flow",
                ExitCode.USAGE,
                f"one of {', '.join(FLOWS)}",
            )
        return explicit
    for source in (flags, values):
        for flow, name in _CHOOSERS:
            if source.get(name) or (name == "sf_org" and source.get(name) == ""):
                return flow
        if source.get("consumer_key") and source.get("consumer_secret") and source is values:
            return "client-credentials"
    raise CliError(
        "no credentials",
        ExitCode.USAGE,
        "give --sf-org ALIAS, --access-token with --instance-url, or a consumer key with "
        "--username/--password, --refresh-token or --jwt-key (or their SFSTREAM_* variables); "
        "see sfstream listen --help",
    )


_REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    "sf-org": (),
    "access-token": ("access_token", "instance_url"),
    "jwt": ("jwt_key", "consumer_key", "username"),
    "refresh-token": ("refresh_token", "consumer_key"),
    "password": ("consumer_key", "consumer_secret", "username", "password"),
    "client-credentials": ("consumer_key", "consumer_secret", "login_url"),
}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


_API_VERSION: Final = re.compile(r"[1-9][0-9]*\.[0-9]+")


def _check_api_version(flag: str | None, value: str | None) -> None:
    """A version the endpoints' paths take (``62.0``): anything else was put into the URL
    as given and met "Unsupported API version", or a 404 blamed on the event's name."""
    if value is None or _API_VERSION.fullmatch(value):
        return
    where = "--api-version" if flag is not None else ENVIRONMENT["api_version"]
    raise CliError(
        f"{where} {value!r}: expected an API version such as {DEFAULT_API_VERSION}",
        ExitCode.USAGE,
        "give the number only, major and minor (e.g. 62.0)",
    )


def resolve_credentials(
    args: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
    *,
    ask_password: Callable[[str], str] | None = None,
) -> Credentials:
    """Merge flags and environment, choose the flow and check it has what it needs.

    Raises:
        CliError: no flow can be chosen, or the chosen one misses a value (exit code 2).
    """
    env = os.environ if environ is None else environ
    flags = {name: getattr(args, name, None) for name in ENVIRONMENT}
    values = {
        name: flag if flag is not None else _from_environment(name, env)
        for name, flag in flags.items()
    }
    _check_api_version(flags["api_version"], values["api_version"])
    flow = _choose_flow(flags, values, values["auth"])
    if (
        flow == "password"
        and not values["password"]
        and values["username"]
        and ask_password is not None
    ):
        values["password"] = ask_password(f"Password for {values['username']}: ")
    missing = [name for name in _REQUIRED[flow] if not values.get(name)]
    if missing:
        names = ", ".join(f"{_option(n)} ({ENVIRONMENT[n]})" for n in missing)
        raise CliError(f"the {flow} flow needs {names}", ExitCode.USAGE)
    return Credentials(flow, values)


def terminal_password_prompt() -> Callable[[str], str] | None:
    """A password prompt when stdin is a terminal, else None (never block a pipe)."""
    if sys.stdin is not None and sys.stdin.isatty():
        return _ask_password
    return None


def _ask_password(prompt: str) -> str:
    """``getpass.getpass`` that Ctrl-C interrupts.

    The prompt runs inside the event loop, whose SIGINT handler only takes note of the
    signal for the loop: the blocked read went on, and Ctrl-C did nothing until Enter.
    Here SIGINT raises KeyboardInterrupt in the read (the command ends with status 130).
    """
    try:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # pragma: no cover - not the main thread
        return getpass.getpass(prompt)
    try:
        return getpass.getpass(prompt)
    except KeyboardInterrupt:
        sys.stderr.write("\n")  # end the prompt's line
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


def sf_org_display(
    alias: str | None,
    *,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> tuple[str, str]:
    """``(access_token, instance_url)`` of an org the Salesforce CLI is logged in to.

    Runs ``sf org display --json --target-org ALIAS`` (without an alias: the CLI's default
    org, see :func:`sfstream.salesforce.default_sf_org`). Its output holds the token: it is
    parsed, never echoed.

    Raises:
        CliError: ``sf`` is missing, fails, or prints no token (exit code 3).
    """
    try:
        result = library_sf_org_display(alias or None, run=run)
    except AuthenticationError as exc:
        raise CliError(str(exc), ExitCode.AUTHENTICATION) from None
    return result["accessToken"], result["instanceUrl"]


_URL_EXAMPLES: Final = {
    "login_url": "e.g. https://acme.my.salesforce.com, or http://127.0.0.1:8808 for an emulator",
    "instance_url": "e.g. https://acme.my.salesforce.com (the org's URL, as sf org display shows)",
}


def _refused_value(message: str) -> CliError:
    """The usage error for a value an authenticator refused, naming the option the user gave
    (the library names its parameter: "login_url must be an absolute https:// URL")."""
    for name, example in _URL_EXAMPLES.items():
        if message.startswith(name):
            option = f"{_option(name)} ({ENVIRONMENT[name]})"
            return CliError(option + message.removeprefix(name), ExitCode.USAGE, example)
    return CliError(message, ExitCode.USAGE)


def build_authenticator(
    credentials: Credentials,
    *,
    sf_run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> AuthenticatorBase:
    """The authenticator for ``credentials``.

    Raises:
        CliError: a value is refused (a login URL that is not https, an unreadable key...),
            or ``sf`` fails.
    """
    get = credentials.get
    flow = credentials.flow
    login_url = credentials.login_url
    sandbox = bool(get("sandbox"))
    try:
        if flow == "sf-org":
            token, instance = sf_org_display(get("sf_org"), run=sf_run)
            return AccessTokenAuthenticator(token, instance)
        if flow == "access-token":
            return AccessTokenAuthenticator(get("access_token"), get("instance_url"))
        if flow == "jwt":
            return JwtBearerAuthenticator(
                get("consumer_key"),
                get("username"),
                Path(get("jwt_key")),
                private_key_password=get("jwt_key_password"),
                sandbox=sandbox,
                login_url=login_url,
            )
        if flow == "refresh-token":
            return RefreshTokenAuthenticator(
                get("consumer_key"),
                get("consumer_secret"),
                get("refresh_token"),
                sandbox=sandbox,
                login_url=login_url,
            )
        if flow == "password":
            return PasswordAuthenticator(
                get("consumer_key"),
                get("consumer_secret"),
                get("username"),
                get("password") + (get("security_token") or ""),
                sandbox=sandbox,
                login_url=login_url,
            )
        return ClientCredentialsAuthenticator(
            get("consumer_key"), get("consumer_secret"), login_url=str(login_url)
        )
    except ValueError as exc:
        raise _refused_value(str(exc)) from None
    except ImportError as exc:
        raise CliError(str(exc), ExitCode.ERROR) from None
    except OSError as exc:
        raise CliError(f"{exc.filename or 'file'}: {exc.strerror or exc}", ExitCode.USAGE) from None
