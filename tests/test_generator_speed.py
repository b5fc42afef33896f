"""NegOptGenerator's speed features: the result cache and the fast path (``optimize``).

The cache must return what the model would return, and never an answer made under other settings, weights or
adapters; each test compares a cached answer with the answer of a generator that has no cache. Timings are not
tested here (see benchmarks/bench_generator.py).
"""

from __future__ import annotations

import copy

import pytest
import torch

from negopt.config import NegOptConfig
from negopt.generator import NegOptGenerator
from tiny import PROMPTS, ForwardCounter, tiny_gpt2, tiny_t5

pytestmark = pytest.mark.usefixtures("one_thread")

SHORT = {"max_new_tokens": 12}


@pytest.fixture(scope="module")
def t5():
    return tiny_t5()


@pytest.fixture(scope="module")
def gpt2():
    return tiny_gpt2()


def fresh(model, tokenizer, config=None):
    """A generator that caches nothing: the reference answer."""
    return NegOptGenerator(model, tokenizer, config, cache_size=0)


# -------------------------------------------------------------------------------------------------------- the cache
def test_repeat_call_is_a_hit_and_equals_the_model(t5):
    model, tok = t5
    gen = NegOptGenerator(model, tok)
    counter = ForwardCounter(model)
    try:
        first = gen(PROMPTS[:4], **SHORT)
        runs = counter.n
        assert runs > 0
        second = gen(PROMPTS[:4], **SHORT)
        assert counter.n == runs  # no forward pass
        single = gen(PROMPTS[1], **SHORT)
        assert counter.n == runs  # a prompt seen in a list call is a hit alone too
    finally:
        counter.handle.remove()
    assert second == first == fresh(model, tok)(PROMPTS[:4], **SHORT)
    assert single == first[1]
    assert gen.cache_info() == {"hits": 5, "misses": 4, "size": 4, "maxsize": 128}


def test_list_call_runs_only_the_prompts_it_has_not_seen(t5):
    model, tok = t5
    gen = NegOptGenerator(model, tok)
    gen(PROMPTS[:3], **SHORT)
    out = gen(PROMPTS[1:6], **SHORT)
    assert gen.cache_info()["hits"] == 2 and gen.cache_info()["misses"] == 6
    assert out == fresh(model, tok)(PROMPTS[1:6], **SHORT)


def test_hits_are_fresh_lists(t5):
    model, tok = t5
    gen = NegOptGenerator(model, tok)
    a = gen(PROMPTS[:2], num_candidates=2, seed=3, **SHORT)
    a[0].append("mine")
    a.append("mine")
    b = gen(PROMPTS[:2], num_candidates=2, seed=3, **SHORT)
    assert len(b) == 2 and len(b[0]) == 2 and "mine" not in b[0]
    assert b == fresh(model, tok)(PROMPTS[:2], num_candidates=2, seed=3, **SHORT)


@pytest.mark.parametrize(
    "first, second",
    [
        ({"max_new_tokens": 12}, {"max_new_tokens": 6}),
        ({"max_new_tokens": 12}, {"max_new_tokens": 12, "no_repeat_ngram_size": 0}),
        (
            {"max_new_tokens": 12, "num_candidates": 2, "seed": 0},
            {"max_new_tokens": 12, "num_candidates": 2, "seed": 1},
        ),
        (
            {"max_new_tokens": 12, "num_candidates": 2, "seed": 0},
            {"max_new_tokens": 12, "num_candidates": 3, "seed": 0},
        ),
        ({"max_new_tokens": 12, "num_beams": 2}, {"max_new_tokens": 12}),
        (
            {"max_new_tokens": 12, "do_sample": True, "seed": 0},
            {"max_new_tokens": 12, "do_sample": True, "seed": 0, "batch_size": 1},
        ),
    ],
)
def test_settings_never_cross(t5, first, second):
    model, tok = t5
    gen = NegOptGenerator(model, tok)
    gen(PROMPTS[:3], **first)
    assert gen(PROMPTS[:3], **second) == fresh(model, tok)(PROMPTS[:3], **second)
    assert gen(PROMPTS[:3], **first) == fresh(model, tok)(PROMPTS[:3], **first)


