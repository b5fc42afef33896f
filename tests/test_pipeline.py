"""NegOptPipeline on tiny real diffusers pipelines (built in-process, no hub)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from negopt.pipeline import NegOptPipeline, NegOptPipelineOutput
from negopt.text import split_terms
from tiny_pipelines import (
    tiny_flux,
    tiny_lcm,
    tiny_pixart,
    tiny_sd,
    tiny_sd3,
    tiny_sd_img2img,
    tiny_sd_inpaint,
    tiny_sdxl,
)

PROMPTS = ["a red cat on a sofa", "a lighthouse at dusk"]
UNUSED = "has no effect"  # the phrase of the wrapper's guidance warnings


def words_negative(prompts: list[str]) -> list[str]:
    """A user's own generator: a deterministic negative built from each prompt's longest word."""
    return [f"blurry, {max(p.split(), key=len)} artifacts, watermark" for p in prompts]


class RecordingGenerator:
    """A user's own generator that keeps the batches it was called with."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, prompts: list[str]) -> list[str]:
        self.calls.append(list(prompts))
        return words_negative(prompts)


# -- the pipeline families ------------------------------------------------------------------------------------------

BUILDERS = {
    "sd": tiny_sd,
    "img2img": tiny_sd_img2img,
    "inpaint": tiny_sd_inpaint,
    "sdxl": tiny_sdxl,
    "sd3": tiny_sd3,
    "flux": tiny_flux,
    "pixart": tiny_pixart,
}
SLOTS = {
    "sd": ("negative_prompt",),
    "img2img": ("negative_prompt",),
    "inpaint": ("negative_prompt",),
    "sdxl": ("negative_prompt", "negative_prompt_2"),
    "sd3": ("negative_prompt", "negative_prompt_2", "negative_prompt_3"),
    "flux": ("negative_prompt", "negative_prompt_2"),
    "pixart": ("negative_prompt",),
}


@pytest.fixture(scope="module")
def pipes():
    built: dict = {}

    def get(name: str):
        if name not in built:
            built[name] = BUILDERS[name]() if name in BUILDERS else tiny_lcm()
        return built[name]

    return get


def call_args(family: str, n: int, seed: int = 0, **overrides) -> dict:
    """The arguments of a tiny call for a family and ``n`` prompts: 2 steps, 32x32, numpy output, a seed."""
    kwargs: dict = {"num_inference_steps": 2, "output_type": "np", "generator": torch.Generator().manual_seed(seed)}
    image = Image.fromarray(np.full((32, 32, 3), 127, dtype=np.uint8))
    if family == "img2img":
        kwargs["image"] = [image] * n
    else:
        kwargs.update(height=32, width=32)
    if family == "inpaint":
        mask = Image.fromarray(np.tile((np.arange(32) < 16).astype(np.uint8)[None, :, None] * 255, (32, 1, 3)))
        kwargs.update(image=[image] * n, mask_image=[mask] * n)
    if family == "flux":
        kwargs.update(true_cfg_scale=2.0, max_sequence_length=64)
    if family == "pixart":
        kwargs.update(use_resolution_binning=False, clean_caption=False)
    kwargs.update(overrides)
    return kwargs


def assert_same_images(a, b) -> None:
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def our_warnings(record) -> list[str]:
    return [str(w.message) for w in record if UNUSED in str(w.message) or "token limit" in str(w.message)]


