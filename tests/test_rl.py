"""RLConfig / RLTrainer: real tiny T5, GPT-2 and Stable Diffusion, built in-process; no hub."""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings

import pytest
import torch

from negopt.generator import NegOptGenerator
from negopt.train import RLConfig, RLTrainer
from negopt.train.rl.checkpoint import latest_checkpoint, list_checkpoints
from rl_worker import (
    PROMPTS,
    LetterReward,
    adapter_state,
    brightness_reward,
    make_config,
    make_generator,
)
from tiny_pipelines import tiny_sd  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "rl_worker.py")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd()


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("bases")
    return {kind: str(root / kind) for kind in ("seq2seq", "causal")}


def _env():
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(HERE), "src")
    env["PYTHONPATH"] = os.pathsep.join([src, HERE, env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _trainer(pipe, bases, out, kind="seq2seq", reward=None, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return RLTrainer(
            make_config(str(out), **overrides),
            generator=make_generator(kind, bases[kind]),
            pipeline=pipe,
            reward=reward or LetterReward(),
            prompts=PROMPTS,
        )


# ------------------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_candidates": 1}, "num_candidates"),
        ({"max_steps": 0}, "max_steps"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"clip_range": 1.5}, "clip_range"),
        ({"advantage": "mean"}, "advantage"),
        ({"generation_kwargs": {"top_p": 0.9}}, "top_p"),
        ({"generation_kwargs": {"temperature": 0}}, "temperature"),
        ({"pipeline_kwargs": {"negative_prompt": "x"}}, "negative_prompt"),
        ({"kl_coef": -1.0}, "kl_coef"),
    ],
)
def test_config_rejects_bad_values(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        RLConfig(output_dir=str(tmp_path), **kwargs)


def test_config_from_dict_lists_valid_keys(tmp_path):
    with pytest.raises(ValueError, match=r"unknown RLConfig keys \['lr'\].*learning_rate"):
        RLConfig.from_dict({"output_dir": str(tmp_path), "lr": 1e-4})
    cfg = RLConfig(output_dir=str(tmp_path), advantage="no_negative", generation_kwargs={"max_new_tokens": 8})
    assert cfg.baseline_image is True
    assert cfg.generation_kwargs == {"max_new_tokens": 8, "temperature": 1.0}
    assert RLConfig.from_dict(cfg.to_dict()) == cfg


def test_guidance_scale_one_warns(tmp_path):
    with pytest.warns(UserWarning, match="guidance_scale"):
        RLConfig(output_dir=str(tmp_path), pipeline_kwargs={"guidance_scale": 1.0}, negative_guidance="cfg")
    # "auto" (the default): guidance off may be where NAG acts; decided, and warned about, with the pipeline.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        cfg = RLConfig(output_dir=str(tmp_path), pipeline_kwargs={"guidance_scale": 1.0})
    assert cfg.guidance == {"negative_guidance": "auto", "nag_scale": None, "nag_tau": None, "nag_alpha": None,
                            "nag_end": None}  # fmt: skip
    with pytest.raises(ValueError, match=r"nag_alpha.*\[0, 1\]"):
        RLConfig(output_dir=str(tmp_path), nag_alpha=2.0)
    with pytest.raises(ValueError, match="negative_guidance"):
        RLConfig(output_dir=str(tmp_path), negative_guidance="none")


def test_from_dict_types_values_as_eval_does(tmp_path):
    """YAML reads 1e-4 as a string and "no" is a truthy string: from_dict types both, and refuses what is neither."""
    cfg = RLConfig.from_dict(
        {"output_dir": str(tmp_path), "learning_rate": "1e-4", "cpu": "no", "max_steps": "3", "kl_coef": 0}
    )
    assert cfg.learning_rate == 1e-4 and isinstance(cfg.learning_rate, float)
    assert cfg.cpu is False and cfg.max_steps == 3
    assert RLConfig.from_dict({"output_dir": str(tmp_path), "cpu": "yes"}).cpu is True
    with pytest.raises(ValueError, match=r"cpu: 'maybe' is not a valid bool .*yes/no"):
        RLConfig.from_dict({"output_dir": str(tmp_path), "cpu": "maybe"})
    with pytest.raises(ValueError, match=r"learning_rate: 'fast' is not a valid float"):
        RLConfig.from_dict({"output_dir": str(tmp_path), "learning_rate": "fast"})
    with pytest.raises(ValueError, match=r"unknown RLConfig keys \['batchsize', 'lr'\]; valid keys: .*batch_size"):
        RLConfig.from_dict({"output_dir": str(tmp_path), "lr": 1e-4, "batchsize": 2})


def test_pipeline_kwargs_follow_the_eval_rule(tmp_path):
    # return_dict=False would hand back a tuple; the trainer reads .images, as eval does.
    with pytest.raises(ValueError, match=r"pipeline_kwargs sets \['return_dict'\]"):
        RLConfig(output_dir=str(tmp_path), pipeline_kwargs={"return_dict": False})
    with pytest.warns(UserWarning, match=r"guidance_scale=0.5 <= 1") as record:
        RLConfig(output_dir=str(tmp_path), pipeline_kwargs={"guidance_scale": 0.5}, negative_guidance="cfg")
    assert record[0].filename == __file__  # the warning points at the user's line


def test_public_names_are_the_same_objects_from_every_home():
    """``negopt.train`` (lazy) and ``negopt.train.rl`` hand out the classes of the modules that define them."""
    import negopt.train as train
    from negopt.train import rl
    from negopt.train.rl import config as rl_config
    from negopt.train.rl import trainer as rl_trainer

    for name, home in (("RLConfig", rl_config), ("RLTrainerState", rl_config), ("RLTrainer", rl_trainer)):
        assert getattr(train, name) is getattr(rl, name) is getattr(home, name)
    assert set(rl.__all__) == {"RLConfig", "RLTrainer", "RLTrainerState"}


def test_prompt_sources(tmp_path):
    from negopt.train.rl.trainer import _load_prompts

    f = tmp_path / "prompts.txt"
    f.write_text("a cat\n\n  a dog  \n", encoding="utf-8")
    assert _load_prompts(str(f)) == ["a cat", "a dog"]
    datasets = pytest.importorskip("datasets")
    assert _load_prompts(datasets.Dataset.from_dict({"prompt": ["x", "y"]})) == ["x", "y"]
    # Any other file (or a hub id) keeps only the prompts of NegOpt's train split, as `negopt train rl` does.
    from negopt.data import split_of

    many = [f"a photo of thing {i}" for i in range(60)]
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in many), encoding="utf-8")
    train = [p for p in many if split_of(p) == "train"]
    assert 0 < len(train) < len(many)
    assert _load_prompts(str(jsonl)) == train
    with pytest.raises(FileNotFoundError, match=r"no such file: .*missing\.txt"):
        _load_prompts(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="no prompts in list"):
        _load_prompts(["", "  "])
    with pytest.raises(ValueError, match=r"item 1: the prompt 3 is a int, not text"):
        _load_prompts(["ok", 3])


