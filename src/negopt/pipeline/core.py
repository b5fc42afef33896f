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
  chunks (see :mod:`negopt.pipeline.weighting`);
- ``guidance_scale <= 1`` (classifier-free guidance off) or Flux's ``true_cfg_scale <= 1``, where diffusers drops the
  negative: it acts through NAG where supported (:mod:`negopt.pipeline.guidance`), else a warning;
- ``prompt_embeds`` with a str ``negative_prompt`` (a tensor-size error in diffusers): the negative is given per row.

Nothing here imports diffusers until :meth:`NegOptPipeline.from_pretrained` is called.
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from collections.abc import Callable
from typing import Any

from negopt.pipeline.checks import (
    COMBINE_MODES,
    as_text_list,
    check_combine,
    check_generated,
    load_negative_prompt_generator,
    per_prompt,
    unloaded_embeddings_message,
)
from negopt.pipeline.device import DeviceMixin
from negopt.pipeline.families import (
    chat_template_tokens,
    check_default_negative,
    encode_negatives,
    family_of,
    is_video_pipeline,
    pipeline_default_negative,
    refusal_message,
    takes_negative_embeds,
)
from negopt.pipeline.guidance import check_negative_guidance, guided_call
from negopt.pipeline.output import NegOptPipelineOutput
from negopt.pipeline.token_budget import fit_negatives, token_limit, trimmed_message
from negopt.pipeline.weighting import PROMPT_WEIGHTINGS, check_weighting, encode_call
from negopt.text import dedupe_terms, merge_negatives, split_terms

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
NEGATIVE_SLOTS: tuple[str, ...] = ("negative_prompt", "negative_prompt_2", "negative_prompt_3", "negative_prompt_4")
_SLOT_TOKENIZER = {
    "negative_prompt": "tokenizer",
    "negative_prompt_2": "tokenizer_2",
    "negative_prompt_3": "tokenizer_3",
    "negative_prompt_4": "tokenizer_4",  # HiDream's Llama
}

# The default of the per-call `prompt_weighting` (None is a value: no weighting).
_UNSET: Any = object()

# Attributes that live on the wrapper; every other attribute is the wrapped pipeline's.
_OWN_ATTRIBUTES = frozenset(
    {"pipeline", "negative_prompt_generator", "combine", "fit_to_tokenizer", "prompt_weighting", "negative_guidance"}
    | {"last_negative_prompts", "last_negative_guidance", "negative_slots", "_positional", "_encodes_negative"}
    | {"_max_sequence_length_default", "default_negative", "_pipeline_default"}
)


