"""Test your own code against an emulated Salesforce org: sfstream's pytest plugin.

Installing sfstream registers this module as the pytest plugin ``sfstream`` (entry point
``pytest11``), so its fixtures are available in every test with nothing to import
(``-p no:sfstream`` turns the plugin off). The fixtures are async: they need
`pytest-asyncio <https://pypi.org/project/pytest-asyncio/>`_ with ``asyncio_mode = "auto"``
(or tests marked ``@pytest.mark.asyncio``). ::

    import pytest

    from sfstream.testing import receive_messages


    @pytest.mark.sfstream_emulator(events={"Order__e": ["OrderId__c", "Amount__c"]})
    async def test_orders_arrive(sfstream_emulator, sfstream_client):
        await sfstream_client.subscribe("/event/Order__e")
        await sfstream_emulator.publish("/event/Order__e", {"Amount__c": 42})
        [message] = await receive_messages(sfstream_client, 1)
        assert message["data"]["payload"]["Amount__c"] == 42

Fixtures (all function-scoped):

``sfstream_emulator``
    A running :class:`~sfstream.emulator.Emulator` with short timings and a platform event
    ``Order__e`` declaring ``OrderId__c`` and ``Amount__c`` (:data:`DEFAULT_EMULATOR_OPTIONS`;
    like a real org, it refuses fields an event does not declare). Its keyword arguments come
    from the ``sfstream_emulator_options`` fixture (override it in a ``conftest.py``), updated
    by the ``@pytest.mark.sfstream_emulator(**options)`` markers of the test (the closest wins).
``sfstream_credentials``
    The keyword arguments that point a :class:`~sfstream.SalesforceStreamingClient` at it:
    ``consumer_key``, ``consumer_secret``, ``username``, ``password`` and ``login_url``.
``sfstream_client_factory``
    ``sfstream_client_factory(**options)`` builds a (not yet opened)
    :class:`~sfstream.SalesforceStreamingClient` for the emulator; any constructor argument may
    be given. Every client it built is closed when the test ends.
``sfstream_client``
    An opened client from the factory, with the options of the ``sfstream_client_options``
    fixture updated by ``@pytest.mark.sfstream_client(**options)``.

Importing :mod:`sfstream` does not import this module (nor pytest).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TypedDict

import pytest

if TYPE_CHECKING:
    from sfstream.bayeux import Message
    from sfstream.emulator import Emulator
    from sfstream.salesforce import Client, SalesforceStreamingClient

__all__ = [
    "DEFAULT_EMULATOR_OPTIONS",
    "DEFAULT_TIMEOUT",
    "ClientFactory",
    "Credentials",
    "emulator_credentials",
    "receive_messages",
    "wait_for_subscription",
]

#: The emulator's options unless a test says otherwise: a connect is held 0.5 s instead of
#: Salesforce's 110 s, a silent session expires after 5 s instead of 40 s, and ``Order__e``
#: declares the custom fields ``OrderId__c`` and ``Amount__c`` (the only ones it accepts).
DEFAULT_EMULATOR_OPTIONS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "hold_time": 0.5,
        "session_expiry": 5.0,
        "events": MappingProxyType({"Order__e": ("OrderId__c", "Amount__c")}),
    }
)
#: Seconds the helpers wait before they fail the test.
DEFAULT_TIMEOUT: Final = 5.0

#: ``sfstream_client_factory``: keyword arguments of
#: :class:`~sfstream.SalesforceStreamingClient` in, an unopened client out.
ClientFactory = Callable[..., "SalesforceStreamingClient"]


class Credentials(TypedDict):
    """The keyword arguments that point a :class:`~sfstream.SalesforceStreamingClient` at an
    emulated org (``SalesforceStreamingClient(**credentials)``)."""

    consumer_key: str
    consumer_secret: str
    username: str
    password: str
    login_url: str


_FIXTURES: Final = frozenset(
    {
        "sfstream_emulator",
        "sfstream_credentials",
        "sfstream_client_factory",
        "sfstream_client",
    }
)
_NO_ASYNC_PLUGIN: Final = (
    "the sfstream fixtures are async and need pytest-asyncio: `pip install pytest-asyncio` and "
    'set `asyncio_mode = "auto"` in the [tool.pytest.ini_options] of pyproject.toml (or mark '
    "async tests with @pytest.mark.asyncio)"
)

# In pytest-asyncio's strict mode only its own decorator makes an async fixture run; without
# pytest-asyncio, pytest's is used and pytest_runtest_setup says what is missing.
if TYPE_CHECKING:
    _async_fixture = pytest.fixture
else:
    try:
        from pytest_asyncio import fixture as _async_fixture
    except ImportError:  # pragma: no cover - pytest-asyncio is a test dependency of sfstream
        _async_fixture = pytest.fixture


# -- helpers ----------------------------------------------------------------------------------


def emulator_credentials(emulator: Emulator) -> Credentials:
    """The keyword arguments that point a :class:`~sfstream.SalesforceStreamingClient` at
    ``emulator``: ``consumer_key``, ``consumer_secret``, ``username``, ``password``,
    ``login_url``."""
    return {
        "consumer_key": emulator.consumer_key,
        "consumer_secret": emulator.consumer_secret,
        "username": emulator.username,
        "password": emulator.password,
        "login_url": emulator.login_url,
    }


async def receive_messages(
    client: Client,
    count: int,
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - a test helper's bound, not a deadline
) -> list[Message]:
    """The next ``count`` messages of ``client``.

    Raises:
        AssertionError: fewer than ``count`` messages came within ``timeout`` seconds (the
            message lists those that did).
    """
    messages: list[Message] = []
    try:
        async with asyncio.timeout(timeout):
            while len(messages) < count:
                messages.append(await client.receive())
    except TimeoutError:
        raise AssertionError(
            f"received {len(messages)} of {count} messages in {timeout} s: {messages}"
        ) from None
    return messages


async def wait_for_subscription(
    emulator: Emulator,
    channel: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - a test helper's bound, not a deadline
) -> None:
    """Wait until a client of ``emulator`` is subscribed to ``channel``.

    Events published before a subscription with new events only are not delivered to it: when
    the code under test subscribes in a task of its own, wait for this before publishing.

    Raises:
        AssertionError: no session subscribed to ``channel`` within ``timeout`` seconds.
    """
    try:
        async with asyncio.timeout(timeout):
            # The emulator signals no subscription event: poll its sessions.
            while not _subscribed(emulator, channel):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"nothing subscribed to {channel} within {timeout} s") from None


def _subscribed(emulator: Emulator, channel: str) -> bool:
    return any(channel in session["subscriptions"] for session in emulator.sessions())


def _marker_options(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    """The keyword arguments of the test's ``name`` markers; the closest marker wins."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(name))):
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{name} takes keyword arguments only")
        options.update(marker.kwargs)
    return options


