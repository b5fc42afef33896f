"""RLTrainer's own update, driven on a real tiny T5 and checked against the loss written out by hand.

``tests/test_rl_objective.py`` pins the objective's maths on pure tensors; these tests run the trainer's
``step()`` and ``_update()`` themselves (its wiring: which log-probs, which reference, the reward's scale, the
penalty, the advantages, the step's sequence count, the PPO passes) with plain SGD, so that a parameter's change is
exactly ``-lr`` times the gradient the trainer took, and compare it with an independent computation. They also pin
what the reward's scale is for: a reward in other units trains identically, and a small reward learns with the
default penalty.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import pytest
import torch

from negopt.train import RLConfig, RLTrainer
from rl_worker import MAX_NEW_TOKENS, PROMPTS, LetterReward, adapter_state, make_config, make_generator
from tiny_pipelines import tiny_sd

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    # The tests swap in an SGD optimizer; the trainer's schedule still steps the AdamW it was built with.
    pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before"),
]

DEFAULTS = {f.name: f.default for f in dataclasses.fields(RLConfig)}


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return str(tmp_path_factory.mktemp("base") / "seq2seq")


def _trainer(pipe, base, out, reward, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return RLTrainer(
            make_config(str(out), **overrides),
            generator=make_generator("seq2seq", base),
            pipeline=pipe,
            reward=reward,
            prompts=PROMPTS,
        )


def _trainable(trainer) -> list[torch.nn.Parameter]:
    return [p for p in trainer.model.parameters() if p.requires_grad]


def _use_sgd(trainer, lr: float) -> None:
    """Plain SGD instead of AdamW: a parameter then moves by exactly ``-lr`` times the gradient of the loss."""
    trainer.optimizer = torch.optim.SGD(_trainable(trainer), lr=lr)


def _fixed_rollout(trainer, lengths: list[int]):
    """Step 0's sampled rollout, each negative cut after ``lengths[i]`` tokens by an EOS (a random tiny T5 seldom
    samples EOS, and the length is what ``grpo`` divides by); as ``generate`` does, the batch is as wide as its
    longest negative. Any token sequence is one the policy could sample: the update's maths holds for it."""
    rollout = trainer.sampler.sample(0)
    eos, pad = trainer.sampler.eos_token_ids[0], trainer.sampler.pad_token_id
    width = max(lengths)
    responses = rollout.responses[:, :width].clone()
    mask = torch.zeros_like(responses)
    for i, n in enumerate(lengths):
        responses[i, n - 1] = eos
        responses[i, n:] = pad
        mask[i, :n] = 1
    return dataclasses.replace(rollout, responses=responses, response_mask=mask)


