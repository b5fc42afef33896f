#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment in .venv with negopt and its extras.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch first: a package that pulls torch in as a dependency would otherwise bring the large CUDA build.
# TORCH_SPEC overrides it (e.g. TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124").
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  .venv/bin/pip install -q ${TORCH_SPEC:-torch==2.13.0}
fi
if ! .venv/bin/python -c "import negopt, pytest, datasets, torchmetrics" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.negopt-installed ]; then
  .venv/bin/pip install -q -e ".[dev]"
  touch .venv/.negopt-installed
fi
# The tests build the real CLIP tokenizer (49,408 tokens) from the BPE merges that open_clip_torch ships; only that
# data file is used, so the package goes in without its dependencies (torchvision would not import beside torch here).
if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('open_clip') is None)"; then
  .venv/bin/pip install -q --no-deps open_clip_torch==3.3.0
fi
