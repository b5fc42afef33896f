"""Supervised fine-tuning (SFT) of a negative-prompt generator on prompt -> negative-prompt pairs.

The NegOpt paper's first stage: a seq2seq model (T5 by default) or a causal LM learns to write the negative prompt of
a prompt from Negative Prompts DB. :class:`SFTTrainer` builds on transformers' ``Seq2SeqTrainer`` and peft, so
checkpointing, resuming, ``report_to`` (tensorboard, wandb), gradient accumulation, bf16/fp16 and ``accelerate
launch`` / ``torchrun`` for several GPUs (DDP, FSDP, DeepSpeed) come from them. negopt adds the data handling
(cleaning, a leak-free split, dynamic padding and length-grouped batches), LoRA on every linear layer by default,
a checkpoint on SIGTERM, a stop with a clear error on a NaN loss, and an output folder that loads with
``NegOptGenerator.from_pretrained``:

.. code-block:: text

    output_dir/
        adapter_config.json, adapter_model.safetensors   (LoRA; or config.json + model.safetensors, merged or full)
        tokenizer files, negopt_config.json
        checkpoints/checkpoint-N/                          (resumable Trainer checkpoints)
        logs/negopt-sft/                                   (TensorBoard logs, with report_to="tensorboard")

Example:
    >>> from negopt.train import SFTConfig, SFTTrainer
    >>> config = SFTConfig(model="google-t5/t5-small", dataset="pairs.csv", output_dir="out/sft", max_steps=1000)
    >>> result = SFTTrainer(config).train()  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import re
import time
import types
import typing
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from negopt import hub
from negopt.config import NegOptConfig
from negopt.train.checkpointing import (
    CHECKPOINTS_DIR,
    SigtermCheckpointCallback,
    check_loss,
    check_output_dir,
    is_complete_checkpoint,
    last_checkpoint,
    numbered_folders,
)
from negopt.train.lora import DEFAULT_TARGET_MODULES, add_lora

__all__ = ["SFTConfig", "SFTResult", "SFTTrainer", "rouge_l"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "google-t5/t5-small"
LOGS_DIR = "logs"  # under output_dir, as for RL
_MODEL_TYPES = ("seq2seq", "causal")
_WORD = re.compile(r"[^\s,]+")

# Seq2SeqTrainingArguments that SFTConfig sets itself; `training_args` may not override them.
_MANAGED_ARGS = {
    "output_dir",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "seed",
    "data_seed",
    "remove_unused_columns",
    "length_column_name",
    "train_sampling_strategy",
    "group_by_length",
    "predict_with_generate",
}


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 between two texts over lowercase words (split at whitespace and commas).

    The longest common subsequence of the two word lists, as an F1 of its precision and recall; 1.0 for two empty
    texts. A small, dependency-free stand-in for the ``rouge-score`` package's ROUGE-L on negative prompts.
    """
    a = _WORD.findall(prediction.lower())
    b = _WORD.findall(reference.lower())
    if not a or not b:
        return float(a == b)
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


# Strings that mean a yes/no, not a checkpoint folder: resume="no" must never resume from a folder named "no".
_BOOL_WORDS = {"", "true", "false", "yes", "no", "on", "off", "y", "n", "1", "0", "none", "null"}