@pytest.mark.parametrize("family", list(BUILDERS))
def test_same_images_as_the_bare_pipeline_with_the_same_negatives(pipes, family):
    bare = pipes(family)
    gen = RecordingGenerator()
    pipe = NegOptPipeline(bare, gen)
    assert pipe.negative_slots == SLOTS[family]

    out = pipe(prompt=PROMPTS, **call_args(family, 2))
    assert gen.calls == [PROMPTS]  # all prompts, one generator call
    assert out.negative_prompts == words_negative(PROMPTS)

    again = bare(prompt=PROMPTS, negative_prompt=out.negative_prompts, **call_args(family, 2))
    assert_same_images(out.images, again.images)
    assert type(out) is type(again) and isinstance(out, NegOptPipelineOutput)  # the pipeline's own output type
    assert [type(x) for x in out.to_tuple()] == [type(x) for x in again.to_tuple()]
    # ... and the negative reached the model: without it the images differ.
    without = bare(prompt=PROMPTS, **call_args(family, 2))
    assert np.abs(np.asarray(out.images) - np.asarray(without.images)).max() > 1e-6


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3"])
@pytest.mark.parametrize("prompt", [PROMPTS[0], PROMPTS])
def test_the_documented_bare_pipeline_recipe(pipes, family, prompt):
    # docs/guides/pipeline.md, "Same images from the bare pipeline", as written there.
    pipe = NegOptPipeline(pipes(family), words_negative)
    out = pipe(prompt, **call_args(family, 2))  # call_args: a seeded torch.Generator, 2 steps, 32x32
    again = pipe.pipeline(prompt, negative_prompt=out.negative_prompt, **call_args(family, 2))
    assert_same_images(out.images, again.images)
    assert out.negative_prompts == words_negative([prompt] if isinstance(prompt, str) else prompt)


@pytest.mark.parametrize("family", list(BUILDERS))
def test_every_negative_slot_gets_the_negative(pipes, family):
    pipe = NegOptPipeline(pipes(family), words_negative)
    cfg = {"true_cfg_scale": 2.0} if family == "flux" else {}
    sent, negatives = pipe._prepare({"prompt": PROMPTS, **cfg})
    for slot in SLOTS[family]:
        assert sent[slot] == negatives == words_negative(PROMPTS)
    # A str prompt gets a str negative, as a user would write it.
    sent, _ = pipe._prepare({"prompt": PROMPTS[0], **cfg})
    for slot in SLOTS[family]:
        assert sent[slot] == words_negative(PROMPTS[:1])[0]


@pytest.mark.filterwarnings("ignore:You have passed 4 text prompts:FutureWarning")  # img2img's own, repeated images
@pytest.mark.parametrize("family", list(BUILDERS))
def test_batch_shapes(pipes, family):
    bare = pipes(family)
    pipe = NegOptPipeline(bare, words_negative)

    # A list prompt with a str negative: one negative per prompt, the user's first.
    out = pipe(prompt=PROMPTS, negative_prompt="easynegative", **call_args(family, 2))
    assert out.negative_prompts == [f"easynegative, {n}" for n in words_negative(PROMPTS)]
    assert len(out.images) == 2

    # num_images_per_prompt: still one negative per prompt, and the images of the bare pipeline.
    out = pipe(prompt=PROMPTS, num_images_per_prompt=2, **call_args(family, 2))
    assert out.negative_prompts == words_negative(PROMPTS) and len(out.images) == 4
    again = bare(prompt=PROMPTS, negative_prompt=out.negative_prompts, num_images_per_prompt=2, **call_args(family, 2))
    assert_same_images(out.images, again.images)

    # Lists of different lengths: an error that names both.
    with pytest.raises(ValueError, match=r"3 entries but there are 2 prompts"):
        pipe(prompt=PROMPTS, negative_prompt=["a", "b", "c"], **call_args(family, 2))


def test_sd_list_prompt_with_str_negative_is_fixed(pipes):
    bare = pipes("sd")
    with pytest.raises(TypeError, match="should be the same type"):  # diffusers' own trap, which the wrapper removes
        bare(prompt=PROMPTS, negative_prompt="easynegative", **call_args("sd", 2))
    out = NegOptPipeline(bare, combine="user", negative_prompt_generator=words_negative)(
        prompt=PROMPTS, negative_prompt="easynegative", **call_args("sd", 2)
    )
    assert out.negative_prompts == ["easynegative", "easynegative"]
    again = bare(prompt=PROMPTS, negative_prompt=["easynegative"] * 2, **call_args("sd", 2))
    assert_same_images(out.images, again.images)


