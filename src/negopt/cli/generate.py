"""``negopt generate``: negative prompts for prompts from the arguments, a file or standard input."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from negopt.cli.args import (
    CommandConfig,
    UsageError,
    build,
    check_device,
    collect_settings,
    common_flags,
    flag_name,
    loading,
    setup_step,
)

__all__ = ["GenerateArgs", "generate_specs", "add_generate"]


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

    def __post_init__(self) -> None:
        from negopt.values import check_seed

        for name in ("num_candidates", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{flag_name(name)} must be at least 1, got {getattr(self, name)}")
        check_seed("--seed", self.seed, optional=True)


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


def add_generate(sub: Any, full: bool = True) -> None:
    p = sub.add_parser(
        "generate",
        help="write negative prompts for prompts",
        description="Write a negative prompt for each prompt. Prompts come from the arguments, from -f FILE "
        "(one a line), or from standard input. Without --model the built-in generator is used (offline, no weights).",
    )
    if not full:
        return
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="prompts to write negatives for")
    common_flags(p, generate_specs())
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
    run = build(GenerateArgs, run_settings)
    prompts = _read_lines(args, run)
    check_device(run.device)
    kwargs: dict = {"num_candidates": run.num_candidates}
    if run.seed is not None:
        kwargs["seed"] = run.seed
    if run.model:
        from negopt.config import NegOptConfig
        from negopt.generator.core import NegOptGenerator
        from negopt.generator.inputs import generation_kwargs

        # Generation settings given here count as passed to the call: do_sample=False or num_beams with
        # --num-candidates is then the user's choice, checked as such (not overridden by sampling).
        given_generation = dict(config_settings.get("generation_kwargs") or {})
        what = "generation settings (--generation-kwargs, --max-new-tokens, the model's negopt_config.json)"
        with setup_step(what):  # the settings given, before loading; with the model's own, after it
            generation_kwargs(NegOptConfig(), run.num_candidates, given_generation, pad_token_id=0)
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
        with setup_step(what):  # the settings the call will use, checked now rather than as part of the work
            generation_kwargs(gen.config, run.num_candidates, given_generation, pad_token_id=0)
        kwargs.update(given_generation)
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
