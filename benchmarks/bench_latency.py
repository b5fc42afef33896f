"""Batch-1 latency alone: eager float32 against ``optimize()`` in float32, bfloat16 and int8, on the CPU.

The batch-1 rows of ``bench_generator.py`` without its naive loop and batched call, for a quick reading on a shared
machine: the t5-small-shaped model and tokenizer of ``bench_generator.py`` (random weights), one prompt a call,
exactly 32 new tokens, greedy, with negopt's default repetition control; 8 prompts, the four generators interleaved
prompt by prompt so that all see the same load; medians; how many prompts get the same text as float32; the load
average before and after. ``optimize("float32")`` is the decode loop alone (the same text as eager, token for token);
the other two add reduced precision.

Run: ``python benchmarks/bench_latency.py`` from the repository root.
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_generator import PROMPTS, build_model, build_tokenizer  # noqa: E402


def main() -> None:
    from negopt.generator import NegOptGenerator

    tok = build_tokenizer(32128)
    model = build_model(32128)
    kw = {"max_new_tokens": 32, "min_new_tokens": 32}
    gens = {"eager float32": NegOptGenerator(model, tok, cache_size=0)}
    for precision in ("float32", "bfloat16", "int8"):
        gens[f"optimize({precision!r})"] = NegOptGenerator(copy.deepcopy(model), tok, cache_size=0).optimize(precision)
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); load average {os.getloadavg()}"
    )
    times: dict[str, list[float]] = {k: [] for k in gens}
    same = dict.fromkeys(gens, 0)
    prompts = PROMPTS[::8][:8]
    for p in prompts:
        ref = None
        for name, gen in gens.items():
            t0 = time.perf_counter()
            out = gen(p, **kw)
            times[name].append(time.perf_counter() - t0)
            ref = out if ref is None else ref
            same[name] += out == ref
    eager = statistics.median(times["eager float32"])
    for name, t in times.items():
        print(
            f"batch-1 {name:22s}: median {statistics.median(t) * 1000:6.0f} ms over {len(prompts)} prompts, 32 tokens "
            f"({eager / statistics.median(t):.1f}x eager; same text as float32 on {same[name]}/{len(prompts)})"
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