@pytest.mark.parametrize("family", ["sdxl", "sd3", "flux"])
def test_a_slot_the_user_fills_wins(pipes, family):
    bare = pipes(family)
    pipe = NegOptPipeline(bare, words_negative)
    slot = SLOTS[family][-1]
    out = pipe(prompt=PROMPTS, **{slot: "deformed hands"}, **call_args(family, 2))
    sent, _ = pipe._prepare({"prompt": PROMPTS, slot: "deformed hands", "true_cfg_scale": 2.0})
    assert sent[slot] == ["deformed hands"] * 2  # broadcast to the batch, as the prompt is a list
    for other in SLOTS[family][:-1]:
        assert sent[other] == out.negative_prompts
    again = bare(
        prompt=PROMPTS, negative_prompt=out.negative_prompts, **{slot: ["deformed hands"] * 2}, **call_args(family, 2)
    )
    assert_same_images(out.images, again.images)
    generated_everywhere = pipe(prompt=PROMPTS, **call_args(family, 2))
    assert np.abs(out.images - generated_everywhere.images).max() > 1e-6


# -- combining with the user's negative -----------------------------------------------------------------------------


def test_merge_keeps_the_users_terms_first_and_verbatim(pipes):
    pipe = NegOptPipeline(pipes("sd"), words_negative)
    out = pipe(prompt=PROMPTS[0], negative_prompt="easynegative, (Blurry:1.2), <bad-hands-5>", **call_args("sd", 1))
    # "blurry" is the user's already (weighted), so only the new generated terms are added.
    assert out.negative_prompts == ["easynegative, (Blurry:1.2), <bad-hands-5>, sofa artifacts, watermark"]


def test_combine_user_and_generated(pipes):
    bare = pipes("sd")
    gen = RecordingGenerator()
    pipe = NegOptPipeline(bare, gen, combine="user")
    out = pipe(prompt=PROMPTS, negative_prompt=["ugly", "easynegative"], **call_args("sd", 2))
    assert out.negative_prompts == ["ugly", "easynegative"] and gen.calls == []  # no generation at all

    # combine="user" with no negative sends none: the bare pipeline's images, and negative_prompts is None.
    out = pipe(prompt=PROMPTS, **call_args("sd", 2))
    assert out.negative_prompts is None and pipe.last_negative_prompts is None and gen.calls == []
    assert_same_images(out.images, bare(prompt=PROMPTS, **call_args("sd", 2)).images)

    # Per call, and "generated" ignores the user's negative.
    out = pipe(prompt=PROMPTS, negative_prompt="ugly", combine="generated", **call_args("sd", 2))
    assert out.negative_prompts == words_negative(PROMPTS) and gen.calls == [PROMPTS]
    assert pipe.combine == "user"  # the per-call choice does not stick

    with pytest.raises(ValueError, match="combine"):
        pipe(prompt=PROMPTS, combine="both")
    with pytest.raises(ValueError, match="combine"):
        NegOptPipeline(bare, gen, combine="append")
    with pytest.raises(ValueError, match="combine"):
        pipe.combine = "append"
    assert pipe.combine == "user"
    pipe.combine = "generated"
    assert pipe.combine == "generated"


def test_sdxl_negative_prompt_2_alone_counts_with_combine_user(pipes):
    # diffusers' SDXL ignores negative_prompt_2 when negative_prompt is None; the wrapper sends "" for slot 1.
    bare = pipes("sdxl")
    pipe = NegOptPipeline(bare, words_negative, combine="user")
    out = pipe(prompt=PROMPTS, negative_prompt_2="deformed", **call_args("sdxl", 2))
    assert out.negative_prompts == ["", ""]
    ignored = bare(prompt=PROMPTS, negative_prompt_2="deformed", **call_args("sdxl", 2))
    nothing = bare(prompt=PROMPTS, **call_args("sdxl", 2))
    assert_same_images(ignored.images, nothing.images)  # the trap itself
    assert np.abs(out.images - nothing.images).max() > 1e-6
    again = bare(prompt=PROMPTS, negative_prompt=["", ""], negative_prompt_2=["deformed"] * 2, **call_args("sdxl", 2))
    assert_same_images(out.images, again.images)


