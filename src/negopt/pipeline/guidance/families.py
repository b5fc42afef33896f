"""Which diffusers pipelines NAG supports, their default knobs (and where each comes from), and the attention
processors a NAG call installs on their denoisers.

A family is read from the denoiser the pipeline holds, so every pipeline class of a model family is covered
(text-to-image, img2img, inpaint, Flux Kontext, the Turbo / Lightning / LCM / Hyper variants, which are the same
models with other weights or schedulers):

======== ============================================= ===========================================================
family   denoiser                                      where NAG acts
======== ============================================= ===========================================================
``sd``   ``UNet2DConditionModel`` (SD 1.x/2.x)         cross-attention (``attn2``)
``sdxl`` ``UNet2DConditionModel`` (SDXL)               cross-attention (``attn2``)
``flux`` ``FluxTransformer2DModel`` (Flux, Kontext)    joint attention, double- and single-stream blocks
``sd3``  ``SD3Transformer2DModel`` (SD3, SD3.5)        joint attention
``wan``  ``WanTransformer3DModel`` (Wan 2.x T2V)       text cross-attention (``attn2``), also ``transformer_2``
======== ============================================= ===========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from negopt.pipeline.guidance.nag import NAGState

__all__ = ["NAGDefaults", "NAG_DEFAULTS", "NAG_FAMILIES", "SUPPORTED", "nag_family", "check_nag_family", "plan"]


@dataclass(frozen=True)
class NAGDefaults:
    """A family's default knobs, each taken from the paper's reference code or its authors' ComfyUI workflows.

    Attributes:
        nag_scale: ``s``.
        nag_tau: ``tau``.
        nag_alpha: ``alpha``.
        nag_end: The fraction of the steps guided.
        source: Where the values come from.
    """

    nag_scale: float
    nag_tau: float
    nag_alpha: float
    nag_end: float
    source: str


_REF = "ChenDarYen/Normalized-Attention-Guidance"
_COMFY = "ChenDarYen/ComfyUI-NAG"

#: Default knobs per family, for calls with classifier-free guidance off. ``nag_end=1.0`` (every step) is the
#: default of every reference pipeline that has the knob (Flux, SDXL); the SD3 and Wan reference pipelines guide
#: every step too. The authors' ComfyUI workflows stop earlier (SD 1.5 and SDXL-DMD2 at sigma 4, Wan at sigma
#: 0.75), a noise level rather than a fraction of the steps; lower ``nag_end`` to do the same.
NAG_DEFAULTS: dict[str, NAGDefaults] = {
    "sd": NAGDefaults(5.0, 2.5, 0.38, 1.0, f"{_COMFY} workflows/NAG-SD15-ComfyUI-Workflow.json (SD 1.5)"),
    "sdxl": NAGDefaults(
        3.0, 2.5, 0.5, 1.0, f"{_REF} README (SDXL-DMD2, 4 steps, guidance 0: nag_scale=3); src/pipeline_sdxl_nag.py"
    ),
    "flux": NAGDefaults(
        5.0, 2.5, 0.25, 1.0, f"{_REF} README (Flux.1-schnell, 4 steps: nag_scale=5); src/pipeline_flux_nag.py"
    ),
    "sd3": NAGDefaults(
        5.0, 2.5, 0.125, 1.0, f"{_REF} README (SD3.5-large-turbo, 8 steps, cfg 0: scale 5); src/pipeline_sd3_nag.py"
    ),
    "wan": NAGDefaults(
        11.0, 3.5, 0.5, 1.0, f"{_COMFY} workflows/NAG-Wan-Fast-ComfyUI-Workflow.json (Wan 2.1 CausVid, 4 steps, cfg 1)"
    ),
}

#: The families NAG supports.
NAG_FAMILIES: tuple[str, ...] = tuple(NAG_DEFAULTS)

#: The supported families in words, for error messages.
SUPPORTED = (
    "Stable Diffusion 1.x/2.x and SDXL (UNet cross-attention, Turbo / Lightning / LCM / Hyper variants included), "
    "Flux and Flux Kontext, SD3 / SD3.5 (MMDiT joint attention), and Wan 2.x text-to-video"
)

# family -> (denoiser attributes, the replaced processor's class name, module test, NAG processor's class name)
_DENOISERS = {"sd": ("unet",), "sdxl": ("unet",), "flux": ("transformer",), "sd3": ("transformer",)}
_DENOISERS["wan"] = ("transformer", "transformer_2")
_ORIGINAL = {
    "sd": "AttnProcessor2_0",
    "sdxl": "AttnProcessor2_0",
    "flux": "FluxAttnProcessor",
    "sd3": "JointAttnProcessor2_0",
    "wan": "WanAttnProcessor",
}


def nag_family(pipeline: Any) -> str | None:
    """The NAG family of a diffusers pipeline (see the module's table), or None when NAG does not support it."""
    if not callable(getattr(pipeline, "encode_prompt", None)):
        return None
    unet = getattr(pipeline, "unet", None)
    transformer = getattr(pipeline, "transformer", None)
    if transformer is None:
        transformer = getattr(pipeline, "transformer_2", None)
    if unet is not None and type(unet).__name__ == "UNet2DConditionModel" and transformer is None:
        if getattr(pipeline, "text_encoder_2", None) is not None or "XL" in type(pipeline).__name__:
            return "sdxl"
        return "sd"
    if unet is None and transformer is not None:
        return {
            "FluxTransformer2DModel": "flux",
            "SD3Transformer2DModel": "sd3",
            "WanTransformer3DModel": "wan",
        }.get(type(transformer).__name__)
    return None


def check_nag_family(pipeline: Any) -> str:
    """:func:`nag_family`, or a ValueError naming the supported families.

    Raises:
        ValueError: NAG does not support the pipeline (or one of its parts: a ControlNet).
    """
    family = nag_family(pipeline)
    name = type(pipeline).__name__
    if family is None:
        raise ValueError(
            f"negative_guidance='nag' does not support {name}: NAG supports {SUPPORTED}. Pass "
            "negative_guidance='cfg' (or 'auto', which uses classifier-free guidance where the call has it on)."
        )
    if getattr(pipeline, "controlnet", None) is not None:
        raise ValueError(
            f"negative_guidance='nag' does not support {name}: its ControlNet reads the text too, and NAG's "
            "processors are installed on the denoiser only. Pass negative_guidance='cfg' (with guidance_scale > 1)."
        )
    return family


def _denoisers(pipeline: Any, family: str) -> list[Any]:
    return [d for d in (getattr(pipeline, name, None) for name in _DENOISERS[family]) if d is not None]


def _reads_text(module: Any, family: str) -> bool:
    """Whether a NAG processor replaces the processor of this attention module."""
    if family == "flux":
        return True  # every block's attention sees the text: the double-stream blocks beside, the single inside
    if family == "sd3":
        return getattr(module, "added_kv_proj_dim", None) is not None
    return bool(getattr(module, "is_cross_attention", False))


def plan(pipeline: Any, family: str, state: NAGState) -> list[tuple[Any, dict[str, Any], dict[str, Any]]]:
    """The processors a NAG call installs: ``(denoiser, its processors now, the call's processors)`` per denoiser.

    Every attention module that reads the text gets a NAG processor sharing ``state``; the others keep theirs.

    Raises:
        ValueError: A module that reads the text has a processor other than diffusers' default for the family (an
            IP-Adapter's, a fused or a custom one), whose work NAG would silently drop; or a Wan transformer with
            image cross-attention (Wan 2.1 image-to-video).
    """
    from negopt.pipeline.guidance import processors

    nag_class = {
        "sd": processors.NAGCrossAttnProcessor,
        "sdxl": processors.NAGCrossAttnProcessor,
        "flux": processors.NAGFluxAttnProcessor,
        "sd3": processors.NAGJointAttnProcessor,
        "wan": processors.NAGWanAttnProcessor,
    }[family]
    out = []
    for denoiser in _denoisers(pipeline, family):
        current = dict(denoiser.attn_processors)
        new = dict(current)
        for name, module in denoiser.named_modules():
            key = f"{name}.processor"
            if key not in current or not _reads_text(module, family):
                continue
            original = current[key]
            if type(original).__name__ != _ORIGINAL[family]:
                raise ValueError(
                    f"negative_guidance='nag' replaces the attention processors of {type(denoiser).__name__}'s "
                    f"text attention, but {key} runs {type(original).__name__} (an IP-Adapter's, a fused or a custom "
                    f"processor; NAG works from diffusers' {_ORIGINAL[family]}). Its work would be lost, so NAG "
                    "stops here: remove it (pipe.unload_ip_adapter(), unfuse_qkv_projections(), "
                    "set_default_attn_processor()), or pass negative_guidance='cfg'."
                )
            if family == "wan" and getattr(module, "add_k_proj", None) is not None:
                raise ValueError(
                    "negative_guidance='nag' supports Wan's text-to-video transformers; this one also attends to an "
                    "image (Wan 2.1 image-to-video), which NAG does not cover yet. Pass negative_guidance='cfg'."
                )
            new[key] = nag_class(state, original)
        out.append((denoiser, current, new))
    return out
