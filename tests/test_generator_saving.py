"""``optimize()`` is a speed step: it never changes what ``save_pretrained`` writes, and int8 runs a LoRA generator
(issue 22, items 4, 8 and 9).

Saved files are compared tensor by tensor with the files loaded; outputs with a generator loaded from those files.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from negopt.generator import NegOptGenerator
from tiny import PROMPTS

pytestmark = pytest.mark.usefixtures("one_thread")

SHORT = {"max_new_tokens": 12}


def weights(folder):
    name = "adapter_model.safetensors" if os.path.isfile(os.path.join(folder, "adapter_config.json")) else None
    return load_file(os.path.join(folder, name or "model.safetensors"))


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert wa[k].dtype == wb[k].dtype and torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory, t5_dir):
    """A LoRA adapter folder over ``t5_dir``; its random weights change the text of most prompts."""
    from peft import LoraConfig, get_peft_model

    base = NegOptGenerator.from_pretrained(t5_dir)
    torch.manual_seed(0)
    lora = LoraConfig(task_type="SEQ_2_SEQ_LM", target_modules=["q", "v"], init_lora_weights=False)
    model = get_peft_model(base.model, lora).eval()
    folder = str(tmp_path_factory.mktemp("lora"))
    NegOptGenerator(model, base.tokenizer, base.config).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------- item 4: bfloat16
def test_save_after_bfloat16_writes_the_float32_weights_loaded(tmp_path, t5_dir):
    gen = NegOptGenerator.from_pretrained(t5_dir).optimize("bfloat16", warmup=False)
    fast = gen(PROMPTS[:4], **SHORT)
    gen.save_pretrained(tmp_path)
    assert_same_weights(tmp_path, t5_dir)  # float32, bit for bit
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["dtype"] == "float32"
    assert gen.dtype == torch.bfloat16 and gen(PROMPTS[:4], **SHORT) == fast  # the generator itself unchanged
    loaded = NegOptGenerator.from_pretrained(tmp_path)
    assert loaded(PROMPTS, **SHORT) == NegOptGenerator.from_pretrained(t5_dir)(PROMPTS, **SHORT)


def test_save_after_bfloat16_on_an_adapter_writes_the_float32_adapter(tmp_path, lora_dir):
    gen = NegOptGenerator.from_pretrained(lora_dir).optimize("bfloat16", warmup=False)
    gen.save_pretrained(tmp_path)
    assert_same_weights(tmp_path, lora_dir)


def test_a_cast_of_your_own_is_saved_as_cast(tmp_path, t5_dir):
    gen = NegOptGenerator.from_pretrained(t5_dir).optimize("bfloat16", warmup=False)
    gen.to(dtype=torch.bfloat16)  # the user asks for bfloat16 weights
    gen.save_pretrained(tmp_path)
    assert {t.dtype for t in weights(tmp_path).values()} == {torch.bfloat16}


def test_weights_changed_after_the_cast_are_never_saved_silently(tmp_path, t5_dir):
    gen = NegOptGenerator.from_pretrained(t5_dir).optimize("bfloat16", warmup=False)
    with torch.no_grad():
        gen.model.lm_head.weight.mul_(2.0)
    with pytest.raises(ValueError, match=r"changed after optimize\(\).*gen\.to\(dtype=\.\.\.\)"):
        gen.save_pretrained(tmp_path / "refused")
    gen.to(dtype=torch.bfloat16)
    gen.save_pretrained(tmp_path / "mine")
    saved = weights(tmp_path / "mine")
    saved = saved.get("lm_head.weight", saved.get("shared.weight"))  # tied: saved under one name
    assert saved.dtype == torch.bfloat16 and torch.equal(saved, gen.model.lm_head.weight.cpu())


def test_another_model_set_after_optimize_is_the_one_saved(tmp_path, t5_dir, gpt2_dir):
    gen = NegOptGenerator.from_pretrained(t5_dir).optimize("bfloat16", warmup=False)
    other = NegOptGenerator.from_pretrained(t5_dir)
    gen.model = other.model
    gen.save_pretrained(tmp_path)
    assert_same_weights(tmp_path, t5_dir)


# ------------------------------------------------------------------------------------------- item 9: int8
def test_save_after_int8_writes_the_weights_loaded(tmp_path, t5_dir):
    gen = NegOptGenerator.from_pretrained(t5_dir).optimize("int8", warmup=False)
    gen.save_pretrained(tmp_path)
    assert_same_weights(tmp_path, t5_dir)
    loaded = NegOptGenerator.from_pretrained(tmp_path)
    assert loaded(PROMPTS, **SHORT) == NegOptGenerator.from_pretrained(t5_dir)(PROMPTS, **SHORT)
    assert gen(PROMPTS[0], **SHORT) == NegOptGenerator.from_pretrained(t5_dir).optimize("int8")(PROMPTS[0], **SHORT)


def test_save_after_bfloat16_then_int8_writes_the_float32_weights(tmp_path, t5_dir):
    gen = NegOptGenerator.from_pretrained(t5_dir).optimize("bfloat16", warmup=False).optimize("int8", warmup=False)
    gen.save_pretrained(tmp_path)
    assert_same_weights(tmp_path, t5_dir)


def test_a_model_changed_after_int8_is_refused_with_the_way_out(tmp_path, t5_dir):
    gen = NegOptGenerator.from_pretrained(t5_dir)
    model = gen.model
    gen.optimize("int8", warmup=False)
    with torch.no_grad():
        model.lm_head.weight.mul_(2.0)  # the user's model; the generator runs its int8 copy of the old weights
    with pytest.raises(ValueError, match=r"changed after optimize\(\).*int8 copy.*model\.save_pretrained"):
        gen.save_pretrained(tmp_path)


# ----------------------------------------------------------------------------------------- item 8: LoRA int8
def test_int8_runs_a_lora_generator_close_to_float_and_leaves_it_alone(tmp_path, lora_dir, t5_dir):
    float_gen = NegOptGenerator.from_pretrained(lora_dir, local_files_only=True)
    model = float_gen.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reference = float_gen(PROMPTS, max_new_tokens=16)
    gen = NegOptGenerator(model, float_gen.tokenizer, float_gen.config).optimize("int8", warmup=False)
    out = [gen(p, max_new_tokens=16) for p in PROMPTS]
    # The bound the guide gives for int8: the same 16-token negative for at least 6 of 8 prompts.
    assert sum(a == b for a, b in zip(out, reference)) >= 6, (out, reference)
    base = NegOptGenerator.from_pretrained(t5_dir)(PROMPTS, max_new_tokens=16)
    assert sum(a != b for a, b in zip(reference, base)) >= 4  # the adapter matters
    assert gen(PROMPTS, max_new_tokens=16) == out  # the batched call too
    # The user's peft model is untouched: its layers, its adapter and its weights.
    assert hasattr(model, "peft_config") and type(model.base_model.model.lm_head) is torch.nn.Linear
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert float_gen(PROMPTS, max_new_tokens=16) == reference
    # And it saves as the adapter it was.
    gen.save_pretrained(tmp_path)
    assert_same_weights(tmp_path, lora_dir)
    assert os.path.isfile(tmp_path / "adapter_config.json")


def test_int8_merges_the_adapter_at_its_scale(lora_dir):
    from peft.helpers import rescale_adapter_scale

    float_gen = NegOptGenerator.from_pretrained(lora_dir)
    base = NegOptGenerator.from_pretrained(lora_dir)
    with base.model.disable_adapter():
        without = NegOptGenerator(base.model, base.tokenizer, base.config).optimize("int8", warmup=False)
    with rescale_adapter_scale(float_gen.model, 0.0):
        zero = NegOptGenerator(float_gen.model, float_gen.tokenizer, float_gen.config).optimize("int8", warmup=False)
    full = NegOptGenerator(float_gen.model, float_gen.tokenizer, float_gen.config).optimize("int8", warmup=False)
    a, b, c = (g(PROMPTS, max_new_tokens=16) for g in (without, zero, full))
    assert a == b != c


def test_cli_generate_int8_on_an_adapter_folder(capsys, lora_dir):
    from negopt.cli import main

    assert (
        main(["generate", "--model", lora_dir, "--precision", "int8", "a cat", "a dog", "--max-new-tokens", "8"]) == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out == NegOptGenerator.from_pretrained(lora_dir).optimize("int8")(["a cat", "a dog"], max_new_tokens=8)


# ------------------------------------------------------------------------------- adapters as they run, saved
def _second_adapter(gen):
    from peft import LoraConfig

    torch.manual_seed(1)
    gen.model.add_adapter(
        "two", LoraConfig(task_type="SEQ_2_SEQ_LM", target_modules=["q", "v"], init_lora_weights=False)
    )
    gen.model.eval()


def test_the_active_adapter_is_the_one_saved(tmp_path, lora_dir):
    gen = NegOptGenerator.from_pretrained(lora_dir)
    first = gen(PROMPTS, **SHORT)
    _second_adapter(gen)
    gen.model.set_adapter("two")
    gen.model.eval()
    second = gen(PROMPTS, **SHORT)
    assert second != first
    gen.save_pretrained(tmp_path)
    assert not os.path.exists(tmp_path / "two")  # peft's subfolder for a non-default adapter, which nothing loads
    assert NegOptGenerator.from_pretrained(tmp_path)(PROMPTS, **SHORT) == second
    card = (tmp_path / "README.md").read_text()
    assert "library_name: negopt" in card  # negopt's card, not peft's empty template


@pytest.mark.parametrize("how", ["set_scale", "rescale_adapter_scale"])
def test_the_adapter_is_saved_at_the_scale_it_runs_at(tmp_path, lora_dir, how):
    from peft.helpers import rescale_adapter_scale
    from peft.tuners.lora import LoraLayer

    gen = NegOptGenerator.from_pretrained(lora_dir)
    full = gen(PROMPTS, **SHORT)
    if how == "set_scale":
        for m in gen.model.modules():
            if isinstance(m, LoraLayer):
                m.set_scale("default", 0.25)
        scaled = gen(PROMPTS, **SHORT)
        gen.save_pretrained(tmp_path)
    else:
        with rescale_adapter_scale(gen.model, 0.25):
            scaled = gen(PROMPTS, **SHORT)
            gen.save_pretrained(tmp_path)
    assert scaled != full
    assert NegOptGenerator.from_pretrained(tmp_path)(PROMPTS, **SHORT) == scaled


def test_saving_inside_disable_adapter_warns(tmp_path, lora_dir):
    gen = NegOptGenerator.from_pretrained(lora_dir)
    with gen.model.disable_adapter(), pytest.warns(UserWarning, match=r"inside disable_adapter\(\).*runs with it"):
        gen.save_pretrained(tmp_path)
    assert_same_weights(tmp_path, lora_dir)


def test_an_adapters_generation_config_is_saved_with_it(tmp_path, lora_dir):
    # An adapter folder holds no model config, so an edit of model.generation_config was lost on save.
    gen = NegOptGenerator.from_pretrained(lora_dir)
    before = gen(PROMPTS, **SHORT)
    written = {t for text in before for t in gen.tokenizer(text, add_special_tokens=False)["input_ids"][:2]}
    gen.model.generation_config.min_new_tokens = 11
    gen.model.generation_config.bad_words_ids = [[t] for t in sorted(written)]  # the first tokens it wrote
    edited = gen(PROMPTS, **SHORT)
    assert edited != before
    gen.save_pretrained(tmp_path)
    loaded = NegOptGenerator.from_pretrained(tmp_path)
    assert loaded.model.generation_config.min_new_tokens == 11
    assert loaded(PROMPTS, **SHORT) == edited
    # A folder written by peft alone (no generation_config.json) keeps the base model's settings.
    assert NegOptGenerator.from_pretrained(lora_dir).model.generation_config.min_new_tokens is None
