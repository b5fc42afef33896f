"""Evaluation: do generated negatives improve the images of *your* pipeline?

Renders the same prompts under several conditions, with the same seed per prompt so that only the negative differs:
no negative prompt (``none``), the prompts' own negatives (``dataset``, when a ``.jsonl`` file has a
``negative_prompt`` column), the built-in generator, and each ``--generator NAME=PATH``. Scores the images
(aesthetics, CLIP score, Inception Score: the metrics of NegOpt's table), writes ``report.json``, ``report.md``,
``grid.png`` (prompts x conditions, each image captioned with its negative) and ``metrics.png`` to ``--output-dir``,
and prints the table. Rerunning with the same ``--output-dir`` reuses the images already rendered.

On a GPU (the metric models download by hub id unless you give folders)::

    python examples/evaluate.py --generator sft=out/sft --generator rl=out/rl --prompts test.jsonl \\
        --output-dir out/eval --steps 25
"""

from __future__ import annotations

import argparse

PROMPTS = [
    "a portrait photo of an old fisherman, detailed, 8k",
    "a cartoon cat wearing a wizard hat",
    "a misty mountain lake at sunrise, oil painting",
    "a red sports car on a coastal road, golden hour",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pipeline",
        default="stable-diffusion-v1-5/stable-diffusion-v1-5",
        help="diffusers pipeline: hub id or folder (default: %(default)s)",
    )
    parser.add_argument("--generator", action="append", default=[], metavar="NAME=PATH", help="(repeatable)")
    parser.add_argument(
        "--prompts", help="a .txt, .jsonl, .csv or .parquet file, or a dataset (default: a few built-in prompts)"
    )
    parser.add_argument("--output-dir", default="out/eval", help="where the report goes (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps (default: %(default)s)")
    parser.add_argument(
        "--metric", action="append", choices=("aesthetic", "clip", "inception", "pickscore"), help="(repeatable)"
    )
    parser.add_argument("--clip-model", help="CLIP folder or hub id, for the CLIP score and the aesthetic predictor")
    parser.add_argument("--aesthetic-head", help="the aesthetic predictor's head: file, folder or hub id")
    parser.add_argument("--inception-model", help="image classifier for the Inception Score (folder or hub id)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples for the 95%% intervals (0: none)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    args = parser.parse_args(argv)
    for spec in args.generator:
        if not spec.partition("=")[2]:
            parser.error(f"--generator takes NAME=PATH, got {spec!r}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Heavy imports after parsing, so that --help answers at once.
    import torch
    from diffusers import DiffusionPipeline

    from negopt import BuiltinGenerator, NegOptGenerator
    from negopt.data import load_prompts
    from negopt.eval import EvalConfig, default_metrics, evaluate

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.startswith("cuda") else None
    pipe = DiffusionPipeline.from_pretrained(args.pipeline, torch_dtype=dtype, use_safetensors=True).to(device)
    pipe.set_progress_bar_config(disable=True)  # evaluate() shows its own bar over the prompts

    generators = {"builtin": BuiltinGenerator()}
    for spec in args.generator:
        name, _, path = spec.partition("=")
        generators[name] = NegOptGenerator.from_pretrained(path, device=device)
    metrics = default_metrics(
        args.metric or ("aesthetic", "clip", "inception"),
        clip_model=args.clip_model,
        aesthetic_clip_model=args.clip_model,
        aesthetic_head=args.aesthetic_head,
        inception_model=args.inception_model,
        device=device,
    )
    report = evaluate(
        pipe,
        load_prompts(args.prompts, negatives=True) if args.prompts else PROMPTS,
        generators=generators,
        metrics=metrics,
        config=EvalConfig(
            output_dir=args.output_dir,
            pipeline_kwargs={"num_inference_steps": args.steps},
            num_bootstrap=args.bootstrap,
        ),
    )
    with open(report["files"]["report_md"], encoding="utf-8") as f:
        print(f.read())
    print(f"report, image grid and bar chart in {args.output_dir}")


if __name__ == "__main__":
    main()
