"""Reinforcement learning of a negative-prompt generator against image rewards (NegOpt's second stage).

The code lives in five modules: :mod:`negopt.train.rl_config` (``RLConfig``, ``RLTrainerState``),
:mod:`negopt.train.rl_objective` (advantages, log-probs, the loss and the KL penalty as pure tensor functions),
:mod:`negopt.train.rl_rollout` (the policy and its reference; sampling, images, rewards, token log-probs),
:mod:`negopt.train.rl_checkpoint` (checkpoints and the saved generator) and :mod:`negopt.train.rl_trainer`
(``RLTrainer``: the loop, the update, logging). This module re-exports the public names, so
``from negopt.train.rl import RLConfig, RLTrainer`` keeps working.
"""

from __future__ import annotations

from negopt.train.rl_config import RLConfig, RLTrainerState
from negopt.train.rl_trainer import RLTrainer

__all__ = ["RLConfig", "RLTrainer", "RLTrainerState"]
