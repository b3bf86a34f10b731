"""Fixtures for the reliability tests, and the ``slow`` marker.

Tests marked ``slow`` (the CI-sized chaos run, the longer crash-safety run, the blackhole
timing) are skipped unless they are selected explicitly (``pytest -m slow``, as
``nox -s chaos`` does) or ``SFSTREAM_SLOW=1`` is set; their short forms run by default.

Fixtures:

``org``
    A started :class:`~tests.reliability._harness.ProxiedOrg`: an emulator (hold 0.2 s,
    session expiry 1 s) reached only through a :class:`~tests.reliability._proxy.FaultProxy`.
``tally``
    A :class:`~tests.reliability._harness.Tally` of published and delivered replay ids.
``status_log``
    A :class:`~tests.reliability._harness.StatusLog` to pass as ``on_status``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from ._harness import ProxiedOrg, StatusLog, Tally

SLOW_REASON = "slow: select it with -m slow (nox -s chaos) or set SFSTREAM_SLOW=1"


def pytest_configure(config: pytest.Config) -> None:
    # Also registered in pyproject.toml's markers; registering twice is harmless.
    config.addinivalue_line(
        "markers", "slow: a long reliability run (nox -s chaos); skipped unless selected"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("SFSTREAM_SLOW") == "1" or "slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason=SLOW_REASON)
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


@pytest.fixture
async def org() -> AsyncIterator[ProxiedOrg]:
    async with ProxiedOrg() as proxied:
        yield proxied


@pytest.fixture
def tally() -> Tally:
    return Tally()


@pytest.fixture
def status_log() -> StatusLog:
    return StatusLog()
