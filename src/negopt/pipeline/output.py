"""``NegOptPipelineOutput``: what a :class:`~negopt.NegOptPipeline` call returns."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["NegOptPipelineOutput"]


@runtime_checkable
class NegOptPipelineOutput(Protocol):
    """What a :class:`NegOptPipeline` call returns with ``return_dict=True``.

    It is the wrapped pipeline's own output object (``StableDiffusionPipelineOutput``, ``FluxPipelineOutput``, ...),
    unchanged, with these attributes added; ``isinstance(output, NegOptPipelineOutput)`` is true for it. They are
    not keys of the output, so ``output.to_tuple()`` and ``output[0]`` are what diffusers gives.

    Attributes:
        negative_prompts: The negative prompt of each prompt (a list, one per prompt, also for a str ``prompt``),
            exactly as sent (in the ``negative_prompt`` slot; the other slots got the same text unless the call passed
            its own ``negative_prompt_2`` / ``_3``), or None when the call sent none (``combine="user"`` without a
            negative, or ``negative_prompt_embeds`` given). With ``prompt_weighting`` set it is the text that was
            encoded.
        negative_prompt: The same in the form the call gave the ``negative_prompt`` slot: a str for a str ``prompt``,
            else the list. Calling the bare pipeline with the same ``prompt``, ``negative_prompt=out.negative_prompt``
            and the same seed gives the same images (with ``prompt_weighting=None``); SD 1.x refuses a list negative
            for a str prompt, so pass this one rather than ``negative_prompts``.
        prompt_weighting: How the prompt and negative were encoded: None (sent as text), ``"a1111"`` or
            ``"compel"``.
        negative_guidance: How the negative acted: ``"cfg"`` (classifier-free guidance), ``"nag"`` (Normalized
            Attention Guidance, the call having classifier-free guidance off), or None (it had no effect: guidance
            off and NAG not used, or no negative).
    """

    negative_prompts: list[str] | None
    negative_prompt: str | list[str] | None
    prompt_weighting: str | None
    negative_guidance: str | None
