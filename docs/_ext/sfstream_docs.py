"""Sphinx glue for sfstream's docs (a local extension, loaded by ``conf.py``).

- **``autoconstants``**: ``.. autoconstants:: sfstream.bayeux`` documents the constants and
  type aliases of a package's ``__all__``. sfstream defines them (with their ``#:`` comments)
  in private modules and re-exports them; autodoc only reads the comments of the module it
  documents, so it would skip them as undocumented.
- **Every public name is documented**: a name in the ``__all__`` of
  :data:`DOCUMENTED_PACKAGES` that the API reference does not describe is a warning (an error
  with ``-W``).
- **Attribute docs are prose.** napoleon reads the first line of an attribute or property
  docstring as ``type: description``, which turns "Always False: ..." into a type. Types come
  from annotations here, so napoleon is applied to everything but attributes and properties.
- **Short references.** Docstrings name their neighbours briefly (``:data:`TRANSITIONS```,
  ``:class:`ReplayExtension```) and objects are documented under their public modules, not the
  private ones they are defined in; a reference that Sphinx cannot resolve as written is looked
  up among the documented ``sfstream`` objects by its last components (preferring the class it
  is written in and its bases).
- **``changelog-fragments``**: a directive listing ``changes/*.md``, the notes of unreleased
  changes (``<issue>.<type>.md``), grouped by type as towncrier will group them.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import types
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.errors import PycodeError
from sphinx.ext.napoleon import _process_docstring
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode

PACKAGE = "sfstream"
logger = logging.getLogger(__name__)

# -- constants re-exported by a package -----------------------------------------------------


def _defining_comment(name: str, value: object) -> tuple[str, list[str]] | None:
    """The sfstream module that defines ``name`` as ``value`` and its ``#:`` comment."""
    for module_name, module in sorted(sys.modules.items()):
        if not module_name.startswith(PACKAGE + ".") or module is None:
            continue
        if getattr(module, name, _MISSING) is not value:
            continue
        try:
            analyzer = ModuleAnalyzer.for_module(module_name)
            analyzer.analyze()
        except PycodeError:
            continue
        comment = analyzer.attr_docs.get(("", name))
        if comment:
            return module_name, list(comment)
    return None


_MISSING = object()
#: Longer values are not shown (a table, a long type).
_MAX_VALUE_LENGTH = 70


class AutoConstants(SphinxDirective):
    """``.. autoconstants:: package``: the constants and type aliases of ``package.__all__``.

    autodoc documents a constant only when its ``#:`` comment is in the module it documents;
    sfstream defines its constants in private modules and re-exports them from the packages, so
    this directive finds the comment in the defining module and writes a ``py:data`` entry under
    the package's name.
    """

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        package = self.arguments[0]
        module = importlib.import_module(package)
        lines: list[str] = []
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if name.startswith("__") or not _is_constant(value):
                continue
            found = _defining_comment(name, value)
            if found is None:
                raise self.error(f"{package}.{name} has no #: comment where it is defined")
            defined_in, comment = found
            if defined_in == package:
                continue  # automodule documents it
            lines += [f".. py:data:: {name}", f"   :module: {package}"]
            text = _value_text(value)
            if len(text) <= _MAX_VALUE_LENGTH:
                lines.append(f"   :value: {text}")
            lines.append("")
            lines += [f"   {line}" if line else "" for line in comment]
            lines.append("")
        return _parse(self, lines, package)


def _parse(directive: SphinxDirective, lines: list[str], source: str) -> list[nodes.Node]:
    """``lines`` of markup (reStructuredText, or Markdown in a MyST page) as nodes."""
    container = nodes.container()
    directive.state.nested_parse(StringList(lines, source=source), 0, container)
    return list(container.children)


def _is_constant(value: object) -> bool:
    return not (isinstance(value, type | types.ModuleType) or inspect.isroutine(value))


def _value_text(value: object) -> str:
    text = repr(value)
    return text.replace("typing.", "").replace("collections.abc.", "")


# -- napoleon, except on attributes --------------------------------------------------------


