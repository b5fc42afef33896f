"""How the built-in vocabulary is read: comma-separated specs become word-boundary patterns and term tuples.

The tables in :mod:`negopt.builtin.vocabulary` are written with these helpers; the rules in
:mod:`negopt.builtin.rules` use the :class:`Group` and :class:`Concept` records they build.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Concept", "Group", "SourcedTerm", "concept", "exact", "group", "split_spec", "word_table", "words"]


# ---------------------------------------------------------------------------------------------------- vocabulary
def split_spec(spec: str) -> list[str]:
    return [item.strip() for item in spec.split(",") if item.strip()]


def words(spec: str) -> str:
    """A word-boundary regex over comma-separated alternatives (regex fragments), each allowing a plural ``s``/``es``.

    A space in an alternative matches any run of spaces or hyphens (or none): "black and white" also matches
    "black-and-white".
    """
    body = "|".join(a.replace(" ", r"[\s-]*") for a in split_spec(spec))
    return rf"\b(?:{body})(?:e?s)?\b"


def exact(spec: str) -> str:
    """A regex that matches a whole term key equal to one of the comma-separated ``spec``."""
    return r"^(?:" + "|".join(re.escape(t) for t in split_spec(spec)) + r")$"


@dataclass(frozen=True)
class Group:
    """Terms added when ``pattern`` matches the prompt; the first ``core`` of them rank above the rest.

    ``context`` words count only beside a group named in ``requires`` ("holding" means hands for "a woman holding a
    cup", not for "a vase holding flowers").
    """

    name: str
    pattern: re.Pattern[str]
    terms: tuple[str, ...]
    core: int
    context: re.Pattern[str] | None = None
    requires: tuple[str, ...] = ()


def group(
    name: str, pattern: str, terms: str, core: int, context: str | None = None, requires: tuple[str, ...] = ()
) -> Group:
    return Group(
        name,
        re.compile(pattern),
        tuple(split_spec(terms)),
        core,
        None if context is None else re.compile(context),
        requires,
    )


def word_table(table: dict[int, str]) -> dict[str, int]:
    """``{count: "word word ..."}`` -> ``{word: count}``."""
    return {word: n for n, words in table.items() for word in words.split()}


@dataclass(frozen=True)
class Concept:
    """Something a prompt can ask for (``asks``, on the prompt) and the terms that contradict it (``drops``).

    ``negatable`` concepts are looked up in the prompt with negated phrases removed ("no blur" does not ask for
    blur); the others in the whole prompt.
    """

    name: str
    asks: re.Pattern[str]
    drops: re.Pattern[str]
    negatable: bool = True


def concept(name: str, asks: str, drops: str, negatable: bool = True) -> Concept:
    return Concept(name, re.compile(asks), re.compile(drops), negatable)


@dataclass(frozen=True)
class SourcedTerm:
    """A term with why a negative names it and where users pass it (keys of a sources table).

    ``place`` says where it goes: ``"core"`` (every negative of its kind), a subject group's name (a prompt that
    shows that subject), or ``"extra"`` (after the subject and style terms).
    """

    term: str
    place: str
    reason: str
    sources: tuple[str, ...]
