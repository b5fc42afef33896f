"""Batch-1 latency alone: eager float32 against ``optimize()`` in float32, bfloat16 and int8, and against
``optimize(backend="ctranslate2")`` in float32 and int8 (1 and 2 threads), on the CPU.

The batch-1 rows of ``bench_generator.py`` without its naive loop and batched call, for a quick reading on a shared
machine: the t5-small-shaped model and tokenizer of ``bench_generator.py`` (random weights), one prompt a call,
exactly 32 new tokens, greedy, with negopt's default repetition control; 8 prompts, the generators interleaved
prompt by prompt so that all see the same load; medians; how many prompts get the same text as float32; what each
``optimize()`` cost in time and in resident memory (the growth of the process's RSS during the call); the load
average before and after. ``optimize("float32")`` is the decode loop alone (the same text as eager, token for token);
bfloat16 and int8 add reduced precision. The CTranslate2 rows need the ctranslate2 extra.

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


def _rss_mb() -> float:
    """This process's resident memory in MB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def main() -> None:
    from negopt.generator import NegOptGenerator

    tok = build_tokenizer(32128)
    model = build_model(32128)
    kw = {"max_new_tokens": 32, "min_new_tokens": 32}
    from negopt import ctranslate2_backend

    options: dict[str, dict] = {f"optimize({p!r})": {"precision": p} for p in ("float32", "bfloat16", "int8")}
    if ctranslate2_backend.available():
        for p, threads in (("float32", 1), ("int8", 1)):
            options[f"ctranslate2 {p}, {threads} thr"] = {"precision": p, "backend": "ctranslate2", "threads": threads}
    gens = {"eager float32": NegOptGenerator(model, tok, cache_size=0)}
    setup: dict[str, tuple[float, float]] = {"eager float32": (0.0, 0.0)}
    for name, opts in options.items():
        g = NegOptGenerator(copy.deepcopy(model), tok, cache_size=0)
        rss, t0 = _rss_mb(), time.perf_counter()
        gens[name] = g.optimize(**opts)
        setup[name] = (time.perf_counter() - t0, _rss_mb() - rss)
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
            f"batch-1 {name:26s}: median {statistics.median(t) * 1000:6.0f} ms over {len(prompts)} prompts, 32 tokens "
            f"({eager / statistics.median(t):.1f}x eager; same text as float32 on {same[name]}/{len(prompts)}; "
            f"optimize() {setup[name][0]:.1f} s, +{setup[name][1]:.0f} MB RSS)"
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
