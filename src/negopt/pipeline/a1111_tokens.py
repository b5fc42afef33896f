"""Text to token ids as AUTOMATIC1111 makes them, for ``prompt_weighting="a1111"``.

Two rules of A1111's text encoders (``modules/sd_hijack_clip.py``, ``sd_hijack_open_clip.py``,
``textual_inversion/textual_inversion.py``) that a diffusers tokenizer does not follow:

- Text cleanup. A1111's CLIP tokenizers run ``ftfy.fix_text`` on every run of text before BPE (transformers 4's
  Python ``CLIPTokenizer`` does when ftfy is installed, and A1111 installs it; the OpenCLIP tokenizer of SD 2.x and of
  SDXL's second encoder also unescapes HTML entities twice). ftfy turns full-width punctuation and spaces into ASCII
  (``，`` is a comma there, and counts as one for the comma backtrack), curly quotes into straight ones, ligatures into
  letters. transformers 5's ``CLIPTokenizer`` (what diffusers loads) does none of it, so ``"blurry，ugly"`` would be
  three byte tokens between the words instead of a comma.
- Textual inversions. A1111 adds no token to its tokenizer: it tokenizes the embedding's name and, at each position
  of a prompt's tokens, takes the longest embedding whose name's token ids come next (``find_embedding_at_position``).
  A match is of whole CLIP tokens, so ``easynegativev2`` (``easy neg ative v 2``) does not hold ``easynegative``
  (``easy negative</w>``); but CLIP cuts words at digits and punctuation, so ``easynegative2`` and ``x_easynegative``
  do, in A1111 as here. diffusers adds the name as a token of its tokenizer instead, which splits it out of any word.

The functions here tokenize with the pipeline's tokenizer minus the tokens diffusers added (a copy; the pipeline's
tokenizer is never changed) and find the embeddings diffusers loaded by A1111's rule.
"""

from __future__ import annotations

import html
import json
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["clean_text", "Vocabulary", "vocabulary", "find_embedding"]

#: ``{first token id of a name: [(the name's token ids, the embedding's vector ids)], longest name first}``.
Lookup = dict[int, list[tuple[list[int], list[int]]]]

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def clean_text(text: str, open_clip: bool = False) -> str:
    """A1111's cleanup of a run of text before BPE: ``ftfy.fix_text``, and for an OpenCLIP tokenizer (SD 2.x, SDXL's
    second encoder) HTML entities unescaped twice.

    Raises:
        ImportError: ftfy is missing (it is a dependency of negopt: ``pip install ftfy``).
    """
    if text.isascii() and "&" not in text and all(c >= " " or c in "\t\n\r" for c in text):
        return text  # printable ASCII without an entity: nothing for ftfy to change (the common case, made fast)
    try:
        import ftfy
    except ImportError as err:
        raise ImportError(
            "prompt_weighting='a1111' cleans text with ftfy, as AUTOMATIC1111's tokenizer does: pip install ftfy"
        ) from err
    text = ftfy.fix_text(text)
    return html.unescape(html.unescape(text)) if open_clip else text


class Vocabulary:
    """How A1111 tokenizes for one tokenizer: ``encode(texts)`` without the tokens diffusers added, and the
    textual-inversion ``lookup`` (see the module docs)."""

    def __init__(self, encode: Callable[[list[str]], list[list[int]]], lookup: Lookup, open_clip: bool):
        self.encode = encode
        self.lookup = lookup
        self.open_clip = open_clip


def _embedding_vectors(tokenizer: Any) -> dict[str, list[int]]:
    """Textual-inversion tokens loaded on ``tokenizer`` by diffusers: ``{name: the ids of its vectors}``.

    diffusers adds a k-vector embedding as the tokens ``name``, ``name_1``, ..., ``name_{k-1}``.
    """
    special = set(tokenizer.all_special_tokens)
    added = {t: i for t, i in tokenizer.added_tokens_encoder.items() if t not in special}
    names = {}
    for token, first in added.items():
        ids = [first]
        while f"{token}_{len(ids)}" in added:
            ids.append(added[f"{token}_{len(ids)}"])
        names[token] = ids
    # "name_1" is a vector of "name", not an embedding of its own.
    return {t: ids for t, ids in names.items() if not any(ids[0] in other[1:] for other in names.values())}


def _base_encoder(tokenizer: Any, has_added: bool) -> Callable[[list[str]], list[list[int]]]:
    """Tokenize without special tokens and without the tokens diffusers added: the tokenizer A1111 has."""
    if not has_added:
        return lambda texts: tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a Python tokenizer (transformers 4): its own BPE knows no added token
        return lambda texts: [tokenizer.convert_tokens_to_ids(tokenizer._tokenize(t)) for t in texts]
    from tokenizers import Tokenizer

    data = json.loads(backend.to_str())
    data["added_tokens"] = [t for t in data.get("added_tokens", []) if t.get("special")]
    base = Tokenizer.from_str(json.dumps(data))
    base.no_padding()
    base.no_truncation()
    return lambda texts: [e.ids for e in base.encode_batch(list(texts), add_special_tokens=False)] if texts else []


def vocabulary(tokenizer: Any) -> Vocabulary:
    """The :class:`Vocabulary` of a tokenizer in its current state (cached while no token is added to it)."""
    size = len(tokenizer)
    cached = _CACHE.get(tokenizer)
    if cached is not None and cached[0] == size:
        return cached[1]
    embeddings = _embedding_vectors(tokenizer)
    encode = _base_encoder(tokenizer, bool(embeddings))
    lookup: Lookup = {}
    names = list(embeddings)
    for name, ids in zip(names, encode(names)):
        if ids:
            lookup.setdefault(ids[0], []).append((ids, embeddings[name]))
    for matches in lookup.values():
        matches.sort(key=lambda m: len(m[0]), reverse=True)
    pad, eos = getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)
    result = Vocabulary(encode, lookup, open_clip=pad is not None and pad != eos)
    _CACHE[tokenizer] = (size, result)
    return result


def find_embedding(lookup: Lookup, tokens: list[int], position: int) -> tuple[list[int], int] | None:
    """A1111's ``find_embedding_at_position``: ``(the embedding's vector ids, how many tokens its name takes)`` for
    the longest embedding name whose token ids start at ``position``, or None."""
    for ids, vectors in lookup.get(tokens[position], ()):
        if tokens[position : position + len(ids)] == ids:
            return vectors, len(ids)
    return None
