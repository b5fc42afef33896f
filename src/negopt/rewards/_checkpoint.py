"""Reading a reward model released as one original checkpoint file (HPSv2.1, ImageReward) into transformers classes.

Those models were published as a single ``.pt`` file in their authors' own key layout, not as transformers folders.
These helpers find the file (a path, a folder holding it, or a hub repository), read it safely (safetensors, or
``torch.load(weights_only=True)``, which rebuilds tensors and plain containers only and runs no code from the file),
and load the re-keyed weights into a model, refusing a checkpoint that leaves any weight unset or has a wrong shape.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from negopt.hub import HubOptions, is_hub_id

__all__ = [
    "resolve_checkpoint_file",
    "read_state_dict",
    "load_config",
    "local_folder",
    "load_converted",
]

logger = logging.getLogger(__name__)


def resolve_checkpoint_file(source: str, weights_name: str, hub: HubOptions, *, argument: str, what: str) -> str:
    """The local path of a checkpoint: ``source`` itself (a file), ``source/weights_name`` (a folder), or the file
    ``weights_name`` downloaded from the hub repository ``source`` (local cache first).

    Raises:
        FileNotFoundError: The file, or the folder's ``weights_name``, does not exist, or ``source`` is neither a path
            nor a hub id.
        OSError: The hub could not provide it (offline, gated, no such repository or file).
    """
    source = os.path.expanduser(os.fspath(source))
    if os.path.isfile(source):
        return source
    if os.path.isdir(source):
        path = os.path.join(source, weights_name)
        if not os.path.isfile(path):
            files = sorted(os.listdir(source))[:12]
            raise FileNotFoundError(
                f"{argument}={source!r}: the folder has no {weights_name!r} (files: {files}); pass the {what} file "
                "itself, or name it with weights_name=."
            )
        return path
    if not is_hub_id(source):
        raise FileNotFoundError(f"{argument}={source!r} is neither a file, a folder, nor a hub repository id.")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return hf_hub_download(source, weights_name, **hub)
    except LocalEntryNotFoundError as e:
        raise OSError(
            f"{argument}={source!r}: {weights_name!r} is not in the local hub cache and the hub cannot be reached "
            "(offline, or local_files_only=True); download it once online, or pass a local file or folder."
        ) from e
    except EntryNotFoundError as e:
        raise FileNotFoundError(f"{argument}={source!r}: the hub repository has no file {weights_name!r}.") from e
    except RepositoryNotFoundError as e:
        raise OSError(f"{argument}={source!r}: no such hub repository (a private one needs token=...).") from e


def local_folder(source: str | os.PathLike) -> str | None:
    """The local folder a checkpoint comes from: ``source`` itself, the folder of a file, or None for a hub id.

    Its ``config.json`` and tokenizer files, when present, go with the checkpoint.
    """
    source = os.path.expanduser(os.fspath(source))
    if os.path.isdir(source):
        return source
    return os.path.dirname(os.path.abspath(source)) if os.path.isfile(source) else None


def read_state_dict(path: str, *, argument: str) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, on the CPU: a ``.safetensors`` file, or a pickle read with ``weights_only=True``.

    A ``{"state_dict": ...}`` wrapper is unwrapped and a ``module.`` prefix (left by DataParallel/DDP) removed.

    Raises:
        ValueError: The file is not a state dict of tensors, or ``weights_only`` refuses it.
    """
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError, RuntimeError: whatever weights_only refuses
            raise ValueError(
                f"{argument}: {path!r} cannot be read with torch.load(weights_only=True) ({e}); negopt reads "
                "checkpoints that hold tensors only."
            ) from e
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not state:
        raise ValueError(f"{argument}: {path!r} holds a {type(state).__name__}, not a state dict of tensors.")
    if all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{argument}: {path!r} holds non-tensor entries {bad[:5]}; expected a state dict.")
    return dict(state)


def load_config(config: Any, folder: str | None, config_class: Any, default: Callable[[], Any], *, argument: str):
    """The model's config: ``config`` (an object of ``config_class``, a dict, or a JSON file or folder), else the
    ``config.json`` in ``folder`` (the checkpoint's own folder), else ``default()``.

    Raises:
        FileNotFoundError: ``config`` is a path with no JSON file there.
        TypeError: ``config`` is of another type.
    """
    if isinstance(config, config_class):
        return config
    if isinstance(config, Mapping):
        return config_class.from_dict(dict(config))
    if isinstance(config, (str, os.PathLike)):
        path = os.path.expanduser(os.fspath(config))
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{argument}={os.fspath(config)!r}: no {config_class.__name__} JSON file there.")
        return config_class.from_json_file(path)
    if config is not None:
        raise TypeError(
            f"{argument} must be a {config_class.__name__}, a dict or a JSON path, got {type(config).__name__}."
        )
    if folder is not None and os.path.isfile(os.path.join(folder, "config.json")):
        return config_class.from_json_file(os.path.join(folder, "config.json"))
    return default()


def load_converted(
    model: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str,
    what: str,
    unknown: list[str],
    unused: list[str],
) -> torch.nn.Module:
    """Load re-keyed weights into ``model`` (float32, eval mode, frozen), checking that they cover it exactly.

    Args:
        model: The transformers-class model, freshly built from its config.
        state_dict: The checkpoint's weights under the model's key names.
        source: The checkpoint's path, for messages.
        what: The model's name, for messages.
        unknown: Checkpoint keys no rule maps (reported with a warning: the official loader would silently skip
            them, and they may mean the checkpoint is not the model it claims to be).
        unused: Checkpoint keys known to play no part in the score (logged).

    Raises:
        ValueError: A weight of the model is missing from the checkpoint, or has another shape.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    if missing:
        raise ValueError(
            f"the {what} checkpoint {source!r} does not cover the model: {len(missing)} weights are missing "
            f"({missing[:6]}); is it the right file, and does the config match it?"
        )
    wrong = [
        f"{k}: {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if wrong:
        raise ValueError(
            f"the {what} checkpoint {source!r} does not fit the config: checkpoint vs model shapes {wrong[:4]}; "
            "pass the config it was trained with (config=)."
        )
    extra = sorted(set(state_dict) - set(expected))
    if unknown or extra:
        warnings.warn(
            f"the {what} checkpoint {source!r} has {len(unknown) + len(extra)} keys the model does not use "
            f"({(unknown + extra)[:6]}); they are ignored, but check that it is the checkpoint you meant.",
            stacklevel=3,
        )
    if unused:
        logger.info("%s: %d keys of %r play no part in the score: %s", what, len(unused), source, unused[:6])
    tensors = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state_dict.items() if k in expected}
    model.load_state_dict(tensors, strict=True)
    return model.eval().requires_grad_(False)
