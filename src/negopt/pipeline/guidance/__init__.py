"""Negative guidance: how a call's negative prompt acts, through classifier-free guidance (CFG) or, where CFG is off,
through Normalized Attention Guidance (NAG) inside the denoiser's attention.

``nag`` holds the maths (:func:`nag_combine`) and the state a call's processors share; ``processors`` the attention
processors per kind of attention; ``families`` the supported pipelines, their default knobs and sources, and which
processors a call installs; ``modes`` the ``"auto"`` / ``"cfg"`` / ``"nag"`` decision and the knobs' checks;
``call`` the call itself (:func:`guided_call`), which installs the processors for the call only.
"""

from negopt.pipeline.guidance.call import guided_call, has_negative, nag_call_kwargs
from negopt.pipeline.guidance.families import NAG_DEFAULTS, NAG_FAMILIES, NAGDefaults, nag_family
from negopt.pipeline.guidance.modes import NAG_KNOBS, NEGATIVE_GUIDANCES, cfg_is_on, check_negative_guidance
from negopt.pipeline.guidance.nag import NAGState, nag_combine

__all__ = [
    "NEGATIVE_GUIDANCES",
    "NAG_KNOBS",
    "NAG_DEFAULTS",
    "NAG_FAMILIES",
    "NAGDefaults",
    "NAGState",
    "nag_combine",
    "nag_family",
    "cfg_is_on",
    "check_negative_guidance",
    "guided_call",
    "has_negative",
    "nag_call_kwargs",
]
