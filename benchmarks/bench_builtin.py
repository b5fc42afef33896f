"""Time the built-in generator per prompt, against a baseline measured in the same process.

The baseline is the cheapest thing a "generator" can do with a prompt: ``clean_negative`` of a fixed generic negative
(what a user without negopt would paste). The built-in reads the prompt, so it costs more; the figure that matters is
the absolute time per prompt (the issue asks for under a millisecond), for images and for video
(``kind="video"``: more terms and a second table of concepts, on the same prompts and on long Wan-style ones).

    python benchmarks/bench_builtin.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from negopt.builtin import BuiltinGenerator
from negopt.text import clean_negative

SUBJECTS = [
    "a portrait of an old fisherman",
    "a woman holding a cup of coffee",
    "a golden retriever puppy in the grass",
    'a neon sign that says "open late"',
    "a gothic cathedral interior",
    "a red sports car on a mountain road",
    "a plate of sushi on a wooden table",
    "a perfume bottle on marble",
    "a misty mountain lake at sunrise",
    "a knight in shining armor, full body",
    "a robot playing chess with a child",
    "an empty street at night, no people",
]
STYLES = [
    "",
    ", photo, 85mm, f/1.8, bokeh",
    ", oil painting, impasto",
    ", anime, studio ghibli",
    ", 3d render, octane, unreal engine",
    ", pixel art, 16-bit",
    ", pencil sketch",
    ", black and white, film noir",
    ", watercolor, soft colors",
    ", highly detailed, 8k, trending on artstation, dramatic lighting, cinematic",
]
# A few hundred realistic prompts: every subject in every style, some with long tails of quality tags.
PROMPTS = [s + st for s in SUBJECTS for st in STYLES] * 3
# Video prompts as Wan and LTX-Video users write them: a paragraph of subject, motion, camera and light.
VIDEO_PROMPTS = [
    f"{s}, the camera slowly pushing in as {m}, soft natural light, shallow depth of field, cinematic, 4k, highly "
    f"detailed, smooth motion"
    for s in SUBJECTS
    for m in (
        "the wind moves through the scene",
        "people walk past in the background",
        "the light shifts across the frame",
        "rain starts to fall",
    )
] * 3


def per_prompt_us(fn, prompts: list[str], repeats: int) -> float:
    """The best of ``repeats`` runs over ``prompts``, in microseconds per prompt."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for p in prompts:
            fn(p)
        times.append(time.perf_counter() - start)
    return min(times) / len(prompts) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    print(f"machine: {platform.platform()}, python {platform.python_version()}, {os.cpu_count()} CPUs")
    print(f"prompts: {len(PROMPTS)} ({len(set(PROMPTS))} distinct), best of {args.repeats} runs")

    start = time.perf_counter()
    gen = BuiltinGenerator()
    construct_ms = (time.perf_counter() - start) * 1e3
    generic = "worst quality, low quality, blurry, jpeg artifacts, watermark, signature, text, bad anatomy"

    baseline = per_prompt_us(lambda p: clean_negative(generic), PROMPTS, args.repeats)
    builtin = per_prompt_us(gen, PROMPTS, args.repeats)
    video_gen = BuiltinGenerator(kind="video")
    video = per_prompt_us(video_gen, PROMPTS, args.repeats)
    video_long = per_prompt_us(video_gen, VIDEO_PROMPTS, args.repeats)
    image_long = per_prompt_us(gen, VIDEO_PROMPTS, args.repeats)
    candidates = per_prompt_us(lambda p: gen(p, num_candidates=4, seed=0), PROMPTS, args.repeats)
    batch_start = time.perf_counter()
    gen(PROMPTS)
    batch = (time.perf_counter() - batch_start) / len(PROMPTS) * 1e6

    print(f"BuiltinGenerator() construction: {construct_ms:.2f} ms")
    print(f"baseline (clean_negative):     {baseline:8.1f} us/prompt  (a fixed generic negative, cleaned)")
    print(f"built-in, one prompt a call:   {builtin:8.1f} us/prompt  ({builtin / baseline:.1f}x baseline)")
    print(f"built-in, a list of {len(PROMPTS)}:       {batch:8.1f} us/prompt")
    print(f"built-in, num_candidates=4:    {candidates:8.1f} us/prompt  ({candidates / builtin:.1f}x one candidate)")
    print(f"built-in video, same prompts:  {video:8.1f} us/prompt  ({video / builtin:.2f}x image)")
    print(f"built-in image, Wan-style:     {image_long:8.1f} us/prompt  ({len(VIDEO_PROMPTS)} prompts)")
    print(f"built-in video, Wan-style:     {video_long:8.1f} us/prompt  ({video_long / image_long:.2f}x image)")
    print(f"median prompt length: {statistics.median(len(p) for p in PROMPTS):.0f} characters (image), ", end="")
    print(f"{statistics.median(len(p) for p in VIDEO_PROMPTS):.0f} (Wan-style)")


if __name__ == "__main__":
    main()