# -- warnings -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "off", "on"),
    [
        ("sd", {"guidance_scale": 1.0}, {"guidance_scale": 7.5}),
        ("sdxl", {"guidance_scale": 0.5}, {}),
        ("pixart", {"guidance_scale": 1.0}, {}),
        ("flux", {"true_cfg_scale": 1.0}, {"true_cfg_scale": 2.0}),
    ],
)
def test_warns_when_the_negative_cannot_take_effect(pipes, family, off, on):
    pipe = NegOptPipeline(pipes(family), words_negative, negative_guidance="cfg")
    with pytest.warns(UserWarning, match=UNUSED) as record:
        pipe(prompt=PROMPTS[0], **call_args(family, 1, **off))
    assert record[0].filename == __file__  # points at the user's call
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        pipe(prompt=PROMPTS[0], **call_args(family, 1, **on))
    assert our_warnings(record) == []
    # By default ("auto") the negative acts through NAG where guidance is off, for the families NAG supports.
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = NegOptPipeline(pipes(family), words_negative)(prompt=PROMPTS[0], **call_args(family, 1, **off))
    assert (our_warnings(record) == [], out.negative_guidance) == (
        (True, "nag") if family != "pixart" else (False, None)
    )


def test_flux_default_true_cfg_warns(pipes):
    pipe = NegOptPipeline(pipes("flux"), words_negative, negative_guidance="cfg")
    args = call_args("flux", 1)
    del args["true_cfg_scale"]  # FluxPipeline's default is 1.0: no true CFG
    with pytest.warns(UserWarning, match="true_cfg_scale=1.0"):
        pipe(prompt=PROMPTS[0], **args)


def test_negative_over_the_clip_limit_is_trimmed_to_whole_terms(pipes):
    bare = pipes("sd")
    tokenizer = bare.tokenizer
    pipe = NegOptPipeline(bare, words_negative)
    user_terms = [f"user term {i}" for i in range(12)]
    with pytest.warns(UserWarning, match="token limit") as record:
        out = pipe(prompt=PROMPTS[0], negative_prompt=", ".join(user_terms), **call_args("sd", 1))
    assert record[0].filename == __file__
    sent = out.negative_prompts[0]
    assert len(tokenizer(sent)["input_ids"]) <= tokenizer.model_max_length
    terms = split_terms(sent)
    assert terms == user_terms[: len(terms)] and 0 < len(terms) < len(user_terms)  # whole terms, the user's first
    assert_same_images(out.images, bare(prompt=PROMPTS[0], negative_prompt=sent, **call_args("sd", 1)).images)

    # A short user negative leaves room: generated terms are trimmed, the user's all kept.
    out = pipe(prompt=PROMPTS[0], negative_prompt=", ".join(user_terms[:4]), **call_args("sd", 1))
    assert split_terms(out.negative_prompts[0])[:4] == user_terms[:4]

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = NegOptPipeline(bare, words_negative, fit_to_tokenizer=False)(
            prompt=PROMPTS[0], negative_prompt=", ".join(user_terms), **call_args("sd", 1)
        )
    assert our_warnings(record) == [] and split_terms(out.negative_prompts[0])[:12] == user_terms


