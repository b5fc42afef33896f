"""A weighted sum of named rewards, with optional per-term normalisation: NegOpt's RL reward.

NegOpt rewards a negative prompt with ``w_a * aesthetics + w_c * CLIP score + w_i * fidelity``; the weights let a user
favour the metric they care about. The terms live on different scales (aesthetics about 1-10, CLIP score about
20-35, Inception terms about 0-5 nats), so ``normalize=True`` standardises each one by its running mean and standard
deviation (Welford's algorithm, updated with every batch scored) before weighting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["CompositeReward", "RunningStats", "validate_weights"]


class RunningStats:
    """Running mean and standard deviation of a stream of numbers (Welford's algorithm, numerically stable)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0

    def update(self, values: list[float]) -> None:
        for value in values:
            self.count += 1
            delta = value - self.mean
            self.mean += delta / self.count
            self._m2 += delta * (value - self.mean)

    @property
    def std(self) -> float:
        """The population standard deviation so far (0 before two values)."""
        return math.sqrt(self._m2 / self.count) if self.count > 1 else 0.0

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "m2": self._m2}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.count, self.mean, self._m2 = int(state["count"]), float(state["mean"]), float(state["m2"])

    def __repr__(self) -> str:
        return f"RunningStats(count={self.count}, mean={self.mean:.4g}, std={self.std:.4g})"


def validate_weights(weights: Mapping[str, Any], valid: list[str] | None = None) -> dict[str, float]:
    """Check reward weights: known names, non-negative finite numbers, not all zero.

    Args:
        weights: Reward name -> weight.
        valid: The names allowed (None: any).

    Returns:
        The weights as floats.

    Raises:
        ValueError: If a name is unknown, a weight is negative, not finite, or every weight is zero.
        TypeError: If a weight is not a number.
    """
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(f"weights must be a non-empty mapping of reward name -> weight, got {weights!r}.")
    out = {}
    for name, weight in weights.items():
        if valid is not None and name not in valid:
            raise ValueError(f"unknown reward {name!r} in weights; valid names: {', '.join(sorted(valid))}.")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise TypeError(f"the weight of reward {name!r} must be a number, got {weight!r}.")
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(
                f"the weight of reward {name!r} must be a finite number >= 0, got {weight!r}; "
                "weights favour terms, they cannot penalise one (leave it out, or give it 0)."
            )
        out[name] = float(weight)
    if not any(out.values()):
        raise ValueError(f"every reward weight is 0 ({out}); give at least one a positive weight.")
    return out


