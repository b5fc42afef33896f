"""What :class:`~negopt.NegOptPipeline` checks of the arguments it is built and called with.

The shape of the text arguments (a str, or one entry per prompt), the ``combine`` mode, the negative-prompt generator
and what it returns, and the two ways a negative prompt can be sent and still do nothing: classifier-free guidance
turned off, or a textual-inversion embedding named but not loaded. Errors are raised here; the warnings are returned
as messages, for the wrapper to issue where they point at the user's call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from negopt.text import KNOWN_NEGATIVE_EMBEDDINGS, split_terms, term_key

__all__ = [
    "COMBINE_MODES",
    "as_text_list",
    "check_combine",
    "check_generated",
    "guidance_off_message",
    "load_negative_prompt_generator",
    "per_prompt",
    "unloaded_embeddings_message",
]

#: How a negative prompt the user passes is combined with the generated one.
COMBINE_MODES: tuple[str, ...] = ("merge", "user", "generated")

_KNOWN_EMBEDDING_KEYS = frozenset(term_key(t) for t in KNOWN_NEGATIVE_EMBEDDINGS)


def check_combine(combine: str) -> str:
    """``combine`` itself, or a ValueError naming :data:`COMBINE_MODES`."""
    if combine not in COMBINE_MODES:
        raise ValueError(f"`combine` must be one of {COMBINE_MODES}, got {combine!r}.")
    return combine


def as_text_list(value: Any, name: str) -> list[str]:
    """A str or a sequence of str as a list (a str is one entry); a TypeError naming ``name`` for anything else."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError(f"`{name}` must be a str or a list of str, got {type(value).__name__}: {value!r:.200}.")


