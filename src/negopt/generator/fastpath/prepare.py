"""``NegOptGenerator.optimize()`` and its fast path: precision, int8 quantization, and which calls take the loop.

Internal: this module's names may change in any release. The public surface is ``NegOptGenerator.optimize()``.

A greedy call whose settings the decode loop implements runs
:class:`negopt.generator.fastpath.greedy.GreedyDecoder`; any other
call goes to ``model.generate`` (compiled, with a static cache, for one-prompt calls when ``optimize`` compiles).
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

import torch

from negopt.generator import inputs
from negopt.generator.fastpath.greedy import GreedyDecoder, GreedyPlan, greedy_plan
from negopt.generator.fastpath.plain import plain_copy

if TYPE_CHECKING:
    from negopt.generator.fastpath.ctranslate2 import CT2Decoder

logger = logging.getLogger(__name__)

__all__ = [
    "PRECISIONS",
    "BACKENDS",
    "resolve_precision",
    "check_backend",
    "prepare_ctranslate2",
    "decode_batch",
    "eos_ids",
    "cut_at_eos",
    "bucket",
    "prepare",
    "warmup_runs",
    "fast_plan",
    "fast_kwargs",
    "quantize_int8",
]

PRECISIONS = ("auto", "float32", "bfloat16", "float16", "int8")
BACKENDS = ("torch", "ctranslate2")
_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


def resolve_precision(precision: Any, device: torch.device) -> str:
    """The precision ``optimize`` uses: ``"auto"`` is bfloat16 on a GPU that has it (float16 otherwise) and float32
    on a CPU, where reduced precision changes outputs and the user must ask for it."""
    if isinstance(precision, torch.dtype):
        precision = str(precision).replace("torch.", "")
    if not isinstance(precision, str) or _ALIASES.get(precision, precision) not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(repr(p) for p in PRECISIONS)} (or 'fp32', 'bf16', 'fp16'), got "
            f"{precision!r}."
        )
    precision = _ALIASES.get(precision, precision)
    if precision == "auto":
        if device.type == "cuda":
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "float32"
    if precision == "int8" and device.type != "cpu":
        raise ValueError(
            f"precision='int8' (dynamic int8 quantization of the linear layers) runs on the CPU only, but the model "
            f"is on {device}; use precision='bfloat16' or 'float16' on a GPU, or move the generator to the CPU first."
        )
    if precision == "float16" and device.type == "cpu":
        raise ValueError(
            "precision='float16' is slow on a CPU (few CPUs compute in float16); use 'bfloat16' or 'int8' on the "
            "CPU, or move the generator to a GPU first."
        )
    return precision


def bucket(length: int, step: int = 32) -> int:
    """``length`` rounded up to a multiple of ``step``: one compiled graph serves every input of a bucket."""
    return -(-length // step) * step


def prepare(
    model: torch.nn.Module,
    fast: dict[str, Any] | None,
    precision: str | torch.dtype,
    compile: bool | None,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.nn.Module, dict[str, Any], GreedyDecoder]:
    """The body of ``NegOptGenerator.optimize`` (which documents the arguments): checks them, casts or quantizes
    the model, builds the decode loop.

    Args:
        model: The generator's model.
        fast: The settings of an earlier ``optimize`` (None: none yet).
        precision, compile: As passed to ``optimize``.
        device: The model's device.
        dtype: The dtype of its floating-point parameters.

    Returns:
        The model (a quantized copy for ``"int8"``, else ``model`` cast in place), the settings
        (``{"precision": ..., "compile": ...}``) and the decode loop.
    """
    if compile is not None and not isinstance(compile, bool):
        raise TypeError(
            f"compile must be True, False or None (on a GPU only), got {type(compile).__name__}: {compile!r}."
        )
    precision = resolve_precision(precision, device)
    if compile is None:
        compile = device.type == "cuda"
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if compile and not getattr(base, "_can_compile_fullgraph", False):
        raise ValueError(
            f"compile=True needs a model whose forward pass transformers can compile with a static cache, and "
            f"{type(base).__name__} is not one; call optimize(compile=False)."
        )
    was_int8 = fast is not None and fast["precision"] == "int8" and fast.get("backend", "torch") == "torch"
    if was_int8 and precision != "int8":
        raise ValueError(
            f"the model was already quantized to int8 and cannot go back to {precision!r}: load the generator "
            "again, then call optimize()."
        )
    if precision == "int8" and not was_int8:
        model = quantize_int8(model)
    elif precision != "int8" and dtype != getattr(torch, precision):
        model.to(getattr(torch, precision))
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    fast = {"backend": "torch", "precision": precision, "compile": compile}
    return model, fast, GreedyDecoder(base, compile=compile)


def check_backend(backend: Any, threads: Any, warmup: Any) -> str:
    """``optimize``'s ``backend``, ``threads`` and ``warmup``, checked (``prepare`` and ``prepare_ctranslate2``
    check the rest)."""
    if not isinstance(warmup, bool):
        raise TypeError(f"warmup must be a bool, got {type(warmup).__name__}: {warmup!r}.")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'torch' or 'ctranslate2', got {backend!r}.")
    if threads is not None:
        if backend != "ctranslate2":
            raise ValueError(
                "threads is an option of backend='ctranslate2'; the torch backend uses torch's threads "
                "(torch.set_num_threads)."
            )
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int (CPU threads for one call), got {threads!r}.")
    return backend


def prepare_ctranslate2(
    model: torch.nn.Module,
    tokenizer: Any,
    fast: dict[str, Any] | None,
    precision: Any,
    compile: bool | None,
    threads: int | None,
    device: torch.device,
    seq2seq: bool,
    default_kwargs: dict[str, Any],
) -> tuple[dict[str, Any], CT2Decoder]:
    """``optimize(backend="ctranslate2")``: checks the arguments, converts the model, loads it in CTranslate2; warns
    when the generator's default settings (``default_kwargs``) keep its calls in torch.

    Returns:
        The settings (``{"backend": "ctranslate2", "precision": ..., "threads": ...}``) and the decoder.
    """
    if device.type != "cpu":
        raise ValueError(
            f"backend='ctranslate2' runs on the CPU here, but the model is on {device}; on a GPU use "
            "backend='torch' (half precision and CUDA graphs), or move the generator to the CPU first."
        )
    if compile:
        raise ValueError("compile=True is an option of backend='torch'; CTranslate2 needs no compiling.")
    if fast is not None and fast["precision"] == "int8" and fast.get("backend", "torch") == "torch":
        raise ValueError(
            "the model was quantized to int8 by optimize('int8') (backend='torch') and cannot be converted: load "
            "the generator again, then call optimize(..., backend='ctranslate2')."
        )
    precision = resolve_precision(precision, device)
    from negopt.generator.fastpath import ctranslate2 as ctranslate2_backend

    if precision not in ctranslate2_backend.PRECISIONS:
        raise ValueError(
            f"backend='ctranslate2' runs precision 'float32' or 'int8' on the CPU, got {precision!r}; use "
            "backend='torch' for bfloat16."
        )
    if not ctranslate2_backend.available():
        raise ImportError(
            'backend="ctranslate2" needs the ctranslate2 package: pip install "negopt[ctranslate2]" '
            "(or pip install ctranslate2)."
        )
    threads = 1 if threads is None else threads
    decoder = ctranslate2_backend.CT2Decoder(model, tokenizer, precision, threads, seq2seq)
    plan = greedy_plan(model, default_kwargs, seq2seq)
    if plan is not None and not seq2seq and ctranslate2_backend.counts_prompt(plan):
        warnings.warn(
            "backend='ctranslate2' leaves this causal model's calls in torch while repetition_penalty or "
            "no_repeat_ngram_size is set (negopt's defaults): transformers counts the prompt in both, which "
            "CTranslate2 does only token by token, slower than torch. Pass repetition_penalty=1.0 and "
            "no_repeat_ngram_size=0 (per call, or in the generator's config) to run in CTranslate2.",
            stacklevel=3,  # the user's optimize() call
        )
    return {"backend": "ctranslate2", "precision": precision, "compile": False, "threads": threads}, decoder


def warmup_runs(fast: dict[str, Any], device: torch.device) -> int:
    """Calls the warm-up makes: CUDA graphs are recorded on the second run of a shape and replayed from the third."""
    return 3 if fast["compile"] and device.type == "cuda" else 1


def fast_plan(
    fast: dict[str, Any] | None,
    decoder: GreedyDecoder | None,
    model: torch.nn.Module,
    num_candidates: int,
    kwargs: dict[str, Any],
    seq2seq: bool,
) -> GreedyPlan | None:
    """The decode loop's plan for this call, or None when it goes to ``model.generate``: no ``optimize``, several
    candidates, or a generation setting the loop does not implement."""
    if fast is None or decoder is None or num_candidates != 1 or model.training:
        return None
    if fast.get("backend") == "ctranslate2":
        plan = greedy_plan(model, kwargs, seq2seq)
        if plan is None or not decoder.accepts(plan):
            logger.info("these generation settings need model.generate; CTranslate2 is not used for this call")
            return None
        if not decoder.is_current(model):
            warnings.warn(
                "the model changed since optimize(backend='ctranslate2') converted it (new weights, another "
                "adapter, a move): this call runs in transformers; call optimize() again to convert the new model.",
                stacklevel=5,
            )
            return None
        return plan
    if next(model.parameters()).device.type != "cpu" and not fast["compile"]:
        # Uncompiled on a GPU the loop gained nothing over generate (see docs/benchmarks.md): keep generate.
        return None
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if decoder.model is not base:  # the model was replaced since optimize()
        return None
    plan = greedy_plan(model, kwargs, seq2seq)
    if plan is None:
        logger.info("these generation settings need model.generate; the fast decode loop is not used")
    return plan


def fast_kwargs(
    fast: dict[str, Any] | None, device: torch.device, rows: int, num_candidates: int, kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Static cache and a compiled forward for a one-prompt call, when ``optimize`` asked for them."""
    if (
        fast is None
        or not fast["compile"]
        or rows != 1
        or num_candidates != 1
        or kwargs.get("num_beams", 1) != 1
        or "cache_implementation" in kwargs
    ):
        return kwargs
    from transformers import CompileConfig

    if device.type == "cuda":
        compile_config = CompileConfig(mode="reduce-overhead")
    else:
        compile_config = CompileConfig(mode="default")
        compile_config._compile_all_devices = True  # transformers compiles on accelerators only, unless told
    return {**kwargs, "cache_implementation": "static", "compile_config": compile_config}