def _process_docstring_except_attributes(
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    if what in ("data", "attribute", "property"):
        return
    _process_docstring(app, what, name, obj, options, lines)  # type: ignore[arg-type]


# -- references -----------------------------------------------------------------------------

_PRIVATE_PART = re.compile(r"\._[a-z]\w*")


def _resolve_short_reference(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.Element
) -> nodes.Element | None:
    if node.get("refdomain") != "py":
        return None
    target: str = node["reftarget"].lstrip(".~")
    objects = {
        name: entry
        for name, entry in env.get_domain("py").objects.items()  # type: ignore[attr-defined]
        if not entry.aliased
    }
    public = _PRIVATE_PART.sub("", target)
    if public != target:
        candidates = [public] if public in objects else []
    elif target.startswith(PACKAGE + "."):
        candidates = []
    else:
        suffix = "." + target
        candidates = [name for name in objects if name.endswith(suffix)]
        if len(candidates) > 1:
            candidates = _in_context(candidates, suffix, node)
    if len(candidates) != 1:
        return None
    entry = objects[candidates[0]]
    return make_refnode(
        app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, candidates[0]
    )


def _in_context(candidates: list[str], suffix: str, node: pending_xref) -> list[str]:
    """The candidates defined on the class the reference is written in (or a base of it)."""
    module_name = node.get("py:module")
    class_name = node.get("py:class")
    if not module_name or not class_name:
        return []
    owner: Any = importlib.import_module(module_name)
    for part in class_name.split("."):
        owner = getattr(owner, part, None)
    if not isinstance(owner, type):
        return []
    for base in owner.__mro__:
        matching = [name for name in candidates if _lookup(name[: -len(suffix)]) is base]
        if matching:
            return matching
    return []


def _lookup(dotted: str) -> object:
    module_name, _, rest = dotted.partition(".")
    value: object = importlib.import_module(module_name)
    for part in rest.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            value = importlib.import_module(f"{module_name}.{part}")
        module_name = f"{module_name}.{part}"
    return value


# -- every public name is documented somewhere -----------------------------------------------

#: The packages whose ``__all__`` the API reference covers.
DOCUMENTED_PACKAGES = (
    "sfstream",
    "sfstream.exceptions",
    "sfstream.salesforce",
    "sfstream.bayeux",
    "sfstream.emulator",
    "sfstream.testing",
)


def _check_api_coverage(app: Sphinx, env: BuildEnvironment) -> None:
    objects = env.get_domain("py").objects  # type: ignore[attr-defined]
    by_last_part: dict[str, list[str]] = {}
    for name in objects:
        by_last_part.setdefault(name.rpartition(".")[2], []).append(name)
    for package in DOCUMENTED_PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            value = getattr(module, name)
            if name.startswith("__") or isinstance(value, types.ModuleType):
                continue
            if f"{package}.{name}" in objects:
                continue
            if not any(_lookup(other) is value for other in by_last_part.get(name, [])):
                logger.warning(
                    "%s.%s is public but not in the API reference",
                    package,
                    name,
                    type="sfstream",
                    subtype="undocumented",
                )


# -- the changelog's unreleased fragments ---------------------------------------------------

FRAGMENT_TYPES = {
    "feature": "Features",
    "bugfix": "Bug fixes",
    "removal": "Removals and deprecations",
    "doc": "Documentation",
    "misc": "Other changes",
}
_FRAGMENT = re.compile(r"^(?P<issue>[\w-]+)\.(?P<type>\w+)(?:\.\d+)?\.md$")


class ChangelogFragments(SphinxDirective):
    """List ``changes/<issue>.<type>.md`` under one heading per type (no options)."""

    has_content = False
    required_arguments = 1  # the fragments' folder, relative to this document

    def run(self) -> list[nodes.Node]:
        folder = (Path(self.env.doc2path(self.env.docname)).parent / self.arguments[0]).resolve()
        self.env.note_dependency(str(folder))
        grouped: dict[str, list[tuple[str, Path]]] = {kind: [] for kind in FRAGMENT_TYPES}
        for path in sorted(folder.glob("*.md")):
            match = _FRAGMENT.match(path.name)
            if match is None:
                continue  # the folder's README
            kind = match["type"]
            if kind not in grouped:
                raise self.error(f"{path.name}: unknown fragment type {kind!r}")
            self.env.note_dependency(str(path))
            grouped[kind].append((match["issue"], path))
        lines: list[str] = []
        for kind, fragments in grouped.items():
            if not fragments:
                continue
            lines += [f"**{FRAGMENT_TYPES[kind]}**", ""]
            for issue, path in fragments:
                text = path.read_text(encoding="utf-8").strip().splitlines()
                lines.append(f"- {text[0]} (#{issue})" if len(text) == 1 else f"- {text[0]}")
                lines += [f"  {line}" if line else "" for line in text[1:]]
                if len(text) > 1:
                    lines[-1] += f" (#{issue})"
            lines.append("")
        if not lines:
            lines = ["No unreleased changes.", ""]
        return _parse(self, lines, str(folder))


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.autodoc")
    app.setup_extension("sphinx.ext.napoleon")
    for listener in list(app.events.listeners.get("autodoc-process-docstring", [])):
        if listener.handler is _process_docstring:
            app.disconnect(listener.id)
    app.connect("autodoc-process-docstring", _process_docstring_except_attributes)
    app.connect("missing-reference", _resolve_short_reference)
    app.connect("env-check-consistency", _check_api_coverage)
    app.add_directive("changelog-fragments", ChangelogFragments)
    app.add_directive("autoconstants", AutoConstants)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
