"""The model card of an SFT output folder: the generator's card (:mod:`negopt.model_card`) and how it was trained."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from negopt.model_card import GeneratorCardInfo, TrainingCardInfo, generator_model_card

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import ModelCard

    from negopt.train.sft import SFTTrainer

__all__ = ["sft_model_card"]

# Metrics the Trainer logs at the last step, as the card names them.
_RESULTS = {"train_loss": "training loss", "eval_loss": "validation loss", "eval_rouge_l": "validation ROUGE-L"}


def sft_model_card(sft: SFTTrainer, *, merged: bool, adapter_given: bool) -> ModelCard:
    """The card :meth:`SFTTrainer.save_generator <negopt.train.SFTTrainer.save_generator>` writes.

    Args:
        sft: The trainer, after training.
        merged: Whether the adapter is merged into the saved weights.
        adapter_given: Whether the adapter existed before this run (a ``PeftModel`` or an adapter folder) rather
            than being made from the ``lora_*`` settings.
    """
    cfg, state = sft.config, sft.trainer.state
    model = sft.trainer.accelerator.unwrap_model(sft.trainer.model)
    has_adapter = hasattr(model, "peft_config")
    info = GeneratorCardInfo.from_model(model, sft.negopt_config, is_adapter=has_adapter and not merged)
    if not has_adapter:
        method = "full fine-tune (every weight trained)"
    elif adapter_given:
        method = "LoRA: the model's existing adapter, trained further"
    else:
        method = (
            f"LoRA (r={cfg.lora_r}, alpha={cfg.lora_alpha}, dropout={cfg.lora_dropout}, "
            f"target modules {cfg.lora_target_modules})"
        )
    if has_adapter and merged:
        method += ", merged into the base weights"
    dataset = None if sft.data_summary is None else cfg.dataset  # no summary: datasets were passed in
    revision = f" (revision {cfg.dataset_revision})" if dataset and cfg.dataset_revision else ""
    settings = {
        "base model": sft.base_model_name or "a model passed in memory, with no name",
        "data": f"{dataset}{revision}" if dataset else "datasets passed to SFTTrainer",
        "pairs": f"{sft.train_rows} training, {sft.eval_rows} validation",
        "fine-tuning": method,
        "steps": f"{state.global_step} ({state.epoch or 0:.2f} epochs)",
        "batch size": (
            f"{cfg.batch_size} per device x {cfg.gradient_accumulation_steps} accumulation steps x "
            f"{sft.trainer.args.world_size} processes"
        ),
        "learning rate": f"{cfg.learning_rate} ({cfg.lr_scheduler_type}, warm-up {cfg.warmup_steps})",
        "precision": "bf16 mixed" if cfg.bf16 else "fp16 mixed" if cfg.fp16 else "float32",
        "max lengths": f"{cfg.max_source_length} input, {cfg.max_target_length} target tokens",
        "seed": str(cfg.seed),
    }
    # What the Trainer logged at the last step: this run's mean training loss and the final evaluation.
    final: dict[str, float] = {}
    for entry in state.log_history:
        if entry.get("step") == state.global_step:
            final.update(entry)
    results = {
        label: float(final[key])
        for key, label in _RESULTS.items()
        if isinstance(final.get(key), (int, float)) and math.isfinite(final[key])
    }
    training = TrainingCardInfo(
        summary="Supervised fine-tuning (SFT) on prompt / negative-prompt pairs with negopt's `SFTTrainer` "
        "(what `negopt train sft` runs).",
        dataset=dataset,
        settings=settings,
        results=results,
        tags=["sft"],
    )
    return generator_model_card(info, training=training)
