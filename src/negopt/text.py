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
    "remove_extra_networks",
    "unsupported_a1111_syntax",
    "PromptSyntaxWarning",
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
# A ``:word)`` closer that A1111 reads as text (its weight is not digits and dots): ``(a:1,3)``, ``(a:)``.
_RE_BAD_WEIGHT = re.compile(r":\s*([^\s()\[\]:\\]*)\s*\)")
# A1111's extra networks (modules/extra_networks.py): ``<lora:name:0.8>``, ``<lyco:...>``, ``<hypernet:...>``.
_RE_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")
# A1111's composable diffusion separator (modules/prompt_parser.py), in prompts only.
_RE_AND = re.compile(r"\bAND\b")
# The end of a prompt-editing group, ``[a:b:0.5]`` / ``[a:10]``: a colon, a number (lark's SIGNED_NUMBER), ``]``.
_RE_SCHEDULE_END = re.compile(r":\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")

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


class PromptSyntaxWarning(UserWarning):
    """AUTOMATIC1111 syntax read leniently, as A1111 reads it, or not implemented by negopt.

    Raised instead of warned by ``parse_attention(text, strict=True)``; make every one an error in a pipeline call
    with ``warnings.simplefilter("error", PromptSyntaxWarning)``.
    """


def parse_attention(text: str, *, strict: bool = False) -> list[tuple[str, float]]:
    """Read AUTOMATIC1111's emphasis syntax into ``(text, weight)`` runs, as A1111's ``parse_prompt_attention`` does.

    ``(x)`` multiplies the weight of ``x`` by 1.1, ``((x))`` by 1.21, ``[x]`` divides it by 1.1, ``(x:1.3)`` multiplies
    it by 1.3; ``\\(``, ``\\)``, ``\\[``, ``\\]`` and ``\\\\`` are literal characters and a lone ``\\`` is dropped;
    ``BREAK`` (upper case, a word of its own) starts a new 75-token chunk and comes out as
    ``("BREAK", BREAK_WEIGHT)``. Neighbouring runs of the same weight are merged, then empty runs dropped.

    Where A1111 is lenient this follows it, with a :class:`PromptSyntaxWarning` (an error with ``strict=True``):

    - an opening bracket that is never closed applies its multiplier to the rest of the text; a closing bracket with
      no opener is literal text;
    - a weight that is not digits and dots -- ``(a:1,3)``, ``(a:)``, ``(a:0.1~1)``, ``(a:high)`` -- is not a weight:
      the colon and what follows are text and the group gets the 1.1 of plain brackets (``("a:1,3", 1.1)``);
    - a negative weight, ``(a:-1)``, multiplies as any other (A1111's "Original" emphasis then flips the sign of the
      term's hidden states before rescaling the chunk to its mean).

    Args:
        text: A prompt or negative prompt.
        strict: Raise a ValueError instead of warning.

    Returns:
        The runs, in order; ``[("", 1.0)]`` for an empty text.

    Raises:
        ValueError: A weight A1111 itself fails on (``(x:1.2.3)``, ``(x:.)``: several dots, or no digit), or too
            large to be finite; with ``strict``, any of the lenient readings above.

    Example:
        >>> parse_attention("a (cat:1.5) and [dog]")
        [('a ', 1.0), ('cat', 1.5), (' and ', 1.0), ('dog', 0.9090909090909091)]
    """
    res: list[list] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []
    stray: list[str] = []
    lenient: list[str] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for p in range(start, len(res)):
            res[p][1] *= multiplier

    for m in _RE_ATTENTION.finditer(text):
        token, weight = m.group(0), m.group(1)
        if token.startswith("\\"):
            res.append([token[1:], 1.0])  # a lone backslash is dropped (""), as in A1111
        elif token == "(":
            round_brackets.append(len(res))
        elif token == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            value = _weight_value(weight, text)
            if value < 0:
                lenient.append(f"the negative weight in {m.group(0).strip()!r} (applied as it is)")
            multiply_range(round_brackets.pop(), value)
        elif token == ")" and round_brackets:
            multiply_range(round_brackets.pop(), ROUND_BRACKET_MULTIPLIER)
        elif token == "]" and square_brackets:
            multiply_range(square_brackets.pop(), 1 / ROUND_BRACKET_MULTIPLIER)
        else:
            if token == ":" and round_brackets:
                bad = _RE_BAD_WEIGHT.match(text, m.start())
                if bad is not None:
                    lenient.append(
                        f"{bad.group(0).strip()!r}, whose weight {bad.group(1)!r} is not a number (the colon and it "
                        "are read as text, the group as (...) with weight 1.1)"
                    )
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
    problems = []
    if unclosed:
        problems.append(f"{len(unclosed)} unclosed {''.join(unclosed)!r} (applied to the rest of the text)")
    if stray:
        problems.append(f"{len(stray)} unmatched {''.join(s[-1] for s in stray)!r} (read as text)")
    problems += lenient
    if problems:
        message = (
            f"AUTOMATIC1111 syntax in {text!r:.200} read as A1111 reads it: {'; '.join(problems)}. Close a bracket, "
            "escape a literal one as \\( \\) \\[ \\], and write a weight as a number >= 0, as in (blurry:1.3)."
        )
        if strict:
            raise ValueError(message.replace("read as A1111 reads it", "refused (strict)"))
        warnings.warn(message, PromptSyntaxWarning, stacklevel=2)

    if not res:
        return [("", 1.0)]
    # A1111's merge of neighbouring runs of the same weight (empty runs included, as there), then the empty ones go.
    merged: list[list] = [res[0]]
    for run in res[1:]:
        if run[1] == merged[-1][1]:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    out = [(t, float(w)) for t, w in merged if t]
    return out or [("", 1.0)]


