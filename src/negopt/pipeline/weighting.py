"""Prompt weighting for :class:`~negopt.NegOptPipeline`: encode prompts and negatives the AUTOMATIC1111 way or with
compel, long ones not truncated, textual-inversion embeddings counted at their true length.

``"a1111"`` follows AUTOMATIC1111's stable-diffusion-webui (``prompt_parser.parse_prompt_attention`` and
``sd_hijack_clip``) for CLIP text encoders:

0. As A1111's processing does, extra-network tags (``<lora:name:0.8>``, any ``<word:...>``) are removed from the
   prompts, with a warning that names them (load the LoRA with ``pipe.load_lora_weights``); in a negative A1111
   encodes them as text, and so does this, with a warning. Prompt editing (``[a:b:0.5]``), alternation (``[a|b]``)
   and ``AND`` are not implemented: they are encoded as written, with a warning.
1. The text is read into ``(text, weight)`` runs by :func:`negopt.text.parse_attention`; each run is cleaned as A1111's
   tokenizer cleans it (``ftfy.fix_text``: a full-width comma is a comma) and tokenized on its own, without
   start/end tokens; a textual inversion loaded with diffusers' ``load_textual_inversion`` is found as A1111 finds
   it, as the token ids of its name (whole CLIP tokens: ``easynegativev2`` does not hold ``easynegative``), and
   expanded to all of its vectors (see :mod:`negopt.pipeline.a1111_tokens`).
2. The tokens are cut into chunks of 75. As in A1111 (its default "comma padding backtrack" of 20): when a chunk is
   full and its last comma is at most 20 tokens back, the tokens after that comma move to the next chunk; an
   embedding never straddles two chunks; ``BREAK`` starts a new chunk.
3. Each chunk becomes 77 ids: the start token, the 75 (filled with the end token), the end token; everything after
   the first end token is then set to the tokenizer's pad token (the end token for SD 1.x's tokenizer, ``!`` for
   SD 2.x's and SDXL's second), so a short one-chunk prompt gives exactly the ids diffusers' ``encode_prompt`` gives.
4. Each chunk is encoded the way the pipeline's own ``encode_prompt`` does (SD 1.x/2.x: the last hidden state, or
   ``clip_skip``; SDXL: both encoders' penultimate hidden states side by side, and the pooled output of the second
   encoder from the first chunk).
5. "Original" emphasis, per encoder and per chunk: ``z = z * w`` (each token's hidden state times its weight), then
   ``z = z * (mean(z_before) / mean(z))``, the means over the chunk's 77 tokens and all features. A1111 takes that
   mean over the whole batch of prompts; here it is per prompt, so a prompt's embedding does not depend on the
   other prompts of the call (the same for a batch of one).
6. The chunks are concatenated (77, 154, 231, ... tokens). The prompt and the negative -- and every prompt of the
   call -- are padded to the same number of chunks with the encoding of the empty prompt. This is A1111's
   "pad prompt/negative prompt to be same length" option, off by default: by default A1111 pads only the prompts of
   a batch to each other, and runs the prompt and a negative of another length through the UNet separately, which
   one diffusers call cannot. Images differ from A1111's defaults there (only when the two lengths differ).
7. SDXL: when every negative of the call is empty (``""``), the negative embeddings and pooled embeddings are zeros,
   as A1111 always makes them (diffusers does it only for ``negative_prompt=None`` and
   ``force_zeros_for_empty_prompt``).

``"compel"`` hands the texts to compel's own wrappers (``CompelForSD``, ``CompelForSDXL``, ``CompelForFlux``,
``CompelForSana``, ``CompelForLumina2``), whose syntax (``term++``, ``(term)1.3``) and maths are compel's.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from negopt.pipeline.a1111_tokens import Vocabulary, clean_text, find_embedding, vocabulary
from negopt.pipeline.checks import per_prompt
from negopt.text import (
    BREAK_WEIGHT,
    PromptSyntaxWarning,
    parse_attention,
    remove_extra_networks,
    unsupported_a1111_syntax,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "PROMPT_WEIGHTINGS",
    "A1111_FAMILIES",
    "COMPEL_FAMILIES",
    "pipeline_family",
    "check_weighting",
    "encode_call",
    "encode_a1111",
    "encode_compel",
]

#: The values of ``prompt_weighting``: None (the text goes to the pipeline as is), ``"a1111"``, ``"compel"``.
PROMPT_WEIGHTINGS: tuple[str | None, ...] = (None, "a1111", "compel")

#: The pipeline families ``"a1111"`` encodes (CLIP text encoders).
A1111_FAMILIES: tuple[str, ...] = ("sd", "sdxl")

#: The pipeline families compel has a wrapper for.
COMPEL_FAMILIES: tuple[str, ...] = ("sd", "sdxl", "flux", "sana", "lumina2")

#: Tokens per chunk between the start and end tokens, and A1111's default comma backtrack.
CHUNK_LENGTH = 75
COMMA_BACKTRACK = 20

# The text arguments of a diffusers pipeline call that the embeddings replace.
_TEXT_ARGUMENTS = ("prompt", "prompt_2", "prompt_3", "negative_prompt", "negative_prompt_2", "negative_prompt_3")


def pipeline_family(pipeline: Any) -> str | None:
    """The family of a diffusers pipeline, for prompt weighting: ``"sd"``, ``"sdxl"``, ``"flux"``, ``"sana"``,
    ``"lumina2"`` or None (another one).

    Read from the class name and components: ``StableDiffusion*`` with one CLIP text encoder is ``"sd"`` (1.x and
    2.x, text-to-image, img2img, inpaint, ...); ``StableDiffusionXL*`` is ``"sdxl"``.
    """
    name = type(pipeline).__name__
    if name.startswith("StableDiffusionXL"):
        return "sdxl"
    if name.startswith("StableDiffusion3"):
        return None
    if name.startswith("StableDiffusion") and getattr(pipeline, "text_encoder_2", None) is None:
        encoder = getattr(pipeline, "text_encoder", None)
        if encoder is not None and type(encoder).__name__.startswith("CLIPTextModel"):
            return "sd"
        return None
    for prefix, family in (("Flux", "flux"), ("Sana", "sana"), ("Lumina2", "lumina2")):
        if name.startswith(prefix) and not name.startswith(prefix + "2"):
            return family
    return None


def check_family(pipeline: Any, weighting: str) -> str:
    """The pipeline's family, or a ValueError naming the families ``weighting`` supports."""
    family = pipeline_family(pipeline)
    supported = A1111_FAMILIES if weighting == "a1111" else COMPEL_FAMILIES
    if family not in supported:
        raise ValueError(
            f"prompt_weighting={weighting!r} does not support {type(pipeline).__name__}: it encodes "
            + (
                "for CLIP text encoders, i.e. Stable Diffusion 1.x/2.x and SDXL pipelines"
                if weighting == "a1111"
                else "through compel's wrappers, for Stable Diffusion 1.x/2.x, SDXL, Flux, Sana and Lumina2 pipelines"
            )
            + ". Pass prompt_weighting=None to send the text to the pipeline as is"
            + (", or 'compel' (which also covers Flux, Sana and Lumina2)." if weighting == "a1111" else ".")
        )
    return family


