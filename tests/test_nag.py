"""Normalized Attention Guidance: the maths against values worked by hand, one attention layer of each form against
NAG written out here, and NegOptPipeline's NAG calls on tiny real SD, SDXL, Flux, SD3 and Wan pipelines."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from negopt.pipeline import NegOptPipeline
from negopt.pipeline.guidance import NAG_DEFAULTS, NAGState, guided_call, nag_combine, nag_family
from negopt.pipeline.guidance.processors import (
    NAGCrossAttnProcessor,
    NAGFluxAttnProcessor,
    NAGJointAttnProcessor,
)
from tiny_pipelines import tiny_flux, tiny_pixart, tiny_sd, tiny_sd3, tiny_sdxl, tiny_wan

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["a red cat on a sofa", "a lighthouse at dusk"]


def fixed(negative: str):
    """A generator that writes the same negative for every prompt."""
    return lambda prompts: [negative] * len(prompts)


# -- the maths --------------------------------------------------------------------------------------------------------


def test_nag_combine_by_hand():
    z_pos, z_neg = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.0, 1.0]])
    # Z~ = 2 * [1, -1] - [0, 1] = [2, -3]; ||Z~||_1 / ||Z+||_1 = 5 / 2 = 2.5.
    # tau = 3: kept; blend 0.5 * [2, -3] + 0.5 * [1, -1] = [1.5, -2].
    torch.testing.assert_close(nag_combine(z_pos, z_neg, 2.0, 3.0, 0.5), torch.tensor([[1.5, -2.0]]))
    # tau = 2: scaled by 2 / 2.5 to [1.6, -2.4]; blend [1.3, -1.7].
    torch.testing.assert_close(nag_combine(z_pos, z_neg, 2.0, 2.0, 0.5), torch.tensor([[1.3, -1.7]]))
    # alpha = 1: the normalised Z~ itself; alpha = 0: Z+.
    torch.testing.assert_close(nag_combine(z_pos, z_neg, 2.0, 2.0, 1.0), torch.tensor([[1.6, -2.4]]))
    torch.testing.assert_close(nag_combine(z_pos, z_neg, 2.0, 2.0, 0.0), z_pos)
    # per token: each row has its own norms
    rows = nag_combine(torch.cat([z_pos, 10 * z_pos]), torch.cat([z_neg, 10 * z_neg]), 2.0, 2.0, 0.5)
    torch.testing.assert_close(rows, torch.tensor([[1.3, -1.7], [13.0, -17.0]]))


def test_nag_combine_scale_one_is_the_identity_bit_for_bit():
    generator = torch.Generator().manual_seed(0)
    z_pos, z_neg = torch.randn(2, 5, 7, generator=generator), torch.randn(2, 5, 7, generator=generator)
    for tau, alpha in [(1.0, 0.25), (2.5, 0.38), (3.5, 1.0)]:
        assert torch.equal(nag_combine(z_pos, z_neg, 1.0, tau, alpha), z_pos)


def test_nag_combine_a_zero_token_gives_zeros_not_nan():
    out = nag_combine(torch.zeros(1, 3), torch.tensor([[1.0, 2.0, 3.0]]), 4.0, 2.5, 0.5)
    assert torch.equal(out, torch.zeros(1, 3))
    half = nag_combine(torch.ones(1, 4, dtype=torch.bfloat16), torch.zeros(1, 4, dtype=torch.bfloat16), 3.0, 2.5, 1.0)
    assert half.dtype == torch.bfloat16 and torch.equal(half, torch.full((1, 4), 2.5, dtype=torch.bfloat16))


# -- one attention layer against NAG written out ---------------------------------------------------------------------


def linear(weight) -> torch.nn.Linear:
    weight = torch.tensor(weight, dtype=torch.float32)
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def test_cross_attention_layer_by_hand():
    """UNet cross-attention: one image token reads two prompt tokens or two negative tokens.

    q = [ln 3 * sqrt 2, 0]; the keys are [1, 0] and [0, 0], so the scores (q . k / sqrt 2) are ln 3 and 0 and the
    softmax weights 3/4 and 1/4. The prompt's values [4, 0], [0, 4] give Z+ = [3, 1]; the negative's [0, 4], [4, 0]
    give Z- = [1, 3]. With s = 2: Z~ = [6, 2] - [1, 3] = [5, -1], L1 ratio 6 / 4 = 1.5.
    """
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    attn = Attention(query_dim=2, cross_attention_dim=4, heads=1, dim_head=2, out_bias=False)
    attn.to_q, attn.to_k = linear([[1, 0], [0, 1]]), linear([[1, 0, 0, 0], [0, 1, 0, 0]])
    attn.to_v, attn.to_out[0] = linear([[0, 0, 1, 0], [0, 0, 0, 1]]), linear([[1, 0], [0, 1]])
    image = torch.tensor([[[math.log(3) * math.sqrt(2), 0.0]]])
    prompt = torch.tensor([[[1.0, 0, 4, 0], [0, 0, 0, 4]]])
    negative = torch.tensor([[[1.0, 0, 0, 4], [0, 0, 4, 0]]])
    context = torch.cat([prompt, negative], dim=1)
    with torch.no_grad():
        bare = AttnProcessor2_0()(attn, image, prompt)
        torch.testing.assert_close(bare, torch.tensor([[[3.0, 1.0]]]))  # Z+ through the output projection
        for tau, expected in [(2.0, [4.0, 0.0]), (1.2, [3.5, 0.1])]:
            # tau 2: kept, 0.5 * [5, -1] + 0.5 * [3, 1]; tau 1.2: scaled by 1.2 / 1.5 to [4, -0.8], then blended.
            state = NAGState(scale=2.0, tau=tau, alpha=0.5, positive_length=2, negative_length=2)
            out = NAGCrossAttnProcessor(state, AttnProcessor2_0())(attn, image, context)
            torch.testing.assert_close(out, torch.tensor([[expected]]))
        state.scale = 1.0
        assert torch.equal(NAGCrossAttnProcessor(state, AttnProcessor2_0())(attn, image, context), bare)
        state.scale, state.active = 2.0, False  # after nag_end: the prompt only
        assert torch.equal(NAGCrossAttnProcessor(state, AttnProcessor2_0())(attn, image, context), bare)


def joint_layer(kind: str):
    """A joint-attention layer with hand-set weights: image queries [q, 0] (to_q = I), image keys and values 0,
    text keys the text (add_k = I), text values 4 x the text, text queries 0; output projections I."""
    eye, zero = [[1, 0], [0, 1]], [[0, 0], [0, 0]]
    if kind == "sd3":
        from diffusers.models.attention_processor import Attention, JointAttnProcessor2_0

        attn = Attention(
            query_dim=2, heads=1, dim_head=2, added_kv_proj_dim=2, out_bias=False, processor=JointAttnProcessor2_0()
        )
    else:
        from diffusers.models.transformers.transformer_flux import FluxAttention, FluxAttnProcessor

        attn = FluxAttention(query_dim=2, heads=1, dim_head=2, added_kv_proj_dim=2, out_bias=False)
        attn.processor = FluxAttnProcessor()
        attn.norm_q = attn.norm_k = attn.norm_added_q = attn.norm_added_k = torch.nn.Identity()
    attn.to_q, attn.to_k, attn.to_v = linear(eye), linear(zero), linear(zero)
    attn.add_q_proj, attn.add_k_proj, attn.add_v_proj = linear(zero), linear(eye), linear([[4, 0], [0, 4]])
    attn.to_out[0], attn.to_add_out = linear(eye), linear(eye)
    return attn


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_joint_attention_layer_by_hand(kind):
    """MMDiT joint attention: the image token attends to [image; prompt] and to [image; negative].

    q = [ln 3 * sqrt 2, 0]; the image key is 0 (score 0), each text key starts with 1 (score ln 3): weights 1/4 on
    the image (value 0) and 3/4 on the text. Prompt token [1, 0] (value [4, 0]): Z+ = [3, 0]; negative [1, 0.5]
    (value [4, 2]): Z- = [3, 1.5]. s = 2: Z~ = [3, -1.5], L1 ratio 4.5 / 3 = 1.5; tau 1.2 scales it by 0.8 to
    [2.4, -1.2]; alpha 0.5: [2.7, -0.6]. The text queries are 0, so each text token averages its branch's values:
    the prompt's [2, 0], the negative's [2, 1] -- the negative's stream comes from the negative's branch.
    """
    attn = joint_layer(kind)
    original = attn.processor
    image = torch.tensor([[[math.log(3) * math.sqrt(2), 0.0]]])
    prompt, negative = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[1.0, 0.5]]])
    processor = NAGJointAttnProcessor if kind == "sd3" else NAGFluxAttnProcessor
    with torch.no_grad():
        bare_image, bare_text = original(attn, image, prompt)
        torch.testing.assert_close(bare_image, torch.tensor([[[3.0, 0.0]]]))
        torch.testing.assert_close(bare_text, torch.tensor([[[2.0, 0.0]]]))
        state = NAGState(scale=2.0, tau=1.2, alpha=0.5, positive_length=1, negative_length=1)
        out_image, out_text = processor(state, original)(attn, image, torch.cat([prompt, negative], dim=1))
        torch.testing.assert_close(out_image, torch.tensor([[[2.7, -0.6]]]))
        torch.testing.assert_close(out_text, torch.tensor([[[2.0, 0.0], [2.0, 1.0]]]))
        state.scale = 1.0
        same_image, same_text = processor(state, original)(attn, image, torch.cat([prompt, negative], dim=1))
        assert torch.equal(same_image, bare_image) and torch.equal(same_text[:, :1], bare_text)


def attend(q, k, v):
    """Attention written out: softmax(q k^T / sqrt(d)) v, one head, (tokens, features)."""
    return torch.softmax(q @ k.T / math.sqrt(q.shape[-1]), dim=-1) @ v


def nag(z_pos, z_neg, s, tau, alpha):
    """NAG written out, one token at a time."""
    rows = []
    for zp, zn in zip(z_pos, z_neg):
        guided = s * zp - (s - 1) * zn
        ratio = guided.abs().sum() / zp.abs().sum()
        if ratio > tau:
            guided = guided * tau / ratio
        rows.append(alpha * guided + (1 - alpha) * zp)
    return torch.stack(rows)


def test_flux_single_stream_layer_against_nag_written_out():
    """A Flux single-stream block's attention: one [prompt; negative; image] sequence, one set of projections."""
    from diffusers.models.transformers.transformer_flux import FluxAttention, FluxAttnProcessor

    torch.manual_seed(0)
    attn = FluxAttention(query_dim=4, heads=1, dim_head=4, pre_only=True, bias=True)
    attn.norm_q = attn.norm_k = torch.nn.Identity()
    sequence = torch.randn(1, 2 + 3 + 5, 4)  # 2 prompt tokens, 3 negative tokens, 5 image tokens
    state = NAGState(scale=3.0, tau=1.5, alpha=0.4, positive_length=2, negative_length=3)
    with torch.no_grad():
        out = NAGFluxAttnProcessor(state, FluxAttnProcessor())(attn, sequence)
        q, k, v = attn.to_q(sequence[0]), attn.to_k(sequence[0]), attn.to_v(sequence[0])
    with_prompt, with_negative = [0, 1, 5, 6, 7, 8, 9], [2, 3, 4, 5, 6, 7, 8, 9]
    z_pos = attend(q[with_prompt], k[with_prompt], v[with_prompt])
    z_neg = attend(q[with_negative], k[with_negative], v[with_negative])
    expected = torch.cat([z_pos[:2], z_neg[:3], nag(z_pos[2:], z_neg[3:], 3.0, 1.5, 0.4)])
    torch.testing.assert_close(out[0], expected)


