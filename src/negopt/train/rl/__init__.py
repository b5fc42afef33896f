"""Reinforcement learning of a negative-prompt generator against image rewards (NegOpt's second stage).

``config`` (``RLConfig``, ``RLTrainerState``), ``objective`` (advantages, log-probs, the loss and the KL penalty as
pure tensor functions), ``rollout`` (the policy and its reference; sampling, images, rewards, token log-probs),
``checkpoint`` (checkpoints and the saved generator) and ``trainer`` (``RLTrainer``: the loop, the update, logging).
Names load lazily: ``import negopt.train.rl`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_LAZY = {
    "RLConfig": "negopt.train.rl.config",
    "RLTrainerState": "negopt.train.rl.config",
    "RLTrainer": "negopt.train.rl.trainer",
}

__all__ = ["RLConfig", "RLTrainer", "RLTrainerState"]

if TYPE_CHECKING:  # pragma: no cover
    from negopt.train.rl.config import RLConfig, RLTrainerState
    from negopt.train.rl.trainer import RLTrainer


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'negopt.train.rl' has no attribute {name!r}")