def test_seeded_sampling_is_cached_per_call_and_unseeded_never(t5):
    model, tok = t5
    gen = NegOptGenerator(model, tok)
    kw = {"do_sample": True, **SHORT}
    a = gen(PROMPTS[:3], seed=5, **kw)
    assert gen(PROMPTS[:3], seed=5, **kw) == a and gen.cache_info()["hits"] == 1
    # A prompt's samples depend on its batch: a sub-list is a new call, not three hits.
    assert gen(PROMPTS[:2], seed=5, **kw) == fresh(model, tok)(PROMPTS[:2], seed=5, **kw)
    before = gen.cache_info()
    gen(PROMPTS[:3], **kw)
    gen(PROMPTS[:3], **kw)
    assert gen.cache_info()["size"] == before["size"] and gen.cache_info()["hits"] == before["hits"]


def test_config_and_model_changes_are_never_served_stale(t5):
    model, tok = t5
    other, _ = tiny_t5(seed=1)
    gen = NegOptGenerator(model, tok)
    gen(PROMPTS[:3], **SHORT)

    gen.config = NegOptConfig(prompt_template="negative for: {prompt}")
    assert gen(PROMPTS[:3], **SHORT) == fresh(model, tok, gen.config)(PROMPTS[:3], **SHORT)
    gen.config = NegOptConfig(generation_kwargs={"repetition_penalty": 1.0})
    assert gen(PROMPTS[:3], **SHORT) == fresh(model, tok, gen.config)(PROMPTS[:3], **SHORT)

    gen.config = NegOptConfig()
    assert gen(PROMPTS[:3], **SHORT) == fresh(model, tok)(PROMPTS[:3], **SHORT)
    gen.model = other
    assert gen(PROMPTS[:3], **SHORT) == fresh(other, tok)(PROMPTS[:3], **SHORT)


def test_weight_updates_empty_the_cache(t5):
    model, tok = t5
    model = copy.deepcopy(model)
    other, _ = tiny_t5(seed=2)
    gen = NegOptGenerator(model, tok)
    before = gen(PROMPTS[:3], **SHORT)
    model.load_state_dict(other.state_dict())  # in place, same parameter objects
    after = gen(PROMPTS[:3], **SHORT)
    assert after == fresh(other, tok)(PROMPTS[:3], **SHORT) != before

    # One optimizer step, as a trainer takes on the generator's own model.
    opt = torch.optim.SGD(model.parameters(), lr=5.0)
    batch = tok(PROMPTS[:2], return_tensors="pt", padding=True)
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
    model.eval()
    stepped = gen(PROMPTS[:3], **SHORT)
    assert stepped == fresh(model, tok)(PROMPTS[:3], **SHORT)


def test_training_mode_is_not_cached(t5):
    model, tok = t5
    model = copy.deepcopy(model).train()
    gen = NegOptGenerator(model, tok)
    gen(PROMPTS[:2], **SHORT)
    gen(PROMPTS[:2], **SHORT)
    assert gen.cache_info()["hits"] == 0 and gen.cache_info()["size"] == 0


def test_adapters_never_cross(t5):
    from peft import LoraConfig, get_peft_model

    model, tok = t5
    lora = LoraConfig(task_type="SEQ_2_SEQ_LM", target_modules=["q", "v"], init_lora_weights=False)
    torch.manual_seed(0)
    peft_model = get_peft_model(copy.deepcopy(model), lora, adapter_name="one")
    torch.manual_seed(1)
    peft_model.add_adapter("two", lora)
    peft_model.eval()
    gen = NegOptGenerator(peft_model, tok)

    on_a = gen(PROMPTS[:4], **SHORT)
    peft_model.set_adapter("two")
    on_b = gen(PROMPTS[:4], **SHORT)
    assert on_b == fresh(peft_model, tok)(PROMPTS[:4], **SHORT)
    with peft_model.disable_adapter():
        assert gen(PROMPTS[:4], **SHORT) == fresh(model, tok)(PROMPTS[:4], **SHORT)
    peft_model.set_adapter("one")
    assert gen(PROMPTS[:4], **SHORT) == on_a != on_b


