#!/usr/bin/env bash
# One-go GPU benchmark. 1. benchmarks/bench_gpu.py: generator batch-1 latency, eager against optimize(), and its share
# of a 50-step SD-1.5-shaped image. 2. benchmarks/bench_nag.py: one denoising step with NAG against the bare step and
# true CFG, on an SD-1.5-shaped UNet (512x512) and a full-depth Flux-shaped transformer (19 + 38 blocks, 1024x1024),
# bfloat16. Needs torch with CUDA, transformers, diffusers, accelerate and peft; no hub, no internet and no negopt
# install (it runs from the repository's src/). Extra arguments go to bench_gpu.py (--tiny: both scripts on tiny
# models on the CPU, a dry run). When $OUT is set, the output also goes to $OUT/gpu.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="src:tests:benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY="${PYTHON:-$(command -v python || command -v python3)}"
NAG_ARGS=(--device cuda --sd-size 512 --flux-size 1024 --flux-blocks 19,38 --repeats 5)
for arg in "$@"; do
    if [ "$arg" = "--tiny" ]; then NAG_ARGS=(--tiny --repeats 2); fi
done
run() {
    "$PY" -u benchmarks/bench_gpu.py "$@" 2>&1
    first=$?
    echo
    echo "== NAG: a denoising step with Normalized Attention Guidance (bench_nag.py ${NAG_ARGS[*]}) =="
    "$PY" -u benchmarks/bench_nag.py "${NAG_ARGS[@]}" 2>&1
    second=$?
    [ "$first" -ne 0 ] && return "$first"
    return "$second"
}
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    run "$@" | tee "$OUT/gpu.txt"
else
    run "$@"
fi
exit "${PIPESTATUS[0]}"