# -- NegOptPipeline with NAG on tiny pipelines ------------------------------------------------------------------------

# family -> (builder, arguments of a call with classifier-free guidance off, the output's images attribute)
FAMILIES = {
    "sd": (tiny_sd, {"guidance_scale": 0.0}, "images"),
    "sdxl": (tiny_sdxl, {"guidance_scale": 0.0}, "images"),
    "flux": (tiny_flux, {"true_cfg_scale": 1.0, "height": 32, "width": 32, "max_sequence_length": 48}, "images"),
    "sd3": (tiny_sd3, {"guidance_scale": 0.0, "height": 32, "width": 32, "max_sequence_length": 48}, "images"),
    "wan": (
        tiny_wan,
        {"guidance_scale": 1.0, "height": 16, "width": 16, "num_frames": 5, "max_sequence_length": 32},
        "frames",
    ),
}
# The arguments that turn classifier-free guidance on, per family.
CFG_ON = {
    "sd": {"guidance_scale": 7.5},
    "sdxl": {"guidance_scale": 5.0},
    "flux": {"true_cfg_scale": 4.0},
    "sd3": {"guidance_scale": 7.0},
    "wan": {"guidance_scale": 5.0},
}


@pytest.fixture(scope="module")
def pipes():
    built: dict = {}

    def get(family: str):
        if family not in built:
            built[family] = FAMILIES[family][0]()
        return built[family]

    return get