def test_cache_size_lru_and_off(t5):
    model, tok = t5
    gen = NegOptGenerator(model, tok, cache_size=2)
    gen(PROMPTS[0], **SHORT)
    gen(PROMPTS[1], **SHORT)
    gen(PROMPTS[0], **SHORT)  # now PROMPTS[1] is the least recently used
    gen(PROMPTS[2], **SHORT)
    assert gen.cache_info()["size"] == 2
    hits = gen.cache_info()["hits"]
    gen(PROMPTS[0], **SHORT)
    assert gen.cache_info()["hits"] == hits + 1
    gen(PROMPTS[1], **SHORT)
    assert gen.cache_info()["hits"] == hits + 1  # evicted

    gen.cache_size = 0
    assert gen.cache_info()["size"] == 0
    gen(PROMPTS[0], **SHORT)
    gen(PROMPTS[0], **SHORT)
    assert gen.cache_info()["size"] == 0 and gen.cache_info()["hits"] == hits + 1
    gen.cache_size = 4
    gen(PROMPTS[0], **SHORT)
    gen.clear_cache()
    assert gen.cache_info()["size"] == 0


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("8", TypeError)])
def test_bad_cache_size_is_a_clear_error(t5, bad, error):
    model, tok = t5
    with pytest.raises(error, match=r"cache_size must be"):
        NegOptGenerator(model, tok, cache_size=bad)
    gen = NegOptGenerator(model, tok)
    with pytest.raises(error, match=repr(bad).replace("(", r"\(")):
        gen.cache_size = bad


def test_object_kwargs_are_not_cached(t5):
    from transformers import LogitsProcessorList, MinLengthLogitsProcessor

    model, tok = t5
    gen = NegOptGenerator(model, tok)
    procs = LogitsProcessorList([MinLengthLogitsProcessor(4, eos_token_id=tok.eos_token_id)])
    gen(PROMPTS[:2], logits_processor=procs, **SHORT)
    gen(PROMPTS[:2], logits_processor=procs, **SHORT)
    assert gen.cache_info()["size"] == 0


# ------------------------------------------------------------------------------------------------------ fast path
@pytest.mark.parametrize("which", ["t5", "gpt2"])
def test_fast_path_float32_keeps_greedy_outputs(which, t5, gpt2):
    # The static cache and the padding to a 32-token bucket, without the (slow) compile step: disable_compile=True.
    model, tok = t5 if which == "t5" else gpt2
    ref = fresh(model, tok)
    gen = NegOptGenerator(model, tok).optimize("float32", compile=True, warmup=False)
    assert gen.dtype == torch.float32 and gen._fast == {"backend": "torch", "precision": "float32", "compile": True}
    for p in PROMPTS:
        assert gen(p, disable_compile=True, **SHORT) == ref(p, **SHORT)
    assert gen(PROMPTS, **SHORT) == ref(PROMPTS, **SHORT)  # a list call runs as before


@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_reduced_precision_changes_outputs_within_the_documented_bound(t5, precision):
    # The bound in docs/guides/generating.md: the same 16-token negative for at least 6 of these 8 prompts.
    model, tok = t5
    ref = fresh(model, tok)(PROMPTS, max_new_tokens=16)
    gen = NegOptGenerator(copy.deepcopy(model), tok).optimize(precision)
    assert gen._fast["precision"] == precision
    out = [gen(p, max_new_tokens=16) for p in PROMPTS]
    same = sum(a == b for a, b in zip(out, ref))
    assert same >= 6, (same, out, ref)
    assert all(isinstance(o, str) for o in out) and sum(bool(o) for o in out) >= 6


def test_int8_leaves_the_given_model_alone_and_stays_on_cpu(t5):
    model, tok = t5
    gen = NegOptGenerator(model, tok).optimize("int8", warmup=False)
    assert gen.model is not model
    assert type(model.lm_head) is torch.nn.Linear and type(gen.model.lm_head) is not torch.nn.Linear
    with pytest.raises(ValueError, match=r"int8.*cannot move to 'cuda'"):
        gen.to("cuda")
    with pytest.raises(ValueError, match=r"already quantized to int8.*'bfloat16'"):
        gen.optimize("bfloat16")