def _import_compel() -> Any:
    try:
        import compel
    except ImportError as err:
        raise ImportError(
            "prompt_weighting='compel' needs the compel library: pip install \"negopt[weighting]\" (or pip install "
            "compel)."
        ) from err
    return compel


def check_weighting(prompt_weighting: str | None, pipeline: Any) -> str | None:
    """``prompt_weighting`` itself, checked against the values and the pipeline's family.

    Args:
        prompt_weighting: One of :data:`PROMPT_WEIGHTINGS`.
        pipeline: The diffusers pipeline it will encode for.

    Raises:
        ValueError: An unknown value, or a family it does not support (see :func:`check_family`).
        ImportError: ``"compel"`` without the compel library.
    """
    if prompt_weighting not in PROMPT_WEIGHTINGS:
        raise ValueError(f"`prompt_weighting` must be one of {PROMPT_WEIGHTINGS}, got {prompt_weighting!r}.")
    if prompt_weighting is not None:
        check_family(pipeline, prompt_weighting)
        if prompt_weighting == "compel":
            _import_compel()
    return prompt_weighting


def encode_call(
    pipeline: Any,
    kwargs: dict[str, Any],
    prompt_weighting: str,
    prompts: list[str],
    negatives: list[str] | None,
    stacklevel: int = 4,
) -> dict[str, Any]:
    """A call's arguments with its prompts and negatives replaced by their embeddings, encoded with
    ``prompt_weighting``: what :class:`~negopt.NegOptPipeline` sends to the pipeline when weighting is on.

    Args:
        pipeline: The diffusers pipeline that will be called.
        kwargs: The call's arguments (``prompt_2`` and ``negative_prompt_2`` are read for SDXL, ``clip_skip`` for
            ``"a1111"``).
        prompt_weighting: ``"a1111"`` or ``"compel"``.
        prompts: The prompts.
        negatives: One negative per prompt, or None when the call sends none (the empty prompt is encoded, and SDXL
            with ``force_zeros_for_empty_prompt`` gets zeros, as diffusers does; with ``"a1111"`` SDXL gets zeros
            whenever every negative is empty, as A1111 does).
        stacklevel: Where the warnings about the texts point, as ``warnings.warn``'s, counted from here (the
            default, 4, is the caller of a :class:`~negopt.NegOptPipeline`).

    Returns:
        ``kwargs`` without its text arguments, with ``prompt_embeds``, ``negative_prompt_embeds`` (and the pooled
        embeddings or attention masks of the family).

    Raises:
        ValueError: ``prompt_3`` / ``negative_prompt_3`` (or, but for SDXL, ``prompt_2`` / ``negative_prompt_2``)
            is given: the weighting encodes ``prompt`` and ``negative_prompt`` for every text encoder.
    """
    batch = len(prompts)
    family = pipeline_family(pipeline)
    prompts_2 = per_prompt(kwargs.get("prompt_2"), batch, "prompt_2")
    own_2 = per_prompt(kwargs.get("negative_prompt_2"), batch, "negative_prompt_2")
    unused = [k for k in ("prompt_3", "negative_prompt_3") if kwargs.get(k) is not None]
    if family != "sdxl":
        unused += [k for k in ("prompt_2", "negative_prompt_2") if kwargs.get(k) is not None]
    if unused:
        raise ValueError(
            f"prompt_weighting={prompt_weighting!r} on {type(pipeline).__name__} encodes `prompt` and "
            f"`negative_prompt` for every text encoder; {', '.join(f'`{k}`' for k in unused)} cannot be used "
            "with it. Leave them out, or pass prompt_weighting=None."
        )
    texts = negatives if negatives is not None else [""] * batch
    negatives_2 = own_2 if own_2 is not None else (None if prompts_2 is None else texts)
    if prompt_weighting == "compel":
        embeds = encode_compel(pipeline, prompts, texts, prompts_2, negatives_2)
        zeros = negatives is None and getattr(getattr(pipeline, "config", None), "force_zeros_for_empty_prompt", False)
    else:
        prompts, prompts_2 = a1111_prompts(prompts, prompts_2, texts, negatives_2, stacklevel + 1)
        (hidden, pooled), (negative, negative_pooled) = encode_a1111(
            pipeline, [prompts, texts], [prompts_2, negatives_2], kwargs.get("clip_skip"), stacklevel=stacklevel + 1
        )
        embeds = {"prompt_embeds": hidden, "negative_prompt_embeds": negative}
        if pooled is not None:
            embeds["pooled_prompt_embeds"] = pooled
            embeds["negative_pooled_prompt_embeds"] = negative_pooled
        # A1111 (sd_models_xl.py): `force_zero_negative_prompt = is_negative_prompt and all(x == "" for x in batch)`.
        zeros = all(t == "" for t in texts) and all(t == "" for t in negatives_2 or ())
    if zeros and family == "sdxl":
        # What SDXL does with no negative prompt at all (diffusers), or with empty negatives (A1111).
        embeds["negative_prompt_embeds"] = embeds["negative_prompt_embeds"].zero_()
        if "negative_pooled_prompt_embeds" in embeds:
            embeds["negative_pooled_prompt_embeds"] = embeds["negative_pooled_prompt_embeds"].zero_()
    out = {k: v for k, v in kwargs.items() if k not in _TEXT_ARGUMENTS}
    out.update(embeds)
    return out


