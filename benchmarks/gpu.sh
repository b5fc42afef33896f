#!/usr/bin/env bash
# One-go GPU benchmark (see benchmarks/bench_gpu.py): generator batch-1 latency, eager against optimize(), and its
# share of a 50-step SD-1.5-shaped image. Needs torch with CUDA, transformers, diffusers, accelerate and peft; no hub,
# no internet and no negopt install (it runs from the repository's src/). Extra arguments go to bench_gpu.py
# (--tiny: the same code on tiny models on the CPU). When $OUT is set, the output also goes to $OUT/gpu.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="src:tests:benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY="${PYTHON:-$(command -v python || command -v python3)}"
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    "$PY" -u benchmarks/bench_gpu.py "$@" 2>&1 | tee "$OUT/gpu.txt"
else
    "$PY" -u benchmarks/bench_gpu.py "$@" 2>&1
fi
exit "${PIPESTATUS[0]}"
