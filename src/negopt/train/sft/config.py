"""The settings of a supervised fine-tuning run (:class:`SFTConfig`) and what a run reports (:class:`SFTResult`).

:class:`SFTConfig` checks itself when built (types, ranges, settings that contradict each other) and maps to
transformers' ``Seq2SeqTrainingArguments`` (:meth:`SFTConfig.to_training_arguments`);
:class:`~negopt.train.sft.SFTTrainer` runs it.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from negopt.train.lora import DEFAULT_TARGET_MODULES
from negopt.values import FALSE_STRINGS, NONE_STRINGS, TRUE_STRINGS, check_seed, field_types

__all__ = ["SFTConfig", "SFTResult"]

DEFAULT_MODEL = "google-t5/t5-small"
_MODEL_TYPES = ("seq2seq", "causal")

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

# Strings that mean a yes/no, not a checkpoint folder: resume="no" must never resume from a folder named "no".
_BOOL_WORDS = {"", "y", "n", *TRUE_STRINGS, *FALSE_STRINGS, *NONE_STRINGS}


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
    for name, hint in field_types(type(config)).items():
        value = getattr(config, name)
        if _type_matches(value, hint):
            continue
        fix = ""
        if isinstance(value, str) and _type_matches(0.5, hint):
            fix = " Write it as a number, not a string (in YAML, write 1e-4 as 1.0e-4: PyYAML reads 1e-4 as a string)."
        elif isinstance(value, str) and _type_matches(1, hint):
            fix = " Write it as a number, not a string."
        elif isinstance(value, str) and hint is bool:
            fix = " Write it as a bool, not a string (in YAML, true or false without quotes)."
        raise TypeError(f"{name} must be {_describe(hint)}, got {value!r} ({type(value).__name__}).{fix}")


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
        check_seed("seed", self.seed)
        check_seed("data_seed", self.data_seed, optional=True)
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
        from negopt.train.checkpointing import CHECKPOINTS_DIR  # here: the module loads transformers

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


def _has_accelerator() -> bool:
    import torch

    if torch.cuda.is_available():
        return True
    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return bool((mps is not None and mps.is_available()) or (xpu is not None and xpu.is_available()))