def args(family: str, seeds=(0,), steps: int = 2, **overrides) -> dict:
    kwargs = {"num_inference_steps": steps, "output_type": "np", **FAMILIES[family][1], **overrides}
    kwargs["generator"] = [torch.Generator().manual_seed(s) for s in seeds]
    return kwargs


def pixels(output, family: str) -> np.ndarray:
    return np.asarray(getattr(output, FAMILIES[family][2]))


def processors_of(pipe) -> list[dict]:
    return [
        dict(d.attn_processors)
        for d in (getattr(pipe, n, None) for n in ("unet", "transformer", "transformer_2"))
        if d is not None
    ]


def test_families_are_read_from_the_denoiser(pipes):
    assert {f: nag_family(pipes(f)) for f in FAMILIES} == {f: f for f in FAMILIES}
    assert nag_family(tiny_pixart()) is None
    assert set(NAG_DEFAULTS) == set(FAMILIES)
    assert all(d.source and d.nag_end == 1.0 for d in NAG_DEFAULTS.values())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_scale_one_gives_the_bare_pipelines_images_and_the_default_scale_does_not(pipes, family):
    bare = pipes(family)
    pipe = NegOptPipeline(bare, fixed("blurry, ugly, watermark"))
    before = processors_of(bare)
    expected = pixels(bare(prompt=PROMPTS[0], **args(family)), family)

    one = pipe(prompt=PROMPTS[0], nag_scale=1.0, **args(family))
    assert one.negative_guidance == "nag" == pipe.last_negative_guidance
    np.testing.assert_array_equal(pixels(one, family), expected)

    guided = pipe(prompt=PROMPTS[0], **args(family))
    assert guided.negative_guidance == "nag"
    assert np.abs(pixels(guided, family) - expected).max() > 1e-4
    # the bare pipeline is unchanged: the very same processors, the same images
    after = processors_of(bare)
    assert [{k: id(v) for k, v in d.items()} for d in after] == [{k: id(v) for k, v in d.items()} for d in before]
    np.testing.assert_array_equal(pixels(bare(prompt=PROMPTS[0], **args(family)), family), expected)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_two_negatives_give_two_images_and_a_batch_equals_its_calls(pipes, family):
    bare = pipes(family)
    pipe = NegOptPipeline(bare, combine="user")
    negatives = ["blurry, low quality", "cartoon, painting, text"]
    batch = pixels(pipe(prompt=PROMPTS, negative_prompt=negatives, **args(family, seeds=(0, 1))), family)
    one_by_one = [
        pixels(pipe(prompt=[p], negative_prompt=[n], **args(family, seeds=(s,))), family)[0]
        for p, n, s in zip(PROMPTS, negatives, (0, 1))
    ]
    np.testing.assert_allclose(batch, np.stack(one_by_one), atol=1e-6, rtol=0)
    other = pixels(pipe(prompt=PROMPTS[0], negative_prompt=negatives[1], **args(family)), family)
    assert np.abs(other[0] - one_by_one[0]).max() > 1e-4


