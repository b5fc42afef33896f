"""From a ``NegOptGenerator`` call's arguments to the model's inputs: argument checks, generation settings, token ids
cut to the input limit, padded batches.

Internal: this module's names may change in any release. The public surface is ``NegOptGenerator.__call__`` and
``NegOptGenerator.encode_prompts``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch

from negopt.values import check_seed

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase

    from negopt.config import NegOptConfig

__all__ = ["check_inputs", "check_generation_kwargs", "generation_kwargs", "encode", "pad"]

# generate() arguments that count something: at least 1, or at least 0.
_AT_LEAST_ONE = ("max_new_tokens", "max_length", "num_beams", "num_beam_groups", "num_return_sequences")
_AT_LEAST_ZERO = ("min_new_tokens", "min_length", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size")


def check_inputs(prompt: Any, num_candidates: Any, seed: Any, batch_size: Any) -> tuple[list[str], bool]:
    """The prompts as a list, and whether one str was given; raises on a bad argument."""
    for name, value in (("num_candidates", num_candidates), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}.")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}: {seed!r}.")
    check_seed("seed", seed, optional=True)
    if isinstance(prompt, str):
        return [prompt], True
    if prompt is None or not isinstance(prompt, (list, tuple)):
        raise TypeError(f"prompt must be a str or a list of str, got {type(prompt).__name__}: {prompt!r:.80}.")
    for i, p in enumerate(prompt):
        if not isinstance(p, str):
            raise TypeError(
                f"prompt must be a str or a list of str, but prompt[{i}] is {type(p).__name__}: {p!r:.80}."
            )
    return list(prompt), False


def generation_kwargs(
    config: NegOptConfig, num_candidates: int, call_kwargs: dict[str, Any], pad_token_id: int
) -> dict[str, Any]:
    """The keyword arguments for ``model.generate``: the config's defaults, the call's, and the candidates asked."""
    kwargs = {**config.generation_kwargs, **call_kwargs}
    if num_candidates > 1:
        if "do_sample" not in call_kwargs and "num_beams" not in call_kwargs:
            # k greedy candidates would be k copies of one answer: sample instead.
            kwargs["do_sample"] = True
            kwargs["num_beams"] = 1
        kwargs["num_return_sequences"] = num_candidates
    kwargs.setdefault("pad_token_id", pad_token_id)
    check_generation_kwargs(kwargs, num_candidates)
    return kwargs


def check_generation_kwargs(kwargs: dict[str, Any], num_candidates: int = 1) -> None:
    """Refuse generation settings that ``generate`` would fail on deep inside (``num_beams=0`` divides by zero) or
    that would give ``num_candidates`` copies of one answer (greedy decoding).

    Raises:
        ValueError: The message names the setting, its value and the fix.
    """
    for names, low in ((_AT_LEAST_ONE, 1), (_AT_LEAST_ZERO, 0)):
        for name in names:
            value = kwargs.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
    if num_candidates < 2:
        return
    beams = kwargs.get("num_beams") or 1
    if beams == 1 and not kwargs.get("do_sample"):
        raise ValueError(
            f"num_candidates={num_candidates} with greedy decoding (do_sample=False, num_beams=1) would give "
            f"{num_candidates} identical candidates; pass do_sample=True to sample them, or "
            f"num_beams>={num_candidates} for the {num_candidates} best beams."
        )
    if 1 < beams < num_candidates:
        raise ValueError(
            f"num_candidates={num_candidates} with num_beams={beams}: beam search returns at most num_beams "
            f"candidates; pass num_beams>={num_candidates}, or do_sample=True with num_beams=1."
        )


def encode(
    tokenizer: PreTrainedTokenizerBase,
    config: NegOptConfig,
    prompts: list[str],
    limit: int,
    seq2seq: bool,
    stacklevel: int = 2,
) -> list[list[int]]:
    """Token ids of the formatted prompts, each at most ``limit`` long (the prompt is cut, not the template).

    ``stacklevel`` is the truncation warning's, counted from this function: the caller passes the depth of the
    user's call, so that the warning points at the user's line.
    """
    tok = tokenizer
    texts = [config.format_prompt(p) for p in prompts]
    # Tokenizing to limit + 1 tells which inputs are too long without the tokenizer's own length warning.
    ids = tok(texts, add_special_tokens=True, truncation=True, max_length=limit + 1)["input_ids"]
    too_long = [j for j, x in enumerate(ids) if len(x) > limit]
    if too_long:
        overhead = len(tok(config.format_prompt(""), add_special_tokens=True)["input_ids"])
        budget = max(limit - overhead, 1)
        for j in too_long:
            prompt_ids = tok(prompts[j], add_special_tokens=False, truncation=True, max_length=budget)["input_ids"]
            short = tok.decode(prompt_ids, skip_special_tokens=True)
            x = tok(config.format_prompt(short), add_special_tokens=True)["input_ids"]
            if len(x) > limit:  # re-tokenizing can merge differently: cut, keeping the template's end
                x = x[:limit] if seq2seq else x[-limit:]
            ids[j] = x
        warnings.warn(
            f"{len(too_long)} prompt(s) were longer than the model's input limit of {limit} tokens and were "
            "truncated. Shorten them, or raise the limit with NegOptConfig(max_input_tokens=...) if the model "
            "supports longer inputs.",
            UserWarning,
            stacklevel=stacklevel,
        )
    return ids


def pad(
    rows: list[list[int]], device: torch.device, pad_token_id: int, seq2seq: bool, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to ``width`` (default: the longest row): right for seq2seq, left for causal (so generation continues
    each row's end)."""
    width = max(len(r) for r in rows) if width is None else width
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        span = slice(0, len(row)) if seq2seq else slice(width - len(row), width)
        input_ids[r, span] = torch.tensor(row, dtype=torch.long)
        attention_mask[r, span] = 1
    return input_ids.to(device), attention_mask.to(device)
