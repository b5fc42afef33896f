"""Rewards by name, and the ``NAME=WEIGHT`` specs of ``negopt train rl --reward aesthetic=1.0 --reward clip=0.5``.

| name | class | its model argument |
|---|---|---|
| ``aesthetic`` | :class:`~negopt.rewards.AestheticReward` | ``head`` (the MLP head's file, folder or hub id) |
| ``clip`` | :class:`~negopt.rewards.CLIPScoreReward` | ``model`` (a CLIP folder or hub id) |
| ``inception`` | :class:`~negopt.rewards.InceptionReward` | ``classifier`` (an image classifier's folder or hub id) |
| ``pickscore`` | :class:`~negopt.rewards.PickScoreReward` | ``model`` (a CLIP folder or hub id) |
| ``hpsv2`` | :class:`~negopt.rewards.HPSv2Reward` | ``model`` (the checkpoint's file, folder or hub id) |
| ``imagereward`` | :class:`~negopt.rewards.ImageRewardReward` | ``model`` (the checkpoint's file, folder or hub id) |
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from negopt.rewards.composite import CompositeReward, validate_weights

__all__ = ["REWARDS", "load_reward", "parse_reward_spec", "parse_reward_specs", "build_reward"]

# name -> (module, class, the constructor argument a plain model string goes to)
REWARDS: dict[str, tuple[str, str, str]] = {
    "aesthetic": ("negopt.rewards.aesthetic", "AestheticReward", "head"),
    "clip": ("negopt.rewards.clip", "CLIPScoreReward", "model"),
    "inception": ("negopt.rewards.inception", "InceptionReward", "classifier"),
    "pickscore": ("negopt.rewards.clip", "PickScoreReward", "model"),
    "hpsv2": ("negopt.rewards.hpsv2", "HPSv2Reward", "model"),
    "imagereward": ("negopt.rewards.imagereward", "ImageRewardReward", "model"),
}


def _check_name(name: str) -> str:
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; valid names: {', '.join(sorted(REWARDS))}.")
    return name


def load_reward(
    name: str,
    model: str | os.PathLike | Mapping[str, Any] | None = None,
    *,
    device: str | torch.device | None = None,
    **kwargs: Any,
):
    """Build one reward by name.

    Args:
        name: One of ``aesthetic``, ``clip``, ``inception``, ``pickscore``, ``hpsv2``, ``imagereward``.
        model: The reward's model (a folder or hub id, passed to the argument in the module table), or a mapping
            of constructor keyword arguments (e.g. ``{"clip_model": ..., "head": ...}`` for ``aesthetic``).
            None: the reward's defaults.
        device: Where to run it.
        **kwargs: More constructor keyword arguments (hub options such as ``local_files_only``, ``batch_size``).

    Returns:
        The reward callable.

    Raises:
        ValueError: If the name is unknown.
    """
    module, cls_name, model_argument = REWARDS[_check_name(name)]
    cls = getattr(importlib.import_module(module), cls_name)
    arguments = dict(kwargs)
    if isinstance(model, Mapping):
        arguments.update(model)
    elif model is not None:
        arguments[model_argument] = model
    return cls(device=device, **arguments)


def parse_reward_spec(spec: str) -> tuple[str, float]:
    """Parse ``"NAME=WEIGHT"`` (or a bare ``"NAME"``, weight 1.0).

    Raises:
        ValueError: If the name is unknown or the weight is not a finite number >= 0.
    """
    if not isinstance(spec, str):
        raise TypeError(f"a reward spec must be a string like 'aesthetic=1.0', got {spec!r}.")
    name, sep, value = spec.partition("=")
    name = _check_name(name.strip())
    if not sep:
        return name, 1.0
    try:
        weight = float(value)
    except ValueError:
        raise ValueError(
            f"reward spec {spec!r}: the weight {value.strip()!r} is not a number (e.g. {name}=1.0)."
        ) from None
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"reward spec {spec!r}: the weight must be a finite number >= 0, got {weight}.")
    return name, weight


def parse_reward_specs(specs: Iterable[str]) -> dict[str, float]:
    """Parse several ``NAME=WEIGHT`` specs into a weights dict (checked as :func:`build_reward` checks them).

    Raises:
        ValueError: If a name repeats, a spec is malformed, or every weight is 0.
    """
    weights: dict[str, float] = {}
    for spec in specs:
        name, weight = parse_reward_spec(spec)
        if name in weights:
            raise ValueError(f"reward {name!r} is given twice; give each reward once.")
        weights[name] = weight
    return validate_weights(weights, list(REWARDS))


def build_reward(
    weights: Mapping[str, float] | Iterable[str] | str,
    *,
    models: Mapping[str, str | os.PathLike | Mapping[str, Any]] | None = None,
    normalize: bool = False,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> CompositeReward:
    """Build NegOpt's weighted reward from weights by name.

    Args:
        weights: Name -> weight, or ``NAME=WEIGHT`` specs (a list, or one string), as the CLI takes them.
        models: Name -> model for :func:`load_reward` (a folder or hub id, or constructor keyword arguments).
            Names left out use their defaults.
        normalize: Standardise each term by its running mean and std (see :class:`CompositeReward`).
        device: Where to run the rewards.
        **kwargs: Passed to every reward's constructor (hub options: ``revision`` is best given per reward in
            ``models``; ``cache_dir``, ``token``, ``local_files_only``, ``batch_size`` apply to all).

    Returns:
        A :class:`CompositeReward`. Rewards of weight 0 are not loaded.

    Raises:
        ValueError: If a name is unknown, a weight is invalid, or ``models`` names a reward with no weight.

    Example:
        >>> reward = build_reward(["aesthetic=1.0", "clip=0.5"], device="cuda")  # doctest: +SKIP
    """
    if isinstance(weights, str):
        weights = [weights]
    if not isinstance(weights, Mapping):
        weights = parse_reward_specs(weights)
    weights = validate_weights(weights, list(REWARDS))
    models = dict(models or {})
    for name in models:
        _check_name(name)
        if name not in weights:
            raise ValueError(f"models names reward {name!r}, which has no weight; add it to the weights or drop it.")
    rewards = {
        name: load_reward(name, models.get(name), device=device, **kwargs)
        for name, weight in weights.items()
        if weight > 0
    }
    return CompositeReward(rewards, {name: weights[name] for name in rewards}, normalize=normalize)