def test_a_generator_without_negopt_config_is_typed_by_its_model(tmp_path):
    """A bare (model, tokenizer) pair: seq2seq or causal is read from the model (negopt.hub.model_type_of), and a
    model with no language-modelling head is refused by name."""
    import types

    from transformers import T5Config, T5EncoderModel

    from negopt.train.rl.rollout import build_policy
    from tiny import tiny_gpt2, tiny_t5

    config = make_config(str(tmp_path))
    for build, kind in ((tiny_t5, "seq2seq"), (tiny_gpt2, "causal")):
        model, tok = build(0)
        _, _, gcfg, name, _ = build_policy(types.SimpleNamespace(model=model, tokenizer=tok), config)
        assert (gcfg.model_type, name) == (kind, "default")
    encoder = T5EncoderModel(T5Config(vocab_size=32, d_model=8, d_kv=4, num_heads=2, d_ff=8, num_layers=1))
    with pytest.raises(ValueError, match="the generator's model has class T5EncoderModel"):
        build_policy(types.SimpleNamespace(model=encoder, tokenizer=None), config)


# ------------------------------------------------------------------------------------------------------ sampling
def _tiny_bart():
    """A tiny BART whose generation_config forces BOS first and EOS last, and sets a minimum length (as
    bart-large-cnn's), a repetition penalty and suppressed tokens: none of it may act while RL samples."""
    import types

    from transformers import BartConfig, BartForConditionalGeneration, ByT5Tokenizer

    from negopt.config import NegOptConfig

    tok = ByT5Tokenizer()
    torch.manual_seed(0)
    model = BartForConditionalGeneration(
        BartConfig(
            vocab_size=len(tok),
            d_model=16,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            max_position_embeddings=128,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            bos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.eos_token_id,
        )
    ).eval()
    gc = model.generation_config
    gc.forced_eos_token_id, gc.forced_bos_token_id, gc.min_length = tok.eos_token_id, 5, 6
    gc.no_repeat_ngram_size, gc.repetition_penalty, gc.suppress_tokens = 2, 1.5, [7, 8]
    return types.SimpleNamespace(model=model, tokenizer=tok, config=NegOptConfig(model_type="seq2seq"))


