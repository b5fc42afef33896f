"""The ``negopt`` command.

``negopt generate``, ``negopt env``, ``negopt train sft|rl``, ``negopt eval``. Usage errors (bad arguments, a model
that cannot be found, unreadable files) exit with status 2 and a one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from negopt import __version__

EXIT_USAGE = 2


class UsageError(Exception):
    """A problem with what the user asked for: reported in one line, exit status 2."""


# --------------------------------------------------------------------------------------------------- generate
def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="write negative prompts for prompts",
        description="Write a negative prompt for each prompt. Prompts come from the arguments, from -f FILE "
        "(one a line), or from standard input. Without --model the built-in generator is used (offline, no weights).",
    )
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="prompts to write negatives for")
    p.add_argument("-f", "--file", help="read prompts from FILE, one a line ('-' for standard input)")
    p.add_argument("--model", help="a generator folder or hub id (default: the built-in generator)")
    p.add_argument("--revision", help="hub revision of --model")
    p.add_argument("--device", help="device for --model, e.g. cuda or cpu")
    p.add_argument("--num-candidates", type=int, default=1, metavar="K", help="negatives per prompt (default 1)")
    p.add_argument("--seed", type=int, help="seed for sampled generation")
    p.add_argument("--max-new-tokens", type=int, help="generation length limit for --model")
    p.add_argument("--batch-size", type=int, default=32, help="prompts per forward pass for --model")
    p.add_argument("--json", action="store_true", help="print one JSON object a line: prompt, negative_prompt")
    p.set_defaults(func=_run_generate)


def _read_prompts(args: argparse.Namespace) -> list[str]:
    prompts = list(args.prompts)
    if args.file:
        try:
            if args.file == "-":
                text = sys.stdin.read()
            else:
                with open(args.file, encoding="utf-8") as f:
                    text = f.read()
        except OSError as e:
            raise UsageError(f"cannot read --file {args.file!r}: {e.strerror or e}") from e
        prompts += [line.strip() for line in text.splitlines() if line.strip()]
    elif not prompts and not sys.stdin.isatty():
        prompts = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
    if not prompts:
        raise UsageError("no prompts: pass them as arguments, with -f FILE, or on standard input")
    return prompts


def _run_generate(args: argparse.Namespace) -> int:
    if args.num_candidates < 1:
        raise UsageError(f"--num-candidates must be at least 1, got {args.num_candidates}")
    prompts = _read_prompts(args)
    kwargs: dict = {"num_candidates": args.num_candidates}
    if args.seed is not None:
        kwargs["seed"] = args.seed
    if args.model:
        from negopt.generator import NegOptGenerator

        gen = NegOptGenerator.from_pretrained(args.model, revision=args.revision, device=args.device)
        kwargs["batch_size"] = args.batch_size
        if args.max_new_tokens is not None:
            kwargs["max_new_tokens"] = args.max_new_tokens
    else:
        from negopt.builtin import BuiltinGenerator

        gen = BuiltinGenerator()
    negatives = gen(prompts, **kwargs)
    for prompt, negative in zip(prompts, negatives):
        if args.json:
            print(json.dumps({"prompt": prompt, "negative_prompt": negative}, ensure_ascii=False))
        elif isinstance(negative, list):
            print("\n".join(negative))
        else:
            print(negative)
    return 0


# -------------------------------------------------------------------------------------------------------- env
def _add_env(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="print versions and the device, for bug reports")
    p.set_defaults(func=_run_env)


def _run_env(args: argparse.Namespace) -> int:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    print(f"negopt: {__version__}")
    print(f"python: {platform.python_version()} ({platform.platform()})")
    for name in ("torch", "transformers", "diffusers", "peft", "accelerate", "huggingface_hub", "safetensors"):
        try:
            print(f"{name}: {version(name)}")
        except PackageNotFoundError:
            print(f"{name}: not installed")
    import torch

    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} device(s))"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "mps"
    else:
        device = f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {device}")
    return 0


# ------------------------------------------------------------------------------------------------------- eval
_EVAL_METRICS = ("aesthetic", "clip", "inception", "pickscore")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="compare negative prompts on a pipeline: report, image grid, bar chart",
        description="Render each prompt with no negative prompt, with the prompts' own negatives (if any), with the "
        "built-in generator and with each --generator, using the same seed per prompt; score the images (aesthetics, "
        "CLIP score, Inception Score by default) and write report.json, report.md, grid.png and metrics.png to "
        "--output-dir. Rerunning with the same --output-dir reuses the images already rendered.",
    )
    p.add_argument("--pipeline", required=True, help="a diffusers pipeline folder or hub id")
    p.add_argument("--revision", help="hub revision of --pipeline")
    p.add_argument(
        "--generator",
        action="append",
        default=[],
        metavar="NAME=PATH_OR_ID",
        help="a generator to evaluate, named NAME in the report (repeatable)",
    )
    p.add_argument("--no-builtin", action="store_true", help="leave out the built-in generator")
    p.add_argument("--no-none", action="store_true", help="leave out the no-negative-prompt baseline")
    p.add_argument(
        "--prompts",
        required=True,
        metavar="FILE_OR_DATASET",
        help="a .txt (one prompt a line), .jsonl/.json or .csv file (prompt, negative_prompt), a saved dataset "
        "folder, or a hub dataset id",
    )
    p.add_argument("--split", help="dataset split (default: test if there is one, else the first split)")
    p.add_argument("--prompt-column", default="prompt", help="column of the prompts (default prompt)")
    p.add_argument("--negative-column", default="negative_prompt", help="column of their negatives")
    p.add_argument("--num-prompts", type=int, metavar="N", help="evaluate the first N prompts")
    p.add_argument("--output-dir", required=True, help="where the images, report and figures go")
    p.add_argument("--seed", type=int, default=0, help="prompt i uses seed + i (default 0)")
    p.add_argument("--steps", type=int, help="num_inference_steps of the pipeline")
    p.add_argument("--guidance-scale", type=float, help="guidance_scale of the pipeline")
    p.add_argument("--height", type=int, help="image height")
    p.add_argument("--width", type=int, help="image width")
    p.add_argument("--batch-size", type=int, default=4, help="prompts per pipeline call (default 4)")
    p.add_argument("--device", help="device for the pipeline, generators and metrics, e.g. cuda")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), help="the pipeline's dtype")
    p.add_argument(
        "--metric",
        action="append",
        choices=_EVAL_METRICS,
        help="a metric to report (repeatable; default aesthetic, clip, inception)",
    )
    p.add_argument("--clip-model", help="CLIP folder or hub id for the CLIP score")
    p.add_argument("--aesthetic-clip-model", help="CLIP folder or hub id for the aesthetic predictor")
    p.add_argument("--aesthetic-head", help="the aesthetic predictor's MLP head: safetensors file, folder or hub id")
    p.add_argument(
        "--inception-model",
        help="image classifier folder or hub id for the Inception Score (default torch-fidelity's Inception v3)",
    )
    p.add_argument("--pickscore-model", help="PickScore model folder or hub id")
    p.add_argument("--pickscore-processor", help="PickScore processor folder or hub id")
    p.add_argument("--local-files-only", action="store_true", help="load every model from folders or the cache")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--grid-rows", type=int, default=8, help="prompts shown in grid.png (default 8)")
    p.set_defaults(func=_run_eval)


def _eval_prompts(args: argparse.Namespace) -> list[dict]:
    """Read --prompts into a list of {'prompt', 'negative_prompt'}."""
    import csv
    import os

    source, pcol, ncol = args.prompts, args.prompt_column, args.negative_column

    def row(item, where: str) -> dict:
        if isinstance(item, str):
            return {"prompt": item}
        if not isinstance(item, dict) or pcol not in item:
            raise UsageError(f"{where}: expected a string or an object with a {pcol!r} key, got {item!r:.80}")
        return {"prompt": item[pcol], "negative_prompt": item.get(ncol) or None}

    if os.path.isfile(source):
        try:
            with open(source, encoding="utf-8") as f:
                if source.endswith(".jsonl"):
                    items = [json.loads(line) for line in f if line.strip()]
                elif source.endswith(".json"):
                    items = json.load(f)
                    if not isinstance(items, list):
                        raise UsageError(f"--prompts {source!r}: expected a JSON list")
                elif source.endswith(".csv"):
                    items = list(csv.DictReader(f))
                else:
                    items = [line.strip() for line in f if line.strip()]
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read --prompts {source!r}: {e}") from e
        rows = [row(item, f"--prompts {source!r} item {i}") for i, item in enumerate(items)]
    elif source.endswith((".txt", ".json", ".jsonl", ".csv")):
        raise UsageError(f"--prompts {source!r}: no such file")
    else:
        try:
            import datasets
        except ImportError as e:
            raise ImportError('reading prompts from a dataset needs datasets: pip install "negopt[train]"') from e
        try:
            if os.path.isdir(source) and os.path.isfile(os.path.join(source, "dataset_dict.json")):
                data = datasets.load_from_disk(source)
            elif os.path.isdir(source) and os.path.isfile(os.path.join(source, "dataset_info.json")):
                data = datasets.load_from_disk(source)
            else:
                data = datasets.load_dataset(source)
        except Exception as e:  # datasets raises many kinds; all mean the same thing to the user
            raise UsageError(f"cannot load --prompts {source!r} as a file or dataset: {e}") from e
        if isinstance(data, datasets.DatasetDict):
            split = args.split or ("test" if "test" in data else next(iter(data)))
            if split not in data:
                raise UsageError(f"--split {split!r} is not in {source!r} (splits: {', '.join(data)})")
            data = data[split]
        if pcol not in data.column_names:
            raise UsageError(
                f"--prompt-column {pcol!r} is not a column of {source!r} ({', '.join(data.column_names)})"
            )
        if args.num_prompts is not None:
            data = data.select(range(min(args.num_prompts, len(data))))
        negatives = data[ncol] if ncol in data.column_names else [None] * len(data)
        rows = [{"prompt": p, "negative_prompt": n or None} for p, n in zip(data[pcol], negatives)]
    if args.num_prompts is not None:
        rows = rows[: args.num_prompts]
    if not rows:
        raise UsageError(f"no prompts in --prompts {source!r}")
    return rows


def _run_eval(args: argparse.Namespace) -> int:
    if args.num_prompts is not None and args.num_prompts < 1:
        raise UsageError(f"--num-prompts must be at least 1, got {args.num_prompts}")
    generators: dict = {}
    for spec in args.generator:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--generator takes NAME=PATH_OR_ID, got {spec!r}")
        if name in generators or (name == "builtin" and not args.no_builtin):
            raise UsageError(f"--generator name {name!r} is used twice")
        generators[name] = path
    prompts = _eval_prompts(args)

    import torch
    from diffusers import DiffusionPipeline

    from negopt.eval import default_metrics, evaluate

    dtype = getattr(torch, args.dtype) if args.dtype else None
    try:
        pipe = DiffusionPipeline.from_pretrained(
            args.pipeline,
            revision=args.revision,
            torch_dtype=dtype,
            use_safetensors=True,
            local_files_only=args.local_files_only,
        )
    except OSError as e:
        raise UsageError(f"cannot load --pipeline {args.pipeline!r}: {e}") from e
    if args.device:
        pipe.to(args.device)
    loaded: dict = {}
    if not args.no_builtin:
        from negopt.builtin import BuiltinGenerator

        loaded["builtin"] = BuiltinGenerator()
    if generators:
        from negopt.generator import NegOptGenerator

        for name, path in generators.items():
            loaded[name] = NegOptGenerator.from_pretrained(
                path, device=args.device, local_files_only=args.local_files_only
            )
    metrics = default_metrics(
        tuple(dict.fromkeys(args.metric or ("aesthetic", "clip", "inception"))),
        clip_model=args.clip_model,
        aesthetic_clip_model=args.aesthetic_clip_model,
        aesthetic_head=args.aesthetic_head,
        inception_model=args.inception_model,
        pickscore_model=args.pickscore_model,
        pickscore_processor=args.pickscore_processor,
        device=args.device,
        local_files_only=args.local_files_only,
    )
    pipeline_kwargs = {
        key: value
        for key, value in (
            ("num_inference_steps", args.steps),
            ("guidance_scale", args.guidance_scale),
            ("height", args.height),
            ("width", args.width),
        )
        if value is not None
    }
    report = evaluate(
        pipe,
        prompts,
        generators=loaded,
        metrics=metrics,
        output_dir=args.output_dir,
        seed=args.seed,
        include_none=not args.no_none,
        pipeline_kwargs=pipeline_kwargs,
        batch_size=args.batch_size,
        num_bootstrap=args.bootstrap,
        grid_rows=args.grid_rows,
    )
    from negopt.eval import report_markdown

    print(report_markdown(report), end="")
    print()
    for path in report["files"].values():
        print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------------------------------- train rl
# RL options on the command line: (flag, RLConfig key, type, help). Flags override the same keys of --config.
_RL_FLAGS: list[tuple[str, str, type, str]] = [
    ("--max-steps", "max_steps", int, "RL steps"),
    ("--learning-rate", "learning_rate", float, "AdamW learning rate"),
    ("--num-candidates", "num_candidates", int, "negatives sampled per prompt (k)"),
    ("--batch-size", "batch_size", int, "prompts per step, over all processes"),
    ("--seed", "seed", int, "seed of sampling, prompt order and image noise"),
    ("--lora-r", "lora_r", int, "LoRA rank (new adapters)"),
    ("--lora-alpha", "lora_alpha", float, "LoRA alpha (new adapters)"),
    ("--advantage", "advantage", str, "leave_one_out, group_norm or no_negative"),
    ("--kl-coef", "kl_coef", float, "KL penalty to the starting policy"),
    ("--ppo-epochs", "ppo_epochs", int, "update passes per rollout"),
    ("--clip-range", "clip_range", float, "PPO ratio clipping"),
    ("--image-batch-size", "image_batch_size", int, "images per pipeline call"),
    ("--save-steps", "save_steps", int, "checkpoint every N steps"),
    ("--save-total-limit", "save_total_limit", int, "checkpoints kept"),
    ("--logging-steps", "logging_steps", int, "log every N steps"),
    ("--sample-steps", "sample_steps", int, "save a sample grid every N steps (0: never)"),
    ("--report-to", "report_to", str, "none, tensorboard, wandb or all"),
    ("--resume-from-checkpoint", "resume_from_checkpoint", str, "a checkpoint folder to continue from"),
    ("--mixed-precision", "mixed_precision", str, "no, fp16 or bf16"),
    ("--pipeline-dtype", "pipeline_dtype", str, "dtype of a pipeline loaded by id: float16, bfloat16, float32"),
]
# Sampling and pipeline settings, which live in RLConfig's generation_kwargs / pipeline_kwargs.
_RL_GEN_FLAGS = [("--max-new-tokens", "max_new_tokens", int), ("--temperature", "temperature", float)]
_RL_PIPE_FLAGS = [
    ("--num-inference-steps", "num_inference_steps", int),
    ("--height", "height", int),
    ("--width", "width", int),
    ("--guidance-scale", "guidance_scale", float),
]
_RL_RUN_KEYS = ("generator", "pipeline", "reward", "reward_fn", "reward_models", "normalize_rewards", "prompts")


def _add_train_rl(train_sub: argparse._SubParsersAction) -> None:
    p = train_sub.add_parser(
        "rl",
        help="reinforcement learning against image rewards",
        description="Train a generator's LoRA adapter with policy gradients against an image reward. Settings come "
        "from --config FILE.yaml (RLConfig keys plus generator, pipeline, reward, prompts) and the flags, which "
        "override it.",
    )
    p.add_argument("--config", help="a YAML file of RLConfig keys plus generator, pipeline, reward, prompts")
    p.add_argument("--generator", help="generator folder or hub id (an SFT output, say)")
    p.add_argument("--pipeline", help="diffusers pipeline folder or hub id")
    p.add_argument(
        "--reward",
        action="append",
        metavar="NAME=WEIGHT",
        help="a reward term and its weight, e.g. aesthetic=1.0; repeat for a weighted sum "
        "(aesthetic, clip, inception, pickscore)",
    )
    p.add_argument(
        "--reward-fn",
        dest="reward_fn",
        metavar="MODULE:NAME",
        help="your own reward callable (or a class to instantiate with no arguments) instead of --reward",
    )
    p.add_argument(
        "--reward-model",
        dest="reward_models",
        action="append",
        metavar="NAME=PATH_OR_ID",
        help="the model of a --reward term, a folder or hub id (aesthetic: its MLP head; clip, pickscore: the CLIP "
        "model; inception: an image classifier); repeatable. In --config, reward_models maps a name to a path or to "
        "constructor arguments, e.g. {aesthetic: {clip_model: ..., head: ...}}",
    )
    p.add_argument(
        "--normalize-rewards",
        dest="normalize_rewards",
        action="store_true",
        default=None,
        help="standardise each reward term by its running mean and std before weighting (terms on different scales)",
    )
    p.add_argument("--prompts", help="a .txt file (one prompt a line) or a Negative Prompts DB source")
    p.add_argument("--output-dir", dest="output_dir", help="where the trained generator and checkpoints go")
    for flag, key, typ, text in _RL_FLAGS:
        p.add_argument(flag, dest=key, type=typ, help=text)
    for flag, key, typ in _RL_GEN_FLAGS:
        p.add_argument(flag, dest=f"gen.{key}", type=typ, metavar=key.upper(), help=f"sampling {key}")
    for flag, key, typ in _RL_PIPE_FLAGS:
        p.add_argument(flag, dest=f"pipe.{key}", type=typ, metavar=key.upper(), help=f"pipeline {key}")
    p.add_argument(
        "--baseline-image",
        dest="baseline_image",
        action="store_true",
        default=None,
        help="also make each prompt's image with no negative and log the gain",
    )
    p.add_argument(
        "--resume",
        dest="resume",
        action="store_true",
        default=None,
        help="continue from the newest checkpoint in --output-dir",
    )
    p.add_argument("--cpu", dest="cpu", action="store_true", default=None, help="train on the CPU")
    p.set_defaults(func=_run_train_rl)


def _rl_settings(args: argparse.Namespace) -> dict:
    """--config merged with the flags; unknown keys are an error that lists the valid ones."""
    import dataclasses

    from negopt.train.rl import RLConfig

    valid = [f.name for f in dataclasses.fields(RLConfig)] + list(_RL_RUN_KEYS)
    settings: dict = {}
    if args.config:
        settings = _read_yaml_config(args.config, valid)
    for key, value in vars(args).items():
        if value is None or key in ("config", "func", "command", "train_command"):
            continue
        if key.startswith(("gen.", "pipe.")):
            group = "generation_kwargs" if key.startswith("gen.") else "pipeline_kwargs"
            settings[group] = {**(settings.get(group) or {}), key.split(".", 1)[1]: value}
        else:
            settings[key] = value
    missing = [k for k in ("generator", "pipeline", "prompts", "output_dir") if not settings.get(k)]
    if not settings.get("reward") and not settings.get("reward_fn"):
        missing.insert(2, "reward")
    if missing:
        flags = ", ".join("--" + k.replace("_", "-") for k in missing)
        raise UsageError(f"missing {flags} (on the command line or in --config)")
    return settings


def _parse_reward_weights(spec) -> dict[str, float]:
    items = spec.items() if isinstance(spec, dict) else [s.split("=", 1) if "=" in s else (s, "") for s in spec]
    weights = {}
    for name, weight in items:
        try:
            weights[str(name).strip()] = float(weight)
        except (TypeError, ValueError):
            raise UsageError(
                f"--reward {name}={weight}: expected NAME=WEIGHT with a number, e.g. aesthetic=1.0"
            ) from None
    return weights


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


def _run_train_rl(args: argparse.Namespace) -> int:
    from negopt.train.rl import RLConfig, RLTrainer

    settings = _rl_settings(args)
    run = {k: settings.pop(k, None) for k in _RL_RUN_KEYS}
    config = RLConfig(**settings)
    if run["reward"] and run["reward_fn"]:
        raise UsageError("pass --reward NAME=WEIGHT or --reward-fn MODULE:NAME, not both")
    if run["reward_fn"] and (run["reward_models"] or run["normalize_rewards"]):
        raise UsageError("--reward-model and --normalize-rewards go with --reward, not --reward-fn")
    if run["reward_fn"]:
        reward = _import_callable(run["reward_fn"])
    else:
        from negopt.rewards import build_reward

        spec = run["reward"]
        models = run["reward_models"] or {}
        if not isinstance(models, dict):  # NAME=PATH flags
            pairs = [m.split("=", 1) for m in ([models] if isinstance(models, str) else models)]
            if any(len(pair) != 2 or not all(x.strip() for x in pair) for pair in pairs):
                raise UsageError(f"--reward-model expects NAME=PATH_OR_ID, e.g. clip=./clip-vit-large, got {models!r}")
            models = {name.strip(): path.strip() for name, path in pairs}
        reward = build_reward(
            _parse_reward_weights([spec] if isinstance(spec, str) else spec),
            models=models,
            normalize=bool(run["normalize_rewards"]),
        )
    trainer = RLTrainer(
        config, generator=run["generator"], pipeline=run["pipeline"], reward=reward, prompts=run["prompts"]
    )
    state = trainer.train()
    if state.interrupted:
        print(f"stopped at step {state.step}; checkpoint saved. Resume with --resume --output-dir {config.output_dir}")
    elif trainer.accelerator.is_main_process:
        print(f"trained {state.step} steps; generator saved to {config.output_dir}")
    return 0


# ------------------------------------------------------------------------------------------------ train, sft
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a negative-prompt generator (sft, rl)",
        description="Fine-tune a negative-prompt generator: 'sft' on prompt/negative pairs, 'rl' against image "
        "rewards. Several GPUs: run under `accelerate launch` or `torchrun`.",
    )
    train_sub = p.add_subparsers(dest="train_command", metavar="STAGE")
    train_sub.required = True
    _add_train_sft(train_sub)
    _add_train_rl(train_sub)


def _add_train_sft(train_sub: argparse._SubParsersAction) -> None:
    p = train_sub.add_parser(
        "sft",
        help="supervised fine-tuning on prompt -> negative-prompt pairs",
        description="Fine-tune a seq2seq or causal model (LoRA by default) on prompt -> negative-prompt pairs. "
        "--config FILE.yaml takes the same keys as the flags (as in SFTConfig: learning_rate or learning-rate); "
        "flags given on the command line override the file. The output folder loads with "
        "NegOptGenerator.from_pretrained and `negopt generate --model`.",
    )
    S = argparse.SUPPRESS  # only flags actually given override the config file and SFTConfig's defaults
    p.add_argument("--config", dest="config_file", metavar="FILE.yaml", help="a YAML file of SFTConfig keys")
    g = p.add_argument_group("model")
    g.add_argument("--model", default=S, help="base model: hub id or folder (default google-t5/t5-small)")
    g.add_argument("--model-type", default=S, choices=["seq2seq", "causal"], help="default: from the model")
    g.add_argument("--revision", default=S, help="hub revision of --model")
    g.add_argument("--prompt-template", default=S, help="model input, with {prompt} (default: {prompt} for seq2seq)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=S, help="hub id or .parquet/.csv/.jsonl file (default mikeogezi/negopt_full)")
    g.add_argument("--dataset-revision", default=S, help="hub revision of --dataset")
    g.add_argument("--min-likes", type=int, default=S, help="keep rows with at least this many likes")
    g.add_argument("--strip-weights", action=argparse.BooleanOptionalAction, default=S,
                   help="remove A1111 (term:1.3) emphasis from the data (default: on)")  # fmt: skip
    g.add_argument("--max-prompt-length", type=int, default=S, help="drop longer prompts, in tokens (default 256)")
    g.add_argument("--max-negative-length", type=int, default=S, help="drop longer negatives, in tokens (default 128)")
    g.add_argument("--validation-size", type=float, default=S, help="fraction of prompts for validation (0.05)")
    g.add_argument("--test-size", type=float, default=S, help="fraction of prompts held out for testing (0.05)")
    g.add_argument("--max-eval-samples", type=int, default=S, help="validation rows used (default 1000)")
    g = p.add_argument_group("training")
    g.add_argument("--output-dir", default=S, help="where the generator is saved (default negopt-sft)")
    steps = g.add_mutually_exclusive_group()
    steps.add_argument("--max-steps", type=int, default=S, metavar="N", help="number of updates")
    steps.add_argument("--num-epochs", type=float, default=S, metavar="N", help="passes over the data (default 3)")
    g.add_argument("--learning-rate", type=float, default=S, help="peak learning rate (default 3e-4)")
    g.add_argument("--batch-size", type=int, default=S, help="examples per device and step (default 16)")
    g.add_argument("--gradient-accumulation-steps", type=int, default=S, help="steps per update (default 1)")
    g.add_argument("--warmup-steps", type=float, default=S, help="warm-up updates, or a fraction below 1")
    g.add_argument("--lora-r", type=int, default=S, help="LoRA rank (default 16)")
    g.add_argument("--lora-alpha", type=int, default=S, help="LoRA alpha (default 32)")
    g.add_argument("--lora-dropout", type=float, default=S, help="LoRA dropout (default 0.05)")
    g.add_argument("--lora-target-modules", default=S, help="'all-linear' (default) or names, e.g. q,v")
    g.add_argument("--full-finetune", action="store_true", default=S, help="train all weights, no LoRA")
    g.add_argument("--merge", action="store_true", default=S, help="save the adapter merged into the base model")
    g.add_argument("--seed", type=int, default=S, help="seed of the adapter init, dropout and data order (42)")
    g.add_argument("--logging-steps", type=int, default=S, help="log every N updates (default 10)")
    g.add_argument("--save-steps", type=int, default=S, help="checkpoint every N updates (default 500)")
    g.add_argument("--save-total-limit", type=int, default=S, help="checkpoints kept (default 3)")
    g.add_argument("--eval-steps", type=int, default=S, help="validate every N updates (default: at checkpoints)")
    g.add_argument("--rouge", dest="compute_rouge", action="store_true", default=S,
                   help="also report validation ROUGE-L (generates; seq2seq only)")  # fmt: skip
    g.add_argument("--bf16", action="store_true", default=S, help="bfloat16 mixed precision")
    g.add_argument("--fp16", action="store_true", default=S, help="float16 mixed precision")
    g.add_argument("--report-to", default=S, help="none (default), tensorboard, wandb, all")
    g.add_argument("--resume", nargs="?", const=True, default=S, metavar="CHECKPOINT",
                   help="continue from the newest complete checkpoint (or from CHECKPOINT)")  # fmt: skip
    g.add_argument("--no-progress", dest="disable_tqdm", action="store_true", default=S, help="no progress bar")
    p.set_defaults(func=_run_train_sft)


def _read_yaml_config(path: str, valid: list[str]) -> dict:
    try:
        import yaml
    except ImportError as e:
        raise ImportError('--config needs PyYAML: pip install "negopt[train]"') from e
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise UsageError(f"cannot read --config {path!r}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise UsageError(f"--config {path!r} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--config {path!r} must hold a mapping of keys to values, got {type(data).__name__}")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise UsageError(f"--config {path!r} has unknown key(s) {unknown}; valid keys: {', '.join(valid)}")
    return data


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def _run_train_sft(args: argparse.Namespace) -> int:
    import dataclasses

    from negopt.train.checkpointing import NonFiniteLossError
    from negopt.train.sft import SFTConfig, SFTTrainer

    valid = [f.name for f in dataclasses.fields(SFTConfig)]
    values = _read_yaml_config(args.config_file, valid) if args.config_file else {}
    flags = {k: v for k, v in vars(args).items() if k in valid}
    if isinstance(flags.get("lora_target_modules"), str) and flags["lora_target_modules"] != "all-linear":
        flags["lora_target_modules"] = [m.strip() for m in flags["lora_target_modules"].split(",") if m.strip()]
    if isinstance(flags.get("warmup_steps"), float) and flags["warmup_steps"] >= 1:
        flags["warmup_steps"] = int(flags["warmup_steps"])
    if "max_steps" in flags:
        values.pop("num_epochs", None)
    values.update(flags)
    config = SFTConfig(**values)

    trainer = SFTTrainer(config)
    main = trainer.is_main_process
    if main:
        if trainer.data_summary is not None:
            print(trainer.data_summary)
        kind = "full fine-tune" if config.full_finetune else f"LoRA r={config.lora_r} on {config.lora_target_modules}"
        print(
            f"model: {config.model} ({trainer.model_type}, {kind}); training on {trainer.train_rows:,} pairs, "
            f"validating on {trainer.eval_rows:,}",
            flush=True,
        )
    try:
        result = trainer.train()
    except NonFiniteLossError as e:
        print(f"negopt train sft: error: {e}", file=sys.stderr)
        return 1
    if not main:
        return 0
    if result.interrupted:
        print(
            f"stopped by SIGTERM at step {result.global_step}; checkpoint: {result.last_checkpoint}. "
            "Run the same command with --resume to finish.",
            flush=True,
        )
        return 143
    losses = f"train loss {result.train_loss:.4f}" if result.train_loss is not None else "train loss n/a"
    if result.eval_loss is not None:
        losses += f", validation loss {result.eval_loss:.4f}"
    if result.eval_rouge_l is not None:
        losses += f", validation ROUGE-L {result.eval_rouge_l:.3f}"
    print(f"done: {result.global_step} steps in {_format_seconds(result.runtime_s)}; {losses}")
    print(f"saved the generator to {result.output_dir} (checkpoints in {config.checkpoints_dir})")
    print(f'use it: negopt generate --model {result.output_dir} "a photo of a cat"')
    return 0


# ------------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="negopt", description="Negative prompts written for you.")
    parser.add_argument("--version", action="version", version=f"negopt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_generate(sub)
    _add_env(sub)
    _add_eval(sub)
    _add_train(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``negopt`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        parser.exit(EXIT_USAGE, f"negopt {args.command}: error: {e}\n")
    except (ValueError, TypeError, FileNotFoundError, OSError, ImportError) as e:
        parser.exit(EXIT_USAGE, f"negopt {args.command}: error: {e}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
