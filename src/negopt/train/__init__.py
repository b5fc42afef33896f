"""Fine-tuning negative-prompt generators with LoRA: supervised (SFT) and reinforcement learning (RL).

Needs the ``train`` extra: ``pip install "negopt[train]"``. Names load lazily, so ``import negopt.train`` is light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_LAZY = {
    "SFTConfig": "negopt.train.sft.config",
    "SFTResult": "negopt.train.sft.config",
    "SFTTrainer": "negopt.train.sft.trainer",
    "RLConfig": "negopt.train.rl.config",
    "RLTrainer": "negopt.train.rl.trainer",
    "RLTrainerState": "negopt.train.rl.config",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from negopt.train.rl.config import RLConfig
    from negopt.train.rl.trainer import RLTrainer
    from negopt.train.sft.config import SFTConfig, SFTResult
    from negopt.train.sft.trainer import SFTTrainer


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'negopt.train' has no attribute {name!r}")
