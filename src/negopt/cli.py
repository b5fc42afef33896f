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


# ------------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="negopt", description="Negative prompts written for you.")
    parser.add_argument("--version", action="version", version=f"negopt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_generate(sub)
    _add_env(sub)
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
