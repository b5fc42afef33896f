"""Fit negative prompts to a text encoder's token limit, whole terms first and the user's terms kept.

diffusers cuts a negative prompt that is over its text encoder's limit (77 CLIP tokens) mid-word, without a warning.
:func:`fit_negatives` trims it instead to the whole terms that fit every tokenizer it is sent to: the user's terms
are kept first and in order (a single user term over the limit is cut at a word boundary, never dropped), then as
many generated terms as fit (the first generated term that alone is over the limit, as a negative written without
commas is, is cut at a word boundary too, never sent as ""). Token counts are those of the pipeline's own tokenizers,
with a multi-vector textual-inversion embedding counted at its true number of vectors (see :func:`count_tokens`).

The functions here read tokenizers and text only; :class:`~negopt.NegOptPipeline` decides which tokenizers a
negative reaches and warns about what was trimmed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from negopt.text import join_terms, split_terms

__all__ = [
    "Trimmed",
    "count_tokens",
    "cut_words",
    "fit_negatives",
    "token_limit",
    "trimmed_message",
    "quiet_sequence_length_warning",
]

# A tokenizer with no real limit reports model_max_length as a huge sentinel (about 1e30).
_NO_LIMIT = 1_000_000

#: ``convert(texts, tokenizer) -> texts``: a diffusers pipeline's ``maybe_convert_prompt``, which writes a k-vector
#: textual-inversion token as its k tokens before encoding.
Convert = Callable[[list[str], Any], list[str]]


@dataclass(frozen=True)
class Trimmed:
    """How :func:`fit_negatives` trimmed one negative prompt.

    Attributes:
        index: The negative's position in the list given.
        cut: The user's text that was not sent ("" when all the user's terms fit). Set when a user term did not fit:
            no generated term is added after it then.
        dropped: The generated terms that were not sent (with ``cut`` set: all of them).
        cut_generated: The generated text that was not sent from a generated term too long to ever fit whole (a
            negative written without commas, say), whose words that fit were kept ("" when no term was cut).
    """

    index: int
    cut: str = ""
    dropped: list[str] = field(default_factory=list)
    cut_generated: str = ""


def token_limit(tokenizer: Any, max_sequence_length: int | None = None) -> int | None:
    """The number of tokens, special ones included, that a diffusers pipeline keeps from this tokenizer.

    A CLIP tokenizer is cut at its ``model_max_length`` (77); another one (T5) at the call's ``max_sequence_length``
    when the pipeline takes one, else at its ``model_max_length``.

    Args:
        tokenizer: One of the pipeline's tokenizers.
        max_sequence_length: The call's ``max_sequence_length`` (or the pipeline's default for it); None when the
            pipeline takes none.

    Returns:
        The limit, or None when the tokenizer has none (its ``model_max_length`` is the "no limit" sentinel).
    """
    limit = getattr(tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or limit >= _NO_LIMIT:
        limit = None
    # CLIP encoders always cut at model_max_length; T5-style encoders at the call's max_sequence_length.
    if max_sequence_length is not None and not type(tokenizer).__name__.startswith("CLIP"):
        limit = max_sequence_length if limit is None else min(limit, max_sequence_length)
    return limit


def _has_multi_vector_embedding(tokenizer: Any) -> bool:
    added = getattr(tokenizer, "added_tokens_encoder", None) or {}
    return any(f"{t}_1" in added for t in added)


class _DropSequenceLengthWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Token indices sequence length is longer than")


@contextlib.contextmanager
def quiet_sequence_length_warning() -> Iterator[None]:
    """Drop transformers' "Token indices sequence length is longer than the specified maximum ... (210 > 77)" for the
    block.

    A tokenizer logs it when it reads a text longer than its limit without truncating, which is what counting tokens
    does (and diffusers' check of the prompt's length): nothing is indexed past the limit, diffusers truncates, so
    the message is not one a user can act on. Nothing else is dropped.
    """
    logger = logging.getLogger("transformers.tokenization_utils_base")
    drop = _DropSequenceLengthWarning()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def count_tokens(tokenizer: Any, texts: Sequence[str], convert: Convert | None = None) -> list[int]:
    """The number of tokens of each text, without special tokens, as the pipeline will encode it.

    Args:
        tokenizer: A transformers tokenizer.
        texts: The texts, counted in one batched call.
        convert: The pipeline's ``maybe_convert_prompt``. When the tokenizer holds a multi-vector textual inversion
            (``easynegative``, ``easynegative_1``, ...), the texts go through it first, as diffusers does before
            encoding, so that a k-vector embedding counts k tokens.

    Returns:
        One count per text.
    """
    texts = list(texts)
    if callable(convert) and _has_multi_vector_embedding(tokenizer):
        with quiet_sequence_length_warning():  # diffusers' conversion tokenizes without verbose=False
            texts = convert(texts, tokenizer)
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]


def cut_words(text: str, excess: Callable[[str], int], keep_one: bool = False) -> tuple[str, str]:
    """Split ``text`` at the last word boundary where its head still fits: ``(head, tail)``.

    Args:
        text: The text to cut (words split at single spaces).
        excess: How many tokens a head is over the budget (``<= 0``: it fits); it must grow with the head.
        keep_one: Keep the first word even when it alone does not fit (diffusers then cuts it at its limit), so that
            the head is never empty.

    Returns:
        ``(head, tail)``: ``head + " " + tail`` is ``text``; either may be "".
    """
    words = text.split(" ")
    lo, hi = (1 if keep_one else 0), len(words)  # the head of `lo` words is kept
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if excess(" ".join(words[:mid])) <= 0:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo]), " ".join(words[lo:])


def fit_negatives(
    negatives: Sequence[str],
    limits: Sequence[tuple[Any, int]],
    n_user: Sequence[int] | None = None,
    convert: Convert | None = None,
) -> tuple[list[str], list[Trimmed]]:
    """Trim each negative prompt to the whole terms that fit every tokenizer it is sent to.

    The first ``n_user[i]`` terms of ``negatives[i]`` are the user's: they are kept in order while they fit (a prefix,
    never a hole) and never dropped to make room for generated terms; a user term that alone is over the limit is cut
    at a word boundary (its first word is kept whole if nothing else fits). The generated terms that follow are kept
    in order while they fit; one that does not is dropped and the next, shorter one still tried, except the first
    one that alone is over the limit (a generated negative with no commas is a single term): it is cut at a word
    boundary, as a user term is, so that a long generated negative is never sent as "". A negative that fits is
    returned unchanged.

    Args:
        negatives: The negative prompts, terms joined with ", " (as :func:`negopt.text.merge_negatives` writes them).
        limits: ``(tokenizer, limit)`` for each distinct tokenizer the negatives are sent to, the limit counting
            special tokens (see :func:`token_limit`).
        n_user: How many of each negative's first terms are the user's; None: none.
        convert: The pipeline's ``maybe_convert_prompt`` (see :func:`count_tokens`).

    Returns:
        ``(fitted, trimmed)``: the negatives, fitted, and what was trimmed from each one that was over.

    Example:
        >>> fitted, trimmed = fit_negatives(negatives, [(pipe.tokenizer, 77)], n_user=[1])  # doctest: +SKIP
    """
    negatives = list(negatives)
    n_user = list(n_user) if n_user is not None else [0] * len(negatives)
    budgets = [(tokenizer, limit - tokenizer.num_special_tokens_to_add()) for tokenizer, limit in limits]
    if not budgets:
        return negatives, []

    # The hot path: one batched count per tokenizer. Only the negatives that are over go further.
    over = sorted(
        {
            i
            for tokenizer, budget in budgets
            for i, n in enumerate(count_tokens(tokenizer, negatives, convert))
            if n > budget
        }
    )
    if not over:
        return negatives, []

    # Count every term once per tokenizer (one batched call each) and add the counts up: a term's tokens do not
    # depend on its neighbours across ", " for CLIP, byte-level or SentencePiece tokenizers. The results are checked
    # with an exact count, and a negative for which a tokenizer disagrees is fitted exactly.
    terms_of = {i: split_terms(negatives[i]) for i in over}
    unique = list(dict.fromkeys(t for terms in terms_of.values() for t in terms))
    tables = []
    for tokenizer, budget in budgets:
        counts = count_tokens(tokenizer, [*unique, ", "], convert)
        tables.append((dict(zip(unique, counts)), counts[-1], budget))

    def exact_excess(text: str) -> int:
        return max(count_tokens(tokenizer, [text], convert)[0] - budget for tokenizer, budget in budgets)

    def summed_excess(text: str) -> int:
        parts = text.split(", ")  # the candidate is join_terms(...) of known terms
        if not all(p in tables[0][0] for p in parts):  # a term with ", " inside brackets
            return exact_excess(text)
        return max(sum(table[p] for p in parts) + sep * (len(parts) - 1) - budget for table, sep, budget in tables)

    def fit(i: int, excess: Callable[[str], int]) -> tuple[list[str], str, list[str], str]:
        """``(kept terms, the user's text that was cut, generated terms dropped, generated text cut)`` for negative
        ``i``."""
        terms = terms_of[i]
        users, generated = terms[: n_user[i]], terms[n_user[i] :]
        kept: list[str] = []
        for term in users:  # the user's terms in order, as long as they fit: a prefix, never a hole
            if excess(join_terms([*kept, term])) > 0:
                break
            kept.append(term)
        if len(kept) < len(users):
            rest = users[len(kept) :]
            if excess(rest[0]) > 0:  # a user term that could never fit whole: keep the words of it that fit
                before = join_terms(kept)
                head, tail = cut_words(
                    rest[0], lambda h: exact_excess(f"{before}, {h}" if before else h), keep_one=not kept
                )
                kept = [*kept, head] if head else kept
                rest = ([tail] if tail else []) + rest[1:]
            return kept, join_terms(rest), list(generated), ""
        # The generated terms in order while they fit; one that does not is dropped and the next still tried. The
        # first one that could never fit whole (a negative written without commas is one long term) is cut at a word
        # boundary instead, as a user term is, so that a long generated negative is never sent as "".
        dropped: list[str] = []
        cut_generated = ""
        for term in generated:
            before = join_terms(kept)
            if excess(f"{before}, {term}" if before else term) <= 0:
                kept.append(term)
                continue
            if not cut_generated and excess(term) > 0:
                head, tail = cut_words(
                    term, lambda h, before=before: exact_excess(f"{before}, {h}" if before else h), keep_one=not kept
                )
                if head:
                    kept.append(head)
                    cut_generated = tail
                    continue
            dropped.append(term)
        return kept, "", dropped, cut_generated

    results = {i: fit(i, summed_excess) for i in over}
    checked = [join_terms(kept) for kept, *_ in results.values()]
    for tokenizer, budget in budgets:
        for i, n in zip(list(results), count_tokens(tokenizer, checked, convert)):
            if n > budget:
                results[i] = fit(i, exact_excess)

    fitted = list(negatives)
    trimmed = []
    for i, (kept, cut, dropped, cut_generated) in results.items():
        fitted[i] = join_terms(kept)
        trimmed.append(Trimmed(index=i, cut=cut, dropped=dropped, cut_generated=cut_generated))
    return fitted, trimmed


def trimmed_message(fitted: list[str], trimmed: Sequence[Trimmed], limits: Sequence[tuple[Any, int]]) -> str:
    """The warning of a call whose negatives :func:`fit_negatives` trimmed: the limits, what was cut or dropped from
    each negative and whose text it was (the caller's ``negative_prompt`` or the generator's), and how to send it
    whole instead.

    Args:
        fitted: The fitted negatives.
        trimmed: What was trimmed from each one that was over.
        limits: The ``(tokenizer, limit)`` pairs they were fitted to.
    """
    notes = []
    for t in trimmed:
        if t.cut:
            notes.append(
                f"prompt {t.index}: your negative prompt was cut after {fitted[t.index][-40:]!r}; not sent: {t.cut!r}"
                + (f"; the {len(t.dropped)} generated terms were not added" if t.dropped else "")
            )
            continue
        parts = []
        if t.cut_generated:
            parts.append(
                f"the generated negative prompt was cut at a word boundary after {fitted[t.index][-40:]!r}; "
                f"not sent: {t.cut_generated!r}"
            )
        if t.dropped:
            more = f" and {len(t.dropped) - 6} more" if len(t.dropped) > 6 else ""
            parts.append(f"dropped generated terms {', '.join(map(repr, t.dropped[:6]))}{more}")
        notes.append(f"prompt {t.index}: {'; '.join(parts)}")
    shown = ", ".join(dict.fromkeys(f"{type(tokenizer).__name__} {limit}" for tokenizer, limit in limits))
    if any(t.cut for t in trimmed):
        fix = "Shorten `negative_prompt`, pass fit_to_tokenizer=False to send it as is"
    else:
        fix = (
            "Only generated text was trimmed, none of yours. To send more of it, have the generator write shorter "
            "negatives (fewer max_new_tokens, or max_tokens for the built-in), pass fit_to_tokenizer=False to send "
            "it as is (diffusers then cuts it mid-word)"
        )
    return (
        f"A negative prompt was longer than the text encoders' token limit ({shown}, special tokens included); "
        f"diffusers would cut it mid-word, so it was trimmed to what fits, whole terms where it can, your terms "
        f"first ({'; '.join(notes)}). {fix}, or prompt_weighting='a1111' to encode it whole in 75-token chunks."
    )
