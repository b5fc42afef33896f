"""Image rewards: callables ``reward(images=..., prompts=..., negative_prompts=..., **kwargs) -> list[float]``.

One float per image, higher is better. Names load lazily, so ``import negopt.rewards`` is light.

| reward | what it measures |
|---|---|
| :class:`AestheticReward` | LAION improved aesthetic predictor on CLIP ViT-L/14 embeddings (about 1-10) |
| :class:`CLIPScoreReward` | prompt/image alignment, ``100 * max(cos, 0)`` |
| :class:`PickScoreReward` | human-preference alignment (PickScore, a fine-tuned CLIP-H) |
| :class:`HPSv2Reward` | human preference (HPSv2.1, a fine-tuned OpenCLIP ViT-H-14), the cosine of image and prompt |
| :class:`ImageRewardReward` | human preference (ImageReward, BLIP + an MLP head), standardised |
| :class:`InceptionReward` | each image's term of its batch's Inception Score |
| :class:`CompositeReward` | a weighted sum of named rewards, optionally normalised |

:func:`build_reward` builds the composite from ``NAME=WEIGHT`` specs, as ``negopt train rl --reward`` takes them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_LAZY = {
    "AestheticReward": "negopt.rewards.aesthetic",
    "AestheticMLP": "negopt.rewards.aesthetic",
    "CLIPScoreReward": "negopt.rewards.clip",
    "PickScoreReward": "negopt.rewards.clip",
    "InceptionReward": "negopt.rewards.inception",
    "TransformersImageClassifier": "negopt.rewards.inception",
    "HPSv2Reward": "negopt.rewards.hpsv2",
    "ImageRewardReward": "negopt.rewards.imagereward",
    "ImageRewardModel": "negopt.rewards.imagereward",
    "CompositeReward": "negopt.rewards.composite",
    "REWARDS": "negopt.rewards.registry",
    "build_reward": "negopt.rewards.registry",
    "load_reward": "negopt.rewards.registry",
    "parse_reward_spec": "negopt.rewards.registry",
    "parse_reward_specs": "negopt.rewards.registry",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from negopt.rewards.aesthetic import AestheticMLP, AestheticReward  # noqa: F401
    from negopt.rewards.clip import CLIPScoreReward, PickScoreReward  # noqa: F401
    from negopt.rewards.composite import CompositeReward  # noqa: F401
    from negopt.rewards.hpsv2 import HPSv2Reward  # noqa: F401
    from negopt.rewards.imagereward import ImageRewardModel, ImageRewardReward  # noqa: F401
    from negopt.rewards.inception import InceptionReward, TransformersImageClassifier  # noqa: F401
    from negopt.rewards.registry import (  # noqa: F401
        REWARDS,
        build_reward,
        load_reward,
        parse_reward_spec,
        parse_reward_specs,
    )


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'negopt.rewards' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