def _move_off_reference(trainer, seed: int = 0) -> None:
    """Random LoRA B matrices: the policy differs from its reference (the adapter disabled), so the KL is not 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


class FixedReward:
    """Rewards fixed by position in the step (one NaN), in [0, 1] and close together, as image rewards often are."""

    def __init__(self, values):
        self.values = values

    def __call__(self, images, prompts, negative_prompts, **kwargs):
        extra = len(images) - len(self.values)  # with baseline_image: each prompt's image with no negative last
        return list(self.values) + BASELINE[:extra]


REWARDS = [0.31, float("nan"), 0.30, 0.33, 0.29, 0.32, 0.30, 0.35]  # two prompts x four candidates
BASELINE = [0.315, 0.30]  # the two prompts' images with no negative


# ---------------------------------------------------------------------------------------------- the reference
def _logprobs(trainer, rollout, *, reference: bool = False) -> torch.Tensor:
    """Log-probs of the sampled tokens, written out for T5: the decoder reads the start token and the sample."""
    policy, k = trainer._policy, trainer.config.num_candidates
    ids = rollout.enc_ids.repeat_interleave(k, dim=0)
    mask = rollout.enc_mask.repeat_interleave(k, dim=0)
    dec = torch.cat([rollout.decoder_start, rollout.responses[:, :-1]], dim=1)
    if reference:
        with torch.no_grad(), policy.disable_adapter():
            logits = policy(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    else:
        logits = policy(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    logits = logits.float() / trainer.config.generation_kwargs["temperature"]
    return torch.log_softmax(logits, dim=-1).gather(-1, rollout.responses[..., None]).squeeze(-1)


def _pooled_std(values: list[float], k: int) -> float:
    """The within-prompt standard deviation, pooled over groups (finite values only, groups of two or more)."""
    ss = dof = 0.0
    for g in range(0, len(values), k):
        group = [v for v in values[g : g + k] if math.isfinite(v)]
        if len(group) >= 2:
            mean = sum(group) / len(group)
            ss += sum((v - mean) ** 2 for v in group)
            dof += len(group) - 1
    return math.sqrt(ss / dof)


def _advantages(scored: list[float], k: int, mode: str, baseline: list[float]) -> list[float]:
    out = []
    for g in range(0, len(scored), k):
        group = scored[g : g + k]
        finite = [v for v in group if math.isfinite(v)]
        mean = sum(finite) / len(finite)
        std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
        for v in group:
            if not math.isfinite(v):
                out.append(0.0)
            elif mode == "leave_one_out":  # minus the mean of the group's other finite rewards
                out.append(v - (sum(finite) - v) / (len(finite) - 1))
            elif mode == "group_norm":
                out.append((v - mean) / (std + 1e-6))
            else:  # no_negative: minus the prompt's image with no negative, in the same units
                out.append(v - baseline[g // k])
    return out


def _surrogate(ratio: torch.Tensor, adv: float, eps: float) -> torch.Tensor:
    """PPO's clipped objective per token, in its piecewise form: a gain is capped at 1 + eps, a loss at 1 - eps."""
    if adv >= 0:
        return torch.minimum(ratio, torch.full_like(ratio, 1 + eps)) * adv
    return torch.maximum(ratio, torch.full_like(ratio, 1 - eps)) * adv


def _hand_loss(cfg, logp, old, ref, mask, adv, num_sequences, *, clip: bool = True) -> torch.Tensor:
    """The step's loss as the RL guide writes it (docs/guides/rl.md, "The objective")."""
    total = torch.zeros(())
    eps, beta = cfg.clip_range, cfg.kl_coef
    for i, a in enumerate(adv):
        if i in DROPPED:
            continue
        m = mask[i].bool()
        ratio = torch.exp(logp[i][m] - old[i][m])
        gain = _surrogate(ratio, a, eps) if clip else ratio * a
        per_token = -gain
        if cfg.kl_mode == "loss":
            d = ref[i][m] - logp[i][m]
            per_token = per_token + beta * (torch.exp(d) - d - 1)
        denominator = MAX_NEW_TOKENS if cfg.loss_type == "dr_grpo" else int(m.sum())
        total = total + per_token.sum() / denominator
    return total / num_sequences


DROPPED = {i for i, v in enumerate(REWARDS) if not math.isfinite(v)}


