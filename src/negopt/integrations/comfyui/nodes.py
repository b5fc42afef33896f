"""The nodes, in ComfyUI's V1 shape: plain classes that ComfyUI reads and calls.

ComfyUI reads ``INPUT_TYPES()`` (the inputs, their widgets and defaults), ``RETURN_TYPES`` / ``RETURN_NAMES``,
``FUNCTION`` (the method it calls with the inputs as keyword arguments, returning a tuple) and ``CATEGORY`` (the menu);
``DESCRIPTION``, ``OUTPUT_TOOLTIPS`` and each input's ``tooltip`` are shown in the UI, and ``IS_CHANGED`` tells it
when to run a node again although its inputs did not change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from negopt.integrations.comfyui.loading import BUILTIN, DEVICES, cache_key, load_generator

__all__ = [
    "CATEGORY",
    "GENERATOR_TYPE",
    "NegOptGeneratorLoader",
    "NegOptNegativePrompt",
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
]

CATEGORY = "negopt"
# The type of the link between the loader and the negative-prompt node. Any callable generator travels on it.
GENERATOR_TYPE = "NEGOPT_GENERATOR"
# ComfyUI's widest INT, the range of its sampler seeds.
MAX_SEED = 0xFFFFFFFFFFFFFFFF


def _combine_modes() -> tuple[str, ...]:
    from negopt.pipeline import COMBINE_MODES  # light: no torch, no diffusers

    return tuple(COMBINE_MODES)


class NegOptGeneratorLoader:
    """Load a negative-prompt generator: the built-in one, a local folder or a hub id (``NEGOPT_GENERATOR``)."""

    DESCRIPTION = (
        "Loads a negopt generator: 'builtin' (no weights, no download), a local folder, a folder under "
        "ComfyUI/models/negopt/, or a Hugging Face hub id. Safetensors weights only, no remote code. A generator is "
        "loaded once and reused while its inputs (and its folder's files) stay the same."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (GENERATOR_TYPE,)
    RETURN_NAMES = ("generator",)
    OUTPUT_TOOLTIPS = ("The generator, for the generator input of NegOpt Negative Prompt.",)
    FUNCTION = "load"
    SEARCH_ALIASES = ["negative prompt", "negopt"]

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, tuple]]:
        return {
            "required": {
                "model": (
                    "STRING",
                    {
                        "default": BUILTIN,
                        "tooltip": "'builtin', a folder (absolute, or a name under ComfyUI/models/negopt/), or a "
                        "hub id such as org/name.",
                    },
                ),
                "revision": (
                    "STRING",
                    {"default": "", "tooltip": "Hub branch, tag or commit of a hub id; empty for the default."},
                ),
                "device": (list(DEVICES), {"default": "cpu", "tooltip": "Where the generator's model runs."}),
                "local_files_only": (
                    "BOOLEAN",
                    {"default": False, "tooltip": "Never reach the hub: a folder or the hub cache only."},
                ),
            }
        }

    @classmethod
    def IS_CHANGED(cls, model: str, revision: str = "", device: str = "cpu", local_files_only: bool = False) -> str:
        """Changes when the folder's files do, so that ComfyUI runs the loader again after a new save."""
        try:
            return repr(cache_key(model, revision, device, local_files_only))
        except (TypeError, ValueError) as error:  # the node's run reports it
            return f"invalid: {error}"

    def load(
        self, model: str, revision: str = "", device: str = "cpu", local_files_only: bool = False
    ) -> tuple[Callable]:
        """Returns ``(generator,)``; see :func:`~negopt.integrations.comfyui.loading.load_generator`."""
        return (load_generator(model, revision, device, local_files_only),)


class NegOptNegativePrompt:
    """Write the negative prompt for a prompt, as ``negopt generate`` prints it (``STRING``)."""

    DESCRIPTION = (
        "Writes a negative prompt for the prompt, the same text `negopt generate` prints for it. Without a generator "
        "the built-in one is used. Your own negative prompt is combined with it: 'merge' keeps your terms first and "
        "adds the generated ones you do not have, 'user' uses yours alone, 'generated' ignores yours. Wire the output "
        "into the text of the negative CLIP Text Encode node."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("negative_prompt",)
    OUTPUT_TOOLTIPS = ("The negative prompt, for the text input of a CLIP Text Encode node.",)
    FUNCTION = "write"
    SEARCH_ALIASES = ["negative prompt", "negopt"]

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, tuple]]:
        modes = list(_combine_modes())
        return {
            "required": {
                "prompt": (
                    "STRING",
                    {"multiline": True, "default": "", "tooltip": "The positive prompt, as given to the sampler."},
                ),
                "seed": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": MAX_SEED,
                        "tooltip": "Seeds a generator that samples (a negopt_config.json with do_sample); greedy "
                        "generators and the built-in give the same text for every seed.",
                    },
                ),
            },
            "optional": {
                "generator": (GENERATOR_TYPE, {"tooltip": "From NegOpt Generator Loader; the built-in when unwired."}),
                "negative_prompt": (
                    "STRING",
                    {"multiline": True, "default": "", "tooltip": "Your own negative prompt (embeddings, weights)."},
                ),
                "combine": (
                    modes,
                    {
                        "default": "merge",
                        "tooltip": "merge: yours first, then the generated terms; user: yours "
                        "only; generated: the generated only.",
                    },
                ),
            },
        }

    def write(
        self,
        prompt: str,
        seed: int = 0,
        generator: Callable | None = None,
        negative_prompt: str = "",
        combine: str = "merge",
    ) -> tuple[str]:
        """Returns ``(negative prompt,)``.

        The generated part is what ``negopt generate PROMPT --seed SEED`` (with ``--model`` for a loaded generator)
        prints: a blank prompt gets a blank negative. ``combine`` is :class:`~negopt.NegOptPipeline`'s.

        Raises:
            TypeError: ``prompt`` or ``negative_prompt`` is not a str, ``seed`` not an int, ``generator`` not
                callable, or the generator returned something else than one str per prompt.
            ValueError: ``combine`` is not a mode, or ``seed`` is out of ComfyUI's range.
        """
        from negopt.text import merge_negatives

        for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {type(value).__name__}.")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed must be an int from 0 to {MAX_SEED}, got {seed!r}.")
        modes = _combine_modes()
        if combine not in modes:
            raise ValueError(f"combine must be one of {modes}, got {combine!r}.")
        if generator is not None and not callable(generator):
            raise TypeError(f"generator must be a negopt generator (callable), got {type(generator).__name__}.")
        if combine == "user":
            return (negative_prompt,)
        generated = _generate(generator if generator is not None else load_generator(BUILTIN), prompt.strip(), seed)
        if combine == "generated" or not negative_prompt.strip():
            return (generated,)
        return (merge_negatives(negative_prompt, generated),)


def _generate(generator: Callable, prompt: str, seed: int) -> str:
    """``negopt generate``'s call: a list of the non-blank prompts, the seed given; a blank prompt gets ``""``."""
    if not prompt:
        return ""
    out: Any = generator([prompt], seed=seed)
    if isinstance(out, str) or not isinstance(out, list) or len(out) != 1 or not isinstance(out[0], str):
        raise TypeError(f"the generator returned {out!r:.200} for one prompt; expected a list of one str.")
    return out[0]


NODE_CLASS_MAPPINGS = {
    "NegOptGeneratorLoader": NegOptGeneratorLoader,
    "NegOptNegativePrompt": NegOptNegativePrompt,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "NegOptGeneratorLoader": "NegOpt Generator Loader",
    "NegOptNegativePrompt": "NegOpt Negative Prompt",
}
