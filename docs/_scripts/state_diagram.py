"""Render the Bayeux state table as a Mermaid state diagram (docs/bayeux-states.md).

Run ``python docs/_scripts/state_diagram.py`` to rewrite the page; a test fails when the page
and :data:`sfstream.bayeux.TRANSITIONS` disagree, so the diagram never drifts.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from sfstream.bayeux import TRANSITIONS, Input, State

PAGE = Path(__file__).resolve().parents[1] / "bayeux-states.md"


def render() -> str:
    edges: dict[tuple[State, State], list[Input]] = defaultdict(list)
    for (source, event), target in TRANSITIONS.items():
        edges[(source, target)].append(event)
    lines = [
        "# Bayeux session states",
        "",
        "Generated from `sfstream.bayeux.TRANSITIONS` by `docs/_scripts/state_diagram.py`;",
        "do not edit by hand. Any input not drawn here is illegal in that state: it raises",
        "`ProtocolError` and moves the session to `ERROR`.",
        "",
        "```mermaid",
        "stateDiagram-v2",
        f"    [*] --> {State.UNCONNECTED.name}",
    ]
    order = list(State)
    for (source, target), events in sorted(
        edges.items(), key=lambda item: (order.index(item[0][0]), order.index(item[0][1]))
    ):
        label = " / ".join(event.value for event in events)
        lines.append(f"    {source.name} --> {target.name}: {label}")
    lines += [
        f"    {State.DISCONNECTED.name} --> [*]",
        f"    {State.ERROR.name} --> [*]",
        "```",
        "",
    ]
    lines += ["| state | meaning |", "|---|---|"]
    for state in State:
        doc = _member_doc(state)
        lines.append(f"| `{state.name}` | {doc} |")
    lines.append("")
    return "\n".join(lines)


def _member_doc(state: State) -> str:
    source = Path(sys.modules[State.__module__].__file__ or "").read_text()
    marker = f"    {state.name} = "
    comment: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            comment.append(stripped[2:].strip())
        elif line.startswith(marker):
            return " ".join(comment)
        else:
            comment = []
    return ""


if __name__ == "__main__":
    PAGE.write_text(render())
    print(f"wrote {PAGE}")