def _expected_step(trainer, rollout, lr: float, *, clip: bool = True) -> tuple[list[torch.Tensor], dict]:
    """The parameters after ``ppo_epochs`` SGD passes of the written-out loss, computed on the live model and then
    put back as they were."""
    cfg, k = trainer.config, trainer.config.num_candidates
    params = _trainable(trainer)
    start = [p.detach().clone() for p in params]
    mask = rollout.response_mask.float()
    with torch.no_grad():
        old = _logprobs(trainer, rollout)
    ref = _logprobs(trainer, rollout, reference=True)
    scale = _pooled_std(REWARDS, k)  # the first step's scale is its own
    scored = [r / scale for r in REWARDS]
    if cfg.kl_mode == "reward":
        kl = ((old - ref) * mask).sum(dim=1).tolist()
        scored = [s - cfg.kl_coef * d for s, d in zip(scored, kl)]
    adv = _advantages(scored, k, cfg.advantage, [b / scale for b in BASELINE])
    n = len(REWARDS) - len(DROPPED)
    info = {"scale": scale, "clip_binds": 0, "tokens": 0}
    for epoch in range(cfg.ppo_epochs):
        logp = _logprobs(trainer, rollout)
        if epoch:  # where the clipped objective's gradient is zero: a gain past 1 + eps, a loss past 1 - eps
            ratio = torch.exp(logp.detach() - old)
            a = torch.tensor(adv)[:, None]
            binds = ((ratio > 1 + cfg.clip_range) & (a > 0)) | ((ratio < 1 - cfg.clip_range) & (a < 0))
            info["clip_binds"] += int((binds * mask).sum())
            info["tokens"] += int(mask.sum())
        grads = torch.autograd.grad(_hand_loss(cfg, logp, old, ref, mask, adv, n, clip=clip), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= lr * g
    after = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, s in zip(params, start):
            p.copy_(s)
    return after, info


# ---------------------------------------------------------------------------------------------- the tests
@pytest.mark.parametrize(
    ("kl_mode", "loss_type", "advantage"),
    [("reward", "dr_grpo", "group_norm"), ("loss", "grpo", "leave_one_out"), ("reward", "grpo", "no_negative")],
)
def test_a_step_is_the_written_out_update_with_ppo_clipping(
    tmp_path, monkeypatch, pipe, base, kl_mode, loss_type, advantage
):
    """``trainer.step()`` with two PPO passes: the second pass's ratios are away from 1 and clipping binds on some
    tokens, and the parameters end where the hand-written clipped loss (rewards over their scale, the penalty, the
    advantages, one NaN dropped, negatives of several lengths) takes them."""
    lr = 0.02
    trainer = _trainer(
        pipe,
        base,
        tmp_path,
        FixedReward(REWARDS),
        ppo_epochs=2,
        clip_range=0.25,
        kl_coef=0.3,
        kl_mode=kl_mode,
        loss_type=loss_type,
        advantage=advantage,
        max_grad_norm=None,
    )
    _move_off_reference(trainer)
    _use_sgd(trainer, lr)
    rollout = _fixed_rollout(trainer, [3, 9, 5, 10, 2, 7, 10, 4])  # shorter than max_new_tokens=12
    monkeypatch.setattr(trainer.sampler, "sample", lambda step: rollout)
    expected, info = _expected_step(trainer, rollout, lr)
    unclipped, _ = _expected_step(trainer, rollout, lr, clip=False)
    with pytest.warns(RuntimeWarning, match="1 of 8 rewards"):
        metrics = trainer.step()

    assert 0 < info["clip_binds"] < info["tokens"]  # clipping is active, not everywhere
    assert metrics["clip_fraction"] > 0
    assert metrics["reward_scale"] == pytest.approx(info["scale"], rel=1e-5)
    assert metrics["reward/mean"] == pytest.approx(sum(r for r in REWARDS if math.isfinite(r)) / 7)  # raw units
    if advantage == "no_negative":
        assert metrics["reward/no_negative"] == pytest.approx(sum(BASELINE) / 2)
    got = [p.detach() for p in _trainable(trainer)]
    moved = max(float((e - u).abs().max()) for e, u in zip(expected, unclipped))
    assert moved > 1e-3  # the clipped and the unclipped update differ: the comparison below can tell them apart
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=2e-5, rtol=1e-4)


def test_update_divides_by_the_step_count_of_all_processes(tmp_path, pipe, base):
    """``_update`` takes the number of kept sequences of the whole step (all processes): this process's share of the
    loss is its sum over that count, not over its own kept sequences."""
    lr = 0.5
    trainer = _trainer(pipe, base, tmp_path, LetterReward(), kl_coef=0.0, max_grad_norm=None)
    _move_off_reference(trainer, seed=1)
    _use_sgd(trainer, lr)
    rollout = trainer.sampler.sample(0)
    logp = trainer.sampler.token_logprobs(trainer.model, rollout)
    old = logp.detach()
    adv = torch.tensor([0.5, -1.0, 0.25, 0.25, 2.0, -0.5, -1.5, 0.0])
    weight = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0])  # 7 kept here
    global_kept = 19.0  # and 12 more on other processes
    params = _trainable(trainer)
    start = [p.detach().clone() for p in params]
    mask = rollout.response_mask.float()
    hand = (
        sum(-(adv[i] * logp[i] * mask[i]).sum() / MAX_NEW_TOKENS for i in range(len(adv)) if weight[i]) / global_kept
    )
    grads = torch.autograd.grad(hand, params, retain_graph=True)

    trainer._update(rollout, logp, old, None, adv, weight, global_kept)

    for p, s, g in zip(params, start, grads):
        torch.testing.assert_close(p.detach(), s - lr * g, atol=1e-6, rtol=1e-5)
    assert max(float(g.abs().max()) for g in grads) > 1e-3