def eos_ids(model: torch.nn.Module, kwargs: dict[str, Any]) -> tuple[int, ...]:
    """The end-of-sequence ids of a ``model.generate(**kwargs)`` call: the call's, else the model's
    ``generation_config``'s (where ``generate`` reads them)."""
    value = kwargs.get("eos_token_id", getattr(model.generation_config, "eos_token_id", None))
    if value is None:
        return ()
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    return tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))


def cut_at_eos(rows: list[list[int]], eos: tuple[int, ...]) -> list[list[int]]:
    """Each row up to (not including) its first end-of-sequence token: what follows is padding, whatever token the
    padding is (``generate`` fills a finished row with ``pad_token_id``, which need not be a special token)."""
    if not eos:
        return rows
    ends = set(eos)
    out = []
    for row in rows:
        for i, t in enumerate(row):
            if t in ends:
                row = row[:i]
                break
        out.append(row)
    return out


def decode_batch(
    model: torch.nn.Module,
    fast: dict[str, Any] | None,
    decoder: GreedyDecoder | CT2Decoder | None,
    plan: GreedyPlan | None,
    rows: list[list[int]],
    kwargs: dict[str, Any],
    num_candidates: int,
    pad_token_id: int,
    seq2seq: bool,
) -> list[list[int]]:
    """The new token ids for one batch of prompt ids, by CTranslate2, negopt's decode loop or ``model.generate``
    (``num_candidates`` rows a prompt): each row cut before its first end-of-sequence token, so that every path
    gives the same ids (a seq2seq ``generate`` output loses its start token too)."""
    eos = eos_ids(model, kwargs)
    if plan is not None and fast is not None and fast.get("backend") == "ctranslate2":
        out = decoder(rows, plan)
        return [
            cut_at_eos([o], eos)[0]
            if o is not None
            else decode_batch(model, None, None, None, [r], kwargs, 1, pad_token_id, seq2seq)[0]
            for o, r in zip(out, rows)
        ]
    device = next(model.parameters()).device
    longest = max(len(r) for r in rows)
    if plan is not None and (len(rows) == 1 or not fast["compile"]):
        # The decode loop. Compiled, inputs are padded to a bucket so that one compiled graph (and one set of cache
        # buffers) serves prompts of similar length; eager, padding would only cost time.
        width = bucket(longest) if fast["compile"] else None
        input_ids, attention_mask = inputs.pad(rows, device, pad_token_id, seq2seq, width)
        compiled = not kwargs.get("disable_compile", False)
        new = decoder(input_ids, attention_mask, plan, seq2seq, longest, compiled=compiled)
        return cut_at_eos(new.tolist(), eos)
    batch_kwargs = fast_kwargs(fast, device, len(rows), num_candidates, kwargs)
    compiled = batch_kwargs is not kwargs
    return cut_at_eos(_generate(model, rows, batch_kwargs, compiled, pad_token_id, seq2seq, eos), eos)


