"""``NegOptGenerator.optimize(backend="ctranslate2")``: the same negatives as the torch path, from CTranslate2.

Each test compares against a real reference: the torch generator's output, or greedy decoding written out here
(one full forward pass a token, the repetition penalty and the n-gram ban spelled out). Timings are in
benchmarks/bench_latency.py, not here.
"""

from __future__ import annotations

import copy
import sys
import warnings

import pytest
import torch

pytest.importorskip("ctranslate2")

from negopt.generator import NegOptGenerator  # noqa: E402
from negopt.generator.fastpath.ctranslate2 import CT2Decoder  # noqa: E402
from negopt.generator.fastpath.greedy import greedy_plan  # noqa: E402
from tiny import PROMPTS, ForwardCounter, tiny_gpt2, tiny_t5  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models():
    # Untied T5s (see tiny_t5): seed 1 never writes its start token on PROMPTS, seed 11 does on 6 of 8.
    tied, tok = tiny_t5(0)  # T5's default: output rows tied to the input embeddings, scaled by d_model ** -0.5
    with torch.no_grad():  # a random T5 repeats its input token, the start (pad) token first; a zero row stops that
        tied.get_output_embeddings().weight[tok.pad_token_id].zero_()
    from transformers import T5Config, T5ForConditionalGeneration

    # flan-t5's kind of T5 (T5 v1.1): gated-GELU feed-forward, untied output layer; seed 7 never writes its start
    # token in these tests
    flan = T5Config(
        vocab_size=len(tok), d_model=48, d_kv=16, num_heads=4, d_ff=96, num_layers=2, num_decoder_layers=2,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(7)
    flan_t5 = T5ForConditionalGeneration(flan).eval()
    return {
        "t5": tiny_t5(1, tie_word_embeddings=False),
        "flan_t5": (flan_t5, tok),
        "t5_tied": (tied, tok),
        "t5_start": tiny_t5(11, tie_word_embeddings=False),
        "gpt2": tiny_gpt2(),
    }


def written_out_greedy(model, ids, n_new, penalty, ngram, start, eos, context):
    """Greedy decoding by hand: one full forward pass a token; the repetition penalty (divide a positive score,
    multiply a negative one) and the n-gram ban over ``context`` plus the tokens written so far."""
    seq2seq = model.config.is_encoder_decoder
    new: list[int] = []
    for _ in range(n_new):
        with torch.no_grad():
            if seq2seq:
                logits = model(input_ids=torch.tensor([ids]), decoder_input_ids=torch.tensor([[start] + new])).logits
            else:
                logits = model(input_ids=torch.tensor([ids + new])).logits
        scores = logits[0, -1].clone()
        history = context + new
        for t in set(history):
            scores[t] = scores[t] * penalty if scores[t] < 0 else scores[t] / penalty
        if ngram and len(history) >= ngram:
            last = history[len(history) - ngram + 1 :]
            for i in range(len(history) - ngram + 1):
                if history[i : i + ngram - 1] == last:
                    scores[history[i + ngram - 1]] = -float("inf")
        new.append(int(scores.argmax()))
        if new[-1] in eos:
            break
    return new


@pytest.mark.parametrize("which", ["t5", "gpt2"])
def test_ctranslate2_counts_only_written_tokens_and_negopt_restores_transformers_rule(which, models):
    """CTranslate2's own rule (penalty and n-gram ban over the written tokens), pinned against the written-out
    loop; transformers' rule (the start token or the prompt counted too) is what the generator returns."""
    model, tok = models[which]
    seq2seq = which == "t5"
    kw = {"max_new_tokens": 14, "repetition_penalty": 1.3, "no_repeat_ngram_size": 2, "pad_token_id": tok.pad_token_id}
    plan = greedy_plan(model, kw, seq2seq)
    decoder = CT2Decoder(model, tok, "float32", 1, seq2seq)
    for prompt in PROMPTS[:4]:
        ids = tok(prompt)["input_ids"]
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), **kw)
        hf = out[0, 1:].tolist() if seq2seq else out[0, len(ids) :].tolist()
        context = [plan.start] if seq2seq else ids
        assert written_out_greedy(model, ids, 14, 1.3, 2, plan.start, plan.eos, context) == hf
        options = {"beam_size": 1, "repetition_penalty": 1.3, "no_repeat_ngram_size": 2, "return_end_token": True}
        options["end_token"] = [str(e) for e in plan.eos]
        if seq2seq:
            raw = decoder._engine.translate_batch([[str(t) for t in ids]], max_decoding_length=14, **options)
            own = [int(t) for t in raw[0].hypotheses[0]]
        else:
            raw = decoder._engine.generate_batch(
                [[str(t) for t in ids]], max_length=14, include_prompt_in_result=False, **options
            )
            own = list(raw[0].sequences_ids[0])
        assert own == written_out_greedy(model, ids, 14, 1.3, 2, plan.start, plan.eos, [])
        if seq2seq:
            got = decoder([ids], plan)[0]
            assert got is None or got == hf  # None: a row that holds the start token, which transformers runs
        else:  # counting the prompt would take CTranslate2 a step a prompt token: such calls stay in torch
            assert not decoder.accepts(plan)


