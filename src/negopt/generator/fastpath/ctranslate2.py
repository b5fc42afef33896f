"""``optimize(backend="ctranslate2")``: greedy calls run in CTranslate2, an inference engine for transformers.

Internal: this module's names may change in any release. The public surface is ``NegOptGenerator.optimize()``.

A float32 copy of the model (a peft adapter merged into it) is converted in memory with CTranslate2's own loaders
for the architecture (T5, GPT-2, ...) into a temporary folder, loaded, and the folder removed. The converted model's
vocabulary is the token ids written as strings (``"0"``, ``"1"``, ...), so ids go in and come out unchanged,
whatever the tokenizer's token strings are.

CTranslate2 applies ``repetition_penalty`` and ``no_repeat_ngram_size`` to the tokens the model wrote (and to a
forced first token); transformers also counts the decoder's start token (seq2seq) or the prompt (causal). For a
seq2seq model the two can differ only once an output holds the start token, and such rows are made again by
transformers. A causal model's prompt counts in CTranslate2 only when it decodes the prompt as a forced prefix, one
token a step, which was slower than torch: calls of a causal model that use either setting run in torch. So the
float32 output is transformers' token for token (tested).
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import torch

from negopt.generator.cache import ModelWatch
from negopt.generator.fastpath.greedy import GreedyPlan
from negopt.generator.fastpath.plain import plain_copy

logger = logging.getLogger(__name__)

__all__ = ["PRECISIONS", "available", "convert", "counts_prompt", "CT2Decoder"]

PRECISIONS = ("float32", "int8")


def available() -> bool:
    """Whether the ``ctranslate2`` package can be imported."""
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return False
    return True


class _IdVocabulary:
    """What CTranslate2's loaders read of a tokenizer, with every token id written as a string (``"17"``)."""

    def __init__(self, vocab_size: int, config: Any, tokenizer: Any) -> None:
        self._size = vocab_size

        def special(name: str) -> str | None:
            value = getattr(tokenizer, f"{name}_token_id", None)
            if value is None:
                value = getattr(config, f"{name}_token_id", None)
            return None if value is None else str(int(value))

        eos = special("eos")
        self.eos_token = eos
        self.bos_token = special("bos") or eos
        self.pad_token = special("pad") or eos
        self.unk_token = special("unk") or eos

    def get_vocab(self) -> dict[str, int]:
        return {str(i): i for i in range(self._size)}

    def convert_ids_to_tokens(self, ids: Any) -> Any:
        return [str(int(i)) for i in ids] if isinstance(ids, (list, tuple)) else str(int(ids))

    def __len__(self) -> int:
        return self._size


def convert(model: torch.nn.Module, tokenizer: Any, output_dir: str, precision: str = "float32") -> str:
    """Write ``model`` in CTranslate2's format to ``output_dir``, its weights in ``precision`` (``"float32"`` or
    ``"int8"``)."""
    from ctranslate2.converters import Converter
    from ctranslate2.converters.transformers import _MODEL_LOADERS

    plain = plain_copy(model)
    loader = _MODEL_LOADERS.get(type(plain.config).__name__)
    if loader is None:
        raise ValueError(
            f"backend='ctranslate2' cannot convert a {type(plain.config).__name__} model (CTranslate2 converts "
            f"{', '.join(sorted(_MODEL_LOADERS))}); use backend='torch'."
        )
    vocab_size = plain.get_output_embeddings().weight.shape[0]
    vocabulary = _IdVocabulary(vocab_size, plain.config, tokenizer)

    class _InMemory(Converter):
        def _load(self) -> Any:
            with torch.no_grad():
                return loader(plain, vocabulary)

    try:
        return _InMemory().convert(output_dir, quantization=precision, force=True)
    except (AttributeError, KeyError, TypeError, ValueError, NotImplementedError) as e:
        import ctranslate2

        raise ValueError(
            f"CTranslate2 {ctranslate2.__version__} could not convert this {type(plain).__name__} "
            f"({type(e).__name__}: {e}); use backend='torch', or a ctranslate2 release that supports this model "
            f"with your transformers version."
        ) from e


def counts_prompt(plan: GreedyPlan) -> bool:
    """Whether transformers' rules for this plan count a causal model's prompt, which CTranslate2 does only when it
    decodes the prompt token by token (slower than torch): such calls run in torch."""
    return plan.repetition_penalty != 1.0 or plan.no_repeat_ngram_size > 0


