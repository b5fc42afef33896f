"""``NegOptPipeline``: a negative prompt for every call of any diffusers pipeline.

``core`` holds the wrapper (it reads top to bottom: helpers, the class, its checks, ``__call__``); ``checks`` the
argument checks and messages it shares; ``output`` the output type; ``weighting`` prompt weighting (A1111 and compel
syntax, long prompts, textual inversions); ``token_budget`` fitting negatives into the text encoders' token limits;
``guidance`` how the negative acts (classifier-free guidance, or Normalized Attention Guidance where it is off).
Importing it does not import torch or diffusers.
"""

from negopt.pipeline.core import COMBINE_MODES, NEGATIVE_SLOTS, PROMPT_WEIGHTINGS, NegOptPipeline, negative_slots
from negopt.pipeline.guidance import NAG_KNOBS, NEGATIVE_GUIDANCES
from negopt.pipeline.output import NegOptPipelineOutput

__all__ = [
    "NegOptPipeline",
    "NegOptPipelineOutput",
    "NEGATIVE_SLOTS",
    "COMBINE_MODES",
    "PROMPT_WEIGHTINGS",
    "NEGATIVE_GUIDANCES",
    "NAG_KNOBS",
    "negative_slots",
]
