"""Names and folders: tell a hub id from a path, resolve either to a local folder, refuse pickle-only weights."""

from __future__ import annotations

import os

__all__ = [
    "ADAPTER_CONFIG_NAME",
    "HubOptions",
    "is_hub_id",
    "is_folder_or_hub_id",
    "hub_model_id",
    "is_offline",
    "resolve_folder",
    "check_safetensors",
    "safetensors_error",
]

ADAPTER_CONFIG_NAME = "adapter_config.json"
# The files a hub snapshot of a model needs (pickles and code only when the caller allows them).
_SNAPSHOT_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "README.md")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth")


class HubOptions(dict):
    """The explicit hub keyword arguments every loader takes, gathered once to pass on."""

    def __init__(
        self,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
    ):
        super().__init__(revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only)


# ------------------------------------------------------------------------------------------------------ names
def is_hub_id(name: str | os.PathLike) -> bool:
    """Whether ``name`` is shaped like a hub repository id (``"name"`` or ``"org/name"``) rather than a path.

    The shape is ``huggingface_hub``'s own rule (``validate_repo_id``); a name that starts like a path (``.``, ``~``,
    ``/``) or holds a backslash is a path even where the rule would allow it.

    Example:
        >>> is_hub_id("google/flan-t5-small"), is_hub_id("./out/sft"), is_hub_id("out/sft/checkpoint-1")
        (True, False, False)
    """
    if not isinstance(name, str) or not name or name.startswith((".", "~", "/")) or "\\" in name:
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def is_folder_or_hub_id(name: str | os.PathLike | None) -> bool:
    """Whether ``name`` can be loaded again: an existing folder, or something shaped like a hub id."""
    if not name:
        return False
    return os.path.isdir(name) or is_hub_id(os.fspath(name))


def hub_model_id(name: str | None) -> str | None:
    """``name`` when it names a hub repository (a hub id that is not an existing local folder), else None.

    Used where only a hub id is meaningful, such as the ``base_model`` of a model card.
    """
    if not name or os.path.isdir(name) or not is_hub_id(name):
        return None
    return name


def is_offline() -> bool:
    """Whether the hub is switched off (``HF_HUB_OFFLINE=1``)."""
    try:
        from huggingface_hub import is_offline_mode
    except ImportError:  # pragma: no cover - huggingface_hub before is_offline_mode
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    return bool(is_offline_mode())