@pytest.mark.parametrize("combine", ["user", "merge"])
def test_a_long_user_negative_without_commas_is_cut_at_a_word_boundary_not_dropped(pipes, combine):
    tokenizer = pipes("sd").tokenizer
    pipe = NegOptPipeline(pipes("sd"), words_negative, combine=combine)
    user = " ".join(f"word{i}" for i in range(30))  # one term of about 170 tokens
    with pytest.warns(UserWarning, match="token limit") as record:
        _, negatives = pipe._prepare({"prompt": PROMPTS[0], "negative_prompt": user})
    sent = negatives[0]
    assert sent and user.startswith(sent + " ")  # the user's words, in order, up to a word boundary
    assert len(tokenizer(sent)["input_ids"]) <= 77
    next_word = user[len(sent) + 1 :].split(" ")[0]
    assert len(tokenizer(f"{sent} {next_word}")["input_ids"]) > 77  # as many words as fit
    assert "blurry" not in sent  # no generated term pushed the user's text out
    message = str(record[0].message)
    assert repr(user[len(sent) + 1 :]) in message  # the warning shows exactly what was cut


def test_a_long_generated_negative_without_commas_is_cut_at_a_word_boundary_not_sent_empty(pipes):
    tokenizer = pipes("sd").tokenizer
    generated = " ".join(f"word{i}" for i in range(30))  # one term of about 170 tokens: a model that wrote no commas
    pipe = NegOptPipeline(pipes("sd"), lambda prompts: [generated] * len(prompts))
    with pytest.warns(UserWarning, match="token limit") as record:
        out = pipe(prompt=PROMPTS[0], **call_args("sd", 1))
    sent = out.negative_prompts[0]
    assert sent and generated.startswith(sent + " ")  # before the fix: "" (the one term was dropped whole)
    assert len(tokenizer(sent)["input_ids"]) <= 77
    next_word = generated[len(sent) + 1 :].split(" ")[0]
    assert len(tokenizer(f"{sent} {next_word}")["input_ids"]) > 77  # as many words as fit
    message = str(record[0].message)
    # The warning says what was cut and that it was the generator's text, not a negative the user passed.
    assert "the generated negative prompt was cut" in message and repr(generated[len(sent) + 1 :]) in message
    assert "your negative prompt" not in message and "Shorten `negative_prompt`" not in message
    assert record[0].filename == __file__


def test_a_user_term_that_can_never_fit_is_cut_after_the_ones_that_do(pipes):
    pipe = NegOptPipeline(pipes("sd"), words_negative, combine="user")
    long_term = " ".join(f"word{i}" for i in range(30))
    with pytest.warns(UserWarning, match="token limit"):
        _, negatives = pipe._prepare({"prompt": PROMPTS[0], "negative_prompt": f"lowres, {long_term}, jpeg"})
    sent = negatives[0]
    assert sent.startswith("lowres, word0 word1") and f"lowres, {long_term}".startswith(sent)
    assert len(pipes("sd").tokenizer(sent)["input_ids"]) <= 77


def test_trimming_keeps_bracketed_terms_whole(pipes):
    pipe = NegOptPipeline(pipes("sd"), words_negative, combine="user")
    terms = ["(ugly, deformed:1.3)", "[bad hands, extra fingers]"] + [f"filler term {i}" for i in range(10)]
    with pytest.warns(UserWarning, match="token limit"):
        _, negatives = pipe._prepare({"prompt": PROMPTS[0], "negative_prompt": ", ".join(terms)})
    kept = split_terms(negatives[0])
    assert kept == terms[: len(kept)] and len(kept) >= 2
    assert len(pipes("sd").tokenizer(negatives[0])["input_ids"]) <= 77


def test_t5_limit_follows_max_sequence_length(pipes):
    pipe = NegOptPipeline(pipes("pixart"), words_negative)  # T5 only (byte-level: one token per byte)
    long_negative = ", ".join(f"term{i}" for i in range(12))  # 88 bytes
    with pytest.warns(UserWarning, match="token limit"):
        sent, negatives = pipe._prepare(
            {"prompt": PROMPTS[0], "negative_prompt": long_negative, "max_sequence_length": 30}
        )
    assert len(negatives[0].encode()) <= 29 and negatives[0].startswith("term0, term1")  # 30 with the end token
    sent, negatives = pipe._prepare({"prompt": PROMPTS[0], "negative_prompt": long_negative})  # default 120: fits
    assert negatives[0].startswith(long_negative)