# -- A1111 ----------------------------------------------------------------------------------------------------------


def a1111_prompts(
    prompts: list[str],
    prompts_2: list[str] | None,
    negatives: list[str],
    negatives_2: list[str] | None,
    stacklevel: int = 2,
) -> tuple[list[str], list[str] | None]:
    """What A1111's processing does to the texts before they are encoded: the prompts without their extra-network
    tags (with a warning naming them), and warnings for the A1111 syntax that is not implemented (``stacklevel`` as
    ``warnings.warn``'s, counted from here).

    Returns:
        ``(prompts, prompts_2)`` without the tags; the negatives are encoded as they are, as in A1111.
    """
    removed: list[str] = []
    cleaned = []
    for group in (prompts, prompts_2):
        if group is None:
            cleaned.append(None)
            continue
        out = []
        for text in group:
            text, tags = remove_extra_networks(text)
            out.append(text)
            removed += tags
        cleaned.append(out)
    notes = []
    if removed:
        shown = ", ".join(dict.fromkeys(removed))
        notes.append(
            f"removed the extra-network tags {shown} from the prompt, as AUTOMATIC1111 does; negopt does not apply "
            "them: load a LoRA on the pipeline with pipe.load_lora_weights(...) (and set its scale) instead"
        )
    in_negatives = [tag for text in [*negatives, *(negatives_2 or ())] for tag in remove_extra_networks(text)[1]]
    if in_negatives:
        notes.append(
            f"the negative prompt holds the extra-network tags {', '.join(dict.fromkeys(in_negatives))}, which "
            "AUTOMATIC1111 does not read in a negative: they are encoded as text, as there; remove them"
        )
    unsupported = [u for text in [*prompts, *(prompts_2 or ())] for u in unsupported_a1111_syntax(text)]
    unsupported += [
        u for text in [*negatives, *(negatives_2 or ())] for u in unsupported_a1111_syntax(text, prompt=False)
    ]
    if unsupported:
        notes.append(
            f"{', '.join(dict.fromkeys(unsupported))}: AUTOMATIC1111 syntax that negopt does not implement (one "
            "diffusers call takes one embedding per prompt), encoded as written, square brackets as [x] emphasis; "
            "write the text you want encoded instead"
        )
    if notes:
        warnings.warn(f"prompt_weighting='a1111': {'; '.join(notes)}.", PromptSyntaxWarning, stacklevel=stacklevel)
    return cleaned[0], cleaned[1]


