"""The result cache of ``NegOptGenerator``: keys for generation settings and the model's state, and an LRU map.

Internal: this module's names may change in any release. The public surface is ``NegOptGenerator(cache_size=...)``,
``.cache_size``, ``.clear_cache()`` and ``.cache_info()``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch

__all__ = ["LRUCache", "ParamList", "freeze", "model_state", "check_cache_size", "cache_scope", "lookup", "store"]

_LEAF_TYPES = (str, int, float, bool, type(None), torch.dtype)


class _Unhashable(Exception):
    pass


def _freeze(value: Any) -> Any:
    if isinstance(value, _LEAF_TYPES):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    # Objects (logits processors, stopping criteria, callables, GenerationConfig) may hold state that changes between
    # calls without changing their identity: a call that passes one is never cached.
    raise _Unhashable


def freeze(kwargs: dict[str, Any]) -> tuple | None:
    """A hashable, order-independent form of generation keyword arguments, or None when one of them is an object
    (a callable, a logits processor, ...) whose effect a key cannot capture."""
    try:
        return _freeze(kwargs)
    except _Unhashable:
        return None


# Any parameter registered on any module anywhere (a new LoRA adapter, a replaced weight) bumps this counter, so a
# cached list of a model's parameters can tell cheaply when it is out of date.
_registrations = 0
_hook_installed = False


def _count_registration(module: torch.nn.Module, name: str, param: Any) -> None:
    global _registrations
    _registrations += 1


def _install_hook() -> None:
    global _hook_installed
    if not _hook_installed:
        torch.nn.modules.module.register_module_parameter_registration_hook(_count_registration)
        _hook_installed = True


class ParamList:
    """A model's parameters, listed once and listed again only after a parameter was registered somewhere."""

    def __init__(self) -> None:
        _install_hook()
        self._model_id: int | None = None
        self._seen = -1
        self._params: list[torch.Tensor] = []

    def get(self, model: torch.nn.Module) -> list[torch.Tensor]:
        if id(model) != self._model_id or _registrations != self._seen:
            self._params = list(model.parameters())
            self._model_id, self._seen = id(model), _registrations
        return self._params


def model_state(model: torch.nn.Module, params: ParamList) -> tuple:
    """What the model's outputs depend on, in a form that is cheap to compute and compare.

    In-place updates of the weights (an optimizer step, ``load_state_dict``) bump each tensor's version counter; a
    move or cast replaces the storage (``data_ptr``); peft's active adapter and ``disable_adapter()`` are read
    directly. Writes through ``param.data`` are invisible to version counters: call ``clear_cache()`` after those.
    """
    ps = params.get(model)
    first = ps[0] if ps else None
    adapters = getattr(model, "active_adapters", None) if hasattr(model, "peft_config") else None
    return (
        id(model),
        len(ps),
        sum(p._version for p in ps),
        None if first is None else (first.data_ptr(), first.dtype, first.device),
        tuple(adapters) if isinstance(adapters, (list, tuple)) else adapters,
        getattr(model, "_adapters_disabled", None),
    )


class LRUCache:
    """A least-recently-used map of at most ``maxsize`` entries (0 stores nothing)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self.params = ParamList()
        self.state: tuple | None = None
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Any) -> Any:
        try:
            value = self._data[key]
        except KeyError:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: Any, value: Any) -> None:
        if self.maxsize <= 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()
        self.state = None

    def resize(self, maxsize: int) -> None:
        self.maxsize = maxsize
        while len(self._data) > max(maxsize, 0):
            self._data.popitem(last=False)


def check_cache_size(cache_size: Any) -> int:
    if isinstance(cache_size, bool) or not isinstance(cache_size, int):
        raise TypeError(
            f"cache_size must be an int (entries to keep; 0 turns the cache off), got {type(cache_size).__name__}: "
            f"{cache_size!r}."
        )
    if cache_size < 0:
        raise ValueError(f"cache_size must be 0 (no cache) or more, got {cache_size}.")
    return cache_size


def cache_scope(
    cache: LRUCache,
    model: torch.nn.Module,
    kwargs: dict[str, Any],
    num_candidates: int,
    seed: int | None,
    settings: tuple,
) -> tuple | None:
    """The part of a cache key shared by every prompt of a call, or None when the call must not be cached.

    ``settings`` is what else the output depends on besides the model (the tokenizer, the prompt template, the input
    limit, the fast path's settings); when it or the model's state changed since the last call, the cache empties.
    """
    if cache.maxsize <= 0 or model.training:
        return None
    sampling = kwargs.get("do_sample", getattr(model.generation_config, "do_sample", False))
    if sampling and seed is None:
        return None
    frozen = freeze(kwargs)
    if frozen is None:
        return None
    state = (model_state(model, cache.params), *settings)
    if state != cache.state:  # the model or its settings changed: nothing kept is valid any more
        cache.clear()
        cache.state = state
    return (frozen, num_candidates, seed if sampling else None, bool(sampling))


def lookup(
    cache: LRUCache,
    scope: tuple | None,
    prompts: list[str],
    active: list[int],
    results: list[list[str]],
    batch_size: int,
) -> tuple[tuple | None, list[int]]:
    """Fill ``results`` from the cache: returns the key of the whole call (seeded sampling only, else None) and the
    indices of the prompts still to generate."""
    if scope is None:
        return None, active
    if scope[-1]:  # seeded sampling: a prompt's samples depend on its batch, so the whole call is the key
        call_key = (scope, batch_size, tuple(prompts))
        hit = cache.get(call_key)
        if hit is not None:
            results[:] = [list(r) for r in hit]
            return call_key, []
        return call_key, active
    missing = []  # greedy / beam search: each prompt's result stands alone
    for i in active:
        hit = cache.get((scope, prompts[i]))
        if hit is None:
            missing.append(i)
        else:
            results[i] = list(hit)
    return None, missing


def store(
    cache: LRUCache,
    scope: tuple | None,
    call_key: tuple | None,
    prompts: list[str],
    active: list[int],
    results: list[list[str]],
) -> None:
    """Keep the results of a call that :func:`lookup` could not answer."""
    if call_key is not None:
        cache.put(call_key, tuple(tuple(r) for r in results))
    elif scope is not None:
        for i in active:
            cache.put((scope, prompts[i]), tuple(results[i]))