# ---------------------------------------------------------------------------------------------------- folders
def resolve_folder(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    use_safetensors: bool = True,
    trust_remote_code: bool = False,
) -> str:
    """A local folder holding ``name_or_path``: the folder itself, or a hub snapshot (local cache first).

    Only the files a model needs are fetched: configs, safetensors weights, tokenizer files and the README; pickle
    weights only with ``use_safetensors=False``, code only with ``trust_remote_code=True``.

    Raises:
        TypeError: ``name_or_path`` is not a str or path.
        NotADirectoryError: It is a file.
        FileNotFoundError: It is a path (not a hub id) that does not exist.
        OSError: The hub could not provide it; the message says why (offline, gated, no such repository, ...).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(
            f"name_or_path must be a folder path or a hub id (str), got {type(name_or_path).__name__}: "
            f"{name_or_path!r}."
        )
    name = os.path.expanduser(os.fspath(name_or_path))
    if os.path.isdir(name):
        return name
    if os.path.exists(name):
        raise NotADirectoryError(
            f"{name!r} is a file; negopt needs the folder that holds the model "
            "(config.json or adapter_config.json, the weights and the tokenizer)."
        )
    if not is_hub_id(name):
        raise FileNotFoundError(f"{name!r} does not exist: check the path (a hub id looks like 'org/name').")

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    patterns = list(_SNAPSHOT_PATTERNS)
    if not use_safetensors:
        patterns.append("*.bin")
    if trust_remote_code:
        patterns.append("*.py")
    try:
        return snapshot_download(
            name,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            allow_patterns=patterns,
        )
    except GatedRepoError as e:
        raise OSError(
            f"{name!r} is a gated repository on the hub: accept its terms on the hub and pass token=... ({e})."
        ) from e
    except RepositoryNotFoundError as e:
        raise OSError(
            f"could not find {name!r} locally or on the hub: no such folder or repository (a private repository "
            "needs token=...)."
        ) from e
    except RevisionNotFoundError as e:
        raise OSError(f"revision {revision!r} of {name!r} was not found on the hub.") from e
    except LocalEntryNotFoundError as e:
        if is_offline():
            why = "the hub is offline (HF_HUB_OFFLINE=1)"
        elif local_files_only:
            why = "local_files_only=True"
        else:
            why = "the hub could not be reached"
        raise OSError(
            f"could not find {name!r} locally and {why}: pass a local folder, or download it first when online."
        ) from e
    except OSError as e:  # network failures and the like
        raise OSError(f"could not download {name!r} from the hub: {e}") from e


def _conversion(folder: str, pickled: list[str], adapter: bool) -> str:
    """How to turn the one pickle weights file of ``folder`` into safetensors: a command that runs in a shell."""
    if len(pickled) != 1:
        return (
            "convert them once in Python: load with use_safetensors=False, then save_pretrained(folder) writes "
            "safetensors"
        )
    source = os.path.join(folder, pickled[0])
    target = os.path.join(folder, "adapter_model.safetensors" if adapter else "model.safetensors")
    # clone(): tied weights share memory in the pickle, which safetensors refuses to write as one tensor.
    code = (
        f"import torch, safetensors.torch as st; sd = torch.load({source!r}, map_location='cpu', weights_only=True); "
        f"st.save_file({{k: v.contiguous().clone() for k, v in sd.items()}}, {target!r}, metadata={{'format': 'pt'}})"
    )
    return f'convert it once to safetensors: python -c "{code}"'


def check_safetensors(folder: str, use_safetensors: bool = True, *, adapter: bool = False) -> None:
    """Refuse a folder whose weights are pickle only, unless the caller opted in with ``use_safetensors=False``, and
    a safetensors weights file that is damaged or incomplete (an interrupted download or save), naming it.

    Raises:
        ValueError: Only ``.bin`` / ``.pt`` / ``.pth`` weights and ``use_safetensors=True``; the message gives a
            command that converts the file.
        OSError: A ``.safetensors`` weights file cannot be read; the message names it and says how to fix it.
    """
    files = sorted(os.listdir(folder))
    stem = "adapter_model" if adapter else ""
    safe = [f for f in files if f.endswith(".safetensors") and f.startswith(stem)]
    pickled = [f for f in files if f.endswith(_PICKLE_SUFFIXES) and f.startswith(stem)]
    if use_safetensors and not safe and pickled:
        fix = _conversion(folder, pickled, adapter)
        raise ValueError(
            f"{folder!r} holds only pickle weights ({', '.join(pickled)}), which can run arbitrary code when loaded; "
            f"negopt loads safetensors only by default. If you trust the file, {fix} (in Python, use_safetensors=False"
            " also loads it)."
        )
    for name in safe:
        path = os.path.join(folder, name)
        error = safetensors_error(path)
        if error:
            raise OSError(
                f"the weights file {path!r} is damaged or incomplete ({error}); an interrupted download or save "
                "leaves such a file. Delete it and download the model again (for a hub model, delete its folder in "
                "the hub cache), or save the model again."
            )


def safetensors_error(path: str | os.PathLike) -> str | None:
    """Why safetensors cannot open the file at ``path`` (a damaged or truncated file), or None when it can."""
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(path), framework="pt"):
            pass
    except Exception as e:  # safetensors' own error type (SafetensorError), or an OSError
        return str(e) or type(e).__name__
    return None
