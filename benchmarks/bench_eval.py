"""Two costs of ``negopt eval`` that its design decides, each against a baseline measured in the same process.

1. Batched reward scoring (what the rewards do) against scoring one image at a time (a naive loop), for the CLIP
   score, on a tiny CLIP trained in-process.
2. A resumed evaluation (every image cached on disk) against a fresh one, on a tiny Stable Diffusion pipeline: the
   resumed run only reads images back and scores them.

Tiny models, so the ratios show the overheads, not the times of real models on a GPU.

    python benchmarks/bench_eval.py [--images 64] [--prompts 16]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from negopt.eval import InceptionScoreMetric, evaluate  # noqa: E402
from negopt.rewards import CLIPScoreReward  # noqa: E402
from tiny_clip import COLORS, ColorClassifier, color_image, trained_tiny_clip  # noqa: E402
from tiny_pipelines import tiny_sd  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread")

    with tempfile.TemporaryDirectory() as tmp:
        _, _, clip_dir = trained_tiny_clip(os.path.join(tmp, "clip"), steps=10)
        reward = CLIPScoreReward(clip_dir, batch_size=32)
        names = list(COLORS)
        images = [color_image(names[i % 4], noise=10.0) for i in range(args.images)]
        prompts = [f"a photo of {names[(i + 1) % 4]}" for i in range(args.images)]
        reward(images=images[:4], prompts=prompts[:4])  # warm-up
        start = time.perf_counter()
        for image, prompt in zip(images, prompts):
            reward(images=[image], prompts=[prompt])
        one_by_one = time.perf_counter() - start
        start = time.perf_counter()
        reward(images=images, prompts=prompts)
        batched = time.perf_counter() - start
        print(
            f"CLIP score, {args.images} images: one at a time {one_by_one:.3f} s, batched (32) {batched:.3f} s, "
            f"speed-up x{one_by_one / batched:.1f}"
        )

        pipe = tiny_sd()
        metrics = {"clip_score": reward, "inception_score": InceptionScoreMetric(ColorClassifier().eval())}
        eval_prompts = [f"a photo of {names[i % 4]}" for i in range(args.prompts)]
        common = dict(
            generators={"fixed": lambda ps: ["blurry, lowres"] * len(ps)},
            metrics=metrics,
            output_dir=os.path.join(tmp, "eval"),
            pipeline_kwargs={"num_inference_steps": 4},
            num_bootstrap=200,
            progress=False,
        )
        start = time.perf_counter()
        evaluate(pipe, eval_prompts, **common)
        fresh = time.perf_counter() - start
        start = time.perf_counter()
        evaluate(pipe, eval_prompts, **common)
        resumed = time.perf_counter() - start
        print(
            f"evaluate, {args.prompts} prompts x 2 conditions, 4 steps: fresh {fresh:.2f} s, resumed from cache "
            f"{resumed:.2f} s, ratio {resumed / fresh:.2f}"
        )


if __name__ == "__main__":
    main()