@pytest.mark.parametrize("kind", ["seq2seq", "bart", "causal"])
def test_sampler_and_trainer_logprobs_agree(tmp_path, pipe, bases, kind):
    """The update's log-probs are those of the distribution the negatives were drawn from, token by token, whatever
    the model's own generation_config says (BART's forced EOS would give the sampler log-prob 0 to a token the
    trainer scores at about -6)."""
    gen = _tiny_bart() if kind == "bart" else make_generator(kind, bases[kind])
    own = gen.model.generation_config.to_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        trainer = RLTrainer(
            make_config(str(tmp_path), generation_kwargs={"max_new_tokens": 10, "temperature": 0.7}),
            generator=gen,
            pipeline=pipe,
            reward=LetterReward(),
            prompts=PROMPTS,
        )
    assert gen.model.generation_config.to_dict() == own  # the caller's model is untouched
    with torch.no_grad():  # make the adapter matter, so a wrong adapter/position handling shows
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    rollout = trainer.sampler.sample(0)
    mine = trainer.sampler.token_logprobs(trainer.model, rollout)
    config = copy.deepcopy(trainer.generation_config)
    config.output_scores, config.return_dict_in_generate = True, True
    with torch.random.fork_rng():
        torch.manual_seed(trainer.config.seed * 1_000_003)
        out = trainer._policy.generate(
            input_ids=rollout.enc_ids, attention_mask=rollout.enc_mask, generation_config=config
        )
    steps = len(out.scores)
    assert torch.equal(out.sequences[:, -rollout.responses.shape[1] :], rollout.responses)
    # The scores generate sampled from (after every logits processor), as log-probs.
    sampler = torch.log_softmax(torch.stack(out.scores, 1).float(), -1)
    sampler = sampler.gather(-1, rollout.responses[:, :steps, None]).squeeze(-1)
    mask = rollout.response_mask[:, :steps].bool()
    assert mask.sum() > 8
    torch.testing.assert_close(mine[:, :steps][mask], sampler[mask], atol=1e-5, rtol=0)


def test_neutral_generation_kwargs_are_accepted(tmp_path):
    cfg = RLConfig(
        output_dir=str(tmp_path),
        generation_kwargs={"max_new_tokens": 8, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "top_p": 1},
    )
    assert cfg.generation_kwargs == {"max_new_tokens": 8, "temperature": 1.0}
    with pytest.raises(ValueError, match=r"'repetition_penalty': 1.2"):
        RLConfig(output_dir=str(tmp_path), generation_kwargs={"repetition_penalty": 1.2})