def _weight_value(weight: str, text: str) -> float:
    """A ``:weight)`` closer's number, as A1111's ``float(weight)``; a ValueError where A1111 fails or it is not
    finite."""
    try:
        value = float(weight)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(
            f"The weight {weight!r} in {text!r:.200} is not a finite number (AUTOMATIC1111 fails on it too). Write an "
            "emphasis weight as a number >= 0, as in (blurry:1.3) or (text:0.8); to lower a term's weight use a "
            "weight below 1 or [term]. A literal colon inside brackets can be escaped by writing the brackets as "
            "\\( \\)."
        )
    return value


def remove_extra_networks(text: str) -> tuple[str, list[str]]:
    """Remove AUTOMATIC1111's extra-network tags from a prompt, as A1111 does before encoding it.

    A1111 reads ``<lora:name:0.8>``, ``<lyco:...>``, ``<hypernet:...>`` -- any ``<word:...>`` -- as a request to
    apply that network (``modules/extra_networks.py``, ``re.sub(r"<(\\w+):([^>]+)>", "", prompt)``); the tag itself
    is never encoded. Load such a network on a diffusers pipeline with ``pipe.load_lora_weights(...)``.

    Args:
        text: A prompt.

    Returns:
        ``(text without the tags, the tags removed)``; the text around a tag is left as it is.

    Example:
        >>> remove_extra_networks("a cat, <lora:film grain:0.6>, night")
        ('a cat, , night', ['<lora:film grain:0.6>'])
    """
    tags = [m.group(0) for m in _RE_EXTRA_NETWORK.finditer(text)]
    return (_RE_EXTRA_NETWORK.sub("", text) if tags else text), tags


def unsupported_a1111_syntax(text: str, *, prompt: bool = True) -> list[str]:
    """The AUTOMATIC1111 constructs in ``text`` that negopt's ``"a1111"`` weighting does not implement.

    Prompt editing ``[a:b:0.5]`` / ``[a:10]`` / ``[a::10]`` and alternation ``[a|b]`` change the text from one
    sampling step to the next in A1111, and ``AND`` (in a prompt; in a negative A1111 reads it as a word) composes
    several prompts. A diffusers call takes one embedding per prompt, so negopt encodes these as written (the square
    brackets as ``[x]`` emphasis).

    Args:
        text: A prompt or negative prompt.
        prompt: Whether it is a prompt (``AND`` counts) or a negative (it does not).

    Returns:
        One description per construct found, e.g. ``"prompt editing '[cat:dog:0.5]'"``; empty when there is none.
    """
    found = []
    stack: list[int] = []
    prev = ""
    for i, ch in enumerate(text):
        if prev == "\\":
            prev = ""  # an escaped character, ``\\[``, opens nothing
            continue
        if ch == "[":
            stack.append(i)
        elif ch == "]" and stack:
            start = stack.pop()
            inner = text[start + 1 : i]
            top = _top_level(inner)
            if "|" in top:
                found.append(f"alternation {text[start : i + 1]!r}")
            elif ":" in top and _RE_SCHEDULE_END.search(inner.rstrip()):
                found.append(f"prompt editing {text[start : i + 1]!r}")
        prev = ch
    if prompt and _RE_AND.search(text):
        found.append("AND (composable diffusion)")
    return found


def _top_level(inner: str) -> str:
    """``inner`` with its bracketed groups blanked out: the characters at the top level of a group."""
    out, depth = [], 0
    for ch in inner:
        if ch in "([":
            depth += 1
        elif ch in ")]" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)