def test_bfloat16_on_cpu_and_cache_cleared(t5):
    model, tok = t5
    gen = NegOptGenerator(copy.deepcopy(model), tok)
    gen(PROMPTS[:2], **SHORT)
    assert gen.cache_info()["size"] == 2
    gen.optimize("bf16", warmup=False)
    assert gen.dtype == torch.bfloat16 and gen.cache_info()["size"] == 0
    # no compile on a CPU unless asked
    assert gen._fast == {"backend": "torch", "precision": "bfloat16", "compile": False}


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"precision": "fp8"}, ValueError, r"precision must be one of .*got 'fp8'"),
        ({"precision": 16}, ValueError, r"precision must be one of .*got 16"),
        ({"precision": "float16"}, ValueError, r"precision='float16' is slow on a CPU"),
        ({"precision": torch.float16}, ValueError, r"precision='float16' is slow on a CPU"),
        ({"compile": "yes"}, TypeError, r"compile must be True, False or None.*'yes'"),
        ({"warmup": 1}, TypeError, r"warmup must be a bool.*1"),
    ],
)
def test_bad_optimize_arguments_are_clear_errors(t5, kwargs, error, match):
    model, tok = t5
    gen = NegOptGenerator(copy.deepcopy(model), tok)
    with pytest.raises(error, match=match):
        gen.optimize(**kwargs)
    assert gen._fast is None and gen.dtype == torch.float32


@pytest.mark.slow
def test_compiled_fast_path_keeps_greedy_outputs(t5):
    # Real torch.compile on the CPU: tens of seconds, hence slow.
    model, tok = t5
    ref = fresh(model, tok)
    gen = NegOptGenerator(copy.deepcopy(model), tok, cache_size=0).optimize("float32", compile=True)
    for p in PROMPTS[:4]:
        assert gen(p, **SHORT) == ref(p, **SHORT)


def test_warmup_runs_the_model_even_when_cached(t5):
    model, tok = t5
    gen = NegOptGenerator(copy.deepcopy(model), tok)
    gen("a photo of a cat")  # the warm-up prompt, now cached
    counter = ForwardCounter(gen.model)
    try:
        gen.optimize("float32")
    finally:
        counter.handle.remove()
    assert counter.n > 0 and gen.cache_size == 128 and gen.cache_info()["size"] == 0


# ------------------------------------------------------------------------------------------------ the decode loop
def tiny_bart():
    """A tiny BART whose generation config forces EOS last (as BART checkpoints do)."""
    from transformers import BartConfig, BartForConditionalGeneration, ByT5Tokenizer

    tok = ByT5Tokenizer()
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=len(tok),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.pad_token_id,
        decoder_start_token_id=tok.eos_token_id,
        forced_eos_token_id=tok.eos_token_id,
    )
    return BartForConditionalGeneration(config).eval(), tok


