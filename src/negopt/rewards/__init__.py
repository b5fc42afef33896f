"""Image rewards: callables ``reward(images=..., prompts=..., negative_prompts=..., **kwargs) -> list[float]``.

One float per image, higher is better. Names load lazily, so ``import negopt.rewards`` is light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_LAZY = {
    "AestheticReward": "negopt.rewards.aesthetic",
    "CLIPScoreReward": "negopt.rewards.clip",
    "InceptionReward": "negopt.rewards.inception",
    "CompositeReward": "negopt.rewards.composite",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from negopt.rewards.aesthetic import AestheticReward
    from negopt.rewards.clip import CLIPScoreReward
    from negopt.rewards.composite import CompositeReward
    from negopt.rewards.inception import InceptionReward


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'negopt.rewards' has no attribute {name!r}")
