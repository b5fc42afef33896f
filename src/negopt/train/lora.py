"""LoRA set-up shared by the trainers: one place for the default targets and the task type."""

from __future__ import annotations

from typing import Literal

__all__ = ["DEFAULT_TARGET_MODULES", "active_lora_adapter", "add_lora", "add_reference_adapter"]

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


def active_lora_adapter(model) -> str:
    """The name of a ``PeftModel``'s active adapter, which must be LoRA.

    Raises:
        ValueError: The active adapter is of another peft type.
    """
    name = model.active_adapter
    if isinstance(name, list | tuple):
        name = name[0]
    peft_type = getattr(model.peft_config[name], "peft_type", None)
    if peft_type is None or str(getattr(peft_type, "value", peft_type)) != "LORA":
        raise ValueError(f"the generator's peft adapter {name!r} is {peft_type}; RL trains LoRA adapters only.")
    return name


def add_reference_adapter(model, adapter_name: str, reference_name: str) -> None:
    """Add to ``model`` (a ``PeftModel``) a frozen copy of its LoRA adapter ``adapter_name``, named
    ``reference_name``: the starting policy of RL, a few MB instead of a second model.

    ``adapter_name`` stays the active, trainable adapter. Only the LoRA matrices of ``adapter_name`` require
    gradients afterwards, and every module is put in eval mode (peft creates the new adapter's dropout layers in
    training mode: left so, the reference would be a random network).
    """
    import copy

    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    model.add_adapter(reference_name, copy.deepcopy(model.peft_config[adapter_name]))
    weights = get_peft_model_state_dict(model, adapter_name=adapter_name)
    set_peft_model_state_dict(model, weights, adapter_name=reference_name)
    model.set_adapter(adapter_name)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name and f".{adapter_name}." in name)
    model.peft_config[adapter_name].inference_mode = False
    model.eval()
