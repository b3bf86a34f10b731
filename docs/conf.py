"""Sphinx configuration: MyST Markdown pages, the furo theme, an API reference from docstrings.

Built by ``nox -s docs``: ``sphinx-build -W --keep-going -b html docs docs/_build/html``.
Nothing here reaches the network (no intersphinx): references to the standard library and to
third-party packages are left as plain text (see ``nitpick_ignore_regex``).
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

import sfstream  # noqa: E402 - after the path set-up

project = "sfstream"
author = "sfstream maintainers"
copyright = "sfstream maintainers"
release = sfstream.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxcontrib.mermaid",
    "sphinx_copybutton",
    "sfstream_docs",  # _ext/sfstream_docs.py
]

root_doc = "index"
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_ext", "_scripts", "README.md"]

# -- MyST ----------------------------------------------------------------------------------
# ```mermaid fences (GitHub renders them too) are the mermaid directive.
myst_fence_as_directive = ["mermaid"]
# Links like [Start it](#start-it) in emulator.md.
myst_heading_anchors = 3

# -- autodoc + napoleon (Google-style docstrings) ------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": True}
# Show defaults as written (json.dumps, not <function dumps>) and type aliases by name.
autodoc_preserve_defaults = True
autodoc_type_aliases = {
    "Action": "sfstream.bayeux.Action",
    "JSONDumps": "sfstream.bayeux.JSONDumps",
    "JSONLoads": "sfstream.bayeux.JSONLoads",
    "ReplayParameter": "sfstream.salesforce.ReplayParameter",
}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Every reference must resolve, except to modules we cannot link without intersphinx.
nitpicky = True
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(abc|asyncio|collections|concurrent|datetime|enum|os|pathlib|shelve|ssl|subprocess|types|typing"
        r"|aiohttp|multidict|yarl|pytest|_pytest)(\..*)?",
    ),
    # Private helpers that appear in public signatures and docstrings; not documented.
    (r"py:.*", r"sfstream(\.\w+)*\._\w+\.\w+"),
    (r"py:.*", r"(PublicKey|FaultQueue|ResubscribeHook)"),
]

# -- HTML ----------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"sfstream {release}"

# -- sphinx-copybutton ---------------------------------------------------------------------
# Copy buttons on code blocks; a "$ " or ">>> " prompt is left out of what is copied.
copybutton_prompt_text = r"\$ |>>> |\.\.\. "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = False
