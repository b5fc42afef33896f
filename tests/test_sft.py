"""SFTConfig / SFTTrainer / `negopt train sft`: a tiny T5 learns a rule, outputs load, nothing is lost.

Everything runs on the CPU with tiny word-level models built in-process (tests/tiny.py), one thread per process: the
models are so small that more threads only add overhead on a shared machine.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

datasets = pytest.importorskip("datasets")

from huggingface_hub import ModelCard  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from negopt.config import NegOptConfig  # noqa: E402
from negopt.data import load_negative_prompts  # noqa: E402
from negopt.model_card import GeneratorCardInfo, TrainingCardInfo, generator_model_card  # noqa: E402
from negopt.train import SFTConfig, SFTTrainer  # noqa: E402
from negopt.train.checkpointing import NonFiniteLossError, is_complete_checkpoint  # noqa: E402
from negopt.train.sft.trainer import rouge_l  # noqa: E402
from tiny import tiny_gpt2_words, tiny_t5_words  # noqa: E402

# A rule to learn: the negative depends on which subject the prompt names.
NEG = {"dog": "extra legs, bad fur", "cat": "extra tails, bad whiskers", "car": "broken wheels, rust"}
ADJ = "red big small old young happy sad shiny dark bright fluffy tiny".split()
PLACE = "park street beach forest city garden room field river mountain".split()
TEMPLATE_WORDS = "Prompt : Negative prompt".split()
ALL = [(a, c, p) for a in ADJ for c in NEG for p in PLACE]
random.Random(0).shuffle(ALL)
TRAIN, HELD_OUT = ALL[:150], ALL[-15:]  # held-out prompts are new combinations of known words
WORDS = sorted(
    {
        w
        for s in ["a in the very", *ADJ, *PLACE, *NEG, *NEG.values(), *TEMPLATE_WORDS]
        for w in s.replace(",", " , ").split()
    }
)


def _pairs(triples, pad_every: int = 0):
    # Varied lengths ("very" repeated) so that length grouping and dynamic padding have something to do.
    return [
        {"prompt": f"a {a} {c} in the {p}" + " very" * (i % pad_every if pad_every else 0), "negative_prompt": NEG[c]}
        for i, (a, c, p) in enumerate(triples)
    ]


def _env() -> dict:
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env["PYTHONPATH"] = os.pathsep.join([src, os.path.dirname(os.path.abspath(__file__)), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _quick(base: str, out, **kw) -> SFTConfig:
    defaults = dict(
        model=base,
        output_dir=str(out),
        batch_size=4,
        learning_rate=1e-2,
        lora_r=4,
        save_steps=2,
        logging_steps=1,
        disable_tqdm=True,
        validation_size=0.2,
        test_size=0.0,
        max_eval_samples=8,
        eval_steps=0,
    )
    defaults.update(kw)
    return SFTConfig(**defaults)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> str:
    """A tiny T5 saved as a folder, as a user's base model would be."""
    path = tmp_path_factory.mktemp("base")
    model, tok = tiny_t5_words(WORDS)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for row in _pairs(ALL[:64], pad_every=7):
            f.write(json.dumps(row) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def learned(base, tmp_path_factory):
    """One LoRA run that learns the rule (80 steps, a few seconds), with the parameters before and after."""
    out = tmp_path_factory.mktemp("learned")
    config = SFTConfig(
        model=base,
        output_dir=str(out),
        max_steps=80,
        learning_rate=2e-2,
        batch_size=16,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        logging_steps=20,
        save_steps=40,
        disable_tqdm=True,
    )
    trainer = SFTTrainer(
        config,
        train_dataset=datasets.Dataset.from_list(_pairs(TRAIN)),
        eval_dataset=datasets.Dataset.from_list(_pairs(HELD_OUT)),
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    result = trainer.train()
    after = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    return {"out": str(out), "result": result, "before": before, "after": after, "trainable": trainable}


# ------------------------------------------------------------------------------------------------- learning
def _decode_held_out(model, tok) -> list[str]:
    inputs = tok([f"a {a} {c} in the {p}" for a, c, p in HELD_OUT], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=10, do_sample=False)
    return [t.replace(" ,", ",") for t in tok.batch_decode(out, skip_special_tokens=True)]


def test_tiny_t5_learns_the_rule_and_the_output_loads(learned, base):
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    out, result = learned["out"], learned["result"]
    assert result.global_step == 80 and not result.interrupted
    assert result.output_dir == out and result.eval_loss is not None and result.train_loss is not None
    assert result.eval_loss < 0.5  # held-out loss, far below the ~3.9 of the untrained model
    files = set(os.listdir(out))
    assert {"adapter_config.json", "adapter_model.safetensors", "negopt_config.json", "tokenizer.json"} <= files
    assert "training_args.bin" not in files and "model.safetensors" not in files
    _check_card(
        out,
        base_text=base,
        lines=[
            "| fine-tuning | LoRA (r=8, alpha=16, dropout=0.0, target modules all-linear) |",
            "| steps | 80 (",
            "| data | datasets passed to SFTTrainer |",
            "| pairs | 150 training, 15 validation |",
            "| batch size | 16 per device x 1 accumulation steps x 1 processes |",
        ],
    )
    card = ModelCard.load(os.path.join(out, "README.md"))
    assert card.data.base_model is None  # a local folder is no hub id: named in the text only
    assert (
        f"validation loss {result.eval_loss:.4g}" in card.text
        and f"training loss {result.train_loss:.4g}" in card.text
    )
    assert is_complete_checkpoint(os.path.join(out, "checkpoints", "checkpoint-80"))

    cfg = NegOptConfig.from_json_file(os.path.join(out, "negopt_config.json"))
    assert cfg.model_type == "seq2seq" and cfg.base_model_name_or_path == base and cfg.prompt_template == "{prompt}"
    with open(os.path.join(out, "adapter_config.json")) as f:
        assert json.load(f)["base_model_name_or_path"] == base

    model = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(base), out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    decoded = _decode_held_out(model, tok)
    expected = [NEG[c] for _, c, _ in HELD_OUT]
    correct = sum(d == e for d, e in zip(decoded, expected))
    assert correct >= 13, list(zip(decoded, expected))
    # The base model alone knows nothing of the rule.
    with model.disable_adapter():
        assert sum(d == e for d, e in zip(_decode_held_out(model, tok), expected)) == 0


def test_lora_parameters_change_and_frozen_ones_do_not(learned):
    before, after, trainable = learned["before"], learned["after"], learned["trainable"]
    assert trainable and all("lora_" in n for n in trainable)
    # all-linear: every attention and feed-forward projection of encoder and decoder has an adapter.
    for layer in ("SelfAttention.q", "SelfAttention.o", "EncDecAttention.k", "DenseReluDense.wi", "DenseReluDense.wo"):
        assert any(layer in n for n in trainable), layer
    assert not any("lm_head" in n for n in trainable)
    for name, value in before.items():
        if name in trainable:
            # lora_B starts at zero, so every adapter matrix must have moved for the rule to be learned.
            assert not torch.equal(value, after[name]), f"{name} did not change"
        else:
            assert torch.equal(value, after[name]), f"frozen {name} changed"


def test_negopt_generator_loads_the_output(learned):
    from negopt.generator import NegOptGenerator

    gen = NegOptGenerator.from_pretrained(learned["out"])
    assert gen.is_seq2seq and gen.config.model_type == "seq2seq"
    prompts = [f"a {a} {c} in the {p}" for a, c, p in HELD_OUT]
    outputs = gen(prompts)
    assert isinstance(outputs, list) and len(outputs) == len(prompts)
    expected = [NEG[c] for _, c, _ in HELD_OUT]
    assert sum(o.replace(" ,", ",") == e for o, e in zip(outputs, expected)) >= 13, outputs


PEFT_TEMPLATE = ("[More Information Needed]", "Model Card for", "PEFT", "library_name: peft")


def _check_card(out, *, base_text: str, lines: list[str]):
    """The folder's README.md is negopt's card of an SFT run (not peft's template) and says what is in ``lines``."""
    card = ModelCard.load(os.path.join(out, "README.md"))
    assert card.data.library_name == "negopt" and {"negopt", "sft"} <= set(card.data.tags)
    assert "## Training" in card.text and "Supervised fine-tuning (SFT)" in card.text
    assert f"| base model | {base_text} |" in card.text
    for line in lines:
        assert line in card.text, (line, card.text)
    for text in PEFT_TEMPLATE:
        assert text not in str(card), text
    return card


def test_public_names_and_a_light_config_import():
    import negopt.train.sft.trainer as sft
    from negopt.train import SFTResult
    from negopt.train.sft.config import SFTConfig as Config
    from negopt.train.sft.config import SFTResult as Result

    assert (sft.SFTConfig, sft.SFTResult, sft.SFTTrainer, sft.rouge_l) == (Config, Result, SFTTrainer, rouge_l)
    assert SFTConfig is Config and SFTResult is Result
    # The configs behind `negopt train sft`'s flags load without torch, transformers or peft.
    code = (
        "import sys; from negopt.train import SFTConfig; SFTConfig(); "
        "print(sorted({'torch', 'transformers', 'peft'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out


def test_rouge_l():
    assert rouge_l("blurry, bad hands", "blurry, bad hands") == 1.0
    assert rouge_l("", "") == 1.0 and rouge_l("blurry", "") == 0.0
    assert rouge_l("watermark", "blurry") == 0.0
    # LCS of [a b c d] and [a c d e] is [a c d]: P = R = 3/4.
    assert rouge_l("a b c d", "A, c, d, e") == pytest.approx(0.75)


# ----------------------------------------------------------------------------------------------- other modes
def test_full_finetune_saves_plain_weights(base, data_file, tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    trainer = SFTTrainer(_quick(base, tmp_path, dataset=data_file, full_finetune=True, max_steps=2))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    assert all(p.requires_grad for p in trainer.model.parameters())
    trainer.train()
    files = set(os.listdir(tmp_path))
    assert {"config.json", "model.safetensors", "negopt_config.json"} <= files and "adapter_config.json" not in files
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    changed = [n for n, p in loaded.named_parameters() if n in before and not torch.equal(p, before[n])]
    assert len(changed) > len(before) // 2
    lines = ["| fine-tuning | full fine-tune (every weight trained) |", f"| data | {data_file} |", "| steps | 2 ("]
    card = _check_card(tmp_path, base_text=base, lines=lines)
    assert "LoRA adapter over" not in card.text and card.data.datasets is None  # a local file is no hub dataset
    assert trainer.data_summary is not None and trainer.data_summary.rows_out == 64


def test_causal_model_trains_on_negative_tokens_only(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = tiny_gpt2_words(WORDS)
    base = tmp_path / "gpt2"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("my own notes\n")  # the user's own file stays as it was
    trainer = SFTTrainer(
        _quick(str(base), out, max_steps=2, report_to="tensorboard"),
        train_dataset=datasets.Dataset.from_list(_pairs(TRAIN[:16])),
    )
    assert trainer.model_type == "causal"
    row = trainer.trainer.train_dataset[0]
    prompt_ids = tok("Prompt: a " + " ".join(TRAIN[0][:2]), add_special_tokens=False)["input_ids"]
    ids, labels = row["input_ids"], row["labels"]
    n_prompt = len(tok(NegOptConfig(model_type="causal").format_prompt(_pairs(TRAIN[:1])[0]["prompt"]))["input_ids"])
    assert ids[: len(prompt_ids)] == prompt_ids
    assert labels[:n_prompt] == [-100] * n_prompt  # no loss on the prompt
    assert labels[n_prompt:] == ids[n_prompt:]  # loss on the negative
    assert ids[-1] == tok.eos_token_id  # which ends with EOS
    assert tok.decode(ids[n_prompt:-1]).replace(" ,", ",") == NEG[TRAIN[0][1]]
    trainer.train()
    cfg = NegOptConfig.from_json_file(out / "negopt_config.json")
    assert cfg.model_type == "causal" and cfg.prompt_template == "Prompt: {prompt}\nNegative prompt:"
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out)
    assert AutoTokenizer.from_pretrained(out).padding_side == "left"
    assert (out / "README.md").read_text() == "my own notes\n"
    # TensorBoard logs under output_dir/logs, as RL's, not inside the checkpoints folder.
    assert list((out / "logs" / "negopt-sft").glob("events.out.tfevents.*"))
    assert sorted(os.listdir(out / "checkpoints")) == ["checkpoint-2"]


def test_model_objects_and_merge_when_the_base_has_no_name(tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    model, tok = tiny_t5_words(WORDS)
    trainer = SFTTrainer(
        _quick("unused", tmp_path, max_steps=1),
        model=model,
        tokenizer=tok,
        train_dataset=datasets.Dataset.from_list(_pairs(TRAIN[:8])),
    )
    assert tok.padding_side == "right" and trainer.tokenizer is not tok
    with pytest.warns(UserWarning, match="merged"):
        trainer.train()
    files = set(os.listdir(tmp_path))
    assert "model.safetensors" in files and "adapter_config.json" not in files
    AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    fine_tuning = "| fine-tuning | LoRA (r=4, alpha=32, dropout=0.05, target modules all-linear), merged into the base"
    _check_card(tmp_path, base_text="a model passed in memory, with no name", lines=[fine_tuning])


def test_card_of_a_base_named_by_hub_id_names_it_in_the_metadata(tmp_path):
    """A base loaded from the hub (here: a tiny model named as one) is the card's base_model; the card is rewritten,
    not left to peft, when the folder already holds one negopt wrote."""
    model, tok = tiny_t5_words(WORDS)
    model.name_or_path = model.config._name_or_path = "google-t5/t5-small"  # as from_pretrained("google-t5/t5-small")
    trainer = SFTTrainer(
        _quick("unused", tmp_path, max_steps=1, lora_r=2, lora_target_modules=["q", "v"]),
        model=model,
        tokenizer=tok,
        train_dataset=datasets.Dataset.from_list(_pairs(TRAIN[:8])),
    )
    trainer.train()
    assert "adapter_config.json" in os.listdir(tmp_path)
    lines = ["| fine-tuning | LoRA (r=2, alpha=32, dropout=0.05, target modules ['q', 'v']) |"]
    card = _check_card(tmp_path, base_text="google-t5/t5-small", lines=lines)
    assert card.data.base_model == "google-t5/t5-small" and card.data.pipeline_tag == "text2text-generation"
    assert "LoRA adapter over `google-t5/t5-small`" in card.text
    # Saving again: peft edits the README that is there (library_name: peft); negopt's card replaces it.
    trainer.save_generator(tmp_path)
    assert ModelCard.load(tmp_path / "README.md").text == card.text
    _check_card(tmp_path, base_text="google-t5/t5-small", lines=lines)


def test_card_metadata_names_a_hub_dataset():
    info = GeneratorCardInfo("T5ForConditionalGeneration", "seq2seq", "{prompt}", "1.2.3", "google-t5/t5-small")
    training = TrainingCardInfo("SFT.", dataset="mikeogezi/negopt_full", settings={"a | b": "c"}, results={"x": 0.5})
    card = generator_model_card(info, training=training)
    assert card.data.datasets == ["mikeogezi/negopt_full"] and card.data.base_model == "google-t5/t5-small"
    assert "| a \\| b | c |" in card.text and "At the end: x 0.5." in card.text
    assert generator_model_card(info).data.datasets is None


# ------------------------------------------------------------------------------------------------ nothing lost
_WORKER = r"""
import sys, time
from transformers import TrainerCallback
from negopt.train import SFTConfig, SFTTrainer

class Slow(TrainerCallback):  # gives the test time to kill the run between checkpoints
    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(0.4)

config = SFTConfig(**__import__("json").loads(sys.argv[1]))
SFTTrainer(config, callbacks=[Slow()]).train()
"""


class _CountSteps(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


# 15 training rows in batches of 4 make 4 steps an epoch: checkpoints at steps 5, 6 and 9 fall inside epochs 2 and 3.
# LoRA dropout on and length-grouped batches: a resumed run must restore the RNG states and redraw the same data
# order for the epoch it resumes in.
SMALL = dict(max_steps=11, save_steps=3, lora_dropout=0.1, group_by_length=True)


@pytest.fixture(scope="module")
def small_run(base, tmp_path_factory):
    """An uninterrupted 11-step run over nearly three epochs: the reference the resumed runs must match exactly."""
    tmp = tmp_path_factory.mktemp("small")
    data = tmp / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in _pairs(ALL[:16], pad_every=7)))
    trainer = SFTTrainer(_quick(base, tmp / "straight", dataset=str(data), **SMALL))
    assert trainer.train_rows == 15
    assert trainer.train().global_step == 11
    return {"data": str(data), "adapter": load_file(str(tmp / "straight" / "adapter_model.safetensors"))}


def _assert_same_adapter(expected: dict, folder) -> None:
    got = load_file(str(folder / "adapter_model.safetensors"))
    assert expected.keys() == got.keys() and len(got) > 0
    for key in expected:
        assert torch.equal(expected[key], got[key]), (key, (expected[key] - got[key]).abs().max())


def _epoch_of(checkpoint) -> float:
    with open(checkpoint / "trainer_state.json") as f:
        return json.load(f)["epoch"]


def test_sigkill_in_the_second_epoch_then_resume_matches_an_uninterrupted_run(base, small_run, tmp_path):
    killed = tmp_path / "killed"
    config = _quick(base, killed, dataset=small_run["data"], **SMALL)
    proc = subprocess.Popen(
        [sys.executable, "-c", _WORKER, json.dumps(config.to_dict())],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ckpt6 = killed / "checkpoints" / "checkpoint-6"
    deadline = time.monotonic() + 120
    while not (ckpt6 / "trainer_state.json").exists():
        if proc.poll() is not None:
            pytest.fail(f"worker exited early: {proc.stderr.read().decode()[-3000:]}")
        assert time.monotonic() < deadline, "checkpoint-6 never appeared"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "adapter_model.safetensors").exists()  # it did not finish
    newest = max((killed / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    epoch = _epoch_of(newest)
    assert 1 < epoch < 11 / 4 and epoch != int(epoch), epoch  # inside the second or third epoch, not at its start
    # A checkpoint being written when the machine died: no trainer_state.json. Resume must skip it.
    torn = killed / "checkpoints" / "checkpoint-10"
    torn.mkdir()
    (torn / "adapter_model.safetensors").write_bytes(b"half a file")

    counter = _CountSteps()
    resumed_trainer = SFTTrainer(
        _quick(base, killed, dataset=small_run["data"], resume=True, **SMALL), callbacks=[counter]
    )
    with pytest.warns(UserWarning, match="checkpoint-10 is incomplete"):
        resumed = resumed_trainer.train()
    assert resumed.global_step == 11
    assert counter.steps and counter.steps[0] >= 7 and counter.steps[-1] == 11  # resumed, did not start over
    assert (killed / "checkpoints" / "incomplete-checkpoint-10").is_dir()
    _assert_same_adapter(small_run["adapter"], killed)


class _SendSigterm(TrainerCallback):
    # The machine is preempted during step `at + 1`.
    def __init__(self, at: int):
        self.at = at

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_in_the_second_epoch_saves_a_checkpoint_stops_and_resumes_exactly(base, small_run, tmp_path):
    previous = signal.getsignal(signal.SIGTERM)
    config = _quick(base, tmp_path, dataset=small_run["data"], **SMALL)
    result = SFTTrainer(config, callbacks=[_SendSigterm(at=4)]).train()
    assert result.interrupted and result.global_step == 5 and result.output_dir is None
    assert result.last_checkpoint == str(tmp_path / "checkpoints" / "checkpoint-5")
    assert is_complete_checkpoint(result.last_checkpoint)
    assert _epoch_of(tmp_path / "checkpoints" / "checkpoint-5") == 1.25
    assert not (tmp_path / "adapter_model.safetensors").exists()
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is only there during train()

    resumed = SFTTrainer(dataclasses.replace(config, resume=True)).train()
    assert resumed.global_step == 11 and not resumed.interrupted
    _assert_same_adapter(small_run["adapter"], tmp_path)


def test_existing_checkpoints_need_resume_and_are_checked_before_loading(base, data_file, tmp_path):
    SFTTrainer(_quick(base, tmp_path, dataset=data_file, max_steps=2)).train()
    # A model that does not exist: the checkpoint checks must come first, before anything is loaded.
    missing = str(tmp_path / "no-model")
    expected = (
        f"output_dir={str(tmp_path)!r} already holds checkpoints of an earlier run (newest: "
        f"{tmp_path / 'checkpoints' / 'checkpoint-2'}); pass resume=True (--resume) to continue, or choose another "
        "output_dir."
    )
    with pytest.raises(FileExistsError) as e:
        SFTTrainer(_quick(missing, tmp_path, dataset=data_file, max_steps=4))
    assert str(e.value) == expected
    with pytest.raises(FileNotFoundError, match=r"resume_from_checkpoint='.*nope' does not exist"):
        SFTTrainer(_quick(missing, tmp_path, dataset=data_file, resume_from_checkpoint=str(tmp_path / "nope")))
    torn = tmp_path / "checkpoints" / "checkpoint-3"
    torn.mkdir()
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        SFTTrainer(_quick(missing, tmp_path, dataset=data_file, resume_from_checkpoint=str(torn)))


def test_resume_from_a_given_checkpoint_and_the_old_string_form(base, data_file, tmp_path):
    SFTTrainer(_quick(base, tmp_path, dataset=data_file, max_steps=4)).train()
    ckpt2 = str(tmp_path / "checkpoints" / "checkpoint-2")
    counter = _CountSteps()
    trainer = SFTTrainer(
        _quick(base, tmp_path, dataset=data_file, max_steps=4, resume_from_checkpoint=ckpt2), callbacks=[counter]
    )
    assert trainer.train().global_step == 4 and counter.steps == [3, 4]  # from checkpoint-2, not the newest
    with pytest.warns(FutureWarning, match="resume_from_checkpoint"):
        old = _quick(base, tmp_path, resume=ckpt2)
    assert old.resume is False and old.resume_from_checkpoint == ckpt2
    with pytest.raises(ValueError, match="two checkpoints"), pytest.warns(FutureWarning):
        _quick(base, tmp_path, resume=ckpt2, resume_from_checkpoint=str(tmp_path / "other"))


class _PoisonAfterStep2(TrainerCallback):
    # Weights that diverged: from step 3 on the forward pass gives NaN (checkpoint-2, saved before, is good).
    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 2:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if "lora_A" in name:
                        p.fill_(float("nan"))


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(base, data_file, tmp_path):
    trainer = SFTTrainer(_quick(base, tmp_path, dataset=data_file, max_steps=10), callbacks=[_PoisonAfterStep2()])
    with pytest.raises(NonFiniteLossError, match=r"nan at step 3.*checkpoint-2"):
        trainer.train()
    assert is_complete_checkpoint(tmp_path / "checkpoints" / "checkpoint-2")
    assert not (tmp_path / "checkpoints" / "checkpoint-4").exists()
    assert not (tmp_path / "adapter_model.safetensors").exists()


# -------------------------------------------------------------------------------------------------- bad input
def test_config_validation():
    with pytest.raises(ValueError, match="model_type"):
        SFTConfig(model_type="diffusion")
    with pytest.raises(ValueError, match="learning_rate"):
        SFTConfig(learning_rate=0)
    with pytest.raises(ValueError, match="bf16 and fp16"):
        SFTConfig(bf16=True, fp16=True)
    with pytest.raises(ValueError, match="batch_size"):
        SFTConfig(batch_size=0)
    with pytest.raises(ValueError, match="prompt_template"):
        SFTConfig(prompt_template="no placeholder")
    with pytest.raises(ValueError, match="manages"):
        SFTConfig(training_args={"learning_rate": 1.0})
    with pytest.raises(ValueError, match="does not know"):
        SFTConfig(training_args={"no_such_arg": 1})
    with pytest.raises(ValueError, match="merge only applies to a LoRA run"):
        SFTConfig(full_finetune=True, merge=True)
    args = SFTConfig(output_dir="x", max_steps=7, training_args={"adam_beta2": 0.99}).to_training_arguments()
    assert args.max_steps == 7 and args.adam_beta2 == 0.99 and args.output_dir == os.path.join("x", "checkpoints")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"learning_rate": "1e-4"}, "learning_rate must be a float, got '1e-4' (str). Write it as a number"),
        ({"full_finetune": "no"}, "full_finetune must be True or False, got 'no' (str)"),
        ({"resume": "no"}, "resume must be True or False, got 'no' (str)"),
        ({"merge": 1}, "merge must be True or False, got 1 (int)"),
        ({"save_steps": 2.0}, "save_steps must be an int, got 2.0 (float)"),
        ({"max_steps": "10"}, "max_steps must be an int or None, got '10' (str)"),
        ({"batch_size": True}, "batch_size must be an int, got True (bool)"),
        ({"lora_target_modules": ["q", 1]}, "lora_target_modules must be a str or a list of strs, got ['q', 1]"),
        ({"resume_from_checkpoint": 3}, "resume_from_checkpoint must be a str or None, got 3 (int)"),
        ({"training_args": ["fp16"]}, "training_args must be a dict, got ['fp16'] (list)"),
    ],
)
def test_config_rejects_wrong_types(kwargs, message):
    with pytest.raises(TypeError) as e:
        SFTConfig(**kwargs)
    assert str(e.value).startswith(message), str(e.value)


def test_config_accepts_what_fits():
    from pathlib import Path

    config = SFTConfig(
        output_dir=Path("out"), learning_rate=1, num_epochs=2, lora_alpha=8.5, lora_target_modules=("q", "v")
    )
    assert config.output_dir == "out" and config.lora_target_modules == ["q", "v"]
    assert config.to_training_arguments().learning_rate == 1


def test_output_dir_that_is_a_file_fails_before_loading(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    # Neither the model nor the data exist: the output_dir check must come first.
    with pytest.raises(NotADirectoryError, match=r"output_dir='.*taken'.* is a file, not a folder"):
        SFTTrainer(_quick(str(tmp_path / "no-model"), taken, dataset=str(tmp_path / "no-data.jsonl")))


def test_unknown_model_type_and_bad_models(tmp_path, data_file):
    from transformers import T5Config, T5EncoderModel

    encoder = T5EncoderModel(T5Config(vocab_size=64, d_model=16, d_kv=4, num_heads=4, d_ff=16, num_layers=1))
    with pytest.raises(ValueError, match="neither a seq2seq"):
        SFTTrainer(_quick("x", tmp_path, dataset=data_file), model=encoder, tokenizer=tiny_t5_words(WORDS)[1])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SFTTrainer(_quick("./no/such/model", tmp_path, dataset=data_file))
    with pytest.raises(ValueError, match="cannot load"):
        SFTTrainer(_quick("someone/not-on-this-machine", tmp_path, dataset=data_file))


def test_bad_data(base, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,neg\na cat,blurry\n")
    with pytest.raises(ValueError, match=r"lacks the column.*'text', 'neg'"):
        SFTTrainer(_quick(base, tmp_path, dataset=str(bad)))
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"prompt": "a cat", "negative_prompt": " "}) + "\n")
    with pytest.raises(ValueError, match="no rows left.*'empty_negative': 1"):
        SFTTrainer(_quick(base, tmp_path, dataset=str(empty)))
    model, tok = tiny_gpt2_words(WORDS)
    pairs = datasets.Dataset.from_list(_pairs(TRAIN[:4]))
    with pytest.raises(ValueError, match="compute_rouge"):
        SFTTrainer(_quick("x", tmp_path, compute_rouge=True), model=model, tokenizer=tok, train_dataset=pairs)


# ------------------------------------------------------------------------------------------------------- CLI
def test_cli_config_file_flags_override_and_merge(base, data_file, tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    cfg = tmp_path / "sft.yaml"
    out = tmp_path / "out"
    cfg.write_text(
        f"model: {base}\ndataset: {data_file}\noutput-dir: {out}\nmax_steps: 500\nlearning_rate: 0.01\n"
        "batch_size: 4\nlora_r: 4\nsave_steps: 2\nvalidation_size: 0.2\ntest_size: 0.0\nmax_eval_samples: 8\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "negopt",
            "train",
            "sft",
            "--config",
            str(cfg),
            "--max-steps",
            "3",
            "--merge",
            "--rouge",
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    stdout = proc.stdout
    assert "rows read" in stdout and "duplicate_pair" in stdout and "splits" in stdout  # data summary first
    assert stdout.index("rows read") < stdout.index("done: 3 steps")  # the flag beat max_steps: 500
    assert "validation loss" in stdout and "ROUGE-L" in stdout and f"saved the generator to {out}" in stdout
    assert {"config.json", "model.safetensors", "negopt_config.json"} <= set(os.listdir(out))
    AutoModelForSeq2SeqLM.from_pretrained(out)


def test_cli_usage_errors(tmp_path, capsys):
    from negopt.cli import main

    cfg = tmp_path / "bad.yaml"
    cfg.write_text("learning_rate: 0.1\nlearnig_rate: 0.2\n")
    with pytest.raises(SystemExit) as e:
        main(["train", "sft", "--config", str(cfg)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown key(s) ['learnig_rate']" in err and "learning_rate" in err and "lora_r" in err
    with pytest.raises(SystemExit) as e:
        main(["train", "sft", "--config", str(tmp_path / "missing.yaml")])
    assert e.value.code == 2 and "cannot read --config" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["train", "sft", "--max-steps", "3", "--num-epochs", "1"])
    assert e.value.code == 2


# --------------------------------------------------------------------------------------------- two processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes(base, data_file, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM

    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
        "-m", "negopt", "train", "sft", "--model", base, "--dataset", data_file, "--output-dir", str(out),
        "--max-steps", "4", "--batch-size", "4", "--save-steps", "2", "--validation-size", "0.2",
        "--test-size", "0", "--no-progress", "--logging-steps", "1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("done: 4 steps") == 1  # only the main process reports
    with open(out / "checkpoints" / "checkpoint-4" / "trainer_state.json") as f:
        state = json.load(f)
    # 4 rows per process and step: two processes go through the data twice as fast as one.
    n_train = len(load_negative_prompts(data_file, validation_size=0.2, test_size=0.0)["train"])
    two, one = 4 / math.ceil(n_train / 8), 4 / math.ceil(n_train / 4)
    assert two != pytest.approx(one)
    assert state["global_step"] == 4 and state["epoch"] == pytest.approx(two)
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert losses and all(0 < x < 10 for x in losses)
    model = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(base), out)
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in model.named_parameters())


def test_resume_skips_a_checkpoint_with_damaged_weights_and_names_the_file(base, data_file, tmp_path, capsys):
    SFTTrainer(_quick(base, tmp_path, dataset=data_file, max_steps=4)).train()
    ckpt4 = tmp_path / "checkpoints" / "checkpoint-4"
    weights = ckpt4 / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # a copy cut short: trainer_state.json is there, the weights are not
    # Named, before anything loads (the model does not exist), when that checkpoint is asked for by path.
    missing = str(tmp_path / "no-model")
    with pytest.raises(ValueError, match="damaged weights file") as e:
        SFTTrainer(_quick(missing, tmp_path, dataset=data_file, resume_from_checkpoint=str(ckpt4)))
    assert str(weights) in str(e.value) and "resume=True" in str(e.value)
    from negopt.cli import main

    capsys.readouterr()  # the first run's progress bars
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "sft", "--model", missing, "--dataset", data_file, "--output-dir", str(tmp_path),
              "--resume-from-checkpoint", str(ckpt4)])  # fmt: skip
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and str(weights) in err and err.count("\n") == 1, err
    # --resume: a warning that names the file, and training goes on from the checkpoint before it.
    counter = _CountSteps()
    trainer = SFTTrainer(_quick(base, tmp_path, dataset=data_file, max_steps=4, resume=True), callbacks=[counter])
    with pytest.warns(UserWarning, match=r"checkpoint-4 has a damaged weights file, .*adapter_model.safetensors"):
        result = trainer.train()
    assert result.global_step == 4 and counter.steps == [3, 4]
    assert (tmp_path / "checkpoints" / "damaged-checkpoint-4").is_dir()
    assert result.last_checkpoint == str(ckpt4) and is_complete_checkpoint(ckpt4)  # saved afresh, readable
