"""The README's BayeuxClient example runs, unchanged but for its URL, against a real Faye."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from ._peers import FayeServer

pytestmark = pytest.mark.interop

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE_URL = "http://127.0.0.1:8000/bayeux"


def readme_bayeux_example() -> str:
    text = README.read_text()
    section = text[text.index("## The Bayeux client") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's Bayeux section has no python example"
    code = match.group(1)
    assert EXAMPLE_URL in code
    return code


async def test_readme_example_against_faye(faye: FayeServer) -> None:
    code = readme_bayeux_example().replace(EXAMPLE_URL, faye.url)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == "/chat/general {'text': 'hello'}"
