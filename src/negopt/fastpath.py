"""``NegOptGenerator.optimize()`` and its fast path: precision, int8 quantization, and which calls take the loop.

Internal: this module's names may change in any release. The public surface is ``NegOptGenerator.optimize()``.

A greedy call whose settings the decode loop implements runs :class:`negopt.greedy_decode.GreedyDecoder`; any other
call goes to ``model.generate`` (compiled, with a static cache, for one-prompt calls when ``optimize`` compiles).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch

from negopt.greedy_decode import GreedyDecoder, GreedyPlan, greedy_plan

logger = logging.getLogger(__name__)

__all__ = [
    "PRECISIONS",
    "resolve_precision",
    "bucket",
    "prepare",
    "warmup_runs",
    "fast_plan",
    "fast_kwargs",
    "quantize_int8",
]

PRECISIONS = ("auto", "float32", "bfloat16", "float16", "int8")
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
    warmup: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.nn.Module, dict[str, Any], GreedyDecoder]:
    """The body of ``NegOptGenerator.optimize`` (which documents the arguments): checks them, casts or quantizes
    the model, builds the decode loop.

    Args:
        model: The generator's model.
        fast: The settings of an earlier ``optimize`` (None: none yet).
        precision, compile, warmup: As passed to ``optimize``.
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
    if not isinstance(warmup, bool):
        raise TypeError(f"warmup must be a bool, got {type(warmup).__name__}: {warmup!r}.")
    precision = resolve_precision(precision, device)
    if compile is None:
        compile = device.type == "cuda"
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if compile and not getattr(base, "_can_compile_fullgraph", False):
        raise ValueError(
            f"compile=True needs a model whose forward pass transformers can compile with a static cache, and "
            f"{type(base).__name__} is not one; call optimize(compile=False)."
        )
    was_int8 = fast is not None and fast["precision"] == "int8"
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
    return model, {"precision": precision, "compile": compile}, GreedyDecoder(base, compile=compile)


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


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers compute in int8 (weights quantized once, activations per
    call)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch points users of this eager-mode API at torchao; the API still works and needs no extra package.
        warnings.filterwarnings("ignore", message=r"(?s).*torch\.ao\.quantization", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"(?s).*torchao", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"(?s).*quantiz", category=UserWarning)
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8).eval()