class CT2Decoder:
    """Greedy decoding of token ids in CTranslate2, for the calls :func:`~negopt.generator.fastpath.greedy.greedy_plan`
    accepts.

    Args:
        model: The transformers model (or a peft model over one), on the CPU.
        tokenizer: Its tokenizer (for the special token ids).
        precision: ``"float32"`` or ``"int8"`` (int8 weights, float32 activations).
        threads: CPU threads for one call (CTranslate2's ``intra_threads``).
        seq2seq: Whether the model is an encoder-decoder.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, precision: str, threads: int, seq2seq: bool) -> None:
        import ctranslate2

        self.seq2seq = seq2seq
        self._watch = ModelWatch()
        self._state = self._watch.weights(model)  # the model's identity, weights, adapters and their scales
        config = model.config
        self._start = getattr(config, "decoder_start_token_id", None) if seq2seq else None
        cls = ctranslate2.Translator if seq2seq else ctranslate2.Generator
        torch_threads = torch.get_num_threads()
        try:
            with tempfile.TemporaryDirectory(prefix="negopt-ct2-") as folder:
                # Weights are quantized while converting: the folder and the loaded model hold int8, not float32.
                path = convert(model, tokenizer, os.path.join(folder, "model"), precision)
                compute_type = "int8_float32" if precision == "int8" else "float32"
                self._engine = cls(path, device="cpu", compute_type=compute_type, intra_threads=threads)
        finally:
            # Loading sets the OpenMP thread count of the calling thread, which torch shares when its OpenMP
            # runtime was loaded first: give torch back its own count.
            torch.set_num_threads(torch_threads)

    def is_current(self, model: torch.nn.Module) -> bool:
        """Whether ``model`` still has the weights (and adapter) it had when it was converted."""
        return self._watch.weights(model) == self._state

    def accepts(self, plan: GreedyPlan) -> bool:
        """Whether CTranslate2 can run this plan (otherwise the call goes to the torch path)."""
        if not plan.eos:  # CTranslate2 always stops at an end token
            return False
        if self.seq2seq and (plan.start != self._start or plan.repetition_penalty < 1.0):
            # (A penalty below 1 favours the start token, which transformers counts and CTranslate2 does not: every
            # row would have to be made again, see __call__.)
            return False
        if not self.seq2seq and counts_prompt(plan):
            return False
        return plan.forced_eos is None or plan.max_new_tokens >= 2

    def __call__(self, rows: list[list[int]], plan: GreedyPlan) -> list[list[int] | None]:
        """The new token ids for each row of prompt ids (unpadded), as ``generate`` returns them for the row alone;
        None for a row that must run in transformers instead (a seq2seq output that holds the start token)."""
        longest = max(len(r) for r in rows)
        max_new = plan.max_new_tokens
        if plan.forced_eos is not None:
            # generate forces the end token as the last of max_new_tokens: at most max_new_tokens - 1 before it.
            max_new -= 1
        # generate's min_length counts the start token (seq2seq) or the padded prompt (causal).
        min_new = min(max(plan.min_new_tokens, plan.min_length - (1 if self.seq2seq else longest), 0), max_new)
        max_new = max(max_new, 1)
        options: dict[str, Any] = {
            "beam_size": 1,
            "repetition_penalty": plan.repetition_penalty,
            "no_repeat_ngram_size": plan.no_repeat_ngram_size,
            "end_token": [str(e) for e in plan.eos],
            "return_end_token": True,
        }
        source = [[str(t) for t in r] for r in rows]
        out: list[list[int] | None]
        if self.seq2seq:
            prefix = None if plan.forced_bos is None else [[str(plan.forced_bos)] for _ in rows]
            results = self._engine.translate_batch(
                source,
                target_prefix=prefix,
                max_decoding_length=max_new,
                min_decoding_length=min_new,
                max_input_length=0,
                **options,
            )
            out = [[int(t) for t in r.hypotheses[0]] for r in results]
            # transformers' repetition penalty and n-gram ban also count the start token; CTranslate2's only what
            # the model wrote. With a penalty of at least 1 the two can differ only once the output holds the start
            # token: such rows go to transformers.
            out = [None if plan.start in r else r for r in out]
            redo = sum(r is None for r in out)
            if redo:
                logger.info("%d of %d outputs hold the start token: transformers writes them again", redo, len(out))
        else:
            results = self._engine.generate_batch(
                source, max_length=max_new, min_length=min_new, include_prompt_in_result=False, **options
            )
            out = [list(r.sequences_ids[0]) for r in results]
        if plan.forced_eos is not None:
            out = [r if r is None or (r and r[-1] in plan.eos) else r + [plan.forced_eos[0]] for r in out]
        return out
