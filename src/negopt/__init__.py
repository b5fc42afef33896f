"""negopt: negative prompts written for you.

A small language model (or the built-in, weight-free generator) reads a text-to-image prompt and writes a negative
prompt for it; :class:`NegOptPipeline` drops that into any diffusers pipeline; ``negopt.train`` fine-tunes the model
with LoRA (SFT, then RL against image rewards), following NegOpt (Ogezi & Shi, 2024).

Importing ``negopt`` is light: torch, transformers and diffusers load only when a name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {
    "NegOptGenerator": "negopt.generator",
    "BuiltinGenerator": "negopt.builtin",
    "NegOptPipeline": "negopt.pipeline",
    "NegOptPipelineOutput": "negopt.pipeline",
    "NegOptConfig": "negopt.config",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from negopt.builtin import BuiltinGenerator
    from negopt.config import NegOptConfig
    from negopt.generator import NegOptGenerator
    from negopt.pipeline import NegOptPipeline, NegOptPipelineOutput


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'negopt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
