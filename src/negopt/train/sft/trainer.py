"""Supervised fine-tuning (SFT) of a negative-prompt generator on prompt -> negative-prompt pairs.

The NegOpt paper's first stage: a seq2seq model (T5 by default) or a causal LM learns to write the negative prompt of
a prompt from Negative Prompts DB. :class:`SFTTrainer` builds on transformers' ``Seq2SeqTrainer`` and peft, so
checkpointing, resuming, ``report_to`` (tensorboard, wandb), gradient accumulation, bf16/fp16 and ``accelerate
launch`` / ``torchrun`` for several GPUs (DDP, FSDP, DeepSpeed) come from them. negopt adds the data handling
(cleaning, a leak-free split, dynamic padding and length-grouped batches), LoRA on every linear layer by default,
a checkpoint on SIGTERM, a stop with a clear error on a NaN loss, and an output folder that loads with
``NegOptGenerator.from_pretrained``. The settings are :class:`~negopt.train.sft.config.SFTConfig`, the data
handling :mod:`negopt.train.sft.data`, the card :mod:`negopt.train.sft.card`.

.. code-block:: text

    output_dir/
        adapter_config.json, adapter_model.safetensors   (LoRA; or config.json + model.safetensors, merged or full)
        tokenizer files, negopt_config.json, README.md    (the model card: base model, how it was trained)
        checkpoints/checkpoint-N/                          (resumable Trainer checkpoints)
        logs/negopt-sft/                                   (TensorBoard logs, with report_to="tensorboard")

Example:
    >>> from negopt.train import SFTConfig, SFTTrainer
    >>> config = SFTConfig(model="google-t5/t5-small", dataset="pairs.csv", output_dir="out/sft", max_steps=1000)
    >>> result = SFTTrainer(config).train()  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
import warnings

import torch

from negopt import hub
from negopt.config import NegOptConfig
from negopt.model_card import MODEL_CARD_NAME, write_model_card
from negopt.train.checkpointing import (
    SigtermCheckpointCallback,
    check_loss,
    check_output_dir,
    damaged_weights,
    is_complete_checkpoint,
    last_checkpoint,
    numbered_folders,
)
from negopt.train.lora import add_lora
from negopt.train.sft.card import SFTModelCardMixin
from negopt.train.sft.config import SFTConfig, SFTResult
from negopt.train.sft.data import PairCollator, select_pairs, tokenize_pairs
from negopt.train.sft.metrics import mean_rouge_l, rouge_l

__all__ = ["SFTConfig", "SFTResult", "SFTTrainer", "rouge_l"]  # the config, result and metric are re-exported

logger = logging.getLogger(__name__)

LOGS_DIR = "logs"  # under output_dir, as for RL


def _trainer_class():
    """negopt's ``Seq2SeqTrainer`` subclass, defined on first use so that importing this module loads no Trainer."""
    from transformers import Seq2SeqTrainer
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

    return _Trainer


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


class SFTTrainer(SFTModelCardMixin):
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
        train_ds, eval_ds, self.data_summary = select_pairs(config, self.tokenizer, train_dataset, eval_dataset)
        self.train_rows, self.eval_rows = len(train_ds), (len(eval_ds) if eval_ds is not None else 0)

        args = config.to_training_arguments(has_eval=eval_ds is not None)
        with args.main_process_first(desc="tokenizing"):
            train_tok = self._tokenize(train_ds)
            eval_tok = self._tokenize(eval_ds) if eval_ds is not None else None

        self._sigterm = SigtermCheckpointCallback()
        self.trainer = _trainer_class()(
            model=self.model,
            args=args,
            train_dataset=train_tok,
            eval_dataset=eval_tok,
            processing_class=self.tokenizer,
            data_collator=PairCollator(self.tokenizer, 8 if (config.bf16 or config.fp16) else None),
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

        self._adapter_given = isinstance(model, PeftModel)
        if self._adapter_given:
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

    def _tokenize(self, ds):
        cfg = self.config
        return tokenize_pairs(
            ds,
            self.tokenizer,
            format_prompt=self.negopt_config.format_prompt,
            model_type=self.model_type,
            max_source_length=cfg.max_source_length,
            max_target_length=cfg.max_target_length,
        )

    def _compute_metrics(self, eval_pred) -> dict[str, float]:
        return mean_rouge_l(eval_pred, self.tokenizer)

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
            damaged = damaged_weights(path)
            if damaged is not None:
                raise ValueError(
                    f"resume_from_checkpoint={path!r} has a damaged weights file, {damaged[0]} ({damaged[1]}); pass "
                    "an earlier checkpoint, or resume=True (--resume) to continue from the newest readable one."
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

    def _merges_on_save(self) -> bool:
        """Whether :meth:`save_generator` saves the merged model rather than the adapter."""
        from peft import PeftModel

        return isinstance(self.trainer.model, PeftModel) and (
            self.config.merge or not hub.is_folder_or_hub_id(self.base_model_name)
        )

    def save_generator(self, output_dir: str | os.PathLike) -> None:
        """Write the trained model as a generator folder: weights or adapter, tokenizer, ``negopt_config.json`` and a
        model card (``README.md``, see :meth:`model_card`).

        A LoRA adapter is saved as such, unless ``config.merge`` is set or the base model cannot be loaded again by
        name (a model built in memory), in which case the merged model is saved. peft's template ``README.md`` is
        not kept. A ``README.md`` that was already in ``output_dir`` and that negopt did not write is left as it
        was, as ``NegOptGenerator.save_pretrained`` leaves it; one that negopt wrote is replaced.
        """
        trainer, output_dir = self.trainer, os.fspath(output_dir)
        merge = self._merges_on_save()
        if merge and not self.config.merge:
            warnings.warn(
                "the base model has no name or folder to load it from again, so the adapter is merged into it and "
                "the whole model is saved; load the base with from_pretrained to save an adapter instead.",
                UserWarning,
                stacklevel=2,
            )
        trainer.accelerator.wait_for_everyone()
        # peft writes its template model card beside an adapter, or edits the README.md that is there.
        readme = os.path.join(output_dir, MODEL_CARD_NAME)
        readme_before = _read_bytes(readme) if self.is_main_process else None
        if merge:
            if self.is_main_process:
                merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
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
                    os.remove(readme)  # peft's template
            elif _read_bytes(readme) != readme_before:
                with open(readme, "wb") as f:  # the README.md that was there, as it was
                    f.write(readme_before)
            tokenizer = self.tokenizer
            if self.model_type == "causal":
                tokenizer = copy.deepcopy(tokenizer)
                tokenizer.padding_side = "left"
                tokenizer.init_kwargs["padding_side"] = "left"  # what save_pretrained writes
            tokenizer.save_pretrained(output_dir)
            self.negopt_config.save_pretrained(output_dir)
            write_model_card(output_dir, self.model_card())
        trainer.accelerator.wait_for_everyone()


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _finite_or_none(x):
    return x if x is not None and math.isfinite(x) else None