def per_prompt(value: Any, batch: int, name: str) -> list[str] | None:
    """One text per prompt: a str is repeated; a list must have one entry per prompt; None stays None.

    Args:
        value: The argument's value (``negative_prompt``, ``prompt_2``, ...).
        batch: The number of prompts of the call.
        name: The argument's name, for the error message.

    Raises:
        TypeError: ``value`` is not a str or a list of str.
        ValueError: ``value`` is a list of another length than ``batch``.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return [value] * batch
    texts = as_text_list(value, name)
    if len(texts) != batch:
        raise ValueError(
            f"`{name}` has {len(texts)} entries but there are {batch} prompts: pass one {name} per prompt (not per "
            "image; num_images_per_prompt repeats it), or one str for all of them."
        )
    return texts


def load_negative_prompt_generator(
    negative_prompt_generator: Callable[[list[str]], list[str]] | str | os.PathLike | None,
    kind: str = "image",
) -> Callable[[list[str]], list[str]]:
    """The generator that ``NegOptPipeline(pipe, negative_prompt_generator)`` uses.

    None gives the built-in generator, writing for ``kind`` (``"image"`` or ``"video"``: the wrapped pipeline's);
    a str or path (a folder or hub id) is loaded with
    :meth:`NegOptGenerator.from_pretrained <negopt.NegOptGenerator.from_pretrained>`; a callable is used as is.

    Raises:
        TypeError: A str that is neither a folder nor a hub id (a negative prompt passed in the generator's place,
            say), or something that is not callable.
    """
    if negative_prompt_generator is None:
        # Imported here: the built-in generator is an optional convenience, not a dependency of the wrapper.
        from negopt.builtin import BuiltinGenerator

        return BuiltinGenerator(kind=kind)
    if isinstance(negative_prompt_generator, (str, os.PathLike)):
        from negopt.generator.core import NegOptGenerator
        from negopt.hub import is_folder_or_hub_id

        name = os.fspath(negative_prompt_generator)
        if not is_folder_or_hub_id(name):
            raise TypeError(
                f"`negative_prompt_generator` is the str {name!r}, which is neither a generator folder nor a hub "
                "id. To send a fixed negative prompt, pass it when calling: pipe(prompt, negative_prompt=...); to "
                "use a learned generator, pass its folder or hub id, or a NegOptGenerator."
            )
        return NegOptGenerator.from_pretrained(name)
    if not callable(negative_prompt_generator):
        raise TypeError(
            "`negative_prompt_generator` must be callable (a NegOptGenerator, a BuiltinGenerator or a function "
            f"list[str] -> list[str]), got {type(negative_prompt_generator).__name__}: "
            f"{negative_prompt_generator!r:.200}."
        )
    return negative_prompt_generator


def check_generated(generated: Any, prompts: list[str], generator: Any) -> list[str]:
    """What the negative-prompt generator returned for ``prompts``, checked: one str per prompt, as a list.

    Raises:
        TypeError: It is not a list of str.
        ValueError: It has another length than ``prompts``.
    """
    name = type(generator).__name__
    if not isinstance(generated, (list, tuple)) or not all(isinstance(g, str) for g in generated):
        raise TypeError(
            f"The negative_prompt_generator ({name}) must return a list of str for a list of prompts, got "
            f"{generated!r:.200}."
        )
    if len(generated) != len(prompts):
        raise ValueError(
            f"The negative_prompt_generator ({name}) returned {len(generated)} negative prompts for "
            f"{len(prompts)} prompts; it must return one per prompt, in order."
        )
    return list(generated)


def guidance_off_message(
    pipeline: Any, kwargs: Mapping[str, Any], guidance_default: float | None, true_cfg_default: float | None
) -> str | None:
    """A warning when the call turns classifier-free guidance off, so that its negative prompt has no effect.

    Args:
        pipeline: The wrapped pipeline (for its name).
        kwargs: The call's arguments.
        guidance_default: The pipeline's default ``guidance_scale`` (None when it takes none).
        true_cfg_default: The pipeline's default ``true_cfg_scale``, for Flux-style pipelines that use the negative
            only through true CFG (their ``guidance_scale`` is a distilled input); None when it takes none.

    Returns:
        The message, or None when the negative prompt is used.
    """
    name = type(pipeline).__name__
    if true_cfg_default is not None or "true_cfg_scale" in kwargs:
        scale = kwargs.get("true_cfg_scale", true_cfg_default)
        if scale is not None and scale <= 1:
            return (
                f"{name} uses a negative prompt only with true classifier-free guidance, but true_cfg_scale={scale}; "
                "the negative prompt has no effect. Pass true_cfg_scale > 1 (e.g. 4.0; each step then runs the "
                "model twice)."
            )
        return None
    scale = kwargs.get("guidance_scale", guidance_default)
    if scale is not None and scale <= 1:
        return (
            f"guidance_scale={scale} turns classifier-free guidance off in {name}, so the negative prompt has no "
            "effect. Pass guidance_scale > 1 (e.g. 7.5 for Stable Diffusion)."
        )
    return None


def unloaded_embeddings_message(negatives: list[str], pipeline: Any, tokenizers: Sequence[Any]) -> str | None:
    """A warning when a negative names a well-known negative embedding (``easynegative``, ...) that no textual
    inversion on the pipeline answers to, so that the name would be read as plain words.

    Args:
        negatives: The negative prompts of the call.
        pipeline: The wrapped pipeline (for its name).
        tokenizers: The tokenizers of its negative slots (None entries are skipped).

    Returns:
        The message, or None when every embedding named is loaded (or none is named).
    """
    named = {term_key(t) for n in negatives for t in split_terms(n)} & _KNOWN_EMBEDDING_KEYS
    if not named:
        return None
    loaded = set()
    for tokenizer in tokenizers:
        added = getattr(tokenizer, "added_tokens_encoder", None) or {}
        loaded |= {term_key(t) for t in added}
    missing = sorted(named - loaded)
    if not missing:
        return None
    return (
        f"The negative prompt names the textual-inversion embedding(s) {missing}, but none is loaded on "
        f"{type(pipeline).__name__} under that token, so the name is read as plain words. Load it first: "
        "pipe.load_textual_inversion('path/to/EasyNegative.safetensors', token='EasyNegative')."
    )
