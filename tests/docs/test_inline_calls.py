"""Calls the pages show inline (in running text, not in a code block) work as shown.

An inline call such as ``authenticator_from_login(username=..., password=...)`` is run with
each ``...`` replaced by a made-up string: it must build what the page says it builds, with no
other argument needed (no network is used).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sfstream import AuthenticatorBase
from sfstream.salesforce import authenticator_from_login

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCED = re.compile(r"^\s*(`{3,}|~{3,}).*?^\s*\1\s*$", re.MULTILINE | re.DOTALL)


def inline_calls(name: str) -> list[pytest.ParameterSet]:
    calls = []
    for page in PAGES:
        text = _FENCED.sub("", page.read_text(encoding="utf-8"))
        for span in re.findall(r"`([^`]+)`", text):
            span = " ".join(span.split())
            if span.startswith(f"{name}(") and span.endswith(")"):
                calls.append(pytest.param(span, id=f"{page.name}:{span}"))
    return calls


def test_the_readme_shows_both_ways_to_log_in() -> None:
    calls = [str(param.values[0]) for param in inline_calls("authenticator_from_login")]
    assert any("session_id" in call for call in calls), calls
    assert any("password" in call for call in calls), calls


@pytest.mark.parametrize("call", inline_calls("authenticator_from_login"))
def test_an_inline_authenticator_from_login_call_builds_an_authenticator(call: str) -> None:
    arguments = re.sub(
        r"(\w+)=\.\.\.",
        lambda m: f"{m[1]}={'https://acme.my.salesforce.com' if m[1] == 'instance_url' else 'x'!r}",
        call[len("authenticator_from_login(") : -1],
    )
    namespace = {"authenticator_from_login": authenticator_from_login}
    built = eval(f"authenticator_from_login({arguments})", namespace)  # noqa: S307 - the docs' text
    assert isinstance(built, AuthenticatorBase)
