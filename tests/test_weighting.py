"""Prompt weighting (``prompt_weighting="a1111"`` / ``"compel"``) on tiny real SD 1.x and SDXL pipelines.

The references below are written out from AUTOMATIC1111's rule with the pipeline's own tokenizer and text encoder,
not with negopt's code: each run of text tokenized on its own; ``[start, tokens, end]`` padded with the pad token to
77; the hidden states multiplied by each token's weight and rescaled to the unweighted mean; 75-token chunks
concatenated.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from negopt.pipeline import NegOptPipeline
from negopt.pipeline.weighting import encode_a1111
from negopt.text import PromptSyntaxWarning
from tiny_clip import clip_bpe_merges_path
from tiny_pipelines import tiny_flux, tiny_sd3, tiny_sd_ln_bias, tiny_sd_real_clip, tiny_sdxl

CALL = {"num_inference_steps": 2, "output_type": "np", "height": 32, "width": 32}


def no_generated(prompts: list[str]) -> list[str]:
    return [""] * len(prompts)


def fixed_generated(prompts: list[str]) -> list[str]:
    return ["blurry, watermark"] * len(prompts)


@pytest.fixture(scope="module")
def sd():
    return tiny_sd_ln_bias()


@pytest.fixture(scope="module")
def sdxl():
    return tiny_sdxl()


@pytest.fixture(scope="module")
def sd_with_embeddings():
    """A tiny SD with two textual inversions loaded by diffusers itself: 5 vectors and 75 vectors."""
    pipe = tiny_sd_ln_bias(seed=1)
    torch.manual_seed(0)
    pipe.load_textual_inversion(torch.randn(5, 32), token="mybadneg")
    pipe.load_textual_inversion(torch.randn(75, 32), token="big75neg")
    return pipe


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def row(tokenizer, content: list[int]) -> list[int]:
    """[start, content, end, pad, ...] of length 77: a CLIP chunk as the encoder reads it."""
    out = [tokenizer.bos_token_id, *content, tokenizer.eos_token_id]
    return out + [tokenizer.pad_token_id] * (77 - len(out))


def original_emphasis(z: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """A1111's "Original" emphasis on one chunk (1 x 77 x width): z * w, then back to the unweighted mean."""
    w = torch.tensor(weights + [1.0] * (77 - len(weights)))[None, :, None]
    weighted = z * w
    return weighted * (z.mean() / weighted.mean())


