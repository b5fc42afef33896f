"""Which guidance a call's negative prompt acts through: ``"auto"``, ``"cfg"`` or ``"nag"``, and the NAG knobs.

- ``"cfg"``: classifier-free guidance, as diffusers runs it; where the call turns it off the negative has no effect
  (the wrapper warns).
- ``"nag"``: Normalized Attention Guidance, for calls with classifier-free guidance off; an error for a pipeline NAG
  does not support, or a call that has classifier-free guidance on.
- ``"auto"`` (the default): classifier-free guidance wherever the call has it on (the images are the bare
  pipeline's, bit for bit), NAG where it is off and the pipeline is supported, else as ``"cfg"``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

from negopt.pipeline.guidance.families import NAG_DEFAULTS, check_nag_family, nag_family

__all__ = [
    "NEGATIVE_GUIDANCES",
    "NAG_KNOBS",
    "check_negative_guidance",
    "check_nag_knobs",
    "cfg_is_on",
    "resolve_guidance",
    "nag_settings",
]

#: The values of ``negative_guidance``.
NEGATIVE_GUIDANCES: tuple[str, ...] = ("auto", "cfg", "nag")

#: The per-call NAG knobs.
NAG_KNOBS: tuple[str, ...] = ("nag_scale", "nag_tau", "nag_alpha", "nag_end")

# knob -> (lowest, highest, lowest allowed, what it means)
_RANGES = {
    "nag_scale": (1.0, math.inf, True, "a number >= 1 (1 leaves the images unchanged; the reference uses 3 to 11)"),
    "nag_tau": (1.0, math.inf, True, "a number >= 1 (the reference uses 2.5 to 3.5)"),
    "nag_alpha": (0.0, 1.0, True, "a number in [0, 1] (the reference uses 0.125 to 0.5)"),
    "nag_end": (0.0, 1.0, False, "a fraction of the steps in (0, 1] (1: every step)"),
}


def check_negative_guidance(negative_guidance: str) -> str:
    """``negative_guidance`` itself, or a ValueError naming :data:`NEGATIVE_GUIDANCES`."""
    if negative_guidance not in NEGATIVE_GUIDANCES:
        raise ValueError(
            f"`negative_guidance` must be one of {NEGATIVE_GUIDANCES}, got {negative_guidance!r}: 'auto' uses "
            "classifier-free guidance where the call has it on and NAG where it is off, 'cfg' only classifier-free "
            "guidance, 'nag' only NAG."
        )
    return negative_guidance


def check_nag_knobs(**knobs: float | None) -> dict[str, float]:
    """The NAG knobs that were given (None is "the family's default"), checked, as floats.

    Raises:
        ValueError: An unknown knob, or a value out of its range (the message names the knob, the value, the range).
    """
    out = {}
    for name, value in knobs.items():
        if name not in _RANGES:
            raise ValueError(f"unknown NAG knob {name!r}; the knobs are {NAG_KNOBS}.")
        if value is None:
            continue
        low, high, closed, meaning = _RANGES[name]
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if number is None or math.isnan(number) or not (low <= number if closed else low < number) or number > high:
            raise ValueError(f"`{name}` must be {meaning}, got {value!r}.")
        out[name] = float(number)
    return out


def _default(pipeline: Any, name: str) -> Any:
    param = inspect.signature(pipeline.__call__).parameters.get(name)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def cfg_is_on(pipeline: Any, kwargs: Mapping[str, Any]) -> bool:
    """Whether a call of ``pipeline`` with ``kwargs`` runs classifier-free guidance, as diffusers decides it.

    Flux-style pipelines (a ``true_cfg_scale`` parameter) run it when ``true_cfg_scale > 1`` (their
    ``guidance_scale`` is a distilled input); the others when ``guidance_scale > 1``, except a UNet that embeds the
    guidance scale (LCM's ``time_cond_proj_dim``), which never does. A pipeline with neither parameter is taken to
    use its negative.
    """
    parameters = inspect.signature(pipeline.__call__).parameters
    if "true_cfg_scale" in parameters or "true_cfg_scale" in kwargs:
        scale = kwargs.get("true_cfg_scale", _default(pipeline, "true_cfg_scale"))
        return scale is None or scale > 1
    if "guidance_scale" in parameters or "guidance_scale" in kwargs:
        scale = kwargs.get("guidance_scale", _default(pipeline, "guidance_scale"))
        if scale is not None and scale <= 1:
            return False
        config = getattr(getattr(pipeline, "unet", None), "config", None)
        return getattr(config, "time_cond_proj_dim", None) is None
    return True


def resolve_guidance(
    negative_guidance: str, pipeline: Any, kwargs: Mapping[str, Any], has_negative: bool
) -> str | None:
    """How a call's negative prompt acts: ``"cfg"``, ``"nag"``, or None (it has no effect, or there is none).

    Args:
        negative_guidance: One of :data:`NEGATIVE_GUIDANCES`.
        pipeline: The diffusers pipeline called.
        kwargs: The call's arguments.
        has_negative: Whether the call sends a negative prompt (text or embeddings).

    Raises:
        ValueError: ``"nag"`` for a pipeline NAG does not support, or a call with classifier-free guidance on.
    """
    cfg = cfg_is_on(pipeline, kwargs)
    if negative_guidance == "nag":
        check_nag_family(pipeline)
        if cfg and has_negative:
            raise ValueError(
                f"negative_guidance='nag' is for calls with classifier-free guidance off, but this call of "
                f"{type(pipeline).__name__} has it on ({_scale_text(pipeline, kwargs)}), so its negative already "
                "acts through it. Turn it off (guidance_scale=0 or 1; for Flux, true_cfg_scale=1) to use NAG "
                "instead, or pass negative_guidance='auto' or 'cfg'."
            )
    if not has_negative:
        return "cfg" if cfg else None
    if cfg:
        return "cfg"
    if negative_guidance == "cfg":
        return None
    if negative_guidance == "nag":
        return "nag"
    if nag_family(pipeline) is None or getattr(pipeline, "controlnet", None) is not None:
        return None
    return "nag"


def _scale_text(pipeline: Any, kwargs: Mapping[str, Any]) -> str:
    for name in ("true_cfg_scale", "guidance_scale"):
        if name in inspect.signature(pipeline.__call__).parameters or name in kwargs:
            return f"{name}={kwargs.get(name, _default(pipeline, name))}"
    return "no guidance_scale parameter"


def nag_settings(family: str, knobs: Mapping[str, float]) -> dict[str, float]:
    """The family's :data:`~negopt.pipeline.guidance.families.NAG_DEFAULTS`, updated with the knobs given."""
    defaults = NAG_DEFAULTS[family]
    out = {name: getattr(defaults, name) for name in NAG_KNOBS}
    out.update(knobs)
    return out
