"""``load_prompts``: the one reader of prompt lists (and their negatives) for ``negopt eval``, ``negopt train rl``
and :func:`~negopt.eval.evaluate`, from a file, a folder, a hub dataset, a ``datasets`` object or a list."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from negopt.data.files import LOCAL_SUFFIXES, import_datasets, read_local
from negopt.data.negative_prompts import split_of

if TYPE_CHECKING:  # pragma: no cover
    import datasets

__all__ = ["load_prompts"]

_PROMPT_FILE_SUFFIXES = (".txt", ".jsonl", ".json", ".csv", ".parquet")


def _looks_like_path(source: str) -> bool:
    """A string that names a file rather than a hub id: a known suffix, a leading ``.``, ``/`` or ``~``, or more
    than one ``/`` (a hub id is ``name`` or ``owner/name``)."""
    return (
        source.lower().endswith(_PROMPT_FILE_SUFFIXES) or source.startswith((".", "/", "~")) or source.count("/") > 1
    )


def _read_prompt_file(path: str) -> list[Any]:
    """The items of a local prompt file: the lines of a ``.txt`` (or any other text file), else the records of a
    ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` file (strings, or dicts)."""
    if path.lower().endswith(LOCAL_SUFFIXES):
        if path.lower().endswith(".json"):  # a JSON list may hold strings, which read_local does not take
            try:
                with open(path, encoding="utf-8") as f:
                    items = json.load(f)
                if isinstance(items, list):
                    return items
            except ValueError:
                pass  # JSON Lines, or malformed: read_local reports it
        return read_local(path).to_list()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read prompts from {path!r}: {e}") from e


def load_prompts(
    source: str | os.PathLike | list | datasets.Dataset | datasets.DatasetDict,
    *,
    negatives: bool = False,
    prompt_column: str = "prompt",
    negative_column: str = "negative_prompt",
    split: str | tuple[str, ...] | None = None,
    heldout_split: str | None = None,
    num_prompts: int | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
    token: str | bool | None = None,
) -> list[str] | list[dict[str, str | None]]:
    """Read a list of prompts (and their negatives, if asked) from a file, a dataset or a list: the one prompt reader
    of ``negopt eval``, ``negopt train rl`` and :func:`~negopt.eval.evaluate`.

    Blank prompts (empty lines of a ``.txt``, say) are skipped. A prompt that is not text (a number in a CSV column)
    is an error that names its row, never silently dropped or turned into a string.

    Args:
        source: A ``.txt`` file (one prompt a line), a ``.jsonl`` / ``.json`` file (strings, or objects with
            ``prompt_column``), a ``.csv`` or ``.parquet`` file with ``prompt_column``, a folder saved with
            ``datasets``' ``save_to_disk``, a hub dataset id, a ``datasets.Dataset`` / ``DatasetDict``, or a list of
            strings or dicts.
        negatives: Return ``{"prompt", "negative_prompt"}`` dicts (``negative_prompt`` None where there is none)
            instead of strings; :func:`~negopt.eval.evaluate` takes them as they are.
        prompt_column: The column (or JSON key) of the prompts.
        negative_column: The column (or JSON key) of their negatives.
        split: For a source with several splits: a split name, or a tuple of names of which the first present is
            taken; None (or none of them present): the first split.
        heldout_split: Keep only the prompts that :func:`split_of` (the split of :func:`load_negative_prompts` with
            its default sizes) assigns to this split: ``"train"`` keeps NegOpt's validation and test prompts out of
            RL.
        num_prompts: Keep the first this many prompts.
        revision: Hub revision of a hub ``source``.
        cache_dir: Hub cache folder.
        token: Hub token.

    Returns:
        The prompts, in the source's order.

    Raises:
        FileNotFoundError: ``source`` looks like a path (a known suffix, ``./``, ``/``, ``~``) and does not exist.
        ValueError: The source cannot be read, has no ``prompt_column``, names a split it lacks, holds a non-text
            prompt, or holds no prompt.
        TypeError: ``source`` is of a type this function does not read.

    Example:
        >>> load_prompts("prompts.txt")  # doctest: +SKIP
        ['a portrait photo of an old fisherman', 'a red fox in snow']
    """
    if num_prompts is not None and (
        isinstance(num_prompts, bool) or not isinstance(num_prompts, int) or num_prompts < 1
    ):
        raise ValueError(f"num_prompts must be a positive int or None, got {num_prompts!r}.")
    label = repr(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__
    items: list[Any]
    if isinstance(source, (str, os.PathLike)):
        path = os.path.expanduser(os.fspath(source))
        if os.path.isfile(path):
            items = _read_prompt_file(path)
        elif os.path.isdir(path):
            datasets = import_datasets()
            try:
                items = _rows_of(datasets.load_from_disk(path), split, label)
            except (FileNotFoundError, ValueError) as e:
                raise ValueError(
                    f"{label} is a folder but not a saved dataset ({e}); pass a prompt file in it."
                ) from e
        elif _looks_like_path(path):
            raise FileNotFoundError(f"no such file: {label}; check the path (a hub dataset id is 'owner/name').")
        else:
            datasets = import_datasets()
            try:
                data = datasets.load_dataset(path, revision=revision, cache_dir=cache_dir, token=token)
            except Exception as e:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ...)
                raise ValueError(
                    f"{label} is not a local file or folder, and cannot be loaded as a hub dataset: "
                    f"{type(e).__name__}: {e}"
                ) from e
            items = _rows_of(data, split, label)
    elif hasattr(source, "column_names"):
        items = _rows_of(source, split, label)
    elif isinstance(source, (list, tuple)):
        items = list(source)
    else:
        raise TypeError(
            f"prompts source must be a file, folder, hub id, dataset or list, got {type(source).__name__}."
        )
    rows: list[dict[str, str | None]] = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            if prompt_column not in item:
                raise ValueError(
                    f"{label} item {i} has no {prompt_column!r} key (keys: {sorted(item)}); pass prompt_column."
                )
            prompt, negative = item[prompt_column], item.get(negative_column)
        else:
            prompt, negative = item, None
        if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
            continue  # a blank line or an empty cell
        if not isinstance(prompt, str):
            raise ValueError(
                f"{label} item {i}: the prompt {prompt!r} is a {type(prompt).__name__}, not text; fix that row or "
                "quote it."
            )
        if negative is not None and not isinstance(negative, str):
            raise ValueError(f"{label} item {i}: the negative prompt {negative!r} is a {type(negative).__name__}.")
        prompt = prompt.strip()
        if heldout_split is not None and split_of(prompt) != heldout_split:
            continue
        rows.append({"prompt": prompt, "negative_prompt": negative.strip() if negative and negative.strip() else None})
        if num_prompts is not None and len(rows) >= num_prompts:
            break
    if not rows:
        raise ValueError(f"no prompts in {label}" + (f" in split {heldout_split!r}" if heldout_split else "") + ".")
    return rows if negatives else [row["prompt"] for row in rows]


def _rows_of(data, split, label: str) -> list[dict[str, Any]]:
    """The rows of a Dataset, or of the chosen split of a DatasetDict, as dicts."""
    if not hasattr(data, "column_names") or isinstance(getattr(data, "column_names", None), dict):
        names = list(data)
        wanted = (split,) if isinstance(split, str) else tuple(split or ())
        chosen = next((s for s in wanted if s in data), None)
        if chosen is None:
            if isinstance(split, str):
                raise ValueError(f"{label} has no split {split!r} (splits: {', '.join(names)}).")
            chosen = names[0]
        data = data[chosen]
    return data.to_list()