def test_prompts_are_encoded_as_at_inference(tmp_path, pipe, bases):
    """A long prompt keeps a causal model's "Negative prompt:" suffix, and RL's ids are NegOptGenerator's."""
    from negopt.config import NegOptConfig

    gen = make_generator("causal", bases["causal"])
    gen.config = NegOptConfig(model_type="causal", max_input_tokens=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        trainer = RLTrainer(
            make_config(str(tmp_path)), generator=gen, pipeline=pipe, reward=LetterReward(), prompts=PROMPTS
        )
    long = "a very long prompt about a castle " * 10
    with pytest.warns(UserWarning, match="truncated"):
        ids, mask = trainer.sampler.encode([long, "a cat"])
    first = ids[0][mask[0].bool()].tolist()
    assert len(first) <= 40
    assert trainer.tokenizer.decode(first, skip_special_tokens=True).endswith("Negative prompt:")
    with pytest.warns(UserWarning, match="truncated"):
        expected = NegOptGenerator(gen.model, gen.tokenizer, gen.config).encode_prompts([long], max_new_tokens=12)
    assert first == expected[0]


# ------------------------------------------------------------------------------------------------------ end to end
def test_end_to_end_with_image_reward(tmp_path, pipe, bases):
    """A reward that reads the images, a baseline image, KL, PPO epochs, checkpoints, samples, tensorboard."""
    pytest.importorskip("tensorboard")
    gen = make_generator("seq2seq", bases["seq2seq"])
    handed = copy.deepcopy(gen.model.state_dict())
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        trainer = RLTrainer(
            make_config(
                str(out),
                max_steps=4,
                kl_coef=0.1,
                kl_mode="loss",
                ppo_epochs=2,
                advantage="no_negative",
                save_steps=2,
                save_total_limit=1,
                sample_steps=2,
                report_to="tensorboard",
            ),
            generator=gen,
            pipeline=pipe,
            reward=brightness_reward,
            prompts=PROMPTS,
        )
    base_before = {k: v.clone() for k, v in trainer._policy.get_base_model().state_dict().items() if "lora_" not in k}
    lora_before = adapter_state(trainer)
    state = trainer.train()

    assert state.step == 4 and not state.interrupted
    hist = trainer.log_history
    assert len(hist) == 4
    for m in hist:
        assert 0 <= m["reward/mean"] <= 1 and 0 <= m["reward/no_negative"] <= 1
        assert m["kl"] >= 0 and 0 <= m["clip_fraction"] <= 1  # kl_mode="loss": a sum of k3 terms, each >= 0
        assert m["negative_length"] >= 1
    assert hist[0]["kl"] == 0.0  # the first rollout comes from the starting policy, which the reference is
    assert hist[-1]["kl"] > 0 and any(m["clip_fraction"] > 0 for m in hist)
    assert set(trainer.last_timings) == {"sample", "images", "reward", "update", "total"}

    # Every LoRA parameter moved, no base parameter did, and the generator handed in is untouched.
    lora_after = adapter_state(trainer)
    assert all(not torch.equal(lora_before[k], lora_after[k]) for k in lora_after if "lora_B" in k)
    base_after = trainer._policy.get_base_model().state_dict()
    assert all(torch.equal(v, base_after[k]) for k, v in base_before.items())
    assert not any("lora_" in k for k in gen.model.state_dict())
    assert all(torch.equal(v, gen.model.state_dict()[k]) for k, v in handed.items())

    # Output folder: adapter + tokenizer + negopt_config; one checkpoint kept; sample grids; tensorboard events.
    for name in ("adapter_config.json", "adapter_model.safetensors", "negopt_config.json", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "negopt_config.json").read_text())["base_model_name_or_path"] == bases["seq2seq"]
    assert [s for s, _ in list_checkpoints(out)] == [4]
    assert sorted(os.listdir(out / "samples")) == [
        "step-000002.json",
        "step-000002.png",
        "step-000004.json",
        "step-000004.png",
    ]
    sample = json.loads((out / "samples" / "step-000004.json").read_text())
    assert len(sample["negative_prompts"]) == 5 and sample["negative_prompts"][-1] is None
    events = [f for _, _, fs in os.walk(out / "logs") for f in fs if f.startswith("events.out")]
    assert events

    # The saved adapter reloads onto its base model with the trained weights.
    from peft import PeftModel, get_peft_model_state_dict
    from transformers import AutoModelForSeq2SeqLM

    loaded = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(bases["seq2seq"]), str(out))
    saved = get_peft_model_state_dict(loaded)
    assert saved.keys() == lora_after.keys()
    assert all(torch.equal(saved[k], lora_after[k]) for k in saved)


def test_output_dir_loads_with_negopt_generator(tmp_path, pipe, bases):
    from peft import PeftModel, get_peft_model_state_dict

    trainer = _trainer(pipe, bases, tmp_path / "out", max_steps=2)
    trainer.train()
    gen = NegOptGenerator.from_pretrained(str(tmp_path / "out"))
    # The loaded generator carries the trained adapter, not a fresh one.
    assert isinstance(gen.model, PeftModel)
    loaded, trained = get_peft_model_state_dict(gen.model), get_peft_model_state_dict(trainer._policy)
    assert loaded.keys() == trained.keys() and all(torch.equal(loaded[k], trained[k]) for k in loaded)
    out = gen(["a red fox in snow", "a city at night"])
    assert isinstance(out, list) and len(out) == 2 and all(isinstance(x, str) for x in out)


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_reward_rises(tmp_path, pipe, bases, kind):
    """The optimiser optimises: a reward the tiny generator can learn rises clearly within a few dozen steps.

    Gradient clipping off: advantages are in units of the reward's spread, and this wide-init GPT-2's gradient norms
    then sit about the default clip of 1 (0.5 to 2), which slows it by an amount that depends on the seed; clipping
    is not what this test is about."""
    trainer = _trainer(pipe, bases, tmp_path, kind, max_steps=40, learning_rate=1e-2, max_grad_norm=None)
    trainer.train()
    rewards = [m["reward/mean"] for m in trainer.log_history]
    first, last = sum(rewards[:4]) / 4, sum(rewards[-4:]) / 4
    assert last > 0.4 and last > 3 * first, rewards
    assert trainer.log_history[-1]["reward/letters"] == pytest.approx(rewards[-1])  # per-term logging


