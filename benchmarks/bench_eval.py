"""Two costs of ``negopt eval`` that its design decides, each against a baseline measured in the same process.

1. Batched reward scoring (what the rewards do) against scoring one image at a time (a naive loop), in images a
   second, for the CLIP score (a tiny CLIP trained in-process), HPSv2.1 and ImageReward (tiny checkpoints written in
   their authors' layouts, loaded through negopt's key mapping).
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
from negopt.rewards import CLIPScoreReward, HPSv2Reward, ImageRewardReward  # noqa: E402
from tiny_clip import COLORS, ColorClassifier, color_image, trained_tiny_clip  # noqa: E402
from tiny_pipelines import tiny_sd  # noqa: E402
from tiny_preference import save_tiny_hpsv2, save_tiny_imagereward  # noqa: E402


def _batched_against_one_by_one(name: str, reward, images: list, prompts: list[str]) -> None:
    """Print images a second for one call over the whole list (batches of 32) and for one call per image."""
    reward(images=images[:4], prompts=prompts[:4])  # warm-up
    start = time.perf_counter()
    for image, prompt in zip(images, prompts):
        reward(images=[image], prompts=[prompt])
    one_by_one = time.perf_counter() - start
    start = time.perf_counter()
    reward(images=images, prompts=prompts)
    batched = time.perf_counter() - start
    n = len(images)
    print(
        f"{name}, {n} images: one at a time {n / one_by_one:.0f} images/s, batched (32) {n / batched:.0f} images/s, "
        f"speed-up x{one_by_one / batched:.1f}"
    )


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
        _batched_against_one_by_one("CLIP score", reward, images, prompts)
        hpsv2 = HPSv2Reward(save_tiny_hpsv2(os.path.join(tmp, "hpsv2")), batch_size=32)
        _batched_against_one_by_one("HPSv2.1", hpsv2, images, prompts)
        imagereward = ImageRewardReward(save_tiny_imagereward(os.path.join(tmp, "imagereward")), batch_size=32)
        _batched_against_one_by_one("ImageReward", imagereward, images, prompts)

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