def sd_hidden(pipe, token_row: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return pipe.text_encoder(torch.tensor([token_row]))[0]


def sdxl_hidden(pipe, token_row: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SDXL's encoding of one chunk: both encoders' penultimate hidden states, and the second's pooled output."""
    with torch.no_grad():
        one = pipe.text_encoder(torch.tensor([token_row]), output_hidden_states=True).hidden_states[-2]
        out = pipe.text_encoder_2(torch.tensor([token_row]), output_hidden_states=True)
    return one, out.hidden_states[-2], out.text_embeds


def sent(pipe, **kwargs) -> dict:
    """The arguments the wrapper sends to the pipeline."""
    out, _ = pipe._prepare(kwargs)
    return out


# -- the rule, against a reference written out ----------------------------------------------------------------------


def test_sd_weights_match_the_a1111_rule(sd):
    tok = sd.tokenizer
    pipe = NegOptPipeline(sd, no_generated, combine="user", prompt_weighting="a1111")
    args = sent(pipe, prompt="(cat:1.5) dog", negative_prompt="(blurry:1.4), watermark")
    assert "prompt" not in args and "negative_prompt" not in args

    cat, dog = ids(tok, "cat"), ids(tok, " dog")
    z = sd_hidden(sd, row(tok, cat + dog))
    expected = original_emphasis(z, [1.0] + [1.5] * len(cat) + [1.0] * len(dog))
    torch.testing.assert_close(args["prompt_embeds"], expected, rtol=1e-5, atol=1e-6)

    blurry, rest = ids(tok, "blurry"), ids(tok, ", watermark")
    z = sd_hidden(sd, row(tok, blurry + rest))
    expected = original_emphasis(z, [1.0] + [1.4] * len(blurry) + [1.0] * len(rest))
    torch.testing.assert_close(args["negative_prompt_embeds"], expected, rtol=1e-5, atol=1e-6)

    # Nested and square brackets: ((a)) is 1.1 * 1.1, [b] is 1 / 1.1; a weight really changes the embedding.
    args = sent(pipe, prompt="((red)) [sky]", negative_prompt="")
    red, sky = ids(tok, "red"), ids(tok, "sky")
    z = sd_hidden(sd, row(tok, red + ids(tok, " ") + sky))
    expected = original_emphasis(z, [1.0] + [1.1 * 1.1] * len(red) + [1 / 1.1] * len(sky))
    torch.testing.assert_close(args["prompt_embeds"], expected, rtol=1e-5, atol=1e-6)
    assert (args["prompt_embeds"] - z).abs().max() > 1e-3


def test_sdxl_weights_match_the_a1111_rule(sdxl):
    tok = sdxl.tokenizer
    pipe = NegOptPipeline(sdxl, no_generated, combine="user", prompt_weighting="a1111")
    args = sent(pipe, prompt="(cat:1.5) dog", negative_prompt="(blurry:1.4), watermark")

    cat, dog = ids(tok, "cat"), ids(tok, " dog")
    weights = [1.0] + [1.5] * len(cat) + [1.0] * len(dog)
    one, two, pooled = sdxl_hidden(sdxl, row(tok, cat + dog))
    expected = torch.cat([original_emphasis(one, weights), original_emphasis(two, weights)], dim=-1)
    torch.testing.assert_close(args["prompt_embeds"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(args["pooled_prompt_embeds"], pooled, rtol=1e-5, atol=1e-6)  # unweighted

    blurry, rest = ids(tok, "blurry"), ids(tok, ", watermark")
    weights = [1.0] + [1.4] * len(blurry) + [1.0] * len(rest)
    one, two, pooled = sdxl_hidden(sdxl, row(tok, blurry + rest))
    expected = torch.cat([original_emphasis(one, weights), original_emphasis(two, weights)], dim=-1)
    torch.testing.assert_close(args["negative_prompt_embeds"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(args["negative_pooled_prompt_embeds"], pooled, rtol=1e-5, atol=1e-6)


def test_a_200_token_negative_reaches_the_encoder_whole(sd):
    tok = sd.tokenizer
    negative = " ".join(["abcd"] * 50)  # one token per byte: 50 words of 4 tokens, no commas
    content = ids(tok, negative)
    assert len(content) == 200
    pipe = NegOptPipeline(sd, no_generated, combine="user", prompt_weighting="a1111")
    args = sent(pipe, prompt="a cat", negative_prompt=negative)

    chunks = [content[:75], content[75:150], content[150:]]  # 3 chunks of 75, 75, 50
    expected = torch.cat([sd_hidden(sd, row(tok, c)) for c in chunks], dim=1)
    torch.testing.assert_close(args["negative_prompt_embeds"], expected, rtol=1e-5, atol=1e-6)
    # The prompt is padded to the same 3 chunks with the encoding of the empty prompt.
    assert args["prompt_embeds"].shape == expected.shape == (1, 231, 32)
    empty = sd_hidden(sd, row(tok, []))
    torch.testing.assert_close(args["prompt_embeds"][:, 77:], torch.cat([empty, empty], dim=1), rtol=1e-5, atol=1e-6)


def test_a_full_chunk_breaks_at_the_last_comma(sd):
    tok = sd.tokenizer
    negative = ", ".join(f"t{i:03d}" for i in range(20))  # 4 tokens a term, 1 a comma: 99 tokens
    content = ids(tok, negative)
    pipe = NegOptPipeline(sd, no_generated, combine="user", prompt_weighting="a1111")
    args = sent(pipe, prompt="a cat", negative_prompt=negative)
    # A1111: when a 76th token arrives and the chunk's last comma is at most 20 tokens back, the chunk ends after it.
    comma = tok.convert_tokens_to_ids(",</w>")
    last_comma = max(i for i, t in enumerate(content[:75]) if t == comma)
    assert 75 - last_comma <= 20
    chunks = [content[: last_comma + 1], content[last_comma + 1 :]]
    expected = torch.cat([sd_hidden(sd, row(tok, c)) for c in chunks], dim=1)
    torch.testing.assert_close(args["negative_prompt_embeds"], expected, rtol=1e-5, atol=1e-6)


def test_break_starts_a_new_chunk_and_alone_is_the_empty_prompt(sd):
    tok = sd.tokenizer
    pipe = NegOptPipeline(sd, no_generated, combine="user", prompt_weighting="a1111")
    args = sent(pipe, prompt="red BREAK sky", negative_prompt="BREAK")
    expected = torch.cat([sd_hidden(sd, row(tok, ids(tok, "red"))), sd_hidden(sd, row(tok, ids(tok, "sky")))], dim=1)
    torch.testing.assert_close(args["prompt_embeds"], expected, rtol=1e-5, atol=1e-6)
    empty = sd_hidden(sd, row(tok, []))
    torch.testing.assert_close(args["negative_prompt_embeds"], torch.cat([empty, empty], dim=1), rtol=1e-5, atol=1e-6)


def test_prompts_and_negatives_of_different_lengths_are_padded(sd, sdxl):
    long_prompt = " ".join(["word"] * 40)  # 160 tokens: 3 chunks
    for bare in (sd, sdxl):
        pipe = NegOptPipeline(bare, fixed_generated, prompt_weighting="a1111")
        args = sent(pipe, prompt=["a cat", long_prompt], negative_prompt="(blurry:1.3)")
        assert args["prompt_embeds"].shape[:2] == args["negative_prompt_embeds"].shape[:2] == (2, 231)
    out = pipe(
        ["a cat", long_prompt],
        negative_prompt="(blurry:1.3)",
        num_inference_steps=1,
        output_type="np",
        height=32,
        width=32,
    )
    assert out.images.shape == (2, 32, 32, 3) and np.isfinite(out.images).all()


def test_no_weights_and_one_chunk_gives_the_same_images_as_no_weighting(sd, sdxl):
    for bare in (sd, sdxl):
        plain = NegOptPipeline(bare, fixed_generated)
        weighted = NegOptPipeline(bare, fixed_generated, prompt_weighting="a1111")
        a = plain("a red cat on a sofa", negative_prompt="lowres", generator=torch.Generator().manual_seed(0), **CALL)
        b = weighted(
            "a red cat on a sofa", negative_prompt="lowres", generator=torch.Generator().manual_seed(0), **CALL
        )
        np.testing.assert_array_equal(a.images, b.images)
        assert a.negative_prompts == b.negative_prompts == ["lowres, blurry, watermark"]
        assert (a.prompt_weighting, b.prompt_weighting) == (None, "a1111")
        # ... and a weight changes them.
        c = weighted(
            "a (red:1.6) cat on a sofa", negative_prompt="lowres", generator=torch.Generator().manual_seed(0), **CALL
        )
        assert np.abs(c.images - b.images).max() > 1e-6


def test_per_call_override_and_output(sd):
    pipe = NegOptPipeline(sd, fixed_generated)
    out = pipe(
        "a cat",
        negative_prompt="(blurry:1.4)",
        prompt_weighting="a1111",
        generator=torch.Generator().manual_seed(0),
        **CALL,
    )
    assert out.prompt_weighting == "a1111" and out.negative_prompts == ["(blurry:1.4), watermark"]
    assert out.negative_prompt == "(blurry:1.4), watermark"  # the text, in the form of the call's prompt
    assert pipe.prompt_weighting is None
    out = pipe("a cat", generator=torch.Generator().manual_seed(0), **CALL)
    assert out.prompt_weighting is None


# -- textual inversion -----------------------------------------------------------------------------------------------


def test_a_multi_vector_embedding_is_counted_and_encoded_at_its_true_length(sd_with_embeddings):
    pipe_ti = sd_with_embeddings
    tok = pipe_ti.tokenizer
    vectors = [tok.convert_tokens_to_ids("mybadneg")] + [
        tok.convert_tokens_to_ids(f"mybadneg_{i}") for i in range(1, 5)
    ]
    assert ids(tok, "mybadneg") == vectors[:1]  # one token as typed; diffusers expands it to 5 before encoding

    pipe = NegOptPipeline(pipe_ti, no_generated, combine="user", prompt_weighting="a1111")
    args = sent(pipe, prompt="a cat", negative_prompt="(mybadneg:1.2), blurry")
    rest = ids(tok, ", blurry")
    z = sd_hidden(pipe_ti, row(tok, vectors + rest))
    expected = original_emphasis(z, [1.0] + [1.2] * 5 + [1.0] * len(rest))
    torch.testing.assert_close(args["negative_prompt_embeds"], expected, rtol=1e-5, atol=1e-6)

    # A 75-vector embedding fills a chunk of its own (A1111 never splits one).
    args = sent(pipe, prompt="a cat", negative_prompt="blurry, big75neg")
    big = [tok.convert_tokens_to_ids("big75neg")] + [tok.convert_tokens_to_ids(f"big75neg_{i}") for i in range(1, 75)]
    expected = torch.cat(
        [sd_hidden(pipe_ti, row(tok, ids(tok, "blurry, "))), sd_hidden(pipe_ti, row(tok, big))], dim=1
    )
    torch.testing.assert_close(args["negative_prompt_embeds"], expected, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def sd_real_clip():
    """A tiny SD on the real CLIP tokenizer with ``easynegative`` (3 vectors) and ``bad_prompt`` (2) loaded by
    diffusers."""
    if clip_bpe_merges_path() is None:
        pytest.skip("the real CLIP tokenizer needs open_clip_torch's merges file: run scripts/setup.sh")
    pipe = tiny_sd_real_clip(seed=3)
    torch.manual_seed(0)
    pipe.load_textual_inversion(torch.randn(3, 32), token="easynegative")
    pipe.load_textual_inversion(torch.randn(2, 32), token="bad_prompt")
    return pipe


def a1111_token_ids(pipe, text: str) -> list[int]:
    """A1111's token ids of a one-run text, written out: the plain CLIP tokenizer (no added tokens, as A1111 has
    none) on ``ftfy.fix_text(text)``, then at each position the longest embedding whose name's token ids come next
    (``find_embedding_at_position``) replaced by the embedding's vectors."""
    import ftfy

    from tiny_clip import real_clip_tokenizer

    plain = real_clip_tokenizer()
    tokens = plain(ftfy.fix_text(text), add_special_tokens=False)["input_ids"]
    added = pipe.tokenizer.added_tokens_encoder
    embeddings = {
        "easynegative": [added["easynegative"], added["easynegative_1"], added["easynegative_2"]],
        "bad_prompt": [added["bad_prompt"], added["bad_prompt_1"]],
    }
    names = [(plain(n, add_special_tokens=False)["input_ids"], v) for n, v in embeddings.items()]
    names.sort(key=lambda nv: len(nv[0]))
    out, position = [], 0
    while position < len(tokens):
        for name_ids, vectors in reversed(names):
            if tokens[position : position + len(name_ids)] == name_ids:
                out += vectors
                position += len(name_ids)
                break
        else:
            out.append(tokens[position])
            position += 1
    return out


@pytest.mark.parametrize(
    ("negative", "expanded"),
    [
        ("easynegativev2, blurry", 0),  # "easy neg ative v 2": not the tokens of "easynegative"
        ("EasyNegative, easynegative2, x_easynegative", 3),  # whole tokens: CLIP cuts words at digits and "_"
        ("bad_prompt, bad_prompt_version2, badprompt", 2),
    ],
)
def test_an_embedding_is_found_as_a1111_finds_it_whole_tokens_only(sd_real_clip, negative, expanded):
    pipe_ti = sd_real_clip
    tok = pipe_ti.tokenizer
    pipe = NegOptPipeline(pipe_ti, no_generated, combine="user", prompt_weighting="a1111")
    args = sent(pipe, prompt="a cat", negative_prompt=negative)
    content = a1111_token_ids(pipe_ti, negative)
    first_ids = {tok.convert_tokens_to_ids("easynegative"), tok.convert_tokens_to_ids("bad_prompt")}
    assert sum(t in first_ids for t in content) == expanded
    torch.testing.assert_close(args["negative_prompt_embeds"], sd_hidden(pipe_ti, row(tok, content)))
    # diffusers' tokenizer splits the added name out of any word: "easynegativev2" would hold the embedding.
    if negative.startswith("easynegativev2"):
        assert tok.convert_tokens_to_ids("easynegative") in ids(tok, negative)


def test_text_is_cleaned_with_ftfy_as_a1111s_tokenizer_does(sd_real_clip):
    pipe_ti = sd_real_clip
    tok = pipe_ti.tokenizer
    pipe = NegOptPipeline(pipe_ti, no_generated, combine="user", prompt_weighting="a1111")
    negative = "blurry，ugly　hands, “ﬁne”"  # full-width comma and space, curly quotes, a ligature
    args = sent(pipe, prompt="a cat", negative_prompt=negative)
    content = a1111_token_ids(pipe_ti, negative)
    assert content == ids(tok, 'blurry,ugly hands, "fine"')  # what ftfy makes of it
    assert content != ids(tok, negative)  # diffusers' tokenizer alone: byte tokens, no comma
    torch.testing.assert_close(args["negative_prompt_embeds"], sd_hidden(pipe_ti, row(tok, content)))


def test_without_weighting_the_fit_counts_an_embedding_at_its_true_length(sd_with_embeddings):
    pipe_ti = sd_with_embeddings
    tok = pipe_ti.tokenizer
    fillers = [f"t{i:02d}" for i in range(18)]  # 18 x (3 tokens + a comma)
    negative = ", ".join(["mybadneg", *fillers])
    typed = len(ids(tok, negative))
    assert typed <= 75 < typed + 4  # fits as typed, not once the embedding is 5 tokens
    pipe = NegOptPipeline(pipe_ti, no_generated, combine="user")
    with pytest.warns(UserWarning, match="token limit"):
        out = pipe("a cat", negative_prompt=negative, generator=torch.Generator().manual_seed(0), **CALL)
    sent_text = out.negative_prompts[0]
    assert sent_text.startswith("mybadneg, t00") and sent_text != negative
    assert len(ids(tok, pipe_ti.maybe_convert_prompt(sent_text, tok))) <= 75


def test_the_generated_negative_does_not_repeat_the_embedding(sd_with_embeddings):
    pipe = NegOptPipeline(sd_with_embeddings, lambda ps: ["mybadneg, blurry"] * len(ps))
    _, negatives = pipe._prepare({"prompt": "a cat", "negative_prompt": "MyBadNeg"})
    assert negatives == ["MyBadNeg, blurry"]


def test_an_embedding_name_that_is_not_loaded_warns(sd):
    pipe = NegOptPipeline(sd, no_generated, combine="user", prompt_weighting="a1111")
    with pytest.warns(UserWarning, match=r"\['easynegative'\].*load_textual_inversion"):
        sent(pipe, prompt="a cat", negative_prompt="EasyNegative, blurry")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sent(pipe, prompt="a cat", negative_prompt="blurry")


# -- bad input --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("negative", "text", "weight"),
    [
        # A1111's re_attention reads ":1,3)" as no weight: the colon and "1,3" are text, the group is (...) = 1.1.
        ("(blurry:1,3)", "blurry:1,3", 1.1),
        ("(blurry:)", "blurry:", 1.1),
        ("(blurry:0.1~1)", "blurry:0.1~1", 1.1),
        ("(blurry:high)", "blurry:high", 1.1),
        ("(blurry:-1)", "blurry", -1.0),  # a negative weight multiplies, as any other
    ],
)
def test_weights_a1111_accepts_are_encoded_as_a1111_does_with_a_warning(sd, negative, text, weight):
    tok = sd.tokenizer
    pipe = NegOptPipeline(sd, no_generated, combine="user", prompt_weighting="a1111")
    with pytest.warns(PromptSyntaxWarning, match="read as A1111 reads it") as record:
        args = sent(pipe, prompt="a cat", negative_prompt=negative)  # before: a ValueError failed the whole call
    assert record[0].filename == __file__  # the warning points at the user's call
    content = ids(tok, text)
    expected = original_emphasis(sd_hidden(sd, row(tok, content)), [1.0] + [weight] * len(content))
    torch.testing.assert_close(args["negative_prompt_embeds"], expected, rtol=1e-5, atol=1e-6)
    # Strict parsing: the same warning as an error.
    with warnings.catch_warnings():
        warnings.simplefilter("error", PromptSyntaxWarning)
        with pytest.raises(PromptSyntaxWarning):
            sent(pipe, prompt="a cat", negative_prompt=negative)


def test_a_weight_a1111_fails_on_is_a_clear_error(sd):
    pipe = NegOptPipeline(sd, no_generated, combine="user", prompt_weighting="a1111")
    with pytest.raises(ValueError, match=r"The weight '1.2.3' in .*blurry.* is not a finite number \(AUTOMATIC1111"):
        pipe("a cat", negative_prompt="(blurry:1.2.3)", **CALL)


def test_a_lone_backslash_is_dropped_as_a1111_does(sd):
    tok = sd.tokenizer
    pipe = NegOptPipeline(sd, no_generated, combine="user", prompt_weighting="a1111")
    args = sent(pipe, prompt="a cat", negative_prompt="bad\\hands \\\\ \\(x\\)")
    # A1111: "\" alone -> "", "\\" -> "\", "\(" -> "(": the text encoded is "badhands \ (x)".
    expected = sd_hidden(sd, row(tok, ids(tok, "badhands \\ (x)")))
    torch.testing.assert_close(args["negative_prompt_embeds"], expected, rtol=1e-5, atol=1e-6)


def test_extra_network_tags_are_removed_from_the_prompt_with_a_warning(sd):
    tok = sd.tokenizer
    pipe = NegOptPipeline(sd, no_generated, combine="user", prompt_weighting="a1111")
    with pytest.warns(
        PromptSyntaxWarning, match=r"removed the extra-network tags <lora:film:0\.8>, <lyco:x:1>"
    ) as rec:
        args = sent(pipe, prompt="a cat, <lora:film:0.8> <lyco:x:1>", negative_prompt="blurry")
    assert rec[0].filename == __file__
    # A1111: re.sub(r"<(\w+):([^>]+)>", "", prompt) before anything else; the text around the tags stays.
    torch.testing.assert_close(args["prompt_embeds"], sd_hidden(sd, row(tok, ids(tok, "a cat,  "))))
    # In a negative A1111 does not read them: encoded as text, as there, and said.
    with pytest.warns(PromptSyntaxWarning, match=r"negative prompt holds the extra-network tags <lora:bad:1>"):
        args = sent(pipe, prompt="a cat", negative_prompt="<lora:bad:1>, blurry")
    torch.testing.assert_close(
        args["negative_prompt_embeds"], sd_hidden(sd, row(tok, ids(tok, "<lora:bad:1>, blurry")))
    )


@pytest.mark.parametrize(
    ("prompt", "negative", "match"),
    [
        ("a [cat:dog:0.5]", "blurry", r"prompt editing '\[cat:dog:0\.5\]'"),
        ("a [cat|dog]", "blurry", r"alternation '\[cat\|dog\]'"),
        ("a cat AND a dog", "blurry", r"AND \(composable diffusion\)"),
        ("a cat", "[blurry:lowres:10]", r"prompt editing '\[blurry:lowres:10\]'"),
    ],
)
def test_a1111_syntax_negopt_does_not_implement_warns(sd, prompt, negative, match):
    pipe = NegOptPipeline(sd, no_generated, combine="user", prompt_weighting="a1111")
    with pytest.warns(PromptSyntaxWarning, match=match + ".*does not implement"):
        sent(pipe, prompt=prompt, negative_prompt=negative)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sent(pipe, prompt="a cat, [red], (dog:1.2) BREAK band", negative_prompt="AND, blurry")  # none of them


def test_an_empty_negative_on_sdxl_is_zeros_as_in_a1111(sdxl):
    pipe = NegOptPipeline(sdxl, no_generated, combine="user", prompt_weighting="a1111")
    # A1111 (sd_models_xl.py): every negative of the batch == "" -> the text conditioning is zeros.
    for kwargs in ({"negative_prompt": ""}, {"negative_prompt": ["", ""]}, {}):
        prompt = ["a cat", "a dog"] if isinstance(kwargs.get("negative_prompt"), list) else "a cat"
        args = sent(pipe, prompt=prompt, **kwargs)
        assert args["negative_prompt_embeds"].abs().max() == 0, kwargs
        assert args["negative_pooled_prompt_embeds"].abs().max() == 0, kwargs
    for negative in (["", "blurry"], " "):  # one negative is not empty; " " is not "": encoded
        prompt = ["a cat", "a dog"] if isinstance(negative, list) else "a cat"
        args = sent(pipe, prompt=prompt, negative_prompt=negative)
        assert args["negative_prompt_embeds"].abs().max() > 0
    # SDXL with a config that does not force zeros: A1111 has no such setting and zeroes all the same.
    sdxl.register_to_config(force_zeros_for_empty_prompt=False)
    try:
        args = sent(pipe, prompt="a cat", negative_prompt="")
        assert args["negative_prompt_embeds"].abs().max() == 0
    finally:
        sdxl.register_to_config(force_zeros_for_empty_prompt=True)


def test_unbalanced_brackets_follow_a1111_with_a_warning(sd):
    tok = sd.tokenizer
    pipe = NegOptPipeline(sd, no_generated, combine="user", prompt_weighting="a1111")
    with pytest.warns(PromptSyntaxWarning, match=r"1 unclosed '\('"):
        args = sent(pipe, prompt="a cat", negative_prompt="(blurry")
    z = sd_hidden(sd, row(tok, ids(tok, "blurry")))
    expected = original_emphasis(z, [1.0] + [1.1] * len(ids(tok, "blurry")))  # applied to the rest, as A1111
    torch.testing.assert_close(args["negative_prompt_embeds"], expected, rtol=1e-5, atol=1e-6)
    with pytest.warns(UserWarning, match=r"1 unmatched '\)'"):
        args = sent(pipe, prompt="a cat", negative_prompt="blurry)")
    torch.testing.assert_close(args["negative_prompt_embeds"], sd_hidden(sd, row(tok, ids(tok, "blurry)"))))


def test_unsupported_families_and_arguments_are_refused():
    sd3 = tiny_sd3()
    with pytest.raises(ValueError, match=r"prompt_weighting='a1111' does not support StableDiffusion3Pipeline.*SDXL"):
        NegOptPipeline(sd3, prompt_weighting="a1111")
    with pytest.raises(ValueError, match=r"prompt_weighting='compel' does not support StableDiffusion3Pipeline"):
        NegOptPipeline(sd3, prompt_weighting="compel")
    with pytest.raises(
        ValueError, match=r"`prompt_weighting` must be one of \(None, 'a1111', 'compel'\), got 'A1111'"
    ):
        NegOptPipeline(sd3, prompt_weighting="A1111")


def test_prompt_embeds_with_weighting_is_refused(sd):
    pipe = NegOptPipeline(sd, no_generated, prompt_weighting="a1111")
    embeds, _ = sd.encode_prompt("a cat", "cpu", 1, False)
    with pytest.raises(ValueError, match=r"prompt_weighting='a1111' encodes .* also passed `prompt_embeds`"):
        pipe(prompt_embeds=embeds, negative_prompt="blurry", **CALL)


def test_encode_a1111_rejects_an_embedding_longer_than_a_chunk():
    pipe = tiny_sd_ln_bias(seed=2)
    pipe.load_textual_inversion(torch.randn(80, 32), token="huge80")
    with pytest.raises(ValueError, match="'huge80' has 80 vectors"):
        encode_a1111(pipe, [["huge80"]])


# -- compel -----------------------------------------------------------------------------------------------------------


def test_compel_sends_compels_own_embeddings_untruncated(sd, sdxl):
    from compel import CompelForSD, CompelForSDXL

    long_negative = ", ".join(f"t{i:03d}" for i in range(30))  # 149 tokens: compel makes 2 chunks
    for bare, wrapper in ((sd, CompelForSD), (sdxl, CompelForSDXL)):
        pipe = NegOptPipeline(bare, no_generated, combine="user", prompt_weighting="compel")
        args = sent(pipe, prompt="a (red)1.3 cat++", negative_prompt=long_negative)
        reference = wrapper(bare)(["a (red)1.3 cat++"], negative_prompt=[long_negative])
        torch.testing.assert_close(args["prompt_embeds"], reference.embeds)
        torch.testing.assert_close(args["negative_prompt_embeds"], reference.negative_embeds)
        assert args["negative_prompt_embeds"].shape[1] == 154
        if bare is sdxl:
            torch.testing.assert_close(args["negative_pooled_prompt_embeds"], reference.negative_pooled_embeds)
        out = pipe(
            "a (red)1.3 cat++", negative_prompt=long_negative, generator=torch.Generator().manual_seed(0), **CALL
        )
        assert out.prompt_weighting == "compel" and out.negative_prompts == [long_negative]


def test_compel_on_flux():
    flux = tiny_flux()
    pipe = NegOptPipeline(flux, fixed_generated, prompt_weighting="compel")
    with pytest.raises(ValueError, match=r"tokenizer_2.model_max_length is .* \(no limit\)"):
        pipe("a cat", num_inference_steps=2, output_type="np", height=32, width=32, true_cfg_scale=2.0)
    flux.tokenizer_2.model_max_length = 64  # as a real Flux T5 tokenizer has one (512)
    out = pipe("a (red)1.3 cat", num_inference_steps=2, output_type="np", height=32, width=32, true_cfg_scale=2.0)
    assert out.images.shape == (1, 32, 32, 3) and out.prompt_weighting == "compel"