@pytest.mark.parametrize("family", list(FAMILIES))
def test_with_cfg_on_auto_gives_todays_images(pipes, family):
    bare = pipes(family)
    pipe = NegOptPipeline(bare, fixed("blurry, ugly"))
    out = pipe(prompt=PROMPTS[0], **args(family, **CFG_ON[family]))
    assert out.negative_guidance == "cfg"
    today = bare(prompt=PROMPTS[0], negative_prompt=out.negative_prompt, **args(family, **CFG_ON[family]))
    np.testing.assert_array_equal(pixels(out, family), pixels(today, family))
    with pytest.raises(ValueError, match="classifier-free guidance off, but this call .* has it on"):
        pipe(prompt=PROMPTS[0], negative_guidance="nag", **args(family, **CFG_ON[family]))


def test_cfg_mode_keeps_todays_behaviour_where_cfg_is_off(pipes):
    bare = pipes("sd")
    pipe = NegOptPipeline(bare, fixed("blurry"), negative_guidance="cfg")
    with pytest.warns(UserWarning, match="has no effect"):
        out = pipe(prompt=PROMPTS[0], **args("sd"))
    assert out.negative_guidance is None
    np.testing.assert_array_equal(out.images, bare(prompt=PROMPTS[0], **args("sd")).images)


