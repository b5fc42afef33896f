"""Fine-tuning negative-prompt generators with LoRA: supervised (SFT) and reinforcement learning (RL).

Needs the ``train`` extra: ``pip install "negopt[train]"``. Names load lazily, so ``import negopt.train`` is light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_LAZY = {
    "SFTConfig": "negopt.train.sft_config",
    "SFTResult": "negopt.train.sft_config",
    "SFTTrainer": "negopt.train.sft",
    "RLConfig": "negopt.train.rl_config",
    "RLTrainer": "negopt.train.rl_trainer",
    "RLTrainerState": "negopt.train.rl_config",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from negopt.train.rl_config import RLConfig
    from negopt.train.rl_trainer import RLTrainer
    from negopt.train.sft import SFTTrainer
    from negopt.train.sft_config import SFTConfig, SFTResult


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'negopt.train' has no attribute {name!r}")
