"""What NegOptPipeline costs per call, against the pipeline's own time, measured in one process.

Three parts:

1. The wrapper's own cost: ``NegOptPipeline._prepare`` (everything the wrapper does besides calling the generator
   and the pipeline: argument checks, merging with the user's negative, one batched token count per tokenizer, the
   slots) with a trivial generator, against the time of one call of a tiny pipeline. Goal: under 2 ms.
2. A table: for a tiny SD pipeline and an SD-1.5-shaped one (random weights), the pipeline's call time against the
   time to write the negatives, with the built-in generator (when ``negopt.builtin`` is importable) and with a
   t5-small-shaped generator (random weights; ``ByT5Tokenizer``, so a fixed number of new tokens is generated).

    python benchmarks/bench_pipeline.py [--size 512] [--steps 1] [--batch 1] [--no-sd15]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from negopt.pipeline import NegOptPipeline  # noqa: E402
from negopt.pipeline.weighting import encode_a1111  # noqa: E402
from tiny_pipelines import sd15_shaped, sd15_text_config, tiny_sd, tiny_sd3, tiny_sdxl  # noqa: E402

PROMPTS = [
    "a portrait photo of an old fisherman, 85mm, bokeh",
    "a lighthouse on a cliff at dusk, oil painting",
    "a red sports car on a mountain road, cinematic lighting",
    "a bowl of ramen on a wooden table, food photography",
]
# Short enough to fit 75 tokens of the tiny pipelines' byte-level CLIP tokenizer (one token per character).
USER_NEGATIVE = "easynegative, (text:1.2)"


def trivial_generator(prompts: list[str]) -> list[str]:
    return ["blurry, lowres, watermark, bad anatomy"] * len(prompts)


class T5SmallShaped:
    """A t5-small-shaped seq2seq generator with random weights: d_model 512, 6+6 layers, 8 heads, d_ff 2048.

    ``ByT5Tokenizer`` stands in for t5-small's SentencePiece vocabulary (no download); generation is forced to
    ``new_tokens`` tokens, about a 15-20 word negative in t5-small's vocabulary.
    """

    def __init__(self, new_tokens: int = 32) -> None:
        from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration

        self.tokenizer = ByT5Tokenizer()
        config = T5Config(
            vocab_size=32128,
            d_model=512,
            d_kv=64,
            num_heads=8,
            d_ff=2048,
            num_layers=6,
            num_decoder_layers=6,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            decoder_start_token_id=self.tokenizer.pad_token_id,
        )
        torch.manual_seed(0)
        self.model = T5ForConditionalGeneration(config).eval()
        self.new_tokens = new_tokens

    @torch.inference_mode()
    def __call__(self, prompts: list[str]) -> list[str]:
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, truncation=True, max_length=128)
        out = self.model.generate(
            **batch, max_new_tokens=self.new_tokens, min_new_tokens=self.new_tokens, do_sample=False
        )
        # Random weights give random ids: fold them onto byte ids so that the text decodes to something.
        return [t[:80] for t in self.tokenizer.batch_decode(out % 256 + 3, skip_special_tokens=True)]


def best_of(fn, repeats: int) -> float:
    """The fastest of ``repeats`` runs of ``fn()``, in seconds (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def median_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> str:
    return (
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )


def wrapper_cost(repeats: int) -> None:
    print("\n## The wrapper's own cost per call (trivial generator, no pipeline call)\n")
    print("| pipeline | prompts | case | wrapper prep (ms) | tiny pipeline call (ms) | prep / call |")
    print("|---|---|---|---|---|---|")
    for name, builder in (("tiny SD (1 CLIP tokenizer)", tiny_sd), ("tiny SD3 (2 CLIP + ByT5)", tiny_sd3)):
        bare = builder()
        pipe = NegOptPipeline(bare, trivial_generator)
        for n in (1, 4):
            prompts = PROMPTS[:n]
            call = dict(num_inference_steps=2, height=32, width=32, output_type="np")
            sent, _ = pipe._prepare({"prompt": prompts, "negative_prompt": USER_NEGATIVE, **call})
            call_s = median_of(partial(bare, **sent), max(3, repeats // 20))
            long_negative = ", ".join(f"extra negative term {i}" for i in range(25))
            cases = [
                ("merge with the user's negative", {"negative_prompt": USER_NEGATIVE}),
                ("over the token limit: trimmed", {"negative_prompt": long_negative}),
            ]
            for case, extra in cases:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    prep_s = median_of(partial(pipe._prepare, {"prompt": prompts, **extra, **call}), repeats)
                print(f"| {name} | {n} | {case} | {prep_s * 1e3:.3f} | {call_s * 1e3:.1f} | {prep_s / call_s:.1%} |")


def generation_table(size: int, steps: int, batch: int, sd15: bool) -> None:
    print(f"\n## Pipeline call vs negative-prompt generation ({batch} prompt(s), {steps} step(s), {size}x{size})\n")
    try:
        from negopt.builtin import BuiltinGenerator

        builtin = BuiltinGenerator()
    except ImportError:
        builtin = None
    t5 = T5SmallShaped()
    prompts = PROMPTS[:batch]
    print(
        "| pipeline | pipeline call (s) | built-in gen (ms) | built-in / call | t5-small-shaped gen (ms) | t5 / call |"
    )
    print("|---|---|---|---|---|---|")
    builders = [("tiny SD", tiny_sd, 64)]
    if sd15:
        builders.append(("SD-1.5-shaped (random weights)", sd15_shaped, size))
    for name, builder, px in builders:
        bare = builder()
        args = dict(num_inference_steps=steps, height=px, width=px, output_type="np")
        negatives = trivial_generator(prompts)
        repeats = 3 if builder is tiny_sd else 1
        bare(prompt=prompts, negative_prompt=negatives, **args)  # warm-up
        call_s = best_of(partial(bare, prompt=prompts, negative_prompt=negatives, **args), repeats)
        if builtin is not None:
            builtin(prompts)
            builtin_s = best_of(partial(builtin, prompts), 20)
            builtin_cells = f"{builtin_s * 1e3:.2f} | {builtin_s / call_s:.2%}"
        else:
            builtin_cells = "n/a (negopt.builtin not importable) | n/a"
        t5(prompts)
        t5_s = best_of(partial(t5, prompts), 3)
        print(f"| {name} ({px}x{px}) | {call_s:.3f} | {builtin_cells} | {t5_s * 1e3:.1f} | {t5_s / call_s:.1%} |")


def sd_with_clip_l_text_encoder():
    """A tiny SD whose text encoder has SD 1.5's shape (CLIP ViT-L/14 text, random weights): only encoding is timed."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel

    tiny = tiny_sd()
    torch.manual_seed(0)
    config = sd15_text_config(tiny.tokenizer)
    return StableDiffusionPipeline(**{**tiny.components, "text_encoder": CLIPTextModel(config).eval()})


def weighting_cost(repeats: int) -> None:
    print('\n## prompt_weighting="a1111": encoding a prompt and its negative, against the pipeline\'s encode_prompt\n')
    print("| pipeline | case | chunks | encode_prompt (ms) | encode_a1111 (ms) | a1111 / encode_prompt |")
    print("|---|---|---|---|---|---|")
    prompt = PROMPTS[0]
    negative = "worst quality, low quality, blurry, watermark"
    weighted_prompt = "a portrait photo of an (old fisherman:1.3), 85mm, [bokeh]"
    weighted_negative = "(worst quality:1.4), ((blurry)), watermark"
    long_negative = ", ".join(f"negative term {i:02d}" for i in range(12))  # over 150 byte-level tokens: 3 chunks
    builders = [
        ("tiny SD", tiny_sd),
        ("tiny SDXL", tiny_sdxl),
        ("SD with SD 1.5's text encoder", sd_with_clip_l_text_encoder),
    ]
    for name, builder in builders:
        pipe = builder()
        cases = [
            ("one chunk, no weights", prompt, negative),
            ("one chunk, weighted", weighted_prompt, weighted_negative),
            ("negative of 3 chunks (diffusers: cut to 1)", prompt, long_negative),
        ]
        for case, p, n in cases:
            with torch.inference_mode():
                base = partial(
                    pipe.encode_prompt,
                    prompt=p,
                    device="cpu",
                    num_images_per_prompt=1,
                    do_classifier_free_guidance=True,
                    negative_prompt=n,
                )
                base_s = median_of(base, repeats)
                ours_s = median_of(partial(encode_a1111, pipe, [[p], [n]]), repeats)
                chunks = encode_a1111(pipe, [[p], [n]])[1][0].shape[1] // 77
            print(f"| {name} | {case} | {chunks} | {base_s * 1e3:.2f} | {ours_s * 1e3:.2f} | {ours_s / base_s:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image side for the SD-1.5-shaped pipeline")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1, help="prompts per call in the table")
    parser.add_argument("--repeats", type=int, default=200, help="timed runs of the wrapper's preparation")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (1 is steadier on a CPU shared with other work)"
    )
    parser.add_argument("--no-sd15", action="store_true", help="skip the SD-1.5-shaped pipeline (slow on a CPU)")
    parser.add_argument(
        "--weighting-only", action="store_true", help="only part 3, prompt_weighting='a1111' against encode_prompt"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine())
    if not args.weighting_only:
        wrapper_cost(args.repeats)
        generation_table(args.size, args.steps, args.batch, not args.no_sd15)
    weighting_cost(max(5, args.repeats // 10))


if __name__ == "__main__":
    main()