# ------------------------------------------------------------------------------------------------------ bad rewards
def test_nan_rewards_are_dropped_and_counted(tmp_path, pipe, bases):
    class HolesReward(LetterReward):
        """NaN for the first 3 negatives of a step (so the first prompt's group has 1 finite reward: skipped)
        and an infinity for one of the second group's."""

        def __call__(self, images, prompts, negative_prompts, **kw):
            out = super().__call__(images, prompts, negative_prompts)
            return [float("nan")] * 3 + out[3:5] + [float("inf")] + out[6:]

    trainer = _trainer(pipe, bases, tmp_path, reward=HolesReward(), max_steps=3, kl_coef=0.1)
    with pytest.warns(RuntimeWarning, match="4 of 8 rewards are NaN or infinite"):
        state = trainer.train()
    assert state.rewards_dropped == 12 and state.groups_skipped == 3
    assert trainer.log_history[-1]["rewards_dropped"] == 12
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert all(torch.isfinite(torch.tensor(m["reward/mean"])) for m in trainer.log_history)


def test_all_nan_step_leaves_weights_alone(tmp_path, pipe, bases):
    def nan_reward(images, prompts, negative_prompts, **kw):
        return [float("nan")] * len(images)

    trainer = _trainer(pipe, bases, tmp_path, reward=nan_reward, max_steps=2)
    before = adapter_state(trainer)
    with pytest.warns(RuntimeWarning, match="8 of 8"):
        trainer.train()
    after = adapter_state(trainer)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_reward_with_wrong_length_is_an_error(tmp_path, pipe, bases):
    trainer = _trainer(pipe, bases, tmp_path, reward=lambda images, **kw: [1.0])
    with pytest.raises(ValueError, match="returned 1 values for 8 images"):
        trainer.train()


