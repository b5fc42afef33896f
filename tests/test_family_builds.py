"""What NegOptPipeline does for the newest image families and two more video families, each on a tiny real build
(tests/tiny_families.py, tests/tiny_video.py): the slots it fills, the same images or frames as the bare pipeline
given the same negatives, and each family's trap (Qwen-Image's doubled step, Flux.2's missing slot, Klein's
embeddings, true CFG)."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import torch

from negopt import NegOptPipeline
from negopt.pipeline import negative_slots

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "a red fox running through fresh snow"
# Short enough for the byte-level CLIP tokenizers (77 bytes), so that nothing is trimmed where a CLIP slot is filled.
SHORT = "blurry, lowres, watermark"


def _seed(n: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(n)


def _short(prompts: list[str]) -> list[str]:
    return [SHORT] * len(prompts)


@contextlib.contextmanager
def _no_warnings():
    """Any UserWarning (a trimmed negative, guidance off) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        yield


class _Calls:
    """Counts a module's forward calls and keeps their inputs (a forward pre-hook: the module itself runs as is)."""

    def __init__(self, module: torch.nn.Module):
        self.inputs: list[dict] = []
        self._handle = module.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        self.inputs.append({"args": args, **kwargs})

    def __len__(self) -> int:
        return len(self.inputs)

    def clear(self) -> None:
        self.inputs.clear()

    def remove(self) -> None:
        self._handle.remove()


# ------------------------------------------------------------------------------------------------------- Qwen-Image
def test_qwen_image_warns_at_construction_and_runs_cfg_because_of_the_negative():
    from tiny_families import tiny_qwen_image

    qwen = tiny_qwen_image()
    with pytest.warns(UserWarning, match="runs classifier-free guidance only when a negative prompt is given"):
        pipe = NegOptPipeline(qwen)
    assert pipe.negative_slots == ("negative_prompt",)
    call = dict(prompt=PROMPT, height=32, width=32, num_inference_steps=1, output_type="np")
    steps = _Calls(qwen.transformer)
    try:
        with _no_warnings():
            out = pipe(generator=_seed(), **call)
        assert len(steps) == 2  # one step, two passes: CFG runs because the wrapper gave a negative
        steps.clear()
        bare = qwen(negative_prompt=out.negative_prompts[0], generator=_seed(), **call)
        np.testing.assert_array_equal(out.images, bare.images)
        steps.clear()
        qwen(generator=_seed(), **call)  # the bare pipeline with no negative: one pass a step
        assert len(steps) == 1
        steps.clear()
        with pytest.warns(UserWarning, match="true_cfg_scale=1.0; the negative prompt has no effect"):
            single = pipe(generator=_seed(), true_cfg_scale=1.0, **call)
        assert len(steps) == 1
    finally:
        steps.remove()
    unguided = qwen(generator=_seed(), true_cfg_scale=1.0, **call)
    np.testing.assert_array_equal(single.images, unguided.images)  # the negative was sent and went unused
    assert not np.array_equal(out.images, unguided.images)


# ----------------------------------------------------------------------------------------------------------- Chroma
def test_chroma_fills_its_t5_slot():
    from tiny_families import tiny_chroma

    chroma = tiny_chroma()
    pipe = NegOptPipeline(chroma)
    assert pipe.negative_slots == ("negative_prompt",)
    call = dict(prompt=PROMPT, height=8, width=8, num_inference_steps=1, output_type="np")
    with _no_warnings():
        out = pipe(generator=_seed(), **call)
    negative = out.negative_prompts[0]
    assert negative == pipe.negative_prompt_generator([PROMPT])[0]  # the built-in's whole negative: T5 fits it
    bare = chroma(negative_prompt=negative, generator=_seed(), **call)
    np.testing.assert_array_equal(out.images, bare.images)
    assert not np.array_equal(out.images, chroma(generator=_seed(), **call).images)
    with pytest.warns(UserWarning, match="guidance_scale=1.0 turns classifier-free guidance off in ChromaPipeline"):
        pipe(generator=_seed(), guidance_scale=1.0, **call)