def test_num_images_per_prompt(pipes):
    bare = pipes("sd")
    pipe = NegOptPipeline(bare, fixed("blurry, ugly"))
    kwargs = args("sd", seeds=(0, 1, 2, 3), num_images_per_prompt=2)
    out = pipe(prompt=PROMPTS, nag_scale=1.0, **kwargs)
    np.testing.assert_array_equal(
        out.images, bare(prompt=PROMPTS, **args("sd", seeds=(0, 1, 2, 3), num_images_per_prompt=2)).images
    )
    guided = pipe(prompt=PROMPTS, **args("sd", seeds=(0, 1, 2, 3), num_images_per_prompt=2)).images
    assert guided.shape == out.images.shape and np.abs(guided - out.images).max() > 1e-4


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("family", ["sd", "flux"])
def test_processors_are_restored_after_an_exception_mid_call(pipes, family, error):
    bare = pipes(family)
    before = processors_of(bare)
    expected = pixels(bare(prompt=PROMPTS[0], **args(family)), family)
    seen = []

    def stop(pipe, step, timestep, callback_kwargs):
        seen.append({k for d in processors_of(pipe) for k, v in d.items() if type(v).__name__.startswith("NAG")})
        raise error("stop")

    with pytest.raises(error):
        NegOptPipeline(bare, fixed("blurry"))(prompt=PROMPTS[0], callback_on_step_end=stop, **args(family))
    assert seen and seen[0]  # NAG's processors were in place mid-call
    assert [{k: id(v) for k, v in d.items()} for d in processors_of(bare)] == [
        {k: id(v) for k, v in d.items()} for d in before
    ]
    np.testing.assert_array_equal(pixels(bare(prompt=PROMPTS[0], **args(family)), family), expected)


def test_nag_end_stops_the_guidance_and_keeps_the_users_callback(pipes):
    bare = pipes("sd")
    pipe = NegOptPipeline(bare, fixed("blurry, ugly"))
    calls, active = [], []

    def user(p, step, timestep, callback_kwargs):
        calls.append(step)
        states = {v.state.active for v in p.unet.attn_processors.values() if hasattr(v, "state")}
        active.append(states)
        return {"latents": callback_kwargs["latents"]}

    full = pipe(prompt=PROMPTS[0], **args("sd", steps=4)).images
    half = pipe(prompt=PROMPTS[0], nag_end=0.5, callback_on_step_end=user, **args("sd", steps=4)).images
    assert calls == [0, 1, 2, 3]  # the user's callback ran at every step
    # set after each step for the next one: steps 0 and 1 (i < 0.5 * 4) guided, then not
    assert active == [{True}, {False}, {False}, {False}]
    bare_images = bare(prompt=PROMPTS[0], **args("sd", steps=4)).images
    assert np.abs(half - full).max() > 1e-5 and np.abs(half - bare_images).max() > 1e-5


def test_knobs_are_checked(pipes):
    pipe = NegOptPipeline(pipes("sd"), fixed("blurry"))
    for knob, value, match in [
        ("nag_scale", 0.5, "nag_scale.*>= 1"),
        ("nag_tau", 0.9, "nag_tau.*>= 1"),
        ("nag_alpha", 1.5, r"nag_alpha.*\[0, 1\]"),
        ("nag_end", 0.0, r"nag_end.*\(0, 1\]"),
        ("nag_scale", float("nan"), "nag_scale"),
        ("nag_scale", True, "nag_scale"),
        ("nag_alpha", "0.5", "nag_alpha"),
    ]:
        with pytest.raises(ValueError, match=match):
            pipe(prompt=PROMPTS[0], **{knob: value}, **args("sd"))
    with pytest.raises(ValueError, match="negative_guidance.*'auto', 'cfg', 'nag'"):
        NegOptPipeline(pipes("sd"), negative_guidance="NAG")
    with pytest.raises(ValueError, match="negative_guidance"):
        pipe(prompt=PROMPTS[0], negative_guidance="both", **args("sd"))
    with pytest.raises(ValueError, match="negative_guidance"):
        pipe.negative_guidance = "off"