class CompositeReward:
    """``sum_k w_k * f_k(term_k)`` over named rewards, where ``f_k`` is the identity or running standardisation.

    Every call records each term: ``last_terms`` holds the raw scores of the last call (name -> one float per
    image) and ``last_normalized`` the standardised ones (when ``normalize``). Terms whose weight is 0 are not
    computed.

    Args:
        rewards: Name -> reward callable (``reward(images=..., prompts=..., negative_prompts=...) -> list[float]``).
        weights: Name -> weight, for the names of ``rewards`` (default: 1.0 each; a missing name gets 0).
        normalize: Standardise each term by its running mean and std before weighting.
        eps: Added to the std when standardising, so a constant term does not divide by zero.

    Raises:
        ValueError: If a weight names no reward, or the weights are negative, not finite, or all zero.

    Example:
        >>> reward = CompositeReward({"aesthetic": AestheticReward(), "clip": CLIPScoreReward()},
        ...                          {"aesthetic": 1.0, "clip": 0.5}, normalize=True)  # doctest: +SKIP
        >>> reward(images=images, prompts=prompts)  # doctest: +SKIP
        [0.8, -0.3]
        >>> reward.last_terms["clip"]  # doctest: +SKIP
        [31.2, 27.9]
    """

    def __init__(
        self,
        rewards: Mapping[str, Callable[..., list[float]]],
        weights: Mapping[str, float] | None = None,
        *,
        normalize: bool = False,
        eps: float = 1e-6,
    ):
        if not isinstance(rewards, Mapping) or not rewards:
            raise ValueError(f"rewards must be a non-empty mapping of name -> reward callable, got {rewards!r}.")
        for name, reward in rewards.items():
            if not callable(reward):
                raise TypeError(f"reward {name!r} is a {type(reward).__name__}, which is not callable.")
        self.rewards = dict(rewards)
        weights = validate_weights(dict.fromkeys(self.rewards, 1.0) if weights is None else weights, list(rewards))
        self.weights = {name: weights.get(name, 0.0) for name in self.rewards}
        self.normalize = normalize
        self.eps = float(eps)
        self.stats = {name: RunningStats() for name in self.rewards}
        self.last_terms: dict[str, list[float]] = {}
        self.last_normalized: dict[str, list[float]] = {}

    def __call__(self, images=None, prompts=None, negative_prompts=None, **kwargs) -> list[float]:
        """The weighted sum for each image (see :meth:`score` for the terms)."""
        return self.score(images=images, prompts=prompts, negative_prompts=negative_prompts, **kwargs)

    def score(
        self,
        images=None,
        prompts=None,
        negative_prompts=None,
        *,
        return_terms: bool = False,
        update_stats: bool = True,
        **kwargs,
    ) -> list[float] | tuple[list[float], dict[str, list[float]]]:
        """Score a batch.

        Args:
            images: The batch, in any form the rewards take.
            prompts: One prompt per image.
            negative_prompts: One negative prompt per image.
            return_terms: Also return the raw term scores (name -> one float per image).
            update_stats: With ``normalize``, fold this batch into the running statistics before standardising
                (set False to score with frozen statistics, e.g. for evaluation).
            **kwargs: Passed to every reward.

        Returns:
            One float per image; with ``return_terms``, ``(totals, terms)``.

        Raises:
            ValueError: If a reward returns a different number of scores than there are images.
        """
        terms: dict[str, list[float]] = {}
        normalized: dict[str, list[float]] = {}
        totals: list[float] | None = None
        for name, reward in self.rewards.items():
            weight = self.weights[name]
            if weight == 0:
                continue
            scores = reward(images=images, prompts=prompts, negative_prompts=negative_prompts, **kwargs)
            values = [float(v) for v in scores]
            if totals is not None and len(values) != len(totals):
                raise ValueError(f"reward {name!r} returned {len(values)} scores, the others {len(totals)}.")
            terms[name] = values
            if self.normalize:
                stats = self.stats[name]
                if update_stats:
                    stats.update(values)
                values = [(v - stats.mean) / (stats.std + self.eps) for v in values]
                normalized[name] = values
            weighted = [weight * v for v in values]
            totals = weighted if totals is None else [t + w for t, w in zip(totals, weighted)]
        self.last_terms, self.last_normalized = terms, normalized
        totals = totals or []
        return (totals, terms) if return_terms else totals

    def reset_stats(self) -> None:
        """Forget the running statistics."""
        self.stats = {name: RunningStats() for name in self.rewards}

    def state_dict(self) -> dict[str, Any]:
        """The weights and running statistics, for a training checkpoint."""
        return {"weights": dict(self.weights), "stats": {k: s.state_dict() for k, s in self.stats.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the running statistics saved by :meth:`state_dict` (the weights stay as constructed)."""
        for name, stats in state.get("stats", {}).items():
            if name in self.stats:
                self.stats[name].load_state_dict(stats)

    def to(self, device) -> CompositeReward:
        """Move every reward that can move to ``device``; returns self."""
        for reward in self.rewards.values():
            if hasattr(reward, "to"):
                reward.to(device)
        return self

    def __repr__(self) -> str:
        weights = ", ".join(f"{k}={v:g}" for k, v in self.weights.items())
        return f"CompositeReward({weights}, normalize={self.normalize})"