# ---------------------------------------------------------------------------------------------------------- HiDream
def test_hidream_fills_four_slots_and_the_fourth_reaches_the_llama():
    from tiny_families import tiny_hidream

    hidream = tiny_hidream()
    pipe = NegOptPipeline(hidream, lambda prompts: ["blurry, lowres, watermark"] * len(prompts))
    assert pipe.negative_slots == ("negative_prompt", "negative_prompt_2", "negative_prompt_3", "negative_prompt_4")
    call = dict(prompt=PROMPT, num_inference_steps=1, output_type="np", max_sequence_length=128)
    llama = _Calls(hidream.text_encoder_4)
    try:
        with _no_warnings():
            out = pipe(generator=_seed(), **call)
    finally:
        llama.remove()
    assert out.images.shape == (1, 16, 16, 3)
    texts = [hidream.tokenizer_4.decode(i["args"][0][0], skip_special_tokens=True) for i in llama.inputs]
    assert texts == [PROMPT, SHORT]  # the Llama encoded the prompt, then the negative of slot 4
    slots = dict.fromkeys(pipe.negative_slots, SHORT)
    bare = hidream(generator=_seed(), **slots, **call)
    np.testing.assert_array_equal(out.images, bare.images)
    # Slot 4 acts on its own: the same call with another text in it alone gives another image.
    other = hidream(generator=_seed(), **{**slots, "negative_prompt_4": "sharp"}, **call)
    assert not np.array_equal(out.images, other.images)


# ------------------------------------------------------------------------------------------------------------ SD3.5
def test_sd35_fills_its_three_slots():
    from tiny_families import tiny_sd35

    sd35 = tiny_sd35()
    config = sd35.transformer.config
    assert config.qk_norm == "rms_norm" and tuple(config.dual_attention_layers) == (0,)  # SD3.5's MMDiT-X
    pipe = NegOptPipeline(sd35, _short)
    assert pipe.negative_slots == ("negative_prompt", "negative_prompt_2", "negative_prompt_3")
    call = dict(prompt=PROMPT, height=32, width=32, num_inference_steps=1, output_type="np")
    with _no_warnings():
        out = pipe(generator=_seed(), **call)
    bare = sd35(negative_prompt=SHORT, negative_prompt_2=SHORT, negative_prompt_3=SHORT, generator=_seed(), **call)
    np.testing.assert_array_equal(out.images, bare.images)
    # Without the wrapper, negative_prompt alone reaches every encoder too (SD3 copies it), but "" differs.
    assert not np.array_equal(out.images, sd35(generator=_seed(), **call).images)
    with pytest.warns(UserWarning, match="guidance_scale=0.0 turns classifier-free guidance off"):
        pipe(generator=_seed(), guidance_scale=0.0, negative_guidance="cfg", **call)  # how SD3.5 Large Turbo runs
    # By default the negative acts through NAG there (MMDiT-X: its image-only second attention keeps its processor).
    with _no_warnings():
        turbo = pipe(generator=_seed(), guidance_scale=0.0, **call)
    assert turbo.negative_guidance == "nag"
    assert not np.array_equal(turbo.images, sd35(generator=_seed(), guidance_scale=0.0, **call).images)


# ------------------------------------------------------------------------------------------------------------- Sana
def test_sana_fills_its_gemma_slot():
    from tiny_families import tiny_sana

    sana = tiny_sana()
    pipe = NegOptPipeline(sana)
    assert pipe.negative_slots == ("negative_prompt",)
    call = dict(prompt=PROMPT, height=32, width=32, num_inference_steps=1, output_type="np")
    call["use_resolution_binning"] = False
    with _no_warnings():
        out = pipe(generator=_seed(), **call)
    negative = out.negative_prompts[0]
    assert negative == pipe.negative_prompt_generator([PROMPT])[0]
    bare = sana(negative_prompt=negative, generator=_seed(), **call)
    np.testing.assert_array_equal(out.images, bare.images)
    assert not np.array_equal(out.images, sana(generator=_seed(), **call).images)  # Sana's own default is ""