def _generate(
    model: torch.nn.Module,
    rows: list[list[int]],
    kwargs: dict[str, Any],
    compiled: bool,
    pad_token_id: int,
    seq2seq: bool,
    eos: tuple[int, ...],
) -> list[list[int]]:
    """``model.generate`` on a batch of prompt ids: the new ids of each output row (``k`` rows a prompt when
    ``kwargs`` asks for ``k`` sequences), as the rows would get them one by one.

    A causal model's prompts are left-padded, and transformers' n-gram ban counts the padding as tokens (its
    repetition penalty skips it): with ``no_repeat_ngram_size=1`` the pad id is banned on every padded row, and with
    a larger size a padded row can lose a token once its own ids hold the pad id. Rows where that can happen run in
    groups of one prompt length (no padding): all rows for a size of 1, or with beams when the pad id is not an EOS
    id (a beam may write it and go on); otherwise the rows whose prompt or output holds the pad id, found after the
    batched call and made again.
    """
    device = next(model.parameters()).device
    # A compiled graph serves one input shape: pad to a bucket so that prompts of similar length share it.
    width = bucket(max(len(r) for r in rows)) if compiled else None

    def run(batch: list[list[int]]) -> list[list[int]]:
        input_ids, attention_mask = inputs.pad(batch, device, pad_token_id, seq2seq, width)
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        # A seq2seq output starts with the decoder's start token; a causal one with the (left-padded) prompt.
        return (out[:, 1:] if seq2seq else out[:, input_ids.shape[1] :]).tolist()

    gc = model.generation_config
    n = kwargs.get("no_repeat_ngram_size", gc.no_repeat_ngram_size) or 0
    if seq2seq or n <= 0 or width is not None or len({len(r) for r in rows}) == 1:
        return run(rows)
    k = max(kwargs.get("num_return_sequences", gc.num_return_sequences) or 1, 1)
    beams = (kwargs.get("num_beams", gc.num_beams) or 1) > 1
    pad = pad_token_id  # what the prompts are padded with (finished rows get kwargs' pad_token_id: cut off)
    longest = max(len(r) for r in rows)
    if n == 1 or (beams and pad not in eos):
        alone = set(range(len(rows)))
    else:  # a padded prompt that holds the pad id where the n-gram ban reads it
        alone = {i for i, r in enumerate(rows) if len(r) < longest and pad in r[-(n - 1) :]}
    out: list[list[int] | None] = [None] * (len(rows) * k)
    rest = [i for i in range(len(rows)) if i not in alone]
    if rest:
        made = run([rows[i] for i in rest])
        for j, i in enumerate(rest):
            new = made[j * k : (j + 1) * k]
            if len(rows[i]) < longest and any(pad in row for row in cut_at_eos(new, eos)):
                alone.add(i)  # it wrote the pad id before its end: the padding may have banned a token since
            else:
                out[i * k : (i + 1) * k] = new
    by_length: dict[int, list[int]] = {}
    for i in sorted(alone):
        by_length.setdefault(len(rows[i]), []).append(i)
    for group in by_length.values():
        made = run([rows[i] for i in group])
        for j, i in enumerate(group):
            out[i * k : (i + 1) * k] = made[j * k : (j + 1) * k]
    return out


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers compute in int8 (weights quantized once, activations per
    call). A peft adapter is merged into the copy first, at its current scale (or dropped inside
    ``disable_adapter()``): quantizing its own small linear layers would break peft's layers, which read their
    weights."""
    from torch.ao.quantization import quantize_dynamic

    plain = plain_copy(model)

    with warnings.catch_warnings():
        # torch points users of this eager-mode API at torchao; the API still works and needs no extra package.
        warnings.filterwarnings("ignore", message=r"(?s).*torch\.ao\.quantization", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"(?s).*torchao", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"(?s).*quantiz", category=UserWarning)
        return quantize_dynamic(plain, {torch.nn.Linear}, dtype=torch.qint8, inplace=True).eval()
