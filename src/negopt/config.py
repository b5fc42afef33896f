"""``negopt_config.json``: what a saved generator needs beyond the transformers files.

The prompt template, the generation defaults, and the negopt version that wrote it. Saved beside the model and
tokenizer by ``NegOptGenerator.save_pretrained`` and by the trainers; read back by ``NegOptGenerator.from_pretrained``.
A config written by a newer negopt may carry keys this version does not know: they are ignored with a warning.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CONFIG_NAME",
    "NegOptConfig",
    "DEFAULT_GENERATION_KWARGS",
    "DEFAULT_SEQ2SEQ_TEMPLATE",
    "DEFAULT_CAUSAL_TEMPLATE",
]

CONFIG_NAME = "negopt_config.json"

DEFAULT_SEQ2SEQ_TEMPLATE = "{prompt}"
DEFAULT_CAUSAL_TEMPLATE = "Prompt: {prompt}\nNegative prompt:"

# Greedy with repetition control: negative prompts are lists of short terms, and small models loop without it.
DEFAULT_GENERATION_KWARGS: dict[str, Any] = {
    "max_new_tokens": 64,
    "num_beams": 1,
    "do_sample": False,
    "no_repeat_ngram_size": 3,
    "repetition_penalty": 1.2,
}


@dataclass
class NegOptConfig:
    """The negopt side of a saved generator.

    Args:
        model_type: ``"seq2seq"`` (T5, Flan-T5, BART) or ``"causal"`` (GPT-2 style).
        prompt_template: How a user prompt becomes the model input; must contain ``{prompt}``.
        generation_kwargs: Defaults passed to ``model.generate``, over negopt's own (greedy, ``max_new_tokens=64``,
            ``no_repeat_ngram_size=3``, ``repetition_penalty=1.2``): keys given here replace those keys only; set
            ``no_repeat_ngram_size=0`` or ``repetition_penalty=1.0`` to turn repetition control off. Call-time keyword
            arguments override both.
        max_input_tokens: Inputs longer than this many tokens (at least 1) are truncated with a warning (None: the
            tokenizer's limit).
        base_model_name_or_path: The base model a LoRA adapter was trained on, for the model card.
        negopt_version: The negopt version that wrote the config.
    """

    model_type: Literal["seq2seq", "causal"] = "seq2seq"
    prompt_template: str | None = None
    generation_kwargs: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_GENERATION_KWARGS))
    max_input_tokens: int | None = None
    base_model_name_or_path: str | None = None
    negopt_version: str | None = None

    def __post_init__(self) -> None:
        if self.model_type not in ("seq2seq", "causal"):
            raise ValueError(f"model_type must be 'seq2seq' or 'causal', got {self.model_type!r}.")
        if self.prompt_template is None:
            self.prompt_template = (
                DEFAULT_SEQ2SEQ_TEMPLATE if self.model_type == "seq2seq" else DEFAULT_CAUSAL_TEMPLATE
            )
        if "{prompt}" not in self.prompt_template:
            raise ValueError(
                f"prompt_template must contain '{{prompt}}', got {self.prompt_template!r}. "
                "Example: 'Write a negative prompt for: {prompt}'."
            )
        limit = self.max_input_tokens
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(
                f"max_input_tokens must be a positive number of tokens, or None for the tokenizer's own limit; got "
                f"{limit!r}. (0 does not mean 'no limit': leave it unset, or pass the model's real input length.)"
            )
        if not isinstance(self.generation_kwargs, dict):
            raise TypeError(f"generation_kwargs must be a dict, got {type(self.generation_kwargs).__name__}.")
        # Given keys override the defaults; the rest (repetition control above all) stay. To turn a default off,
        # set it to its neutral value (no_repeat_ngram_size=0, repetition_penalty=1.0).
        self.generation_kwargs = {**DEFAULT_GENERATION_KWARGS, **self.generation_kwargs}
        if self.negopt_version is None:
            from negopt import __version__

            self.negopt_version = __version__

    def format_prompt(self, prompt: str) -> str:
        """The model input for a user prompt."""
        return self.prompt_template.replace("{prompt}", prompt)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        """Write ``negopt_config.json`` into ``save_directory`` (created if missing); returns the file's path."""
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, CONFIG_NAME)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = CONFIG_NAME) -> NegOptConfig:
        """Build a config; keys this negopt version does not know are ignored with a warning.

        Values are converted to their field's type (``"128"`` for ``max_input_tokens`` becomes 128), and the
        entries of ``generation_kwargs`` to the types transformers' ``GenerationConfig`` documents (``"8"`` for
        ``max_new_tokens`` becomes 8), or rejected.

        Args:
            data: The config's keys and values.
            where: Where ``data`` came from, named in errors (the file's path, say).

        Raises:
            ValueError: A value that cannot be read as its field's type; the error names ``where``, the key (or the
                ``generation_kwargs`` entry), the value and the type expected.
        """
        from negopt.values import coerce_fields

        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            warnings.warn(
                f"{CONFIG_NAME} has keys this negopt version does not know and ignores: {unknown} "
                f"(written by negopt {data.get('negopt_version', '?')}). Upgrade negopt to use them.",
                UserWarning,
                stacklevel=3,
            )
        return cls(**coerce_fields(cls, {k: v for k, v in data.items() if k in known}, where=where))

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> NegOptConfig:
        """Read a ``negopt_config.json``.

        Raises:
            ValueError: The file is not a JSON object, or a value has the wrong type (the message names the file,
                the key, the value and the type expected).
        """
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} is not valid JSON ({e}); delete it or fix it.") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}.")
        return cls.from_dict(data, where=os.fspath(path))
