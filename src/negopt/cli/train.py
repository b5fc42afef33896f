"""``negopt train sft`` and ``negopt train rl``: flags from ``SFTConfig`` / ``RLConfig`` and :class:`RLRunArgs`.

Both trainers behave the same on the command line: ``--resume`` continues from the newest complete checkpoint,
``--resume-from-checkpoint PATH`` from that one (the older ``--resume PATH`` still works); checkpoints already in
``--output-dir`` without a resume flag are a one-line error; SIGTERM saves a checkpoint and exits 143.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from negopt.cli.args import (
    EXIT_SIGTERM,
    CommandConfig,
    UsageError,
    build,
    collect_settings,
    common_flags,
    flag_name,
    loading,
    setup_step,
)

__all__ = ["RLRunArgs", "sft_specs", "rl_specs", "add_train", "parse_reward_models"]


@dataclass
class RLRunArgs:
    """What ``negopt train rl`` loads besides its ``RLConfig``: the generator, the pipeline, the reward, the prompts.

    Args:
        generator: Generator folder or hub id to train (an SFT output, say); required.
        pipeline: Diffusers pipeline folder or hub id; required, and it must have a ``negative_prompt`` argument.
        reward: A reward term and its weight as ``NAME=WEIGHT`` (``aesthetic``, ``clip``, ``inception``,
            ``pickscore``, ``hpsv2``, ``imagereward``), e.g. ``aesthetic=1.0``; repeat for a weighted sum. In
            ``--config``, a list or a mapping.
        reward_fn: Your own reward callable as ``MODULE:NAME`` (a class is instantiated with no arguments), instead
            of ``reward``.
        reward_models: The models of the ``reward`` terms (repeatable): ``NAME=PATH`` gives a term its model (the
            aesthetic MLP head; the CLIP of clip and pickscore; inception's image classifier; the checkpoint file or
            folder of hpsv2 and imagereward), ``NAME.ARG=VALUE`` any
            constructor argument, e.g. ``aesthetic.clip_model=./clip-vit-large`` for the aesthetic predictor's CLIP,
            so that every model comes from a folder (offline). In ``--config``, a mapping
            ``{aesthetic: {clip_model: ..., head: ...}}`` also works.
        normalize_rewards: Standardise each reward term by its running mean and std before weighting.
        prompts: The training prompts: a ``.txt`` file (one prompt a line), a ``.jsonl`` / ``.json`` / ``.csv`` /
            ``.parquet`` file, a saved dataset folder or a hub dataset id (see :func:`negopt.data.load_prompts`), or
            in ``--config`` a list of prompts; required.
        prompt_split: Keep only the prompts that :func:`negopt.data.split_of` puts in this split; None: ``train``
            for a dataset (NegOpt's validation and test prompts stay out of RL), every prompt of a ``.txt`` file.
    """

    generator: str | None = None
    pipeline: str | None = None
    reward: list[str] | dict[str, float] | None = None
    reward_fn: str | None = None
    reward_models: list[str] | dict[str, Any] | None = None
    normalize_rewards: bool = False
    prompts: str | list[str] | None = None
    prompt_split: str | None = None


def _resume_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=argparse.SUPPRESS,
        metavar="CHECKPOINT",
        help="continue from the newest complete checkpoint in --output-dir (or from CHECKPOINT, the same as "
        "--resume-from-checkpoint CHECKPOINT)",
    )


def _resume_settings(args: argparse.Namespace, cls: type, settings: dict[str, Any]) -> None:
    """Map ``--resume`` / ``--resume PATH`` onto ``resume`` and (if the config has it) ``resume_from_checkpoint``."""
    value = getattr(args, "resume", None)
    if value is None:
        return
    fields = {f.name for f in dataclasses.fields(cls)}
    if value is True or "resume_from_checkpoint" not in fields:
        settings["resume"] = value
    else:
        settings["resume"] = True
        settings["resume_from_checkpoint"] = value


# ------------------------------------------------------------------------------------------------------- sft
def sft_specs() -> list[CommandConfig]:
    """The configs behind ``negopt train sft``'s flags."""
    from negopt.train import SFTConfig

    return [
        CommandConfig(
            SFTConfig,
            "SFTConfig",
            aliases={"--rouge": ("compute_rouge", True), "--no-progress": ("disable_tqdm", True)},
            config_only={"resume": "its flag, --resume [CHECKPOINT], is added by hand: it also takes a path"},
        )
    ]


def _run_sft(args: argparse.Namespace) -> Callable[[], int]:
    from negopt.train import SFTConfig, SFTTrainer

    given = vars(args)
    if "max_steps" in given and "num_epochs" in given:
        raise UsageError("pass --max-steps or --num-epochs, not both")
    (settings,) = collect_settings(args, sft_specs(), args.config)
    if "max_steps" in given:
        settings.pop("num_epochs", None)  # a step count on the command line wins over the file's epochs
    _resume_settings(args, SFTConfig, settings)
    if isinstance(settings.get("warmup_steps"), float) and settings["warmup_steps"] >= 1:
        settings["warmup_steps"] = int(settings["warmup_steps"])
    config = build(SFTConfig, settings)
    with setup_step(None, [config.model]):
        trainer = SFTTrainer(config)

    def work() -> int:
        from negopt.train.checkpointing import NonFiniteLossError

        main = trainer.is_main_process
        if main:
            if trainer.data_summary is not None:
                print(trainer.data_summary)
            kind = (
                "full fine-tune" if config.full_finetune else f"LoRA r={config.lora_r} on {config.lora_target_modules}"
            )
            print(
                f"model: {config.model} ({trainer.model_type}, {kind}); training on {trainer.train_rows:,} pairs, "
                f"validating on {trainer.eval_rows:,}",
                flush=True,
            )
        try:
            result = trainer.train()
        except FileExistsError as e:  # checkpoints of an earlier run, and no --resume: nothing was changed
            raise UsageError(str(e)) from e
        except NonFiniteLossError as e:
            print(f"negopt train sft: error: {e}", file=sys.stderr)
            return 1
        if result.interrupted:
            if main:
                print(
                    f"stopped by SIGTERM at step {result.global_step}; checkpoint: {result.last_checkpoint}. "
                    "Run the same command with --resume to finish.",
                    flush=True,
                )
            return EXIT_SIGTERM
        if not main:
            return 0
        losses = f"train loss {result.train_loss:.4f}" if result.train_loss is not None else "train loss n/a"
        if result.eval_loss is not None:
            losses += f", validation loss {result.eval_loss:.4f}"
        if result.eval_rouge_l is not None:
            losses += f", validation ROUGE-L {result.eval_rouge_l:.3f}"
        print(f"done: {result.global_step} steps in {_format_seconds(result.runtime_s)}; {losses}")
        print(f"saved the generator to {result.output_dir} (checkpoints in {config.checkpoints_dir})")
        print(f'use it: negopt generate --model {result.output_dir} "a photo of a cat"')
        return 0

    return work


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


# -------------------------------------------------------------------------------------------------------- rl
def rl_specs() -> list[CommandConfig]:
    """The configs behind ``negopt train rl``'s flags."""
    from negopt.train import RLConfig

    return [
        CommandConfig(
            RLRunArgs, "inputs", aliases={"--reward-model": "reward_models"}, repeatable=("reward", "reward_models")
        ),
        CommandConfig(
            RLConfig,
            "RLConfig",
            config_only={"resume": "its flag, --resume [CHECKPOINT], is added by hand: it also takes a path"},
            sub_flags={
                "--max-new-tokens": ("generation_kwargs", "max_new_tokens", int),
                "--temperature": ("generation_kwargs", "temperature", float),
                "--num-inference-steps": ("pipeline_kwargs", "num_inference_steps", int),
                "--height": ("pipeline_kwargs", "height", int),
                "--width": ("pipeline_kwargs", "width", int),
                "--guidance-scale": ("pipeline_kwargs", "guidance_scale", float),
            },
        ),
    ]


def parse_reward_models(value: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """``NAME=PATH`` / ``NAME.ARG=VALUE`` specs (or a ``--config`` mapping) -> name -> constructor arguments.

    ``NAME=PATH`` goes to the reward's model argument (:data:`negopt.rewards.registry.REWARDS`); ``NAME.ARG=VALUE``
    to its constructor argument ``ARG``, so ``aesthetic=HEAD`` and ``aesthetic.clip_model=CLIP`` give the aesthetic
    reward both of its models.

    Raises:
        UsageError: A spec is not ``NAME=VALUE`` / ``NAME.ARG=VALUE``, or names an unknown reward.
    """
    from negopt.rewards.registry import REWARDS

    if value is None:
        return {}
    items = value.items() if isinstance(value, dict) else [_split_spec(spec) for spec in value]
    models: dict[str, Any] = {}
    for key, model in items:
        name, _, argument = str(key).partition(".")
        if name not in REWARDS:
            raise UsageError(f"--reward-model {key}=...: unknown reward {name!r}; valid: {', '.join(REWARDS)}")
        entry = models.setdefault(name, {})
        if isinstance(model, dict):
            entry.update(model)
        else:
            entry[argument or REWARDS[name][2]] = model
    return models


def _split_spec(spec: str) -> tuple[str, str]:
    key, sep, value = spec.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise UsageError(
            f"--reward-model expects NAME=PATH_OR_ID or NAME.ARG=VALUE, e.g. clip=./clip-vit-large or "
            f"aesthetic.clip_model=./clip-vit-large, got {spec!r}"
        )
    return key.strip(), value.strip()


def _import_callable(spec: str):
    import importlib

    module, _, name = spec.partition(":")
    if not module or not name:
        raise UsageError(f"--reward-fn {spec!r}: expected MODULE:NAME, e.g. my_rewards:sharpness")
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"--reward-fn {spec!r}: cannot import it ({e})") from e
    obj = obj() if isinstance(obj, type) else obj
    if not callable(obj):
        raise UsageError(f"--reward-fn {spec!r} is not callable")
    return obj


def _run_rl(args: argparse.Namespace) -> Callable[[], int]:
    from negopt.data import load_prompts
    from negopt.train import RLConfig, RLTrainer

    run_settings, settings = collect_settings(args, rl_specs(), args.config)
    run = build(RLRunArgs, run_settings)
    _resume_settings(args, RLConfig, settings)
    missing = [k for k in ("generator", "pipeline", "prompts") if not getattr(run, k)]
    if not run.reward and not run.reward_fn:
        missing.insert(2, "reward")
    if not settings.get("output_dir"):
        missing.append("output_dir")
    if missing:
        raise UsageError(f"missing {', '.join(flag_name(k) for k in missing)} (on the command line or in --config)")
    if run.reward and run.reward_fn:
        raise UsageError("pass --reward NAME=WEIGHT or --reward-fn MODULE:NAME, not both")
    if run.reward_fn and (run.reward_models or run.normalize_rewards):
        raise UsageError("--reward-model and --normalize-rewards go with --reward, not --reward-fn")
    config = build(RLConfig, settings)
    listed = not isinstance(run.prompts, str) or run.prompts.lower().endswith(".txt")
    split = run.prompt_split or (None if listed else "train")
    with setup_step(f"--prompts {run.prompts!r}"):
        prompts = load_prompts(run.prompts, heldout_split=split, split=("train",))
    if run.reward_fn:
        reward = _import_callable(run.reward_fn)
    else:
        from negopt.rewards import build_reward

        models = parse_reward_models(run.reward_models)
        weights = [f"{k}={v}" for k, v in run.reward.items()] if isinstance(run.reward, dict) else run.reward
        with loading("--reward", ", ".join(weights)):
            reward = build_reward(weights, models=models, normalize=run.normalize_rewards)
    with setup_step(None, [run.generator, run.pipeline]):
        trainer = RLTrainer(config, generator=run.generator, pipeline=run.pipeline, reward=reward, prompts=prompts)

    def work() -> int:
        try:
            state = trainer.train()
        except FileExistsError as e:  # checkpoints of an earlier run, and no --resume: nothing was changed
            raise UsageError(str(e)) from e
        main = trainer.accelerator.is_main_process
        if state.interrupted:
            if main:
                print(
                    f"stopped by SIGTERM at step {state.step}; checkpoint saved. Run the same command with --resume "
                    "to finish.",
                    flush=True,
                )
            return EXIT_SIGTERM
        if main:
            print(f"trained {state.step} steps; generator saved to {config.output_dir}")
        return 0

    return work


# ----------------------------------------------------------------------------------------------------- parser
def add_train(sub: Any, full_sft: bool = True, full_rl: bool = True) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a negative-prompt generator (sft, rl)",
        description="Fine-tune a negative-prompt generator: 'sft' on prompt/negative pairs, 'rl' against image "
        "rewards. Several GPUs: run under `accelerate launch` or `torchrun`.",
    )
    train_sub = p.add_subparsers(dest="train_command", metavar="STAGE")
    train_sub.required = True
    sft = train_sub.add_parser(
        "sft",
        help="supervised fine-tuning on prompt -> negative-prompt pairs",
        description="Fine-tune a seq2seq or causal model (LoRA by default) on prompt -> negative-prompt pairs. "
        "--config FILE.yaml takes SFTConfig's keys; flags given on the command line override the file. The output "
        "folder loads with NegOptGenerator.from_pretrained and `negopt generate --model`.",
    )
    if full_sft:
        _resume_flag(sft)
        common_flags(sft, sft_specs(), {"--resume"})
        sft.set_defaults(func=_run_sft)
    rl = train_sub.add_parser(
        "rl",
        help="reinforcement learning against image rewards",
        description="Train a generator's LoRA adapter with policy gradients against an image reward. --config "
        "FILE.yaml takes RLConfig's keys plus generator, pipeline, reward, prompts; flags override it.",
    )
    if full_rl:
        _resume_flag(rl)
        common_flags(rl, rl_specs(), {"--resume"})
        rl.set_defaults(func=_run_rl)
