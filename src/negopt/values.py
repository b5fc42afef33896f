"""Typed values for configs read from text: YAML files, JSON files and command-line flags.

PyYAML reads ``1e-4`` as a string and ``"no"`` is a non-empty (so truthy) string; a flag is always a string. Before a
config dataclass sees such a value, :func:`coerce_value` converts it to the field's annotated type or rejects it
with an error that names the key, the value and the type expected. Booleans accept only real booleans and the usual
spellings (true/false, yes/no, on/off, 1/0), never any other string.

The settings mappings (``generation_kwargs``, ``pipeline_kwargs``, ``training_args``) are typed too, entry by entry
(:func:`coerce_kwargs`): an entry whose target type is known (transformers' ``GenerationConfig`` and
``Seq2SeqTrainingArguments`` document theirs; diffusers' pipelines share the names in :data:`PIPELINE_KWARG_TYPES`)
is converted to it as a field is; any other text gets its natural type (:func:`natural_value`: ``"7.5"`` -> 7.5,
``"1e-4"`` -> 0.0001, ``"true"`` -> True, ``"none"`` -> None), and text that is not a number stays text (``"1girl"``).
A pipeline entry whose name holds ``prompt`` is always text.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

__all__ = [
    "TRUE_STRINGS",
    "FALSE_STRINGS",
    "NONE_STRINGS",
    "MAX_SEED",
    "PIPELINE_KWARG_TYPES",
    "check_seed",
    "coerce_value",
    "coerce_fields",
    "coerce_kwargs",
    "field_types",
    "kwarg_types",
    "natural_value",
]

TRUE_STRINGS = ("true", "yes", "on", "1")
FALSE_STRINGS = ("false", "no", "off", "0")
NONE_STRINGS = ("none", "null", "~")

#: The largest seed: numpy's seeds are 32-bit (transformers' ``set_seed`` seeds numpy), torch's take any of them.
MAX_SEED = 2**32 - 1

#: Call arguments that diffusers' pipelines share, with their types (a pipeline's own signature may add more).
PIPELINE_KWARG_TYPES: dict[str, Any] = {
    "num_inference_steps": int,
    "height": int,
    "width": int,
    "num_frames": int,
    "clip_skip": int,
    "max_sequence_length": int,
    "guidance_scale": float,
    "true_cfg_scale": float,
    "guidance_rescale": float,
    "image_guidance_scale": float,
    "eta": float,
    "strength": float,
    "denoising_start": float,
    "denoising_end": float,
    "aesthetic_score": float,
    "negative_aesthetic_score": float,
}

_INT_TEXT = re.compile(r"[+-]?\d(?:_?\d)*")
_FLOAT_TEXT = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")


def check_seed(name: str, value: Any, *, optional: bool = False) -> None:
    """Raise a ValueError unless ``value`` is an int seed in ``[0, MAX_SEED]`` (or None, when ``optional``).

    Raises:
        ValueError: The message names ``name``, the value and the range.
    """
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ValueError(
            f"{name} must be an int from 0 to {MAX_SEED} (2**32 - 1, the range numpy and torch both take)"
            + (" or None" if optional else "")
            + f", got {value!r}."
        )


class _Reject(Exception):
    """One member of a union did not take the value (internal: the caller raises the user-facing error)."""


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type hints of a dataclass's fields (works with ``from __future__ import annotations``)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def type_name(annotation: Any) -> str:
    """A readable name for an annotation: ``int``, ``int or None``, ``one of 'no', 'fp16', 'bf16'``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if annotation is type(None):
        return "None"
    if origin is not None:
        inner = ", ".join(type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation))


def _coerce(value: Any, annotation: Any) -> Any:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return value
    if annotation is type(None):
        if value is None or (isinstance(value, str) and value.strip().lower() in NONE_STRINGS):
            return None
        raise _Reject
    if origin in (Union, types.UnionType):
        # None first (so "none" means None, not the string "none"), then a list (a "q,v" string splits only when a
        # list is allowed and the string has a comma), then the members in order.
        members = sorted(args, key=lambda a: (a is not type(None), typing.get_origin(a) is not list))
        for member in members:
            if typing.get_origin(member) is list and isinstance(value, str) and "," not in value:
                continue
            try:
                return _coerce(value, member)
            except _Reject:
                continue
        raise _Reject
    if origin is Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and not isinstance(choice, str) and str(choice) == value):
                return choice
        raise _Reject
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in TRUE_STRINGS:
            return True
        if isinstance(value, str) and value.strip().lower() in FALSE_STRINGS:
            return False
        raise _Reject
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""))
            except ValueError:
                raise _Reject from None
        raise _Reject
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise _Reject from None
        raise _Reject
    if annotation is str:
        if isinstance(value, str):
            return value
        raise _Reject
    if origin is list:
        (item,) = args or (Any,)
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)) or not value:
            raise _Reject
        return [_coerce(v, item) for v in value]
    if origin is dict or annotation is dict:
        if isinstance(value, str):
            value = _parse_mapping(value)
        if not isinstance(value, dict):
            raise _Reject
        item = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, item) for k, v in value.items()}
    return value  # an annotation this module does not know (a class, say): the config checks it


