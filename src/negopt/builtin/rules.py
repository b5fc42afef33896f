"""The built-in generator: content-aware negative prompts from a curated vocabulary, with no weights.

:class:`BuiltinGenerator` is what :class:`~negopt.NegOptPipeline` and ``negopt generate`` use when no model is named.
It reads the prompt with precompiled word-boundary patterns -- what it shows (people, faces, hands, full bodies,
animals, text and signs, landscapes, architecture, vehicles, food, products) and how it is rendered (photo, painting,
illustration, anime, 3D render, pixel art, sketch, black and white) -- and composes a negative prompt from the defect
terms that fit, most important first, deduplicated and within a token budget. It is deterministic, pure Python
(standard library and :mod:`negopt.text` only) and takes well under a millisecond a prompt.

It never puts into the negative what the prompt asks for: "a blurry long-exposure photo of traffic" gets no
"blurry", "a cartoon cat" no "cartoon", "a black and white photo" no "monochrome". Two rules enforce this:

1. *Concepts*: a table of concepts, each with the phrasings that ask for it in a prompt (blur: "blur", "bokeh",
   "long exposure", "out of focus", "depth of field", ...; monochrome: "black and white", "b&w", "grayscale",
   "noir", "charcoal", ...) and the negative terms that contradict it. A concept the prompt asks for removes all of
   its terms.
2. *Direct*: a term whose words all occur in the prompt (ignoring case, plurals and function words) is removed, so
   "a bad guy with a long neck" loses "long neck" even though no concept names it.

A negated mention does not ask: "a sharp photo, no blur" keeps "blurry", and "an empty street, no people" gets no
anatomy terms. Negation covers the next one to three words (``no``, ``not``, ``without``, ``never``, ...).
Text-bearing objects (signs, posters, logos, quoted words) always count as asking for text, negated or not, because
"a no parking sign" still shows text.

For video (``kind="video"``) it adds temporal and motion terms ("static, still picture, flickering, jittery,
inconsistent motion, morphing", "walking backwards" for people, ...) under the same two rules, with a table of video
concepts: "a frozen lake" or "a static shot" gets no "static", "a time-lapse" no "inconsistent lighting", "a man
walking backwards" no "walking backwards". An image negative never gets a video term.

The vocabulary (and where each list comes from) is in :mod:`negopt.builtin.vocabulary`.
"""

from __future__ import annotations

import logging
import numbers
import random
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from negopt.builtin.patterns import Group
from negopt.builtin.vocabulary import (
    CLIP_WORD_TOKENS,
    CONCEPTS,
    CORE,
    EXTRAS,
    MARKS,
    STYLES,
    SUBJECTS,
    VIDEO_CONCEPTS,
    VIDEO_CORE,
    VIDEO_EXTRAS,
    VIDEO_SUBJECT_TERMS,
)
from negopt.text import dedupe_terms, join_terms, split_terms, term_key

__all__ = ["BuiltinGenerator", "BuiltinAnalysis", "approx_clip_tokens", "vocabulary_words"]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- token estimate
_LETTERS = re.compile(r"[^\W\d_]+")
_PRETOKEN = re.compile(r"[^\W\d_]+|\d|[^\w\s]|_")


#: What a generator can write for: ``BuiltinGenerator(kind=...)``.
KINDS = ("image", "video")


def _builtin_terms(kind: str) -> list[str]:
    """Every term the generator can output on its own for ``kind``, image terms first."""
    terms = [*CORE, *MARKS, *EXTRAS, *(t for g in (*SUBJECTS, *STYLES) for t in g.terms)]
    if kind == "video":
        terms += [*VIDEO_CORE, *(t for ts in VIDEO_SUBJECT_TERMS.values() for t in ts), *VIDEO_EXTRAS]
    return terms


def vocabulary_words() -> set[str]:
    """Every word (letter run) of every term the generator can output on its own, image and video."""
    return {w for t in _builtin_terms("video") for w in _LETTERS.findall(t.lower())}