def test_sd3_counts_every_encoder_the_negative_reaches(pipes):
    pipe = NegOptPipeline(pipes("sd3"), words_negative)
    long_negative = ", ".join(f"term{i}" for i in range(30))
    with pytest.warns(UserWarning, match="token limit"):
        _, negatives = pipe._prepare({"prompt": PROMPTS[0], "negative_prompt": long_negative})
    clip_count = len(pipes("sd3").tokenizer(negatives[0])["input_ids"])
    assert clip_count <= 77  # CLIP is the binding limit, though T5 (256) would take more
    with pytest.warns(UserWarning, match="ByT5Tokenizer 20"):
        _, negatives = pipe._prepare(
            {"prompt": PROMPTS[0], "negative_prompt": long_negative, "max_sequence_length": 20}
        )
    assert len(negatives[0].encode()) <= 19  # now T5's is the smaller one


# -- prompt_embeds ---------------------------------------------------------------------------------------------------


def test_prompt_embeds(pipes):
    bare = pipes("sd")
    pipe = NegOptPipeline(bare, words_negative)
    embeds, _ = bare.encode_prompt(PROMPTS, "cpu", 1, False)
    with pytest.raises(ValueError, match="Pass `prompt`"):
        pipe(prompt_embeds=embeds, **call_args("sd", 2))
    with pytest.raises(ValueError, match="combine='generated'"):
        pipe(prompt_embeds=embeds, negative_prompt="ugly", combine="generated", **call_args("sd", 2))

    # A str negative with batched prompt_embeds: a tensor-size error in diffusers, one negative per row here.
    with pytest.raises((RuntimeError, ValueError)):
        bare(prompt_embeds=embeds, negative_prompt="ugly", **call_args("sd", 2))
    out = pipe(prompt_embeds=embeds, negative_prompt="ugly", **call_args("sd", 2))
    assert out.negative_prompts == ["ugly", "ugly"]
    again = bare(prompt_embeds=embeds, negative_prompt=["ugly", "ugly"], **call_args("sd", 2))
    assert_same_images(out.images, again.images)

    # negative_prompt_embeds: passed through untouched.
    _, negative_embeds = bare.encode_prompt(PROMPTS, "cpu", 1, True, negative_prompt=["ugly"] * 2)
    out = pipe(prompt_embeds=embeds, negative_prompt_embeds=negative_embeds, **call_args("sd", 2))
    assert out.negative_prompts is None
    assert_same_images(out.images, again.images)


# -- errors ----------------------------------------------------------------------------------------------------------


def test_a_pipeline_without_negative_prompt_is_refused(pipes):
    with pytest.raises(ValueError, match="LatentConsistencyModelPipeline.*no `negative_prompt`"):
        NegOptPipeline(pipes("lcm"), words_negative)


def test_bad_arguments(pipes):
    bare = pipes("sd")
    with pytest.raises(TypeError, match="negative_prompt_generator"):
        NegOptPipeline(bare, "blurry, ugly")
    with pytest.raises(TypeError, match="pipeline"):
        NegOptPipeline("stable-diffusion-v1-5", words_negative)
    with pytest.raises(TypeError, match="already a NegOptPipeline"):
        NegOptPipeline(NegOptPipeline(bare, words_negative))
    pipe = NegOptPipeline(bare, words_negative)
    with pytest.raises(TypeError, match="`prompt` must be a str or a list of str"):
        pipe(prompt=42)
    with pytest.raises(TypeError, match="positional"):
        pipe(*range(40))
    with pytest.raises(TypeError, match="multiple values"):
        pipe("a cat", prompt="a dog")


