"""``NegOptGenerator`` and the parts it is built from.

``core`` holds the class; ``inputs`` turns prompts into model inputs and generation settings; ``saving`` is the mixin
that saves, carries model cards and pushes to the hub; ``cache`` is the result cache and the model-state key it
checks; ``fastpath`` is what :meth:`NegOptGenerator.optimize` installs (the greedy decode loop, the CTranslate2
backend). Names load lazily: ``import negopt.generator`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_LAZY = {
    "NegOptGenerator": "negopt.generator.core",
    "ADAPTER_CONFIG_NAME": "negopt.generator.core",
    "DEFAULT_MAX_INPUT_TOKENS": "negopt.generator.core",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from negopt.generator.core import ADAPTER_CONFIG_NAME, DEFAULT_MAX_INPUT_TOKENS, NegOptGenerator


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'negopt.generator' has no attribute {name!r}")