def approx_clip_tokens(text: str) -> int:
    """The number of CLIP tokens of ``text`` (no start or end token), without a tokenizer.

    Exact for the built-in vocabulary, whose words' CLIP token counts are tabled. Another word counts one token per
    4 letters (at least one), which errs high for most English words; each digit and each other symbol counts one,
    which is exact for digits and errs high for runs of symbols such as ``),``. Pass a real tokenizer's counter to
    :class:`BuiltinGenerator` (``count_tokens``) to budget exactly for other words.

    Example:
        >>> approx_clip_tokens("worst quality, low quality")
        5
    """
    n = 0
    for piece in _PRETOKEN.findall(text.lower()):
        if piece.isalpha():
            n += CLIP_WORD_TOKENS.get(piece) or max(1, (len(piece) + 2) // 4)
        else:
            n += 1
    return n


# Negation: "no", "not", "without", ... and up to three words after it, stopping at a preposition or conjunction.
_NEGATION = re.compile(
    r"\b(?:no|not|without|never|non|zero|avoid|avoiding|lacking|free\s+of)\b[\s-]*"
    r"(?:(?!(?:and|but|with|while|in|on|at|of|under|near|by|from|for|to|as|is|are|that|which|behind|over)\b)"
    r"[\w'&/]+[\s-]*){1,3}"
)
_TERM_WORD = re.compile(r"[^\W_]+")
# Function words ignored by the direct rule; the defect words ("bad", "extra", "missing", "low") are not among them.
_FUNCTION_WORDS = frozenset("a an the of and or in on with to too like looking is are by for at".split())


def _stem(word: str) -> str:
    """A crude singular: enough to match "fingers" to "finger" and "artifacts" to "artifact" in both directions."""
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word


def _content_stems(text: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in _TERM_WORD.findall(text.lower()) if w not in _FUNCTION_WORDS)


def _normalise_prompt(prompt: str) -> str:
    return prompt.lower().replace("_", " ")


# ---------------------------------------------------------------------------------------------------- analysis
@dataclass(frozen=True)
class BuiltinAnalysis:
    """What :meth:`BuiltinGenerator.analyze` found in a prompt.

    Attributes:
        subjects: Subject groups found ("face", "people", "hands", "full_body", "animal", "text", "architecture",
            "vehicle", "food", "product", "landscape"), in priority order.
        styles: Style groups found ("photo", "anime", "painting", "illustration", "render_3d", "pixel_art",
            "sketch", "monochrome").
        asks: Concepts the prompt asks for ("blur", "grain", "monochrome", "text", ...; for video also "stillness",
            "flicker", "time_lapse", ...); their terms are never added.
        terms: Every term that survived the never-contradict rules, most important first, before the budget.
        removed: Terms that a rule removed because the prompt asks for them.
    """

    subjects: tuple[str, ...]
    styles: tuple[str, ...]
    asks: tuple[str, ...]
    terms: tuple[str, ...]
    removed: tuple[str, ...]


# Keyword arguments that a model generator takes and that mean nothing here: accepted and ignored, so a caller can
# swap generators without changing its call. Anything else is a TypeError, so typos do not pass silently.
_IGNORED_KWARGS = frozenset(
    "batch_size max_new_tokens min_new_tokens do_sample temperature top_p top_k typical_p "
    "num_beams num_beam_groups diversity_penalty repetition_penalty no_repeat_ngram_size length_penalty "
    "early_stopping generation_config show_progress progress_bar max_input_tokens".split()
)


class BuiltinGenerator:
    """A content-aware negative-prompt generator with no weights: curated terms chosen by reading the prompt.

    The negative is built in tiers, most important first: universal quality terms ("worst quality, low quality,
    blurry, jpeg artifacts"), the top terms of each subject the prompt shows (faces, hands, animals, text, ...), the
    terms of styles that conflict with the prompt's style (a photo gets "cartoon, anime, painting, ..."),
    "watermark, signature, text, logo", then the remaining subject and style terms and general defects, until the
    token budget is spent. Terms the prompt asks for are never included (see the module documentation).

    For video, the temporal terms come right after the universal ones ("static, still picture, flickering, jittery,
    inconsistent motion, morphing"), each subject's motion terms after its top terms ("walking backwards" for people
    and animals, "inconsistent face" for faces, ...), and the other motion defects ("choppy motion, low frame rate,
    camera shake, ...") before the general ones. Each term's reason and source is in
    :data:`negopt.builtin.vocabulary.VIDEO_TERMS`.

    Args:
        max_tokens: The token budget of a negative prompt. Counted with ``count_tokens`` when given, else with
            :func:`approx_clip_tokens` (CLIP's count, exact for the built-in vocabulary). The default leaves room
            under CLIP's 77 tokens (75 plus start and end) for terms of your own.
        max_terms: At most this many terms, or None for no limit other than ``max_tokens``.
        count_tokens: Counts the tokens of a text, e.g. ``lambda t: len(pipe.tokenizer(t).input_ids) - 2``, to budget
            exactly for one text encoder; it must return an int. Called once per term considered, so a slow counter
            makes each call slower.
        extra_terms: Your own terms (a list or a comma-separated string), put first in every negative in your
            spelling and weight (``"(worst quality:1.4)"`` replaces the built-in "worst quality"). They come first in
            the budget and are never cut for it; like built-in terms, they are left out for a prompt that asks for
            them.
        exclude_terms: Terms (a list or a comma-separated string) never to output, compared by
            :func:`~negopt.text.term_key` (case and emphasis ignored).
        kind: What the negatives are for: ``"image"``, or ``"video"`` to add the temporal and motion terms. A
            pipeline wrapper asks for the kind of its pipeline with :meth:`with_kind`.

    Raises:
        TypeError: If an argument has the wrong type, or ``count_tokens`` does not return an int.
        ValueError: If ``max_tokens`` or ``max_terms`` is not positive, ``extra_terms`` alone exceed them, or
            ``kind`` is neither ``"image"`` nor ``"video"``.

    Example:
        >>> gen = BuiltinGenerator()
        >>> neg = gen("a cartoon cat")
        >>> "cartoon" in neg.split(", "), "extra legs" in neg
        (False, True)
    """

    def __init__(
        self,
        *,
        max_tokens: int = 60,
        max_terms: int | None = None,
        count_tokens: Callable[[str], int] | None = None,
        extra_terms: Iterable[str] | str | None = None,
        exclude_terms: Iterable[str] | str | None = None,
        kind: str = "image",
    ) -> None:
        if not isinstance(kind, str):
            raise TypeError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {type(kind).__name__}: {kind!r}")
        if kind not in KINDS:
            raise ValueError(
                f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}; use 'video' for text-to-video and "
                f"image-to-video pipelines, 'image' for the rest"
            )
        self.kind = kind
        self.max_tokens = _positive_int("max_tokens", max_tokens)
        self.max_terms = None if max_terms is None else _positive_int("max_terms", max_terms)
        if count_tokens is not None and not callable(count_tokens):
            raise TypeError(
                f"count_tokens must be a callable that takes a text and returns its number of tokens, or None; "
                f"got {count_tokens!r}"
            )
        self.count_tokens = count_tokens
        self.extra_terms = tuple(_as_terms("extra_terms", extra_terms))
        self.exclude_terms = tuple(_as_terms("exclude_terms", exclude_terms))
        excluded = {term_key(t) for t in self.exclude_terms}
        self._check_extra_terms_fit()

        # Everything that does not depend on the prompt is computed once: for every term that can be output, its
        # key, its content words (direct rule), the concepts it contradicts (concept rule) and its token count. The
        # tables hold every spelling: a user's "(Blurry:1.2)" and the built-in "blurry" share a key, and the first
        # met in a prompt's tiers (the user's) is the one kept.
        vocabulary = list(dict.fromkeys([*self.extra_terms, *_builtin_terms(kind)]))
        self._excluded = frozenset(excluded)
        self._keys = {t: term_key(t) for t in vocabulary}
        self._stems = {t: _content_stems(self._keys[t]) for t in vocabulary}
        # The video concepts are searched for video, and for an image only where one contradicts a term of the
        # user's: they contradict no image term, so an image prompt does not pay for them.
        user_keys = [self._keys[t] for t in self.extra_terms]
        self._concepts = (
            *CONCEPTS,
            *(c for c in VIDEO_CONCEPTS if kind == "video" or any(map(c.drops.search, user_keys))),
        )
        self._contradicts = {
            t: frozenset(c.name for c in self._concepts if c.drops.search(self._keys[t])) for t in vocabulary
        }
        self._tokens = {t: approx_clip_tokens(t) for t in vocabulary}
        self._separator_tokens = approx_clip_tokens(", ")

    # ------------------------------------------------------------------------------------------------ analysis
    def analyze(self, prompt: str) -> BuiltinAnalysis:
        """What the generator reads in ``prompt`` and the terms it would choose from, before the token budget.

        Args:
            prompt: A text-to-image prompt.

        Returns:
            A :class:`BuiltinAnalysis`.

        Raises:
            TypeError: If ``prompt`` is not a str.
        """
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}: {prompt!r}")
        tiers, subjects, styles, asks, removed = self._compose(prompt)
        terms = tuple(t for tier in tiers for t in tier)
        return BuiltinAnalysis(tuple(subjects), tuple(styles), tuple(sorted(asks)), terms, tuple(removed))

    def _compose(self, prompt: str) -> tuple[list[list[str]], list[str], list[str], set[str], list[str]]:
        """The prompt's tiers of allowed terms (user, core, video core, subjects, video subjects, styles, marks,
        rest, video extras, extras), plus what was found. The video tiers are empty for an image."""
        text = _normalise_prompt(prompt)
        affirmed = _NEGATION.sub(" ", text)
        subjects: list[Group] = []
        for g in SUBJECTS:  # a group's ``requires`` come before it in SUBJECTS
            if g.pattern.search(affirmed) or (
                g.context is not None and any(s.name in g.requires for s in subjects) and g.context.search(affirmed)
            ):
                subjects.append(g)
        styles = [g for g in STYLES if g.pattern.search(affirmed)]
        asks = {c.name for c in self._concepts if c.asks.search(affirmed if c.negatable else text)}
        prompt_stems = _content_stems(affirmed)

        video = self.kind == "video"
        tiers = [
            list(self.extra_terms),
            list(CORE),
            list(VIDEO_CORE) if video else [],
            [t for g in subjects for t in g.terms[: g.core]],
            [t for g in subjects for t in VIDEO_SUBJECT_TERMS[g.name]] if video else [],
            [t for g in styles for t in g.terms[: g.core]],
            list(MARKS),
            [t for g in subjects for t in g.terms[g.core :]] + [t for g in styles for t in g.terms[g.core :]],
            list(VIDEO_EXTRAS) if video else [],
            list(EXTRAS),
        ]
        seen: set[str] = set()
        removed: list[str] = []
        kept_tiers: list[list[str]] = []
        for tier in tiers:
            kept: list[str] = []
            for term in tier:
                key = self._keys[term]
                if not key or key in seen:
                    continue
                seen.add(key)
                if key in self._excluded:
                    continue
                stems = self._stems[term]
                if (stems and stems <= prompt_stems) or (self._contradicts[term] & asks):
                    removed.append(term)
                    continue
                kept.append(term)
            kept_tiers.append(kept)
        return kept_tiers, [g.name for g in subjects], [g.name for g in styles], asks, removed

    def _count(self, text: str) -> int:
        """``count_tokens(text)``, checked: a counter that returns something else fails here, by name."""
        n = self.count_tokens(text)
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(
                f"count_tokens must return an int (the number of tokens of the text it is given), got "
                f"{type(n).__name__}: {_short(n)} for {text!r}; for a tokenizer, count its ids: "
                f"lambda t: len(tokenizer(t).input_ids) - 2"
            )
        if n < 0:
            raise ValueError(f"count_tokens returned {n} for {text!r}; a number of tokens is at least 0")
        return int(n)

    def _check_extra_terms_fit(self) -> None:
        """The user's terms come first in the budget and are never cut: refuse them if they alone exceed it."""
        if self.max_terms is not None and len(self.extra_terms) > self.max_terms:
            raise ValueError(
                f"extra_terms has {len(self.extra_terms)} terms, more than max_terms={self.max_terms}; your terms are "
                f"never cut, so pass max_terms={len(self.extra_terms)} or more, or fewer extra_terms"
            )
        text = join_terms(self.extra_terms)
        # With no extra terms, a counter of one's own is still tried once here, so a wrong one fails at once.
        cost = approx_clip_tokens(text) if self.count_tokens is None else self._count(text or CORE[0])
        if self.extra_terms and cost > self.max_tokens:
            raise ValueError(
                f"extra_terms take {cost} tokens, more than max_tokens={self.max_tokens}; your terms come first in "
                f"the budget and are never cut, so pass max_tokens={cost} or more (the generated terms fill what is "
                f"left), or fewer extra_terms"
            )

    def _fit(self, terms: list[str], fixed: int) -> list[str]:
        """The first ``fixed`` terms (the user's), then the whole terms, in order, that fit in what is left."""
        kept = terms[:fixed]
        if self.count_tokens is not None:
            # Greedy in order, as fit_terms, but the user's terms are kept whatever the counter says.
            for term in terms[fixed:]:
                if self.max_terms is not None and len(kept) >= self.max_terms:
                    break
                if self._count(join_terms([*kept, term])) <= self.max_tokens:
                    kept.append(term)
            return kept
        # The estimate is additive over ", "-joined terms, so the budget is kept with a running sum.
        used = approx_clip_tokens(join_terms(kept))
        for term in terms[fixed:]:
            if self.max_terms is not None and len(kept) >= self.max_terms:
                break
            cost = self._tokens[term] + (self._separator_tokens if kept else 0)
            if used + cost <= self.max_tokens:
                kept.append(term)
                used += cost
        return kept

    def _negative(self, tiers: list[list[str]], rng: random.Random | None) -> str:
        if rng is not None:
            # A variant: the user's terms, the core quality terms and the core video terms stay first and whole;
            # each later tier is shuffled and thinned, so terms that the budget cut from the default negative get a
            # turn.
            varied = tiers[:3]
            for tier in tiers[3:]:
                tier = [t for t in tier if rng.random() < 0.75]
                rng.shuffle(tier)
                varied.append(tier)
            tiers = varied
        return join_terms(self._fit([t for tier in tiers for t in tier], len(tiers[0])))

    def _one(self, prompt: str, k: int, seed: int) -> str | list[str]:
        tiers = self._compose(prompt)[0]
        first = self._negative(tiers, None)
        if k == 1:
            return first
        # The stream depends on the prompt and the seed, not on the prompt's position in a batch.
        rng = random.Random(zlib.crc32(prompt.encode("utf-8")) ^ (seed * 0x9E3779B1 & 0xFFFFFFFFFFFF))
        out = [first]
        seen = {first}
        tries = 0
        while len(out) < k:
            candidate = self._negative(tiers, rng)
            tries += 1
            # Distinct where the vocabulary allows; a prompt with very few possible terms repeats after enough tries.
            if candidate not in seen or tries > 8 * k:
                out.append(candidate)
                seen.add(candidate)
        return out

    # ------------------------------------------------------------------------------------------------ call
    def __call__(
        self,
        prompt: str | list[str],
        *,
        num_candidates: int = 1,
        seed: int | None = None,
        **kwargs,
    ) -> str | list[str] | list[list[str]]:
        """Write a negative prompt for a prompt or for each of a list of prompts.

        Args:
            prompt: A prompt, or a list of prompts. An empty or blank prompt gets a generic quality negative.
            num_candidates: Negatives per prompt. With more than one, the first is the default negative and the
                others are variants (shuffled and thinned tiers), distinct where the vocabulary allows.
            seed: Seeds the variants (``num_candidates > 1``); None means 0. The output never depends on global
                random state, and a prompt gets the same candidates alone or in a list.
            **kwargs: Options of a model generator that mean nothing here (``batch_size``, ``max_new_tokens``,
                ``temperature``, ...) are accepted and ignored, so generators can be swapped.

        Returns:
            For a str: a str, or a list of ``num_candidates`` str. For a list: a list of the same length and order,
            of str or of lists of str.

        Raises:
            TypeError: If ``prompt`` is not a str or a list of str, or for an unknown keyword argument.
            ValueError: If ``num_candidates`` is less than 1.

        Example:
            >>> gen = BuiltinGenerator()
            >>> negs = gen(["a black and white photo of a dog", "a pixel art castle"])
            >>> "monochrome" in negs[0], "anti-aliasing" in negs[1]
            (False, True)
        """
        unknown = sorted(set(kwargs) - _IGNORED_KWARGS)
        if unknown:
            raise TypeError(
                f"BuiltinGenerator() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; it takes "
                f"prompt, num_candidates and seed, and ignores model-generation options such as batch_size"
            )
        if isinstance(num_candidates, bool) or not isinstance(num_candidates, int):
            raise TypeError(f"num_candidates must be an int, got {type(num_candidates).__name__}: {num_candidates!r}")
        if num_candidates < 1:
            raise ValueError(f"num_candidates must be at least 1, got {num_candidates}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}: {seed!r}")
        seed = 0 if seed is None else seed
        if kwargs:
            logger.debug("BuiltinGenerator ignores the model-generation options %s", sorted(kwargs))

        if isinstance(prompt, str):
            return self._one(prompt, num_candidates, seed)
        if not isinstance(prompt, (list, tuple)):
            raise TypeError(f"prompt must be a str or a list of str, got {type(prompt).__name__}: {_short(prompt)}")
        for i, p in enumerate(prompt):
            if not isinstance(p, str):
                raise TypeError(f"prompt[{i}] must be a str, got {type(p).__name__}: {_short(p)}")
        return [self._one(p, num_candidates, seed) for p in prompt]

    def with_kind(self, kind: str) -> BuiltinGenerator:
        """This generator's settings for another kind of output: how a pipeline wrapper asks for video negatives.

        Args:
            kind: ``"image"`` or ``"video"``.

        Returns:
            ``self`` if it already writes for ``kind``, else a new :class:`BuiltinGenerator` with the same
            ``max_tokens``, ``max_terms``, ``count_tokens``, ``extra_terms`` and ``exclude_terms``.

        Raises:
            ValueError: If ``kind`` is neither ``"image"`` nor ``"video"``.

        Example:
            >>> video = BuiltinGenerator(extra_terms="nsfw").with_kind("video")
            >>> video.kind, video.extra_terms, "flickering" in video("a dog running on a beach")
            ('video', ('nsfw',), True)
        """
        if kind == self.kind:
            return self
        return BuiltinGenerator(
            max_tokens=self.max_tokens,
            max_terms=self.max_terms,
            count_tokens=self.count_tokens,
            extra_terms=self.extra_terms or None,
            exclude_terms=self.exclude_terms or None,
            kind=kind,
        )

    def __repr__(self) -> str:
        counter = (
            "approx_clip_tokens"
            if self.count_tokens is None
            else getattr(self.count_tokens, "__qualname__", type(self.count_tokens).__name__)
        )
        parts = [f"max_tokens={self.max_tokens}", f"max_terms={self.max_terms}", f"count_tokens={counter}"]
        if self.extra_terms:
            parts.append(f"extra_terms={list(self.extra_terms)!r}")
        if self.exclude_terms:
            parts.append(f"exclude_terms={list(self.exclude_terms)!r}")
        if self.kind != "image":
            parts.append(f"kind={self.kind!r}")
        return f"BuiltinGenerator({', '.join(parts)})"


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__}: {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def _as_terms(name: str, value: Iterable[str] | str | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return dedupe_terms(split_terms(value))
    try:
        items = list(value)
    except TypeError:
        raise TypeError(
            f"{name} must be a list of str or a comma-separated str, got {type(value).__name__}: {value!r}"
        ) from None
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(item).__name__}: {item!r}")
    return dedupe_terms(t for item in items for t in split_terms(item))


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
