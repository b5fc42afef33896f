"""LoRA set-up shared by the trainers: one place for the default targets and the task type."""

from __future__ import annotations

from typing import Literal

__all__ = ["DEFAULT_TARGET_MODULES", "add_lora"]

# Every linear layer of attention and feed-forward (peft excludes the output head); learns clearly better than q, v.
DEFAULT_TARGET_MODULES = "all-linear"


def add_lora(
    model,
    model_type: Literal["seq2seq", "causal"],
    *,
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.05,
    target_modules: str | list[str] = DEFAULT_TARGET_MODULES,
):
    """Wrap ``model`` in a fresh LoRA adapter (peft ``get_peft_model``); the base weights are frozen.

    The model is modified in place (peft injects the adapter layers into it) and returned as a ``PeftModel``.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    from negopt.hub import quiet_peft_wrap

    task = TaskType.SEQ_2_SEQ_LM if model_type == "seq2seq" else TaskType.CAUSAL_LM
    config = LoraConfig(task_type=task, r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules)
    with quiet_peft_wrap():
        return get_peft_model(model, config)