def eager_to_stop(model, tokenizer):
    """A copy of ``model`` that stops after a few tokens, so that length settings decide outputs: its end-of-text
    output row is made like the row of the token it writes most (T5: 1.1 times that row; GPT-2, whose output rows
    are also its input embeddings: plus 0.7 times it)."""
    model = copy.deepcopy(model)
    ids = NegOptGenerator(model, tokenizer).encode_prompts([PROMPTS[1]])[0]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=24, min_new_tokens=24, pad_token_id=0)
        new = out[0, 1:] if model.config.is_encoder_decoder else out[0, len(ids) :]
        favourite = int(torch.mode(new).values)
        rows = model.get_output_embeddings().weight
        if model.config.is_encoder_decoder:
            rows[tokenizer.eos_token_id] = 1.1 * rows[favourite]
        else:
            rows[tokenizer.eos_token_id] += 0.7 * rows[favourite]
    return model


@pytest.mark.parametrize("which", ["t5", "t5_tied", "flan_t5", "gpt2"])
@pytest.mark.parametrize("settings", ["defaults", "min_new_tokens", "min_length"])
# A short prompt alone cannot reach a min_length set for the longest: transformers warns, both paths stop at the max.
@pytest.mark.filterwarnings("ignore:Unfeasible length constraints")
def test_float32_equals_the_torch_path_token_for_token(which, settings, models):
    model, tok = models[which]
    model = eager_to_stop(model, tok)
    reference = NegOptGenerator(model, tok, cache_size=0)
    longest = max(len(r) for r in reference.encode_prompts(PROMPTS))
    kw = {
        "defaults": {"max_new_tokens": 24},
        "min_new_tokens": {"max_new_tokens": 24, "min_new_tokens": 12},
        # min_length counts the start token (seq2seq) or the prompt, padded to the longest of the batch (causal)
        "min_length": {"max_new_tokens": 24, "min_length": longest + 12 if which == "gpt2" else 12},
    }[settings]
    if which == "gpt2":  # calls that count the prompt stay in torch (see the next test)
        kw.update(repetition_penalty=1.0, no_repeat_ngram_size=0)
    expected = reference(PROMPTS, **kw)
    if settings != "defaults":  # the model stops early: the length setting changes outputs
        assert expected != reference(PROMPTS, **{k: v for k, v in kw.items() if not k.startswith("min_")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GPT-2: negopt's defaults stay in torch (tested below)
        fast = NegOptGenerator(copy.deepcopy(model), tok, cache_size=0).optimize(backend="ctranslate2")
    counter = ForwardCounter(fast.model)
    assert fast(PROMPTS, **kw) == expected  # one batched call
    assert [fast(p, **kw) for p in PROMPTS] == [reference(p, **kw) for p in PROMPTS]  # one prompt a call
    assert counter.n == 0  # CTranslate2 answered every call


@pytest.mark.parametrize(
    "kw",
    [
        {"max_new_tokens": 10, "forced_bos_token_id": 70},
        {"max_new_tokens": 10, "forced_eos_token_id": 1},
        {"max_new_tokens": 6, "min_new_tokens": 6, "forced_bos_token_id": 70, "forced_eos_token_id": 1},
    ],
    ids=["forced_bos", "forced_eos", "both"],
)
def test_forced_first_and_last_tokens_equal_the_torch_path(kw, models):
    model, tok = models["t5"]
    model = eager_to_stop(model, tok)
    fast = NegOptGenerator(copy.deepcopy(model), tok, cache_size=0).optimize(backend="ctranslate2")
    counter = ForwardCounter(fast.model)
    assert fast(PROMPTS, **kw) == NegOptGenerator(model, tok, cache_size=0)(PROMPTS, **kw)
    assert counter.n == 0


def test_causal_calls_that_count_the_prompt_stay_in_torch_with_a_warning(models):
    model, tok = models["gpt2"]
    with pytest.warns(UserWarning, match="no_repeat_ngram_size=0") as caught:
        fast = NegOptGenerator(copy.deepcopy(model), tok, cache_size=0).optimize(backend="ctranslate2")
    assert caught[0].filename == __file__  # the warning points at the user's call
    counter = ForwardCounter(fast.model)
    assert fast(PROMPTS[:3]) == NegOptGenerator(model, tok, cache_size=0)(PROMPTS[:3])
    assert counter.n > 0  # torch answered
    counter.n = 0
    neutral = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "max_new_tokens": 12}
    assert fast(PROMPTS[:3], **neutral) == NegOptGenerator(model, tok, cache_size=0)(PROMPTS[:3], **neutral)
    assert counter.n == 0  # CTranslate2 answered
    t5, t5_tok = models["t5"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a seq2seq model with negopt's defaults runs in CTranslate2: no warning
        NegOptGenerator(t5, t5_tok).optimize(backend="ctranslate2")


def test_rows_with_the_start_token_go_to_transformers(models):
    """Random tiny T5s write their start (pad) token: those rows must be transformers' answer, and the others
    CTranslate2's, in the order of the call."""
    model, tok = models["t5_start"]
    gen = NegOptGenerator(copy.deepcopy(model), tok, cache_size=0).optimize(backend="ctranslate2")
    plan = greedy_plan(gen.model, {"max_new_tokens": 20, "repetition_penalty": 1.2, "pad_token_id": 0}, True)
    rows = gen.encode_prompts(PROMPTS)
    out = gen._decoder(rows, plan)
    redo = [i for i, o in enumerate(out) if o is None]
    assert 0 < len(redo) < len(rows)  # both kinds occur in this case
    reference = NegOptGenerator(model, tok, cache_size=0)
    assert gen(PROMPTS, max_new_tokens=20) == reference(PROMPTS, max_new_tokens=20)
    # A penalty below 1 favours the start token on every row: such calls go to transformers, CTranslate2 unused.
    rewarding = greedy_plan(gen.model, {"max_new_tokens": 20, "repetition_penalty": 0.9, "pad_token_id": 0}, True)
    assert not gen._decoder.accepts(rewarding)
    assert gen(PROMPTS, max_new_tokens=20, repetition_penalty=0.9) == reference(
        PROMPTS, max_new_tokens=20, repetition_penalty=0.9
    )


@pytest.mark.parametrize("which", ["t5", "gpt2"])
def test_int8_changes_outputs_within_the_documented_bound(which, models):
    """int8 weights change some tokens: the documented bound is the same first 8 tokens on at least half of the
    prompts (a trained model, whose choices are not near-ties, agrees more often than these random ones)."""
    model, tok = models[which]
    kw = {"max_new_tokens": 16, "min_new_tokens": 16}
    seq2seq = which == "t5"
    if not seq2seq:  # a causal model runs in CTranslate2 with the penalties off (see above)
        kw.update(repetition_penalty=1.0, no_repeat_ngram_size=0)
    plan = greedy_plan(model, {"repetition_penalty": 1.2, "no_repeat_ngram_size": 3, **kw, "pad_token_id": 0}, seq2seq)
    f32 = CT2Decoder(model, tok, "float32", 1, seq2seq)
    i8 = CT2Decoder(model, tok, "int8", 1, seq2seq)
    rows = [tok(p)["input_ids"] for p in PROMPTS]
    a, b = f32(rows, plan), i8(rows, plan)
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    same = sum(x[:8] == y[:8] for x, y in pairs)
    assert len(pairs) >= 4 and same >= len(pairs) / 2, (same, len(pairs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GPT-2: negopt's defaults stay in torch
        gen = NegOptGenerator(copy.deepcopy(model), tok, cache_size=0).optimize("int8", backend="ctranslate2")
    texts = gen(PROMPTS, **kw)
    assert all(isinstance(t, str) for t in texts) and sum(bool(t) for t in texts) >= len(PROMPTS) - 1


def test_lora_adapter_is_merged_and_a_changed_model_goes_back_to_torch(models):
    from peft import LoraConfig, get_peft_model

    model, tok = models["t5"]
    lora = LoraConfig(r=4, target_modules=["q", "v"], init_lora_weights=False)
    peft_model = get_peft_model(copy.deepcopy(model), lora)
    peft_model.eval()
    reference = NegOptGenerator(peft_model, tok, cache_size=0)
    expected = reference(PROMPTS)
    assert expected != NegOptGenerator(model, tok, cache_size=0)(PROMPTS)  # the adapter matters here
    fast = NegOptGenerator(peft_model, tok, cache_size=0).optimize(backend="ctranslate2")
    assert fast(PROMPTS) == expected
    assert fast.model is peft_model and hasattr(peft_model, "peft_config")  # the user's model is left alone
    with peft_model.disable_adapter():  # converted without the adapter, as the model then computes
        bare = NegOptGenerator(peft_model, tok, cache_size=0).optimize(backend="ctranslate2")
        assert bare(PROMPTS) == NegOptGenerator(model, tok, cache_size=0)(PROMPTS)
    assert fast(PROMPTS) == expected and hasattr(
        peft_model.base_model.model.encoder.block[0].layer[0].SelfAttention.q, "lora_A"
    )
    with torch.no_grad():  # an optimizer-like in-place update
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(3.0)
    with pytest.warns(UserWarning, match="changed since optimize") as caught:
        after = fast(PROMPTS)
    assert caught[0].filename == __file__
    assert after == reference(PROMPTS)


@pytest.mark.parametrize("precision", ["float32", "int8"])
@pytest.mark.parametrize("which", ["t5", "gpt2"])
def test_the_users_model_is_left_bit_for_bit_as_it_was(which, precision, models):
    """Quantizing while converting changed some of the torch model's weights in place (CTranslate2 holds views of
    them): the model that serves every other call, and that save_pretrained writes, must stay as it was."""
    model, tok = models[which]
    model = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GPT-2: negopt's defaults stay in torch
        gen = NegOptGenerator(model, tok).optimize(precision, backend="ctranslate2")
    gen(PROMPTS[:2])
    assert gen.model is model
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_torch_keeps_its_thread_count(models):
    """Loading a CTranslate2 model sets the OpenMP thread count, which torch can share: torch's must not change."""
    model, tok = models["t5"]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        gen = NegOptGenerator(model, tok).optimize(backend="ctranslate2", threads=1)
        gen(PROMPTS[:2])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_other_calls_run_in_transformers_and_the_cache_keeps_them_apart(models):
    model, tok = models["gpt2"]
    reference = NegOptGenerator(model, tok, cache_size=0)
    fast = NegOptGenerator(copy.deepcopy(model), tok).optimize(backend="ctranslate2")
    sampled = {"num_candidates": 2, "seed": 3}
    assert fast(PROMPTS[:3], **sampled) == reference(PROMPTS[:3], **sampled)
    assert fast(PROMPTS[:2], num_beams=2) == reference(PROMPTS[:2], num_beams=2)
    first = fast(PROMPTS[0])
    assert fast.cache_info()["size"] > 0 and fast(PROMPTS[0]) == first  # a hit
    fast.optimize("int8", backend="ctranslate2")
    assert fast.cache_info()["size"] == 0  # a new backend or precision empties the cache


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"backend": "onnx"}, ValueError, "backend must be"),
        ({"backend": "ctranslate2", "precision": "bfloat16"}, ValueError, "'float32' or 'int8'"),
        ({"backend": "ctranslate2", "compile": True}, ValueError, "compile=True"),
        ({"backend": "ctranslate2", "threads": 0}, ValueError, "threads must be"),
        ({"backend": "ctranslate2", "threads": True}, ValueError, "threads must be"),
        ({"threads": 2}, ValueError, "threads is an option of backend='ctranslate2'"),
        ({"backend": "ctranslate2", "warmup": "yes"}, TypeError, "warmup"),
    ],
)
def test_bad_backend_arguments_are_clear_errors(kwargs, error, match, models):
    model, tok = models["t5"]
    gen = NegOptGenerator(model, tok)
    with pytest.raises(error, match=match):
        gen.optimize(**kwargs)
    assert gen._fast is None  # nothing half-done


def test_unconvertible_model_and_missing_package_are_clear_errors(models, monkeypatch):
    from transformers import BartConfig, BartForConditionalGeneration, ByT5Tokenizer

    tok = ByT5Tokenizer()
    config = BartConfig(
        vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, pad_token_id=0, eos_token_id=1,
        bos_token_id=2, decoder_start_token_id=1,
    )  # fmt: skip
    bart = NegOptGenerator(BartForConditionalGeneration(config).eval(), tok)
    try:
        bart.optimize(backend="ctranslate2")
    except ValueError as e:  # this ctranslate2 cannot read this transformers' BART config
        assert "backend='torch'" in str(e) and "BartForConditionalGeneration" in str(e)
    else:  # a ctranslate2 release that converts it must give transformers' answer
        assert bart(PROMPTS[:3]) == NegOptGenerator(bart.model, tok, cache_size=0)(PROMPTS[:3])
    model, tok = models["t5"]
    int8 = NegOptGenerator(copy.deepcopy(model), tok).optimize("int8")
    with pytest.raises(ValueError, match="load the generator again"):
        int8.optimize(backend="ctranslate2")
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"negopt\[ctranslate2\]"):
        NegOptGenerator(model, tok).optimize(backend="ctranslate2")
