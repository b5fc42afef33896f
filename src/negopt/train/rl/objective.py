"""The RL objective as pure tensor functions: advantages, token log-probs, the KL penalty and the loss.

No model, no trainer: every function takes tensors and returns tensors, so the exact-reference test
(``tests/test_rl_objective.py``) can enumerate every sequence of a tiny policy and check that the expected gradient of
:func:`policy_loss` is the gradient of the objective written below.

Notation: a prompt ``x``, a sampled negative ``y = (y_1 .. y_T)`` (``T = |y|`` tokens up to and including EOS),
``pi`` the policy being trained, ``pi_old`` the policy that sampled ``y`` (equal to ``pi`` in the first PPO pass),
``pi_ref`` the starting policy, ``r(y)`` the reward, ``s`` the reward's running scale (below), ``A(y)`` the advantage,
``beta = kl_coef``, ``L = max_new_tokens``, ``rho_t = pi(y_t | x, y_<t) / pi_old(y_t | x, y_<t)`` and ``sg`` a
stop-gradient.

The reward's units (:func:`reward_moments`, :func:`reward_scale`): everything below works on ``r / s``, where ``s`` is
the standard deviation of the reward *within* a prompt's group (the spread advantages compare), pooled over the
groups of a step and averaged over the steps before this one (an exponential moving average of the variance, decay
``SCALE_DECAY``; the first step with a spread uses its own)::

    s = max(sqrt(EMA[sum_g sum_i (r_gi - mean_g r)^2 / sum_g (n_g - 1)]), NOISE_RTOL * sqrt(EMA[mean r^2]))  (1 if 0)

So ``beta`` is the price of one nat of KL in within-prompt standard deviations of the reward, whatever its units: a
reward ``a r + b`` (``a > 0``) trains exactly as ``r`` does.

Per-token loss (PPO's clipped surrogate; with one pass ``rho_t = 1`` and its gradient is ``-A grad log pi``)::

    l_t = -min(rho_t A, clip(rho_t, 1 - eps, 1 + eps) A)  [+ beta k3_t   with kl_mode="loss"]
    k3_t = exp(d_t) - d_t - 1,   d_t = log pi_ref(y_t | .) - log pi(y_t | .)

Aggregation (``loss_type``), over the N kept sequences of a step::

    "dr_grpo":  loss = 1/N sum_i  1/L     sum_t l_it      E[grad] = -grad E_pi[A] / L
    "grpo":     loss = 1/N sum_i  1/|y_i| sum_t l_it      E[grad] = -grad E_pi[A(y) / |y|]   (favours short y)

KL penalty (``kl_mode``)::

    "reward":  A is taken from r'(y) = r(y) / s - beta sg[sum_t log pi_old(y_t|.) - log pi_ref(y_t|.)]
               with "dr_grpo" and a baseline that does not depend on y:
               E[grad loss] = -grad (E_pi[r] / s - beta KL(pi || pi_ref)) / L      (KL over whole sequences)
    "loss":    A is taken from r(y) / s, and beta k3_t is in l_t;
               E[grad sum_t k3_t] = sum_t E_{h_t ~ pi}[grad KL(pi_ref(.|h_t) || pi(.|h_t))]
               (the reverse KL at each visited context h_t, the contexts' probabilities not differentiated; GRPO's)

The logged ``kl`` is :func:`sequence_kl` of the mode in use: nats per sequence, the penalty divided by ``beta``
(``"reward"``: what is subtracted from each reward; ``"loss"``: the sum of the k3 terms before aggregation).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

__all__ = [
    "group_advantages",
    "penalized_rewards",
    "policy_loss",
    "reward_moments",
    "reward_scale",
    "running_average",
    "sequence_kl",
    "token_logprobs",
]

# A group_norm group whose standard deviation is below this fraction of its largest |reward| differs only in
# rounding noise: it carries no signal and gets advantage 0 (float32's resolution is ~1.2e-7 relative). The same
# fraction of the reward's root mean square floors its running scale, so rounding noise is never blown up to a unit.
NOISE_RTOL = 1e-5
# Decay of the moving averages behind the reward's scale: about the last ten steps count.
SCALE_DECAY = 0.9


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log softmax(logits / temperature)`` at ``tokens``: ``(B, T, V), (B, T) -> (B, T)``, in float32."""
    logits = logits.float() / float(temperature)
    return torch.gather(logits, -1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    mode: Literal["leave_one_out", "group_norm", "no_negative"],
    baseline: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Advantages within each prompt's group of ``group_size`` consecutive rewards.

    ``leave_one_out``: ``r_i - mean_{j != i} r_j`` (unbiased: the baseline does not depend on ``y_i``).
    ``group_norm``: ``(r_i - mean) / (std + 1e-6)`` (sample std); a group whose std is below ``NOISE_RTOL`` times
    its largest ``|r|`` gets 0. ``no_negative``: ``r_i - baseline[group]``.
    Non-finite rewards are dropped (weight 0); a group with fewer than two finite rewards (``no_negative``: with no
    finite baseline) is skipped.

    Returns:
        ``(advantages, weights, skipped_groups)``: advantages and 0/1 weights flat like ``rewards``.
    """
    r = rewards.float().view(-1, group_size)
    finite = torch.isfinite(r)
    if mode == "no_negative":
        if baseline is None:
            raise ValueError("advantage='no_negative' needs the baseline rewards.")
        ok = finite & torch.isfinite(baseline)[:, None]
        group_ok = ok.any(dim=1)
    else:
        ok = finite
        group_ok = finite.sum(dim=1) >= 2  # a group needs two finite rewards to compare
    ok = ok & group_ok[:, None]
    rz = torch.where(ok, r, torch.zeros_like(r))
    cnt = ok.sum(dim=1, keepdim=True).clamp(min=1)
    mean = rz.sum(dim=1, keepdim=True) / cnt
    if mode == "no_negative":
        adv = rz - torch.nan_to_num(baseline.float(), nan=0.0, posinf=0.0, neginf=0.0)[:, None]
    elif mode == "leave_one_out":
        adv = (rz - mean) * cnt / (cnt - 1).clamp(min=1)
    elif mode == "group_norm":
        var = (((rz - mean) ** 2) * ok).sum(dim=1, keepdim=True) / (cnt - 1).clamp(min=1)
        std = var.sqrt()
        scale = rz.abs().amax(dim=1, keepdim=True)
        adv = torch.where(std > NOISE_RTOL * scale, (rz - mean) / (std + 1e-6), torch.zeros_like(rz))
    else:
        raise ValueError(f"advantage must be 'leave_one_out', 'group_norm' or 'no_negative', got {mode!r}.")
    adv = torch.where(ok, adv, torch.zeros_like(adv))
    return adv.flatten(), ok.flatten().float(), int((~group_ok).sum())


def reward_moments(rewards: torch.Tensor, group_size: int) -> list[float]:
    """What the reward's scale is made of, over the finite rewards of groups with at least two of them.

    Returns:
        ``[ss, dof, sum_sq, count]``: the sum of squared deviations from each group's own mean, its degrees of
        freedom ``sum_g (n_g - 1)``, the sum of squared rewards and their count. Sums, so that processes add them up;
        ``ss / dof`` is the pooled within-group variance, ``sum_sq / count`` the mean square.
    """
    r = rewards.double().view(-1, group_size)
    ok = torch.isfinite(r)
    ok = ok & (ok.sum(dim=1, keepdim=True) >= 2)
    rz = torch.where(ok, r, torch.zeros_like(r))
    n = ok.sum(dim=1, keepdim=True)
    mean = rz.sum(dim=1, keepdim=True) / n.clamp(min=1)
    ss = float((((rz - mean) ** 2) * ok).sum())
    return [ss, float((n - 1).clamp(min=0).sum()), float((rz**2).sum()), float(ok.sum())]


def reward_scale(variance: float | None, mean_square: float | None) -> float:
    """``s = max(sqrt(variance), NOISE_RTOL * sqrt(mean_square))``, the unit rewards are divided by; 1 when that is 0
    or unknown (no spread and no reward seen: the rewards' differences are then 0 in any unit)."""
    spread = math.sqrt(max(variance or 0.0, 0.0))
    floor = NOISE_RTOL * math.sqrt(max(mean_square or 0.0, 0.0))
    s = max(spread, floor)
    return s if s > 0 and math.isfinite(s) else 1.0


def running_average(average: float | None, value: float, decay: float = SCALE_DECAY) -> float:
    """``decay * average + (1 - decay) * value``; ``value`` itself when there is no average yet."""
    return value if average is None else decay * average + (1 - decay) * value


def sequence_kl(
    logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, kl_mode: Literal["reward", "loss"]
) -> torch.Tensor:
    """Each sequence's KL estimate in nats, ``(B,)``: the penalty of ``kl_mode`` divided by ``kl_coef``.

    ``"reward"``: ``sum_t log pi(y_t) - log pi_ref(y_t)`` (k1; its mean over ``y ~ pi`` is ``KL(pi || pi_ref)``).
    ``"loss"``: ``sum_t k3_t`` (each term >= 0).
    """
    d = ref_logp - logp
    per_tok = -d if kl_mode == "reward" else torch.exp(d) - d - 1
    return (per_tok * mask).sum(dim=1)


def penalized_rewards(
    rewards: torch.Tensor,
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    scale: float = 1.0,
) -> torch.Tensor:
    """``r / scale - kl_coef * sum_t (log pi - log pi_ref)``, detached: what ``kl_mode="reward"`` takes advantages
    of (``scale`` is :func:`reward_scale`'s ``s``)."""
    kl = sequence_kl(logp.detach().float(), ref_logp.detach().float(), mask.float(), "reward")
    return rewards.float() / float(scale) - kl_coef * kl.to(rewards.device)


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    weights: torch.Tensor,
    *,
    loss_type: Literal["dr_grpo", "grpo"],
    max_new_tokens: int,
    num_sequences: float,
    clip_range: float = 0.2,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of one pass over a rollout (see the module docstring for the formulas).

    Args:
        logp: ``(B, T)`` log-probs of the sampled tokens under the policy (with gradient).
        old_logp: ``(B, T)`` the same under the sampling policy (no gradient).
        mask: ``(B, T)`` 1 for the tokens of each sequence (up to and including EOS), 0 for padding.
        advantages: ``(B,)`` one advantage per sequence.
        weights: ``(B,)`` 1 for kept sequences, 0 for dropped ones.
        loss_type: ``"dr_grpo"`` or ``"grpo"``.
        max_new_tokens: ``L``, the constant ``"dr_grpo"`` divides by.
        num_sequences: ``N``, the number of kept sequences of the whole step (all processes).
        clip_range: PPO's ``eps``.
        ref_logp: ``(B, T)`` log-probs under the reference: given, the k3 penalty is added to the loss
            (``kl_mode="loss"``).
        kl_coef: ``beta`` of that penalty.

    Returns:
        ``(loss, stats)``; ``stats["clipped"]`` is the 0/1 ``(B, T)`` mask of tokens whose ratio was clipped.
    """
    mask = mask.float()
    adv = advantages.float().to(logp.device)[:, None]
    ratio = torch.exp(logp - old_logp)
    clipped = torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    per_tok = -torch.min(ratio * adv, clipped * adv)
    if ref_logp is not None and kl_coef:
        d = ref_logp - logp
        per_tok = per_tok + kl_coef * (torch.exp(d) - d - 1)
    if loss_type == "dr_grpo":
        per_seq = (per_tok * mask).sum(dim=1) / float(max_new_tokens)
    elif loss_type == "grpo":
        per_seq = (per_tok * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    else:
        raise ValueError(f"loss_type must be 'dr_grpo' or 'grpo', got {loss_type!r}.")
    loss = (per_seq * weights.float().to(per_seq.device)).sum() / max(float(num_sequences), 1.0)
    return loss, {"clipped": ((ratio - clipped).abs() > 0).float().detach() * mask}
