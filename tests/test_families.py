"""What NegOptPipeline does for each family of diffusers pipelines: video pipelines (Wan, LTX), Cosmos's own default
negative, Flux Kontext, Flux.2 and Klein, and the families table of the docs. Tiny real pipelines, built in-process."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from negopt import BuiltinGenerator, NegOptPipeline
from negopt.pipeline.families import FAMILIES, family_of, is_video_pipeline, pipeline_default_negative

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red fox running through fresh snow"
WAN_CALL = dict(height=16, width=16, num_frames=9, num_inference_steps=2, output_type="np")


def _seed(n: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(n)


@pytest.fixture(scope="module")
def wan():
    from tiny_video import tiny_wan

    return tiny_wan()


@pytest.fixture(scope="module")
def cosmos():
    from tiny_video import tiny_cosmos2_t2i

    return tiny_cosmos2_t2i()


# -------------------------------------------------------------------------------------------------------- video
def test_a_video_pipeline_gets_the_video_builtin(wan):
    pipe = NegOptPipeline(wan)
    assert is_video_pipeline(wan) and family_of(wan).name.startswith("Wan")
    assert isinstance(pipe.negative_prompt_generator, BuiltinGenerator)
    assert pipe.negative_prompt_generator.kind == "video"
    video = pipe.negative_prompt_generator([PROMPT])[0]
    image = BuiltinGenerator(kind="image")([PROMPT])[0]
    extra = set(video.split(", ")) - set(image.split(", "))
    assert extra, f"the video negative adds no term to the image one: {video!r}"


def test_an_image_pipeline_keeps_the_image_builtin():
    from tiny_pipelines import tiny_sd

    pipe = NegOptPipeline(tiny_sd())
    assert not is_video_pipeline(pipe.pipeline)
    assert pipe.negative_prompt_generator.kind == "image"


def test_wan_frames_equal_the_bare_pipeline_given_the_same_negative(wan):
    pipe = NegOptPipeline(wan)
    out = pipe(PROMPT, generator=_seed(), **WAN_CALL)
    assert out.frames.shape == (1, 9, 16, 16, 3)  # the pipeline's own output type and field
    negative = out.negative_prompts[0]
    assert negative and "," in negative
    bare = wan(PROMPT, negative_prompt=negative, generator=_seed(), **WAN_CALL)
    np.testing.assert_array_equal(out.frames, bare.frames)
    other = wan(PROMPT, negative_prompt="", generator=_seed(), **WAN_CALL)
    assert not np.array_equal(out.frames, other.frames)  # the negative acted


def test_wan_image_to_video_is_wrapped_too():
    from PIL import Image

    from tiny_video import tiny_wan_i2v

    i2v = tiny_wan_i2v()
    pipe = NegOptPipeline(i2v)
    assert pipe.negative_prompt_generator.kind == "video"
    image = Image.new("RGB", (16, 16), (200, 60, 20))
    out = pipe(image=image, prompt=PROMPT, generator=_seed(), **WAN_CALL)
    bare = i2v(image=image, prompt=PROMPT, negative_prompt=out.negative_prompts[0], generator=_seed(), **WAN_CALL)
    np.testing.assert_array_equal(out.frames, bare.frames)


def test_ltx_video_is_wrapped():
    from tiny_video import tiny_ltx

    ltx = tiny_ltx()
    pipe = NegOptPipeline(ltx)
    assert pipe.negative_slots == ("negative_prompt",) and pipe.negative_prompt_generator.kind == "video"
    call = dict(height=32, width=32, num_frames=9, num_inference_steps=1, max_sequence_length=128, output_type="np")
    out = pipe(PROMPT, generator=_seed(), **call)
    bare = ltx(PROMPT, negative_prompt=out.negative_prompts[0], generator=_seed(), **call)
    np.testing.assert_array_equal(out.frames, bare.frames)


# ------------------------------------------------------------------------------------------------------- cosmos
def test_cosmos_default_negative_is_merged_replaced_or_kept(cosmos):
    default = pipeline_default_negative(cosmos)
    assert default and len(default) > 200  # diffusers' DEFAULT_NEGATIVE_PROMPT, read from the pipeline's module
    # ByT5 counts bytes: room for the whole default (about 150 T5 tokens in the real model, 800 bytes here).
    call = dict(height=32, width=32, num_inference_steps=1, max_sequence_length=1024, output_type="np")

    merged = NegOptPipeline(cosmos)(PROMPT, generator=_seed(), **call)
    assert merged.negative_prompts[0].startswith(default.rstrip(". ")[:60])  # the pipeline's text first, verbatim
    assert len(merged.negative_prompts[0]) > len(default)  # and generated terms after it

    replaced = NegOptPipeline(cosmos, default_negative="replace")(PROMPT, generator=_seed(), **call)
    assert default[:40] not in replaced.negative_prompts[0]
    assert replaced.negative_prompts[0] == BuiltinGenerator()([PROMPT])[0]

    kept = NegOptPipeline(cosmos, default_negative="keep")(PROMPT, generator=_seed(), **call)
    assert kept.negative_prompts == [default]
    bare = cosmos(PROMPT, generator=_seed(), **call)  # the pipeline filling its own default
    np.testing.assert_array_equal(kept.images, bare.images)

    # A caller's own negative wins in every mode: the default is only what the pipeline sends without one.
    own = NegOptPipeline(cosmos, default_negative="keep")(PROMPT, negative_prompt="lowres", combine="user", **call)
    assert own.negative_prompts == ["lowres"]


def test_default_negative_is_checked(cosmos):
    with pytest.raises(ValueError, match="default_negative must be one of 'merge', 'replace', 'keep', got 'drop'"):
        NegOptPipeline(cosmos, default_negative="drop")
    pipe = NegOptPipeline(cosmos)
    with pytest.raises(ValueError, match="default_negative"):
        pipe.default_negative = "none"


# ----------------------------------------------------------------------------------------------- image families
def test_flux_kontext_fills_both_slots_and_acts_with_true_cfg():
    from diffusers import FluxKontextPipeline

    from tiny_pipelines import tiny_flux

    kontext = FluxKontextPipeline(**tiny_flux().components)
    kontext.set_progress_bar_config(disable=True)
    pipe = NegOptPipeline(kontext, lambda prompts: ["blurry, lowres"] * len(prompts))  # fits the byte-level CLIP
    assert pipe.negative_slots == ("negative_prompt", "negative_prompt_2")
    call = dict(prompt=PROMPT, height=32, width=32, max_area=32 * 32, num_inference_steps=1, max_sequence_length=256)
    call["output_type"] = "np"  # Kontext takes `image` first: the prompt goes by name
    with pytest.warns(UserWarning, match="true_cfg_scale=1.0; the negative prompt has no effect"):
        pipe(generator=_seed(), negative_guidance="cfg", **call)
    assert pipe(generator=_seed(), **call).negative_guidance == "nag"  # by default the negative acts through NAG
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # CFG on: no warning
        out = pipe(true_cfg_scale=2.0, generator=_seed(), **call)
    negative = out.negative_prompts[0]
    bare = kontext(negative_prompt=negative, negative_prompt_2=negative, true_cfg_scale=2.0, generator=_seed(), **call)
    np.testing.assert_array_equal(out.images, bare.images)


@pytest.mark.parametrize("name", ["Flux2Pipeline", "Flux2KleinKVPipeline"])
def test_families_without_a_negative_are_refused_with_the_reason(name):
    import diffusers

    # The refusal reads only the class's call signature and config: the real class, built without weights (the KV
    # pipeline's __init__ reads its transformer, so it is not run). Real tiny builds of Flux.2 and of Klein, base
    # and distilled: tests/test_family_builds.py.
    cls = getattr(diffusers, name)
    parts = dict(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=None)
    bare = cls(**parts) if name == "Flux2Pipeline" else object.__new__(cls)
    expected = "guidance-distilled" if name == "Flux2Pipeline" else "step-distilled"
    with pytest.raises(ValueError, match=expected):
        NegOptPipeline(bare)


def test_hidream_has_a_fourth_slot():
    from negopt.pipeline import NEGATIVE_SLOTS

    assert NEGATIVE_SLOTS[-1] == "negative_prompt_4"
    import diffusers

    from negopt.pipeline import negative_slots

    none = dict.fromkeys(
        ["scheduler", "vae", "transformer"]
        + [f"{k}{s}" for k in ("text_encoder", "tokenizer") for s in ("", "_2", "_3", "_4")]
    )
    hidream = diffusers.HiDreamImagePipeline(**none)  # the real class; the slots come from its call signature
    assert negative_slots(hidream) == NEGATIVE_SLOTS


# ------------------------------------------------------------------------------------------------------- the table
def test_the_docs_table_is_the_families_list():
    """docs/guides/pipeline.md's families table has one row per entry of FAMILIES, in order, with its cells."""
    text = (ROOT / "docs" / "guides" / "pipeline.md").read_text(encoding="utf-8")
    start = text.index("| family | pipelines |")
    rows = []
    for line in text[start:].splitlines()[2:]:  # after the header and its separator, up to the table's end
        if not line.startswith("|"):
            break
        rows.append(line)
    assert len(rows) == len(FAMILIES)
    for family, row in zip(FAMILIES, rows):
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        assert cells[0] == family.name
        assert cells[1] == ", ".join(f"`{c}`" for c in family.classes)
        assert cells[2:5] == [family.slots, family.acts, family.cost]
