"""A batched call gives each prompt the text one call per prompt gives it, on every decode path (issue 22, item 6).

Padding must never count as tokens of a row (a causal prompt is left-padded), and a row that ended must show nothing
of what the batch added after its end (``generate`` fills finished rows with ``pad_token_id``, which need not be a
special token). The models' EOS rows are scaled so that outputs end at EOS at different steps.
"""

from __future__ import annotations

import copy

import pytest
import torch

from negopt.config import NegOptConfig
from negopt.generator import NegOptGenerator
from tiny import PROMPTS, tiny_gpt2, tiny_t5

pytestmark = pytest.mark.usefixtures("one_thread")


def eos_likely(model, tok, scale=-8.0):
    """A copy of ``model`` whose EOS logit is scaled, so that outputs stop at EOS early and at different steps."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.get_output_embeddings().weight[tok.eos_token_id] *= scale
    return model


@pytest.fixture(scope="module")
def gpt2_eos():
    model, tok = tiny_gpt2()
    return eos_likely(model, tok), tok


@pytest.fixture(scope="module")
def t5_eos():
    model, tok = tiny_t5()
    return eos_likely(model, tok, scale=-1.0), tok


def one_by_one(gen, prompts, **kwargs):
    return [gen(p, **kwargs) for p in prompts]


PATHS = ["generate", "loop"]


def build(model, tok, path, config=None):
    gen = NegOptGenerator(model, tok, config, cache_size=0)
    if path == "loop":
        gen.optimize("float32", warmup=False)
    elif path == "ctranslate2":
        pytest.importorskip("ctranslate2")
        gen.optimize("float32", backend="ctranslate2", warmup=False)
    return gen


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "settings",
    [
        {"no_repeat_ngram_size": 1, "repetition_penalty": 1.0},
        {"no_repeat_ngram_size": 1},
        {"no_repeat_ngram_size": 2, "repetition_penalty": 1.0},
        {},  # negopt's defaults: no_repeat_ngram_size=3, repetition_penalty=1.2
    ],
)
def test_causal_padding_is_not_an_ngram(gpt2_eos, path, settings):
    # With no_repeat_ngram_size=1 the padding (the pad id in generate, -1 clamped to id 0 in the loop) was banned on
    # every padded row: here pad = EOS = id 0, so those rows could not end and ran to max_new_tokens.
    model, tok = gpt2_eos
    gen = build(model, tok, path)
    kwargs = {"max_new_tokens": 20, **settings}
    single = one_by_one(gen, PROMPTS, **kwargs)
    assert len({len(p) for p in PROMPTS}) > 1 and any(s for s in single)
    assert gen(PROMPTS, **kwargs) == single
    assert gen(PROMPTS, batch_size=3, **kwargs) == single


def test_the_loop_never_bans_token_zero_for_padding():
    # A pad id that is not 0: the loop clamped its -1 padding marker to id 0 and banned that id on padded rows.
    from negopt.generator.fastpath.greedy import GreedyDecoder, greedy_plan

    model, tok = tiny_gpt2()
    pad = 5
    # Token 0 (EOS here) the argmax everywhere, unless banned: the head's EOS row scaled up.
    model = eos_likely(model, tok, scale=50.0)
    decoder = GreedyDecoder(model)
    plan = greedy_plan(model, {"max_new_tokens": 4, "pad_token_id": pad, "no_repeat_ngram_size": 1}, False)
    rows = [tok("Prompt: a cat\nNegative prompt:")["input_ids"], tok("Prompt: a\nNegative prompt:")["input_ids"]]
    width = max(map(len, rows))
    ids = torch.full((2, width), pad)
    mask = torch.zeros((2, width), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, width - len(row) :], mask[r, width - len(row) :] = torch.tensor(row), 1
    out = decoder(ids, mask, plan, False, width)
    alone = decoder(ids[1:, width - len(rows[1]) :], mask[1:, width - len(rows[1]) :], plan, False, len(rows[1]))
    assert out[1, 0] == alone[0, 0] == 0  # the padded row ends at once, as it does alone


@pytest.mark.parametrize("path", ["generate", "loop", "ctranslate2"])
@pytest.mark.parametrize("which", ["t5", "gpt2"])
def test_nothing_after_eos_shows_whatever_the_pad_token(t5_eos, gpt2_eos, which, path):
    # generate fills finished rows with pad_token_id; with a pad that is an ordinary token ("x"), the text of a row
    # that ended early showed "xxxx..." in a batch, never alone and never in CTranslate2.
    model, tok = t5_eos if which == "t5" else gpt2_eos
    x = tok("x", add_special_tokens=False)["input_ids"][0]
    settings = {"pad_token_id": x}
    if which == "gpt2":  # CTranslate2 runs a causal model's calls without repetition control only
        settings.update(repetition_penalty=1.0, no_repeat_ngram_size=0)
    config = NegOptConfig(model_type="seq2seq" if which == "t5" else "causal", generation_kwargs=settings)
    gen = build(model, tok, path, config)
    kwargs = {"max_new_tokens": 16}
    single = one_by_one(gen, PROMPTS, **kwargs)
    batched = gen(PROMPTS, **kwargs)
    lengths = {len(s) for s in single}
    assert len(lengths) > 1 and max(lengths) > 0  # rows end at different steps
    assert batched == single
    reference = NegOptGenerator(model, tok, config, cache_size=0)
    assert batched == one_by_one(reference, PROMPTS, **kwargs)  # every path gives generate's text alone


def test_eos_tokens_are_cut_in_every_candidate(t5_eos):
    model, tok = t5_eos
    x = tok("x", add_special_tokens=False)["input_ids"][0]
    gen = NegOptGenerator(model, tok, NegOptConfig(generation_kwargs={"pad_token_id": x}), cache_size=0)
    beams = gen(PROMPTS[:4], num_candidates=3, num_beams=3, max_new_tokens=16)
    assert beams == [gen(p, num_candidates=3, num_beams=3, max_new_tokens=16) for p in PROMPTS[:4]]
    assert not any(c.endswith("xx") for cands in beams for c in cands)


@pytest.mark.parametrize("path", PATHS)
def test_a_pad_id_the_model_writes_is_not_matched_with_the_padding(path):
    # A pad token that is not EOS, and a model that writes it: with no_repeat_ngram_size=2, transformers matched
    # the generated pad with the batch's padding and banned what follows padding ((pad, pad), (pad, first token)).
    from tiny import tiny_gpt2_words

    words = "a cat dog city night portrait photo of an old fisherman blurry lowres bad hands watermark".split()
    model, tok = tiny_gpt2_words(words)
    model = eos_likely(model, tok, scale=1.0)  # a copy
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head[tok.pad_token_id] = head.mean(dim=0) * 10.0  # tied to the input embeddings: the pad row only
    assert tok.pad_token_id not in (tok.eos_token_id, None)
    settings = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 2}
    config = NegOptConfig(model_type="causal", generation_kwargs=settings)
    gen = build(model, tok, path, config)
    prompts = ["a cat", "a portrait photo of an old fisherman", "city at night", "a dog"]
    kwargs = {"max_new_tokens": 12}
    model.generation_config.update(pad_token_id=tok.pad_token_id, **settings)
    written = [model.generate(**tok(config.format_prompt(p), return_tensors="pt"), **kwargs)[0, -12:] for p in prompts]
    assert all(tok.pad_token_id in row.tolist() for row in written)  # the model does write the pad id
    assert gen(prompts, **kwargs) == one_by_one(gen, prompts, **kwargs)
