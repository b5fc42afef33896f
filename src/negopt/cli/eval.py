"""``negopt eval``: its flags come from :class:`~negopt.eval.EvalConfig` and :class:`EvalRunArgs`."""

from __future__ import annotations

import argparse
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
    loading,
    setup_step,
)

__all__ = ["EvalRunArgs", "eval_specs", "add_eval"]


@dataclass
class EvalRunArgs:
    """What ``negopt eval`` loads: the pipeline, the generators, the prompts and the metric models.

    Args:
        pipeline: A diffusers pipeline folder or hub id (required); it must have a ``negative_prompt`` argument.
        revision: Hub revision of ``pipeline``.
        generator: A generator to evaluate as ``NAME=PATH_OR_ID``, named NAME in the report (repeatable; in
            ``--config`` also a mapping of names to paths).
        builtin: Include the built-in generator as the condition ``builtin`` (writing for video around a video
            pipeline).
        prompts: A ``.txt`` (one prompt a line), ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` file (``prompt``
            and optionally ``negative_prompt``), a saved dataset folder, or a hub dataset id (required).
        split: Dataset split (default: ``test`` if there is one, else the first split).
        prompt_column: Column of the prompts.
        negative_column: Column of their negatives.
        num_prompts: Evaluate the first N prompts.
        device: Device for the pipeline, generators and metrics, e.g. ``cuda`` (under ``torchrun`` or ``accelerate
            launch``, each process's own GPU).
        dtype: The pipeline's dtype.
        metric: A metric to report (repeatable): ``aesthetic``, ``clip``, ``inception``, ``pickscore``, ``hpsv2``,
            ``imagereward``; default the first three.
        clip_model: CLIP folder or hub id for the CLIP score.
        aesthetic_clip_model: CLIP folder or hub id for the aesthetic predictor.
        aesthetic_head: The aesthetic predictor's MLP head: safetensors file, folder or hub id.
        inception_model: Image classifier folder or hub id for the Inception Score (default torch-fidelity's
            Inception v3).
        pickscore_model: PickScore model folder or hub id.
        pickscore_processor: PickScore processor folder or hub id.
        hpsv2_model: HPSv2.1 checkpoint: a ``.pt`` file, a folder holding it (and its tokenizer), or a hub id
            (default ``xswu/HPSv2``).
        imagereward_model: ImageReward checkpoint: a ``.pt`` file, a folder holding it (and its tokenizer), or a hub
            id (default ``THUDM/ImageReward``).
        local_files_only: Load every model from folders or the hub cache only.
    """

    pipeline: str | None = None
    revision: str | None = None
    generator: list[str] | dict[str, str] | None = None
    builtin: bool = True
    prompts: str | None = None
    split: str | None = None
    prompt_column: str = "prompt"
    negative_column: str = "negative_prompt"
    num_prompts: int | None = None
    device: str | None = None
    dtype: Literal["float32", "float16", "bfloat16"] | None = None
    metric: list[str] | None = None
    clip_model: str | None = None
    aesthetic_clip_model: str | None = None
    aesthetic_head: str | None = None
    inception_model: str | None = None
    pickscore_model: str | None = None
    pickscore_processor: str | None = None
    hpsv2_model: str | None = None
    imagereward_model: str | None = None
    local_files_only: bool = False


def eval_specs() -> list[CommandConfig]:
    """The configs behind ``negopt eval``'s flags."""
    from negopt.eval import EvalConfig

    return [
        CommandConfig(EvalRunArgs, "inputs", repeatable=("generator", "metric")),
        CommandConfig(
            EvalConfig,
            "evaluation (EvalConfig)",
            aliases={"--no-none": ("include_none", False), "--bootstrap": "num_bootstrap"},
            sub_flags={
                "--steps": ("pipeline_kwargs", "num_inference_steps", int),
                "--guidance-scale": ("pipeline_kwargs", "guidance_scale", float),
                "--height": ("pipeline_kwargs", "height", int),
                "--width": ("pipeline_kwargs", "width", int),
                "--num-frames": ("pipeline_kwargs", "num_frames", int),  # video pipelines
            },
        ),
    ]


def add_eval(sub: Any, full: bool = True) -> None:
    p = sub.add_parser(
        "eval",
        help="compare negative prompts on a pipeline: report, image grid, bar chart",
        description="Render each prompt with no negative prompt, with the prompts' own negatives (if any), with the "
        "built-in generator and with each --generator, using the same seed per prompt; score the images (aesthetics, "
        "CLIP score, Inception Score by default) and write report.json, report.md, grid.png and metrics.png to "
        "--output-dir. Rerunning with the same --output-dir reuses the images already rendered. Under torchrun or "
        "accelerate launch the processes share the prompts (each on its own GPU with --device cuda) and the main "
        "process writes the report.",
    )
    if full:
        common_flags(p, eval_specs())
        p.set_defaults(func=run_eval)


