"""Settings and progress of the RL trainer: :class:`RLConfig` and :class:`RLTrainerState`."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from negopt.values import check_seed, coerce_fields

__all__ = [
    "KL_MODES",
    "LOSS_TYPES",
    "NEUTRAL_GENERATION_KWARGS",
    "SAMPLING_KEYS",
    "RLConfig",
    "RLTrainerState",
]

# Sampling must draw from the policy's own distribution (the log-probs of the update assume it), so only these
# generation settings are the user's to choose; top-k/top-p, repetition penalties and beams would bias the samples.
SAMPLING_KEYS = ("max_new_tokens", "temperature")
# Generation settings accepted at the value that leaves the distribution unchanged (and then ignored).
NEUTRAL_GENERATION_KWARGS: dict[str, Any] = {
    "do_sample": True,
    "num_beams": 1,
    "top_k": 0,
    "top_p": 1.0,
    "typical_p": 1.0,
    "min_p": 0.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "min_length": 0,
    "min_new_tokens": 0,
}
LOSS_TYPES = ("dr_grpo", "grpo")
KL_MODES = ("reward", "loss")


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
            multinomial from a clean generation config, whatever the model's own ``generation_config`` says: top-k,
            top-p, repetition penalties, forced tokens or a minimum length would sample from a distribution other
            than the one whose log-probs are optimised). Other keys are accepted only at their neutral value
            (``repetition_penalty=1.0``, ``no_repeat_ngram_size=0``, ``top_p=1.0``, ...), which changes nothing.
        pipeline_kwargs: Passed to every pipeline call, e.g. ``num_inference_steps``, ``height``, ``width``,
            ``guidance_scale``; not the arguments the trainer sets itself (those of
            :data:`negopt.eval.rendering.RESERVED_KWARGS`), as in ``negopt eval``.
        lora_r: LoRA rank of a new adapter (a generator that already has a LoRA adapter keeps its own).
        lora_alpha: LoRA scaling numerator of a new adapter. A new adapter has no dropout: the policy always runs
            in eval mode, so that the update's log-probs are those the samples were drawn from.
        lora_target_modules: peft ``target_modules``; ``"all-linear"`` is every linear layer but the output head.
        advantage: ``"leave_one_out"`` (reward minus the mean of the group's others), ``"group_norm"`` (reward
            minus the group mean, over the group's standard deviation; 0 for a group whose spread is rounding
            noise, below 1e-5 of its largest reward), or ``"no_negative"`` (reward minus the
            reward of the same prompt's image with no negative; implies ``baseline_image``).
        baseline_image: Also make each prompt's image with the negative omitted (same seed), exactly what the bare
            pipeline makes with no negative (not ``""``, which SDXL treats differently); its reward is logged as
            ``reward/no_negative`` and the difference as ``reward/gain``.
        kl_coef: Weight of the KL penalty to the starting policy (0 turns it off and skips its forward pass), in
            units of the reward's spread: rewards are divided by their running within-prompt standard deviation ``s``
            (logged as ``reward_scale``) before advantages and penalty, so ``kl_coef`` is the price of one nat of KL
            in those standard deviations, whatever the reward's units (see the RL guide, "The reward's units").
        kl_mode: Where the penalty acts. ``"reward"`` (default, the classic RLHF penalty): each sequence's reward
            ``r / s`` loses ``kl_coef * sum_t (log pi(y_t) - log pi_ref(y_t))`` (detached) before advantages are
            taken; its expected gradient (with ``loss_type="dr_grpo"``) is that of ``KL(pi || pi_ref)`` over whole
            sequences.
            ``"loss"`` (as GRPO): the k3 estimator ``exp(d) - d - 1`` (``d = log pi_ref - log pi`` per token) is
            added to the loss; its expected gradient is that of the reverse ``KL(pi_ref || pi)`` at each visited
            context. The logged ``kl`` is the penalty's own estimate, in nats per sequence.
        loss_type: How per-token losses are aggregated. ``"dr_grpo"`` (default): the sum over a sequence's tokens
            divided by the constant ``max_new_tokens`` (Dr. GRPO, no length bias: the expected gradient is that of
            ``E[A]``). ``"grpo"``: the mean over a sequence's tokens (GRPO), which weights each sequence's
            gradient by ``1 / length`` and so favours short negatives. Either way, the mean over the step's kept
            sequences.
        ppo_epochs: Passes of the update over each rollout; more than 1 makes the clipped ratio matter.
        clip_range: PPO clipping of the probability ratio, ``[1 - clip_range, 1 + clip_range]``.
        max_grad_norm: Gradient-norm clipping (None: off).
        weight_decay: AdamW weight decay.
        warmup_steps: Linear learning-rate warm-up, then constant.
        image_batch_size: Images per pipeline call (None: all images of a step in one call).
        postprocess: Clean the sampled negatives as ``NegOptGenerator`` does at inference (drop an echo of the
            prompt, repeated terms, stray commas) before they reach the pipeline and the reward.
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
        negative_guidance: How the sampled negatives act on the images: ``"auto"`` (classifier-free guidance where
            ``pipeline_kwargs`` leave it on, Normalized Attention Guidance where it is off and the pipeline is SD,
            SDXL, Flux or SD3: distilled pipelines can be trained for), ``"cfg"`` or ``"nag"``; see
            :mod:`negopt.pipeline.guidance`.
        nag_scale: NAG's scale (>= 1); unset: the pipeline family's default (from the NAG reference code).
        nag_tau: NAG's normalisation threshold (>= 1); unset: the family's default.
        nag_alpha: NAG's blend weight, in [0, 1]; unset: the family's default.
        nag_end: The fraction of the steps NAG guides, in (0, 1]; unset: the family's default.

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
    lora_target_modules: str | list[str] = "all-linear"
    advantage: Literal["leave_one_out", "group_norm", "no_negative"] = "leave_one_out"
    baseline_image: bool = False
    kl_coef: float = 0.05
    kl_mode: Literal["reward", "loss"] = "reward"
    loss_type: Literal["dr_grpo", "grpo"] = "dr_grpo"
    ppo_epochs: int = 1
    clip_range: float = 0.2
    max_grad_norm: float | None = 1.0
    weight_decay: float = 0.0
    warmup_steps: int = 0
    image_batch_size: int | None = None
    postprocess: bool = True
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
    negative_guidance: Literal["auto", "cfg", "nag"] = "auto"
    nag_scale: float | None = None
    nag_tau: float | None = None
    nag_alpha: float | None = None
    nag_end: float | None = None

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
        check_seed("seed", self.seed)
        for name in ("image_batch_size", "save_total_limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}.")
        if not (isinstance(self.learning_rate, int | float) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}.")
        if not (isinstance(self.lora_alpha, int | float) and self.lora_alpha > 0):
            raise ValueError(f"lora_alpha must be > 0, got {self.lora_alpha!r}.")
        if self.kl_mode not in KL_MODES:
            raise ValueError(f"kl_mode must be one of {list(KL_MODES)}, got {self.kl_mode!r}.")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {list(LOSS_TYPES)}, got {self.loss_type!r}.")
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
        bad = {
            k: v
            for k, v in self.generation_kwargs.items()
            if k not in SAMPLING_KEYS
            and not (k in NEUTRAL_GENERATION_KWARGS and _same(v, NEUTRAL_GENERATION_KWARGS[k]))
        }
        if bad:
            raise ValueError(
                f"generation_kwargs may only set {list(SAMPLING_KEYS)} (other keys only at their neutral value, e.g. "
                f"repetition_penalty=1.0), got {bad}: RL samples from the policy's own distribution (do_sample=True, "
                "top_k=0, top_p=1.0), which the update's log-probs assume. Remove them."
            )
        kept = {k: v for k, v in self.generation_kwargs.items() if k in SAMPLING_KEYS}
        self.generation_kwargs = {"max_new_tokens": 64, "temperature": 1.0, **kept}
        mnt, temp = self.generation_kwargs["max_new_tokens"], self.generation_kwargs["temperature"]
        if isinstance(mnt, bool) or not isinstance(mnt, int) or mnt < 1:
            raise ValueError(f"generation_kwargs['max_new_tokens'] must be an integer >= 1, got {mnt!r}.")
        if not (isinstance(temp, int | float) and temp > 0):
            raise ValueError(f"generation_kwargs['temperature'] must be > 0, got {temp!r}.")
        if not isinstance(self.pipeline_kwargs, dict):
            raise TypeError(f"pipeline_kwargs must be a dict, got {type(self.pipeline_kwargs).__name__}.")
        from negopt.eval.rendering import check_pipeline_kwargs
        from negopt.pipeline.guidance.modes import NAG_KNOBS, check_nag_knobs, check_negative_guidance

        check_negative_guidance(self.negative_guidance)
        check_nag_knobs(**{k: getattr(self, k) for k in NAG_KNOBS})
        # The same rule as eval's: the trainer sets prompt, negatives, seeds and output type itself; guidance <= 1
        # would leave the images (so the reward) blind to the negative prompt, unless NAG acts there (checked when
        # the pipeline is loaded).
        self.pipeline_kwargs = check_pipeline_kwargs(
            self.pipeline_kwargs, stacklevel=3, negative_guidance=self.negative_guidance
        )
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be 'no', 'fp16' or 'bf16', got {self.mixed_precision!r}.")
        if self.pipeline_dtype not in (None, "float16", "bfloat16", "float32"):
            raise ValueError(
                f"pipeline_dtype must be None, 'float16', 'bfloat16' or 'float32', got {self.pipeline_dtype!r}."
            )
        if isinstance(self.report_to, str):
            self.report_to = self.report_to.strip() or "none"

    @property
    def guidance(self) -> dict[str, Any]:
        """``negative_guidance`` and the NAG knobs, as :func:`negopt.eval.rendering.render` takes them."""
        from negopt.pipeline.guidance.modes import NAG_KNOBS

        return {"negative_guidance": self.negative_guidance, **{k: getattr(self, k) for k in NAG_KNOBS}}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RLConfig:
        """Build a config from a mapping (a YAML file, say): values typed by field (:mod:`negopt.values`, so
        ``learning_rate: "1e-4"`` is a float and ``cpu: "no"`` is False); unknown keys are an error listing the valid
        ones."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown RLConfig keys {unknown}; valid keys: {', '.join(known)}.")
        return cls(**coerce_fields(cls, dict(data)))


@dataclass
class RLTrainerState:
    """Progress of a run; saved in every checkpoint's ``trainer_state.json``."""

    step: int = 0
    reward_mean_ema: float | None = None
    # Running averages of the reward's within-group variance and of its square (objective.reward_scale).
    reward_var_ema: float | None = None
    reward_sq_ema: float | None = None
    rewards_seen: int = 0
    rewards_dropped: int = 0
    groups_skipped: int = 0
    interrupted: bool = False


def _same(value: Any, neutral: Any) -> bool:
    if isinstance(neutral, bool) or isinstance(value, bool):
        return value is neutral
    return isinstance(value, int | float) and float(value) == float(neutral)
