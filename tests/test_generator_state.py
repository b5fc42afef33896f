"""The result cache never answers for a state it did not see (issue 22, item 1).

Each test fills the cache, changes one thing that decides the output, and compares the next call with a generator
that has no cache over the same model in the same state. The models are loaded with ``from_pretrained`` where that
matters: their weights have version counter 0, as a new ``nn.Parameter`` has.
"""

from __future__ import annotations

import copy

import pytest
import torch

from negopt.generator import NegOptGenerator
from tiny import PROMPTS

pytestmark = pytest.mark.usefixtures("one_thread")

SHORT = {"max_new_tokens": 12}


def fresh(gen):
    """A generator over the same model and settings that caches nothing: the reference answer."""
    return NegOptGenerator(gen.model, gen.tokenizer, gen.config, cache_size=0)


def check_not_stale(gen, change, prompts=PROMPTS[:4], **kwargs):
    """Fill the cache, apply ``change``, and check the next call against an uncached generator; returns both
    answers (before, after)."""
    before = gen(prompts, **kwargs)
    assert gen(prompts, **kwargs) == before and gen.cache_info()["hits"] > 0  # the cache is in use
    change()
    after = gen(prompts, **kwargs)
    assert after == fresh(gen)(prompts, **kwargs)
    return before, after


@pytest.fixture()
def t5_loaded(t5_dir):
    return NegOptGenerator.from_pretrained(t5_dir)


@pytest.fixture()
def gpt2_loaded(gpt2_dir):
    return NegOptGenerator.from_pretrained(gpt2_dir)


# ------------------------------------------------------------------------------------------- generation_config
def test_generation_config_edits_are_seen(t5_loaded):
    gen = t5_loaded
    gc = gen.model.generation_config

    def ban_first_tokens():
        out = gen(PROMPTS[:4], **SHORT)
        ids = {gen.tokenizer(o, add_special_tokens=False)["input_ids"][0] for o in out if o}
        gc.bad_words_ids = [[i] for i in sorted(ids)]

    before, after = check_not_stale(gen, ban_first_tokens, **SHORT)
    assert after != before


def test_eos_and_min_new_tokens_edits_are_seen(gpt2_loaded):
    gen = gpt2_loaded
    gc = gen.model.generation_config
    kwargs = {"max_new_tokens": 24}
    # Make EOS likely, so that the outputs end early and the two settings below change them.
    with torch.no_grad():
        gen.model.get_output_embeddings().weight[gen.tokenizer.eos_token_id] *= -8.0

    def longer():
        gc.min_new_tokens = 16

    before, after = check_not_stale(gen, longer, **kwargs)
    assert after != before

    def no_eos():
        gc.min_new_tokens = None
        gc.eos_token_id = None

    check_not_stale(gen, no_eos, **kwargs)


def test_a_new_generation_config_object_with_the_same_values_keeps_the_cache(t5_loaded):
    gen = t5_loaded
    gen(PROMPTS[:2], **SHORT)
    gen.model.generation_config = copy.deepcopy(gen.model.generation_config)
    gen(PROMPTS[:2], **SHORT)
    assert gen.cache_info()["hits"] == 2


# ------------------------------------------------------------------------------------------------- LoRA scales
@pytest.fixture()
def lora_gen(t5_dir):
    from peft import LoraConfig, get_peft_model

    gen = NegOptGenerator.from_pretrained(t5_dir)
    torch.manual_seed(0)
    lora = LoraConfig(task_type="SEQ_2_SEQ_LM", target_modules=["q", "v", "o"], init_lora_weights=False)
    model = get_peft_model(gen.model, lora).eval()
    with torch.no_grad():  # a strong adapter, so that its scale shows in the text
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(8.0)
    return NegOptGenerator(model, gen.tokenizer, gen.config)


def test_rescale_adapter_scale_is_seen(lora_gen):
    from peft.helpers import rescale_adapter_scale

    gen = lora_gen
    full = gen(PROMPTS[:4], **SHORT)
    with rescale_adapter_scale(gen.model, 0.0):
        scaled = gen(PROMPTS[:4], **SHORT)
        assert scaled == fresh(gen)(PROMPTS[:4], **SHORT)
        with gen.model.disable_adapter():
            assert scaled == gen(PROMPTS[:4], **SHORT)  # scale 0 is the base model
    assert scaled != full
    assert gen(PROMPTS[:4], **SHORT) == full  # the scale is back


def test_set_scale_and_scaling_edits_are_seen(lora_gen):
    from peft.tuners.lora import LoraLayer

    gen = lora_gen
    layers = [m for m in gen.model.modules() if isinstance(m, LoraLayer)]

    def set_scale():
        for m in layers:
            m.set_scale("default", 0.25)

    before, after = check_not_stale(gen, set_scale, **SHORT)
    assert after != before

    def edit_scaling():  # in place, the dict object unchanged
        for m in layers:
            m.scaling["default"] = 0.0

    check_not_stale(gen, edit_scaling, **SHORT)


def test_merging_the_adapter_is_seen(lora_gen):
    gen = lora_gen
    check_not_stale(gen, gen.model.merge_adapter, **SHORT)
    check_not_stale(gen, gen.model.unmerge_adapter, **SHORT)


# ----------------------------------------------------------------------------------------- replaced parameters
@pytest.mark.parametrize("which", ["t5", "gpt2"])
def test_a_replaced_parameter_is_seen_on_a_loaded_model(which, t5_loaded, gpt2_loaded):
    gen = t5_loaded if which == "t5" else gpt2_loaded
    layer = (
        gen.model.get_decoder().block[0].layer[0].SelfAttention.q
        if which == "t5"
        else gen.model.transformer.h[0].mlp.c_fc
    )

    def replace():
        torch.manual_seed(3)
        layer.weight = torch.nn.Parameter(torch.randn_like(layer.weight) * 4.0)

    before, after = check_not_stale(gen, replace, **SHORT)
    assert after != before


def test_a_replaced_layer_is_seen(t5_loaded):
    gen = t5_loaded
    old = gen.model.get_decoder().block[1].layer[-1].DenseReluDense.wo
    torch.manual_seed(4)
    new = torch.nn.Linear(old.in_features, old.out_features, bias=False)  # built before the cache is filled

    def replace():
        gen.model.get_decoder().block[1].layer[-1].DenseReluDense.wo = new

    before, after = check_not_stale(gen, replace, **SHORT)
    assert after != before


def test_hits_stay_hits_on_a_lora_model(lora_gen):
    gen = lora_gen
    gen(PROMPTS[:3], **SHORT)
    for _ in range(3):
        gen(PROMPTS[:3], **SHORT)
    assert gen.cache_info()["hits"] == 9 and gen.cache_info()["misses"] == 3
