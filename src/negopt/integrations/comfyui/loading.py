"""Generators for the ComfyUI nodes, loaded once per source and settings.

ComfyUI runs a node again whenever the graph is queued with changed inputs, and drops its own cache of outputs when
memory is short; loading a language model each time would cost seconds a queue. :func:`load_generator` keeps the
last :data:`MAX_CACHED` generators, keyed by everything that decides what is loaded: the source, its revision, the
device, ``local_files_only``, and for a local folder the names, sizes and modification times of its files (so a
generator saved again into the same folder is loaded again).
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["BUILTIN", "DEVICES", "MAX_CACHED", "cache_key", "clear_cache", "load_generator", "resolve_source"]

BUILTIN = "builtin"
DEVICES = ("cpu", "cuda", "mps")
MAX_CACHED = 3

_cache: OrderedDict[tuple, Callable] = OrderedDict()
_lock = threading.Lock()


def _comfyui_models_dir() -> str | None:
    """ComfyUI's ``models`` folder when this runs inside ComfyUI (its ``folder_paths`` module is loaded), else None.

    The module is only read when ComfyUI already imported it: negopt never imports ComfyUI.
    """
    folder_paths = sys.modules.get("folder_paths")
    models_dir = getattr(folder_paths, "models_dir", None)
    return models_dir if isinstance(models_dir, str) else None


def resolve_source(model: str) -> str:
    """:data:`BUILTIN`, an absolute local folder, or the hub id as given.

    A name is a local folder when it is one (``~`` expanded), or, inside ComfyUI, when ``ComfyUI/models/negopt/<name>``
    is one. Anything else is taken for a hub id, which ``NegOptGenerator.from_pretrained`` checks.

    Raises:
        TypeError: ``model`` is not a str.
    """
    if not isinstance(model, str):
        raise TypeError(f"model must be a str (a folder, a hub id or {BUILTIN!r}), got {type(model).__name__}.")
    name = model.strip()
    if name in ("", BUILTIN):
        return BUILTIN
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        return os.path.abspath(path)
    models_dir = _comfyui_models_dir()
    if models_dir is not None and os.path.isdir(os.path.join(models_dir, "negopt", name)):
        return os.path.abspath(os.path.join(models_dir, "negopt", name))
    return name


def _folder_state(folder: str) -> tuple:
    """``(name, size, mtime_ns)`` of each file in ``folder`` (not its subfolders): changes when it is saved again."""
    state = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file():
                stat = entry.stat()
                state.append((entry.name, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(state))


def _check_settings(revision: Any, device: Any, local_files_only: Any) -> tuple[str | None, str, bool]:
    if not isinstance(revision, str):
        raise TypeError(f"revision must be a str ('' for the default branch), got {type(revision).__name__}.")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}.")
    if not isinstance(local_files_only, bool):
        raise TypeError(f"local_files_only must be True or False, got {local_files_only!r}.")
    return revision.strip() or None, device, local_files_only


def cache_key(model: str, revision: str = "", device: str = "cpu", local_files_only: bool = False) -> tuple:
    """What decides the generator that :func:`load_generator` returns for these inputs.

    Raises:
        TypeError: An input of the wrong type.
        ValueError: An unknown device, or a ``revision`` for the built-in generator.
    """
    source = resolve_source(model)
    revision, device, local_files_only = _check_settings(revision, device, local_files_only)
    if source == BUILTIN:
        if revision is not None:
            raise ValueError(
                f"revision={revision!r} was given for the built-in generator, which has no versions; clear revision, "
                "or set model to a hub id."
            )
        return (BUILTIN,)  # no weights: device and hub options mean nothing to it
    state = _folder_state(source) if os.path.isdir(source) else None
    return (source, revision, device, local_files_only, state)


def _check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device='cuda', but this torch ({torch.__version__}) sees no CUDA device; choose 'cpu'.")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device='mps', but this torch ({torch.__version__}) has no MPS device; choose 'cpu'.")


def load_generator(
    model: str = BUILTIN, revision: str = "", device: str = "cpu", local_files_only: bool = False
) -> Callable:
    """The generator for these inputs, loaded on the first call and taken from the cache after.

    Args:
        model: :data:`BUILTIN` (or empty) for the built-in generator, a local folder, a folder under
            ``ComfyUI/models/negopt/``, or a hub id.
        revision: Hub revision (branch, tag or commit) of a hub id; empty for the default branch.
        device: Where the model runs: ``cpu``, ``cuda`` or ``mps``.
        local_files_only: Never reach the hub; use a folder or the hub cache only.

    Returns:
        A :class:`~negopt.BuiltinGenerator` or a :class:`~negopt.NegOptGenerator` loaded by
        ``NegOptGenerator.from_pretrained`` (safetensors weights only, no remote code).

    Raises:
        ValueError: An unknown or unavailable device, or a revision for the built-in generator.
        FileNotFoundError, OSError: From ``from_pretrained``: the folder or hub id cannot be loaded.
    """
    key = cache_key(model, revision, device, local_files_only)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        if key == (BUILTIN,):
            from negopt.builtin import BuiltinGenerator

            generator: Callable = BuiltinGenerator()
        else:
            source, revision_, device_, local_only, _ = key
            _check_device(device_)
            from negopt.generator import NegOptGenerator

            generator = NegOptGenerator.from_pretrained(
                source, revision=revision_, device=device_, local_files_only=local_only
            )
        _cache[key] = generator
        while len(_cache) > MAX_CACHED:
            _cache.popitem(last=False)
        return generator


def clear_cache() -> None:
    """Forget every loaded generator (their memory is freed once nothing else holds them)."""
    with _lock:
        _cache.clear()
