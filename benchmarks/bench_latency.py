"""Batch-1 latency alone: eager float32 against ``optimize()`` in float32, bfloat16 and int8, and against
``optimize(backend="ctranslate2")`` in float32 and int8 (1 and 2 threads), on the CPU.

The batch-1 rows of ``bench_generator.py`` without its naive loop and batched call, for a quick reading on a shared
machine: the t5-small-shaped model and tokenizer of ``bench_generator.py`` (random weights), one prompt a call,
exactly 32 new tokens, greedy, with negopt's default repetition control; 8 prompts, the generators interleaved
prompt by prompt so that all see the same load; medians; how many prompts get the same text as float32; what each
``optimize()`` cost in time and in resident memory (the growth of the process's RSS during the call); the load
average before and after. ``optimize("float32")`` is the decode loop alone (the same text as eager, token for token);
bfloat16 and int8 add reduced precision. The CTranslate2 rows need the ctranslate2 extra.

With ``--causal``, a causal model instead: a GPT-2 of distilgpt2's shape (6 layers, 768 wide, vocabulary 50,257,
random weights, the tokenizer of the tests), eager float32 against ``optimize("int8", backend="ctranslate2")``, once
with negopt's default repetition control (which keeps a causal model's calls in torch: transformers counts the prompt
in it) and once with ``repetition_penalty=1.0, no_repeat_ngram_size=0`` (which CTranslate2 runs).

Run: ``python benchmarks/bench_latency.py [--causal]`` from the repository root.
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


def _time(gens: dict, prompts: list[str], kw: dict) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Each generator on each prompt, interleaved prompt by prompt; times and agreement with the first's text."""
    times: dict[str, list[float]] = {k: [] for k in gens}
    same = dict.fromkeys(gens, 0)
    for p in prompts:
        ref = None
        for name, gen in gens.items():
            t0 = time.perf_counter()
            out = gen(p, **kw)
            times[name].append(time.perf_counter() - t0)
            ref = out if ref is None else ref
            same[name] += out == ref
    return times, same


def _print_rows(title: str, times: dict, same: dict, n: int, width: int, setup: dict | None = None) -> None:
    """One line a generator: median, ratio to eager float32, agreement with it, and ``optimize()``'s cost."""
    eager = statistics.median(times["eager float32"])
    for name, t in times.items():
        cost = "" if setup is None else f"; optimize() {setup[name][0]:.1f} s, {setup[name][1]:+.0f} MB RSS"
        print(
            f"{title}batch-1 {name:{width}s}: median {statistics.median(t) * 1000:5.0f} ms over {n} prompts, 32 "
            f"tokens ({eager / statistics.median(t):.1f}x eager; same text as float32 on {same[name]}/{n}{cost})"
        )


def causal() -> None:
    """The ``--causal`` table."""
    import warnings

    from transformers import GPT2Config, GPT2LMHeadModel

    from negopt.generator import NegOptGenerator

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from tiny import tiny_gpt2_tokenizer

    tok = tiny_gpt2_tokenizer()
    eos = tok.eos_token_id
    config = GPT2Config(n_embd=768, n_layer=6, n_head=12, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).eval()
    eager = NegOptGenerator(model, tok, cache_size=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the warning that negopt's defaults stay in torch: the first table shows it
        fast = NegOptGenerator(copy.deepcopy(model), tok, cache_size=0).optimize("int8", backend="ctranslate2")
    prompts = PROMPTS[::8][:8]
    lengths = [len(r) for r in eager.encode_prompts(prompts)]
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); load average {os.getloadavg()}"
    )
    print(f"model: GPT-2 of distilgpt2's shape, random weights; prompts of {min(lengths)}-{max(lengths)} tokens")
    for title, extra in (
        ("negopt's defaults", {}),
        ("no repetition control", {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0}),
    ):
        kw = {"max_new_tokens": 32, "min_new_tokens": 32, **extra}
        times, same = _time({"eager float32": eager, "ctranslate2 int8": fast}, prompts, kw)
        _print_rows(f"{title}: ", times, same, len(prompts), 16)


def main() -> None:
    if "--causal" in sys.argv[1:]:
        return causal()
    from negopt.generator import NegOptGenerator
    from negopt.generator.fastpath import ctranslate2 as ctranslate2_backend

    tok = build_tokenizer(32128)
    model = build_model(32128)
    kw = {"max_new_tokens": 32, "min_new_tokens": 32}
    options: dict[str, dict] = {f"optimize({p!r})": {"precision": p} for p in ("float32", "bfloat16", "int8")}
    threads: dict[str, dict] = {}
    if ctranslate2_backend.available():
        for p in ("float32", "int8"):
            options[f"ctranslate2 {p}, 1 thread"] = {"precision": p, "backend": "ctranslate2", "threads": 1}
        threads["ctranslate2 int8, 2 threads"] = {"precision": "int8", "backend": "ctranslate2", "threads": 2}
    else:
        print("(ctranslate2 is not installed: no backend='ctranslate2' rows; pip install 'negopt[ctranslate2]')")
    gens = {"eager float32": NegOptGenerator(model, tok, cache_size=0)}
    setup: dict[str, tuple[float, float]] = {"eager float32": (0.0, 0.0)}

    def build(name: str, opts: dict) -> None:
        g = NegOptGenerator(copy.deepcopy(model), tok, cache_size=0)
        rss, t0 = _rss_mb(), time.perf_counter()
        gens[name] = g.optimize(**opts)
        setup[name] = (time.perf_counter() - t0, _rss_mb() - rss)

    for name, opts in options.items():
        build(name, opts)
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); load average {os.getloadavg()}"
    )
    prompts = PROMPTS[::8][:8]
    groups = [("", dict(gens))]
    if threads:
        # A CTranslate2 model on 2 threads keeps OpenMP threads that slow the torch rows on a 2-CPU machine: it is
        # made after the first table, and timed against eager float32 and the 1-thread model only.
        groups.append(("threads: ", {k: g for k, g in gens.items() if k == "eager float32" or "int8, 1" in k}))
    for title, group in groups:
        if title:
            for name, opts in threads.items():
                build(name, opts)
                group[name] = gens[name]
        times, same = _time(group, prompts, kw)
        _print_rows(title, times, same, len(prompts), 28, setup)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