def _parse_mapping(text: str) -> Any:
    """``'a=1,b=2'`` as a dict of text values (typed later, by their field: see :func:`coerce_kwargs`);
    ``'{a: 1}'`` / ``'{"a": 1}'`` as YAML (or JSON) reads it."""
    text = text.strip()
    if not text.startswith("{") and "=" in text:
        pairs = [part.partition("=") for part in text.split(",") if part.strip()]
        if any(not sep or not key.strip() for key, sep, _ in pairs):
            raise _Reject
        return {key.strip(): value.strip() for key, _, value in pairs}
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML ships with the train extra
        yaml = None
    if yaml is not None:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            raise _Reject from None
    import json

    try:
        return json.loads(text)
    except ValueError:
        raise _Reject from None


def _error(key: str, value: Any, annotation: Any, where: str) -> ValueError:
    source = f" in {where}" if where else ""
    return ValueError(
        f"{key}{source}: {value!r} is not a valid {type_name(annotation)}"
        + (" (booleans are true/false, yes/no, on/off or 1/0)" if "bool" in type_name(annotation) else "")
        + "."
    )


def coerce_value(key: str, value: Any, annotation: Any, *, where: str = "", field: str | None = None) -> Any:
    """Convert ``value`` to ``annotation`` or raise a clear error.

    A settings mapping (``field`` one of ``generation_kwargs``, ``pipeline_kwargs``, ``training_args``) also has its
    entries typed, by :func:`coerce_kwargs`.

    Args:
        key: The config key, named in the error (a flag, say).
        value: The value as read (a string from a flag, whatever YAML/JSON gave).
        annotation: The field's resolved type (``int``, ``float | None``, ``Literal[...]``, ``str | list[str]``...).
        where: Where the value came from, for the error (``"--config run.yaml"``, say).
        field: The field's name, when ``key`` shows it otherwise (``--pipeline-kwargs`` for ``pipeline_kwargs``).

    Returns:
        The value, typed.

    Raises:
        ValueError: The value cannot be read as that type (booleans: only true/false, yes/no, on/off, 1/0); for a
            settings mapping, an entry that cannot be read as its known type (the error names the entry).
    """
    try:
        typed = _coerce(value, annotation)
    except _Reject:
        raise _error(key, value, annotation, where) from None
    name = field or key
    if isinstance(typed, dict) and name in _KWARGS_FIELDS:
        typed = coerce_kwargs(key, typed, kwarg_types(name, typed), where=where, text_keys=name == "pipeline_kwargs")
    return typed


def coerce_fields(cls: type, data: dict[str, Any], *, where: str = "") -> dict[str, Any]:
    """:func:`coerce_value` for each key of ``data`` that is a field of the dataclass ``cls`` (others untouched)."""
    hints = field_types(cls)
    return {k: coerce_value(k, v, hints[k], where=where) if k in hints else v for k, v in data.items()}


