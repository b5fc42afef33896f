"""The built-in generator: content-aware negative prompts from a curated vocabulary, with no weights.

:class:`BuiltinGenerator` is what :class:`~negopt.NegOptPipeline` and ``negopt generate`` use when no model is named.
The package keeps the vocabulary apart from the logic, so that a change to one is reviewed apart from the other:

- :mod:`negopt.builtin.vocabulary`: the data (subject and style groups, concepts, quality terms, the video terms and
  concepts, CLIP token counts) and where each list or term comes from;
- :mod:`negopt.builtin.patterns`: how a table entry is read (word-boundary patterns, term tuples);
- :mod:`negopt.builtin.rules`: the rules that read a prompt and compose a negative (:class:`BuiltinGenerator`).
"""

from __future__ import annotations

from negopt.builtin.rules import BuiltinAnalysis, BuiltinGenerator, approx_clip_tokens, vocabulary_words
from negopt.builtin.vocabulary import CLIP_WORD_TOKENS

__all__ = ["BuiltinGenerator", "BuiltinAnalysis", "approx_clip_tokens"]

# The names these had when the built-in generator was one module (tests and scripts/clip_word_counts.py use them).
_CLIP_WORD_TOKENS = CLIP_WORD_TOKENS
_vocabulary_words = vocabulary_words
