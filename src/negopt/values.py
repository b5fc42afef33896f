"""Typed values for configs read from text: YAML files, JSON files and command-line flags.

PyYAML reads ``1e-4`` as a string and ``"no"`` is a non-empty (so truthy) string; a flag is always a string. Before a
config dataclass sees such a value, :func:`coerce_value` converts it to the field's annotated type or rejects it
with an error that names the key, the value and the type expected. Booleans accept only real booleans and the usual
spellings (true/false, yes/no, on/off, 1/0), never any other string.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

__all__ = ["TRUE_STRINGS", "FALSE_STRINGS", "NONE_STRINGS", "coerce_value", "coerce_fields", "field_types"]

TRUE_STRINGS = ("true", "yes", "on", "1")
FALSE_STRINGS = ("false", "no", "off", "0")
NONE_STRINGS = ("none", "null", "~")


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
        return dict(value)
    return value  # an annotation this module does not know (a class, say): the config checks it


def _parse_mapping(text: str) -> Any:
    """``'{a: 1}'`` / ``'{"a": 1}'`` / ``'a=1,b=2'`` as a dict (values typed as YAML types them)."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML ships with the train extra
        yaml = None
    text = text.strip()
    if not text.startswith("{") and "=" in text:
        text = "{" + ", ".join(part.replace("=", ": ", 1) for part in text.split(",")) + "}"
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


def coerce_value(key: str, value: Any, annotation: Any, *, where: str = "") -> Any:
    """Convert ``value`` to ``annotation`` or raise a clear error.

    Args:
        key: The config key, named in the error.
        value: The value as read (a string from a flag, whatever YAML/JSON gave).
        annotation: The field's resolved type (``int``, ``float | None``, ``Literal[...]``, ``str | list[str]``...).
        where: Where the value came from, for the error (``"--config run.yaml"``, say).

    Returns:
        The value, typed.

    Raises:
        ValueError: The value cannot be read as that type (booleans: only true/false, yes/no, on/off, 1/0).
    """
    try:
        return _coerce(value, annotation)
    except _Reject:
        source = f" in {where}" if where else ""
        raise ValueError(
            f"{key}{source}: {value!r} is not a valid {type_name(annotation)}"
            + (" (booleans are true/false, yes/no, on/off or 1/0)" if "bool" in type_name(annotation) else "")
            + "."
        ) from None


def coerce_fields(cls: type, data: dict[str, Any], *, where: str = "") -> dict[str, Any]:
    """:func:`coerce_value` for each key of ``data`` that is a field of the dataclass ``cls`` (others untouched)."""
    hints = field_types(cls)
    return {k: coerce_value(k, v, hints[k], where=where) if k in hints else v for k, v in data.items()}