# ------------------------------------------------------------------------------------------- settings mappings
def natural_value(value: Any) -> Any:
    """Text typed by its look, as YAML 1.2 would read it unquoted: an integer, a number (``1e-4`` too, which PyYAML
    leaves as text), true/false (also yes/no, on/off), none/null; anything else, ``"1girl"`` say, stays text. Lists
    and mappings are typed item by item; other values are returned as they are."""
    if isinstance(value, list):
        return [natural_value(v) for v in value]
    if isinstance(value, dict):
        return {k: natural_value(v) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    text = value.strip()
    if _INT_TEXT.fullmatch(text):
        return int(text.replace("_", ""))
    if _FLOAT_TEXT.fullmatch(text):
        return float(text)
    lowered = text.lower()
    if lowered in TRUE_STRINGS and not lowered.isdigit():
        return True
    if lowered in FALSE_STRINGS and not lowered.isdigit():
        return False
    if lowered in NONE_STRINGS:
        return None
    return value


def _coerce_entry(value: Any, annotation: Any) -> Any:
    """As :func:`_coerce`, but text tries a union's other members before ``str``: ``"true"`` for ``str | bool`` is
    True, ``"2"`` for ``int | str`` is 2."""
    if not isinstance(value, str) or typing.get_origin(annotation) not in (Union, types.UnionType):
        return _coerce(value, annotation)
    members = typing.get_args(annotation)
    ordered = sorted(members, key=lambda a: (a is not type(None), a is str, typing.get_origin(a) is list))
    for member in ordered:
        if typing.get_origin(member) is list and "," not in value:
            continue
        try:
            return _coerce(value, member)
        except _Reject:
            continue
    raise _Reject


def coerce_kwargs(
    key: str,
    kwargs: Mapping[str, Any],
    types: Mapping[str, Any] | None = None,
    *,
    where: str = "",
    text_keys: bool = False,
) -> dict[str, Any]:
    """Type the entries of a settings mapping: by ``types`` where it names the entry, else by :func:`natural_value`.

    Args:
        key: The mapping's name, for the error (``generation_kwargs``).
        kwargs: The mapping as read.
        types: Entry name -> annotation (``int``, ``float | None``...), for the entries whose type is known.
        where: Where the mapping came from, for the error.
        text_keys: Leave entries whose name holds ``prompt`` as they are (a pipeline's prompts are text).

    Returns:
        A new dict, typed.

    Raises:
        ValueError: An entry cannot be read as its known type; the message names ``key[entry]``, the value and the
            type expected.
    """
    types = types or {}
    out: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name in types:
            try:
                typed = _coerce_entry(value, types[name])
            except _Reject:
                raise _error(f"{key}[{name!r}]", value, types[name], where) from None
            # A mapping entry (``lr_scheduler_kwargs``, a DeepSpeed config) has entries of unknown types.
            out[name] = natural_value(typed) if isinstance(typed, dict) else typed
        elif text_keys and "prompt" in str(name):
            out[name] = value
        else:
            out[name] = natural_value(value)
    return out


_KWARGS_FIELDS = ("generation_kwargs", "pipeline_kwargs", "training_args")
_SCALARS = {"int": int, "float": float, "bool": bool, "str": str}
_SCALAR_LISTS = {f"list[{name}]": list[t] for name, t in _SCALARS.items()}


@functools.cache
def _generation_kwarg_types() -> dict[str, Any]:
    """The types transformers' ``GenerationConfig`` documents for its arguments, where they are scalars or lists of
    scalars (each may also be None); an argument documented with another type (a tuple, a class) is left out, so
    typed by its look."""
    try:
        from transformers import GenerationConfig
    except ImportError:  # pragma: no cover - transformers is a dependency
        return {}
    out: dict[str, Any] = {}
    for match in re.finditer(r"^\s+(\w+) \((.*)\):\s*$", GenerationConfig.__doc__ or "", re.M):
        spec = match[2].split(", *optional*")[0].split(", default")[0]
        names = [part.strip().strip("`") for part in spec.split(" or ")]
        found = [_SCALARS.get(n) or _SCALAR_LISTS.get(n) for n in names]
        if found and all(found):
            out[match[1]] = Union[tuple(found) + (type(None),)]  # noqa: UP007 - a union built at run time
    return out


@functools.cache
def _training_args_types() -> dict[str, Any]:
    try:
        from transformers import Seq2SeqTrainingArguments
    except ImportError:  # pragma: no cover - transformers is a dependency
        return {}
    return field_types(Seq2SeqTrainingArguments)


def kwarg_types(field: str, kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The known entry types of the settings mapping ``field``: ``generation_kwargs`` (transformers'
    ``GenerationConfig``), ``training_args`` (``Seq2SeqTrainingArguments``' fields) or ``pipeline_kwargs``
    (:data:`PIPELINE_KWARG_TYPES`); ``{}`` for anything else. transformers is imported only when ``kwargs`` (if
    given) has entries to type."""
    if field == "pipeline_kwargs":
        return dict(PIPELINE_KWARG_TYPES)
    if kwargs is not None and not kwargs:
        return {}
    if field == "generation_kwargs":
        return _generation_kwarg_types()
    if field == "training_args":
        return _training_args_types()
    return {}
