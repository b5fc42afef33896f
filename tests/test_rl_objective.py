"""The RL objective pinned by exact enumeration on a tiny tabular policy (pure tensors: no model, no trainer).

The policy: a vocabulary of 3 tokens (0 is EOS), sequences of at most 3 tokens, one row of logits per unfinished
prefix. Every sequence is enumerated, so the expected gradient of the trainer's loss (each sequence weighted by its
probability) can be compared with the gradient of the objective the docs state, computed here by another route
(sequence probabilities as products of softmaxes, KLs written out).
"""

from __future__ import annotations

import itertools

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


def _trainer_expected_grad(theta, ref, rewards, loss_type, kl_mode, beta, temperature):
    """sum_y pi(y) grad loss(y): the trainer's functions on every sequence, weighted by its probability."""
    logits, tokens, mask = _batch(theta)
    logp = obj.token_logprobs(logits, tokens, temperature)
    old = logp.detach()
    ref_logp = obj.token_logprobs(_batch(ref)[0], tokens, temperature)
    probs = torch.exp((old * mask).sum(dim=1)).float()
    adv = rewards.float()
    if kl_mode == "reward":
        adv = obj.penalized_rewards(adv, old, ref_logp, mask, beta)
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


def _objective(theta, ref, rewards, loss_type, kl_mode, beta, temperature):
    """The objective J(theta) the docs state (docs/guides/rl.md, rl_objective's docstring); the loss is -J."""
    p, q = _probs(theta, temperature), _probs(ref, temperature)
    pd = {h: v.detach() for h, v in p.items()}
    J = torch.zeros((), dtype=torch.float64)
    for y, r in zip(SEQS, rewards):
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
