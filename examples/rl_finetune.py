"""Reinforcement learning (RL): improve a generator by the images its negatives produce.

NegOpt's second stage. Each step the generator samples several negatives per prompt, the pipeline renders an image
with each (same seed within a prompt), a weighted sum of image rewards scores them, and a policy-gradient step on the
LoRA adapter makes the better negatives more likely. The weights (``--reward NAME=WEIGHT``) say what you care about:
``aesthetic`` (LAION aesthetic predictor), ``clip`` (prompt/image alignment), ``inception`` (fidelity), ``pickscore``.
The reward models load by hub id, or from folders given with ``--clip-model``, ``--aesthetic-head`` and
``--inception-model``. The output folder is a generator; the script loads it and prints a negative.

On a GPU, starting from an SFT result (``examples/sft_finetune.py``)::

    python examples/rl_finetune.py --generator out/sft --reward aesthetic=1.0 --reward clip=0.5 \\
        --prompts prompts.txt --output-dir out/rl --max-steps 500 --steps 20
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
    parser.add_argument("--generator", required=True, help="generator folder or hub id to start from (an SFT output)")
    parser.add_argument(
        "--pipeline",
        default="stable-diffusion-v1-5/stable-diffusion-v1-5",
        help="diffusers pipeline: hub id or folder (default: %(default)s)",
    )
    parser.add_argument(
        "--reward", action="append", metavar="NAME=WEIGHT", help="a reward term (repeatable; default aesthetic=1.0)"
    )
    parser.add_argument("--normalize", action="store_true", help="standardise each term so the weights compare")
    parser.add_argument("--clip-model", help="CLIP folder or hub id, for the clip and aesthetic rewards")
    parser.add_argument("--aesthetic-head", help="the aesthetic predictor's head: file, folder or hub id")
    parser.add_argument("--inception-model", help="image classifier folder or hub id for the inception reward")
    parser.add_argument("--prompts", help="a .txt file, one prompt a line (default: a few built-in prompts)")
    parser.add_argument("--output-dir", default="out/rl", help="where the generator is saved (%(default)s)")
    parser.add_argument("--max-steps", type=int, default=100, help="RL steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=4, help="prompts per step (default: %(default)s)")
    parser.add_argument("--num-candidates", type=int, default=4, help="negatives per prompt (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="longest negative, in tokens")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps per image (default: %(default)s)")
    parser.add_argument("--height", type=int, help="image height (default: the pipeline's)")
    parser.add_argument("--width", type=int, help="image width")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Heavy imports after parsing, so that --help answers at once.
    import torch

    from negopt import NegOptGenerator
    from negopt.rewards import build_reward, parse_reward_specs
    from negopt.train import RLConfig, RLTrainer

    cuda = torch.cuda.is_available()
    weights = parse_reward_specs(args.reward or ["aesthetic=1.0"])
    # Local reward models, for the terms that have a weight; the others are not loaded.
    models = {
        "clip": args.clip_model,
        "aesthetic": {k: v for k, v in (("clip_model", args.clip_model), ("head", args.aesthetic_head)) if v},
        "inception": args.inception_model,
    }
    models = {name: model for name, model in models.items() if model and name in weights}
    reward = build_reward(weights, models=models, normalize=args.normalize, device="cuda" if cuda else "cpu")

    pipeline_kwargs = {"num_inference_steps": args.steps, "height": args.height, "width": args.width}
    config = RLConfig(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        num_candidates=args.num_candidates,
        generation_kwargs={"max_new_tokens": args.max_new_tokens, "temperature": 1.0},
        pipeline_kwargs={k: v for k, v in pipeline_kwargs.items() if v is not None},
        pipeline_dtype="float16" if cuda else None,  # the pipeline is loaded by the trainer, from --pipeline
    )
    trainer = RLTrainer(
        config, generator=args.generator, pipeline=args.pipeline, reward=reward, prompts=args.prompts or PROMPTS
    )
    state = trainer.train()  # checkpoints every 50 steps; RLConfig(resume=True) continues a stopped run
    if state.interrupted:
        print(f"stopped at step {state.step}, checkpoint saved; rerun with RLConfig(resume=True) to finish")
        return
    print(f"trained {state.step} steps; generator saved to {args.output_dir}")

    generator = NegOptGenerator.from_pretrained(args.output_dir)
    for prompt, negative in zip(PROMPTS[:2], generator(PROMPTS[:2])):
        print(f"{prompt} -> {negative}")


if __name__ == "__main__":
    main()
