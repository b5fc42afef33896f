"""Command-line flags generated from config dataclasses, and ``--config FILE.yaml`` merged under them.

Each field of a config dataclass gets one flag, ``--field-name``; its help is the field's entry in the class
docstring's Google-style ``Args:`` section (the one place an option is documented) followed by its default. Values from
flags and from YAML are typed the same way, by :func:`negopt.values.coerce_value`. Only flags actually given override
the file, and the file overrides the dataclass defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import os
import re
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from negopt.values import coerce_value, field_types

__all__ = [
    "UsageError",
    "CommandConfig",
    "docstring_args",
    "add_config_flags",
    "read_yaml_config",
    "collect_settings",
    "flag_name",
    "build",
    "check_device",
    "loading",
    "setup_step",
    "EXIT_USAGE",
    "EXIT_SIGTERM",
    "EXIT_BROKEN_PIPE",
]

EXIT_USAGE = 2
EXIT_SIGTERM = 143  # 128 + SIGTERM, as a shell reports a process that SIGTERM stopped
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


class UsageError(Exception):
    """A mistake in what the user asked for, found before any work starts: one line, exit status 2."""


_SECTION = re.compile(r"^(\s*)(Args|Arguments|Attributes):\s*$")
_ENTRY = re.compile(r"^(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")


def docstring_args(cls: type) -> dict[str, str]:
    """The ``Args:`` (or ``Attributes:``) entries of a class docstring, name -> text on one line.

    Raises:
        ValueError: The class has no docstring section to read.
    """
    doc = inspect.getdoc(cls) or ""
    out: dict[str, str] = {}
    lines = doc.splitlines()
    i = 0
    while i < len(lines):
        match = _SECTION.match(lines[i])
        i += 1
        if not match:
            continue
        entry_indent = None
        name = None
        while i < len(lines):
            line = lines[i]
            if not line.strip():
                i += 1
                if i < len(lines) and lines[i].strip() and (len(lines[i]) - len(lines[i].lstrip())) <= len(match[1]):
                    break
                continue
            indent = len(line) - len(line.lstrip())
            if indent <= len(match[1]):
                break
            if entry_indent is None:
                entry_indent = indent
            entry = _ENTRY.match(line.strip()) if indent == entry_indent else None
            if entry:
                name = entry[1]
                out[name] = entry[2].strip()
            elif name is not None:
                out[name] += " " + line.strip()
            i += 1
    return out


_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr):`~?(?:[\w.]+\.)?([\w]+)`")


def plain_text(text: str) -> str:
    """Docstring markup as terminal text: ``code`` -> code, :class:`~a.B` -> B."""
    return _ROLE.sub(r"\1", text).replace("``", "")


def flag_name(key: str) -> str:
    """``learning_rate`` -> ``--learning-rate``."""
    return "--" + key.replace("_", "-")


@dataclass
class CommandConfig:
    """One config dataclass as a group of a command's flags.

    Args:
        cls: The dataclass.
        title: The flag group's title in ``--help``.
        aliases: Extra flags kept from earlier versions: flag -> field (another name for the field's flag, as
            ``--bootstrap`` for ``num_bootstrap``), or flag -> (field, value) for a flag that sets a fixed value
            (``--no-none`` sets ``include_none`` to False).
        config_only: Field -> why it has no flag (it is still a ``--config`` key).
        exclude: Fields that are neither flags nor config keys of this command (set by the command itself).
        repeatable: List fields whose flag may be given several times (``--generator a=x --generator b=y``).
        sub_flags: Extra flag -> (dict field, key, type): ``--max-new-tokens`` sets
            ``generation_kwargs['max_new_tokens']``.
    """

    cls: type
    title: str
    aliases: dict[str, str | tuple[str, Any]] = field(default_factory=dict)
    config_only: dict[str, str] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    repeatable: tuple[str, ...] = ()
    sub_flags: dict[str, tuple[str, str, type]] = field(default_factory=dict)

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.cls) if f.name not in self.exclude]

    def types(self) -> dict[str, Any]:
        return field_types(self.cls)


def _metavar(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    members = [a for a in args if a is not type(None)] if args and origin is not Literal else [annotation]
    if origin is Literal:
        return "{" + ",".join(str(a) for a in args) + "}"
    if len(members) == 1 and members[0] is not annotation:
        return _metavar(members[0])
    names = {getattr(m, "__name__", "") for m in members}
    if any(typing.get_origin(m) is dict or m is dict for m in members):
        return "KEY=VALUE,..."
    if any(typing.get_origin(m) is list for m in members):
        return "A,B,..."
    if "float" in names:
        return "X"
    if "int" in names:
        return "N"
    return "VALUE"


def _default_text(f: dataclasses.Field) -> str:
    if f.default is None:
        return ""
    if f.default is not dataclasses.MISSING:
        return f" (default: {f.default!r})"
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f" (default: {f.default_factory()!r})"  # type: ignore[misc]
    return " (required)"


def add_config_flags(parser: argparse.ArgumentParser, spec: CommandConfig, taken: set[str]) -> None:
    """Add one flag per field of ``spec.cls`` (help from its docstring), plus its aliases and sub-flags.

    ``taken`` holds the flags the parser has already (updated here): a field whose flag another config of the same
    command already added (``--seed`` in two configs, say) is set through the first one.

    Raises:
        ValueError: A field has no entry in the class docstring (it must be documented once, there).
    """
    docs = docstring_args(spec.cls)
    types = spec.types()
    group = parser.add_argument_group(spec.title)
    for f in dataclasses.fields(spec.cls):
        if f.name in spec.exclude or f.name in spec.config_only:
            continue
        if f.name not in docs:
            raise ValueError(f"{spec.cls.__name__}.{f.name} has no entry in the class docstring's Args section.")
        text = plain_text(docs[f.name] + _default_text(f)).replace("%", "%%")
        flags = [flag_name(f.name)] + [a for a, target in spec.aliases.items() if target == f.name]
        flags = [x for x in flags if x not in taken]
        if not flags:
            continue
        if types[f.name] is bool:
            negations = ["--no-" + x[2:] for x in flags if x.startswith("--")]
            flags = [x for x in flags if x not in taken and "--no-" + x[2:] not in taken]
            action = argparse.BooleanOptionalAction
            group.add_argument(*flags, dest=f.name, action=action, default=argparse.SUPPRESS, help=text)
            taken.update(negations)
        elif f.name in spec.repeatable:
            group.add_argument(
                *flags, dest=f.name, action="append", default=argparse.SUPPRESS, metavar="VALUE", help=text
            )
        else:
            metavar = _metavar(types[f.name])
            group.add_argument(*flags, dest=f.name, default=argparse.SUPPRESS, metavar=metavar, help=text)
        taken.update(flags)
    for flag, target in spec.aliases.items():
        if isinstance(target, tuple) and flag not in taken:
            name, value = target
            group.add_argument(
                flag, dest=name, action="store_const", const=value, default=argparse.SUPPRESS,
                help=f"the same as {flag_name(name)} {value}",
            )  # fmt: skip
            taken.add(flag)
    for flag, (target, key, typ) in spec.sub_flags.items():
        if flag in taken:
            continue
        taken.add(flag)
        group.add_argument(
            flag, dest=f"{target}.{key}", type=str, default=argparse.SUPPRESS, metavar=_metavar(typ),
            help=f"sets {target}[{key!r}]",
        )  # fmt: skip


def read_yaml_config(path: str) -> dict[str, Any]:
    """Read a ``--config`` YAML file into a dict with ``-`` in keys turned into ``_``.

    Raises:
        UsageError: The file cannot be read, is not YAML, or is not a mapping.
        ImportError: PyYAML is missing.
    """
    try:
        import yaml
    except ImportError as e:
        raise ImportError('--config needs PyYAML: pip install "negopt[train]"') from e
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise UsageError(f"cannot read --config {path!r}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise UsageError(f"--config {path!r} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--config {path!r} must hold a mapping of keys to values, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def collect_settings(
    args: argparse.Namespace, specs: Iterable[CommandConfig], config_path: str | None = None
) -> list[dict[str, Any]]:
    """The typed settings of each spec: its dataclass defaults, under the ``--config`` file, under the flags given.

    Returns:
        One dict per spec (only the keys the file or the flags set), values converted to their field types.

    Raises:
        UsageError: An unknown config key (the error lists the valid ones) or a value of the wrong type.
    """
    specs = list(specs)
    owner: dict[str, int] = {}
    for n, spec in enumerate(specs):
        for key in spec.keys():
            owner.setdefault(key, n)
    out: list[dict[str, Any]] = [{} for _ in specs]
    given = vars(args)
    if config_path:
        data = read_yaml_config(config_path)
        unknown = sorted(set(data) - set(owner))
        if unknown:
            raise UsageError(f"--config {config_path!r} has unknown key(s) {unknown}; valid keys: {', '.join(owner)}")
        for key, value in data.items():
            out[owner[key]][key] = _typed(specs[owner[key]], key, value, f"--config {config_path}")
    for dest, value in given.items():
        if "." in dest:  # a sub-flag: one key of a dict field
            target, key = dest.split(".", 1)
            n = owner.get(target)
            if n is None:
                continue
            typ = next(t for flag, (tg, k, t) in specs[n].sub_flags.items() if tg == target and k == key)
            current = dict(out[n].get(target) or {})
            current[key] = _coerce_flag(flag_name(key), value, typ)
            out[n][target] = current
        elif dest in owner:
            spec = specs[owner[dest]]
            typed = _typed(spec, dest, value, "", shown=flag_name(dest))
            if isinstance(typed, dict) and isinstance(out[owner[dest]].get(dest), dict):
                typed = {**out[owner[dest]][dest], **typed}  # a dict flag adds keys to the file's dict
            out[owner[dest]][dest] = typed
    return out


def _typed(spec: CommandConfig, key: str, value: Any, where: str, shown: str | None = None) -> Any:
    try:
        return coerce_value(shown or key, value, spec.types()[key], where=where, field=key)
    except ValueError as e:
        raise UsageError(str(e).rstrip(".")) from None


def _coerce_flag(flag: str, value: Any, typ: type) -> Any:
    try:
        return coerce_value(flag, value, typ)
    except ValueError as e:
        raise UsageError(str(e).rstrip(".")) from None


def build(cls: type, settings: Mapping[str, Any]) -> Any:
    """``cls(**settings)``, its validation errors turned into usage errors (found before any work starts; the
    command's name is the prefix of every usage error, so it is not repeated here)."""
    try:
        return cls(**settings)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from e


# ------------------------------------------------------------------------------- setup: before any work starts
def check_device(device: str | None, flag: str = "--device") -> None:
    """Refuse a device string torch cannot parse, or a device this machine's torch cannot use, before loading.

    Raises:
        UsageError: With the fix.
    """
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"{flag} {device!r} is not a device; use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"{flag} {device!r}: this torch has no usable CUDA device (torch.cuda.is_available() is False); "
                "use --device cpu, or install a CUDA build of torch on a machine with a GPU"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise UsageError(f"{flag} {device!r}: there are only {torch.cuda.device_count()} CUDA device(s)")
    elif parsed.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError(f"{flag} {device!r}: MPS is not available on this machine; use --device cpu")


def _corrupt_safetensors(name: str) -> list[str]:
    """The ``.safetensors`` files under a local folder (or the file itself) that safetensors cannot open."""
    if not os.path.exists(name):
        return []
    from negopt.hub import safetensors_error

    files = [name] if os.path.isfile(name) else []
    for root, _, names in os.walk(name) if os.path.isdir(name) else []:
        files += [os.path.join(root, n) for n in names if n.endswith(".safetensors")]
    return [path for path in sorted(files) if safetensors_error(path)]


def _corrupt_hint(error: BaseException, names: Iterable[str]) -> str:
    """For a safetensors error, the corrupt weights files under the local folders ``names`` that the error does not
    name already ("" if none)."""
    if "safetensor" not in type(error).__name__.lower() and "header" not in str(error).lower():
        return ""
    bad = [path for name in names for path in _corrupt_safetensors(os.fspath(name)) if path not in str(error)]
    return f"; corrupt or incomplete weights file(s): {', '.join(bad)} (download or save it again)" if bad else ""


def _is_safetensors_error(error: BaseException) -> bool:
    return "safetensor" in type(error).__name__.lower()


@contextlib.contextmanager
def loading(flag: str, name: str) -> Iterator[None]:
    """Turn a failure to load a model (a missing folder, a corrupt weights file, a hub error) into one line that
    names the flag, the model and, for a corrupt safetensors file, the file."""
    try:
        yield
    except (UsageError, ImportError, KeyboardInterrupt):
        raise
    except Exception as e:
        raise UsageError(f"cannot load {flag} {name!r}: {type(e).__name__}: {e}{_corrupt_hint(e, [name])}") from e


@contextlib.contextmanager
def setup_step(what: str | None = None, models: Iterable[str] = ()) -> Iterator[None]:
    """A config or trainer being built from the user's settings (loading ``models``): its ValueError, TypeError,
    OSError or safetensors error is a usage error, with any corrupt weights file under ``models`` named. ``what``
    prefixes the message (None for the command itself, whose name already starts every usage error)."""
    try:
        yield
    except UsageError:
        raise
    except Exception as e:
        if not isinstance(e, (ValueError, TypeError, OSError)) and not _is_safetensors_error(e):
            raise
        hint = _corrupt_hint(e, [m for m in models if isinstance(m, str)])
        raise UsageError(f"{what}: {e}{hint}" if what else f"{e}{hint}") from e


def common_flags(parser: argparse.ArgumentParser, specs: list[CommandConfig], taken: set[str] | None = None) -> None:
    """``--config``, ``--debug`` and one flag per config field of ``specs``."""
    parser.add_argument("--config", metavar="FILE.yaml", help="a YAML file of this command's keys; flags override it")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
    taken = set(taken or ()) | {"--config", "--debug", "-h", "--help"}
    for spec in specs:
        add_config_flags(parser, spec, taken)