def stops_early(model, tok, scale):
    """A copy of ``model`` whose EOS row of the output layer is scaled, so that generation stops at EOS sooner or
    later."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.get_output_embeddings().weight[tok.eos_token_id] *= scale
    return model


LOOP_SETTINGS = [
    {"max_new_tokens": 20, "no_repeat_ngram_size": 0, "repetition_penalty": 1.0},
    {"max_new_tokens": 20},  # negopt's defaults: no_repeat_ngram_size=3, repetition_penalty=1.2
    {"max_new_tokens": 12, "min_new_tokens": 6, "repetition_penalty": 1.5, "no_repeat_ngram_size": 2},
    {"max_new_tokens": 10, "min_length": 4, "repetition_penalty": 0.8},
    {"max_new_tokens": 8, "min_new_tokens": 8},  # with BART's forced EOS: both act on the last step
]


@pytest.mark.parametrize("which", ["t5", "bart", "gpt2"])
def test_decode_loop_equals_generate_token_for_token(which, t5, gpt2):
    from negopt.generator.fastpath.greedy import GreedyDecoder, greedy_plan
    from negopt.generator.fastpath.prepare import bucket

    model, tok = {"t5": t5, "gpt2": gpt2, "bart": None}[which] or tiny_bart()
    seq2seq = model.config.is_encoder_decoder
    pad = tok.pad_token_id
    lengths = set()
    for scale in (1.0, -8.0, 8.0):  # the scaled models stop at EOS before max_new_tokens on some prompts
        m = stops_early(model, tok, scale)
        decoder = GreedyDecoder(m)
        for settings in LOOP_SETTINGS:
            kwargs = {**settings, "pad_token_id": pad}
            plan = greedy_plan(m, kwargs, seq2seq)
            assert plan is not None and plan.max_new_tokens == settings["max_new_tokens"]
            for p in PROMPTS[:4]:
                enc = tok(p if seq2seq else f"Prompt: {p}\nNegative prompt:", return_tensors="pt")
                n = enc["input_ids"].shape[1]
                with torch.inference_mode():
                    ref = m.generate(**enc, **kwargs)
                ref = ref[:, 1:] if seq2seq else ref[:, n:]
                # Unpadded, and padded past a 32-token bucket (right for seq2seq, left for causal).
                assert torch.equal(decoder(enc["input_ids"], enc["attention_mask"], plan, seq2seq, n), ref)
                width = bucket(n) + 32
                ids = torch.full((1, width), pad)
                mask = torch.zeros((1, width), dtype=torch.long)
                span = slice(0, n) if seq2seq else slice(width - n, width)
                ids[0, span], mask[0, span] = enc["input_ids"][0], 1
                assert torch.equal(decoder(ids, mask, plan, seq2seq, n), ref), (p, settings, scale)
                lengths.add("max" if ref.shape[1] == plan.max_new_tokens else "eos")
    assert lengths == {"eos", "max"}  # both endings were checked


def test_optimized_generator_equals_plain_generator_and_uses_the_loop(t5, gpt2):
    for model, tok in (t5, gpt2):
        for scale in (1.0, -8.0, 8.0):
            m = stops_early(model, tok, scale)
            ref = fresh(m, tok)
            gen = NegOptGenerator(m, tok, cache_size=0).optimize("float32", compile=False, warmup=False)
            calls = []  # decoder steps taken, counted by wrapping the (real) step
            step = gen._decoder._step_eager
            gen._decoder._step_eager = lambda state, step=step, calls=calls: calls.append(1) or step(state)
            for p in PROMPTS:
                assert gen(p, **SHORT) == ref(p, **SHORT)
            for p in PROMPTS[:3]:
                assert gen(p) == ref(p)  # the defaults: 64 tokens, repetition control
            assert calls  # the loop ran
            assert gen(PROMPTS, **SHORT) == ref(PROMPTS, **SHORT)  # a small batch, through the loop too


@pytest.mark.parametrize(
    "settings",
    [
        {"num_beams": 2},
        {"do_sample": True},
        {"bad_words_ids": [[5]]},
        {"suppress_tokens": [5]},
        {"no_repeat_ngram_size": 3, "encoder_no_repeat_ngram_size": 2},
        {"max_new_tokens": None, "max_length": 20},
        {"exponential_decay_length_penalty": (2, 1.5)},
        {"num_return_sequences": 2, "num_beams": 2},
    ],
)
def test_settings_the_loop_does_not_implement_go_to_generate(t5, settings):
    from negopt.generator.fastpath.greedy import greedy_plan

    model, tok = t5
    assert greedy_plan(model, {"max_new_tokens": 8, "pad_token_id": 0}, True) is not None
    assert greedy_plan(model, {"max_new_tokens": 8, "pad_token_id": 0, **settings}, True) is None
    # Not a generation setting at all (a logits processor list): generate too.
    assert greedy_plan(model, {"max_new_tokens": 8, "logits_processor": []}, True) is None
    # Through the generator: the same text as without optimize().
    gen = NegOptGenerator(model, tok, cache_size=0).optimize("float32", warmup=False)
    kwargs = {k: v for k, v in {**SHORT, **settings}.items() if k not in ("num_return_sequences", "do_sample")}
    assert gen(PROMPTS[0], **kwargs) == fresh(model, tok)(PROMPTS[0], **kwargs)