def test_knobs_given_to_a_cfg_call_warn(pipes):
    pipe = NegOptPipeline(pipes("sd"), fixed("blurry"))
    with pytest.warns(UserWarning, match="nag_scale given.*classifier-free guidance") as record:
        pipe(prompt=PROMPTS[0], nag_scale=4.0, **args("sd", guidance_scale=7.5))
    assert record[0].filename == __file__


def test_unsupported_pipelines_are_named(pipes):
    pixart = tiny_pixart()
    kwargs = {"guidance_scale": 1.0, "num_inference_steps": 2, "output_type": "np", "height": 32, "width": 32}
    kwargs.update(use_resolution_binning=False, clean_caption=False)
    with pytest.raises(ValueError, match="does not support PixArtAlphaPipeline: NAG supports Stable Diffusion"):
        NegOptPipeline(pixart, fixed("blurry"), negative_guidance="nag")(prompt=PROMPTS[0], **kwargs)
    with pytest.warns(UserWarning, match="has no effect"):  # 'auto': as today
        out = NegOptPipeline(pixart, fixed("blurry"))(prompt=PROMPTS[0], **kwargs)
    assert out.negative_guidance is None


def test_someone_elses_processor_is_a_clear_error_and_left_in_place(pipes):
    from diffusers.models.attention_processor import AttnProcessor

    bare = tiny_sd()
    name = next(k for k in bare.unet.attn_processors if "attn2" in k)
    custom = AttnProcessor()
    bare.unet.set_attn_processor({**bare.unet.attn_processors, name: custom})
    with pytest.raises(ValueError, match=r"attn2.processor runs AttnProcessor .*unload_ip_adapter"):
        NegOptPipeline(bare, fixed("blurry"))(prompt=PROMPTS[0], **args("sd"))
    assert bare.unet.attn_processors[name] is custom


def test_prompt_weighting_and_long_negatives(pipes):
    """A1111 weighting: the whole negative (two 75-token chunks) guides, not its first 77 tokens; NAG reads the
    embeddings the weighting made (the prompt padded to the negative's chunks, as A1111 pads them)."""
    from negopt.pipeline.weighting import encode_call

    bare = pipes("sd")
    pipe = NegOptPipeline(bare, combine="user", prompt_weighting="a1111")
    head = ", ".join(f"term{i}" for i in range(12))  # about 100 byte-level tokens
    images = [
        pipe(prompt=PROMPTS[0], negative_prompt=f"{head}, {tail}", **args("sd")).images
        for tail in ("(blurry:1.4)", "(cartoon:1.4)")
    ]
    assert np.abs(images[0] - images[1]).max() > 1e-4
    negative = f"{head}, blurry"
    one = pipe(prompt=PROMPTS[0], negative_prompt=negative, nag_scale=1.0, **args("sd"))
    assert one.negative_guidance == "nag"
    embeds = encode_call(bare, {}, "a1111", [PROMPTS[0]], [negative])
    assert embeds["negative_prompt_embeds"].shape[1] == 154
    expected = bare(prompt_embeds=embeds["prompt_embeds"], **args("sd")).images
    np.testing.assert_array_equal(one.images, expected)


def test_textual_inversion_in_the_negative_reaches_nag(pipes):
    bare = tiny_sd()
    generator = torch.Generator().manual_seed(0)
    bare.load_textual_inversion(torch.randn(2, 32, generator=generator), token="badneg")
    bare.load_textual_inversion(torch.randn(2, 32, generator=generator), token="otherneg")
    pipe = NegOptPipeline(bare, combine="user")
    a = pipe(prompt=PROMPTS[0], negative_prompt="badneg", **args("sd")).images
    b = pipe(prompt=PROMPTS[0], negative_prompt="otherneg", **args("sd")).images
    assert np.abs(a - b).max() > 1e-4


def test_guided_call_on_a_bare_pipeline(pipes):
    """What eval and RL use: the bare pipeline, its negative given as text."""
    bare = pipes("sdxl")
    kwargs = {"prompt": PROMPTS[0], "negative_prompt": "blurry", **args("sdxl")}
    out, used = guided_call(bare, dict(kwargs), "auto", nag_scale=1.0)
    assert used == "nag"
    np.testing.assert_array_equal(out.images, bare(prompt=PROMPTS[0], **args("sdxl")).images)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        out, used = guided_call(bare, {"prompt": PROMPTS[0], **args("sdxl")}, "auto")  # no negative: nothing to do
    assert used is None


