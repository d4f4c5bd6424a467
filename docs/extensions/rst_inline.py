"""A Griffe extension: the reStructuredText that nexus-reactive's docstrings use, as Markdown.

The docstrings follow Google style (``Args:``, ``Returns:``, ``Raises:``) for their
sections, which mkdocstrings parses, but keep two reStructuredText habits that help
readers of ``help()`` and IDE tooltips: cross-reference roles (``:class:`Phase```) and
literal blocks introduced by ``::``. Markdown knows neither, so the API reference would
show them raw. Before mkdocstrings renders a docstring, this extension rewrites

- a role into a cross-reference to the documented object (``<autoref optional>``: a link
  where the object has a page anchor, plain code where it has none, such as
  ``msgspec.Struct``);
- ``text::`` plus an indented block into ``text:`` plus a fenced block, highlighted as
  Python when it parses as Python.

The source stays as it is, so that the modules other people edit need no sweep, and a
new docstring in the house style renders without anyone remembering this file.
Configured in mkdocs.yml (``extensions:`` of the Python handler).
"""

from __future__ import annotations

import ast
import functools
import html
import re
import textwrap
from typing import Any

import griffe

PACKAGE = "nexus_reactive"
#: Where public names are documented (docs/api.md), most specific last.
PUBLIC_NAMESPACES = (PACKAGE, f"{PACKAGE}.server")

_ROLE = re.compile(r":(?:py:)?(class|func|meth|attr|exc|mod|obj|data|const):`([^`]+)`")
_LITERAL_INTRO = re.compile(r"^(?P<indent>\s*)(?P<text>.*?)(?P<colons>\s*::)\s*$")


class RstInline(griffe.Extension):
    """Rewrites every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path != PACKAGE:
            return
        for obj in _walk(pkg):
            if obj.docstring is not None:
                value = _literal_blocks(obj.docstring.value)
                obj.docstring.value = _ROLE.sub(functools.partial(_crossref, pkg, obj), value)


def _walk(obj: griffe.Object) -> Any:
    yield obj
    for member in obj.members.values():
        if not member.is_alias and isinstance(member, griffe.Object):
            yield from _walk(member)


def _crossref(pkg: griffe.Module, obj: griffe.Object, match: re.Match[str]) -> str:
    """``:role:`target``` as an optional autorefs reference, shown as code."""
    target = match.group(2).strip()
    title = target
    if target.startswith("~"):  # Sphinx: show the last component only
        target = target[1:]
        title = target.rsplit(".", 1)[-1]
    target = target.lstrip(".!").removesuffix("()")
    title = title.lstrip(".!")
    identifier = _identifier(pkg, obj, target)
    code = f"<code>{html.escape(title)}</code>"
    if identifier is None:
        return code
    return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'


def _identifier(pkg: griffe.Module, obj: griffe.Object, target: str) -> str | None:
    """The documented path of ``target`` as seen from ``obj``, if it is in the package."""
    if target.startswith(f"{PACKAGE}."):
        return target
    head, _, rest = target.partition(".")
    # A public name: documented under the namespace that re-exports it.
    for namespace in reversed(PUBLIC_NAMESPACES):
        module = pkg if namespace == PACKAGE else pkg.get_member(namespace.split(".", 1)[1])
        if head in module.members and not head.startswith("_"):
            return f"{namespace}.{target}"
    # A member of the enclosing class or module (``:meth:`close``` in a method).
    scope: griffe.Object | None = obj if obj.is_class or obj.is_module else obj.parent
    while scope is not None:
        if head in scope.members:
            path = f"{scope.path}.{head}"
            return f"{path}.{rest}" if rest else path
        scope = scope.parent
    try:
        resolved = obj.resolve(head)
    except (griffe.NameResolutionError, ValueError):
        return None
    if not resolved.startswith(f"{PACKAGE}."):
        return None  # another library's object: no page here to link to
    return f"{resolved}.{rest}" if rest else resolved


def _literal_blocks(text: str) -> str:
    """reST literal blocks (``Paragraph::`` + indented lines) as fenced code."""
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        intro = _LITERAL_INTRO.match(line)
        if intro is None or not _indented_block_follows(lines, index, len(intro["indent"])):
            out.append(line)
            index += 1
            continue
        indent = intro["indent"]
        if intro["text"].strip():
            out.append(f"{indent}{intro['text']}:")  # "Example::" reads "Example:"
        index += 1
        block: list[str] = []
        while index < len(lines) and (
            not lines[index].strip() or _indent(lines[index]) > len(indent)
        ):
            block.append(lines[index])
            index += 1
        while block and not block[-1].strip():
            block.pop()
        code = textwrap.dedent("\n".join(block)).strip("\n")
        out.append("")
        out.append(f"{indent}```{_language(code)}")
        out.extend(f"{indent}{row}" if row else "" for row in code.splitlines())
        out.append(f"{indent}```")
        out.append("")
    return "\n".join(out)


def _indented_block_follows(lines: list[str], index: int, indent: int) -> bool:
    for line in lines[index + 1 :]:
        if line.strip():
            return _indent(line) > indent
    return False


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _language(code: str) -> str:
    try:
        ast.parse(code)
    except SyntaxError:
        try:  # top-level await, as in the notebook examples
            compile(code, "<docstring>", "exec", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError:
            return "text"
    return "python"
