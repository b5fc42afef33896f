"""The RL objective pinned by exact enumeration on a tiny tabular policy (pure tensors: no model, no trainer).

The policy: a vocabulary of 3 tokens (0 is EOS), sequences of at most 3 tokens, one row of logits per unfinished
prefix. Every sequence is enumerated, so the expected gradient of the trainer's loss (each sequence weighted by its
probability) can be compared with the gradient of the objective the docs state, computed here by another route
(sequence probabilities as products of softmaxes, KLs written out).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from negopt.train.rl import objective as obj

V, L, EOS = 3, 3, 0
PREFIXES = [(), (1,), (2,), (1, 1), (1, 2), (2, 1), (2, 2)]
ROW = {h: i for i, h in enumerate(PREFIXES)}
SEQS = [(0,)] + [(a, 0) for a in (1, 2)] + [(a, b, c) for a in (1, 2) for b in (1, 2) for c in range(V)]
assert len(SEQS) == 15


def _tables(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(len(PREFIXES), V, generator=g, dtype=torch.float64).requires_grad_(True)
    ref = torch.randn(len(PREFIXES), V, generator=g, dtype=torch.float64)
    rewards = torch.randn(len(SEQS), generator=g, dtype=torch.float64)
    return theta, ref, rewards


def _batch(table: torch.Tensor, seqs=SEQS):
    """``(logits (B, L, V), tokens (B, L), mask (B, L))`` of the sequences, padded to L (padding rows: the root's)."""
    logits, tokens, mask = [], [], []
    for y in seqs:
        rows = [ROW[y[:t]] for t in range(len(y))] + [0] * (L - len(y))
        logits.append(table[rows])
        tokens.append(list(y) + [EOS] * (L - len(y)))
        mask.append([1.0] * len(y) + [0.0] * (L - len(y)))
    return torch.stack(logits), torch.tensor(tokens), torch.tensor(mask)


def _probs(table: torch.Tensor, temperature: float) -> dict:
    """Next-token distribution of every prefix, written out."""
    return {h: torch.softmax(table[ROW[h]] / temperature, dim=-1) for h in PREFIXES}


def _seq_prob(p: dict, y) -> torch.Tensor:
    out = torch.ones((), dtype=torch.float64)
    for t in range(len(y)):
        out = out * p[y[:t]][y[t]]
    return out


def _reach(p: dict, h) -> torch.Tensor:
    """Probability that sampling reaches the unfinished prefix h."""
    return _seq_prob(p, h)


def _trainer_expected_grad(theta, ref, rewards, loss_type, kl_mode, beta, temperature, scale=1.0):
    """sum_y pi(y) grad loss(y): the trainer's functions on every sequence, weighted by its probability."""
    logits, tokens, mask = _batch(theta)
    logp = obj.token_logprobs(logits, tokens, temperature)
    old = logp.detach()
    ref_logp = obj.token_logprobs(_batch(ref)[0], tokens, temperature)
    probs = torch.exp((old * mask).sum(dim=1)).float()
    adv = rewards.float() / scale
    if kl_mode == "reward":
        adv = obj.penalized_rewards(rewards.float(), old, ref_logp, mask, beta, scale)
    loss, _ = obj.policy_loss(
        logp,
        old,
        mask,
        adv,
        probs,  # as weights: the expectation over sequences
        loss_type=loss_type,
        max_new_tokens=L,
        num_sequences=1,
        ref_logp=ref_logp if kl_mode == "loss" else None,
        kl_coef=beta,
    )
    (grad,) = torch.autograd.grad(loss, theta)
    return grad


def _objective(theta, ref, rewards, loss_type, kl_mode, beta, temperature, scale=1.0):
    """The objective J(theta) the docs state (docs/guides/rl.md, rl_objective's docstring); the loss is -J. The
    reward counts in units of its scale s: E[r] / s - beta KL."""
    p, q = _probs(theta, temperature), _probs(ref, temperature)
    pd = {h: v.detach() for h, v in p.items()}
    J = torch.zeros((), dtype=torch.float64)
    for y, r in zip(SEQS, rewards / scale):
        pi_y, ref_y = _seq_prob(p, y), _seq_prob(q, y)
        w = 1.0 / L if loss_type == "dr_grpo" else 1.0 / len(y)
        if kl_mode == "reward" and loss_type == "grpo":
            # The penalty is part of the length-weighted reward, its log-ratio fixed at sampling.
            r = r - beta * torch.log(pi_y.detach() / ref_y)
        J = J + w * pi_y * r
        if kl_mode == "loss" and loss_type == "grpo":
            # k3 at each token, averaged over the sequence's tokens, sequences weighted by their (fixed) probability.
            k3 = sum(
                (q[y[:t]][y[t]] / p[y[:t]][y[t]]) - torch.log(q[y[:t]][y[t]] / p[y[:t]][y[t]]) - 1
                for t in range(len(y))
            )
            J = J - beta * _seq_prob(pd, y) * k3 / len(y)
    if kl_mode == "reward" and loss_type == "dr_grpo":
        # KL(pi || pi_ref) over whole sequences.
        kl = sum(_seq_prob(p, y) * torch.log(_seq_prob(p, y) / _seq_prob(q, y)) for y in SEQS)
        J = J - beta * kl / L
    if kl_mode == "loss" and loss_type == "dr_grpo":
        # The reverse KL(pi_ref || pi) at each prefix, prefixes weighted by how often sampling reaches them.
        for h in PREFIXES:
            kl = (q[h] * torch.log(q[h] / p[h])).sum()
            J = J - beta * _reach(pd, h) * kl / L
    return J


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("kl_mode", ["none", "reward", "loss"])
@pytest.mark.parametrize("loss_type", ["dr_grpo", "grpo"])
def test_expected_gradient_is_the_stated_objectives(loss_type, kl_mode, temperature):
    theta, ref, rewards = _tables()
    beta = 0.0 if kl_mode == "none" else 0.3
    mine = _trainer_expected_grad(theta, ref, rewards, loss_type, kl_mode, beta, temperature)
    (expected,) = torch.autograd.grad(-_objective(theta, ref, rewards, loss_type, kl_mode, beta, temperature), theta)
    torch.testing.assert_close(mine.double(), expected, atol=1e-5, rtol=0)
    assert expected.abs().max() > 1e-2  # a real gradient, not two zeros


@pytest.mark.parametrize("kl_mode", ["reward", "loss"])
def test_the_penalty_is_priced_in_units_of_the_reward_scale(kl_mode):
    """Rewards in small units (spread 0.02) over their scale s: the expected gradient is that of
    E[r] / s - beta KL, which is the same as for the rewards in unit spread: the penalty's strength does not depend
    on the reward's units. Without the scale, the KL term would be 50 times stronger here."""
    theta, ref, rewards = _tables()
    small, scale = 0.02 * rewards + 0.5, 0.02
    mine = _trainer_expected_grad(theta, ref, small, "dr_grpo", kl_mode, 0.3, 1.0, scale)
    (expected,) = torch.autograd.grad(-_objective(theta, ref, small, "dr_grpo", kl_mode, 0.3, 1.0, scale), theta)
    torch.testing.assert_close(mine.double(), expected, atol=1e-5, rtol=0)
    # The offset 0.5 / s is a constant: with dr_grpo it leaves the expected gradient alone, so this equals the
    # unit-spread case exactly.
    unit = _trainer_expected_grad(theta, ref, rewards, "dr_grpo", kl_mode, 0.3, 1.0)
    torch.testing.assert_close(mine, unit, atol=1e-5, rtol=0)
    raw = _trainer_expected_grad(theta, ref, small, "dr_grpo", kl_mode, 0.3, 1.0)  # the old, unit-bound penalty
    assert (raw - unit).abs().max() > 1e-2


def test_reward_scale_is_the_pooled_within_group_spread():
    nan = float("nan")
    rewards = torch.tensor([0.30, 0.32, nan, 0.31, 0.5, 0.5, 0.5, 0.5, nan, nan, nan, 0.9])
    ss, dof, sum_sq, count = obj.reward_moments(rewards, 4)
    # Group 1: 0.30, 0.32, 0.31 about 0.31, two degrees of freedom; group 2 no spread, three; group 3 has one
    # finite reward and counts for nothing.
    assert ss == pytest.approx(0.01**2 + 0.01**2, rel=1e-5) and dof == 5 and count == 7  # float32 rewards
    assert sum_sq == pytest.approx(0.30**2 + 0.32**2 + 0.31**2 + 4 * 0.25, rel=1e-6)
    assert obj.reward_scale(ss / dof, sum_sq / count) == pytest.approx(math.sqrt(0.0002 / 5), rel=1e-5)
    # Rounding noise is not blown up to a unit: the floor is NOISE_RTOL of the reward's root mean square.
    assert obj.reward_scale(0.0, 4.0) == pytest.approx(2e-5)
    assert obj.reward_scale(None, None) == 1.0 and obj.reward_scale(0.0, 0.0) == 1.0
    assert obj.running_average(None, 3.0) == 3.0
    assert obj.running_average(3.0, 5.0) == pytest.approx(0.9 * 3 + 0.1 * 5)


# ------------------------------------------------------------------------------------------------------ PPO passes
def _clip_case():
    """Every sequence, a policy moved away from the one that sampled (ratios well off 1 both ways), advantages of
    both signs."""
    theta, _, rewards = _tables(4)
    g = torch.Generator().manual_seed(5)
    old_table = (theta + 0.6 * torch.randn(theta.shape, generator=g, dtype=torch.float64)).detach()
    return theta, old_table, rewards - rewards.mean()


def _clipped_objective(theta, old_table, adv, loss_type, eps, num_sequences, weights):
    """PPO's clipped surrogate written out per token from the two policies' next-token tables, in its piecewise
    form: a positive advantage's ratio counts up to 1 + eps, a negative one's down to 1 - eps."""
    p, p_old = _probs(theta, 1.0), _probs(old_table, 1.0)
    J = torch.zeros((), dtype=torch.float64)
    for y, a, w in zip(SEQS, adv, weights):
        terms = []
        for t in range(len(y)):
            rho = p[y[:t]][y[t]] / p_old[y[:t]][y[t]]
            terms.append(torch.clamp(rho, max=1 + eps) * a if a >= 0 else torch.clamp(rho, min=1 - eps) * a)
        J = J + w * sum(terms) / (L if loss_type == "dr_grpo" else len(y))
    return J / num_sequences


@pytest.mark.parametrize("loss_type", ["dr_grpo", "grpo"])
def test_ppo_clipping_is_the_clipped_objective(loss_type):
    """A later PPO pass (ratio away from 1): the loss and its gradient are those of the clipped surrogate, and
    clipping binds on some tokens (there the token's gradient is 0)."""
    theta, old_table, adv = _clip_case()
    eps = 0.2
    logits, tokens, mask = _batch(theta)
    logp = obj.token_logprobs(logits, tokens)
    old = obj.token_logprobs(_batch(old_table)[0], tokens)
    weights = torch.ones(len(SEQS))
    loss, stats = obj.policy_loss(
        logp, old, mask, adv, weights, loss_type=loss_type, max_new_tokens=L, num_sequences=len(SEQS), clip_range=eps
    )
    (mine,) = torch.autograd.grad(loss, theta, retain_graph=True)
    J = _clipped_objective(theta, old_table, adv, loss_type, eps, len(SEQS), weights)
    (expected,) = torch.autograd.grad(-J, theta)
    torch.testing.assert_close(loss.double(), -J.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(mine.double(), expected, atol=1e-6, rtol=0)
    # The case exercises clipping: tokens clipped in both directions, and some where clipping binds.
    ratio = torch.exp(logp - old).detach()
    a = adv[:, None]
    binds = (((ratio > 1 + eps) & (a > 0)) | ((ratio < 1 - eps) & (a < 0))) & mask.bool()
    assert binds.sum() >= 3 and ((ratio > 1 + eps) & mask.bool()).any() and ((ratio < 1 - eps) & mask.bool()).any()
    unclipped = -(torch.exp(logp - old) * adv[:, None].float() * mask).sum() / L / len(SEQS)
    (plain,) = torch.autograd.grad(unclipped, theta)
    assert (plain.double() - expected).abs().max() > 1e-2  # clipping changes the gradient: the check can see it
    # stats["clipped"] counts every token whose ratio left [1 - eps, 1 + eps], whether clipping binds there or not.
    assert torch.equal(stats["clipped"].bool(), (((ratio - 1).abs() > eps) & mask.bool()))


def test_the_loss_is_a_share_of_the_whole_step():
    """num_sequences is the step's kept count over all processes, not this batch's: a process's loss is its kept
    sequences' sum over that count (dropped ones, weight 0, add nothing)."""
    theta, old_table, adv = _clip_case()
    logits, tokens, mask = _batch(theta)
    logp = obj.token_logprobs(logits, tokens)
    old = obj.token_logprobs(_batch(old_table)[0], tokens)
    weights = torch.tensor([1.0, 0.0] * 7 + [1.0])  # 8 of the 15 kept here
    step_count = 21  # with 13 more on other processes
    loss, _ = obj.policy_loss(
        logp, old, mask, adv, weights, loss_type="dr_grpo", max_new_tokens=L, num_sequences=step_count
    )
    J = _clipped_objective(theta, old_table, adv, "dr_grpo", 0.2, step_count, weights)
    torch.testing.assert_close(loss.double(), -J.detach(), atol=1e-6, rtol=0)
    assert abs(float(loss.detach()) * (step_count / 8 - 1)) > 1e-2  # dividing by the 8 kept here would show


def test_the_two_aggregations_differ_by_the_length_weight():
    """grpo's per-sequence mean is E[A / |y|]: with a reward that does not depend on y its gradient still pushes
    towards shorter sequences; dr_grpo's is then exactly 0."""
    theta, ref, _ = _tables(1)
    ones = torch.ones(len(SEQS), dtype=torch.float64)
    dr = _trainer_expected_grad(theta, ref, ones, "dr_grpo", "none", 0.0, 1.0)
    grpo = _trainer_expected_grad(theta, ref, ones, "grpo", "none", 0.0, 1.0)
    torch.testing.assert_close(dr.double(), torch.zeros_like(dr.double()), atol=1e-6, rtol=0)
    # -grad(loss) raises the root's EOS logit: the one-token sequence gets likelier.
    assert -grpo[ROW[()], EOS] > 1e-3


def test_k3_in_the_loss_is_the_reverse_kl_not_the_forward_one():
    """GRPO's k3 term has the expected gradient of KL(pi_ref || pi), which differs from KL(pi || pi_ref)'s."""
    theta, ref, rewards = _tables(2)
    zero = torch.zeros_like(rewards)
    mine = _trainer_expected_grad(theta, ref, zero, "dr_grpo", "loss", 1.0, 1.0)
    p, q = _probs(theta, 1.0), _probs(ref, 1.0)
    pd = {h: v.detach() for h, v in p.items()}
    forward = sum(_reach(pd, h) * (p[h] * torch.log(p[h] / q[h])).sum() for h in PREFIXES) / L
    (g_forward,) = torch.autograd.grad(forward, theta)
    assert (mine.double() - g_forward).abs().max() > 1e-2


def test_leave_one_out_is_unbiased():
    """Groups of two iid samples, leave-one-out advantages: the expected gradient is that of E[r] / L (the other
    sample's reward is a baseline that does not depend on the sample)."""
    theta, ref, rewards = _tables(3)
    pairs = list(itertools.product(range(len(SEQS)), repeat=2))
    seqs = [SEQS[i] for pair in pairs for i in pair]
    logits, tokens, mask = _batch(theta, seqs)
    logp = obj.token_logprobs(logits, tokens)
    seq_p = torch.exp((logp.detach() * mask).sum(dim=1)).view(-1, 2)
    pair_p = (seq_p[:, 0] * seq_p[:, 1]).repeat_interleave(2)
    r = torch.stack([rewards[i] for pair in pairs for i in pair]).float()
    adv, weight, skipped = obj.group_advantages(r, 2, "leave_one_out")
    assert skipped == 0 and weight.sum() == len(seqs)
    # Each group is a step of N = 2 sequences, weighted by its probability.
    loss, _ = obj.policy_loss(
        logp, logp.detach(), mask, adv, pair_p, loss_type="dr_grpo", max_new_tokens=L, num_sequences=2
    )
    (mine,) = torch.autograd.grad(loss, theta)
    p = _probs(theta, 1.0)
    (expected,) = torch.autograd.grad(-sum(_seq_prob(p, y) * r for y, r in zip(SEQS, rewards)) / L, theta)
    torch.testing.assert_close(mine.double(), expected, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------------ advantages
def test_advantages():
    nan = float("nan")
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, nan, 1.0, 1.0, 5.0])
    adv, weight, skipped = obj.group_advantages(rewards, 4, "leave_one_out")
    # Leave-one-out: each reward minus the mean of the other finite rewards of its prompt.
    expected = [1 - 3, 2 - 8 / 3, 3 - 7 / 3, 4 - 2, 0.0, 1 - 3, 1 - 3, 5 - 1]
    torch.testing.assert_close(adv, torch.tensor(expected))
    assert weight.tolist() == [1, 1, 1, 1, 0, 1, 1, 1] and skipped == 0

    adv, _, _ = obj.group_advantages(rewards, 4, "group_norm")
    g0 = torch.tensor([1.0, 2.0, 3.0, 4.0])
    torch.testing.assert_close(adv[:4], (g0 - g0.mean()) / (g0.std() + 1e-6))

    adv, weight, skipped = obj.group_advantages(rewards, 4, "no_negative", torch.tensor([2.0, nan]))
    torch.testing.assert_close(adv[:4], g0 - 2)
    assert weight[4:].sum() == 0 and skipped == 1  # no finite no-negative reward to compare with

    _, weight, skipped = obj.group_advantages(
        torch.tensor([nan, nan, nan, 1.0, 1.0, 2.0, 3.0, 4.0]), 4, "leave_one_out"
    )
    assert weight[:4].sum() == 0 and skipped == 1  # one finite reward: nothing to compare it with


def test_group_norm_ignores_rounding_noise():
    """Rewards that differ only in float32 rounding carry no signal: advantage 0, not +-0.5."""
    one = torch.tensor(1.0)
    up, down = torch.nextafter(one, torch.tensor(2.0)), torch.nextafter(one, torch.tensor(0.0))
    noisy = torch.stack([one, up, one, down, one * 300, one * 300, one * 301, one * 299])
    adv, weight, _ = obj.group_advantages(noisy, 4, "group_norm")
    assert adv[:4].tolist() == [0.0, 0.0, 0.0, 0.0] and weight[:4].tolist() == [1, 1, 1, 1]
    assert adv[6] > 0.5 and adv[7] < -0.5  # a real spread, even at a large scale, still counts


def test_sequence_kl_units():
    """The logged kl is per sequence: the k1 sum (reward mode) or the k3 sum (loss mode) over its tokens."""
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.9]]))
    ref = torch.log(torch.tensor([[0.25, 0.25, 0.1]]))
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    k1 = obj.sequence_kl(logp, ref, mask, "reward")
    torch.testing.assert_close(k1, torch.log(torch.tensor([2.0])))
    k3 = obj.sequence_kl(logp, ref, mask, "loss")
    torch.testing.assert_close(k3, torch.tensor([0.5 - torch.log(torch.tensor(0.5)).item() - 1]))
    r = obj.penalized_rewards(torch.tensor([1.0]), logp, ref, mask, 0.5)
    torch.testing.assert_close(r, 1 - 0.5 * k1)