def _parse_generators(specs: list[str], builtin: bool) -> dict[str, str]:
    from negopt.eval.config import check_name

    generators: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--generator takes NAME=PATH_OR_ID, got {spec!r}")
        try:
            check_name(name, "--generator")
        except ValueError as e:
            raise UsageError(f"{str(e).rstrip('.')}: e.g. --generator sft={path}") from None
        if name in ("none", "dataset"):
            raise UsageError(f"--generator name {name!r} is taken by a built-in condition; choose another name")
        if name in generators or (name == "builtin" and builtin):
            raise UsageError(f"--generator name {name!r} is used twice")
        generators[name] = path
    return generators


def run_eval(args: argparse.Namespace) -> Callable[[], int]:
    """Check and load everything ``negopt eval`` needs; returns the evaluation itself, to run."""
    from negopt.data import load_prompts
    from negopt.eval import EvalConfig
    from negopt.eval.metrics import METRIC_NAMES

    run_settings, eval_settings = collect_settings(args, eval_specs(), args.config)
    run = build(EvalRunArgs, run_settings)
    missing = [f"--{k.replace('_', '-')}" for k in ("pipeline", "prompts") if not getattr(run, k)]
    if "output_dir" not in eval_settings:
        missing.append("--output-dir")
    if missing:
        raise UsageError(f"missing {', '.join(missing)} (on the command line or in --config)")
    config = build(EvalConfig, eval_settings)
    from negopt.eval.config import check_output_dir

    with setup_step():  # before anything loads, as the trainers check theirs
        check_output_dir(config.output_dir)
    metric_names = tuple(dict.fromkeys(run.metric or ("aesthetic", "clip", "inception")))
    unknown = [m for m in metric_names if m not in METRIC_NAMES]
    if unknown:
        raise UsageError(f"--metric {unknown[0]!r} is not a metric; choose from {', '.join(METRIC_NAMES)}")
    specs = [f"{k}={v}" for k, v in run.generator.items()] if isinstance(run.generator, dict) else run.generator
    generators = _parse_generators(specs or [], run.builtin)
    check_device(run.device)
    from negopt.eval.distributed import is_main_process, process_device

    run.device = process_device(run.device)  # under torchrun / accelerate launch, each process on its own GPU
    with setup_step(f"--prompts {run.prompts!r}"):
        prompts = load_prompts(
            run.prompts,
            negatives=True,
            prompt_column=run.prompt_column,
            negative_column=run.negative_column,
            split=run.split or ("test",),
            num_prompts=run.num_prompts,
        )

    import torch
    from diffusers import DiffusionPipeline

    from negopt.eval import default_metrics, evaluate, report_markdown
    from negopt.pipeline import negative_slots

    with loading("--pipeline", run.pipeline):
        pipe = DiffusionPipeline.from_pretrained(
            run.pipeline,
            revision=run.revision,
            torch_dtype=getattr(torch, run.dtype) if run.dtype else None,
            use_safetensors=True,
            local_files_only=run.local_files_only,
        )
    if run.builtin or generators or any(row["negative_prompt"] for row in prompts):
        with setup_step(f"--pipeline {run.pipeline!r}"):
            negative_slots(pipe)
    if run.device:
        pipe.to(run.device)
    loaded: dict = {}
    if run.builtin:
        from negopt.builtin import BuiltinGenerator
        from negopt.pipeline.families import is_video_pipeline

        # Around a video pipeline the built-in writes for video, as NegOptPipeline's default does.
        loaded["builtin"] = BuiltinGenerator(kind="video" if is_video_pipeline(pipe) else "image")
    if generators:
        from negopt.generator.core import NegOptGenerator

        for name, path in generators.items():
            with loading(f"--generator {name}=", path):
                loaded[name] = NegOptGenerator.from_pretrained(
                    path, device=run.device, local_files_only=run.local_files_only
                )
    with loading("--metric", ",".join(metric_names)):
        metrics = default_metrics(
            metric_names,
            clip_model=run.clip_model,
            aesthetic_clip_model=run.aesthetic_clip_model,
            aesthetic_head=run.aesthetic_head,
            inception_model=run.inception_model,
            pickscore_model=run.pickscore_model,
            pickscore_processor=run.pickscore_processor,
            hpsv2_model=run.hpsv2_model,
            imagereward_model=run.imagereward_model,
            device=run.device,
            local_files_only=run.local_files_only,
        )

    def work() -> int:
        report = evaluate(pipe, prompts, generators=loaded, metrics=metrics, config=config)
        if not is_main_process():
            return 0  # the main process prints the report
        print(report_markdown(report), end="")
        print()
        for path in report["files"].values():
            print(f"wrote {path}")
        return 0

    return work