# -- hooks ------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sfstream_emulator(**options): keyword arguments of sfstream.emulator.Emulator for the "
        "sfstream_emulator fixture",
    )
    config.addinivalue_line(
        "markers",
        "sfstream_client(**options): keyword arguments of SalesforceStreamingClient for the "
        "sfstream_client fixture",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    fixturenames = getattr(item, "fixturenames", ())
    if _FIXTURES.isdisjoint(fixturenames):
        return
    plugins = item.config.pluginmanager
    if not (plugins.hasplugin("asyncio") or plugins.hasplugin("anyio")):
        pytest.fail(_NO_ASYNC_PLUGIN, pytrace=False)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def sfstream_emulator_options() -> dict[str, Any]:
    """Keyword arguments of the ``sfstream_emulator`` fixture's Emulator. Override it in a
    ``conftest.py`` to change them for many tests."""
    return dict(DEFAULT_EMULATOR_OPTIONS)


@_async_fixture
async def sfstream_emulator(
    request: pytest.FixtureRequest, sfstream_emulator_options: dict[str, Any]
) -> AsyncIterator[Emulator]:
    """A running emulated org on loopback; stopped after the test."""
    from sfstream.emulator import Emulator

    options = {**sfstream_emulator_options, **_marker_options(request, "sfstream_emulator")}
    async with Emulator(**options) as emulator:
        yield emulator


@pytest.fixture
def sfstream_credentials(sfstream_emulator: Emulator) -> Credentials:
    """The keyword arguments that point a SalesforceStreamingClient at ``sfstream_emulator``."""
    return emulator_credentials(sfstream_emulator)


@_async_fixture
async def sfstream_client_factory(
    sfstream_credentials: Credentials,
) -> AsyncIterator[ClientFactory]:
    """Build unopened clients for ``sfstream_emulator``; each is closed after the test."""
    from sfstream.salesforce import SalesforceStreamingClient

    clients: list[SalesforceStreamingClient] = []

    def make(**options: Any) -> SalesforceStreamingClient:
        client = SalesforceStreamingClient(**{**sfstream_credentials, **options})
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
def sfstream_client_options() -> dict[str, Any]:
    """Keyword arguments of the ``sfstream_client`` fixture's client. Override it in a
    ``conftest.py`` to change them for many tests."""
    return {}


@_async_fixture
async def sfstream_client(
    request: pytest.FixtureRequest,
    sfstream_client_factory: ClientFactory,
    sfstream_client_options: dict[str, Any],
) -> SalesforceStreamingClient:
    """An opened client connected to ``sfstream_emulator``; closed after the test."""
    options = {**sfstream_client_options, **_marker_options(request, "sfstream_client")}
    client = sfstream_client_factory(**options)
    await client.open()
    return client