@pytest.mark.parametrize(
    ("generator", "error", "match"),
    [
        (lambda prompts: "blurry", TypeError, "list of str"),
        (lambda prompts: ["blurry"], ValueError, "returned 1 negative prompts for 2 prompts"),
        (lambda prompts: [None, None], TypeError, "list of str"),
    ],
)
def test_a_generator_that_breaks_the_contract(pipes, generator, error, match):
    with pytest.raises(error, match=match):
        NegOptPipeline(pipes("sd"), generator)(prompt=PROMPTS, **call_args("sd", 2))


# -- drop-in ---------------------------------------------------------------------------------------------------------


def test_attributes_fall_through(pipes):
    bare = tiny_sd()  # its own copy: the scheduler is replaced below
    pipe = NegOptPipeline(bare, words_negative)
    assert pipe.unet is bare.unet and pipe.tokenizer is bare.tokenizer and pipe.config is bare.config
    assert pipe.enable_model_cpu_offload.__self__ is bare
    pipe.set_progress_bar_config(disable=True, desc="x")
    assert bare._progress_bar_config["desc"] == "x"
    from diffusers import EulerDiscreteScheduler

    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    assert isinstance(bare.scheduler, EulerDiscreteScheduler)  # set on the wrapped pipeline, which uses it
    assert "unet" in dir(pipe) and "negative_prompt_generator" in dir(pipe)
    with pytest.raises(AttributeError):
        pipe.no_such_attribute  # noqa: B018


def test_positional_arguments_bind_like_the_pipeline(pipes):
    bare = pipes("sdxl")
    pipe = NegOptPipeline(bare, words_negative)
    out = pipe(PROMPTS[0], "an oil painting", **call_args("sdxl", 1))  # SDXL's second parameter is prompt_2
    assert out.negative_prompts == words_negative([PROMPTS[0]])  # not taken for a negative prompt
    again = bare(PROMPTS[0], "an oil painting", negative_prompt=out.negative_prompts, **call_args("sdxl", 1))
    assert_same_images(out.images, again.images)


def test_return_dict_false_is_a_drop_in(pipes):
    bare = pipes("sd")
    pipe = NegOptPipeline(bare, words_negative)
    out = pipe(prompt=PROMPTS, return_dict=False, **call_args("sd", 2))
    expected = bare(prompt=PROMPTS, negative_prompt=words_negative(PROMPTS), return_dict=False, **call_args("sd", 2))
    assert type(out) is tuple and len(out) == len(expected)
    assert_same_images(out[0], expected[0])
    assert pipe.last_negative_prompts == words_negative(PROMPTS)