def _parse(texts: Sequence[str], stacklevel: int) -> dict[str, list[tuple[str, float]]]:
    """:func:`~negopt.text.parse_attention` of each distinct text; its warnings, one of each, are given with
    ``stacklevel`` counted from here."""
    parsed = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PromptSyntaxWarning)
        for text in dict.fromkeys(texts):
            parsed[text] = parse_attention(text)
    for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, PromptSyntaxWarning)):
        warnings.warn(message, PromptSyntaxWarning, stacklevel=stacklevel)
    for w in caught:
        if not issubclass(w.category, PromptSyntaxWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return parsed


def _chunks(tokenizer: Any, parsed: list[tuple[str, float]], vocab: Vocabulary) -> list[tuple[list[int], list[float]]]:
    """A1111's ``tokenize_line``: parsed runs as chunks of at most 75 ``(ids, weights)``, before start/end tokens."""
    texts = [clean_text(t, vocab.open_clip) for t, _ in parsed]
    tokenized = iter(vocab.encode(texts))
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    comma = comma if comma != tokenizer.unk_token_id else None

    chunks: list[tuple[list[int], list[float]]] = []
    ids: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def next_chunk() -> None:
        nonlocal ids, weights, last_comma
        chunks.append((ids, weights))
        ids, weights, last_comma = [], [], -1

    for (text, weight), tokens in zip(parsed, tokenized):
        if text == "BREAK" and weight == BREAK_WEIGHT:  # A1111's test: a weight of -1 alone is a weight
            next_chunk()
            continue
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == comma:
                last_comma = len(ids)
            elif len(ids) == CHUNK_LENGTH and last_comma != -1 and len(ids) - last_comma <= COMMA_BACKTRACK:
                cut = last_comma + 1
                moved_ids, moved_weights = ids[cut:], weights[cut:]
                ids, weights = ids[:cut], weights[:cut]
                next_chunk()
                ids, weights = moved_ids, moved_weights
            if len(ids) == CHUNK_LENGTH:
                next_chunk()
            found = find_embedding(vocab.lookup, tokens, position)
            if found is None:
                ids.append(token)
                weights.append(weight)
                position += 1
                continue
            group, name_length = found
            if len(group) > CHUNK_LENGTH:
                raise ValueError(
                    f"The textual-inversion token {tokenizer.convert_ids_to_tokens(group[0])!r} has {len(group)} "
                    f"vectors, more than a {CHUNK_LENGTH}-token chunk holds; prompt_weighting='a1111' cannot place "
                    "it. Use prompt_weighting=None (diffusers then truncates) or a shorter embedding."
                )
            if len(ids) + len(group) > CHUNK_LENGTH:
                next_chunk()
            ids.extend(group)
            weights.extend([weight] * len(group))
            position += name_length
    if ids or not chunks:
        next_chunk()
    return chunks


def _chunk_ids(tokenizer: Any, ids: list[int], weights: list[float]) -> tuple[list[int], list[float]]:
    """One chunk as the encoder reads it: start, the ids, end-token fill, end; pad after the first end token."""
    fill = CHUNK_LENGTH - len(ids)
    row = [tokenizer.bos_token_id, *ids, *[tokenizer.eos_token_id] * fill, tokenizer.eos_token_id]
    first_end = len(ids) + 1
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    row[first_end + 1 :] = [pad] * (len(row) - first_end - 1)
    return row, [1.0, *weights, *[1.0] * (fill + 1)]


def _encode_rows(
    family: str, encoder: Any, rows: torch.Tensor, clip_skip: int | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hidden states of whole chunks (``rows``: n x 77 ids), as the pipeline's ``encode_prompt`` takes them."""
    import torch

    device = encoder.device
    rows = rows.to(device)
    if family == "sd":
        mask = None
        if getattr(encoder.config, "use_attention_mask", False):
            # diffusers passes the tokenizer's mask: the start, the tokens and the first end token.
            first_end = (rows == encoder.config.eos_token_id).int().argmax(dim=1, keepdim=True)
            mask = (torch.arange(rows.shape[1], device=device)[None] <= first_end).long()
        if clip_skip is None:
            return encoder(rows, attention_mask=mask)[0], None
        out = encoder(rows, attention_mask=mask, output_hidden_states=True)
        final_layer_norm = getattr(encoder, "text_model", encoder).final_layer_norm  # transformers 5 has no text_model
        return final_layer_norm(out.hidden_states[-(clip_skip + 1)]), None
    out = encoder(rows, output_hidden_states=True)
    pooled = out[0] if out[0].ndim == 2 else None
    return out.hidden_states[-2 if clip_skip is None else -(clip_skip + 2)], pooled


def _emphasis(z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A1111's "Original" emphasis for one chunk per row: ``z * w``, rescaled to the unweighted mean, per row."""
    import torch

    original_mean = z.mean(dim=(1, 2), keepdim=True)
    z = z * weights[..., None]
    new_mean = z.mean(dim=(1, 2), keepdim=True)
    # A mean of exactly 0 (a final LayerNorm without bias) would make A1111's ratio 0/0: leave such a row unscaled.
    return z * torch.where(new_mean == 0, torch.ones_like(new_mean), original_mean / new_mean)


def encode_a1111(
    pipeline: Any,
    texts: Sequence[Sequence[str]],
    texts_2: Sequence[Sequence[str] | None] | None = None,
    clip_skip: int | None = None,
    *,
    stacklevel: int = 2,
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Encode groups of texts the AUTOMATIC1111 way for a Stable Diffusion 1.x/2.x or SDXL pipeline (see the module
    docs).

    Each group (the prompts of a call, then their negatives) goes through each text encoder in one batch, as
    diffusers' ``encode_prompt`` does, and every text of every group comes out with the same number of chunks (the
    most any of them needs), padded with the encoding of the empty prompt.

    Args:
        pipeline: A diffusers SD 1.x/2.x or SDXL pipeline; only its tokenizers and text encoders are used.
        texts: Groups of texts in A1111 syntax, e.g. ``[prompts, negatives]``.
        texts_2: For SDXL, the texts of the second encoder per group (``prompt_2`` / ``negative_prompt_2``); None
            (or a None group) for the same as ``texts``.
        clip_skip: As the pipeline's ``clip_skip``.
        stacklevel: Where the :class:`~negopt.text.PromptSyntaxWarning` about a text points, as ``warnings.warn``'s
            (counted from here: 2 is the caller).

    Returns:
        One ``(embeddings, pooled)`` per group: ``len(group) x (77 * chunks) x width``, and for SDXL the pooled
        embeddings of the first chunks (``len(group) x width``), else None.

    Raises:
        ValueError: The pipeline is not SD 1.x/2.x or SDXL; a weight A1111 itself fails on (``(x:1.2.3)``); a
            textual-inversion embedding has more than 75 vectors.
    """
    import torch

    family = check_family(pipeline, "a1111")
    groups = [list(g) for g in texts]
    groups_2 = [list(g_2) if g_2 is not None else g for g, g_2 in zip(groups, texts_2 or [None] * len(groups))]
    if family == "sd":
        encoders = [(pipeline.tokenizer, pipeline.text_encoder, groups)]
    else:
        encoders = [
            (pipeline.tokenizer, pipeline.text_encoder, groups),
            (pipeline.tokenizer_2, pipeline.text_encoder_2, groups_2),
        ]
        encoders = [e for e in encoders if e[0] is not None and e[1] is not None]  # the refiner has the second only

    parsed = _parse([t for _, _, per_group in encoders for group in per_group for t in group], stacklevel + 1)
    chunked = []  # per encoder, per group, per text: the chunks
    for tokenizer, _, per_group in encoders:
        vocab = vocabulary(tokenizer)
        chunked.append([[_chunks(tokenizer, parsed[t], vocab) for t in group] for group in per_group])
    n_chunks = max(len(c) for per_encoder in chunked for group in per_encoder for c in group)

    results = []
    for g in range(len(groups)):
        hidden, pooled = [], None
        for (tokenizer, encoder, _), per_group in zip(encoders, chunked):
            texts_chunks = per_group[g]
            rows, weights = [], []
            for chunks in texts_chunks:
                for ids, w in chunks:
                    row, row_weights = _chunk_ids(tokenizer, ids, w)
                    rows.append(row)
                    weights.append(row_weights)
            padding = any(len(c) < n_chunks for c in texts_chunks)
            if padding:  # the empty prompt's chunk, encoded once and repeated where a text is short
                row, row_weights = _chunk_ids(tokenizer, [], [])
                rows.append(row)
                weights.append(row_weights)
            with torch.no_grad():
                z, pool = _encode_rows(family, encoder, torch.tensor(rows, dtype=torch.long), clip_skip)
                weights_t = torch.tensor(weights, dtype=z.dtype, device=z.device)
                if bool((weights_t != 1).any()):
                    z = _emphasis(z, weights_t)
            per_text, first_rows, start = [], [], 0
            for chunks in texts_chunks:
                parts = [z[start : start + len(chunks)]] + [z[-1:]] * (n_chunks - len(chunks))
                per_text.append(torch.cat(parts).reshape(1, -1, z.shape[2]))
                first_rows.append(start)
                start += len(chunks)
            hidden.append(torch.cat(per_text))
            if pool is not None and pooled is None:
                pooled = pool[first_rows]
        if family == "sdxl" and pooled is None:
            raise ValueError(
                f"{type(pipeline).__name__} has no text encoder with a pooled output (text_encoder_2 is "
                f"{type(getattr(pipeline, 'text_encoder_2', None)).__name__}); SDXL needs one."
            )
        results.append((torch.cat(hidden, dim=-1), pooled))
    return results


# -- compel ---------------------------------------------------------------------------------------------------------


def encode_compel(
    pipeline: Any,
    prompts: list[str],
    negatives: list[str],
    prompts_2: list[str] | None = None,
    negatives_2: list[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Encode prompts and negatives with compel's wrapper for the pipeline's family (long prompts not truncated where
    compel allows it: SD and SDXL; its Flux, Sana and Lumina2 wrappers cut at the encoders' limits).

    Args:
        pipeline: A diffusers pipeline of a family compel supports.
        prompts: The prompts, in compel's syntax.
        negatives: One negative per prompt.
        prompts_2: For SDXL, the second encoder's prompts (compel's "style" prompts); None for the same.
        negatives_2: For SDXL, the second encoder's negatives; None for the same.

    Returns:
        The embedding arguments of the pipeline's ``__call__`` (``prompt_embeds``, ``negative_prompt_embeds`` and,
        where the family has them, the pooled embeddings or attention masks).

    Raises:
        ImportError: compel is not installed (``pip install "negopt[weighting]"``).
    """
    import torch

    family = check_family(pipeline, "compel")
    compel = _import_compel()
    from compel import DiffusersTextualInversionManager

    for name in ("tokenizer", "tokenizer_2"):
        limit = getattr(getattr(pipeline, name, None), "model_max_length", 0)
        if limit > 1_000_000:
            raise ValueError(
                f"prompt_weighting='compel' needs a tokenizer with a length limit, but {type(pipeline).__name__}."
                f"{name}.model_max_length is {limit} (no limit). Load the tokenizer with its model_max_length "
                "(e.g. 512 for Flux's T5), or pass prompt_weighting=None."
            )
    ti = DiffusersTextualInversionManager(pipeline) if hasattr(pipeline, "maybe_convert_prompt") else None
    wrapper_class = {
        "sd": compel.CompelForSD,
        "sdxl": compel.CompelForSDXL,
        "flux": compel.CompelForFlux,
        "sana": compel.CompelForSana,
        "lumina2": compel.CompelForLumina2,
    }[family]
    wrapper = (
        wrapper_class(pipeline, textual_inversion_manager=ti) if family in ("sd", "sdxl") else wrapper_class(pipeline)
    )
    with torch.no_grad():
        if family == "sdxl":
            out = wrapper(
                prompts, style_prompt=prompts_2, negative_prompt=negatives, negative_style_prompt=negatives_2
            )
        else:
            out = wrapper(prompts, negative_prompt=negatives)
    kwargs = {"prompt_embeds": out.embeds, "negative_prompt_embeds": out.negative_embeds}
    if out.pooled_embeds is not None:
        kwargs["pooled_prompt_embeds"] = out.pooled_embeds
        kwargs["negative_pooled_prompt_embeds"] = out.negative_pooled_embeds
    if out.attention_mask is not None:
        kwargs["prompt_attention_mask"] = out.attention_mask
        kwargs["negative_prompt_attention_mask"] = out.negative_attention_mask
    return kwargs
