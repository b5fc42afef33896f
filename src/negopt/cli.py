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


# ------------------------------------------------------------------------------------------------------ train
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
    # `negopt train rl` registers here: _add_train_rl(train_sub)


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
