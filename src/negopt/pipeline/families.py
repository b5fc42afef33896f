"""What each diffusers pipeline family does with a negative prompt, and what the wrapper does about it.

Each family treats the negative its own way (diffusers 0.42): some use it through classifier-free guidance when
``guidance_scale > 1``, Flux-style ones only through true CFG (``true_cfg_scale > 1``), Qwen-Image turns CFG on as
soon as a negative is given, Cosmos fills a long fixed negative of its own when none is given, and Flux.2 takes none
at all. :data:`FAMILIES` writes that down once; the wrapper reads it to warn at construction, to refuse clearly, to
know that it writes for video, to decide what happens to a pipeline's own default negative, and to encode the negative
itself for a pipeline that takes only embeddings (Flux.2 Klein base models). The table in the
pipeline guide is this list.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Family",
    "FAMILIES",
    "DEFAULT_NEGATIVE_MODES",
    "chat_template_tokens",
    "check_default_negative",
    "encode_negatives",
    "family_of",
    "is_video_pipeline",
    "pipeline_default_negative",
    "refusal_message",
    "takes_negative_embeds",
]

#: What the wrapper does with a pipeline's own default negative (Cosmos) when the caller passes no
#: ``negative_prompt``: ``"merge"`` treats it as the caller's (kept first, verbatim, generated terms added),
#: ``"replace"`` drops it for the generated negative, ``"keep"`` sends it alone and generates nothing.
DEFAULT_NEGATIVE_MODES = ("merge", "replace", "keep")


@dataclass(frozen=True)
class Family:
    """One family of diffusers pipelines, as far as its negative prompt goes.

    Attributes:
        name: The family's name, as the docs' table shows it.
        classes: The diffusers pipeline classes of the family (their ``__name__``).
        slots: The negative-prompt parameters the wrapper fills.
        acts: When the negative acts (the argument that turns it on or off).
        cost: What the negative costs a step.
        video: The pipeline returns frames (``.frames``); the built-in generator writes for video.
        note: A warning given once, when the wrapper is built around such a pipeline.
        refusal: Why the wrapper refuses such a pipeline, with what to do instead; None when it wraps it. For a
            family that ``encodes_negative``, only a pipeline that cannot use the embeddings is refused.
        encodes_negative: The pipeline takes no negative text, only ``negative_prompt_embeds`` (Flux.2 Klein): the
            wrapper writes the negative and encodes it with the pipeline's own ``encode_prompt``.
    """

    name: str
    classes: tuple[str, ...]
    slots: str
    acts: str
    cost: str
    video: bool = False
    note: str | None = None
    refusal: str | None = None
    encodes_negative: bool = False


_CFG = "`guidance_scale > 1`"
_CFG_COST = "CFG runs the model twice a step whether or not a negative is given; the negative costs nothing more"
_TRUE_CFG = "`true_cfg_scale > 1` (off by default)"
_TRUE_CFG_COST = "true CFG runs the transformer twice a step; with it off the negative is unused"

FAMILIES: tuple[Family, ...] = (
    Family(
        "Stable Diffusion 1.x / 2.x",
        ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"),
        "`negative_prompt`",
        _CFG,
        _CFG_COST,
    ),
    Family(
        "SDXL (and Turbo, Lightning, LCM-LoRA at guidance <= 1)",
        ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline"),
        "`negative_prompt`, `negative_prompt_2`",
        _CFG + "; distilled checkpoints run at guidance 0-1, where it is off",
        _CFG_COST,
    ),
    Family(
        "SD3 / SD3.5 (and Turbo)",
        ("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline"),
        "`negative_prompt`, `negative_prompt_2`, `negative_prompt_3`",
        _CFG + "; SD3.5 Large Turbo runs at guidance 0, where it is off",
        _CFG_COST,
    ),
    Family(
        "Flux.1 (dev, schnell) and Flux Kontext",
        ("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline", "FluxKontextPipeline"),
        "`negative_prompt`, `negative_prompt_2`",
        _TRUE_CFG,
        _TRUE_CFG_COST,
    ),
    Family(
        "Flux.2",
        ("Flux2Pipeline",),
        "none",
        "never: the pipeline takes no negative prompt",
        "-",
        refusal="Flux.2 is guidance-distilled and its pipeline takes no negative prompt, so there is nothing to fill. "
        "Call it directly, or use a family that takes a negative (Flux.1 with true_cfg_scale > 1, or a Flux.2 "
        "Klein base model, whose negative NegOptPipeline encodes into negative_prompt_embeds).",
    ),
    Family(
        "Flux.2 Klein",
        ("Flux2KleinPipeline", "Flux2KleinInpaintPipeline", "Flux2KleinKVPipeline"),
        "`negative_prompt_embeds`: the wrapper encodes the negative with the pipeline's `encode_prompt` (base "
        "models; distilled ones and `Flux2KleinKVPipeline` are refused)",
        "base models: `guidance_scale > 1`; distilled models: never",
        _CFG_COST,
        refusal="This Flux.2 Klein pipeline is step-distilled (is_distilled=True, or Flux2KleinKVPipeline, which "
        "takes no negative at all): it runs no classifier-free guidance and ignores any negative, so there is "
        "nothing for NegOptPipeline to do. Call it directly, or wrap a Klein base model (is_distilled=False), whose "
        "negative NegOptPipeline encodes into negative_prompt_embeds.",
        encodes_negative=True,
    ),
    Family("Chroma", ("ChromaPipeline", "ChromaImg2ImgPipeline"), "`negative_prompt`", _CFG, _CFG_COST),
    Family(
        "Qwen-Image",
        ("QwenImagePipeline", "QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline", "QwenImageEditPipeline"),
        "`negative_prompt`",
        "`true_cfg_scale > 1` (4.0 by default) and a negative given",
        "CFG runs only when a negative is given: wrapping doubles the cost of every step",
        note="{name} runs classifier-free guidance only when a negative prompt is given (true_cfg_scale=4.0 by "
        "default), and NegOptPipeline always gives one: each step now runs the transformer twice, about twice the "
        "time of the bare call without a negative. Pass true_cfg_scale=1.0 to a call for one pass (the negative is "
        "then unused).",
    ),
    Family(
        "HiDream-I1",
        ("HiDreamImagePipeline",),
        "`negative_prompt`, `negative_prompt_2`, `negative_prompt_3`, `negative_prompt_4`",
        _CFG + "; the Dev and Fast models run at guidance 0, where it is off",
        _CFG_COST,
    ),
    Family("Sana", ("SanaPipeline", "SanaPAGPipeline"), "`negative_prompt`", _CFG, _CFG_COST),
    Family("PixArt", ("PixArtAlphaPipeline", "PixArtSigmaPipeline"), "`negative_prompt`", _CFG, _CFG_COST),
    Family(
        "Wan 2.1 / 2.2 (text- and image-to-video)",
        ("WanPipeline", "WanImageToVideoPipeline", "WanVideoToVideoPipeline", "WanVACEPipeline"),
        "`negative_prompt`",
        _CFG + " (2.2 A14B: `guidance_scale_2` for the low-noise expert); step-distilled LoRAs run at 1, where it "
        "is off",
        _CFG_COST,
        video=True,
    ),
    Family(
        "LTX-Video",
        ("LTXPipeline", "LTXImageToVideoPipeline", "LTXConditionPipeline", "LTX2Pipeline"),
        "`negative_prompt`",
        _CFG,
        _CFG_COST,
        video=True,
    ),
    Family(
        "HunyuanVideo",
        ("HunyuanVideoPipeline", "HunyuanVideoImageToVideoPipeline", "HunyuanVideoFramepackPipeline"),
        "`negative_prompt`, `negative_prompt_2`",
        _TRUE_CFG,
        _TRUE_CFG_COST,
        video=True,
    ),
    Family(
        "CogVideoX",
        ("CogVideoXPipeline", "CogVideoXImageToVideoPipeline", "CogVideoXVideoToVideoPipeline"),
        "`negative_prompt`",
        _CFG,
        _CFG_COST,
        video=True,
    ),
    Family(
        "Cosmos",
        ("CosmosTextToWorldPipeline", "CosmosVideoToWorldPipeline", "Cosmos2VideoToWorldPipeline"),
        "`negative_prompt` (its own long default when none is given: see `default_negative`)",
        _CFG,
        _CFG_COST,
        video=True,
    ),
    Family(
        "Cosmos Predict2 (text-to-image)",
        ("Cosmos2TextToImagePipeline",),
        "`negative_prompt` (its own long default when none is given: see `default_negative`)",
        _CFG,
        _CFG_COST,
    ),
)

_BY_CLASS = {name: family for family in FAMILIES for name in family.classes}


def _inner(pipeline: Any) -> Any:
    # A NegOptPipeline (or anything else that wraps one) is read through to the diffusers pipeline.
    return pipeline.__dict__.get("pipeline", pipeline) if hasattr(pipeline, "negative_slots") else pipeline


def family_of(pipeline: Any) -> Family | None:
    """The family of a pipeline (or of its closest diffusers base class), or None for one the table lacks."""
    for cls in type(_inner(pipeline)).__mro__:
        family = _BY_CLASS.get(cls.__name__)
        if family is not None:
            return family
    return None


def is_video_pipeline(pipeline: Any) -> bool:
    """Whether the pipeline makes video: a video family of :data:`FAMILIES`, or a ``__call__`` that takes
    ``num_frames`` (which covers video pipelines the table does not name yet)."""
    pipeline = _inner(pipeline)
    family = family_of(pipeline)
    if family is not None:
        return family.video
    try:
        return "num_frames" in inspect.signature(pipeline.__call__).parameters
    except (TypeError, ValueError):
        return False


def refusal_message(pipeline: Any) -> str | None:
    """Why the wrapper cannot fill this pipeline's negative, for a family known to take none; else None.

    A family that ``encodes_negative`` (Flux.2 Klein) is refused only where the embeddings would do nothing: a
    step-distilled model (``config.is_distilled``) or a pipeline without ``negative_prompt_embeds``.
    """
    family = family_of(pipeline)
    if family is None:
        return None
    if family.encodes_negative and takes_negative_embeds(pipeline):
        return None
    return family.refusal


def takes_negative_embeds(pipeline: Any) -> bool:
    """Whether a pipeline of a family that ``encodes_negative`` can use a negative: it takes
    ``negative_prompt_embeds``, has ``encode_prompt``, and is not step-distilled (``config.is_distilled``)."""
    pipeline = _inner(pipeline)
    family = family_of(pipeline)
    if family is None or not family.encodes_negative:
        return False
    try:
        parameters = inspect.signature(pipeline.__call__).parameters
    except (TypeError, ValueError):
        return False
    distilled = bool(getattr(getattr(pipeline, "config", None), "is_distilled", False))
    return (
        "negative_prompt_embeds" in parameters and callable(getattr(pipeline, "encode_prompt", None)) and not distilled
    )


def chat_template_tokens(tokenizer: Any) -> int:
    """How many tokens a chat tokenizer's template adds around a user's message (Flux.2 Klein wraps each prompt in
    one, then cuts the whole at ``max_sequence_length``); 0 for a tokenizer without a template."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return 0
    messages = [{"role": "user", "content": ""}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    return len(tokenizer(text).input_ids)


def encode_negatives(pipeline: Any, negatives: list[str], kwargs: Mapping[str, Any]) -> Any:
    """The negatives of a call encoded by the pipeline's own ``encode_prompt``, one row per prompt: what a family
    that ``encodes_negative`` gets as ``negative_prompt_embeds``.

    The call's ``max_sequence_length`` and ``text_encoder_out_layers`` (where ``encode_prompt`` takes them) are used,
    so the embeddings are those the pipeline would make of the same text; the pipeline repeats each row
    ``num_images_per_prompt`` times itself.
    """
    import torch

    parameters = inspect.signature(pipeline.encode_prompt).parameters
    options = {k: v for k, v in kwargs.items() if k in ("max_sequence_length", "text_encoder_out_layers")}
    options = {k: v for k, v in options.items() if k in parameters}
    with torch.no_grad():
        encoded = pipeline.encode_prompt(prompt=list(negatives), num_images_per_prompt=1, **options)
    return encoded[0] if isinstance(encoded, tuple) else encoded


def pipeline_default_negative(pipeline: Any) -> str | None:
    """The negative a pipeline fills in by itself when it is given none (Cosmos's ``DEFAULT_NEGATIVE_PROMPT``), read
    from the module that defines the pipeline's class; None for a pipeline without one."""
    module = sys.modules.get(type(_inner(pipeline)).__module__)
    value = getattr(module, "DEFAULT_NEGATIVE_PROMPT", None)
    return value if isinstance(value, str) and value.strip() else None


def check_default_negative(mode: str) -> str:
    """``default_negative``, checked.

    Raises:
        ValueError: It is not one of :data:`DEFAULT_NEGATIVE_MODES`.
    """
    if mode not in DEFAULT_NEGATIVE_MODES:
        raise ValueError(
            f"default_negative must be one of {', '.join(map(repr, DEFAULT_NEGATIVE_MODES))}, got {mode!r}: 'merge' "
            "keeps the pipeline's own default negative and adds the generated terms, 'replace' sends the generated "
            "negative instead, 'keep' sends the pipeline's default alone."
        )
    return mode
