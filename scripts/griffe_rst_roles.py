"""A griffe extension for the docs build: Sphinx roles become links, doctest examples become code blocks.

negopt's docstrings cross-reference with Sphinx roles (``:class:`~negopt.NegOptGenerator```), which read well in
``help()`` and IDEs but which mkdocstrings would print verbatim. This rewrites each role into an *optional*
mkdocs-autorefs reference: a link when the target is rendered somewhere in the API pages, plain code otherwise, so
the strict build never fails on a reference to an undocumented helper. ``~`` shows the last name only, as in Sphinx.
Relative names (``:meth:`analyze```) are looked up from the documented object outward.

Google-style ``Example:`` sections hold doctest lines (``>>> gen("a cat")``), which markdown would read as nested
block quotes; each run of them is fenced as a ``pycon`` code block, without its ``# doctest:`` directives.

Used from mkdocs.yml (``extensions: [scripts/griffe_rst_roles.py]``); not part of the package.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_DOCTEST_DIRECTIVE = re.compile(r"\s*#\s*doctest:.*$")
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`<>]+)`")


def _lookup(collection: Any, path: str) -> bool:
    try:
        collection[path]
    except Exception:  # griffe raises KeyError, AliasResolutionError, ... for a path it cannot walk
        return False
    return True


def fence_doctests(text: str) -> str:
    """Wrap each run of doctest lines (a ``>>>`` line, its ``...`` continuations and its output) in a fence."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.lstrip().startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        out.append(f"{indent}```pycon")
        while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
            out.append(_DOCTEST_DIRECTIVE.sub("", lines[i]))
            i += 1
        out.append(f"{indent}```")
    return "\n".join(out)


class RstRoles(griffe.Extension):
    """Rewrite Sphinx cross-reference roles and fence doctest examples in every docstring of the package."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None:
            return
        if ">>>" in docstring.value:
            docstring.value = fence_doctests(docstring.value)
        if ":`" not in docstring.value:
            return
        collection = loader.modules_collection

        def resolve(target: str) -> str:
            if target.startswith("negopt"):
                return target
            scope: griffe.Object | None = obj
            while scope is not None:  # the object itself, then its class, module, package
                candidate = f"{scope.path}.{target}"
                if _lookup(collection, candidate):
                    return candidate
                scope = scope.parent
            return target

        def replace(match: re.Match[str]) -> str:
            short, target = match.group(1), match.group(2).strip().rstrip("()")
            shown = target.rsplit(".", 1)[-1] if short else target
            identifier = html.escape(resolve(target), quote=True)
            return f'<autoref identifier="{identifier}" optional><code>{html.escape(shown)}</code></autoref>'

        docstring.value = _ROLE.sub(replace, docstring.value)
