"""The ``negopt`` command: ``generate``, ``env``, ``eval``, ``train sft`` and ``train rl``.

Each command's flags are generated from its config dataclasses (:mod:`negopt.cli_args`); ``--config FILE.yaml`` takes
the same keys and the flags given override it. Errors found before any work starts (a bad flag or config value, a
missing file, a model that cannot be loaded, a device this torch cannot use) print one line and exit with status 2.
Anything raised once the work has begun prints its full traceback (exit 1); ``--debug`` shows the traceback always.
SIGTERM during training saves a checkpoint and exits 143; a closed output pipe (``negopt generate ... | head``) exits
quietly with 141.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from negopt import __version__
from negopt.cli_args import (
    EXIT_BROKEN_PIPE,
    EXIT_USAGE,
    CommandConfig,
    UsageError,
    add_config_flags,
    build,
    check_device,
    collect_settings,
    flag_name,
    loading,
    setup_step,
)

__all__ = ["main", "build_parser", "UsageError", "GenerateArgs", "generate_specs"]


# --------------------------------------------------------------------------------------------------- generate
@dataclass
class GenerateArgs:
    """Settings of ``negopt generate``.

    Args:
        file: Read prompts from this file, one a line (``-``: standard input). Each input line gets its own output
            (a blank line, a blank negative), so outputs line up with inputs.
        model: A generator folder or hub id (default: the built-in generator, offline, no weights).
        revision: Hub revision of ``model``.
        device: Device for ``model``, e.g. ``cuda`` or ``cpu``.
        num_candidates: Negatives per prompt.
        seed: Seed for sampled generation.
        batch_size: Prompts per forward pass of ``model``.
        json: Print one JSON object a line: ``prompt``, ``negative_prompt``.
        local_files_only: Load ``model`` from a folder or the hub cache only.
        precision: Make ``model`` fast with ``optimize(precision)``: ``auto`` (half precision on a GPU, float32 on a
            CPU), ``float32``, ``bfloat16``, ``float16`` (GPU) or ``int8`` (CPU); reduced precision can change the
            text.
        backend: ``optimize``'s backend: ``torch``, or ``ctranslate2`` (CPU, ``pip install "negopt[ctranslate2]"``;
            with ``--precision int8`` the fastest on a CPU). Setting it alone means ``--precision auto``.
    """

    file: str | None = None
    model: str | None = None
    revision: str | None = None
    device: str | None = None
    num_candidates: int = 1
    seed: int | None = None
    batch_size: int = 32
    json: bool = False
    local_files_only: bool = False
    precision: Literal["auto", "float32", "bfloat16", "float16", "int8"] | None = None
    backend: Literal["torch", "ctranslate2"] | None = None


def generate_specs() -> list[CommandConfig]:
    from negopt.config import NegOptConfig

    return [
        CommandConfig(GenerateArgs, "generate", aliases={"-f": "file"}),
        CommandConfig(
            NegOptConfig,
            "generator config (with --model; over the saved negopt_config.json)",
            config_only={
                "model_type": "read from the model's own config.json; a saved generator knows its type",
                "base_model_name_or_path": "written by the trainers: the base model of a saved adapter",
                "negopt_version": "written on save",
            },
            sub_flags={"--max-new-tokens": ("generation_kwargs", "max_new_tokens", int)},
        ),
    ]


def _add_generate(sub: Any, full: bool = True) -> None:
    p = sub.add_parser(
        "generate",
        help="write negative prompts for prompts",
        description="Write a negative prompt for each prompt. Prompts come from the arguments, from -f FILE "
        "(one a line), or from standard input. Without --model the built-in generator is used (offline, no weights).",
    )
    if not full:
        return
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="prompts to write negatives for")
    _common_flags(p, generate_specs())
    p.set_defaults(func=_run_generate)


def _read_lines(args: argparse.Namespace, run: GenerateArgs) -> list[str]:
    """Prompts from the arguments and the file (or standard input), one per input line, blank lines kept."""
    prompts = [p.strip() for p in args.prompts]
    if run.file:
        try:
            if run.file == "-":
                text = sys.stdin.read()
            else:
                with open(run.file, encoding="utf-8") as f:
                    text = f.read()
        except OSError as e:
            raise UsageError(f"cannot read --file {run.file!r}: {e.strerror or e}") from e
        prompts += [line.strip() for line in text.splitlines()]
    elif not prompts and not sys.stdin.isatty():
        prompts = [line.strip() for line in sys.stdin.read().splitlines()]
    if not any(prompts):
        raise UsageError("no prompts: pass them as arguments, with -f FILE, or on standard input")
    return prompts


def _run_generate(args: argparse.Namespace) -> Callable[[], int]:
    run_settings, config_settings = collect_settings(args, generate_specs(), args.config)
    run = build(GenerateArgs, run_settings, "negopt generate")
    if run.num_candidates < 1:
        raise UsageError(f"--num-candidates must be at least 1, got {run.num_candidates}")
    if run.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {run.batch_size}")
    prompts = _read_lines(args, run)
    check_device(run.device)
    kwargs: dict = {"num_candidates": run.num_candidates}
    if run.seed is not None:
        kwargs["seed"] = run.seed
    if run.model:
        from negopt.generator import NegOptGenerator

        with loading("--model", run.model):
            gen = NegOptGenerator.from_pretrained(
                run.model, revision=run.revision, device=run.device, local_files_only=run.local_files_only
            )
        if config_settings:
            given = dict(config_settings)
            if "generation_kwargs" in given:
                given["generation_kwargs"] = {**gen.config.generation_kwargs, **given["generation_kwargs"]}
            with setup_step("generator config"):
                gen.config = dataclasses.replace(gen.config, **given)
        if run.precision is not None or run.backend is not None:
            try:
                with setup_step("--precision/--backend"):
                    gen.optimize(run.precision or "auto", backend=run.backend or "torch")
            except ImportError as e:  # an extra that is not installed
                raise UsageError(str(e)) from e
        kwargs["batch_size"] = run.batch_size
    else:
        if config_settings:
            flags = ", ".join(flag_name(k) for k in sorted(config_settings))
            raise UsageError(f"{flags} set a --model's config; the built-in generator has none (add --model)")
        if run.precision is not None or run.backend is not None:
            raise UsageError("--precision and --backend make a --model fast; the built-in generator has no model")
        from negopt.builtin import BuiltinGenerator

        gen = BuiltinGenerator()

    def work() -> int:
        texts = [p for p in prompts if p]
        produced = iter(gen(texts, **kwargs)) if texts else iter(())
        for prompt in prompts:
            blank = [""] * run.num_candidates if run.num_candidates > 1 else ""
            negative = next(produced) if prompt else blank
            if run.json:
                print(json.dumps({"prompt": prompt, "negative_prompt": negative}, ensure_ascii=False))
            elif isinstance(negative, list):
                print("\n".join(negative))
            else:
                print(negative)
        return 0

    return work


# -------------------------------------------------------------------------------------------------------- env
def _add_env(sub: Any) -> None:
    p = sub.add_parser("env", help="print versions and the device, for bug reports")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
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
def _common_flags(parser: argparse.ArgumentParser, specs: list[CommandConfig], taken: set[str] | None = None) -> None:
    """``--config``, ``--debug`` and one flag per config field of ``specs``."""
    parser.add_argument("--config", metavar="FILE.yaml", help="a YAML file of this command's keys; flags override it")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
    taken = set(taken or ()) | {"--config", "--debug", "-h", "--help"}
    for spec in specs:
        add_config_flags(parser, spec, taken)


def _command_of(argv: Sequence[str] | None) -> tuple[str, ...] | None:
    """The (sub)command words of ``argv`` (``("train", "rl")``), or None for all."""
    if argv is None:
        return None
    words = [a for a in argv if not a.startswith("-")]
    if words[:1] == ["train"]:
        return tuple(words[:2])
    return tuple(words[:1])


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``negopt`` argument parser, flags generated from the config dataclasses.

    Args:
        argv: The command line about to be parsed: only its command's flags are built (its configs imported), so
            ``negopt generate`` does not import the trainers. None builds every command's flags.
    """
    from negopt.cli_eval import add_eval
    from negopt.cli_train import add_train

    wanted = _command_of(argv)

    def full(*path: str) -> bool:
        return (
            wanted is None
            or wanted[: len(path)] == path
            or (len(wanted) < len(path) and path[: len(wanted)] == wanted)
        )

    parser = argparse.ArgumentParser(prog="negopt", description="Negative prompts written for you.")
    parser.add_argument("--version", action="version", version=f"negopt {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_generate(sub, full("generate"))
    _add_env(sub)
    add_eval(sub, _common_flags, full("eval"))
    add_train(sub, _common_flags, full("train", "sft"), full("train", "rl"))
    return parser


def _fail(parser: argparse.ArgumentParser, args: argparse.Namespace, error: BaseException) -> None:
    if getattr(args, "debug", False):
        traceback.print_exception(error.__cause__ or error)
    command = " ".join(x for x in (args.command, getattr(args, "train_command", None)) if x)
    parser.exit(EXIT_USAGE, f"negopt {command}: error: {error}\n")


def _quiet_broken_pipe() -> int:
    # Point stdout at /dev/null so that Python's flush at exit does not raise again.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``negopt`` command; returns the exit status.

    Setup (parsing, checking and loading what was asked for) reports a usage error in one line with status 2; the
    work itself raises its errors with their traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        work = args.func(args)
    except (UsageError, ImportError) as e:
        _fail(parser, args, e)
    except KeyboardInterrupt:
        parser.exit(130, "interrupted\n")
    try:
        return int(work() if callable(work) else work or 0)
    except UsageError as e:  # found by the work before it changed anything (checkpoints that exist, say)
        _fail(parser, args, e)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        parser.exit(130, "interrupted\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