# ----------------------------------------------------------------------------------------------- Flux.2 and Klein
def test_flux2_is_refused_on_a_real_build():
    from tiny_families import tiny_flux2

    flux2 = tiny_flux2()
    call = dict(prompt=PROMPT, height=8, width=8, num_inference_steps=1, output_type="np")
    call.update(max_sequence_length=64, text_encoder_out_layers=(1,))
    assert flux2(generator=_seed(), **call).images.shape == (1, 8, 8, 3)  # a working pipeline
    with pytest.raises(TypeError, match="negative_prompt"):
        flux2(negative_prompt=SHORT, **call)  # that takes no negative
    with pytest.raises(ValueError, match="Flux.2 is guidance-distilled and its pipeline takes no negative prompt"):
        NegOptPipeline(flux2)


KLEIN_CALL = dict(height=8, width=8, num_inference_steps=1, output_type="np", text_encoder_out_layers=(1,))
KLEIN_CALL["max_sequence_length"] = 320  # room for the whole built-in negative in bytes


@pytest.fixture(scope="module")
def klein():
    from tiny_families import tiny_flux2_klein

    return tiny_flux2_klein()


def test_klein_base_gets_its_negative_as_embeddings(klein):
    pipe = NegOptPipeline(klein)
    assert pipe.negative_slots == ()  # no text slot: the wrapper encodes the negative itself
    with _no_warnings():
        out = pipe(prompt=PROMPT, generator=_seed(), **KLEIN_CALL)
    negative = out.negative_prompts[0]
    assert out.negative_prompt == negative and negative == pipe.negative_prompt_generator([PROMPT])[0]
    embeds, _ = klein.encode_prompt(negative, max_sequence_length=320, text_encoder_out_layers=(1,))
    bare = klein(prompt=PROMPT, negative_prompt_embeds=embeds, generator=_seed(), **KLEIN_CALL)
    np.testing.assert_array_equal(out.images, bare.images)
    empty = klein(prompt=PROMPT, generator=_seed(), **KLEIN_CALL)  # Klein's own negative: ""
    assert not np.array_equal(out.images, empty.images)

    # A batch, two images a prompt, and the caller's own negative text (which the pipeline itself cannot take).
    prompts = [PROMPT, "a lighthouse at dusk"]
    mine = pipe(prompt=prompts, negative_prompt="lowres", num_images_per_prompt=2, generator=_seed(), **KLEIN_CALL)
    assert [n.split(", ")[0] for n in mine.negative_prompts] == ["lowres", "lowres"]
    embeds, _ = klein.encode_prompt(mine.negative_prompts, max_sequence_length=320, text_encoder_out_layers=(1,))
    bare = klein(
        prompt=prompts, negative_prompt_embeds=embeds, num_images_per_prompt=2, generator=_seed(), **KLEIN_CALL
    )
    np.testing.assert_array_equal(mine.images, bare.images)