class DeviceRecordingGenerator(RecordingGenerator):
    """A user's generator that is a model: it has ``.to``."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: list = []

    def to(self, device):
        self.devices.append(device)
        return self


def test_to_moves_both_and_returns_the_wrapper(pipes):
    gen = DeviceRecordingGenerator()
    pipe = NegOptPipeline(pipes("sd"), gen)
    assert pipe.to("cpu") is pipe and gen.devices == ["cpu"]
    assert pipe.to(torch.device("cpu"), torch.float32) is pipe and gen.devices == ["cpu", torch.device("cpu")]
    assert pipe.to(torch.float32) is pipe and len(gen.devices) == 2  # a dtype alone is the diffusion model's
    assert pipe.device.type == "cpu" and pipe.dtype == torch.float32
    assert NegOptPipeline(pipes("sd"), words_negative).to("cpu").device.type == "cpu"  # no .to on a function: fine


def snapshot(pipeline) -> dict:
    """Everything a call could change: weights, model and scheduler configs, tokenizer settings, pipeline config."""
    state: dict = {"pipeline config": dict(pipeline.config)}
    for name, component in pipeline.components.items():
        if isinstance(component, torch.nn.Module):
            state[name] = {k: v.clone() for k, v in component.state_dict().items()}
        config = getattr(component, "config", None)
        if config is not None:
            state[name + " config"] = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        if hasattr(component, "get_vocab"):
            state[name] = (component.model_max_length, component.padding_side, component.get_vocab())
    return state


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if isinstance(a[name], dict) and a[name] and isinstance(next(iter(a[name].values())), torch.Tensor):
            assert a[name].keys() == b[name].keys()
            assert all(torch.equal(a[name][k], b[name][k]) for k in a[name]), name
        else:
            assert a[name] == b[name], name


@pytest.mark.parametrize("family", ["sd", "sdxl", "flux"])
def test_components_and_config_are_never_mutated(pipes, family):
    bare = pipes(family)
    before = snapshot(bare)
    pipe = NegOptPipeline(bare, words_negative)
    pipe(prompt=PROMPTS, negative_prompt="easynegative", **call_args(family, 2))
    pipe(prompt=PROMPTS[0], num_images_per_prompt=2, **call_args(family, 1))
    with pytest.warns(UserWarning, match="token limit"):
        pipe(prompt=PROMPTS[0], negative_prompt=", ".join(f"term{i}" for i in range(40)), **call_args(family, 1))
    assert_same_state(before, snapshot(bare))


def test_from_pretrained_loads_a_saved_pipeline(pipes, tmp_path):
    bare = pipes("sd")
    bare.save_pretrained(tmp_path)
    gen = RecordingGenerator()
    pipe = NegOptPipeline.from_pretrained(str(tmp_path), gen, combine="user")
    assert type(pipe.pipeline).__name__ == "StableDiffusionPipeline"
    assert pipe.negative_prompt_generator is gen and pipe.combine == "user"
    assert pipe.tokenizer.model_max_length == 77
    out = pipe(prompt=PROMPTS, negative_prompt="ugly", **call_args("sd", 2))
    again = bare(prompt=PROMPTS, negative_prompt=["ugly"] * 2, **call_args("sd", 2))
    assert_same_images(out.images, again.images)


def test_generator_given_as_a_folder_is_loaded(pipes, tmp_path):
    from negopt import NegOptGenerator
    from tiny import save_tiny_t5

    folder = save_tiny_t5(tmp_path / "gen")
    pipe = NegOptPipeline(pipes("sd"), str(folder))
    assert isinstance(pipe.negative_prompt_generator, NegOptGenerator)
    expected = pipe.negative_prompt_generator(PROMPTS)
    assert all(expected)  # the tiny model writes text for these prompts: the equality below cannot pass on ""s
    out = pipe(prompt=PROMPTS, **call_args("sd", 2))
    assert out.negative_prompts == expected


def test_repr_shows_both_parts(pipes):
    text = repr(NegOptPipeline(pipes("sdxl"), words_negative))
    assert "StableDiffusionXLPipeline" in text and "words_negative" in text
    assert "('negative_prompt', 'negative_prompt_2')" in text and "combine='merge'" in text


def test_default_generator_is_the_builtin(pipes):
    from negopt.builtin import BuiltinGenerator

    pipe = NegOptPipeline(pipes("sd"))
    assert isinstance(pipe.negative_prompt_generator, BuiltinGenerator)
    out = pipe(prompt=PROMPTS, **call_args("sd", 2))
    assert len(out.negative_prompts) == 2 and all(n.strip() for n in out.negative_prompts)
    for negative, full in zip(out.negative_prompts, BuiltinGenerator()(PROMPTS)):  # the builtin's, fit to 77 tokens
        remaining = iter(split_terms(full))
        assert all(term in remaining for term in split_terms(negative)), (negative, full)  # its terms, in its order
    again = pipes("sd")(prompt=PROMPTS, negative_prompt=out.negative_prompts, **call_args("sd", 2))
    assert_same_images(out.images, again.images)


def test_importing_the_module_is_light():
    code = "import sys, negopt.pipeline; print(sorted({'torch', 'diffusers', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert out.stdout.strip() == "[]"
