"""``NegOptPipeline``: wrap any diffusers pipeline and fill its negative-prompt slots.

``NegOptPipeline(sd_pipe)`` behaves like ``sd_pipe`` -- same call, same outputs, same attributes -- except that every
call gets a negative prompt written for its prompt by a *negative-prompt generator* (the built-in one by default, a
learned :class:`~negopt.NegOptGenerator`, or any function ``list[str] -> list[str]``). On the way it fixes the
negative-prompt traps that diffusers leaves:

- a list ``prompt`` with a str ``negative_prompt`` (SD 1.x raises ``TypeError``): the negative is given per prompt;
- ``negative_prompt_2`` / ``_3`` (SDXL, SD3, Flux): every slot is filled, so the negative reaches every text encoder;
- a negative over the text encoder's limit (77 CLIP tokens), which diffusers cuts mid-word without a word: it is
  trimmed to whole terms, the user's terms kept first, with a warning (textual-inversion embeddings counted at their
  true number of vectors);
- A1111 weights ``(term:1.3)`` and long prompts, which diffusers reads as literal text and cuts at 77 tokens: with
  ``prompt_weighting="a1111"`` (or ``"compel"``) they are encoded as AUTOMATIC1111 (or compel) does, in 75-token
  chunks (see :mod:`negopt.weighting`);
- ``guidance_scale <= 1`` (classifier-free guidance off) or Flux's ``true_cfg_scale <= 1``, where a negative prompt
  has no effect: a warning;
- ``prompt_embeds`` with a str ``negative_prompt`` (a tensor-size error in diffusers): the negative is given per row.

Nothing here imports diffusers until :meth:`NegOptPipeline.from_pretrained` is called.
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from negopt.text import (
    KNOWN_NEGATIVE_EMBEDDINGS,
    dedupe_terms,
    fit_terms,
    join_terms,
    merge_negatives,
    split_terms,
    term_key,
)
from negopt.weighting import PROMPT_WEIGHTINGS

__all__ = [
    "NegOptPipeline",
    "NegOptPipelineOutput",
    "NEGATIVE_SLOTS",
    "COMBINE_MODES",
    "PROMPT_WEIGHTINGS",
    "negative_slots",
]

logger = logging.getLogger(__name__)

#: The negative-prompt parameters a diffusers pipeline may take, one per text encoder, and the tokenizer that reads
#: each one.
NEGATIVE_SLOTS: tuple[str, ...] = ("negative_prompt", "negative_prompt_2", "negative_prompt_3")
_SLOT_TOKENIZER = {
    "negative_prompt": "tokenizer",
    "negative_prompt_2": "tokenizer_2",
    "negative_prompt_3": "tokenizer_3",
}

#: How a negative prompt the user passes is combined with the generated one.
COMBINE_MODES: tuple[str, ...] = ("merge", "user", "generated")

# The default of the per-call `prompt_weighting` (None is a value: no weighting).
_UNSET: Any = object()

_KNOWN_EMBEDDING_KEYS = frozenset(term_key(t) for t in KNOWN_NEGATIVE_EMBEDDINGS)

# A tokenizer with no real limit reports model_max_length as a huge sentinel (about 1e30).
_NO_LIMIT = 1_000_000

# Attributes that live on the wrapper; every other attribute is the wrapped pipeline's.
_OWN_ATTRIBUTES = frozenset(
    {
        "pipeline",
        "negative_prompt_generator",
        "combine",
        "fit_to_tokenizer",
        "prompt_weighting",
        "last_negative_prompts",
        "negative_slots",
        "_positional",
        "_guidance_default",
        "_true_cfg_default",
        "_max_sequence_length_default",
    }
)


@runtime_checkable
class NegOptPipelineOutput(Protocol):
    """What a :class:`NegOptPipeline` call returns with ``return_dict=True``.

    It is the wrapped pipeline's own output object (``StableDiffusionPipelineOutput``, ``FluxPipelineOutput``, ...),
    unchanged, with one attribute added; ``isinstance(output, NegOptPipelineOutput)`` is true for it. The attribute is
    not a key of the output, so ``output.to_tuple()`` and ``output[0]`` are what diffusers gives.

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
    """

    negative_prompts: list[str] | None
    negative_prompt: str | list[str] | None
    prompt_weighting: str | None


class NegOptPipeline:
    """A diffusers pipeline whose negative prompts are written for it.

    The wrapper takes the same arguments as the wrapped pipeline's ``__call__`` and returns what it returns. For each
    call it asks the negative-prompt generator for one negative per prompt (all prompts in one call), combines it with
    the user's ``negative_prompt`` if there is one, fits it to the text encoders' token limit, and sends it in every
    negative slot the pipeline has (``negative_prompt``, ``negative_prompt_2``, ``negative_prompt_3``). Every other
    argument, ``generator`` (a ``torch.Generator``) included, is forwarded unchanged.

    Attributes that the wrapper does not have are the wrapped pipeline's, to read and to set: ``pipe.unet``,
    ``pipe.scheduler = ...``, ``pipe.enable_model_cpu_offload()``, ``pipe.set_progress_bar_config(...)``. The wrapped
    pipeline's components and config are never changed by a call.

    Token limits: a negative prompt is sent to every text encoder whose slot it fills, so it must fit the smallest of
    their limits: 77 tokens (75 without the start and end tokens) for a CLIP tokenizer; for another tokenizer (T5)
    the call's ``max_sequence_length`` when the pipeline takes one, else the tokenizer's ``model_max_length``. The
    count uses the pipeline's own tokenizers on the text as given (PixArt lowercases captions first, which can change
    a T5 count slightly). A slot that the caller fills itself (``negative_prompt_2="..."``) is forwarded as given and
    does not count.

    Args:
        pipeline: A diffusers pipeline (any object whose ``__call__`` takes ``negative_prompt``). It is used as is and
            never modified.
        negative_prompt_generator: Writes the negatives: any callable that maps a list of prompts to a list of
            negative prompts of the same length, such as a :class:`~negopt.NegOptGenerator`, a
            :class:`~negopt.BuiltinGenerator` (the default when None) or a plain function. A str (a folder or hub
            id) is loaded with :meth:`NegOptGenerator.from_pretrained <negopt.NegOptGenerator.from_pretrained>`.
            Called once per pipeline call, with all the prompts. (It is not named ``generator``: diffusers passes a
            ``torch.Generator`` under that name, and the wrapper forwards it.)
        combine: What to do with a ``negative_prompt`` that the caller passes: ``"merge"`` keeps the caller's terms
            first and verbatim (textual-inversion tokens such as ``easynegative`` included) and adds the generated
            terms it does not already have; ``"user"`` sends the caller's negative only, without generating (and
            nothing when there is none); ``"generated"`` ignores it. A call can override it with ``combine=...``.
        fit_to_tokenizer: Trim a negative prompt that is over the text encoders' token limit to the whole terms that
            fit (with a warning). The user's terms are kept first, in order; a single user term longer than the limit
            is cut at a word boundary, never dropped. When False it is sent as is and diffusers truncates it. Not
            used with ``prompt_weighting``, which does not truncate.
        prompt_weighting: How prompts and negatives are encoded. None (the default): they are sent to the pipeline
            as text, and the pipeline encodes them (A1111 weights are literal text, 77 tokens at most). ``"a1111"``:
            AUTOMATIC1111's syntax (``(term:1.3)``, ``(term)``, ``[term]``, ``BREAK``) and encoding (75-token chunks,
            no truncation, "Original" emphasis), for Stable Diffusion 1.x/2.x and SDXL; see :mod:`negopt.weighting`.
            ``"compel"``: the compel library's syntax and encoding (``pip install "negopt[weighting]"``), for SD,
            SDXL, Flux, Sana and Lumina2. Either way the pipeline gets ``prompt_embeds`` / ``negative_prompt_embeds``
            (and SDXL's pooled embeddings). A call can override it with ``prompt_weighting=...``.

    Attributes:
        pipeline: The wrapped pipeline.
        negative_prompt_generator: The generator.
        negative_slots: The wrapped pipeline's negative-prompt parameters, read once from its signature.
        last_negative_prompts: The negatives sent by the latest call (see :class:`NegOptPipelineOutput`), also after
            a ``return_dict=False`` call, whose tuple has no room for them. One attribute per wrapper: with threads,
            read ``output.negative_prompts`` instead.

    Raises:
        ValueError: If the pipeline's ``__call__`` has no ``negative_prompt`` parameter, ``combine`` or
            ``prompt_weighting`` is unknown, or ``prompt_weighting`` does not support the pipeline's family.
        TypeError: If ``pipeline`` or ``negative_prompt_generator`` is not callable.
        ImportError: If ``prompt_weighting="compel"`` and compel is not installed.

    Example:
        >>> from diffusers import StableDiffusionPipeline
        >>> from negopt import NegOptPipeline
        >>> sd = StableDiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")
        >>> pipe = NegOptPipeline(sd)
        >>> out = pipe("a portrait photo of an old fisherman", negative_prompt="easynegative")
        >>> out.negative_prompts
        ['easynegative, blurry, ...']
    """

    def __init__(
        self,
        pipeline: Any,
        negative_prompt_generator: Callable[[list[str]], list[str]] | str | os.PathLike | None = None,
        *,
        combine: str = "merge",
        fit_to_tokenizer: bool = True,
        prompt_weighting: str | None = None,
    ) -> None:
        if isinstance(pipeline, NegOptPipeline):
            raise TypeError(
                "`pipeline` is already a NegOptPipeline; wrap its `.pipeline` instead, or pass another generator to "
                "NegOptPipeline(pipe.pipeline, negative_prompt_generator=...)."
            )
        if not callable(pipeline):
            raise TypeError(
                f"`pipeline` must be a diffusers pipeline (a callable that takes `negative_prompt`), got "
                f"{type(pipeline).__name__}: {pipeline!r:.200}."
            )
        parameters = inspect.signature(pipeline.__call__).parameters
        slots = negative_slots(pipeline)
        combine = _check_combine(combine)
        prompt_weighting = _check_weighting(prompt_weighting, pipeline)
        if negative_prompt_generator is None:
            # Imported here: the built-in generator is an optional convenience, not a dependency of the wrapper.
            from negopt.builtin import BuiltinGenerator

            negative_prompt_generator = BuiltinGenerator()
        elif isinstance(negative_prompt_generator, (str, os.PathLike)):
            from negopt.generator import NegOptGenerator
            from negopt.hub import is_folder_or_hub_id

            name = os.fspath(negative_prompt_generator)
            if not is_folder_or_hub_id(name):
                raise TypeError(
                    f"`negative_prompt_generator` is the str {name!r}, which is neither a generator folder nor a hub "
                    "id. To send a fixed negative prompt, pass it when calling: pipe(prompt, negative_prompt=...); to "
                    "use a learned generator, pass its folder or hub id, or a NegOptGenerator."
                )
            negative_prompt_generator = NegOptGenerator.from_pretrained(name)
        elif not callable(negative_prompt_generator):
            raise TypeError(
                "`negative_prompt_generator` must be callable (a NegOptGenerator, a BuiltinGenerator or a function "
                f"list[str] -> list[str]), got {type(negative_prompt_generator).__name__}: "
                f"{negative_prompt_generator!r:.200}."
            )

        def default(name: str) -> Any:
            param = parameters.get(name)
            return None if param is None or param.default is inspect.Parameter.empty else param.default

        object.__setattr__(self, "pipeline", pipeline)
        self.negative_prompt_generator = negative_prompt_generator
        self.combine = combine
        self.fit_to_tokenizer = bool(fit_to_tokenizer)
        self.prompt_weighting = prompt_weighting
        self.last_negative_prompts: list[str] | None = None
        self.negative_slots = slots
        self._positional = tuple(
            name
            for name, p in parameters.items()
            if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        )
        # Flux-style pipelines use the negative only through true CFG; their guidance_scale is a distilled input.
        self._true_cfg_default = default("true_cfg_scale") if "true_cfg_scale" in parameters else None
        self._guidance_default = default("guidance_scale") if "guidance_scale" in parameters else None
        self._max_sequence_length_default = default("max_sequence_length")

    # -- construction ---------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str,
        negative_prompt_generator: Callable[[list[str]], list[str]] | str | os.PathLike | None = None,
        *,
        combine: str = "merge",
        fit_to_tokenizer: bool = True,
        prompt_weighting: str | None = None,
        use_safetensors: bool = True,
        **pipeline_kwargs: Any,
    ) -> NegOptPipeline:
        """Load a diffusers pipeline with ``DiffusionPipeline.from_pretrained`` and wrap it.

        Args:
            pretrained_model_name_or_path: A hub id or a local folder of a diffusers pipeline.
            negative_prompt_generator: As in :class:`NegOptPipeline`; the built-in generator when None.
            combine: As in :class:`NegOptPipeline`.
            fit_to_tokenizer: As in :class:`NegOptPipeline`.
            prompt_weighting: As in :class:`NegOptPipeline`.
            use_safetensors: Load safetensors weights only (the safe default); pass False to allow pickle files.
            **pipeline_kwargs: Passed to ``DiffusionPipeline.from_pretrained`` (``torch_dtype``, ``revision``,
                ``variant``, ``cache_dir``, ``token``, ``local_files_only``, components to replace, ...).

        Returns:
            The wrapped pipeline, on the CPU unless ``pipeline_kwargs`` say otherwise.

        Example:
            >>> pipe = NegOptPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")
        """
        from diffusers import DiffusionPipeline

        pipeline = DiffusionPipeline.from_pretrained(
            pretrained_model_name_or_path, use_safetensors=use_safetensors, **pipeline_kwargs
        )
        return cls(
            pipeline,
            negative_prompt_generator,
            combine=combine,
            fit_to_tokenizer=fit_to_tokenizer,
            prompt_weighting=prompt_weighting,
        )

    # -- drop-in behaviour ----------------------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the wrapper lacks. Guard against recursion while the object is half-built
        # (copy, pickle) and keep dunder lookups on the wrapper.
        if name in _OWN_ATTRIBUTES or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        pipeline = self.__dict__.get("pipeline")
        if pipeline is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(pipeline, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # `pipe.scheduler = ...` must reach the wrapped pipeline, or it would keep using the old one.
        if name == "combine":
            value = _check_combine(value)
        elif name == "prompt_weighting":
            value = _check_weighting(value, self.pipeline)
        if name in _OWN_ATTRIBUTES or name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.pipeline, name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(self.pipeline)))

    def __repr__(self) -> str:
        pipeline = self.pipeline
        source = getattr(getattr(pipeline, "config", None), "_name_or_path", None) or getattr(
            pipeline, "name_or_path", None
        )
        pipeline_repr = type(pipeline).__name__ + (f"({source!r})" if source else "")
        generator_repr = repr(self.negative_prompt_generator)
        if "\n" in generator_repr or len(generator_repr) > 200:
            generator_repr = f"{type(self.negative_prompt_generator).__name__}(...)"
        return (
            f"{type(self).__name__}(\n"
            f"  pipeline={pipeline_repr},\n"
            f"  negative_prompt_generator={generator_repr},\n"
            f"  combine={self.combine!r},\n"
            f"  fit_to_tokenizer={self.fit_to_tokenizer},\n"
            f"  prompt_weighting={self.prompt_weighting!r},\n"
            f"  negative_slots={self.negative_slots},\n"
            ")"
        )

    def to(self, *args: Any, **kwargs: Any) -> NegOptPipeline:
        """Move the wrapped pipeline, like ``DiffusionPipeline.to``, and the generator when it is a model.

        The generator (anything with a ``.to``, such as a :class:`~negopt.NegOptGenerator`) follows the *device* only:
        a dtype given here is the diffusion model's, and a small language model is better kept in float32.

        Returns:
            This wrapper (not the bare pipeline), so ``pipe = NegOptPipeline(sd).to("cuda")`` stays wrapped.
        """
        moved = self.pipeline.to(*args, **kwargs)
        if moved is not None:
            object.__setattr__(self, "pipeline", moved)
        device = kwargs.get("device", kwargs.get("torch_device"))
        for arg in args:
            if isinstance(arg, str) or type(arg).__name__ == "device":
                device = arg
        to = getattr(self.negative_prompt_generator, "to", None)
        if device is not None and callable(to):
            moved_generator = to(device)
            if moved_generator is not None:
                self.negative_prompt_generator = moved_generator
        return self

    # -- the call -------------------------------------------------------------------------------------------------

    def __call__(
        self, *args: Any, combine: str | None = None, prompt_weighting: str | None = _UNSET, **kwargs: Any
    ) -> Any:
        """Call the wrapped pipeline with its negative prompts written for it.

        Takes the wrapped pipeline's own arguments (positional ones bind to its parameters in order) and returns its
        output. See :class:`NegOptPipeline` for what happens to ``negative_prompt`` and the other slots.

        Args:
            *args: Positional arguments of the wrapped pipeline's ``__call__`` (``prompt`` first for most).
            combine: Overrides the wrapper's ``combine`` for this call.
            prompt_weighting: Overrides the wrapper's ``prompt_weighting`` for this call (None included).
            **kwargs: Keyword arguments of the wrapped pipeline's ``__call__``.

        Returns:
            What the wrapped pipeline returns. With ``return_dict=True`` (the default) it is the pipeline's output
            object with ``negative_prompts``, ``negative_prompt`` and ``prompt_weighting`` set (see
            :class:`NegOptPipelineOutput`); with ``return_dict=False`` it is the pipeline's tuple, and the negatives
            are in :attr:`last_negative_prompts`.

        Raises:
            ValueError: If ``prompt`` and ``negative_prompt`` are lists of different lengths; if ``prompt_embeds`` is
                given without ``prompt``, ``negative_prompt`` or ``negative_prompt_embeds``, or with
                ``prompt_weighting``; if the generator returns the wrong number of negatives; if a weight in A1111
                syntax is not a number >= 0.
            TypeError: If a prompt or negative prompt is not a str or a list of str, or the generator does not return
                a list of str.
        """
        weighting = self.prompt_weighting if prompt_weighting is _UNSET else _check_weighting(prompt_weighting, self)
        kwargs = self._bind(args, kwargs)
        call_kwargs, negatives = self._prepare(kwargs, combine, weighting)
        self.last_negative_prompts = negatives
        output = self.pipeline(**call_kwargs)
        if not isinstance(output, tuple):
            if negatives is None:
                form = None
            elif weighting is None:
                form = call_kwargs["negative_prompt"]
            else:
                form = negatives[0] if isinstance(kwargs.get("prompt"), str) else list(negatives)
            try:
                output.negative_prompts = negatives
                output.negative_prompt = form
                output.prompt_weighting = weighting
            except AttributeError:  # an output type that takes no new attributes; the negatives stay on the wrapper
                logger.debug("Could not set negative_prompts on a %s output.", type(output).__name__)
        return output

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if not args:
            return kwargs
        if len(args) > len(self._positional):
            raise TypeError(
                f"{type(self.pipeline).__name__}.__call__ takes at most {len(self._positional)} positional arguments "
                f"({', '.join(self._positional)}), but {len(args)} were given."
            )
        for name, value in zip(self._positional, args):
            if name in kwargs:
                raise TypeError(f"{type(self.pipeline).__name__}.__call__ got multiple values for argument {name!r}.")
            kwargs[name] = value
        return kwargs

    def _prepare(
        self, kwargs: dict[str, Any], combine: str | None = None, prompt_weighting: str | None = _UNSET
    ) -> tuple[dict[str, Any], list[str] | None]:
        """Work out the negatives of a call: ``(arguments for the wrapped pipeline, negative per prompt or None)``.

        This is the wrapper's whole cost per call besides the generator and the pipeline.
        """
        combine = self.combine if combine is None else _check_combine(combine)
        weighting = self.prompt_weighting if prompt_weighting is _UNSET else prompt_weighting
        if weighting is not None:
            given = [k for k in ("prompt_embeds", "negative_prompt_embeds") if kwargs.get(k) is not None]
            if given:
                raise ValueError(
                    f"prompt_weighting={weighting!r} encodes the prompt and the negative itself, but the call also "
                    f"passed {' and '.join(f'`{k}`' for k in given)}. Pass `prompt` (and `negative_prompt`) as text, "
                    "or pass prompt_weighting=None to use your embeddings as they are."
                )
        if kwargs.get("negative_prompt_embeds") is not None:
            # The caller encoded the negative; there is no text to write, and diffusers forbids both.
            return kwargs, None
        prompt = kwargs.get("prompt")
        user = kwargs.get("negative_prompt")
        if prompt is None:
            embeds = kwargs.get("prompt_embeds")
            if embeds is None:
                return kwargs, None  # the pipeline reports its own missing-prompt error
            if user is None or combine == "generated":
                raise ValueError(
                    "`prompt_embeds` was given without `prompt`, so there is no text to write a negative prompt from"
                    + (" (and combine='generated' ignores `negative_prompt`)" if user is not None else "")
                    + ". Pass `prompt` (the text the embeddings came from), or your own `negative_prompt` (with "
                    "combine='merge' or 'user') or `negative_prompt_embeds`."
                )
            prompts = None
            batch = len(embeds)
            as_list = True  # diffusers needs one negative per row of prompt_embeds
        else:
            prompts = _as_text_list(prompt, "prompt")
            batch = len(prompts)
            as_list = not isinstance(prompt, str)
        users = _per_prompt(user, batch, "negative_prompt")

        negatives: list[str] | None
        n_user = [0] * batch  # how many of each negative's first terms are the user's
        if combine == "user" or prompts is None:
            if users is None and not any(kwargs.get(slot) is not None for slot in self.negative_slots[1:]):
                negatives = None
            else:
                # SDXL and Flux ignore negative_prompt_2 when negative_prompt is None; "" lets it count.
                negatives = users if users is not None else [""] * batch
                n_user = [len(split_terms(n)) for n in negatives]
        else:
            generated = self._generate(prompts)
            if combine == "generated" or users is None:
                negatives = [merge_negatives(None, g) for g in generated]
            else:
                negatives = [merge_negatives(u, g) for u, g in zip(users, generated)]
                n_user = [len(dedupe_terms(split_terms(u))) for u in users]
        if negatives is not None:
            self._warn_unloaded_embeddings(negatives)
        if weighting is not None:
            out = self._encode(kwargs, weighting, prompts, negatives)
            self._warn_if_unused(kwargs)
            return out, negatives
        if negatives is None:
            return kwargs, None

        out = dict(kwargs)
        receiving = ["negative_prompt"]
        for slot in self.negative_slots[1:]:
            own = kwargs.get(slot)
            if own is None:
                receiving.append(slot)
            elif as_list:
                out[slot] = _per_prompt(own, batch, slot)  # a str for one slot breaks Flux's T5 batch otherwise
        if self.fit_to_tokenizer:
            negatives = self._fit(negatives, receiving, kwargs, n_user)
        value: str | list[str] = list(negatives) if as_list else negatives[0]
        for slot in receiving:
            out[slot] = value
        self._warn_if_unused(kwargs)
        return out, negatives

    def _encode(
        self, kwargs: dict[str, Any], weighting: str, prompts: list[str], negatives: list[str] | None
    ) -> dict[str, Any]:
        """The call's arguments with the prompt and negative replaced by their embeddings (``prompt_weighting``)."""
        from negopt.weighting import encode_a1111, encode_compel, pipeline_family

        batch = len(prompts)
        family = pipeline_family(self.pipeline)
        text_slots = ("prompt", "prompt_2", "prompt_3", *NEGATIVE_SLOTS)
        prompts_2 = _per_prompt(kwargs.get("prompt_2"), batch, "prompt_2")
        own_2 = _per_prompt(kwargs.get("negative_prompt_2"), batch, "negative_prompt_2")
        unused = [k for k in ("prompt_3", "negative_prompt_3") if kwargs.get(k) is not None]
        if family != "sdxl":
            unused += [k for k in ("prompt_2", "negative_prompt_2") if kwargs.get(k) is not None]
        if unused:
            raise ValueError(
                f"prompt_weighting={weighting!r} on {type(self.pipeline).__name__} encodes `prompt` and "
                f"`negative_prompt` for every text encoder; {', '.join(f'`{k}`' for k in unused)} cannot be used "
                "with it. Leave them out, or pass prompt_weighting=None."
            )
        texts = negatives if negatives is not None else [""] * batch
        negatives_2 = own_2 if own_2 is not None else (None if prompts_2 is None else texts)
        if weighting == "compel":
            embeds = encode_compel(self.pipeline, prompts, texts, prompts_2, negatives_2)
        else:
            (hidden, pooled), (negative, negative_pooled) = encode_a1111(
                self.pipeline, [prompts, texts], [prompts_2, negatives_2], kwargs.get("clip_skip")
            )
            embeds = {"prompt_embeds": hidden, "negative_prompt_embeds": negative}
            if pooled is not None:
                embeds["pooled_prompt_embeds"] = pooled
                embeds["negative_pooled_prompt_embeds"] = negative_pooled
        if (
            negatives is None
            and family == "sdxl"
            and getattr(getattr(self.pipeline, "config", None), "force_zeros_for_empty_prompt", False)
        ):
            # What SDXL does with no negative prompt at all.
            embeds["negative_prompt_embeds"] = embeds["negative_prompt_embeds"].zero_()
            if "negative_pooled_prompt_embeds" in embeds:
                embeds["negative_pooled_prompt_embeds"] = embeds["negative_pooled_prompt_embeds"].zero_()
        out = {k: v for k, v in kwargs.items() if k not in text_slots}
        out.update(embeds)
        return out

    def _generate(self, prompts: list[str]) -> list[str]:
        generated = self.negative_prompt_generator(prompts)
        name = type(self.negative_prompt_generator).__name__
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

    def _fit(
        self, negatives: list[str], receiving: list[str], kwargs: dict[str, Any], n_user: list[int] | None = None
    ) -> list[str]:
        """Trim each negative to whole terms that fit every text encoder it is sent to.

        ``n_user[i]`` first terms of ``negatives[i]`` are the user's: they are kept in order while they fit, and are
        never dropped to make room for generated ones; a user term that is alone over the limit is cut at a word
        boundary.
        """
        n_user = n_user or [0] * len(negatives)
        budgets = []  # (tokenizer, content-token budget, limit as the user knows it)
        seen: set[int] = set()
        max_sequence_length = kwargs.get("max_sequence_length", self._max_sequence_length_default)
        for slot in receiving:
            tokenizer = getattr(self.pipeline, _SLOT_TOKENIZER[slot], None)
            if tokenizer is None or id(tokenizer) in seen:
                continue
            seen.add(id(tokenizer))
            limit = _token_limit(tokenizer, max_sequence_length)
            if limit is not None:
                budgets.append((tokenizer, limit - tokenizer.num_special_tokens_to_add(), limit))
        if not budgets:
            return negatives
        convert = getattr(self.pipeline, "maybe_convert_prompt", None)

        def lengths(tokenizer: Any, texts: list[str]) -> list[int]:
            if callable(convert) and _has_multi_vector_embedding(tokenizer):
                # As diffusers does before encoding: a k-vector textual inversion becomes k tokens.
                texts = convert(list(texts), tokenizer)
            return [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]

        # The hot path: one batched count per tokenizer. Only the negatives that are over go further.
        over = sorted(
            {i for tokenizer, budget, _ in budgets for i, n in enumerate(lengths(tokenizer, negatives)) if n > budget}
        )
        if not over:
            return negatives

        # Count every term once per tokenizer (one batched call each) and let fit_terms add the counts up: a term's
        # tokens do not depend on its neighbours across ", " for CLIP, byte-level or SentencePiece tokenizers. The
        # results are checked with an exact count, and a negative for which a tokenizer disagrees is fitted exactly.
        terms_of = {i: split_terms(negatives[i]) for i in over}
        unique = list(dict.fromkeys(t for terms in terms_of.values() for t in terms))
        tables = []
        for tokenizer, budget, _ in budgets:
            counts = lengths(tokenizer, [*unique, ", "])
            tables.append((dict(zip(unique, counts)), counts[-1], budget))

        def exact_excess(text: str) -> int:
            return max(lengths(tokenizer, [text])[0] - budget for tokenizer, budget, _ in budgets)

        def summed_excess(text: str) -> int:
            parts = text.split(", ")  # the candidate is join_terms(...) of known terms
            if not all(p in tables[0][0] for p in parts):  # a term with ", " inside brackets
                return exact_excess(text)
            return max(sum(table[p] for p in parts) + sep * (len(parts) - 1) - budget for table, sep, budget in tables)

        def fit(i: int, excess: Callable[[str], int]) -> tuple[list[str], str, list[str]]:
            """``(kept terms, the user's text that was cut, generated terms dropped)`` for negative ``i``."""
            terms = terms_of[i]
            users, generated = terms[: n_user[i]], terms[n_user[i] :]
            kept: list[str] = []
            for term in users:  # the user's terms in order, as long as they fit: a prefix, never a hole
                if excess(join_terms([*kept, term])) > 0:
                    break
                kept.append(term)
            if len(kept) < len(users):
                rest = users[len(kept) :]
                if excess(rest[0]) > 0:  # a user term that could never fit whole: keep the words of it that fit
                    before = join_terms(kept)
                    head, tail = _cut_words(
                        rest[0], lambda h: exact_excess(f"{before}, {h}" if before else h), keep_one=not kept
                    )
                    kept = [*kept, head] if head else kept
                    rest = ([tail] if tail else []) + rest[1:]
                return kept, join_terms(rest), []
            prefix = join_terms(kept)
            more, dropped = fit_terms(generated, 0, lambda t: excess(f"{prefix}, {t}" if prefix else t))
            return [*kept, *more], "", dropped

        results = {i: fit(i, summed_excess) for i in over}
        checked = [join_terms(kept) for kept, _, _ in results.values()]
        for tokenizer, budget, _ in budgets:
            for i, n in zip(list(results), lengths(tokenizer, checked)):
                if n > budget:
                    results[i] = fit(i, exact_excess)

        fitted = list(negatives)
        notes = []
        for i, (kept, cut, dropped) in results.items():
            fitted[i] = join_terms(kept)
            if cut:
                generated_note = f"; the {len(terms_of[i]) - n_user[i]} generated terms were not added"
                notes.append(
                    f"prompt {i}: your negative prompt was cut after {fitted[i][-40:]!r}; not sent: {cut!r}"
                    + (generated_note if len(terms_of[i]) > n_user[i] else "")
                )
            else:
                shown = ", ".join(repr(t) for t in dropped[:6]) + (
                    f" and {len(dropped) - 6} more" if len(dropped) > 6 else ""
                )
                notes.append(f"prompt {i}: dropped generated terms {shown}")
        limits = ", ".join(dict.fromkeys(f"{type(t).__name__} {limit}" for t, _, limit in budgets))
        warnings.warn(
            f"A negative prompt was longer than the text encoders' token limit ({limits}, special tokens included); "
            f"diffusers would cut it mid-word, so it was trimmed to the whole terms that fit, yours first "
            f"({'; '.join(notes)}). Shorten `negative_prompt`, pass fit_to_tokenizer=False to send it as is, or "
            "prompt_weighting='a1111' to encode it whole in 75-token chunks.",
            stacklevel=4,
        )
        return fitted

    def _warn_unloaded_embeddings(self, negatives: list[str]) -> None:
        """Warn about a well-known negative embedding's name that no textual inversion on the pipeline answers to."""
        named = {term_key(t) for n in negatives for t in split_terms(n)} & _KNOWN_EMBEDDING_KEYS
        if not named:
            return
        loaded = set()
        for slot in self.negative_slots:
            tokenizer = getattr(self.pipeline, _SLOT_TOKENIZER[slot], None)
            added = getattr(tokenizer, "added_tokens_encoder", None) or {}
            loaded |= {term_key(t) for t in added}
        missing = sorted(named - loaded)
        if missing:
            warnings.warn(
                f"The negative prompt names the textual-inversion embedding(s) {missing}, but none is loaded on "
                f"{type(self.pipeline).__name__} under that token, so the name is read as plain words. Load it "
                "first: pipe.load_textual_inversion('path/to/EasyNegative.safetensors', token='EasyNegative').",
                stacklevel=4,
            )

    def _warn_if_unused(self, kwargs: dict[str, Any]) -> None:
        if self._true_cfg_default is not None or "true_cfg_scale" in kwargs:
            scale = kwargs.get("true_cfg_scale", self._true_cfg_default)
            if scale is not None and scale <= 1:
                warnings.warn(
                    f"{type(self.pipeline).__name__} uses a negative prompt only with true classifier-free guidance, "
                    f"but true_cfg_scale={scale}; the negative prompt has no effect. Pass true_cfg_scale > 1 (e.g. "
                    "4.0; each step then runs the model twice).",
                    stacklevel=4,
                )
            return
        scale = kwargs.get("guidance_scale", self._guidance_default)
        if scale is not None and scale <= 1:
            warnings.warn(
                f"guidance_scale={scale} turns classifier-free guidance off in {type(self.pipeline).__name__}, so the "
                "negative prompt has no effect. Pass guidance_scale > 1 (e.g. 7.5 for Stable Diffusion).",
                stacklevel=4,
            )


def negative_slots(pipeline: Any) -> tuple[str, ...]:
    """The negative-prompt parameters of a diffusers pipeline's ``__call__``: the one test of "has a negative slot".

    The wrapper, ``evaluate()`` and the RL trainer all decide with this function, so a pipeline that would swallow
    ``negative_prompt`` through ``**kwargs`` (``LatentConsistencyModelPipeline``) is refused everywhere alike.

    Args:
        pipeline: A diffusers pipeline (or a ``NegOptPipeline``, whose wrapped pipeline is read).

    Returns:
        The slot names, in the order of :data:`NEGATIVE_SLOTS`; ``negative_prompt`` is always first.

    Raises:
        ValueError: The pipeline's ``__call__`` has no ``negative_prompt`` parameter.
    """
    inner = getattr(pipeline, "pipeline", pipeline) if isinstance(pipeline, NegOptPipeline) else pipeline
    parameters = inspect.signature(inner.__call__).parameters
    if "negative_prompt" not in parameters:
        raise ValueError(
            f"{type(inner).__name__} cannot use a negative prompt: its __call__ has no `negative_prompt` "
            "parameter (the pipeline is guidance-distilled or conditions on something else), so there is no slot "
            "to fill. Call the pipeline directly, or use a pipeline class of the same model "
            "family that takes `negative_prompt` (for Flux, FluxPipeline with true_cfg_scale > 1)."
        )
    return tuple(slot for slot in NEGATIVE_SLOTS if slot in parameters)


def _check_weighting(prompt_weighting: str | None, pipeline: Any) -> str | None:
    if prompt_weighting not in PROMPT_WEIGHTINGS:
        raise ValueError(f"`prompt_weighting` must be one of {PROMPT_WEIGHTINGS}, got {prompt_weighting!r}.")
    if prompt_weighting is not None:
        from negopt.weighting import check_family

        check_family(
            getattr(pipeline, "pipeline", pipeline) if isinstance(pipeline, NegOptPipeline) else pipeline,
            prompt_weighting,
        )
        if prompt_weighting == "compel":
            try:
                import compel  # noqa: F401
            except ImportError as err:
                raise ImportError(
                    "prompt_weighting='compel' needs the compel library: pip install \"negopt[weighting]\" (or pip "
                    "install compel)."
                ) from err
    return prompt_weighting


def _has_multi_vector_embedding(tokenizer: Any) -> bool:
    added = getattr(tokenizer, "added_tokens_encoder", None) or {}
    return any(f"{t}_1" in added for t in added)


def _cut_words(text: str, excess: Callable[[str], int], keep_one: bool) -> tuple[str, str]:
    """Split ``text`` at the last word boundary where its head still fits (``excess(head) <= 0``): ``(head, tail)``.

    With ``keep_one``, a first word that alone does not fit is kept whole (diffusers then cuts it at its limit), so
    that the user's negative is never sent empty.
    """
    words = text.split(" ")
    lo, hi = (1 if keep_one else 0), len(words)  # the head of `lo` words is kept
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if excess(" ".join(words[:mid])) <= 0:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo]), " ".join(words[lo:])


