"""Negative-prompt text: split into terms, merge, dedupe, A1111 ``(term:1.2)`` weights, token budget.

A negative prompt is a comma-separated list of *terms*. Terms may carry AUTOMATIC1111 emphasis syntax --
``(blurry:1.3)``, ``((bad hands))``, ``[watermark]`` -- or be textual-inversion tokens such as ``easynegative``.
Everything here keeps a term's text verbatim; only the comparison key (:func:`term_key`) ignores case, emphasis and
spacing, so ``Blurry`` and ``(blurry:1.2)`` count as the same term when deduplicating, and the first spelling wins.
"""

from __future__ import annotations

import math
import re
import warnings
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
    "parse_attention",
    "KNOWN_NEGATIVE_EMBEDDINGS",
    "ROUND_BRACKET_MULTIPLIER",
    "BREAK_WEIGHT",
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


# -- AUTOMATIC1111 emphasis -----------------------------------------------------------------------------------------

#: The multiplier of one pair of round brackets, ``(x)``; square brackets ``[x]`` divide by it (A1111's values).
ROUND_BRACKET_MULTIPLIER = 1.1

#: The weight that marks a ``BREAK`` in :func:`parse_attention`'s output (A1111 uses the same marker).
BREAK_WEIGHT = -1.0

# A1111's tokens (modules/prompt_parser.py): escapes, brackets, a ``:weight)`` closer, text runs, a stray colon.
_RE_ATTENTION = re.compile(
    r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|
\(|\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|]|
[^\\()\[\]:]+|
:
""",
    re.X,
)
_RE_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
# A ``:word)`` closer whose word A1111 would silently read as text: a weight that is not a number.
_RE_BAD_WEIGHT = re.compile(r":\s*([^\s()\[\]:\\]*)\s*\)")

#: Popular negative textual-inversion embeddings, by the token people write (compared ignoring case). Seeing one in a
#: negative while the pipeline has no embedding loaded under that token means it will be read as plain words.
KNOWN_NEGATIVE_EMBEDDINGS: frozenset[str] = frozenset(
    {
        "easynegative",
        "easynegativev2",
        "badhandv4",
        "bad-hands-5",
        "bad_prompt",
        "bad_prompt_version2",
        "bad-artist",
        "bad-artist-anime",
        "bad-picture-chill-75v",
        "baddream",
        "unrealisticdream",
        "fastnegativev2",
        "negative_hand-neg",
        "ng_deepnegative_v1_75t",
        "verybadimagenegative_v1.3",
        "deepnegative",
        "epicnegative",
        "negativexl_d",
        "unaestheticxl_v13",
    }
)


def parse_attention(text: str) -> list[tuple[str, float]]:
    """Read AUTOMATIC1111's emphasis syntax into ``(text, weight)`` runs, the way A1111's ``parse_prompt_attention``
    does.

    ``(x)`` multiplies the weight of ``x`` by 1.1, ``((x))`` by 1.21, ``[x]`` divides it by 1.1, ``(x:1.3)`` multiplies
    it by 1.3; ``\\(``, ``\\)``, ``\\[``, ``\\]`` and ``\\\\`` are literal characters; ``BREAK`` (upper case, a word of
    its own) starts a new 75-token chunk and comes out as ``("BREAK", BREAK_WEIGHT)``. Neighbouring runs of the same
    weight are merged.

    Where A1111 is lenient this follows it, with a warning: an opening bracket that is never closed applies its
    multiplier to the rest of the text; a closing bracket with no opener is literal text. Where A1111 would silently
    misread a weight, this raises instead.

    Args:
        text: A prompt or negative prompt.

    Returns:
        The runs, in order; ``[("", 1.0)]`` for an empty text.

    Raises:
        ValueError: A weight that is not a finite number (``(x:high)``, ``(x:1.2.3)``, ``(x:nan)``, ``(x:)``) or is
            negative (``(x:-1)``).

    Example:
        >>> parse_attention("a (cat:1.5) and [dog]")
        [('a ', 1.0), ('cat', 1.5), (' and ', 1.0), ('dog', 0.9090909090909091)]
    """
    res: list[list] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []
    stray: list[str] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for p in range(start, len(res)):
            res[p][1] *= multiplier

    for m in _RE_ATTENTION.finditer(text):
        token, weight = m.group(0), m.group(1)
        if token.startswith("\\"):
            res.append([token[1:] if len(token) > 1 else token, 1.0])
        elif token == "(":
            round_brackets.append(len(res))
        elif token == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), _check_weight(weight, text))
        elif token == ")" and round_brackets:
            multiply_range(round_brackets.pop(), ROUND_BRACKET_MULTIPLIER)
        elif token == "]" and square_brackets:
            multiply_range(square_brackets.pop(), 1 / ROUND_BRACKET_MULTIPLIER)
        else:
            if token == ":" and round_brackets:
                bad = _RE_BAD_WEIGHT.match(text, m.start())
                if bad is not None:
                    _check_weight(bad.group(1), text)
            if token in (")", "]") or (weight is not None and not round_brackets):
                stray.append(token)
            for i, part in enumerate(_RE_BREAK.split(token)):
                if i > 0:
                    res.append(["BREAK", BREAK_WEIGHT])
                res.append([part, 1.0])

    unclosed = ["("] * len(round_brackets) + ["["] * len(square_brackets)
    for pos in round_brackets:
        multiply_range(pos, ROUND_BRACKET_MULTIPLIER)
    for pos in square_brackets:
        multiply_range(pos, 1 / ROUND_BRACKET_MULTIPLIER)
    if unclosed or stray:
        problems = []
        if unclosed:
            problems.append(f"{len(unclosed)} unclosed {''.join(unclosed)!r} (applied to the rest of the text)")
        if stray:
            problems.append(f"{len(stray)} unmatched {''.join(s[-1] for s in stray)!r} (read as text)")
        warnings.warn(
            f"Unbalanced brackets in {text!r:.200}: {' and '.join(problems)}, as AUTOMATIC1111 reads them. Close the "
            "bracket, or escape a literal one as \\( \\) \\[ \\].",
            stacklevel=2,
        )

    res = [r for r in res if r[0] or r[1] == BREAK_WEIGHT]
    if not res:
        return [("", 1.0)]
    merged: list[list] = [res[0]]
    for run in res[1:]:
        if run[1] == merged[-1][1] and run[1] != BREAK_WEIGHT:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    return [(t, float(w)) for t, w in merged]


def _check_weight(weight: str, text: str) -> float:
    try:
        value = float(weight)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or weight.strip().lower() in ("nan", "inf", "+inf", "infinity"):
        reason = "negative" if math.isfinite(value) and value < 0 else "not a finite number"
        raise ValueError(
            f"The weight {weight!r} in {text!r:.200} is {reason}. Write an emphasis weight as a number >= 0, as in "
            "(blurry:1.3) or (text:0.8); to lower a term's weight use a weight below 1 or [term]. A literal colon "
            "inside brackets can be escaped by writing the brackets as \\( \\)."
        )
    return value
