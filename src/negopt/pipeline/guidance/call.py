"""Run one pipeline call with its negative acting through the guidance it resolves to.

:func:`guided_call` is the one place a call is made with NAG: :class:`~negopt.NegOptPipeline` uses it, and so do
``negopt eval`` and ``negopt train rl`` (through :func:`negopt.eval.rendering.render`). For NAG it

1. encodes the prompt and the negative as the pipeline's own ``encode_prompt`` does (or takes the embeddings the
   call carries: prompt weighting, a user's ``prompt_embeds`` / ``negative_prompt_embeds``), and sends the pipeline
   one ``prompt_embeds`` with the prompt's tokens followed by the negative's; the pipeline repeats it per image
   (``num_images_per_prompt``) and handles the batch as usual;
2. installs the NAG processors on the denoiser(s) for the call only, and puts the previous processors back
   whatever happens (an exception, Ctrl-C);
3. with ``nag_end < 1``, chains a step-end callback (before the user's own ``callback_on_step_end``, which still
   runs and whose tensor inputs are kept) that stops the guidance after that fraction of the steps.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from typing import Any

from negopt.pipeline.checks import guidance_off_message
from negopt.pipeline.guidance.families import check_nag_family, plan
from negopt.pipeline.guidance.modes import (
    check_nag_knobs,
    check_negative_guidance,
    nag_settings,
    resolve_guidance,
)
from negopt.pipeline.guidance.nag import NAGState

__all__ = ["guided_call", "nag_call_kwargs", "has_negative"]

_PROMPTS = ("prompt", "prompt_2", "prompt_3")
_NEGATIVES = ("negative_prompt", "negative_prompt_2", "negative_prompt_3")
_NEGATIVE_EMBEDS = ("negative_prompt_embeds", "negative_pooled_prompt_embeds", "negative_prompt_attention_mask")
# Where encode_prompt returns the pooled embedding, per family (None: the family has none).
_POOLED_AT = {"sd": None, "sdxl": 2, "flux": 1, "sd3": 2, "wan": None}
# Where a call passes the LoRA scale to the text encoders, per family.
_LORA_KWARGS = {"sd": "cross_attention_kwargs", "sdxl": "cross_attention_kwargs"}


def has_negative(kwargs: Mapping[str, Any]) -> bool:
    """Whether a call's arguments send a negative prompt (text in a slot, or ``negative_prompt_embeds``)."""
    return any(kwargs.get(k) is not None for k in (*_NEGATIVES, "negative_prompt_embeds"))


def guided_call(
    pipeline: Any,
    kwargs: dict[str, Any],
    negative_guidance: str = "auto",
    negative: bool | None = None,
    warn_unused: bool = False,
    *,
    stacklevel: int = 2,
    **knobs: float | None,
) -> tuple[Any, str | None]:
    """Call ``pipeline(**kwargs)`` with the negative acting through the guidance ``negative_guidance`` resolves to.

    Args:
        pipeline: A diffusers pipeline.
        kwargs: The call's arguments, negatives included (text or embeddings).
        negative_guidance: ``"auto"``, ``"cfg"`` or ``"nag"`` (see :mod:`negopt.pipeline.guidance.modes`).
        negative: Whether the call sends a negative; None reads it from ``kwargs`` (:func:`has_negative`).
        warn_unused: Warn (before the images) when the negative will have no effect: guidance off and no NAG
            (:func:`negopt.pipeline.checks.guidance_off_message`).
        stacklevel: Where the warnings point, counted from the caller.
        **knobs: ``nag_scale``, ``nag_tau``, ``nag_alpha``, ``nag_end``; None (or absent) for the family's default
            (:data:`~negopt.pipeline.guidance.families.NAG_DEFAULTS`).

    Returns:
        ``(the pipeline's output, the guidance used: "cfg", "nag" or None)``.

    Raises:
        ValueError: An unknown ``negative_guidance`` or knob, a knob out of range, ``"nag"`` for a pipeline or call
            it cannot guide (see :func:`~negopt.pipeline.guidance.modes.resolve_guidance`), or a denoiser whose
            attention processors NAG would replace is running someone else's (an IP-Adapter's, a custom one).
    """
    negative_guidance = check_negative_guidance(negative_guidance)
    given = check_nag_knobs(**knobs)
    negative = has_negative(kwargs) if negative is None else negative
    used = resolve_guidance(negative_guidance, pipeline, kwargs, negative)
    if used is None and warn_unused:
        parameters = inspect.signature(pipeline.__call__).parameters
        defaults = [
            None if k not in parameters or parameters[k].default is inspect.Parameter.empty else parameters[k].default
            for k in ("guidance_scale", "true_cfg_scale")
        ]
        message = guidance_off_message(pipeline, kwargs, *defaults)
        if message:
            warnings.warn(message, stacklevel=stacklevel + 1)
    if used != "nag":
        if given:
            warnings.warn(
                f"{', '.join(sorted(given))} given, but this call's negative acts through "
                f"{'classifier-free guidance' if used == 'cfg' else 'nothing (no negative, or guidance off)'}, not "
                f"NAG (negative_guidance={negative_guidance!r}), so {'it is' if len(given) == 1 else 'they are'} "
                "not used.",
                stacklevel=stacklevel + 1,
            )
        return pipeline(**kwargs), used

    family = check_nag_family(pipeline)
    settings = nag_settings(family, given)
    call_kwargs, positive_length, negative_length = nag_call_kwargs(pipeline, family, kwargs)
    state = NAGState(
        scale=settings["nag_scale"],
        tau=settings["nag_tau"],
        alpha=settings["nag_alpha"],
        positive_length=positive_length,
        negative_length=negative_length,
    )
    if settings["nag_end"] < 1:
        _chain_callback(pipeline, call_kwargs, state, settings["nag_end"])
    installed = []
    try:
        for denoiser, current, new in plan(pipeline, family, state):
            installed.append((denoiser, current))
            denoiser.set_attn_processor(dict(new))
        output = pipeline(**call_kwargs)
    finally:
        for denoiser, current in installed:
            denoiser.set_attn_processor(dict(current))
    return output, "nag"


