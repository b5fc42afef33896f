"""What each diffusers pipeline family does with a negative prompt, and what the wrapper does about it.

Each family treats the negative its own way (diffusers 0.42): some use it through classifier-free guidance when
``guidance_scale > 1``, Flux-style ones only through true CFG (``true_cfg_scale > 1``), Qwen-Image turns CFG on as
soon as a negative is given, Cosmos fills a long fixed negative of its own when none is given, and Flux.2 takes none
at all. :data:`FAMILIES` writes that down once; the wrapper reads it to warn at construction, to refuse clearly, to
know that it writes for video, and to decide what happens to a pipeline's own default negative. The table in the
pipeline guide is this list.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Family",
    "FAMILIES",
    "DEFAULT_NEGATIVE_MODES",
    "check_default_negative",
    "family_of",
    "is_video_pipeline",
    "pipeline_default_negative",
    "refusal_message",
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
        refusal: Why the wrapper refuses such a pipeline, with what to do instead; None when it wraps it.
    """

    name: str
    classes: tuple[str, ...]
    slots: str
    acts: str
    cost: str
    video: bool = False
    note: str | None = None
    refusal: str | None = None


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
        "Klein base model through its negative_prompt_embeds).",
    ),
    Family(
        "Flux.2 Klein",
        ("Flux2KleinPipeline",),
        "none (it takes `negative_prompt_embeds` only)",
        "base models: `guidance_scale > 1`; distilled models: never",
        "CFG runs the transformer twice a step",
        refusal="Flux2KleinPipeline takes no negative prompt text, only negative_prompt_embeds (and a distilled Klein "
        "ignores even those). For a Klein base model, encode the negative yourself and pass it: "
        "embeds, _ = pipe.encode_prompt(negative); pipe(prompt, negative_prompt_embeds=embeds, guidance_scale=4.0).",
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
    """Why the wrapper cannot fill this pipeline's negative, for a family known to take none; else None."""
    family = family_of(pipeline)
    return None if family is None else family.refusal


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