def test_klein_checks_and_warnings(klein):
    pipe = NegOptPipeline(klein)
    embeds, _ = klein.encode_prompt("lowres", max_sequence_length=320, text_encoder_out_layers=(1,))
    with pytest.raises(ValueError, match="Cannot forward both `negative_prompt` and `negative_prompt_embeds`"):
        pipe(prompt=PROMPT, negative_prompt="lowres", negative_prompt_embeds=embeds, **KLEIN_CALL)
    own = pipe(prompt=PROMPT, negative_prompt_embeds=embeds, generator=_seed(), **KLEIN_CALL)
    assert own.negative_prompts is None  # the caller's embeddings, forwarded
    with pytest.warns(UserWarning, match="guidance_scale=1.0 turns classifier-free guidance off"):
        pipe(prompt=PROMPT, guidance_scale=1.0, **KLEIN_CALL)
    # The token budget counts the chat template Klein wraps each negative in.
    with pytest.warns(UserWarning, match=r"Qwen2Tokenizer \d+, special tokens included"):
        short = pipe(prompt=PROMPT, **{**KLEIN_CALL, "max_sequence_length": 64})
    text = klein.tokenizer.apply_chat_template(
        [{"role": "user", "content": short.negative_prompts[0]}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    assert len(klein.tokenizer(text).input_ids) <= 64  # the whole templated negative fits: nothing is cut
    # eval and RL send negative text, which Klein cannot take: they refuse it, saying why.
    with pytest.raises(ValueError, match="only negative_prompt_embeds"):
        negative_slots(klein)


def test_a_distilled_klein_is_refused():
    from tiny_families import tiny_flux2_klein

    with pytest.raises(ValueError, match="step-distilled"):
        NegOptPipeline(tiny_flux2_klein(is_distilled=True))


# ----------------------------------------------------------------------------------------------------- HunyuanVideo
def test_hunyuan_video_fills_both_slots_and_acts_with_true_cfg():
    from tiny_video import hunyuan_prompt_template, tiny_hunyuan_video

    hunyuan = tiny_hunyuan_video()
    pipe = NegOptPipeline(hunyuan)
    assert pipe.negative_slots == ("negative_prompt", "negative_prompt_2")
    assert pipe.negative_prompt_generator.kind == "video"
    call = dict(prompt=PROMPT, height=16, width=16, num_frames=9, num_inference_steps=1, output_type="np")
    call["prompt_template"] = hunyuan_prompt_template(hunyuan)
    # The video negative is longer than the CLIP slot's 77 bytes here: trimmed to whole terms, with the warning.
    with pytest.warns(UserWarning, match="longer than the text encoders' token limit"):
        out = pipe(generator=_seed(), true_cfg_scale=2.0, **call)
    assert out.frames.shape == (1, 9, 16, 16, 3)
    negative = out.negative_prompts[0]
    assert "," in negative and len(hunyuan.tokenizer_2(negative).input_ids) <= 77  # what CLIP keeps, whole terms
    bare = hunyuan(negative_prompt=negative, negative_prompt_2=negative, true_cfg_scale=2.0, generator=_seed(), **call)
    np.testing.assert_array_equal(out.frames, bare.frames)
    assert not np.array_equal(out.frames, hunyuan(generator=_seed(), **call).frames)
    with pytest.warns(UserWarning, match="true_cfg_scale=1.0; the negative prompt has no effect"):
        pipe(generator=_seed(), **call)  # HunyuanVideo's default: true CFG off


# -------------------------------------------------------------------------------------------------------- CogVideoX
def test_cogvideox_fills_its_slot_with_the_video_negative():
    from tiny_video import tiny_cogvideox

    cog = tiny_cogvideox()
    pipe = NegOptPipeline(cog)
    assert pipe.negative_slots == ("negative_prompt",) and pipe.negative_prompt_generator.kind == "video"
    call = dict(prompt=PROMPT, height=16, width=16, num_frames=9, num_inference_steps=1, output_type="np")
    call["max_sequence_length"] = 300
    with _no_warnings():
        out = pipe(generator=_seed(), **call)
    negative = out.negative_prompts[0]
    assert negative == pipe.negative_prompt_generator([PROMPT])[0] and "flickering" in negative
    bare = cog(negative_prompt=negative, generator=_seed(), **call)
    np.testing.assert_array_equal(out.frames, bare.frames)
    assert not np.array_equal(out.frames, cog(generator=_seed(), **call).frames)
    with pytest.warns(UserWarning, match="guidance_scale=1.0 turns classifier-free guidance off"):
        pipe(generator=_seed(), guidance_scale=1.0, **call)