# ------------------------------------------------------------------------------------------------------ SFT adapter
@pytest.mark.parametrize("kl_mode", ["reward", "loss"])
def test_continues_an_existing_adapter(tmp_path, pipe, bases, kl_mode):
    """A PeftModel (an SFT result, saved with SFT's default dropout) is trained further, not stacked; its KL
    reference is the adapter as given, the same network as the policy at step 0 to the last bit."""
    from peft import LoraConfig, get_peft_model

    gen = make_generator("seq2seq", bases["seq2seq"])
    torch.manual_seed(1)
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q", "v"], lora_dropout=0.05)
    gen.model = get_peft_model(gen.model, lora)
    with torch.no_grad():
        for name, p in gen.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    given = {k: v.clone() for k, v in gen.model.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        trainer = RLTrainer(
            make_config(str(tmp_path / "out"), max_steps=3, kl_coef=0.1, kl_mode=kl_mode),
            generator=gen,
            pipeline=pipe,
            reward=LetterReward(),
            prompts=PROMPTS,
        )
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all(".default." in n for n in trainable)
    assert all(p.shape[0] == 2 or p.shape[1] == 2 for n, p in trainer.model.named_parameters() if p.requires_grad)
    trainer.train()
    hist = trainer.log_history
    # A reference with the adapter disabled (or with its dropout on) would sit away from the policy at step 0.
    assert hist[0]["kl"] == 0.0 and hist[-1]["kl"] != 0
    assert not any(m.training for m in trainer._policy.modules())
    assert all(torch.equal(v, gen.model.state_dict()[k]) for k, v in given.items())  # the caller's model untouched
    cfg = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert cfg["r"] == 2 and sorted(cfg["target_modules"]) == ["q", "v"]
    assert not (tmp_path / "out" / "negopt_reference").exists()


# ------------------------------------------------------------------------------------------------------ resume
def test_resume_after_kill_matches_uninterrupted_run(tmp_path, pipe, bases):
    out = tmp_path / "killed"
    make_generator("seq2seq", bases["seq2seq"])  # the base folder exists before the subprocess reads it
    cmd = [sys.executable, WORKER, "--output-dir", str(out), "--base-dir", bases["seq2seq"]]
    cmd += ["--max-steps", "6", "--save-steps", "2", "--sleep", "0.4"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while latest_checkpoint(out) is None and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    steps = [s for s, _ in list_checkpoints(out)]
    assert steps and max(steps) < 6 and not (out / "adapter_model.safetensors").exists()

    resumed = _trainer(pipe, bases, out, max_steps=6, save_steps=2, resume=True)
    resumed.train()
    assert resumed.log_history[0]["step"] == max(steps) + 1
    straight = _trainer(pipe, bases, tmp_path / "straight", max_steps=6, save_steps=2)
    straight.train()
    a, b = adapter_state(resumed), adapter_state(straight)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.state.rewards_seen == straight.state.rewards_seen == 6 * 8


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, bases):
    out = tmp_path / "term"
    make_generator("seq2seq", bases["seq2seq"])
    cmd = [sys.executable, WORKER, "--output-dir", str(out), "--base-dir", bases["seq2seq"]]
    cmd += ["--max-steps", "200", "--save-steps", "3", "--sleep", "0.3"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while latest_checkpoint(out) is None and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # into a step that is not a checkpoint step
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        proc.kill()
    assert rc == 0, proc.stderr.read().decode()[-3000:]
    steps = [s for s, _ in list_checkpoints(out)]
    assert steps and max(steps) < 200
    state = json.loads(open(os.path.join(latest_checkpoint(out), "trainer_state.json")).read())
    assert state["step"] == max(steps) and state["rewards_seen"] == 8 * max(steps)
    assert not (out / "adapter_model.safetensors").exists()  # an interrupted run does not pose as a finished one


def test_a_fresh_run_refuses_an_output_dir_with_checkpoints(tmp_path, pipe, bases):
    _trainer(pipe, bases, tmp_path, max_steps=2, save_steps=2).train()
    assert list_checkpoints(tmp_path)
    # Without resume, rotation would keep the earlier run's newer steps and delete this run's.
    with pytest.raises(
        FileExistsError, match=r"pass resume=True \(--resume\) to continue, or choose another output_dir"
    ):
        _trainer(pipe, bases, tmp_path, max_steps=4, save_steps=2).train()


def test_resume_restores_the_reward_normalisation(tmp_path, pipe, bases):
    from negopt.rewards import CompositeReward

    def composite():
        return CompositeReward({"letters": LetterReward(), "other": LetterReward()}, normalize=True)

    first = composite()
    _trainer(pipe, bases, tmp_path, reward=first, max_steps=2, save_steps=2).train()
    assert first.stats["letters"].count == 2 * 8
    resumed_reward = composite()
    resumed = _trainer(pipe, bases, tmp_path, reward=resumed_reward, max_steps=2, resume=True)
    resumed.load_checkpoint(latest_checkpoint(tmp_path))
    assert resumed_reward.state_dict() == first.state_dict()


def test_resume_from_a_missing_checkpoint_is_an_error(tmp_path, pipe, bases):
    trainer = _trainer(pipe, bases, tmp_path, resume_from_checkpoint=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="resume_from_checkpoint"):
        trainer.train()


# ------------------------------------------------------------------------------------------------------ multi-process
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes(tmp_path, bases):
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForSeq2SeqLM

    out = tmp_path / "ddp"
    make_generator("seq2seq", bases["seq2seq"])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    cmd += [WORKER, "--output-dir", str(out), "--base-dir", bases["seq2seq"], "--max-steps", "3", "--save-steps", "2"]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    r0 = load_file(str(out / "adapter_rank0.safetensors"))
    r1 = load_file(str(out / "adapter_rank1.safetensors"))
    assert r0.keys() == r1.keys()
    assert all(torch.equal(r0[k], r1[k]) for k in r0)  # gradients were averaged: the replicas agree
    assert any(r0[k].abs().sum() > 0 for k in r0 if "lora_B" in k)  # and they trained (B starts at zero)
    loaded = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(bases["seq2seq"]), str(out))
    saved = get_peft_model_state_dict(loaded)
    assert all(torch.equal(saved[k], r0[k]) for k in r0)
    state = json.loads((out / "checkpoints" / "step-2" / "trainer_state.json").read_text())
    assert state["num_processes"] == 2 and state["rewards_seen"] == 2 * 2 * 4
    assert (out / "checkpoints" / "step-2" / "random_states_1.pkl").is_file()  # accelerate's, per process


# ------------------------------------------------------------------------------------------------------ CLI
def _cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "negopt", *args], env=_env(), capture_output=True, text=True, **kw)


