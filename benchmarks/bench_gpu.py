"""GPU benchmark: the generator's one-prompt latency (eager against ``optimize()``) and its share of an SD-1.5 image.

Everything is built in-process with random weights; nothing is downloaded and negopt need not be installed (run
from the repository root with ``PYTHONPATH=src:tests:benchmarks``; ``benchmarks/gpu.sh`` does it). Parts:

1. The generator: a T5 of t5-small's shape (the model of ``bench_generator.py``, with its offline BPE tokenizer)
   writes exactly 32 new tokens for one prompt, greedy. Rows: eager float32 (``NegOptGenerator`` as loaded), eager
   bfloat16/float16 (``optimize(compile=False)``: ``generate`` in half precision, what a user who knows to halve
   precision gets), and the fast path ``optimize()`` (half precision, negopt's greedy decode loop over a static KV
   cache, compiled and replayed as CUDA graphs), whose warm-up time is printed; then a cached repeat. Medians over
   the prompts, all run in this process.
2. An SD-1.5-shaped ``StableDiffusionPipeline`` (random weights, float16, 512x512, 50 steps), bare and wrapped by
   ``NegOptPipeline`` with the fast generator, each prompt new to the generator's cache, interleaved; the
   generator's share of the image time.

``--tiny`` runs the same code on tiny models on the CPU (the compiled path included) to check the script before
spending GPU time. Output lines also go to ``$OUT/gpu.txt`` when ``gpu.sh`` runs it with ``$OUT`` set.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import traceback
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(os.path.dirname(HERE), "src"), os.path.join(os.path.dirname(HERE), "tests"), HERE]

START = time.perf_counter()


def say(line: str = "") -> None:
    print(line, flush=True)


def elapsed() -> float:
    return time.perf_counter() - START


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_generator(tiny: bool, n_new: int):
    from negopt.config import NegOptConfig
    from negopt.generator import NegOptGenerator

    if tiny:
        from tiny import tiny_t5

        model, tokenizer = tiny_t5()
    else:
        from bench_generator import build_model, build_tokenizer

        tokenizer = build_tokenizer(32128)
        model = build_model(32128)
    # Fixed length, so that every row times the same work and the fast path's warm-up compiles the timed shape.
    config = NegOptConfig(generation_kwargs={"max_new_tokens": n_new, "min_new_tokens": n_new})
    gen = NegOptGenerator(model, tokenizer, config)
    gen.set_progress_bar_config(disable=True)
    return gen


def short_prompts(gen) -> list[str]:
    """Prompts of at most 32 tokens: one compiled shape (the fast path pads inputs to a multiple of 32)."""
    from bench_generator import PROMPTS

    pool = PROMPTS + [f"a photo of a cat, number {i}" for i in range(64)]  # for --tiny, whose tokens are bytes
    return [p for p in pool if len(gen.tokenizer(p)["input_ids"]) <= 32]


def time_calls(gen, prompts: list[str], device: torch.device) -> tuple[list[float], list[str]]:
    times, outs = [], []
    for p in prompts:
        sync(device)
        t0 = time.perf_counter()
        outs.append(gen(p))
        sync(device)
        times.append(time.perf_counter() - t0)
    return times, outs


def bench_generator(args, device: torch.device) -> dict:
    from negopt.generator import NegOptGenerator

    n_new = 32
    gen = build_generator(args.tiny, n_new).to(device)
    gen.cache_size = 0  # the latency rows time the model; the cached repeat is measured apart
    prompts = short_prompts(gen)[: args.prompts]
    n_params = sum(p.numel() for p in gen.model.parameters()) / 1e6
    say(f"generator: T5 {'(tiny)' if args.tiny else 'of t5-small shape'}, {n_params:.1f}M parameters, random weights")
    say(f"work: one prompt a call, exactly {n_new} new tokens, greedy; {len(prompts)} prompts of <= 32 tokens")
    results: dict = {}

    gen(prompts[0])  # warm-up: CUDA context, kernels, allocator
    t, ref = time_calls(gen, prompts, device)
    results["eager_fp32"] = median_ms(t)
    say(f"  eager float32 (as loaded):                 median {results['eager_fp32']:8.1f} ms")

    half = "float32" if device.type == "cpu" else ("bfloat16" if torch.cuda.is_bf16_supported() else "float16")
    if device.type == "cuda":
        import copy

        g_half = NegOptGenerator(copy.deepcopy(gen.model), gen.tokenizer, gen.config, cache_size=0)
        g_half.set_progress_bar_config(disable=True)
        g_half.optimize(half, compile=False)
        t, out = time_calls(g_half, prompts, device)
        results["eager_half"] = median_ms(t)
        same = sum(a == b for a, b in zip(out, ref))
        say(
            f"  eager {half} (optimize(compile=False)): median {results['eager_half']:8.1f} ms  "
            f"(same text as float32: {same}/{len(prompts)})"
        )
        del g_half

    try:
        t0 = time.perf_counter()
        gen.optimize(compile=True)  # half precision on a GPU; float32 on the CPU (--tiny)
        warm = time.perf_counter() - t0
        say(f"  fast path warm-up (optimize(): cast, compile and capture the decode loop): {warm:.1f} s")
        time_calls(gen, prompts[:2], device)  # a second warm pass: CUDA graphs record on the first runs of a shape
        t, out = time_calls(gen, prompts, device)
        results["fast"] = median_ms(t)
        same = sum(a == b for a, b in zip(out, ref))
        say(
            f"  fast path ({gen._fast['precision']}, decode loop, compiled):  median {results['fast']:8.1f} ms  "
            f"(min {min(t) * 1000:.1f}; same text as float32: {same}/{len(prompts)})"
        )
        say(
            f"  fast path vs eager float32: {results['eager_fp32'] / results['fast']:.1f}x"
            + (f", vs eager {half}: {results['eager_half'] / results['fast']:.1f}x" if "eager_half" in results else "")
        )
    except Exception:  # keep going: the pipeline part is still worth its GPU minutes
        say("  fast path FAILED:")
        say("    " + traceback.format_exc().strip().replace("\n", "\n    ")[-3000:])

    gen.cache_size = 128
    gen(prompts[0])
    hits = []
    for _ in range(200):
        t0 = time.perf_counter()
        gen(prompts[0])
        hits.append(time.perf_counter() - t0)
    results["cached"] = median_ms(hits)
    say(f"  cached repeat:                             median {results['cached']:8.4f} ms")
    results["gen"] = gen
    results["prompts"] = prompts
    return results


def bench_pipeline(args, device: torch.device, gen_results: dict) -> None:
    from negopt.pipeline import NegOptPipeline

    if args.tiny:
        from tiny_pipelines import tiny_sd

        pipe, size, steps, dtype, label = tiny_sd(), 64, 2, torch.float32, "tiny SD"
    else:
        from tiny_pipelines import sd15_shaped

        pipe, size, steps, dtype, label = sd15_shaped(), args.size, args.steps, torch.float16, "SD-1.5-shaped"
    pipe = pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    gen = gen_results["gen"]
    wrapped = NegOptPipeline(pipe, gen)
    say(f"pipeline: {label} (random weights), {dtype}, {size}x{size}, {steps} steps, 1 image a call")
    call = {"height": size, "width": size, "num_inference_steps": steps, "output_type": "np"}

    def image(p, fn, seed):
        sync(device)
        t0 = time.perf_counter()
        fn(p, generator=torch.Generator(device).manual_seed(seed), **call)
        sync(device)
        return time.perf_counter() - t0

    # Prompts the generator has not seen (each wrapped call pays for one generation), in the compiled bucket.
    fresh = [p for p in short_prompts(gen) if p not in gen_results["prompts"]]
    image(fresh[0], pipe, 0)  # warm-up
    image(fresh[0], wrapped, 0)
    bare, wrap, direct = [], [], []
    for r in range(args.images):
        p = fresh[1 + r % (len(fresh) - 1)]
        gen.clear_cache()
        bare.append(image(p, pipe, r))
        wrap.append(image(p, wrapped, r))
        gen.clear_cache()
        sync(device)
        t0 = time.perf_counter()
        gen([p])
        sync(device)
        direct.append(time.perf_counter() - t0)
    b, w, g = statistics.median(bare), statistics.median(wrap), statistics.median(direct)
    say(f"  bare pipeline:    median {b * 1000:9.1f} ms an image ({args.images} images)")
    say(f"  NegOptPipeline:   median {w * 1000:9.1f} ms an image (new prompt each call: one generation each)")
    say(f"  generator alone:  median {g * 1000:9.1f} ms a prompt (fast path)")
    say(
        f"generator's share of the image: {g / (b + g) * 100:.2f}% (generator alone / (bare + generator)); "
        f"wrapped - bare = {(w - b) * 1000:.1f} ms ({(w - b) / w * 100:.2f}% of the wrapped call)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU: a dry run of the same code")
    parser.add_argument("--prompts", type=int, default=8, help="prompts timed per generator row (8)")
    parser.add_argument("--images", type=int, default=3, help="images per pipeline row (3)")
    parser.add_argument("--size", type=int, default=512, help="image side (512)")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps (50)")
    parser.add_argument("--no-pipeline", action="store_true", help="time the generator only")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")  # random weights: NaN images, over-long negatives; not what is measured

    import diffusers
    import transformers

    if args.tiny:
        device = torch.device("cpu")
        card = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), --tiny dry run"
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --tiny for a CPU dry run")
        device = torch.device("cuda")
        props = torch.cuda.get_device_properties(device)
        card = (
            f"{torch.cuda.get_device_name(device)} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
        )
    say(f"device: {card}")
    say(
        f"machine: {platform.platform()}, python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, diffusers {diffusers.__version__}"
    )
    results = bench_generator(args, device)
    say(f"(generator part done at {elapsed():.0f} s)")
    if not args.no_pipeline:
        try:
            bench_pipeline(args, device, results)
        except Exception:
            say("pipeline part FAILED:")
            say("  " + traceback.format_exc().strip().replace("\n", "\n  ")[-3000:])
    say(f"total wall time: {elapsed():.0f} s")


if __name__ == "__main__":
    main()