def nag_call_kwargs(pipeline: Any, family: str, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], int, int]:
    """A call's arguments as NAG sends them: one ``prompt_embeds`` holding the prompt's text tokens, then the
    negative's, and the prompt's pooled embedding; no negative argument and no prompt text.

    Embeddings the call carries are used as they are (``prompt_embeds`` and ``pooled_prompt_embeds``;
    ``negative_prompt_embeds``); text is encoded with the pipeline's own ``encode_prompt``, with the call's
    ``clip_skip``, ``max_sequence_length`` and LoRA scale, as the pipeline would encode it.

    Returns:
        ``(arguments, prompt tokens, negative tokens)``.

    Raises:
        ValueError: The prompt's and the negative's embeddings have different batch sizes or widths.
    """
    import torch

    positive = kwargs.get("prompt_embeds")
    pooled = kwargs.get("pooled_prompt_embeds")
    if positive is None:
        positive, pooled = _encode(pipeline, family, [kwargs.get(k) for k in _PROMPTS], kwargs)
    negative = kwargs.get("negative_prompt_embeds")
    if negative is None:
        negative, _ = _encode(pipeline, family, [kwargs.get(k) for k in _NEGATIVES], kwargs)
    negative = negative.to(device=positive.device, dtype=positive.dtype)
    if negative.shape[0] == 1 and positive.shape[0] > 1:
        negative = negative.expand(positive.shape[0], -1, -1)
    if negative.shape[0] != positive.shape[0] or negative.shape[2:] != positive.shape[2:]:
        raise ValueError(
            f"NAG needs one negative per prompt, encoded like the prompt: the prompt's embeddings are "
            f"{tuple(positive.shape)} and the negative's {tuple(negative.shape)}. Pass negative_prompt_embeds made "
            "by the same encoder, one row per prompt."
        )
    out = {k: v for k, v in kwargs.items() if k not in (*_PROMPTS, *_NEGATIVES, *_NEGATIVE_EMBEDS)}
    out["prompt_embeds"] = torch.cat([positive, negative], dim=1)
    if pooled is not None:
        out["pooled_prompt_embeds"] = pooled
    return out, positive.shape[1], negative.shape[1]


def _encode(pipeline: Any, family: str, texts: list[Any], kwargs: Mapping[str, Any]) -> tuple[Any, Any]:
    """``(embeddings, pooled or None)`` of ``texts`` (one per text slot of the family) by the pipeline's
    ``encode_prompt``, for one image per text, without classifier-free guidance."""
    import torch

    parameters = inspect.signature(pipeline.encode_prompt).parameters
    call_parameters = inspect.signature(pipeline.__call__).parameters
    args: dict[str, Any] = {"prompt": texts[0]}
    for name, text in zip(_PROMPTS[1:], texts[1:]):
        if name in parameters:
            args[name] = text
    device = getattr(pipeline, "_execution_device", None)
    for name, value in (
        ("device", device),
        ("num_images_per_prompt", 1),
        ("num_videos_per_prompt", 1),
        ("do_classifier_free_guidance", False),
    ):
        if name in parameters:
            args[name] = value
    for name in ("clip_skip", "max_sequence_length"):
        if name in parameters and name in call_parameters:
            default = call_parameters[name].default
            value = kwargs.get(name, None if default is inspect.Parameter.empty else default)
            if value is not None:
                args[name] = value
    if "lora_scale" in parameters:
        attention_kwargs = kwargs.get(_LORA_KWARGS.get(family, "joint_attention_kwargs")) or {}
        args["lora_scale"] = attention_kwargs.get("scale")
    with torch.no_grad():
        result = pipeline.encode_prompt(**args)
    at = _POOLED_AT[family]
    return result[0], (None if at is None else result[at])


def _chain_callback(pipeline: Any, kwargs: dict[str, Any], state: NAGState, nag_end: float) -> None:
    """Make the call's step-end callback stop the guidance after ``nag_end`` of the steps, then run the user's."""
    if "callback_on_step_end" not in inspect.signature(pipeline.__call__).parameters:
        raise ValueError(
            f"nag_end < 1 needs a step-end callback, and {type(pipeline).__name__}.__call__ takes no "
            "callback_on_step_end; pass nag_end=1."
        )
    user = kwargs.get("callback_on_step_end")
    if _is_pipeline_callback(user):
        # The pipeline reads a PipelineCallback's tensor inputs itself; a plain function in its place must pass them.
        kwargs["callback_on_step_end_tensor_inputs"] = list(user.tensor_inputs)

    def step_end(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        state.active = (step + 1) < nag_end * pipe.num_timesteps
        return {} if user is None else user(pipe, step, timestep, callback_kwargs)

    kwargs["callback_on_step_end"] = step_end


def _is_pipeline_callback(callback: Any) -> bool:
    try:
        from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
    except ImportError:  # pragma: no cover - every supported diffusers has them
        return False
    return isinstance(callback, (PipelineCallback, MultiPipelineCallbacks))
