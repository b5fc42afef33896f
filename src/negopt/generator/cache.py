"""The result cache of ``NegOptGenerator``: keys for generation settings and the model's state, and an LRU map.

Internal: this module's names may change in any release. The public surface is ``NegOptGenerator(cache_size=...)``,
``.cache_size``, ``.clear_cache()`` and ``.cache_info()``.
"""

from __future__ import annotations

import copy
import operator
import sys
from collections import OrderedDict
from typing import Any

import torch

__all__ = ["LRUCache", "ModelWatch", "freeze", "check_cache_size", "cache_scope", "lookup", "store"]

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


# Any parameter, buffer or submodule registered on any module anywhere (a new LoRA adapter, a replaced weight or
# layer) bumps this counter, so a cached list of a model's parameters can tell cheaply when it may be out of date.
_registrations = 0
_hooks_installed = False


def _count_registration(module: torch.nn.Module, name: str, value: Any) -> None:
    global _registrations
    _registrations += 1


def _install_hooks() -> None:
    global _hooks_installed
    if not _hooks_installed:
        registry = torch.nn.modules.module
        registry.register_module_parameter_registration_hook(_count_registration)
        registry.register_module_buffer_registration_hook(_count_registration)
        registry.register_module_module_registration_hook(_count_registration)
        _hooks_installed = True


class _Watched:
    """A value read live on each call, compared with a copy of what it was: its ``epoch`` moves when it changed.

    Comparing the live value with the copy costs about a microsecond for a config; copying happens only on a change.
    A value that cannot be compared or copied (a tensor inside a config) counts as changed on every call.
    """

    def __init__(self) -> None:
        self.epoch = 0
        self._copy: Any = _Unhashable  # a sentinel no value equals

    def check(self, live: Any) -> int:
        try:
            same = bool(live == self._copy)
        except Exception:
            same = False
        if not same:
            self.epoch += 1
            try:
                self._copy = copy.deepcopy(live)
            except Exception:
                self._copy = _Unhashable
        return self.epoch


def _tuner_layers(model: torch.nn.Module) -> list[dict[str, Any]]:
    """The attribute dicts of peft's adapter layers (LoRA and the others) inside ``model``: each layer holds its own
    active adapter, disabled flag, merged adapters and scales there (read from the dict: properties cost more)."""
    if "peft" not in sys.modules:  # no adapter layer can exist before peft is imported
        return []
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [vars(m) for m in model.modules() if isinstance(m, BaseTunerLayer)]


_version = operator.attrgetter("_version")


class ModelWatch:
    """What a model's outputs depend on, in a form that is cheap to read and compare on every call.

    :meth:`weights` covers the weights and adapters: in-place updates (an optimizer step, ``load_state_dict``) bump
    each tensor's version counter; a move or cast replaces the storage (``data_ptr``); a parameter, buffer or layer
    replaced (``module.weight = nn.Parameter(...)``) is seen by torch's registration hooks, after which the
    parameters are listed again and compared by identity (a version sum alone cannot tell a replaced parameter: the
    weights of a model loaded by ``from_pretrained`` and a new ``nn.Parameter`` both have version 0); peft's active
    adapter, ``disable_adapter()``, merged adapters and every adapter layer's ``scaling`` (``set_scale``,
    ``rescale_adapter_scale``) are read directly. :meth:`configs` covers ``model.generation_config`` and
    ``model.config``, compared by value. Writes through ``param.data`` are invisible to version counters: call
    ``clear_cache()`` after those.
    """

    def __init__(self) -> None:
        _install_hooks()
        self._model_id: int | None = None
        self._seen = -1
        self._tensors: list[torch.Tensor] = []
        self._tuners: list[dict[str, Any]] = []
        self._inner: dict[str, Any] = {}
        self._replaced = 0  # moves when the listed tensors are other objects than before
        self._adapters = _Watched()
        self._configs = _Watched()

    def _list(self, model: torch.nn.Module) -> list[torch.Tensor]:
        if id(model) != self._model_id or _registrations != self._seen:
            tensors = [*model.parameters(), *model.buffers()]
            old = self._tensors  # still referenced here, so no old tensor's id can have been reused
            if len(tensors) != len(old) or any(a is not b for a, b in zip(tensors, old)):
                self._replaced += 1
            self._tensors, self._tuners = tensors, _tuner_layers(model)
            # The transformers model under any peft wrapper: its attributes are read without the wrappers' lookups.
            self._inner = vars(model.get_base_model() if hasattr(model, "get_base_model") else model)
            self._model_id, self._seen = id(model), _registrations
        return self._tensors

    def weights(self, model: torch.nn.Module) -> tuple:
        """The state of ``model``'s weights and adapters (equal tuples: the same weights and adapters)."""
        ts = self._list(model)
        first = ts[0] if ts else None
        adapters = getattr(model, "active_adapters", None) if hasattr(model, "peft_config") else None
        tuners = None
        if self._tuners:
            live = [
                (d.get("_active_adapter"), d.get("_disable_adapters"), d.get("merged_adapters"), d.get("scaling"))
                for d in self._tuners
            ]
            tuners = self._adapters.check(live)
        return (
            id(model),
            self._replaced,
            len(ts),
            sum(map(_version, ts)),
            None if first is None else (first.data_ptr(), first.dtype, first.device),
            tuple(adapters) if isinstance(adapters, (list, tuple)) else adapters,
            getattr(model, "_adapters_disabled", None),
            tuners,
        )

    def values(self, model: torch.nn.Module) -> tuple:
        """:meth:`weights` without where the weights are stored: equal after a move, different after a write to a
        weight, a replaced parameter or an adapter change."""
        state = self.weights(model)
        return state[:4] + state[5:]

    def configs(self, model: torch.nn.Module) -> int:
        """A number that changes when ``model.generation_config`` or ``model.config`` changed (by value)."""
        self._list(model)
        gc, config = self._inner.get("generation_config"), self._inner.get("config")
        if gc is None or config is None:  # not plain attributes of the model: ask it
            gc, config = getattr(model, "generation_config", None), getattr(model, "config", None)
        return self._configs.check((getattr(gc, "__dict__", gc), getattr(config, "__dict__", config)))


class LRUCache:
    """A least-recently-used map of at most ``maxsize`` entries (0 stores nothing)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self.watch = ModelWatch()
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
    limit, the fast path's settings); when it or the model's state (weights, adapters and their scales, generation
    config: see :class:`ModelWatch`) changed since the last call, the cache empties.
    """
    if cache.maxsize <= 0 or model.training:
        return None
    sampling = kwargs.get("do_sample", getattr(model.generation_config, "do_sample", False))
    if sampling and seed is None:
        return None
    frozen = freeze(kwargs)
    if frozen is None:
        return None
    state = (cache.watch.weights(model), cache.watch.configs(model), *settings)
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
