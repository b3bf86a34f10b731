"""Generated documentation stays in step with the code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_state_diagram_page_matches_the_state_table() -> None:
    spec = importlib.util.spec_from_file_location(
        "state_diagram", ROOT / "docs" / "_scripts" / "state_diagram.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = (ROOT / "docs" / "bayeux-states.md").read_text()
    assert page == module.render(), "run: python docs/_scripts/state_diagram.py"
    assert "POLLING --> CONNECTED: connect ok" in page
