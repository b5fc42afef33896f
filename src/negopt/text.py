"""Negative-prompt text: split into terms, merge, dedupe, A1111 ``(term:1.2)`` weights, token budget.

A negative prompt is a comma-separated list of *terms*. Terms may carry AUTOMATIC1111 emphasis syntax --
``(blurry:1.3)``, ``((bad hands))``, ``[watermark]`` -- or be textual-inversion tokens such as ``easynegative``.
Everything here keeps a term's text verbatim; only the comparison key (:func:`term_key`) ignores case, emphasis and
spacing, so ``Blurry`` and ``(blurry:1.2)`` count as the same term when deduplicating, and the first spelling wins.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

__all__ = [
    "split_terms",
    "term_key",
    "dedupe_terms",
    "join_terms",
    "clean_negative",
    "strip_weights",
    "strip_echo",
    "merge_negatives",
    "fit_terms",
]

_WS = re.compile(r"\s+")
_WEIGHT = re.compile(r":\s*[-+]?\d*\.?\d+\s*$")
_OPEN, _CLOSE = "([{<", ")]}>"


def _unclosed_openers(text: str) -> set[int]:
    """Positions of the unescaped opening brackets of ``text`` that no closing bracket matches."""
    stack: list[int] = []
    prev = ""
    for i, ch in enumerate(text):
        if prev != "\\" and ch in _OPEN:
            stack.append(i)
        elif prev != "\\" and ch in _CLOSE and stack:
            stack.pop()
        prev = ch
    return set(stack)


def _wrapped(key: str) -> bool:
    """Whether ``key`` is one bracketed group: ``(a, b)`` yes, ``(a) (b)`` no."""
    if len(key) < 2 or key[0] not in "([" or key[-1] not in ")]":
        return False
    depth = 0
    for i, ch in enumerate(key):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth == 0 and i < len(key) - 1:
                return False
    return depth == 0


def split_terms(text: str | None) -> list[str]:
    """Split a negative prompt into terms at top-level commas and newlines.

    Commas inside brackets, as in ``(ugly, deformed:1.2)``, do not split. Whitespace is normalised; empty terms are
    dropped.

    Args:
        text: A negative prompt, or None.

    Returns:
        The terms, in order, with their text (case, emphasis) unchanged.
    """
    if not text:
        return []
    # An opening bracket that is never closed (common in model output) is literal: it must not swallow every comma
    # after it into one term.
    unclosed = _unclosed_openers(text)
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    prev = ""
    for i, ch in enumerate(text):
        if prev != "\\" and ch in _OPEN and i not in unclosed:
            depth += 1
        elif prev != "\\" and ch in _CLOSE and depth > 0:
            depth -= 1
        if depth == 0 and ch in ",\n;":
            terms.append("".join(current))
            current = []
        else:
            current.append(ch)
        prev = ch
    terms.append("".join(current))
    cleaned = (_WS.sub(" ", t).strip(" \t.") for t in terms)
    return [t for t in cleaned if t]


def term_key(term: str) -> str:
    """The comparison key of a term: lowercase, without A1111 emphasis brackets, weight, or extra spaces.

    Example:
        >>> term_key("((Blurry:1.3))")
        'blurry'
    """
    key = term.strip().lower()
    while True:
        before = key
        if _wrapped(key):
            key = key[1:-1].strip()
        key = _WEIGHT.sub("", key).strip() if key != before or ":" in key else key
        if key == before:
            break
    return _WS.sub(" ", key.replace("_", " ")).strip()


def dedupe_terms(terms: Iterable[str]) -> list[str]:
    """Drop repeated terms (by :func:`term_key`), keeping the first spelling and the order."""
    seen: set[str] = set()
    out: list[str] = []
    for term in terms:
        key = term_key(term)
        if key and key not in seen:
            seen.add(key)
            out.append(term)
    return out


def join_terms(terms: Iterable[str]) -> str:
    """Join terms into a negative prompt: ``"a, b, c"``."""
    return ", ".join(terms)


def clean_negative(text: str | None) -> str:
    """Normalise whitespace and commas and drop repeated terms; A1111 weight syntax is kept intact.

    Example:
        >>> clean_negative(" blurry ,, (bad hands:1.3),  Blurry , watermark ")
        'blurry, (bad hands:1.3), watermark'
    """
    return join_terms(dedupe_terms(split_terms(text)))


def strip_weights(text: str) -> str:
    """Remove A1111 emphasis: ``(blurry:1.3), ((bad hands)), [text]`` becomes ``blurry, bad hands, text``.

    Escaped brackets (``\\(``) are literal and kept; ``<lora:...>`` / ``<embedding>`` tokens are kept.
    """
    out = re.sub(r"(?<!\\):\s*[-+]?\d*\.?\d+\s*(?=[)\]])", "", text)
    out = re.sub(r"(?<!\\)[()\[\]]", "", out)
    for escaped in ("\\(", "\\)", "\\[", "\\]"):
        out = out.replace(escaped, escaped[1])
    return clean_negative(out)


def strip_echo(text: str, prompt: str) -> str:
    """Remove an echo of the input prompt from a model's output.

    A model that repeats its input either starts its output with the prompt or emits the prompt (or its terms) as
    terms of the negative. Both are removed.
    """
    stripped = text.strip()
    p = prompt.strip()
    # Only a whole-word prefix is an echo: the prompt "a cat" must not eat the start of "a catastrophe".
    whole_word = not (p[-1:].isalnum() and stripped[len(p) : len(p) + 1].isalnum())
    if p and stripped.lower().startswith(p.lower()) and whole_word:
        stripped = stripped[len(p) :].lstrip(" ,.:;-\n")
    prompt_keys = {term_key(t) for t in split_terms(prompt)} | {term_key(p)}
    prompt_keys.discard("")
    return join_terms(t for t in split_terms(stripped) if term_key(t) not in prompt_keys)


def merge_negatives(user: str | None, generated: str | None) -> str:
    """Merge the user's negative prompt with a generated one.

    The user's terms come first and verbatim (textual-inversion tokens included); generated terms follow unless the
    user already has them.

    Example:
        >>> merge_negatives("easynegative, (blurry:1.2)", "blurry, watermark")
        'easynegative, (blurry:1.2), watermark'
    """
    return join_terms(dedupe_terms([*split_terms(user), *split_terms(generated)]))


def fit_terms(terms: list[str], max_tokens: int, count_tokens: Callable[[str], int]) -> tuple[list[str], list[str]]:
    """Keep whole terms, in order, while the joined text fits within ``max_tokens``.

    A term that does not fit is dropped and the next, shorter one is still tried, so the budget is filled with whole
    terms in order of importance. Put the user's own terms first to keep them first.

    Args:
        terms: Terms, most important first.
        max_tokens: The budget, as counted by ``count_tokens`` on the joined text.
        count_tokens: Counts the tokens of a text (for a pipeline: its own tokenizer, without special tokens).

    Returns:
        ``(kept, dropped)``.
    """
    kept: list[str] = []
    dropped: list[str] = []
    for term in terms:
        candidate = [*kept, term]
        if count_tokens(join_terms(candidate)) <= max_tokens:
            kept = candidate
        else:
            dropped.append(term)
    return kept, dropped
