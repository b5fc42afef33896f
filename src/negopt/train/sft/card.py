"""The model card of an SFT output folder: the generator's card (:mod:`negopt.model_card`) and how it was trained."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from negopt.model_card import GeneratorCardInfo, TrainingCardInfo, generator_model_card

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import ModelCard
    from transformers import Seq2SeqTrainer

    from negopt.config import NegOptConfig
    from negopt.data import DataSummary
    from negopt.train.sft.config import SFTConfig

__all__ = ["SFTModelCardMixin"]

# Metrics the Trainer logs at the last step, as the card names them.
_RESULTS = {"train_loss": "training loss", "eval_loss": "validation loss", "eval_rouge_l": "validation ROUGE-L"}


class SFTModelCardMixin:
    """``model_card`` for :class:`~negopt.train.SFTTrainer`, which inherits it; it reads the trainer's settings,
    its transformers trainer (state and logged metrics), what it knows of the data, and ``_merges_on_save()``."""

    config: SFTConfig
    trainer: Seq2SeqTrainer
    negopt_config: NegOptConfig
    base_model_name: str | None
    data_summary: DataSummary | None
    train_rows: int
    eval_rows: int
    _adapter_given: bool

    def model_card(self) -> ModelCard:
        """The model card (a ``huggingface_hub.ModelCard``) that :meth:`save_generator` writes as ``README.md``.

        ``NegOptGenerator``'s card (base model, template, how to use it) with a "Training" section: the data, the
        fine-tuning method (LoRA and its settings, merged or not, or a full fine-tune), steps and epochs, batch
        size, learning rate, precision, seed and the final losses. A hub dataset id goes into the metadata too.
        """
        merged = self._merges_on_save()
        cfg, trainer, state = self.config, self.trainer, self.trainer.state
        model = trainer.accelerator.unwrap_model(trainer.model)
        has_adapter = hasattr(model, "peft_config")
        info = GeneratorCardInfo.from_model(model, self.negopt_config, is_adapter=has_adapter and not merged)
        if not has_adapter:
            method = "full fine-tune (every weight trained)"
        elif self._adapter_given:
            method = "LoRA: the model's existing adapter, trained further"
        else:
            method = (
                f"LoRA (r={cfg.lora_r}, alpha={cfg.lora_alpha}, dropout={cfg.lora_dropout}, "
                f"target modules {cfg.lora_target_modules})"
            )
        if has_adapter and merged:
            method += ", merged into the base weights"
        dataset = None if self.data_summary is None else cfg.dataset  # no summary: datasets were passed in
        revision = f" (revision {cfg.dataset_revision})" if dataset and cfg.dataset_revision else ""
        settings = {
            "base model": self.base_model_name or "a model passed in memory, with no name",
            "data": f"{dataset}{revision}" if dataset else "datasets passed to SFTTrainer",
            "pairs": f"{self.train_rows} training, {self.eval_rows} validation",
            "fine-tuning": method,
            "steps": f"{state.global_step} ({state.epoch or 0:.2f} epochs)",
            "batch size": (
                f"{cfg.batch_size} per device x {cfg.gradient_accumulation_steps} accumulation steps x "
                f"{trainer.args.world_size} processes"
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
