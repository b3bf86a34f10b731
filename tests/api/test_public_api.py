"""The public surface: every exported name exists, and nothing public is left unexported."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

import sfstream

PACKAGES = ["sfstream", "sfstream.bayeux", "sfstream.exceptions"]


def public_names(module: ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, ModuleType)
        and getattr(value, "__module__", module.__name__).startswith("sfstream")
        and name not in {"annotations"}
    }


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = set(module.__all__)
    assert len(exported) == len(module.__all__), "duplicates in __all__"
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names {item!r}, which does not exist"
    missing = public_names(module) - exported
    assert not missing, f"public but not in {name}.__all__: {sorted(missing)}"


def test_version_and_py_typed() -> None:
    from importlib.resources import files

    assert sfstream.__version__
    assert files("sfstream").joinpath("py.typed").is_file()


def test_aiosfstream_exception_names() -> None:
    from sfstream import exceptions

    assert exceptions.AiosfstreamException is exceptions.SfstreamError
    tree = {
        "AuthenticationError": "SfstreamError",
        "ClientError": "SfstreamError",
        "ClientInvalidOperation": "ClientError",
        "TransportError": "SfstreamError",
        "TransportInvalidOperation": "TransportError",
        "TransportTimeoutError": "TransportError",
        "TransportConnectionClosed": "TransportError",
        "ServerError": "SfstreamError",
        "ReplayError": "SfstreamError",
    }
    for child, parent in tree.items():
        assert issubclass(getattr(exceptions, child), getattr(exceptions, parent))