def _type_matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits a field's annotation (an int fits ``float``, a bool fits nothing but ``bool``)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_matches(value, arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return isinstance(value, str)  # which strings are allowed is the field's own check
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_matches(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "None"
    if origin is list:
        return f"a list of {getattr(typing.get_args(hint)[0], '__name__', 'value')}s"
    if hint is bool:
        return "True or False"
    return {int: "an int", float: "a float", str: "a str", dict: "a dict"}.get(origin or hint, str(hint))


def _check_types(config) -> None:
    """Raise a TypeError naming the field, the value and the type expected, for the first field that does not fit."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, hint = getattr(config, f.name), hints[f.name]
        if _type_matches(value, hint):
            continue
        fix = ""
        if isinstance(value, str) and _type_matches(0.5, hint):
            fix = " Write it as a number, not a string (in YAML, write 1e-4 as 1.0e-4: PyYAML reads 1e-4 as a string)."
        elif isinstance(value, str) and _type_matches(1, hint):
            fix = " Write it as a number, not a string."
        elif isinstance(value, str) and hint is bool:
            fix = " Write it as a bool, not a string (in YAML, true or false without quotes)."
        raise TypeError(f"{f.name} must be {_describe(hint)}, got {value!r} ({type(value).__name__}).{fix}")


@dataclass
class SFTConfig:
    """Settings of a supervised fine-tuning run. The same keys are the ``negopt train sft --config`` YAML keys.

    Args:
        model: Base model, a hub id or a local folder (ignored when :class:`SFTTrainer` gets a model object).
        model_type: ``"seq2seq"`` or ``"causal"``; None infers it from the model's config.
        revision: Hub revision of ``model``.
        prompt_template: How a prompt becomes the model input (must contain ``{prompt}``); None takes
            :class:`~negopt.config.NegOptConfig`'s default for the model type.
        dataset: Hub id or local parquet / CSV / JSONL file of pairs (see :func:`negopt.data.load_negative_prompts`).
        dataset_revision: Hub revision of ``dataset``.
        min_likes: Keep only rows with at least this many likes.
        strip_weights: Remove AUTOMATIC1111 ``(term:1.3)`` emphasis from the data.
        max_prompt_length: Drop longer prompts from the data (in the model's tokens); None: no limit.
        max_negative_length: Drop longer negatives from the data (in tokens); None: no limit.
        validation_size: Fraction of prompts held out for validation.
        test_size: Fraction of prompts held out for testing (not used in training).
        split_seed: Salt of the prompt-hash split.
        max_eval_samples: Evaluate on at most this many validation rows (the first ones); None: all.
        max_source_length: Model inputs are truncated to this many tokens.
        max_target_length: Negatives are truncated to this many tokens (the end-of-sequence token kept).
        output_dir: Where the trained generator is written; checkpoints go to ``output_dir/checkpoints``.
        full_finetune: Train every weight instead of a LoRA adapter.
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling numerator (the update is scaled by ``lora_alpha / lora_r``).
        lora_dropout: Dropout on the LoRA input.
        lora_target_modules: Layers that get an adapter: ``"all-linear"`` or a list of module names such as
            ``["q", "v"]``.
        merge: Merge the adapter into the base weights before saving (a plain transformers model folder).
        learning_rate: Peak learning rate.
        batch_size: Training examples per device and step.
        eval_batch_size: Evaluation examples per device; None: ``batch_size``.
        gradient_accumulation_steps: Steps whose gradients add up to one update.
        num_epochs: Passes over the training data (ignored when ``max_steps`` is set).
        max_steps: Number of updates; None: ``num_epochs`` decides.
        warmup_steps: Warm-up updates (an int), or a fraction of all updates (a float below 1).
        weight_decay: AdamW weight decay.
        lr_scheduler_type: A transformers scheduler name (``"linear"``, ``"cosine"``, ``"constant"``, ...).
        max_grad_norm: Gradient clipping.
        seed: Seeds the adapter's initialisation, dropout and the data order.
        data_seed: Seeds only the data order; None: ``seed``.
        group_by_length: Batch examples of similar length together (less padding, faster).
        logging_steps: Log the loss every this many updates.
        save_steps: Save a checkpoint every this many updates.
        save_total_limit: Keep at most this many checkpoints (the newest); None keeps all.
        eval_steps: Evaluate every this many updates; None: at every checkpoint; 0: only at the end.
        compute_rouge: Also generate on the validation rows and report ROUGE-L against their negatives
            (seq2seq only; slower).
        bf16: Train in bfloat16 mixed precision.
        fp16: Train in float16 mixed precision.
        gradient_checkpointing: Recompute activations in the backward pass (less memory, slower).
        report_to: Logging integrations: ``"none"``, ``"tensorboard"`` (logs in ``output_dir/logs/negopt-sft``),
            ``"wandb"``, ``"all"`` or a list.
        dataloader_num_workers: Worker processes of the data loader.
        resume: Continue from the newest complete checkpoint in ``output_dir/checkpoints`` (a fresh start, with a
            warning, when there is none).
        resume_from_checkpoint: Continue from this checkpoint folder (a ``checkpoint-N`` folder of an earlier run).
        use_safetensors: Load the base model from safetensors only; set False to allow pickle files.
        trust_remote_code: Allow a hub model's own code to run.
        disable_tqdm: Hide the progress bar.
        training_args: Further ``Seq2SeqTrainingArguments`` by name (e.g. ``{"deepspeed": "ds.json"}``), for
            what this config has no key for.

    Raises:
        TypeError: A value of the wrong type (``learning_rate="1e-4"``, ``full_finetune="no"``); the message names
            the field, the value and the type expected. An int is accepted where a float is expected.
        ValueError: A value out of range, or settings that contradict each other.
    """

    model: str = DEFAULT_MODEL
    model_type: Literal["seq2seq", "causal"] | None = None
    revision: str | None = None
    prompt_template: str | None = None
    dataset: str = "mikeogezi/negopt_full"
    dataset_revision: str | None = None
    min_likes: int | None = None
    strip_weights: bool = True
    max_prompt_length: int | None = 256
    max_negative_length: int | None = 128
    validation_size: float = 0.05
    test_size: float = 0.05
    split_seed: int = 0
    max_eval_samples: int | None = 1000
    max_source_length: int = 256
    max_target_length: int = 128
    output_dir: str = "negopt-sft"
    full_finetune: bool = False
    lora_r: int = 16
    lora_alpha: float = 32
    lora_dropout: float = 0.05
    lora_target_modules: str | list[str] = DEFAULT_TARGET_MODULES
    merge: bool = False
    learning_rate: float = 3e-4
    batch_size: int = 16
    eval_batch_size: int | None = None
    gradient_accumulation_steps: int = 1
    num_epochs: float = 3.0
    max_steps: int | None = None
    warmup_steps: int | float = 0
    weight_decay: float = 0.0
    lr_scheduler_type: str = "linear"
    max_grad_norm: float = 1.0
    seed: int = 42
    data_seed: int | None = None
    group_by_length: bool = True
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 3
    eval_steps: int | None = None
    compute_rouge: bool = False
    bf16: bool = False
    fp16: bool = False
    gradient_checkpointing: bool = False
    report_to: str | list[str] = "none"
    dataloader_num_workers: int = 0
    resume: bool = False
    resume_from_checkpoint: str | None = None
    use_safetensors: bool = True
    trust_remote_code: bool = False
    disable_tqdm: bool = False
    training_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.resume, (str, os.PathLike)) and str(self.resume).strip().lower() not in _BOOL_WORDS:
            warnings.warn(
                f"resume={os.fspath(self.resume)!r}: a checkpoint folder given to resume is deprecated and will stop "
                "working in the next release; pass it as resume_from_checkpoint (--resume-from-checkpoint).",
                FutureWarning,
                stacklevel=3,
            )
            path = os.fspath(self.resume)
            if self.resume_from_checkpoint is not None and os.fspath(self.resume_from_checkpoint) != path:
                raise ValueError(
                    f"resume={path!r} and resume_from_checkpoint={self.resume_from_checkpoint!r} name two "
                    "checkpoints; pass the one to continue from as resume_from_checkpoint."
                )
            self.resume, self.resume_from_checkpoint = False, path
        for name in ("model", "dataset", "output_dir", "resume_from_checkpoint"):
            if isinstance(getattr(self, name), os.PathLike):
                setattr(self, name, os.fspath(getattr(self, name)))
        if isinstance(self.lora_target_modules, tuple):
            self.lora_target_modules = list(self.lora_target_modules)
        if isinstance(self.report_to, tuple):
            self.report_to = list(self.report_to)
        _check_types(self)
        if self.model_type is not None and self.model_type not in _MODEL_TYPES:
            raise ValueError(f"model_type must be 'seq2seq', 'causal' or None (infer), got {self.model_type!r}.")
        if self.prompt_template is not None and "{prompt}" not in self.prompt_template:
            raise ValueError(
                f"prompt_template must contain '{{prompt}}', got {self.prompt_template!r}. "
                "Example: 'Write a negative prompt for: {prompt}'."
            )
        positive_ints = [
            "max_source_length", "max_target_length", "lora_r", "batch_size", "gradient_accumulation_steps",
            "logging_steps", "save_steps",
        ]  # fmt: skip
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        optional_positive = ["max_steps", "eval_batch_size", "save_total_limit", "max_eval_samples", "min_likes"]
        for name in optional_positive:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer or None, got {value!r}.")
        if self.max_steps == 0:
            raise ValueError("max_steps must be at least 1, or None to train for num_epochs.")
        if self.eval_steps is not None and (not isinstance(self.eval_steps, int) or self.eval_steps < 0):
            raise ValueError(f"eval_steps must be a non-negative integer or None, got {self.eval_steps!r}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}.")
        if not self.num_epochs > 0:
            raise ValueError(f"num_epochs must be positive, got {self.num_epochs!r}.")
        if not isinstance(self.lora_alpha, (int, float)) or self.lora_alpha <= 0:
            raise ValueError(f"lora_alpha must be positive, got {self.lora_alpha!r}.")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}.")
        if isinstance(self.warmup_steps, float) and not 0 <= self.warmup_steps < 1:
            raise ValueError(f"warmup_steps as a float is a fraction in [0, 1), got {self.warmup_steps!r}.")
        if isinstance(self.warmup_steps, int) and self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must not be negative, got {self.warmup_steps!r}.")
        if self.bf16 and self.fp16:
            raise ValueError("bf16 and fp16 are both set; pick one.")
        if self.full_finetune and self.merge:
            raise ValueError("merge only applies to a LoRA run; a full fine-tune already saves plain weights.")
        if not self.output_dir:
            raise ValueError(f"output_dir must be a folder path, got {self.output_dir!r}.")
        if self.resume_from_checkpoint == "":
            raise ValueError("resume_from_checkpoint is empty; pass a checkpoint folder, or None.")
        clash = sorted(set(self.training_args) & _MANAGED_ARGS)
        if clash:
            raise ValueError(
                f"training_args sets {clash}, which SFTConfig manages; use the SFTConfig keys instead "
                "(output_dir, batch_size, learning_rate, max_steps, num_epochs, seed, ...)."
            )
        if self.training_args:
            from transformers import Seq2SeqTrainingArguments

            known = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
            unknown = sorted(set(self.training_args) - known)
        else:
            unknown = []
        if unknown:
            raise ValueError(f"training_args has keys that Seq2SeqTrainingArguments does not know: {unknown}.")

    @property
    def checkpoints_dir(self) -> str:
        """Where the Trainer's ``checkpoint-N`` folders go."""
        return os.path.join(os.fspath(self.output_dir), CHECKPOINTS_DIR)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_training_arguments(self, *, has_eval: bool = True):
        """The ``Seq2SeqTrainingArguments`` this config maps to."""
        from transformers import Seq2SeqTrainingArguments

        known = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
        eval_steps = self.save_steps if self.eval_steps is None else self.eval_steps
        kwargs: dict[str, Any] = {
            "output_dir": self.checkpoints_dir,
            "per_device_train_batch_size": self.batch_size,
            "per_device_eval_batch_size": self.eval_batch_size or self.batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "lr_scheduler_type": self.lr_scheduler_type,
            "warmup_steps": self.warmup_steps,
            "max_grad_norm": self.max_grad_norm,
            "num_train_epochs": self.num_epochs,
            "max_steps": self.max_steps if self.max_steps is not None else -1,
            "logging_steps": self.logging_steps,
            "save_strategy": "steps",
            "save_steps": self.save_steps,
            "save_total_limit": self.save_total_limit,
            "eval_strategy": "steps" if has_eval and eval_steps > 0 else "no",
            "eval_steps": eval_steps if eval_steps > 0 else None,
            "seed": self.seed,
            "data_seed": self.data_seed if self.data_seed is not None else self.seed,
            "bf16": self.bf16,
            "fp16": self.fp16,
            "report_to": self.report_to,
            "dataloader_num_workers": self.dataloader_num_workers,
            # The collator needs the precomputed "length" column for length grouping; it drops it itself.
            "remove_unused_columns": False,
            "length_column_name": "length",
            "label_names": ["labels"],
            "predict_with_generate": self.compute_rouge,
            "generation_max_length": self.max_target_length,
            "disable_tqdm": self.disable_tqdm,
            # Our own check stops at the first NaN loss; the Trainer's filter would hide it.
            "logging_nan_inf_filter": False,
        }
        if self.gradient_checkpointing:
            key = "activation_checkpointing" if "activation_checkpointing" in known else "gradient_checkpointing"
            kwargs[key] = True
        if not _has_accelerator():
            kwargs["dataloader_pin_memory"] = False  # pinning needs an accelerator; torch warns otherwise
            # Under torchrun on CPUs, only use_cpu makes the Trainer run as MULTI_CPU (gloo) rather than as
            # independent single processes.
            kwargs["use_cpu"] = True
        if "train_sampling_strategy" in known:  # transformers >= 5
            kwargs["train_sampling_strategy"] = "group_by_length" if self.group_by_length else "random"
        else:  # pragma: no cover - transformers 4.x
            kwargs["group_by_length"] = self.group_by_length
        kwargs.update(self.training_args)
        return Seq2SeqTrainingArguments(**kwargs)


@dataclass
class SFTResult:
    """What a finished (or stopped) :meth:`SFTTrainer.train` reports.

    Attributes:
        global_step: Updates done, over all runs of a resumed training.
        train_loss: Mean training loss of this run (None if it did no step).
        eval_loss: Validation loss at the end (None without a validation split or when interrupted).
        eval_rouge_l: Validation ROUGE-L at the end, with ``compute_rouge``.
        runtime_s: Seconds this run took, saving included.
        train_samples_per_second: The Trainer's training throughput.
        output_dir: Where the generator was saved (None when interrupted).
        last_checkpoint: The newest complete checkpoint.
        interrupted: True when SIGTERM stopped the run (a checkpoint was saved; resume to finish).
    """

    global_step: int
    train_loss: float | None
    eval_loss: float | None
    eval_rouge_l: float | None
    runtime_s: float
    train_samples_per_second: float | None
    output_dir: str | None
    last_checkpoint: str | None
    interrupted: bool = False


def _import_trainer_classes():
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer
    from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

    class _SeededLengthGroupedSampler(LengthGroupedSampler):
        """LengthGroupedSampler whose order in an epoch depends on ``seed + epoch`` alone.

        transformers' Trainer builds its training LengthGroupedSampler with no generator, so each epoch's permutation
        is drawn from the global torch RNG at the epoch's start, a state that depends on everything the epochs before
        consumed (dropout, the data loader's own seed). On a resume inside epoch k > 1 the Trainer creates the epoch's
        iterator, skips the batches done and only then restores the checkpoint's RNG states: the epoch's order came
        from a fresh process's RNG and differed from the uninterrupted run's. A generator of its own, seeded per
        epoch as accelerate's SeedableRandomSampler does for random sampling, gives the same order in both.
        """

        def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
            super().__init__(batch_size, lengths=lengths)
            self.seed = seed
            self.epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __iter__(self):
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            yield from get_length_grouped_indices(self.lengths, self.batch_size, generator=generator)
            self.epoch += 1  # the next epoch's order, should nobody call set_epoch

    class _Collator:
        """Dynamic padding (DataCollatorForSeq2Seq) without the "length" column the sampler reads."""

        def __init__(self, tokenizer, pad_to_multiple_of):
            self.inner = DataCollatorForSeq2Seq(
                tokenizer, label_pad_token_id=-100, pad_to_multiple_of=pad_to_multiple_of
            )

        def __call__(self, features):
            return self.inner([{k: v for k, v in f.items() if k != "length"} for f in features])

    class _Trainer(Seq2SeqTrainer):
        """Seq2SeqTrainer that stops at the first non-finite training loss and resumes length-grouped runs exactly."""

        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if type(sampler) is LengthGroupedSampler:
                seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
                return _SeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed)
            return sampler

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
            if model.training:
                check_loss(out[0] if return_outputs else out, self.state.global_step + 1, self.args.output_dir)
            return out

    return _Collator, _Trainer


def _uses_item_count(model) -> bool:
    """Whether the model's forward scales its loss by the Trainer's ``num_items_in_batch`` (``self.loss_function``)."""
    import inspect

    from peft import PeftModel

    base = model.get_base_model() if isinstance(model, PeftModel) else model
    try:
        source = inspect.getsource(type(base).forward)
    except (OSError, TypeError):
        return True  # cannot tell: keep the Trainer's own choice
    return "loss_function" in source or "num_items_in_batch" in source


class SFTTrainer:
    """Fine-tune a negative-prompt generator on prompt -> negative-prompt pairs.

    Builds the model (with a LoRA adapter unless ``config.full_finetune``), the tokenizer, the cleaned and split
    data, and a ``Seq2SeqTrainer``; :meth:`train` runs it and writes a generator folder to ``config.output_dir``.

    Args:
        config: The run's settings.
        model: A model object to train instead of loading ``config.model`` (a ``PreTrainedModel`` with a
            language-modelling head, or a ``PeftModel`` whose adapter is trained further). It is trained in place,
            like transformers' Trainer does; pass a copy to keep the original.
        tokenizer: The tokenizer of ``model``; None loads the one of ``config.model`` (or of ``model.name_or_path``).
        train_dataset: Pairs to train on (a ``datasets.Dataset`` with ``prompt`` and ``negative_prompt``), or a
            ``DatasetDict`` with ``train`` and optionally ``validation``; None loads ``config.dataset`` with
            :func:`negopt.data.load_negative_prompts`.
        eval_dataset: Pairs to validate on (with a ``train_dataset`` Dataset).
        callbacks: Extra transformers ``TrainerCallback`` objects.

    Attributes:
        data_summary: The :class:`negopt.data.DataSummary` of the cleaning (None for a dataset passed in).
        trainer: The underlying ``Seq2SeqTrainer``.
        model_type: ``"seq2seq"`` or ``"causal"``.

    Raises:
        ValueError: A bad setting, an unknown model type, missing data columns, or data empty after cleaning.
        FileNotFoundError: A local model or data file does not exist.
        ImportError: The ``train`` extra is missing.

    Example:
        >>> trainer = SFTTrainer(SFTConfig(dataset="pairs.jsonl", output_dir="out", max_steps=200))  # doctest: +SKIP
        >>> print(trainer.data_summary)  # doctest: +SKIP
        >>> trainer.train().eval_loss  # doctest: +SKIP
    """

    def __init__(
        self,
        config: SFTConfig | None = None,
        *,
        model=None,
        tokenizer=None,
        train_dataset=None,
        eval_dataset=None,
        callbacks: list | None = None,
    ) -> None:
        self.config = config = config if config is not None else SFTConfig()
        if not isinstance(config, SFTConfig):
            raise TypeError(f"config must be an SFTConfig, got {type(config).__name__}.")
        # Before any loading: a wrong output_dir or checkpoint should cost seconds, not a download.
        check_output_dir(config.output_dir)
        self._check_resume_settings()
        from transformers import set_seed

        # Before the adapter is created: its initial weights come from this seed.
        set_seed(config.seed)
        self.model, self.tokenizer, self.model_type, self.base_model_name = self._build_model(model, tokenizer)
        if config.compute_rouge and self.model_type != "seq2seq":
            raise ValueError("compute_rouge is supported for seq2seq models only; set it to False for a causal LM.")
        self.negopt_config = NegOptConfig(
            model_type=self.model_type,
            prompt_template=config.prompt_template,
            max_input_tokens=config.max_source_length,
            base_model_name_or_path=self.base_model_name,
        )
        self.data_summary = None
        train_ds, eval_ds = self._build_data(train_dataset, eval_dataset)
        self.train_rows, self.eval_rows = len(train_ds), (len(eval_ds) if eval_ds is not None else 0)

        args = config.to_training_arguments(has_eval=eval_ds is not None)
        with args.main_process_first(desc="tokenizing"):
            train_tok = self._tokenize(train_ds)
            eval_tok = self._tokenize(eval_ds) if eval_ds is not None else None

        collator_cls, trainer_cls = _import_trainer_classes()
        self._sigterm = SigtermCheckpointCallback()
        self.trainer = trainer_cls(
            model=self.model,
            args=args,
            train_dataset=train_tok,
            eval_dataset=eval_tok,
            processing_class=self.tokenizer,
            data_collator=collator_cls(self.tokenizer, 8 if (config.bf16 or config.fp16) else None),
            compute_metrics=self._compute_metrics if config.compute_rouge else None,
            callbacks=[self._sigterm, *(callbacks or [])],
        )
        self._log_to_output_dir()
        if self.trainer.model_accepts_loss_kwargs and not _uses_item_count(self.model):
            # T5, BART and others take **kwargs but average their loss themselves, ignoring num_items_in_batch.
            # The Trainer would then multiply the loss by the number of processes (and skip the division by the
            # accumulation steps): eval_loss came out 2x under torchrun with 2 processes. Their own mean is right.
            self.trainer.model_accepts_loss_kwargs = False

    def _log_to_output_dir(self) -> None:
        """TensorBoard logs go to ``output_dir/logs/negopt-sft``, as RL's go to ``output_dir/logs/negopt-rl``.

        The Trainer's own default is ``<its output_dir>/runs/<time>_<host>``, which here would be inside
        ``checkpoints``. ``TENSORBOARD_LOGGING_DIR``, when set, still wins.
        """
        from transformers.integrations import TensorBoardCallback

        for callback in self.trainer.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
                callback.logging_dir = os.path.join(os.fspath(self.config.output_dir), LOGS_DIR, "negopt-sft")

    # ------------------------------------------------------------------------------------------------ building
    def _build_model(self, model, tokenizer):
        config = self.config
        try:
            from peft import PeftModel
        except ImportError as e:  # pragma: no cover - peft is a core dependency
            raise ImportError('SFT needs peft: pip install "negopt[train]"') from e

        flags = {"use_safetensors": config.use_safetensors, "trust_remote_code": config.trust_remote_code}
        if model is None:
            name = config.model
            if not isinstance(name, str) or not name:
                raise ValueError(f"model must be a hub id or a folder, got {name!r}.")
            name = os.path.abspath(name) if os.path.isdir(name) else name
            try:
                loaded = hub.load_lm(
                    name,
                    revision=config.revision,
                    model_type=config.model_type,
                    is_trainable=True,
                    with_tokenizer=tokenizer is None,
                    **flags,
                )
            except FileNotFoundError:
                raise
            except OSError as e:
                raise ValueError(f"cannot load model {name!r}: {e}") from e
            model, model_type = loaded.model, loaded.model_type
            tokenizer = loaded.tokenizer if tokenizer is None else tokenizer
            base_name = next(iter(model.peft_config.values())).base_model_name_or_path if loaded.is_adapter else name
        else:
            base = model.get_base_model() if isinstance(model, PeftModel) else model
            if not hasattr(base, "config"):
                raise TypeError(
                    f"model must be a transformers PreTrainedModel or a PeftModel, got {type(model).__name__}."
                )
            model_type = config.model_type or hub.model_type_of(base)
            base_name = base.name_or_path or None
        if tokenizer is None:
            tok_name = base_name if hub.is_folder_or_hub_id(base_name) else config.model
            try:
                folder = hub.resolve_folder(tok_name, revision=config.revision, **flags)
                tokenizer = hub.load_tokenizer(folder, trust_remote_code=config.trust_remote_code)
            except (OSError, ValueError) as e:
                raise ValueError(f"cannot load a tokenizer for {tok_name!r} ({e}); pass tokenizer=...") from e
        else:
            # Padding settings change below; the caller's tokenizer stays as it was.
            tokenizer = copy.deepcopy(tokenizer)
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ValueError("the tokenizer has neither a pad nor an end-of-sequence token; add a pad token.")
            tokenizer.pad_token = tokenizer.eos_token
        if model_type == "causal" and tokenizer.eos_token_id is None:
            raise ValueError("a causal model's tokenizer needs an end-of-sequence token to end the negatives.")
        tokenizer.padding_side = "right"  # for training; a saved causal tokenizer is switched to left below

        if isinstance(model, PeftModel):
            logger.info("training the adapter of the PeftModel given; the lora_* settings are not used")
        elif not config.full_finetune:
            model = add_lora(
                model,
                model_type,
                r=config.lora_r,
                alpha=config.lora_alpha,
                dropout=config.lora_dropout,
                target_modules=config.lora_target_modules,
            )
            if base_name is not None:
                model.peft_config["default"].base_model_name_or_path = base_name
        if config.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
        return model, tokenizer, model_type, base_name

    def _build_data(self, train_dataset, eval_dataset):
        import datasets

        config = self.config
        if train_dataset is None:
            from negopt.data import load_negative_prompts

            dd, self.data_summary = load_negative_prompts(
                config.dataset,
                revision=config.dataset_revision,
                min_likes=config.min_likes,
                strip_weights=config.strip_weights,
                max_prompt_length=config.max_prompt_length,
                max_negative_length=config.max_negative_length,
                tokenizer=self.tokenizer,
                validation_size=config.validation_size,
                test_size=config.test_size,
                split_seed=config.split_seed,
                return_summary=True,
            )
            train_dataset, eval_dataset = dd["train"], dd["validation"]
        elif isinstance(train_dataset, datasets.DatasetDict):
            if "train" not in train_dataset:
                raise ValueError(f"train_dataset has no 'train' split; it has {list(train_dataset)}.")
            if eval_dataset is None:
                eval_dataset = train_dataset.get("validation")
            train_dataset = train_dataset["train"]
        for name, ds in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            if ds is None:
                continue
            if not isinstance(ds, datasets.Dataset):
                raise TypeError(f"{name} must be a datasets.Dataset, got {type(ds).__name__}.")
            missing = [c for c in ("prompt", "negative_prompt") if c not in ds.column_names]
            if missing:
                raise ValueError(f"{name} lacks the column(s) {missing}; it has {ds.column_names}.")
        if len(train_dataset) == 0:
            raise ValueError("the training split is empty; give more data or lower validation_size / test_size.")
        if eval_dataset is not None and len(eval_dataset) == 0:
            warnings.warn(
                "the validation split is empty; training runs without evaluation.", UserWarning, stacklevel=3
            )
            eval_dataset = None
        if eval_dataset is not None and config.max_eval_samples is not None:
            eval_dataset = eval_dataset.select(range(min(len(eval_dataset), config.max_eval_samples)))
        return train_dataset, eval_dataset

    def _tokenize(self, ds):
        tok, cfg = self.tokenizer, self.config
        fmt = self.negopt_config.format_prompt

        def seq2seq(batch):
            enc = tok([fmt(p) for p in batch["prompt"]], max_length=cfg.max_source_length, truncation=True)
            labels = tok(text_target=batch["negative_prompt"], max_length=cfg.max_target_length, truncation=True)
            enc["labels"] = labels["input_ids"]
            # What a batch costs: encoder and decoder lengths together.
            enc["length"] = [len(a) + len(b) for a, b in zip(enc["input_ids"], enc["labels"])]
            return enc

        add_bos = tok.bos_token_id is not None and getattr(tok, "add_bos_token", False)

        def causal(batch):
            prompts = [fmt(p) for p in batch["prompt"]]
            # The negative continues the formatted prompt after a space, as the generator will read it.
            sep = [("" if p.endswith((" ", "\n")) else " ") for p in prompts]
            p_ids = tok(prompts, add_special_tokens=False, max_length=cfg.max_source_length, truncation=True)
            n_ids = tok(
                [s + n for s, n in zip(sep, batch["negative_prompt"])],
                add_special_tokens=False,
                max_length=cfg.max_target_length - 1,
                truncation=True,
            )
            out = {"input_ids": [], "attention_mask": [], "labels": [], "length": []}
            for p, n in zip(p_ids["input_ids"], n_ids["input_ids"]):
                p = ([tok.bos_token_id] if add_bos else []) + p
                n = n + [tok.eos_token_id]
                out["input_ids"].append(p + n)
                out["attention_mask"].append([1] * (len(p) + len(n)))
                out["labels"].append([-100] * len(p) + n)
                out["length"].append(len(p) + len(n))
            return out

        fn = seq2seq if self.model_type == "seq2seq" else causal
        return ds.map(fn, batched=True, remove_columns=ds.column_names, desc="tokenizing")

    def _compute_metrics(self, eval_pred) -> dict[str, float]:
        import numpy as np

        preds, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(preds, tuple):
            preds = preds[0]
        pad = self.tokenizer.pad_token_id
        preds = np.where(preds < 0, pad, preds)
        labels = np.where(labels < 0, pad, labels)
        decoded = self.tokenizer.batch_decode(preds, skip_special_tokens=True)
        refs = self.tokenizer.batch_decode(labels, skip_special_tokens=True)
        scores = [rouge_l(p, r) for p, r in zip(decoded, refs)]
        return {"rouge_l": float(sum(scores) / max(len(scores), 1))}

    # ------------------------------------------------------------------------------------------------ training
    def _check_resume_settings(self) -> None:
        """The checks of :meth:`_resume_checkpoint` that need no Trainer, run before anything is loaded."""
        cfg = self.config
        if cfg.resume_from_checkpoint is not None:
            path = cfg.resume_from_checkpoint
            if not os.path.isdir(path):
                raise FileNotFoundError(
                    f"resume_from_checkpoint={path!r} does not exist; pass a checkpoint-N folder under "
                    f"{cfg.checkpoints_dir}, or resume=True for the newest complete one."
                )
            if not is_complete_checkpoint(path):
                raise FileNotFoundError(
                    f"resume_from_checkpoint={path!r} is not a complete checkpoint (no trainer_state.json: it was "
                    "still being written when the run stopped); pass resume=True for the newest complete one."
                )
        elif not cfg.resume:
            earlier = numbered_folders(cfg.checkpoints_dir, "checkpoint-")
            if earlier:
                # The Trainer's rotation sorts by step: an earlier run's checkpoint-500 would outlive this run's 50.
                raise FileExistsError(
                    f"output_dir={os.fspath(cfg.output_dir)!r} already holds checkpoints of an earlier run (newest: "
                    f"{earlier[-1][1]}); pass resume=True (--resume) to continue, or choose another output_dir."
                )

    def _resume_checkpoint(self) -> str | None:
        cfg = self.config
        self._check_resume_settings()
        if cfg.resume_from_checkpoint is not None:
            return cfg.resume_from_checkpoint
        if not cfg.resume:
            return None
        ckpt_dir = cfg.checkpoints_dir
        # Only the main process moves an incomplete checkpoint aside; the others look once it has.
        if self.is_main_process:
            last_checkpoint(ckpt_dir)
        self.trainer.accelerator.wait_for_everyone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = last_checkpoint(ckpt_dir, set_aside_incomplete=False)
        if found is None:
            warnings.warn(
                f"resume is set but {ckpt_dir} has no complete checkpoint; training starts from the beginning.",
                UserWarning,
                stacklevel=3,
            )
        return found

    def train(self) -> SFTResult:
        """Train, then save the generator to ``config.output_dir``.

        SIGTERM during training saves a checkpoint and returns early with ``interrupted=True`` (resume to finish).

        Returns:
            An :class:`SFTResult`.

        Raises:
            NonFiniteLossError: The training loss became NaN or infinite (the message names the step and the last
                good checkpoint, which is kept).
            FileExistsError: ``output_dir`` holds checkpoints of an earlier run and this run does not resume.
            FileNotFoundError: ``resume_from_checkpoint`` does not exist or is incomplete.
        """
        cfg, trainer = self.config, self.trainer
        start = time.perf_counter()
        resume_from = self._resume_checkpoint()
        if self.is_main_process:
            os.makedirs(cfg.checkpoints_dir, exist_ok=True)
        with self._sigterm.installed():
            output = trainer.train(resume_from_checkpoint=resume_from)
            metrics = dict(output.metrics)
            if self._sigterm.requested:
                return SFTResult(
                    global_step=trainer.state.global_step,
                    train_loss=metrics.get("train_loss"),
                    eval_loss=None,
                    eval_rouge_l=None,
                    runtime_s=time.perf_counter() - start,
                    train_samples_per_second=metrics.get("train_samples_per_second"),
                    output_dir=None,
                    last_checkpoint=last_checkpoint(cfg.checkpoints_dir, set_aside_incomplete=False),
                    interrupted=True,
                )
            eval_metrics = self._final_eval()
            self.save_generator(cfg.output_dir)
        return SFTResult(
            global_step=trainer.state.global_step,
            train_loss=_finite_or_none(metrics.get("train_loss")),
            eval_loss=_finite_or_none(eval_metrics.get("eval_loss")),
            eval_rouge_l=eval_metrics.get("eval_rouge_l"),
            runtime_s=time.perf_counter() - start,
            train_samples_per_second=metrics.get("train_samples_per_second"),
            output_dir=os.fspath(cfg.output_dir),
            last_checkpoint=last_checkpoint(cfg.checkpoints_dir, set_aside_incomplete=False),
        )

    def _final_eval(self) -> dict[str, float]:
        trainer = self.trainer
        if trainer.eval_dataset is None:
            return {}
        # The Trainer evaluates at the last step when that falls on eval_steps; no need to do it twice.
        for entry in reversed(trainer.state.log_history):
            if "eval_loss" in entry and entry.get("step") == trainer.state.global_step:
                return entry
        return trainer.evaluate()

    @property
    def is_main_process(self) -> bool:
        return self.trainer.is_world_process_zero()

    def save_generator(self, output_dir: str | os.PathLike) -> None:
        """Write the trained model as a generator folder: weights or adapter, tokenizer, ``negopt_config.json``.

        A LoRA adapter is saved as such, unless ``config.merge`` is set or the base model cannot be loaded again by
        name (a model built in memory), in which case the merged model is saved. peft's template ``README.md`` is
        not kept; a ``README.md`` that was already in ``output_dir`` is left as it was.
        """
        from peft import PeftModel

        trainer, output_dir = self.trainer, os.fspath(output_dir)
        model = trainer.model
        merge = isinstance(model, PeftModel) and (
            self.config.merge or not hub.is_folder_or_hub_id(self.base_model_name)
        )
        if merge and not self.config.merge:
            warnings.warn(
                "the base model has no name or folder to load it from again, so the adapter is merged into it and "
                "the whole model is saved; load the base with from_pretrained to save an adapter instead.",
                UserWarning,
                stacklevel=2,
            )
        trainer.accelerator.wait_for_everyone()
        # peft writes its template model card (README.md) beside an adapter; it is not ours, so it does not stay.
        readme = os.path.join(output_dir, "README.md")
        readme_before = _read_bytes(readme) if self.is_main_process else None
        if merge:
            if self.is_main_process:
                merged = trainer.accelerator.unwrap_model(model).merge_and_unload()
                merged.save_pretrained(output_dir)
        else:
            # Handles FSDP / DeepSpeed gathering and writes only on the main process.
            trainer.save_model(output_dir)
        if self.is_main_process:
            os.makedirs(output_dir, exist_ok=True)
            # A pickle the Trainer drops beside the model; the generator folder stays pickle-free.
            args_file = os.path.join(output_dir, "training_args.bin")
            if os.path.exists(args_file):
                os.remove(args_file)
            if readme_before is None:
                if os.path.exists(readme):
                    os.remove(readme)
            elif _read_bytes(readme) != readme_before:
                with open(readme, "wb") as f:  # a README.md of the user's own, as it was
                    f.write(readme_before)
            tokenizer = self.tokenizer
            if self.model_type == "causal":
                tokenizer = copy.deepcopy(tokenizer)
                tokenizer.padding_side = "left"
                tokenizer.init_kwargs["padding_side"] = "left"  # what save_pretrained writes
            tokenizer.save_pretrained(output_dir)
            self.negopt_config.save_pretrained(output_dir)
        trainer.accelerator.wait_for_everyone()


def _has_accelerator() -> bool:
    if torch.cuda.is_available():
        return True
    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return bool((mps is not None and mps.is_available()) or (xpu is not None and xpu.is_available()))


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _finite_or_none(x):
    return x if x is not None and math.isfinite(x) else None