class HiddenLetters:
    """A learnable reward hidden from the model: the share of the negative's characters that are vowels, over a
    quarter of the token budget; values in [0, 0.25], candidates of a prompt differ by about 0.02 at the start."""

    def __call__(self, images, prompts, negative_prompts, **kwargs):
        return [0.25 * sum(c in "aeiou" for c in n) / MAX_NEW_TOKENS for n in negative_prompts]


class Rescaled(HiddenLetters):
    """The same reward in other units: ``40 r + 3``."""

    def __call__(self, images, prompts, negative_prompts, **kwargs):
        return [40.0 * v + 3.0 for v in super().__call__(images, prompts, negative_prompts)]


@pytest.mark.parametrize("kl_mode", ["reward", "loss"])
def test_a_reward_in_other_units_trains_identically(tmp_path, pipe, base, kl_mode):
    """The penalty's strength (and the update) does not depend on the reward's units: ``40 r + 3`` trains as ``r``."""
    runs = []
    for i, reward in enumerate((HiddenLetters(), Rescaled())):
        trainer = _trainer(pipe, base, tmp_path / str(i), reward, max_steps=4, kl_coef=0.05, kl_mode=kl_mode)
        trainer.train()
        runs.append((adapter_state(trainer), trainer.log_history))
    (a, log_a), (b, log_b) = runs
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=1e-3)  # float32 rounding of 40 r + 3 only
    assert log_a[-1]["kl"] == pytest.approx(log_b[-1]["kl"], rel=1e-3) and log_a[-1]["kl"] > 0.01  # it acts
    assert log_b[-1]["reward_scale"] == pytest.approx(40 * log_a[-1]["reward_scale"], rel=1e-4)


def _greedy_reward(trainer, reward) -> float:
    from transformers import GenerationConfig

    ids, mask = trainer.sampler.encode(PROMPTS)
    config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        num_return_sequences=1,
        max_new_tokens=MAX_NEW_TOKENS,
        pad_token_id=trainer.sampler.pad_token_id,
        eos_token_id=trainer.sampler.eos_token_ids,
        decoder_start_token_id=trainer.generation_config.decoder_start_token_id,
    )
    with torch.no_grad():
        out = trainer._policy.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    texts = trainer.tokenizer.batch_decode(out[:, 1:], skip_special_tokens=True)
    values = reward(images=[None] * len(texts), prompts=PROMPTS, negative_prompts=texts)
    return sum(values) / len(values)


def test_a_small_reward_learns_with_the_default_penalty(tmp_path, pipe, base):
    """Rewards in [0, 0.25] that differ by about 0.02 within a prompt: with the default penalty the greedy negative
    goes from no vowel to all vowels in 15 steps (before the reward's scale, the penalty's noise swamped the signal
    and it stayed at 0, after 40 steps too)."""
    reward = HiddenLetters()
    trainer = _trainer(
        pipe,
        base,
        tmp_path,
        reward,
        max_steps=15,
        learning_rate=1e-2,
        kl_coef=DEFAULTS["kl_coef"],
        kl_mode=DEFAULTS["kl_mode"],
        advantage=DEFAULTS["advantage"],
        loss_type=DEFAULTS["loss_type"],
    )
    assert trainer.config.kl_coef > 0
    assert _greedy_reward(trainer, reward) == 0.0
    trainer.train()
    assert _greedy_reward(trainer, reward) > 0.9 * 0.25, [m["reward/mean"] for m in trainer.log_history]