def _check_combine(combine: str) -> str:
    if combine not in COMBINE_MODES:
        raise ValueError(f"`combine` must be one of {COMBINE_MODES}, got {combine!r}.")
    return combine


def _as_text_list(value: Any, name: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError(f"`{name}` must be a str or a list of str, got {type(value).__name__}: {value!r:.200}.")


def _per_prompt(value: Any, batch: int, name: str) -> list[str] | None:
    """One text per prompt: a str is repeated; a list must have one entry per prompt."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value] * batch
    texts = _as_text_list(value, name)
    if len(texts) != batch:
        raise ValueError(
            f"`{name}` has {len(texts)} entries but there are {batch} prompts: pass one {name} per prompt (not per "
            "image; num_images_per_prompt repeats it), or one str for all of them."
        )
    return texts


def _token_limit(tokenizer: Any, max_sequence_length: int | None) -> int | None:
    """The number of tokens (special ones included) that a diffusers pipeline keeps from this tokenizer."""
    limit = getattr(tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or limit >= _NO_LIMIT:
        limit = None
    # CLIP encoders always cut at model_max_length; T5-style encoders at the call's max_sequence_length.
    if max_sequence_length is not None and not type(tokenizer).__name__.startswith("CLIP"):
        limit = max_sequence_length if limit is None else min(limit, max_sequence_length)
    return limit