def test_flux_kontext(pipes):
    """Flux Kontext: the context image's tokens ride with the image stream; nothing else changes."""
    from diffusers import FluxKontextPipeline
    from PIL import Image

    kontext = FluxKontextPipeline(**pipes("flux").components)
    kontext.set_progress_bar_config(disable=True)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    kwargs = {**args("flux"), "image": image, "max_area": 32 * 32, "_auto_resize": False}
    expected = kontext(prompt="make it red", **kwargs).images
    pipe = NegOptPipeline(kontext, fixed("blurry, ugly"))
    one = pipe(prompt="make it red", nag_scale=1.0, **{**kwargs, "generator": [torch.Generator().manual_seed(0)]})
    assert one.negative_guidance == "nag"
    np.testing.assert_array_equal(one.images, expected)
    guided = pipe(prompt="make it red", **{**kwargs, "generator": [torch.Generator().manual_seed(0)]}).images
    assert np.abs(guided - expected).max() > 1e-4


def test_lora_scale_reaches_the_nag_processors():
    """A LoRA on the UNet, its scale through cross_attention_kwargs: NAG's processors call the LoRA-wrapped layers."""
    from peft import LoraConfig

    bare = tiny_sd()
    torch.manual_seed(0)
    bare.unet.add_adapter(LoraConfig(r=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False))
    pipe = NegOptPipeline(bare, fixed("blurry, ugly"))
    images = {}
    for scale in (0.0, 1.0):
        images[scale] = pipe(prompt=PROMPTS[0], nag_scale=1.0, **args("sd", cross_attention_kwargs={"scale": scale}))
        expected = bare(prompt=PROMPTS[0], **args("sd", cross_attention_kwargs={"scale": scale})).images
        np.testing.assert_array_equal(images[scale].images, expected)
    assert np.abs(images[0.0].images - images[1.0].images).max() > 1e-4


def test_the_users_own_embeddings(pipes):
    """prompt_embeds and negative_prompt_embeds of the caller's own: NAG guides with them as given."""
    bare = pipes("sd")
    positive, _ = bare.encode_prompt(PROMPTS[0], "cpu", 1, False)
    negative, _ = bare.encode_prompt("blurry, ugly", "cpu", 1, False)
    pipe = NegOptPipeline(bare)
    one = pipe(prompt_embeds=positive, negative_prompt_embeds=negative, nag_scale=1.0, **args("sd"))
    assert one.negative_guidance == "nag" and one.negative_prompts is None
    np.testing.assert_array_equal(one.images, bare(prompt_embeds=positive, **args("sd")).images)
    text = pipe(prompt=PROMPTS[0], negative_prompt="blurry, ugly", combine="user", **args("sd")).images
    np.testing.assert_array_equal(
        pipe(prompt_embeds=positive, negative_prompt_embeds=negative, **args("sd")).images, text
    )


def test_wan22_guides_both_experts():
    """Wan 2.2's two experts (transformer for the high-noise steps, transformer_2 for the low-noise ones) both get
    NAG's processors for the call, and both get their own back."""
    bare = tiny_wan(two_experts=True)
    before = processors_of(bare)
    seen = []

    def record(pipe, step, timestep, callback_kwargs):
        seen.append([sum(type(v).__name__.startswith("NAG") for v in d.values()) for d in processors_of(pipe)])
        return {}

    expected = pixels(bare(prompt=PROMPTS[0], **args("wan")), "wan")
    pipe = NegOptPipeline(bare, fixed("static, blurry"))
    calls = {"transformer": 0, "transformer_2": 0}
    hooks = [
        getattr(bare, name)
        .blocks[0]
        .attn2.register_forward_hook(lambda *_, n=name: calls.__setitem__(n, calls[n] + 1))
        for name in calls
    ]
    try:
        one = pipe(prompt=PROMPTS[0], nag_scale=1.0, callback_on_step_end=record, **args("wan"))
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == {"transformer": 1, "transformer_2": 1}  # one step each
    assert one.negative_guidance == "nag" and seen == [[2, 2], [2, 2]]  # both cross-attention layers of each expert
    np.testing.assert_array_equal(pixels(one, "wan"), expected)
    assert np.abs(pixels(pipe(prompt=PROMPTS[0], **args("wan")), "wan") - expected).max() > 1e-4
    assert [{k: id(v) for k, v in d.items()} for d in processors_of(bare)] == [
        {k: id(v) for k, v in d.items()} for d in before
    ]