def test_cli_config_with_unknown_key_lists_valid_ones(tmp_path):
    pytest.importorskip("yaml")
    cfg = tmp_path / "rl.yaml"
    cfg.write_text("output_dir: out\nlearning_rte: 0.1\n", encoding="utf-8")
    res = _cli(["train", "rl", "--config", str(cfg)])
    assert res.returncode == 2
    assert "unknown key(s) ['learning_rte']" in res.stderr and "learning_rate" in res.stderr
    res = _cli(["train", "rl", "--output-dir", str(tmp_path)])
    assert res.returncode == 2 and "--generator" in res.stderr


def test_cli_trains_from_yaml(tmp_path, pipe, bases):
    """negopt train rl end to end: generator and pipeline by folder, a reward callable by name, YAML + flags."""
    pytest.importorskip("yaml")
    pipe_dir = tmp_path / "pipe"
    pipe.save_pretrained(str(pipe_dir))
    make_generator("seq2seq", bases["seq2seq"])
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS), encoding="utf-8")
    cfg = tmp_path / "rl.yaml"
    cfg.write_text(
        f"generator: {bases['seq2seq']}\npipeline: {pipe_dir}\nprompts: {tmp_path / 'prompts.txt'}\n"
        "max_steps: 5\nbatch_size: 2\nnum_candidates: 2\nlora_r: 4\nsave_steps: 2\n"
        "pipeline_kwargs: {num_inference_steps: 1, height: 32, width: 32}\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    args = ["train", "rl", "--config", str(cfg), "--reward-fn", "rl_worker:brightness_reward"]
    args += ["--max-steps", "2", "--max-new-tokens", "8", "--output-dir", str(out)]
    res = _cli(args, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "trained 2 steps" in res.stdout
    assert [s for s, _ in list_checkpoints(out)] == [2]  # the flag's max_steps won over the file's
    from peft import PeftModel

    gen = NegOptGenerator.from_pretrained(str(out))
    assert isinstance(gen.model, PeftModel) and gen.is_seq2seq  # a LoRA adapter over the T5 given
    assert gen.config.base_model_name_or_path == bases["seq2seq"]
    assert isinstance(gen("a red fox in snow"), str)


def test_cli_builds_a_named_reward_from_local_models(tmp_path, pipe, bases):
    """--reward with --reward-model (offline folders) and --normalize-rewards, whose statistics reach checkpoints."""
    from transformers import CLIPProcessor

    from tiny_clip import tiny_clip, tiny_clip_tokenizer, tiny_image_processor

    clip_dir = tmp_path / "clip"
    tokenizer = tiny_clip_tokenizer()
    tiny_clip(tokenizer).save_pretrained(clip_dir)
    CLIPProcessor(image_processor=tiny_image_processor(), tokenizer=tokenizer).save_pretrained(clip_dir)
    pipe_dir = tmp_path / "pipe"
    pipe.save_pretrained(str(pipe_dir))
    make_generator("seq2seq", bases["seq2seq"])
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS), encoding="utf-8")
    out = tmp_path / "out"
    args = ["train", "rl", "--generator", bases["seq2seq"], "--pipeline", str(pipe_dir)]
    args += ["--prompts", str(tmp_path / "prompts.txt"), "--output-dir", str(out), "--reward", "clip=1.0"]
    args += ["--reward-model", f"clip={clip_dir}", "--normalize-rewards", "--max-steps", "2", "--save-steps", "2"]
    args += ["--batch-size", "2", "--num-candidates", "2", "--max-new-tokens", "8", "--num-inference-steps", "1"]
    args += ["--height", "32", "--width", "32"]
    res = _cli(args, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    # accelerate's save_state: custom_checkpoint_0 is the scheduler, 1 the reward's statistics (per process).
    state = torch.load(out / "checkpoints" / "step-2" / "custom_checkpoint_1.pkl", weights_only=False)
    assert state["per_process"][0]["stats"]["clip"]["count"] == 2 * 2 * 2  # steps x prompts x candidates
    bad = _cli([*args[:-2], "--reward-model", "clip", "--output-dir", str(tmp_path / "bad")])
    assert bad.returncode == 2 and "NAME=PATH_OR_ID" in bad.stderr


# ------------------------------------------------------------------------------------------------------ set-up checks
def test_a_pipeline_without_a_negative_slot_is_refused(tmp_path, bases):
    """LatentConsistencyModelPipeline swallows negative_prompt in **kwargs: every reward would be the same."""
    from tiny_pipelines import tiny_lcm

    with pytest.raises(ValueError, match="LatentConsistencyModelPipeline cannot use a negative prompt"):
        _trainer(tiny_lcm(), bases, tmp_path)


def test_a_video_pipeline_is_refused_with_the_cost(tmp_path, bases):
    from tiny_video import tiny_wan

    with pytest.raises(ValueError, match="WanPipeline makes video, and RL on video is not supported"):
        _trainer(tiny_wan(), bases, tmp_path)


def test_an_output_dir_that_is_a_file_is_refused_first(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("not a folder", encoding="utf-8")
    # The generator and pipeline below would fail to load: the output_dir error comes before any of that work.
    with pytest.raises(NotADirectoryError, match=r"output_dir=.*out\.txt.* exists and is a file"):
        RLTrainer(
            make_config(str(out)),
            generator=str(tmp_path / "no-such-generator"),
            pipeline=str(tmp_path / "no-such-pipeline"),
            reward=LetterReward(),
            prompts=PROMPTS,
        )


def test_reward_moves_to_the_training_device_and_lr_is_the_steps_own(tmp_path, pipe, bases):
    class MovableReward(LetterReward):
        device = None

        def to(self, device):
            self.device = torch.device(device)
            return self

    reward = MovableReward()
    trainer = _trainer(pipe, bases, tmp_path, reward=reward, max_steps=3, warmup_steps=2, learning_rate=1e-3)
    assert reward.device == trainer.accelerator.device
    trainer.train()
    # Linear warm-up over 2 steps: step 1 updates at half the rate, then the full rate.
    assert [m["lr"] for m in trainer.log_history] == pytest.approx([5e-4, 1e-3, 1e-3])


def test_sdxl_baseline_is_the_bare_pipeline_with_no_negative(tmp_path, bases):
    """SDXL zeroes the negative embeddings only for a missing negative, so "" would not be the no-negative image."""
    import numpy as np

    from tiny_pipelines import tiny_sdxl

    sdxl = tiny_sdxl()
    kwargs = {"num_inference_steps": 2, "height": 32, "width": 32}
    trainer = _trainer(sdxl, bases, tmp_path, baseline_image=True, pipeline_kwargs=kwargs)
    rollout = trainer.sampler.sample(0)
    trainer.sampler.make_images(rollout, 0)
    seeds = [trainer.sampler.image_seed(0, pos) for pos in rollout.positions]

    def bare(**negative):
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        return sdxl(prompt=rollout.prompts, generator=generators, output_type="pil", **negative, **kwargs).images

    got = [np.asarray(im) for im in rollout.baseline_images]
    assert len(got) == len(rollout.prompts) == 2
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(got, bare()))
    assert not all(np.array_equal(a, np.asarray(b)) for a, b in zip(got, bare(negative_prompt=[""] * 2)))


def test_rollout_images_at_guidance_off_act_through_nag(tmp_path, pipe, bases):
    """A distilled-style call (guidance_scale=0): the sampled negatives reach the images through NAG, with the knobs
    of the config; with negative_guidance="cfg" they would not change them at all."""
    import numpy as np

    from negopt.pipeline.guidance import guided_call

    kwargs = {"num_inference_steps": 1, "height": 32, "width": 32, "guidance_scale": 0.0}
    trainer = _trainer(pipe, bases, tmp_path, pipeline_kwargs=kwargs, nag_scale=3.0)
    rollout = trainer.sampler.sample(0)
    trainer.sampler.make_images(rollout, 0)
    k = trainer.config.num_candidates
    prompts = [p for p in rollout.prompts for _ in range(k)]
    seeds = [trainer.sampler.image_seed(0, pos) for pos in rollout.positions for _ in range(k)]

    def call(negatives):
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        return {"prompt": prompts, "negative_prompt": negatives, "generator": generators, "output_type": "pil"}

    expected, used = guided_call(pipe, {**call(rollout.negatives), **kwargs}, "nag", nag_scale=3.0)
    assert used == "nag"
    got = [np.asarray(im) for im in rollout.images]
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(got, expected.images))
    ignored = pipe(**call(rollout.negatives), **kwargs).images  # diffusers alone drops the negatives
    assert not all(np.array_equal(a, np.asarray(b)) for a, b in zip(got, ignored))
