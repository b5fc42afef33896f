"""``NegOptGenerator``: a small language model that writes negative prompts.

Loads a seq2seq LM (T5, Flan-T5, BART) or a causal LM (GPT-2 style), or a LoRA adapter over one, from a local folder
or the Hugging Face Hub; generates in length-sorted, padded batches; cleans the output with :mod:`negopt.text`; saves
and pushes folders that load back with :meth:`NegOptGenerator.from_pretrained`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from negopt import hub
from negopt.config import NegOptConfig
from negopt.generator import cache, inputs
from negopt.generator.cache import LRUCache, check_cache_size
from negopt.generator.fastpath import prepare as fastpath
from negopt.generator.fastpath.greedy import GreedyDecoder
from negopt.generator.saving import (
    GeneratorSavingMixin,
    Unoptimized,
    keep_unoptimized,
    load_generation_config,
    saved_config,
)
from negopt.hub import ADAPTER_CONFIG_NAME
from negopt.text import clean_negative, strip_echo

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from negopt.generator.fastpath.ctranslate2 import CT2Decoder

__all__ = ["NegOptGenerator", "ADAPTER_CONFIG_NAME", "DEFAULT_MAX_INPUT_TOKENS"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_INPUT_TOKENS = 512
# Tokenizers without a real limit report model_max_length as ~1e30; anything above this is treated as "no limit".
_SANE_MAX_LENGTH = 100_000


# ----------------------------------------------------------------------------------------------------- generator
class NegOptGenerator(GeneratorSavingMixin):
    """A language model that writes a negative prompt for a text-to-image prompt.

    ``gen(prompt)`` returns a negative prompt, ``gen(prompts)`` a list of them in the same order; see
    :meth:`__call__`. Build one with :meth:`from_pretrained`, or hand in a model and tokenizer you already have (the
    constructor is the ``from_model`` path). The model and tokenizer are used as given: the generator never changes
    their settings (padding side, pad token, train/eval mode).

    Args:
        model: A transformers seq2seq or causal LM (``PreTrainedModel``), or a peft ``PeftModel`` over one.
        tokenizer: Its tokenizer.
        config: Prompt template and generation defaults; None builds the default for the model's type.
        cache_size: How many results of deterministic calls (greedy or beam search, or sampling with a ``seed``)
            to keep, least recently used first out; a repeated call returns the kept result without running the
            model. 0 turns the cache off. See :attr:`cache_size`.

    Raises:
        TypeError: ``model`` cannot generate, ``config`` is not a NegOptConfig, or ``cache_size`` is not an int.
        ValueError: The model is neither seq2seq nor causal, ``config.model_type`` does not match it, or
            ``cache_size`` is negative.

    Example:
        >>> from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        >>> model = AutoModelForSeq2SeqLM.from_pretrained("google/flan-t5-small")  # doctest: +SKIP
        >>> gen = NegOptGenerator(model, AutoTokenizer.from_pretrained("google/flan-t5-small"))  # doctest: +SKIP
        >>> gen("a portrait photo of an old fisherman")  # doctest: +SKIP
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: NegOptConfig | None = None,
        cache_size: int = 128,
    ) -> None:
        if not callable(getattr(model, "generate", None)) or getattr(model, "config", None) is None:
            raise TypeError(
                f"model must be a transformers language model with a .generate method (or a peft PeftModel over "
                f"one), got {type(model).__name__}."
            )
        if not callable(tokenizer):
            raise TypeError(f"tokenizer must be a transformers tokenizer, got {type(tokenizer).__name__}.")
        if config is not None and not isinstance(config, NegOptConfig):
            raise TypeError(
                f"config must be a negopt.NegOptConfig or None, got {type(config).__name__}; "
                "build one with NegOptConfig(...) or NegOptConfig.from_dict(d)."
            )
        model_type = hub.model_type_of(model.config, f"the model ({type(model).__name__})")
        if config is None:
            config = NegOptConfig(model_type=model_type)
        elif config.model_type != model_type:
            raise ValueError(
                f"config.model_type is {config.model_type!r} but the model ({type(model).__name__}) is a "
                f"{model_type} LM; set NegOptConfig(model_type={model_type!r}, ...)."
            )
        pad_id = tokenizer.pad_token_id
        if pad_id is None:  # GPT-2 style tokenizers have no pad token: pad with EOS (masked out anyway)
            pad_id = tokenizer.eos_token_id
        if pad_id is None:
            pad_id = getattr(model.generation_config, "pad_token_id", None) or 0
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self._pad_token_id = int(pad_id)
        self._progress_bar_config: dict[str, Any] = {}
        self._cache = LRUCache(check_cache_size(cache_size))
        self._fast: dict[str, Any] | None = None  # set by optimize()
        self._decoder: GreedyDecoder | CT2Decoder | None = None  # optimize()'s decode loop
        self._unoptimized: Unoptimized | None = None  # what optimize() cast or replaced, for save_pretrained

    # ------------------------------------------------------------------------------------------------ properties
    @property
    def is_seq2seq(self) -> bool:
        """True for an encoder-decoder model (T5, BART), False for a causal LM."""
        return self.config.model_type == "seq2seq"

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's floating-point parameters."""
        for p in self.model.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32  # pragma: no cover - a model without float parameters

    @property
    def max_input_tokens(self) -> int:
        """Inputs are truncated to this many tokens: the config's limit, else the tokenizer's when sane, else 512."""
        if self.config.max_input_tokens is not None:
            return int(self.config.max_input_tokens)
        limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(limit, int) and 0 < limit <= _SANE_MAX_LENGTH:
            return limit
        return DEFAULT_MAX_INPUT_TOKENS

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> NegOptGenerator:
        """Move the model to ``device`` (and cast to ``dtype``); returns ``self``. Clears the result cache."""
        torch_int8 = self._fast is not None and self._fast["precision"] == "int8" and self._fast["backend"] == "torch"
        if torch_int8 and device is not None:
            if torch.device(device).type != "cpu":
                raise ValueError(
                    f"this generator's model was quantized to int8 by optimize(precision='int8'), which runs on the "
                    f"CPU only, so it cannot move to {device!r}: load the generator again, then .to({device!r})."
                )
        if device is not None:
            self.model.to(device)
        if dtype is not None:
            self.model.to(dtype)
            if self._unoptimized is not None and self._unoptimized.weights is not None:
                # The user chose the dtype: save_pretrained now saves the weights as they are.
                self._unoptimized = None
        self.clear_cache()
        return self

    # ---------------------------------------------------------------------------------------------- speed: cache
    @property
    def cache_size(self) -> int:
        """How many results the cache keeps (0: no cache). Settable; shrinking drops the least recently used.

        A call is cached when its result is deterministic: greedy or beam search (one entry per prompt, so a list
        call reuses the prompts it has seen), or sampling with an explicit ``seed`` (one entry per call, since a
        prompt's samples depend on the batch it shares). Sampling without a seed, a model in training mode, and a
        call that passes an object (a logits processor, a callable) to ``generate`` are never cached. The key holds
        the prompt, ``num_candidates``, ``seed``, every generation setting (the config's and the call's), the prompt
        template and input limit, the tokenizer and the model; the cache empties itself when the model changes: new
        weights (an optimizer step, ``load_state_dict``, a parameter or layer replaced), another active LoRA adapter,
        ``disable_adapter()``, an adapter's scale (``set_scale``, ``rescale_adapter_scale``, ``scaling`` edited) or a
        merged adapter, an edit of ``model.generation_config`` or ``model.config``, a move or cast (:meth:`to`),
        :meth:`optimize`. A write through ``param.data`` is invisible to it: call :meth:`clear_cache` after one. A
        hit costs a few microseconds and returns a fresh list each time.
        """
        return self._cache.maxsize

    @cache_size.setter
    def cache_size(self, value: int) -> None:
        self._cache.resize(check_cache_size(value))

    def clear_cache(self) -> None:
        """Forget every cached result."""
        self._cache.clear()

    def cache_info(self) -> dict[str, int]:
        """``{"hits": ..., "misses": ..., "size": ..., "maxsize": ...}``, as ``functools.lru_cache`` reports it."""
        c = self._cache
        return {"hits": c.hits, "misses": c.misses, "size": len(c), "maxsize": c.maxsize}

    def _cache_scope(self, kwargs: dict[str, Any], num_candidates: int, seed: int | None) -> tuple | None:
        """The part of a cache key shared by every prompt of a call, or None when the call must not be cached."""
        fast = None if self._fast is None else tuple(sorted(self._fast.items()))
        settings = (id(self.tokenizer), self.config.prompt_template, self.max_input_tokens, fast)
        return cache.cache_scope(self._cache, self.model, kwargs, num_candidates, seed, settings)

    # ------------------------------------------------------------------------------------------ speed: fast path
    def optimize(
        self,
        precision: str | torch.dtype = "auto",
        *,
        compile: bool | None = None,
        warmup: bool = True,
        backend: str = "torch",
        threads: int | None = None,
    ) -> NegOptGenerator:
        """Make one-prompt calls fast, at a cost in start-up time and, for reduced precision, in exactness.

        - ``precision``: ``"auto"`` is ``"bfloat16"`` on a GPU that supports it (``"float16"`` otherwise) and
          ``"float32"`` on a CPU. ``"bfloat16"`` / ``"float16"`` cast the model in place, as :meth:`to` does.
          ``"int8"`` (CPU only) replaces ``self.model`` with a copy whose linear layers are dynamically quantized to
          int8 (``torch.ao.quantization.quantize_dynamic``), a LoRA adapter merged into the copy first at its
          current scale; the model you passed in is left as it was. Reduced precision changes outputs: the same
          prompt can get a somewhat different negative than in float32. Either way :meth:`save_pretrained` still
          writes the weights as they were before (a cast keeps a CPU copy of them; int8 keeps the original model).
        - Greedy calls whose generation settings the decode loop implements exactly (``max_new_tokens``,
          ``repetition_penalty``, ``no_repeat_ngram_size``, ``min_length``, ``min_new_tokens``, forced BOS/EOS, the
          special tokens: negopt's defaults included) then run negopt's decode loop instead of ``model.generate``:
          encoder or prefill once, one decoder step a token over a static KV cache, the next token chosen on the
          device. In float32 its output is ``generate``'s, token for token. Any other setting (beams, sampling,
          ``bad_words_ids``, a logits processor, ...) goes to ``generate``. On a CPU the loop runs for calls of up
          to ``batch_size`` prompts; on a GPU for one-prompt calls, and only when compiled.
        - ``compile``: the loop's first token and its step are compiled with ``torch.compile`` (and on a GPU each is
          captured as a CUDA graph, one replay a token), the input padded to a multiple of 32 tokens so that one
          graph serves many prompts. Default: True on a GPU, False on a CPU (where compiling costs minutes and gains
          little; see the benchmarks page). ``compile=False`` on a GPU only casts.
        - ``warmup``: generate once for a short prompt now, so that the first real call does not pay for compiling
          (which takes tens of seconds, and again for each new bucket of input lengths or ``max_new_tokens``).
        - ``backend="ctranslate2"`` (CPU; ``pip install "negopt[ctranslate2]"``): those greedy calls run in
          CTranslate2 instead, in ``"float32"`` (the torch path's output, token for token) or ``"int8"`` (the
          fastest on a CPU). The model (an adapter merged into a copy) is converted in memory; the torch model
          serves every other call, and again, with a warning, once its weights or adapter change.

        Clears the cache. Call it once, after :meth:`to`.

        Args:
            precision: ``"auto"``, ``"float32"``, ``"bfloat16"``, ``"float16"`` (GPU) or ``"int8"`` (CPU); also
                ``"fp32"``, ``"bf16"``, ``"fp16"`` or a ``torch.dtype``.
            compile: Compile the decode loop (and capture CUDA graphs on a GPU); None: on a GPU only.
            warmup: Run one generation now.
            backend: ``"torch"`` or ``"ctranslate2"``.
            threads: CPU threads of one CTranslate2 call (default 1, the fastest for one prompt on a small CPU);
                ``backend="ctranslate2"`` only.

        Returns:
            ``self``.

        Raises:
            ValueError: An unknown ``precision`` or ``backend``, ``"int8"`` off the CPU or ``"float16"`` on it,
                another precision after ``"int8"``, ``compile=True`` for a model that transformers cannot compile,
                ``backend="ctranslate2"`` off the CPU, with ``compile=True``, with ``"bfloat16"``, or for an
                architecture CTranslate2 cannot convert; ``threads`` below 1 or with ``backend="torch"``.
            TypeError: ``compile`` or ``warmup`` is not a bool.
            ImportError: ``backend="ctranslate2"`` without the ``ctranslate2`` package.

        Example:
            >>> gen = NegOptGenerator.from_pretrained("path/to/generator", device="cuda").optimize()  # doctest: +SKIP
            >>> gen("a red fox in the snow")  # bfloat16, static cache, CUDA graphs  # doctest: +SKIP
            >>> cpu = NegOptGenerator.from_pretrained("path/to/generator")  # doctest: +SKIP
            >>> cpu.optimize("int8", backend="ctranslate2")  # int8 weights in CTranslate2  # doctest: +SKIP
        """
        if fastpath.check_backend(backend, threads, warmup) == "ctranslate2":
            defaults = inputs.generation_kwargs(self.config, 1, {}, self._pad_token_id)
            self._fast, self._decoder = fastpath.prepare_ctranslate2(
                self.model, self.tokenizer, self._fast, precision, compile, threads, self.device, self.is_seq2seq,
                defaults,
            )  # fmt: skip
        else:
            kept = self._unoptimized
            if self._fast is None or self._fast["backend"] != "torch" or self._fast["precision"] != "int8":
                # (An int8 model stays int8: prepare() refuses another precision, and the record already exists.)
                resolved = fastpath.resolve_precision(precision, self.device)
                kept = keep_unoptimized(kept, self.model, resolved, self.dtype)
            self.model, self._fast, self._decoder = fastpath.prepare(
                self.model, self._fast, precision, compile, self.device, self.dtype
            )
            if kept is not None:
                kept.current = self.model
            self._unoptimized = kept
        self.clear_cache()
        if warmup:
            size, self._cache.maxsize = self._cache.maxsize, 0  # every warm-up call must run the model
            try:
                for _ in range(fastpath.warmup_runs(self._fast, self.device)):
                    self("a photo of a cat")
            finally:
                self._cache.maxsize = size
        return self

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """Options for the tqdm bar shown over batches (e.g. ``disable=True``), as in diffusers."""
        self._progress_bar_config = kwargs

    def __repr__(self) -> str:
        n_params = sum(p.numel() for p in self.model.parameters())
        size = f"{n_params / 1e9:.2f}B" if n_params >= 1e9 else f"{n_params / 1e6:.2f}M"
        adapter = ""
        if hasattr(self.model, "peft_config"):
            base = self.model.get_base_model()
            adapter = f", adapter=lora over {type(base).__name__}"
        return (
            f"{type(self).__name__}(model={type(self.model).__name__}, type={self.config.model_type}, "
            f"params={size}, device={self.device}, dtype={str(self.dtype).replace('torch.', '')}"
            f"{adapter}, template={self.config.prompt_template!r})"
        )

    # ---------------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        device: str | torch.device | None = None,
        torch_dtype: torch.dtype | str | None = None,
        use_safetensors: bool = True,
        trust_remote_code: bool = False,
    ) -> NegOptGenerator:
        """Load a generator from a local folder or a hub id.

        The folder holds a transformers model (``config.json`` + safetensors weights) or a LoRA adapter
        (``adapter_config.json``; its ``base_model_name_or_path`` is loaded the same way, then the adapter on top),
        the tokenizer, and optionally ``negopt_config.json`` (prompt template, generation defaults). Whether the
        model is seq2seq or causal is read from its config. A local folder wins; otherwise the hub is asked, its
        cache first.

        Args:
            name_or_path: A local folder or a hub id (``"org/name"``).
            revision: Hub revision (branch, tag or commit) of ``name_or_path``.
            cache_dir: Hub cache folder.
            token: Hub token, for private or gated repositories.
            local_files_only: Never reach the hub; use the local cache only.
            device: Where to put the model (default: CPU).
            torch_dtype: Parameter dtype (default ``torch.float32``; ``"auto"`` takes the checkpoint's).
            use_safetensors: Load safetensors weights only (default). Pickle weights (``pytorch_model.bin``) can
                run code when loaded: pass False only for files you trust.
            trust_remote_code: Allow a checkpoint's own modelling code to run. Off unless you ask.

        Returns:
            The generator, its model in eval mode.

        Raises:
            FileNotFoundError: A local path that does not exist, a folder without a model, or no tokenizer files
                (the message names the folders and the files expected).
            OSError: The hub could not provide ``name_or_path`` (offline, no such repository, network); the message
                says which.
            ValueError: Pickle-only weights with ``use_safetensors=True``; a model that is neither seq2seq nor
                causal; weights that do not cover the model (another architecture's); a tokenizer with no usable
                vocabulary; a ``negopt_config.json`` whose model type does not match the model.

        Example:
            >>> gen = NegOptGenerator.from_pretrained("path/to/generator")  # doctest: +SKIP
            >>> gen("a red fox in the snow")  # doctest: +SKIP
        """
        loaded = hub.load_lm(
            name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            torch_dtype=torch_dtype,
            use_safetensors=use_safetensors,
            trust_remote_code=trust_remote_code,
        )
        config = saved_config(loaded, name_or_path)
        load_generation_config(loaded)
        generator = cls(loaded.model, loaded.tokenizer, config)
        if device is not None:
            generator.to(device)
        return generator

    # ------------------------------------------------------------------------------------------------- generation
    def __call__(
        self,
        prompt: str | Sequence[str],
        *,
        num_candidates: int = 1,
        seed: int | None = None,
        batch_size: int = 32,
        **generation_kwargs: Any,
    ) -> str | list[str] | list[list[str]]:
        """Write negative prompts.

        Greedy decoding with repetition control by default (``NegOptConfig.generation_kwargs``, which a saved
        ``negopt_config.json`` can change); keyword arguments override those defaults and go to ``model.generate``
        (``max_new_tokens``, ``min_new_tokens``, ``no_repeat_ngram_size``, ``num_beams``, ...). Prompts run in batches
        sorted by length and padded to the longest of each batch. A greedy batched call gives the same text as one
        call per prompt: padding is masked out, a causal model's position ids follow its attention mask (left
        padding), padding never counts for ``no_repeat_ngram_size`` or ``repetition_penalty``, and each output is
        cut at its first EOS. The logits can differ in the last float bits (matrix shapes change with the
        padding), which could only matter for an exact tie between two tokens in float32; in torch's reduced
        precision (:meth:`optimize` ``"bfloat16"`` or ``"int8"``, a cast model) such differences are larger, and
        a batched call can give some prompts another text than one call each.

        The output is cleaned: an echo of the prompt is removed, whitespace and commas are normalised, repeated
        terms dropped; A1111 weights such as ``(blurry:1.3)`` are kept as written. An empty or whitespace-only
        prompt gives ``""`` without running the model. A prompt longer than :attr:`max_input_tokens` is truncated
        with a warning.

        Args:
            prompt: A prompt, or a list of prompts.
            num_candidates: Negatives per prompt. Above 1, generation samples (``do_sample=True``) unless you pass
                ``do_sample`` or ``num_beams`` yourself (beam search then returns the ``num_candidates`` best beams).
            seed: Makes sampling reproducible: the same seed, prompts and batch size give the same output (a
                prompt's samples depend on the batch it shares). The global torch random state is left as it was.
                Greedy decoding needs no seed; without one, sampling draws from the global torch RNG.
            batch_size: Prompts per forward pass.
            **generation_kwargs: Passed to ``model.generate``.

        Returns:
            For a str: a str, or a list of ``num_candidates`` str. For a list: a list of the same length and order,
            of str or of lists of ``num_candidates`` str.

        Raises:
            TypeError: ``prompt`` is not a str or a list of str (the message gives the bad index), or
                ``num_candidates``, ``batch_size`` or ``seed`` is not an int.
            ValueError: ``num_candidates`` or ``batch_size`` is below 1; ``seed`` is outside 0 to 2**32 - 1; a count
                among the generation settings is out of range (``max_new_tokens=0``, ``num_beams=0``); or the
                settings cannot give ``num_candidates`` different candidates (greedy decoding, or fewer beams).

        Example:
            >>> gen("a portrait photo of an old fisherman")  # doctest: +SKIP
            'blurry, lowres, bad anatomy, watermark'
            >>> gen(["a cat", "a city at night"], num_candidates=2, seed=0)  # doctest: +SKIP
            [['...', '...'], ['...', '...']]
        """
        prompts, single = inputs.check_inputs(prompt, num_candidates, seed, batch_size)
        results = self._generate(prompts, num_candidates, seed, batch_size, generation_kwargs)
        out: list[Any] = [r[0] for r in results] if num_candidates == 1 else results
        return out[0] if single else out

    def encode_prompts(self, prompts: list[str], max_new_tokens: int | None = None) -> list[list[int]]:
        """Token ids of ``prompts`` exactly as generation feeds them to the model: the prompt template applied, cut
        to the model's input limit (the prompt is cut, never the template), unpadded.

        Args:
            prompts: The user prompts.
            max_new_tokens: For a causal model, the room kept in its context for the output (as in generation).

        Returns:
            One list of token ids per prompt.
        """
        limit = self._input_limit({"max_new_tokens": max_new_tokens})
        return inputs.encode(self.tokenizer, self.config, list(prompts), limit, self.is_seq2seq, stacklevel=3)

    def _input_limit(self, kwargs: dict[str, Any]) -> int:
        limit = self.max_input_tokens
        if not self.is_seq2seq:  # a causal model's context must also hold what it writes
            cfg = self.model.config
            positions = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
            new = kwargs.get("max_new_tokens")
            if isinstance(positions, int) and isinstance(new, int) and positions - new > 0:
                limit = min(limit, positions - new)
        return limit

    def _generate(
        self,
        prompts: list[str],
        num_candidates: int,
        seed: int | None,
        batch_size: int,
        call_kwargs: dict[str, Any],
    ) -> list[list[str]]:
        results = [[""] * num_candidates for _ in prompts]
        active = [i for i, p in enumerate(prompts) if p.strip()]
        if not active:
            return results
        if self.model.training:
            logger.info("the model is in training mode: dropout is active while generating (model.eval() stops it)")
        kwargs = inputs.generation_kwargs(self.config, num_candidates, call_kwargs, self._pad_token_id)
        scope = self._cache_scope(kwargs, num_candidates, seed)
        call_key, active = cache.lookup(self._cache, scope, prompts, active, results, batch_size)
        if not active:
            return results
        self._run(prompts, active, results, num_candidates, seed, batch_size, kwargs)
        cache.store(self._cache, scope, call_key, prompts, active, results)
        return results

    def _run(
        self,
        prompts: list[str],
        active: list[int],
        results: list[list[str]],
        num_candidates: int,
        seed: int | None,
        batch_size: int,
        kwargs: dict[str, Any],
    ) -> None:
        """Generate for ``prompts[i]``, ``i`` in ``active``, into ``results[i]``."""
        limit = self._input_limit(kwargs)
        # user -> __call__ -> _generate -> _run -> encode: the warning points at the user's call.
        ids = inputs.encode(
            self.tokenizer, self.config, [prompts[i] for i in active], limit, self.is_seq2seq, stacklevel=5
        )
        # Longest first: similar lengths share a batch (little padding), and memory peaks on the first batch.
        order = sorted(range(len(ids)), key=lambda j: len(ids[j]), reverse=True)
        batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]

        from tqdm.auto import tqdm

        # delay: quick calls (a few prompts) never draw a bar.
        bar = {
            "disable": len(batches) < 2,
            "delay": 2.0,
            "desc": "negopt",
            "unit": "batch",
            **self._progress_bar_config,
        }
        device = self.device
        # Seeding happens inside a fork of the RNG state, so the caller's global random state is left as it was.
        fork = {"devices": []} if device.type == "cpu" else {"devices": [device], "device_type": device.type}
        with torch.random.fork_rng(enabled=seed is not None, **fork), torch.inference_mode():
            if seed is not None:
                torch.default_generator.manual_seed(seed)
                if device.type == "cuda":
                    with torch.cuda.device(device):
                        torch.cuda.manual_seed(seed)
                elif device.type != "cpu":
                    torch.manual_seed(seed)
            plan = fastpath.fast_plan(self._fast, self._decoder, self.model, num_candidates, kwargs, self.is_seq2seq)
            for batch in tqdm(batches, **bar):
                rows = [ids[j] for j in batch]
                out = fastpath.decode_batch(
                    self.model, self._fast, self._decoder, plan, rows, kwargs, num_candidates, self._pad_token_id,
                    self.is_seq2seq,
                )  # fmt: skip
                texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
                for r, j in enumerate(batch):
                    i = active[j]
                    results[i] = [
                        self.postprocess(t, prompts[i]) for t in texts[r * num_candidates : (r + 1) * num_candidates]
                    ]

    @staticmethod
    def postprocess(text: str, prompt: str) -> str:
        """Clean a decoded model output: drop an echo of ``prompt``, normalise whitespace and commas, drop repeated
        terms. A1111 weights such as ``(blurry:1.3)`` are kept as written.

        Example:
            >>> NegOptGenerator.postprocess("a cat, blurry ,, (bad hands:1.3),  Blurry , watermark", "a cat")
            'blurry, (bad hands:1.3), watermark'
        """
        return clean_negative(strip_echo(text, prompt))
