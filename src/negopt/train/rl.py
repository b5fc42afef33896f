"""Reinforcement learning of a negative-prompt generator against image rewards (NegOpt's second stage).

The loop, one step:

1. take ``batch_size`` prompts (each process its share) and sample ``num_candidates`` negatives for each from the
   policy (the generator with a LoRA adapter);
2. make one image per negative, every image of a prompt from the same seed, so that reward differences come from
   the negative prompt and not from the noise (optionally one more image with no negative, as a baseline);
3. score the images with the reward;
4. turn rewards into advantages within each prompt's group (leave-one-out, group-normalised, or against the
   no-negative image) and take a policy-gradient step, optionally PPO-style with a clipped ratio over several
   epochs, with a KL penalty to the starting policy.

trl cannot train encoder-decoder models, so this loop is ours, on accelerate and peft; it trains seq2seq (T5, BART)
and causal (GPT-2 style) generators alike.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from negopt.text import clean_negative, strip_echo
from negopt.train import rl_checkpoint as ckpt
from negopt.train.checkpointing import SigtermFlag

logger = logging.getLogger(__name__)

__all__ = ["RLConfig", "RLTrainer", "RLTrainerState"]

# Sampling must draw from the policy's own distribution (the log-probs of the update assume it), so only these
# generation settings are the user's to choose; top-k/top-p, repetition penalties and beams would bias the samples.
SAMPLING_KEYS = ("max_new_tokens", "temperature")
# The trainer sets these on every pipeline call itself.
RESERVED_PIPELINE_KEYS = ("prompt", "negative_prompt", "generator", "num_images_per_prompt", "output_type")
REF_ADAPTER = "negopt_reference"


@dataclass
class RLConfig:
    """Settings of :class:`RLTrainer`.

    Args:
        output_dir: Where the trained generator (adapter, tokenizer, ``negopt_config.json``), the checkpoints
            (``checkpoints/step-N``), the sample grids (``samples/``) and the tracker logs go.
        max_steps: Number of RL steps (one step = ``batch_size`` prompts x ``num_candidates`` negatives).
        learning_rate: AdamW learning rate of the LoRA parameters.
        num_candidates: Negatives sampled per prompt (k, the group size); at least 2.
        batch_size: Prompts per step over all processes; must divide evenly among them.
        seed: Seeds sampling (per step, so a resumed run continues exactly), prompt order and image noise.
        generation_kwargs: Sampling settings: ``max_new_tokens`` and ``temperature`` only (sampling is always full
            multinomial: top-k, top-p and repetition penalties would sample from a distribution other than the
            policy's).
        pipeline_kwargs: Passed to every pipeline call, e.g. ``num_inference_steps``, ``height``, ``width``,
            ``guidance_scale``.
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling numerator.
        lora_dropout: LoRA dropout (0 keeps the update's log-probs equal to the sampler's).
        lora_target_modules: peft ``target_modules``; ``"all-linear"`` is every linear layer but the output head.
        advantage: ``"leave_one_out"`` (reward minus the mean of the group's others), ``"group_norm"`` (reward
            minus the group mean, over the group's standard deviation), or ``"no_negative"`` (reward minus the
            reward of the same prompt's image with no negative; implies ``baseline_image``).
        baseline_image: Also make each prompt's image with no negative (same seed); its reward is logged as
            ``reward/no_negative`` and the difference as ``reward/gain``.
        kl_coef: Weight of the KL penalty to the starting policy (0 turns it off and skips its forward pass).
        ppo_epochs: Passes of the update over each rollout; more than 1 makes the clipped ratio matter.
        clip_range: PPO clipping of the probability ratio, ``[1 - clip_range, 1 + clip_range]``.
        max_grad_norm: Gradient-norm clipping (None: off).
        weight_decay: AdamW weight decay.
        warmup_steps: Linear learning-rate warm-up, then constant.
        image_batch_size: Images per pipeline call (None: all images of a step in one call).
        postprocess: Clean the sampled negatives as ``NegOptGenerator`` does at inference (drop an echo of the
            prompt, repeated terms, stray commas) before they reach the pipeline and the reward.
        max_prompt_tokens: Prompts are truncated to this many tokens (None: the generator config's
            ``max_input_tokens``, else 128).
        save_steps: Write a checkpoint every this many steps (0: only on SIGTERM).
        save_total_limit: Keep at most this many checkpoints (None: all).
        logging_steps: Log metrics every this many steps.
        sample_steps: Every this many steps, save a grid of one prompt's images with their negatives under
            ``output_dir/samples`` and send it to the trackers that take images (0: never).
        report_to: ``"none"``, ``"tensorboard"``, ``"wandb"``, ``"all"`` or a list: accelerate's trackers.
        resume: Continue from the newest complete checkpoint in ``output_dir/checkpoints`` (a fresh start if none).
        resume_from_checkpoint: Continue from this checkpoint folder.
        mixed_precision: ``"no"``, ``"fp16"`` or ``"bf16"`` for the generator's forward passes (accelerate).
        cpu: Train on the CPU even when a GPU is available.
        pipeline_dtype: dtype to load a pipeline given by id/path in (``"float16"``, ``"bfloat16"``, ``"float32"``;
            None: float32).

    Raises:
        ValueError: A setting out of range, or a generation/pipeline key the trainer owns.
    """

    output_dir: str
    max_steps: int = 500
    learning_rate: float = 1e-4
    num_candidates: int = 4
    batch_size: int = 4
    seed: int = 0
    generation_kwargs: dict[str, Any] = field(default_factory=lambda: {"max_new_tokens": 64, "temperature": 1.0})
    pipeline_kwargs: dict[str, Any] = field(default_factory=dict)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: str | list[str] = "all-linear"
    advantage: Literal["leave_one_out", "group_norm", "no_negative"] = "leave_one_out"
    baseline_image: bool = False
    kl_coef: float = 0.05
    ppo_epochs: int = 1
    clip_range: float = 0.2
    max_grad_norm: float | None = 1.0
    weight_decay: float = 0.0
    warmup_steps: int = 0
    image_batch_size: int | None = None
    postprocess: bool = True
    max_prompt_tokens: int | None = None
    save_steps: int = 50
    save_total_limit: int | None = 2
    logging_steps: int = 1
    sample_steps: int = 50
    report_to: str | list[str] = "none"
    resume: bool = False
    resume_from_checkpoint: str | None = None
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    cpu: bool = False
    pipeline_dtype: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.output_dir, str | os.PathLike) or not str(self.output_dir):
            raise ValueError(f"output_dir must be a folder path, got {self.output_dir!r}.")
        self.output_dir = os.fspath(self.output_dir)
        for name, low in (
            ("max_steps", 1),
            ("num_candidates", 2),
            ("batch_size", 1),
            ("lora_r", 1),
            ("ppo_epochs", 1),
            ("logging_steps", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                hint = " (advantages compare negatives within a prompt's group)" if name == "num_candidates" else ""
                raise ValueError(f"{name} must be an integer >= {low}{hint}, got {value!r}.")
        for name in ("save_steps", "sample_steps", "warmup_steps", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}.")
        for name in ("image_batch_size", "save_total_limit", "max_prompt_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}.")
        if not (isinstance(self.learning_rate, int | float) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}.")
        if not (isinstance(self.lora_alpha, int | float) and self.lora_alpha > 0):
            raise ValueError(f"lora_alpha must be > 0, got {self.lora_alpha!r}.")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}.")
        if not (isinstance(self.kl_coef, int | float) and self.kl_coef >= 0):
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef!r}.")
        if not (isinstance(self.clip_range, int | float) and 0 < self.clip_range < 1):
            raise ValueError(f"clip_range must be in (0, 1), got {self.clip_range!r}.")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm!r}.")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}.")
        if self.advantage not in ("leave_one_out", "group_norm", "no_negative"):
            raise ValueError(
                f"advantage must be 'leave_one_out', 'group_norm' or 'no_negative', got {self.advantage!r}."
            )
        if self.advantage == "no_negative":
            self.baseline_image = True
        if not isinstance(self.generation_kwargs, dict):
            raise TypeError(f"generation_kwargs must be a dict, got {type(self.generation_kwargs).__name__}.")
        bad = sorted(set(self.generation_kwargs) - set(SAMPLING_KEYS))
        if bad:
            raise ValueError(
                f"generation_kwargs may only set {list(SAMPLING_KEYS)}, got {bad}: RL samples from the policy's own "
                "distribution (do_sample=True, top_k=0, top_p=1.0), which the update's log-probs assume. Remove them."
            )
        self.generation_kwargs = {"max_new_tokens": 64, "temperature": 1.0, **self.generation_kwargs}
        mnt, temp = self.generation_kwargs["max_new_tokens"], self.generation_kwargs["temperature"]
        if isinstance(mnt, bool) or not isinstance(mnt, int) or mnt < 1:
            raise ValueError(f"generation_kwargs['max_new_tokens'] must be an integer >= 1, got {mnt!r}.")
        if not (isinstance(temp, int | float) and temp > 0):
            raise ValueError(f"generation_kwargs['temperature'] must be > 0, got {temp!r}.")
        if not isinstance(self.pipeline_kwargs, dict):
            raise TypeError(f"pipeline_kwargs must be a dict, got {type(self.pipeline_kwargs).__name__}.")
        bad = sorted(set(self.pipeline_kwargs) & set(RESERVED_PIPELINE_KEYS))
        if bad:
            raise ValueError(f"pipeline_kwargs must not set {bad}: the trainer passes them itself. Remove them.")
        gs = self.pipeline_kwargs.get("guidance_scale")
        if gs is not None and gs <= 1:
            warnings.warn(
                f"pipeline_kwargs['guidance_scale'] is {gs}: diffusers pipelines ignore the negative prompt at "
                "guidance_scale <= 1, so the reward cannot depend on it. Use a value above 1 (e.g. 7.5).",
                UserWarning,
                stacklevel=3,
            )
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be 'no', 'fp16' or 'bf16', got {self.mixed_precision!r}.")
        if self.pipeline_dtype not in (None, "float16", "bfloat16", "float32"):
            raise ValueError(
                f"pipeline_dtype must be None, 'float16', 'bfloat16' or 'float32', got {self.pipeline_dtype!r}."
            )
        if isinstance(self.report_to, str):
            self.report_to = self.report_to.strip() or "none"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RLConfig:
        """Build a config from a mapping (a YAML file, say); unknown keys are an error that lists the valid ones."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown RLConfig keys {unknown}; valid keys: {', '.join(known)}.")
        return cls(**data)


@dataclass
class RLTrainerState:
    """Progress of a run; saved in every checkpoint's ``trainer_state.json``."""

    step: int = 0
    reward_mean_ema: float | None = None
    rewards_seen: int = 0
    rewards_dropped: int = 0
    groups_skipped: int = 0
    interrupted: bool = False


@dataclass
class _Rollout:
    prompts: list[str]  # the local prompts of this step
    positions: list[int]  # their positions in the step's global batch (for image seeds)
    enc_ids: torch.Tensor  # (B, P) prompt token ids, padded (left for causal, right for seq2seq)
    enc_mask: torch.Tensor
    responses: torch.Tensor  # (B*k, T) sampled token ids, prompt-major
    response_mask: torch.Tensor  # (B*k, T) 1 up to and including EOS
    negatives: list[str]  # (B*k,) the negatives the pipeline sees
    decoder_start: torch.Tensor | None  # (B*k, 1) seq2seq: the decoder's first input, as generate used it
    images: list = field(default_factory=list)
    baseline_images: list = field(default_factory=list)


class RLTrainer:
    """Policy-gradient fine-tuning of a generator's LoRA adapter against an image reward.

    The generator is trained as a LoRA adapter (``lora_r``, ``lora_alpha``, ``target_modules="all-linear"``). If its
    model already is a peft model with a LoRA adapter (an SFT result, say), that adapter is trained further instead
    of stacking a new one, and the KL reference is a frozen copy of it (a second adapter of a few MB, not a second
    model); otherwise the reference is the base model, run with the adapter disabled. The generator object you pass
    is not modified: the trainer works on a copy (``trainer.model``).

    Multi-process runs (``torchrun`` or ``accelerate launch``) split each step's prompts among the processes and
    average the gradients; every process needs the pipeline and the reward.

    Args:
        config: The run's settings.
        generator: A ``NegOptGenerator`` (anything with ``.model``, ``.tokenizer`` and ``.config``, a
            ``NegOptConfig``), or a folder / hub id that ``NegOptGenerator.from_pretrained`` loads.
        pipeline: A diffusers pipeline (called with ``prompt``, ``negative_prompt``, ``generator`` (a list of
            ``torch.Generator``), ``num_images_per_prompt`` and ``output_type="pil"``), or a folder / hub id for
            ``DiffusionPipeline.from_pretrained`` (safetensors only; moved to the training device). A pipeline
            object is used as given, on its own device.
        reward: ``reward(images=..., prompts=..., negative_prompts=...) -> list[float]``, higher is better. If it
            has a ``last_terms`` attribute (a dict of name -> per-image values) after a call, each term is logged.
        prompts: A list of prompts, a ``.txt`` file (one a line), a ``datasets`` Dataset with a ``prompt`` column, or
            a Negative Prompts DB source for ``negopt.data.load_negative_prompts``.

    Raises:
        ValueError: Empty prompts, a batch that does not split among the processes, a non-LoRA peft model.
        TypeError: A generator, pipeline or reward of the wrong kind.

    Example:
        >>> from negopt.train import RLConfig, RLTrainer
        >>> trainer = RLTrainer(RLConfig(output_dir="out/rl", max_steps=200), generator="out/sft",
        ...                     pipeline=sd_pipe, reward=my_reward, prompts="prompts.txt")  # doctest: +SKIP
        >>> trainer.train()  # doctest: +SKIP
    """

    def __init__(
        self,
        config: RLConfig,
        *,
        generator: Any,
        pipeline: Any,
        reward: Callable[..., Sequence[float]],
        prompts: Sequence[str] | str | os.PathLike | Any,
    ) -> None:
        from accelerate import Accelerator

        if not isinstance(config, RLConfig):
            raise TypeError(f"config must be an RLConfig, got {type(config).__name__}.")
        if not callable(reward):
            raise TypeError(
                f"reward must be callable as reward(images=..., prompts=..., negative_prompts=...), "
                f"got {type(reward).__name__}."
            )
        self.config = config
        self.reward = reward
        report_to = None if config.report_to in ("none", ["none"], []) else config.report_to
        # Under torchrun with no GPU, accelerate runs multi-process (gloo) only when told to use the CPU.
        multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        self.accelerator = Accelerator(
            log_with=report_to,
            project_dir=os.path.join(config.output_dir, "logs"),
            mixed_precision=config.mixed_precision,
            cpu=config.cpu or multi_cpu,
        )
        world = self.accelerator.num_processes
        if config.batch_size % world:
            raise ValueError(
                f"batch_size ({config.batch_size}) must be a multiple of the number of processes ({world}): each "
                "process takes an equal share of a step's prompts."
            )
        self.local_batch_size = config.batch_size // world

        self.prompts = _load_prompts(prompts)
        self.model, self.tokenizer, self.generator_config, self.adapter_name, self._ref_adapter = _policy(
            generator, config
        )
        self.is_seq2seq = self.generator_config.model_type == "seq2seq"
        self.pipeline = self._load_pipeline(pipeline)

        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        warmup = config.warmup_steps
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
        )
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        self.state = RLTrainerState()
        self.log_history: list[dict[str, float]] = []
        self.last_timings: dict[str, float] = {}
        self._perms: dict[int, torch.Tensor] = {}
        self._sigterm = SigtermFlag()

        tok = self.tokenizer
        self.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        eos = getattr(self._policy.generation_config, "eos_token_id", None)
        eos = tok.eos_token_id if eos is None else eos
        self.eos_token_ids = sorted({eos} if isinstance(eos, int) else set(eos))
        if self.pad_token_id is None or not self.eos_token_ids:
            raise ValueError("the generator's tokenizer needs an eos token (and a pad token or the eos as pad).")

    # ------------------------------------------------------------------------------------------------ set-up
    @property
    def _policy(self):
        """The peft model itself (no DDP wrapper): for generate, adapters and saving."""
        return self.accelerator.unwrap_model(self.model)

    def _load_pipeline(self, pipeline):
        if isinstance(pipeline, str | os.PathLike):
            from diffusers import DiffusionPipeline

            # diffusers loads float32 by default; pass a dtype only when asked (newer diffusers warn on torch_dtype).
            dtype = {"torch_dtype": getattr(torch, self.config.pipeline_dtype)} if self.config.pipeline_dtype else {}
            pipe = DiffusionPipeline.from_pretrained(os.fspath(pipeline), use_safetensors=True, **dtype)
            pipe.set_progress_bar_config(disable=True)
            return pipe.to(self.accelerator.device)
        if not callable(pipeline):
            raise TypeError(
                f"pipeline must be a diffusers pipeline or a folder / hub id, got {type(pipeline).__name__}."
            )
        return pipeline

    # ------------------------------------------------------------------------------------------------ prompts
    def _step_prompts(self, step: int) -> tuple[list[str], list[int]]:
        """This process's prompts of ``step`` and their positions in the step's global batch."""
        n, b = len(self.prompts), self.config.batch_size
        start = self.accelerator.process_index * self.local_batch_size
        positions = list(range(start, start + self.local_batch_size))
        out = []
        for pos in positions:
            flat = step * b + pos
            epoch = flat // n
            if epoch not in self._perms:
                rng = torch.Generator().manual_seed(self.config.seed + epoch)
                self._perms = {epoch: torch.randperm(n, generator=rng)}
            out.append(self.prompts[int(self._perms[epoch][flat % n])])
        return out, positions

    def _encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        limit = self.config.max_prompt_tokens or self.generator_config.max_input_tokens or 128
        texts = [self.generator_config.format_prompt(p) for p in prompts]
        ids = self.tokenizer(texts, truncation=True, max_length=limit)["input_ids"]
        width = max(len(x) for x in ids)
        left = not self.is_seq2seq  # a causal model continues from the last position: pad on the left
        rows, masks = [], []
        for x in ids:
            pad = [self.pad_token_id] * (width - len(x))
            rows.append(pad + x if left else x + pad)
            masks.append([0] * len(pad) + [1] * len(x) if left else [1] * len(x) + [0] * len(pad))
        device = self.accelerator.device
        return torch.tensor(rows, device=device), torch.tensor(masks, device=device)

    # ------------------------------------------------------------------------------------------------ phases
    @torch.no_grad()
    def _sample(self, step: int) -> _Rollout:
        prompts, positions = self._step_prompts(step)
        enc_ids, enc_mask = self._encode(prompts)
        k = self.config.num_candidates
        gen = self.config.generation_kwargs
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices), self.accelerator.autocast():
            # Seeded per step (and process), so a resumed run samples exactly what the uninterrupted one would.
            torch.manual_seed(self.config.seed * 1_000_003 + step * 101 + self.accelerator.process_index)
            out = self._policy.generate(
                input_ids=enc_ids,
                attention_mask=enc_mask,
                do_sample=True,
                top_k=0,
                top_p=1.0,
                temperature=float(gen["temperature"]),
                num_beams=1,
                repetition_penalty=1.0,
                no_repeat_ngram_size=0,
                num_return_sequences=k,
                max_new_tokens=int(gen["max_new_tokens"]),
                pad_token_id=self.pad_token_id,
                eos_token_id=self.eos_token_ids,
            )
        responses = out[:, 1:] if self.is_seq2seq else out[:, enc_ids.shape[1] :]
        is_eos = torch.isin(responses, torch.tensor(self.eos_token_ids, device=responses.device))
        # Tokens up to and including the first EOS; what follows is padding.
        response_mask = (torch.cumsum(is_eos.int(), dim=1) - is_eos.int() == 0).long()
        texts = self.tokenizer.batch_decode(
            responses * response_mask + self.pad_token_id * (1 - response_mask), skip_special_tokens=True
        )
        negatives = []
        for i, text in enumerate(texts):
            text = text.strip()
            negatives.append(clean_negative(strip_echo(text, prompts[i // k])) if self.config.postprocess else text)
        start = out[:, :1] if self.is_seq2seq else None
        return _Rollout(prompts, positions, enc_ids, enc_mask, responses, response_mask, negatives, start)

    def _image_seed(self, step: int, position: int) -> int:
        return (self.config.seed * 7_919 + step) * 1_009 + position

    @torch.no_grad()
    def _make_images(self, rollout: _Rollout, step: int) -> None:
        k = self.config.num_candidates
        calls = []  # (prompt, negative, seed); the k negatives of a prompt share its seed, then the baseline
        for i, (prompt, pos) in enumerate(zip(rollout.prompts, rollout.positions)):
            seed = self._image_seed(step, pos)
            calls += [(prompt, neg, seed) for neg in rollout.negatives[i * k : (i + 1) * k]]
            if self.config.baseline_image:
                calls.append((prompt, "", seed))  # "" is what diffusers uses for "no negative prompt"
        chunk = self.config.image_batch_size or len(calls)
        images = []
        for start in range(0, len(calls), chunk):
            part = calls[start : start + chunk]
            out = self.pipeline(
                prompt=[c[0] for c in part],
                negative_prompt=[c[1] for c in part],
                generator=[torch.Generator("cpu").manual_seed(c[2]) for c in part],
                num_images_per_prompt=1,
                output_type="pil",
                **self.config.pipeline_kwargs,
            )
            got = list(out.images if hasattr(out, "images") else out[0])
            if len(got) != len(part):
                raise ValueError(f"the pipeline returned {len(got)} images for {len(part)} prompts.")
            images += got
        group = k + int(self.config.baseline_image)
        for i in range(len(rollout.prompts)):
            rollout.images += images[i * group : i * group + k]
            if self.config.baseline_image:
                rollout.baseline_images.append(images[i * group + k])

    def _score(self, rollout: _Rollout) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        k = self.config.num_candidates
        images = rollout.images + rollout.baseline_images
        prompts = [p for p in rollout.prompts for _ in range(k)] + (rollout.prompts if rollout.baseline_images else [])
        negatives = rollout.negatives + [""] * len(rollout.baseline_images)
        values = self.reward(images=images, prompts=prompts, negative_prompts=negatives)
        rewards = _as_floats(values, len(images), "reward")
        terms = {}
        last_terms = getattr(self.reward, "last_terms", None)
        if isinstance(last_terms, dict):
            for name, term in last_terms.items():
                try:
                    terms[str(name)] = _as_floats(term, len(images), f"reward.last_terms[{name!r}]")
                except (TypeError, ValueError):
                    logger.debug("reward term %r is not one value per image; not logged", name)
        n = len(rollout.images)
        base = rewards[n:] if rollout.baseline_images else None
        return rewards[:n], base, terms

    def _advantages(self, rewards: torch.Tensor, baseline: torch.Tensor | None) -> tuple:
        """Per-sample advantages and weights (0 for dropped samples), and the number of skipped groups."""
        k = self.config.num_candidates
        r = rewards.view(-1, k)
        finite = torch.isfinite(r)
        if baseline is not None and self.config.advantage == "no_negative":
            ok = finite & torch.isfinite(baseline)[:, None]
            group_ok = ok.any(dim=1)
        else:
            ok = finite
            group_ok = finite.sum(dim=1) >= 2  # a group needs two finite rewards to compare
        ok = ok & group_ok[:, None]
        rz = torch.where(ok, r, torch.zeros_like(r))
        cnt = ok.sum(dim=1, keepdim=True).clamp(min=1)
        mean = rz.sum(dim=1, keepdim=True) / cnt
        if self.config.advantage == "no_negative":
            adv = rz - torch.nan_to_num(baseline, nan=0.0, posinf=0.0, neginf=0.0)[:, None]
        elif self.config.advantage == "leave_one_out":
            adv = (rz - mean) * cnt / (cnt - 1).clamp(min=1)
        else:
            var = (((rz - mean) ** 2) * ok).sum(dim=1, keepdim=True) / (cnt - 1).clamp(min=1)
            adv = (rz - mean) / (var.sqrt() + 1e-6)
        adv = torch.where(ok, adv, torch.zeros_like(adv))
        return adv.flatten(), ok.flatten().float(), int((~group_ok).sum())

    def _token_logprobs(self, model, rollout: _Rollout, adapter_names: list[str] | None = None) -> torch.Tensor:
        """Log-probabilities of the sampled tokens, ``(B*k, T)``, at the sampling temperature."""
        k = self.config.num_candidates
        ids = rollout.enc_ids.repeat_interleave(k, dim=0)
        mask = rollout.enc_mask.repeat_interleave(k, dim=0)
        resp = rollout.responses
        extra = {"adapter_names": adapter_names} if adapter_names is not None else {}
        with self.accelerator.autocast():
            if self.is_seq2seq:
                dec_in = torch.cat([rollout.decoder_start, resp[:, :-1]], dim=1)
                logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_in, **extra).logits
            else:
                full = torch.cat([ids, resp], dim=1)
                attn = torch.cat([mask, rollout.response_mask], dim=1)
                position_ids = (attn.cumsum(dim=1) - 1).clamp(min=0)
                logits = model(input_ids=full, attention_mask=attn, position_ids=position_ids, **extra).logits
                logits = logits[:, ids.shape[1] - 1 : -1]
        logits = logits.float() / float(self.config.generation_kwargs["temperature"])
        return torch.gather(logits, -1, resp.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)

    def _update(self, rollout: _Rollout, adv: torch.Tensor, weight: torch.Tensor, global_weight: float) -> dict:
        cfg = self.config
        tmask = rollout.response_mask.float()
        ntok = tmask.sum(dim=1).clamp(min=1)
        adv = adv.to(tmask.device)[:, None]
        weight = weight.to(tmask.device)
        ref = None
        if cfg.kl_coef > 0:
            with torch.no_grad():
                if self._ref_adapter:
                    names = [REF_ADAPTER] * rollout.responses.shape[0]
                    ref = self._token_logprobs(self._policy, rollout, adapter_names=names)
                else:
                    with self._policy.disable_adapter():
                        ref = self._token_logprobs(self._policy, rollout)
        # Gradients are averaged over processes; scaling by the processes' count over the global number of kept
        # samples makes the update the mean over all kept samples, however they fall among the processes.
        scale = self.accelerator.num_processes / max(global_weight, 1.0)
        stats = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0}
        old = None
        for epoch in range(cfg.ppo_epochs):
            logp = self._token_logprobs(self.model, rollout)
            if old is None:
                old = logp.detach()  # the first pass runs before any update: its log-probs are the sampler's
            ratio = torch.exp(logp - old)
            clipped = torch.clamp(ratio, 1 - cfg.clip_range, 1 + cfg.clip_range)
            per_tok = -torch.min(ratio * adv, clipped * adv)
            if ref is not None:
                d = ref - logp
                kl_tok = torch.exp(d) - d - 1  # k3 estimator: unbiased, always >= 0
                per_tok = per_tok + cfg.kl_coef * kl_tok
            per_seq = (per_tok * tmask).sum(dim=1) / ntok
            loss = (per_seq * weight).sum() * scale
            self.accelerator.backward(loss)
            if cfg.max_grad_norm is not None:
                self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            if global_weight > 0:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if epoch == 0:
                stats["loss"] = float(loss.detach()) / self.accelerator.num_processes
                if ref is not None:
                    stats["kl"] = float(((kl_tok.detach() * tmask).sum(dim=1) * weight).sum())
            else:
                active = ((ratio.detach() - clipped.detach()).abs() > 0).float()
                stats["clip_fraction"] = float((active * tmask).sum() / tmask.sum().clamp(min=1))
        if global_weight > 0:  # a step with no kept sample makes no update and does not advance the schedule
            self.lr_scheduler.step()
        return stats

    # ------------------------------------------------------------------------------------------------ the loop
    def step(self) -> dict[str, float]:
        """Run one RL step (sample, images, reward, update) and return its metrics (over all processes)."""
        cfg, acc = self.config, self.accelerator
        step = self.state.step
        timings = {}
        t0 = t = _now()
        rollout = self._sample(step)
        timings["sample"], t = _now() - t, _now()
        self._make_images(rollout, step)
        timings["images"], t = _now() - t, _now()
        rewards, baseline, terms = self._score(rollout)
        timings["reward"], t = _now() - t, _now()

        finite = torch.isfinite(rewards)
        dropped = int((~finite).sum())
        if dropped:
            warnings.warn(
                f"step {step}: {dropped} of {len(rewards)} rewards are NaN or infinite; they are dropped from the "
                "update (a prompt with fewer than 2 finite rewards is skipped). Check the reward model's inputs.",
                RuntimeWarning,
                stacklevel=2,
            )
        adv, weight, skipped = self._advantages(rewards, baseline)
        lengths = rollout.response_mask.sum(dim=1).float().cpu()
        local = [
            torch.where(finite, rewards, 0).sum(),
            finite.sum(),
            float(dropped),
            float(skipped),
            weight.sum(),
            lengths.sum(),
            float(len(rewards)),
            float(len(rollout.prompts)),
        ]
        names = ["r_sum", "r_n", "dropped", "skipped", "kept", "len_sum", "n", "groups"]
        if baseline is not None:
            bf = torch.isfinite(baseline)
            local += [torch.where(bf, baseline, 0).sum(), bf.sum()]
            names += ["b_sum", "b_n"]
        for tname in sorted(terms):
            tv = terms[tname]
            tf = torch.isfinite(tv[: len(rewards)])
            local += [torch.where(tf, tv[: len(rewards)], 0).sum(), tf.sum()]
            names += [f"t_sum/{tname}", f"t_n/{tname}"]
        totals = dict(zip(names, self._reduce([float(x) for x in local])))
        update = self._update(rollout, adv, weight, totals["kept"])
        kl_sum, loss, clipfrac = self._reduce([update["kl"], update["loss"], update["clip_fraction"]])
        timings["update"] = _now() - t
        timings["total"] = _now() - t0
        self.last_timings = timings

        st = self.state
        st.step += 1
        st.rewards_seen += int(totals["n"])
        st.rewards_dropped += int(totals["dropped"])
        st.groups_skipped += int(totals["skipped"])
        mean_r = totals["r_sum"] / totals["r_n"] if totals["r_n"] else float("nan")
        if math.isfinite(mean_r):
            st.reward_mean_ema = mean_r if st.reward_mean_ema is None else 0.9 * st.reward_mean_ema + 0.1 * mean_r
        metrics = {
            "reward/mean": mean_r,
            "loss": loss,
            "negative_length": totals["len_sum"] / totals["n"],
            "rewards_dropped": float(st.rewards_dropped),
            "groups_skipped": float(st.groups_skipped),
            "lr": self.lr_scheduler.get_last_lr()[0],
        }
        if cfg.kl_coef > 0:  # with no penalty the reference pass is skipped, and so is its KL
            metrics["kl"] = kl_sum / totals["kept"] if totals["kept"] else 0.0
        if cfg.ppo_epochs > 1:
            metrics["clip_fraction"] = clipfrac / acc.num_processes
        if baseline is not None:
            metrics["reward/no_negative"] = totals["b_sum"] / totals["b_n"] if totals["b_n"] else float("nan")
            metrics["reward/gain"] = mean_r - metrics["reward/no_negative"]
        for tname in sorted(terms):
            n = totals[f"t_n/{tname}"]
            metrics[f"reward/{tname}"] = totals[f"t_sum/{tname}"] / n if n else float("nan")
        metrics.update({f"time/{k}": v for k, v in timings.items()})
        self.log_history.append({"step": st.step, **metrics})
        if st.step % cfg.logging_steps == 0:
            acc.log(metrics, step=st.step)
            logger.info("step %d: %s", st.step, {k: round(v, 4) for k, v in metrics.items()})
        if cfg.sample_steps and st.step % cfg.sample_steps == 0 and acc.is_main_process:
            self._save_samples(rollout, rewards, baseline, st.step)
        return metrics

    def train(self, resume_from_checkpoint: bool | str | None = None) -> RLTrainerState:
        """Train for ``config.max_steps`` steps, then save the generator to ``config.output_dir``.

        Args:
            resume_from_checkpoint: True: the newest complete checkpoint in ``output_dir`` (if any); a path: that
                checkpoint; None: as ``config.resume`` / ``config.resume_from_checkpoint`` say.

        Returns:
            The final state; ``state.interrupted`` is True if SIGTERM stopped the run (after a checkpoint), in which
            case the final generator is not written.

        Raises:
            FileNotFoundError: A checkpoint path that does not exist or is incomplete.
            FileExistsError: ``output_dir`` holds an earlier run's checkpoints and this run does not resume.
        """
        cfg, acc = self.config, self.accelerator
        if resume_from_checkpoint is None:
            resume_from_checkpoint = cfg.resume_from_checkpoint or cfg.resume
        path = None
        if resume_from_checkpoint is True:
            path = ckpt.latest_checkpoint(cfg.output_dir)
            if path is None:
                logger.info("no checkpoint in %s: starting from scratch", cfg.output_dir)
        elif resume_from_checkpoint:
            path = os.fspath(resume_from_checkpoint)
        else:
            earlier = ckpt.list_checkpoints(cfg.output_dir)
            if earlier:
                # Checkpoint rotation sorts by step: an earlier run's step-500 would outlive this run's step-50.
                raise FileExistsError(
                    f"output_dir={cfg.output_dir!r} already holds checkpoints of an earlier run (newest: "
                    f"{earlier[-1][1]}). Pass resume=True (--resume) to continue it, or choose a new output_dir."
                )
        if path is not None:
            self.load_checkpoint(path)

        if acc.is_main_process:
            os.makedirs(cfg.output_dir, exist_ok=True)
        acc.init_trackers("negopt-rl", config=_flat_config(cfg))
        from tqdm.auto import tqdm

        bar = tqdm(
            total=cfg.max_steps,
            initial=self.state.step,
            desc="RL",
            disable=not acc.is_local_main_process,
            dynamic_ncols=True,
        )
        with self._sigterm:
            try:
                last_saved = self.state.step
                while self.state.step < cfg.max_steps:
                    metrics = self.step()
                    bar.update(1)
                    bar.set_postfix(reward=f"{metrics['reward/mean']:.4g}")
                    if cfg.save_steps and self.state.step % cfg.save_steps == 0:
                        self.save_checkpoint()
                        last_saved = self.state.step
                    if self._any_process(self._sigterm.requested):
                        if last_saved != self.state.step:
                            self.save_checkpoint()
                        self.state.interrupted = True
                        logger.warning(
                            "SIGTERM: checkpoint saved at step %d; resume with resume=True", self.state.step
                        )
                        break
                else:
                    self.save_model()
            finally:
                bar.close()
                acc.end_training()
        return self.state

    # ------------------------------------------------------------------------------------------------ saving
    def save_model(self, output_dir: str | os.PathLike | None = None) -> str:
        """Save the trained generator (LoRA adapter, tokenizer, ``negopt_config.json``) for
        ``NegOptGenerator.from_pretrained``; returns the folder."""
        out = os.fspath(output_dir or self.config.output_dir)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            os.makedirs(out, exist_ok=True)
            _save_adapter(self._policy, self.adapter_name, out)
            self.tokenizer.save_pretrained(out)
            cfg = copy.deepcopy(self.generator_config)
            base = self._policy.peft_config[self.adapter_name].base_model_name_or_path
            if base:
                cfg.base_model_name_or_path = base
            else:
                warnings.warn(
                    "the generator's base model has no name or path (it was built in memory), so the saved adapter "
                    f"in {out} cannot find its base model. Save the base model and load it from that folder first.",
                    UserWarning,
                    stacklevel=2,
                )
            cfg.save_pretrained(out)
        self.accelerator.wait_for_everyone()
        return out

    def save_checkpoint(self) -> str:
        """Write ``output_dir/checkpoints/step-N`` (atomically) and return its path."""
        acc, cfg, step = self.accelerator, self.config, self.state.step
        tmp = os.path.join(cfg.output_dir, ckpt.CHECKPOINTS_DIR, f".tmp-step-{step}")
        if acc.is_main_process:
            ckpt.begin_checkpoint(cfg.output_dir, step)
        acc.wait_for_everyone()
        torch.save(ckpt.rng_state(), os.path.join(tmp, f"rng_state_{acc.process_index}.pt"))
        if callable(getattr(self.reward, "state_dict", None)):
            # A normalising reward's running statistics (per process): without them a resume is not exact.
            ckpt.write_json(os.path.join(tmp, f"reward_state_{acc.process_index}.json"), self.reward.state_dict())
        if acc.is_main_process:
            _save_adapter(self._policy, self.adapter_name, tmp)
            torch.save(self.optimizer.state_dict(), os.path.join(tmp, ckpt.OPTIMIZER_NAME))
            torch.save(self.lr_scheduler.state_dict(), os.path.join(tmp, ckpt.SCHEDULER_NAME))
            state = dataclasses.asdict(self.state)
            state.update(num_processes=acc.num_processes, adapter_name=self.adapter_name)
        acc.wait_for_everyone()
        final = ckpt.checkpoint_path(cfg.output_dir, step)
        if acc.is_main_process:
            # trainer_state.json last: its presence marks the folder complete.
            ckpt.write_json(os.path.join(tmp, ckpt.TRAINER_STATE_NAME), state)
            ckpt.commit_checkpoint(tmp, cfg.output_dir, step, cfg.save_total_limit)
        acc.wait_for_everyone()
        return final

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore adapter weights, optimizer, scheduler, RNG and state from a checkpoint folder."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        path = os.fspath(path)
        state_file = os.path.join(path, ckpt.TRAINER_STATE_NAME)
        if not os.path.isfile(state_file):
            raise FileNotFoundError(
                f"resume_from_checkpoint={path!r} is not a complete checkpoint (no {ckpt.TRAINER_STATE_NAME}); pass "
                "a folder under output_dir/checkpoints or resume=True for the newest one."
            )
        data = ckpt.read_json(state_file)
        weights = load_file(os.path.join(path, "adapter_model.safetensors"), device=str(self.accelerator.device))
        result = set_peft_model_state_dict(self._policy, weights, adapter_name=self.adapter_name)
        missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
        if missing:
            raise ValueError(f"checkpoint {path} does not match this model's adapter: unexpected keys {missing[:3]}")
        self.optimizer.load_state_dict(torch.load(os.path.join(path, ckpt.OPTIMIZER_NAME), weights_only=True))
        self.lr_scheduler.load_state_dict(torch.load(os.path.join(path, ckpt.SCHEDULER_NAME), weights_only=True))
        rng_file = os.path.join(path, f"rng_state_{self.accelerator.process_index}.pt")
        if os.path.isfile(rng_file):
            ckpt.set_rng_state(torch.load(rng_file, weights_only=True))
        reward_file = os.path.join(path, f"reward_state_{self.accelerator.process_index}.json")
        if os.path.isfile(reward_file) and callable(getattr(self.reward, "load_state_dict", None)):
            self.reward.load_state_dict(ckpt.read_json(reward_file))
        known = {f.name for f in dataclasses.fields(RLTrainerState)}
        self.state = RLTrainerState(**{k: v for k, v in data.items() if k in known and k != "interrupted"})
        logger.info("resumed from %s at step %d", path, self.state.step)

    def _save_samples(self, rollout: _Rollout, rewards: torch.Tensor, baseline, step: int) -> None:
        k = self.config.num_candidates
        tiles = list(zip(rollout.images[:k], rollout.negatives[:k], rewards[:k].tolist()))
        if rollout.baseline_images:
            tiles.append((rollout.baseline_images[0], "(no negative)", float(baseline[0])))
        grid = _grid(tiles, rollout.prompts[0])
        folder = os.path.join(self.config.output_dir, "samples")
        os.makedirs(folder, exist_ok=True)
        grid.save(os.path.join(folder, f"step-{step:06d}.png"))
        ckpt.write_json(
            os.path.join(folder, f"step-{step:06d}.json"),
            {
                "prompt": rollout.prompts[0],
                "negative_prompts": [t[1] for t in tiles],
                "rewards": [t[2] for t in tiles],
            },
        )
        import numpy as np

        for tracker in self.accelerator.trackers:
            try:
                if tracker.name == "tensorboard":
                    tracker.log_images({"samples": np.asarray(grid)[None]}, step=step, dataformats="NHWC")
                elif hasattr(tracker, "log_images"):
                    tracker.log_images({"samples": [grid]}, step=step)
            except Exception as e:  # a tracker that cannot take images must not stop training
                logger.debug("tracker %s did not take the sample grid: %s", tracker.name, e)

    # ------------------------------------------------------------------------------------------------ helpers
    def _reduce(self, values: list[float]) -> list[float]:
        if self.accelerator.num_processes == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(t, reduction="sum").tolist()

    def _any_process(self, flag: bool) -> bool:
        return self._reduce([float(flag)])[0] > 0


# ---------------------------------------------------------------------------------------------------- functions
def _now() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # so each phase's GPU work is charged to it
    return time.perf_counter()


def _as_floats(values, n: int, what: str) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().flatten().tolist()
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must return one float per image, got {type(values).__name__}: {e}") from e
    if len(out) != n:
        raise ValueError(f"{what} returned {len(out)} values for {n} images; it must return one per image.")
    return torch.tensor(out, dtype=torch.float32)


def _load_prompts(prompts) -> list[str]:
    if isinstance(prompts, str | os.PathLike) and os.path.isfile(prompts) and os.fspath(prompts).endswith(".txt"):
        with open(prompts, encoding="utf-8") as f:
            out = [line.strip() for line in f]
    elif isinstance(prompts, str | os.PathLike):
        from negopt.data import load_negative_prompts

        data = load_negative_prompts(os.fspath(prompts))
        split = data["train"] if "train" in data else data[next(iter(data))]
        out = list(split["prompt"])
    elif hasattr(prompts, "column_names"):
        if "prompt" not in prompts.column_names:
            raise ValueError(f"prompts is a dataset without a 'prompt' column (columns: {prompts.column_names}).")
        out = list(prompts["prompt"])
    elif isinstance(prompts, Sequence):
        out = list(prompts)
        bad = [p for p in out if not isinstance(p, str)]
        if bad:
            raise TypeError(f"prompts must be strings, got {type(bad[0]).__name__}: {bad[0]!r}.")
    else:
        raise TypeError(
            f"prompts must be a list of strings, a .txt file, a dataset or a Negative Prompts DB source, got "
            f"{type(prompts).__name__}."
        )
    out = [p.strip() for p in out if isinstance(p, str) and p.strip()]
    if not out:
        raise ValueError(f"prompts is empty ({prompts!r} holds no non-blank prompt).")
    return out


def _policy(generator, config: RLConfig):
    """(peft model, tokenizer, NegOptConfig, adapter name, has reference adapter) from what the user gave."""
    from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    from negopt.config import NegOptConfig

    owned = False
    if isinstance(generator, str | os.PathLike):
        from negopt.generator import NegOptGenerator

        generator = NegOptGenerator.from_pretrained(os.fspath(generator))
        owned = True
    for attr in ("model", "tokenizer"):
        if not hasattr(generator, attr):
            raise TypeError(
                f"generator must be a NegOptGenerator (with .model, .tokenizer, .config) or a folder / hub id, got "
                f"{type(generator).__name__} without .{attr}."
            )
    model, tokenizer = generator.model, generator.tokenizer
    gcfg = getattr(generator, "config", None)
    if not isinstance(gcfg, NegOptConfig):
        seq2seq = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
        gcfg = NegOptConfig(model_type="seq2seq" if seq2seq else "causal")
    # Never mutate what the caller handed in: LoRA injection and training happen on a copy.
    model = model if owned else copy.deepcopy(model)
    model.eval()  # dropout off: the update's log-probs must be those the samples were drawn from

    if isinstance(model, PeftModel):
        name = model.active_adapter
        if isinstance(name, list | tuple):
            name = name[0]
        peft_cfg = model.peft_config[name]
        if getattr(peft_cfg, "peft_type", None) is None or str(peft_cfg.peft_type.value) != "LORA":
            raise ValueError(f"the generator's peft adapter {name!r} is {peft_cfg.peft_type}; RL trains LoRA only.")
        # The starting policy (the KL reference) is this adapter as it is now: keep a frozen copy of it.
        model.add_adapter(REF_ADAPTER, copy.deepcopy(peft_cfg))
        set_peft_model_state_dict(model, get_peft_model_state_dict(model, adapter_name=name), adapter_name=REF_ADAPTER)
        model.set_adapter(name)
        for pname, p in model.named_parameters():
            p.requires_grad_("lora_" in pname and f".{name}." in pname)
        peft_cfg.inference_mode = False
        return model, tokenizer, gcfg, name, True

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        task_type="SEQ_2_SEQ_LM" if gcfg.model_type == "seq2seq" else "CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # LoRA's A matrices start random: the same seed, the same run
        model = get_peft_model(model, lora)
    model.eval()
    return model, tokenizer, gcfg, "default", False


def _save_adapter(model, name: str, folder: str) -> None:
    import shutil

    model.save_pretrained(folder, selected_adapters=[name], safe_serialization=True)
    if name != "default":  # peft writes any other adapter into a sub-folder named after it
        sub = os.path.join(folder, name)
        for f in os.listdir(sub):
            os.replace(os.path.join(sub, f), os.path.join(folder, f))
        shutil.rmtree(sub)


def _flat_config(cfg: RLConfig) -> dict[str, Any]:
    # Trackers (tensorboard's hparams) take scalars and strings only.
    import json

    out = {}
    for k, v in cfg.to_dict().items():
        out[k] = v if isinstance(v, int | float | str | bool) else json.dumps(v)
    return out


def _grid(tiles: list[tuple[Any, str, float]], prompt: str):
    """One row of images with their negatives and rewards written underneath."""
    import textwrap

    from PIL import Image, ImageDraw

    w = max(max(img.width for img, _, _ in tiles), 128)
    # Small images (tests, low-resolution runs) are scaled up so the grid stays readable.
    tiles = [
        (img if img.width >= w else img.resize((w, round(img.height * w / img.width)), Image.NEAREST), neg, r)
        for img, neg, r in tiles
    ]
    h = max(img.height for img, _, _ in tiles)
    chars = max(w // 7, 10)
    caption_h = 12 * 7
    canvas = Image.new("RGB", (w * len(tiles), h + caption_h + 14), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), textwrap.shorten(prompt, width=chars * len(tiles), placeholder="..."), fill="black")
    for i, (img, neg, r) in enumerate(tiles):
        canvas.paste(img.convert("RGB"), (i * w, 14))
        lines = [f"reward {r:.4g}"] + textwrap.wrap(neg or "(empty)", width=chars)[:5]
        draw.multiline_text((i * w + 4, 14 + h + 2), "\n".join(lines), fill="black", spacing=2)
    return canvas