class NegOptPipeline(DeviceMixin):
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
            :class:`~negopt.BuiltinGenerator` (the default when None; around a video pipeline it writes for
            video: ``BuiltinGenerator(kind="video")``) or a plain function. A str (a folder or hub
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
            no truncation, "Original" emphasis), for Stable Diffusion 1.x/2.x and SDXL; see
            :mod:`negopt.pipeline.weighting`.
            ``"compel"``: the compel library's syntax and encoding (``pip install "negopt[weighting]"``), for SD,
            SDXL, Flux, Sana and Lumina2. Either way the pipeline gets ``prompt_embeds`` / ``negative_prompt_embeds``
            (and SDXL's pooled embeddings). A call can override it with ``prompt_weighting=...``.
        default_negative: For a pipeline that fills a negative of its own when it is given none (Cosmos's long
            ``DEFAULT_NEGATIVE_PROMPT``), what a call without ``negative_prompt`` sends: ``"merge"`` (the default)
            treats the pipeline's default as the caller's negative, kept first and verbatim, and adds the generated
            terms; ``"replace"`` sends the generated negative instead; ``"keep"`` sends the pipeline's default alone,
            without generating. Other pipelines have no such default, and it does nothing for them.
        negative_guidance: How the negative acts: ``"auto"`` (classifier-free guidance where the call has it on,
            Normalized Attention Guidance where it is off and NAG supports the pipeline), ``"cfg"`` or ``"nag"``. A
            call can override it and set NAG's knobs; see :mod:`negopt.pipeline.guidance`.

    Attributes:
        pipeline: The wrapped pipeline.
        negative_prompt_generator: The generator.
        negative_slots: The wrapped pipeline's negative-prompt parameters, read once from its signature; empty for a
            Flux.2 Klein base model, whose negative the wrapper encodes with the pipeline's ``encode_prompt`` and
            sends as ``negative_prompt_embeds``.
        last_negative_prompts: The negatives sent by the latest call (see :class:`NegOptPipelineOutput`), also after
            a ``return_dict=False`` call, whose tuple has no room for them. One attribute per wrapper: with threads,
            read ``output.negative_prompts`` instead.
        last_negative_guidance: How the latest call's negative acted (``"cfg"``, ``"nag"`` or None).

    Raises:
        ValueError: If the pipeline's ``__call__`` has no ``negative_prompt`` parameter (the message says why
            for a family known to take none, such as Flux.2), ``combine``, ``default_negative``,
            ``prompt_weighting`` or ``negative_guidance`` is unknown, or ``prompt_weighting`` does not support the
            pipeline's family.
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
        default_negative: str = "merge",
        negative_guidance: str = "auto",
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
        # Flux.2 Klein base takes its negative as embeddings only: the wrapper encodes it (no text slot to fill).
        encodes_negative = takes_negative_embeds(pipeline)
        slots = () if encodes_negative else negative_slots(pipeline)
        combine = check_combine(combine)
        prompt_weighting = check_weighting(prompt_weighting, pipeline)
        default_negative = check_default_negative(default_negative)
        negative_guidance = check_negative_guidance(negative_guidance)
        kind = "video" if is_video_pipeline(pipeline) else "image"
        negative_prompt_generator = load_negative_prompt_generator(negative_prompt_generator, kind)
        family = family_of(pipeline)
        if family is not None and family.note:
            warnings.warn(family.note.format(name=type(pipeline).__name__), UserWarning, stacklevel=2)

        def default(name: str) -> Any:
            param = parameters.get(name)
            return None if param is None or param.default is inspect.Parameter.empty else param.default

        object.__setattr__(self, "pipeline", pipeline)
        self.negative_prompt_generator = negative_prompt_generator
        self.combine = combine
        self.fit_to_tokenizer = bool(fit_to_tokenizer)
        self.prompt_weighting = prompt_weighting
        self.default_negative = default_negative
        self.negative_guidance = negative_guidance
        self.last_negative_guidance: str | None = None
        self._pipeline_default = pipeline_default_negative(pipeline)
        self.last_negative_prompts: list[str] | None = None
        self.negative_slots = slots
        self._encodes_negative = encodes_negative
        self._positional = tuple(
            name
            for name, p in parameters.items()
            if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        )
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
        default_negative: str = "merge",
        negative_guidance: str = "auto",
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
            default_negative: As in :class:`NegOptPipeline`.
            negative_guidance: As in :class:`NegOptPipeline`.
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
            default_negative=default_negative,
            negative_guidance=negative_guidance,
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
            value = check_combine(value)
        elif name == "prompt_weighting":
            value = check_weighting(value, self.pipeline)
        elif name == "default_negative":
            value = check_default_negative(value)
        elif name == "negative_guidance":
            value = check_negative_guidance(value)
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
            f"  negative_guidance={self.negative_guidance!r},\n"
            f"  negative_slots={self.negative_slots},\n"
            ")"
        )

    # -- the call -------------------------------------------------------------------------------------------------

    def __call__(
        self,
        *args: Any,
        combine: str | None = None,
        prompt_weighting: str | None = _UNSET,
        negative_guidance: str | None = None,
        nag_scale: float | None = None,
        nag_tau: float | None = None,
        nag_alpha: float | None = None,
        nag_end: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call the wrapped pipeline with its negative prompts written for it.

        Takes the wrapped pipeline's own arguments (positional ones bind to its parameters in order) and returns its
        output. See :class:`NegOptPipeline` for what happens to ``negative_prompt`` and the other slots.

        Args:
            *args: Positional arguments of the wrapped pipeline's ``__call__`` (``prompt`` first for most).
            combine: Overrides the wrapper's ``combine`` for this call.
            prompt_weighting: Overrides the wrapper's ``prompt_weighting`` for this call (None included).
            negative_guidance: Overrides the wrapper's ``negative_guidance`` for this call.
            nag_scale: NAG's scale (>= 1; 1: no change). NAG's knobs default to the pipeline family's
                (:data:`~negopt.pipeline.guidance.families.NAG_DEFAULTS`).
            nag_tau: NAG's norm-ratio limit (>= 1).
            nag_alpha: NAG's blend weight, in [0, 1].
            nag_end: The fraction of the steps NAG guides, in (0, 1].
            **kwargs: Keyword arguments of the wrapped pipeline's ``__call__``.

        Returns:
            What the wrapped pipeline returns. With ``return_dict=True`` (the default) it is the pipeline's output
            object with ``negative_prompts``, ``negative_prompt``, ``prompt_weighting`` and ``negative_guidance``
            set (see :class:`NegOptPipelineOutput`); with ``return_dict=False`` it is the pipeline's tuple, and the
            negatives are in :attr:`last_negative_prompts`.

        Raises:
            ValueError: If ``prompt`` and ``negative_prompt`` are lists of different lengths; if ``prompt_embeds`` is
                given without ``prompt``, ``negative_prompt`` or ``negative_prompt_embeds``, or with
                ``prompt_weighting``; if the generator returns the wrong number of negatives; if a weight in A1111
                syntax is one A1111 itself fails on (``(x:1.2.3)``; the ones it reads leniently warn, see
                :func:`negopt.text.parse_attention`); on NAG's errors (:func:`negopt.pipeline.guidance.guided_call`).
            TypeError: If a prompt or negative prompt is not a str or a list of str, or the generator does not return
                a list of str.
        """
        weighting = (
            self.prompt_weighting if prompt_weighting is _UNSET else check_weighting(prompt_weighting, self.pipeline)
        )
        guidance = self.negative_guidance if negative_guidance is None else check_negative_guidance(negative_guidance)
        kwargs = self._bind(args, kwargs)
        call_kwargs, negatives = self._prepare(kwargs, combine, weighting)
        if self._encodes_negative and "negative_prompt" in call_kwargs:
            # Only a None is left here (text is encoded in _prepare); the pipeline has no such parameter.
            call_kwargs = {k: v for k, v in call_kwargs.items() if k != "negative_prompt"}
        self.last_negative_prompts = negatives
        negative = negatives is not None or kwargs.get("negative_prompt_embeds") is not None
        nag = {"nag_scale": nag_scale, "nag_tau": nag_tau, "nag_alpha": nag_alpha, "nag_end": nag_end}
        output, used = guided_call(self.pipeline, call_kwargs, guidance, negative, bool(weighting or negatives), **nag)
        self.last_negative_guidance = used
        if not isinstance(output, tuple):
            if negatives is None:
                form = None
            elif weighting is None and not self._encodes_negative:
                form = call_kwargs["negative_prompt"]
            else:
                form = negatives[0] if isinstance(kwargs.get("prompt"), str) else list(negatives)
            try:
                output.negative_prompts = negatives
                output.negative_prompt = form
                output.prompt_weighting = weighting
                output.negative_guidance = used
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
        combine = self.combine if combine is None else check_combine(combine)
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
            if self._encodes_negative and kwargs.get("negative_prompt") is not None:
                raise ValueError(
                    "Cannot forward both `negative_prompt` and `negative_prompt_embeds`: pass one of them (the "
                    f"wrapper encodes `negative_prompt` for {type(self.pipeline).__name__} itself)."
                )
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
            prompts = as_text_list(prompt, "prompt")
            batch = len(prompts)
            as_list = not isinstance(prompt, str)
        users = per_prompt(user, batch, "negative_prompt")
        if users is None and self._pipeline_default is not None and combine != "generated":
            # The pipeline would fill its own default negative (Cosmos): it is the caller's unless they say otherwise.
            if self.default_negative == "keep":
                combine = "user"
            if self.default_negative != "replace":
                users = [self._pipeline_default] * batch

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
            return encode_call(self.pipeline, kwargs, weighting, prompts, negatives), negatives
        if negatives is None:
            return kwargs, None

        out = dict(kwargs)
        receiving = ["negative_prompt"]
        for slot in self.negative_slots[1:]:
            own = kwargs.get(slot)
            if own is None:
                receiving.append(slot)
            elif as_list:
                out[slot] = per_prompt(own, batch, slot)  # a str for one slot breaks Flux's T5 batch otherwise
        if self.fit_to_tokenizer:
            negatives = self._fit(negatives, receiving, kwargs, n_user)
        if self._encodes_negative:
            out.pop("negative_prompt", None)  # the caller's text, now in the negatives; the pipeline takes none
            out["negative_prompt_embeds"] = encode_negatives(self.pipeline, negatives, kwargs)
            return out, negatives
        value: str | list[str] = list(negatives) if as_list else negatives[0]
        for slot in receiving:
            out[slot] = value
        return out, negatives

    def _generate(self, prompts: list[str]) -> list[str]:
        return check_generated(self.negative_prompt_generator(prompts), prompts, self.negative_prompt_generator)

    def _fit(
        self, negatives: list[str], receiving: list[str], kwargs: dict[str, Any], n_user: list[int] | None = None
    ) -> list[str]:
        """Trim each negative to whole terms that fit every text encoder it is sent to, with a warning.

        ``n_user[i]`` first terms of ``negatives[i]`` are the user's; see
        :func:`negopt.pipeline.token_budget.fit_negatives`.
        """
        max_sequence_length = kwargs.get("max_sequence_length", self._max_sequence_length_default)
        if self._encodes_negative and max_sequence_length is not None:
            # Klein cuts the whole chat-templated text at max_sequence_length: the template's tokens count too.
            max_sequence_length -= chat_template_tokens(getattr(self.pipeline, "tokenizer", None))
        tokenizers = {}
        for slot in receiving:
            tokenizer = getattr(self.pipeline, _SLOT_TOKENIZER[slot], None)
            if tokenizer is not None:
                tokenizers.setdefault(id(tokenizer), tokenizer)
        limits = [(t, token_limit(t, max_sequence_length)) for t in tokenizers.values()]
        limits = [(t, limit) for t, limit in limits if limit is not None]
        convert = getattr(self.pipeline, "maybe_convert_prompt", None)
        fitted, trimmed = fit_negatives(negatives, limits, n_user, convert)
        if trimmed:
            warnings.warn(trimmed_message(fitted, trimmed, limits), stacklevel=4)
        return fitted

    def _warn_unloaded_embeddings(self, negatives: list[str]) -> None:
        tokenizers = [getattr(self.pipeline, _SLOT_TOKENIZER[slot], None) for slot in self.negative_slots]
        message = unloaded_embeddings_message(negatives, self.pipeline, tokenizers)
        if message:
            warnings.warn(message, stacklevel=4)


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
        refusal = refusal_message(inner)
        if refusal:
            raise ValueError(refusal)
        if takes_negative_embeds(inner):
            raise ValueError(
                f"{type(inner).__name__} takes no negative prompt text, only negative_prompt_embeds. "
                "NegOptPipeline(pipe) writes and encodes its negative; evaluate() and the RL trainer send the "
                "negative as text, so they need a pipeline that takes `negative_prompt` (for Flux, FluxPipeline "
                "with true_cfg_scale > 1)."
            )
        raise ValueError(
            f"{type(inner).__name__} cannot use a negative prompt: its __call__ has no `negative_prompt` "
            "parameter (the pipeline is guidance-distilled or conditions on something else), so there is no slot "
            "to fill. Call the pipeline directly, or use a pipeline class of the same model "
            "family that takes `negative_prompt` (for Flux, FluxPipeline with true_cfg_scale > 1)."
        )
    return tuple(slot for slot in NEGATIVE_SLOTS if slot in parameters)
