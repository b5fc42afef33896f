"""Negative Prompts DB: load prompt / negative-prompt pairs from the hub or a local file, clean them, split them.

The NegOpt paper fine-tunes on Negative Prompts DB (``mikeogezi/negopt_full`` on the hub: one ``train`` split of
about 256k prompts and the negative prompts their authors used, collected from Playground AI, with the columns
``id``, ``created_at``, ``prompt``, ``negative_prompt``, ``sampler``, ``url``, ``model``, ``likes``, ``height``,
``steps``, ``width``, ``cursor`` and ``cfg_scale``). The dataset has no published split and users reuse prompts, so
:func:`load_negative_prompts` splits by a hash of the normalised prompt: a prompt, with all its negatives, lands in
exactly one of ``train`` / ``validation`` / ``test``, and the split of a row never depends on the other rows.

Cleaning, in this order (each rule's count is in :class:`DataSummary`):

1. ``strip``: leading and trailing whitespace is removed from prompts and negatives (always).
2. ``prompt_not_text`` / ``negative_not_text``: rows whose prompt or negative is a number or another non-text value
   (a spreadsheet column read as numbers, say), counted apart from empty ones so that a column of the wrong type
   shows (always). ``empty_prompt`` / ``empty_negative``: rows whose prompt or negative is missing, empty or
   whitespace (always).
3. ``min_likes``: rows with fewer likes than ``min_likes`` (off by default; needs a ``likes`` column).
4. Normalisation (rows changed are counted, none dropped): with ``strip_weights=True`` (the default) AUTOMATIC1111
   emphasis is removed from both texts, ``(blurry:1.3), [text]`` -> ``blurry, text``, because diffusers passes such
   syntax to the text encoder verbatim; negatives always get whitespace, commas and repeated terms normalised
   (:func:`negopt.text.clean_negative`). A text left empty by this is dropped under ``empty_prompt`` /
   ``empty_negative``.
5. ``duplicate_pair``: repeated (prompt, negative) pairs collapse to their first row (always).
6. ``prompt_too_long`` / ``negative_too_long``: rows over ``max_prompt_length`` / ``max_negative_length`` (defaults
   256 and 128). Lengths count the tokens of ``tokenizer`` (without special tokens) when one is given, else words
   (text split at whitespace and commas) -- a rough, tokenizer-free stand-in: one word is one to three subword
   tokens for T5 or GPT-2.

Needs the ``train`` extra (``datasets``): ``pip install "negopt[train]"``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from negopt.data.files import LOCAL_SUFFIXES, import_datasets, read_local
from negopt.hub import is_hub_id
from negopt.text import clean_negative
from negopt.text import strip_weights as _strip_weights

if TYPE_CHECKING:  # pragma: no cover
    import datasets

__all__ = [
    "DEFAULT_DATASET",
    "DROP_RULES",
    "SPLITS",
    "DataSummary",
    "count_words",
    "load_negative_prompts",
    "split_of",
]

logger = logging.getLogger(__name__)

DEFAULT_DATASET = "mikeogezi/negopt_full"
REQUIRED_COLUMNS = ("prompt", "negative_prompt")
SPLITS = ("train", "validation", "test")
DROP_RULES = (
    "prompt_not_text",
    "negative_not_text",
    "empty_prompt",
    "empty_negative",
    "min_likes",
    "duplicate_pair",
    "prompt_too_long",
    "negative_too_long",
)
_WORD = re.compile(r"[^\s,]+")
_HAS_EMPHASIS = re.compile(r"[()\[\]]")


def count_words(text: str) -> int:
    """The tokenizer-free length of a text: its words, split at whitespace and commas."""
    return len(_WORD.findall(text))


def _prompt_key(prompt: str) -> str:
    # What counts as "the same prompt" for the split: case and spacing do not matter.
    return " ".join(prompt.lower().split())


def split_of(prompt: str, validation_size: float = 0.05, test_size: float = 0.05, seed: int = 0) -> str:
    """The split a prompt belongs to: ``"train"``, ``"validation"`` or ``"test"``.

    A hash of the normalised prompt (lowercase, single spaces) and ``seed`` picks the split, so the answer depends
    on nothing else: the same prompt always lands in the same split, in any dataset, on any machine.

    Args:
        prompt: The (cleaned) prompt.
        validation_size: Expected fraction of prompts in ``validation``.
        test_size: Expected fraction of prompts in ``test``.
        seed: Changes the assignment; keep it fixed to keep the splits.

    Returns:
        The split's name.
    """
    digest = hashlib.blake2b(f"{seed}\x00{_prompt_key(prompt)}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    if u < test_size:
        return "test"
    if u < test_size + validation_size:
        return "validation"
    return "train"


def _empty_rule(prompt: str, negative: str) -> str | None:
    """The drop rule of a pair with an empty side, or None."""
    return "empty_prompt" if not prompt else "empty_negative" if not negative else None


def _length_stats(lengths: list[int]) -> dict[str, float]:
    if not lengths:
        return {"min": 0, "mean": 0.0, "median": 0.0, "p95": 0, "max": 0}
    ordered = sorted(lengths)
    return {
        "min": ordered[0],
        "mean": round(statistics.fmean(ordered), 1),
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
    }


@dataclass
class DataSummary:
    """What :func:`load_negative_prompts` kept and dropped.

    Attributes:
        source: Where the rows came from.
        rows_in: Rows read.
        rows_out: Rows kept, over all splits.
        dropped: Rows dropped per rule, in the order the rules run.
        changed: Rows changed but kept, per normalisation (``weights_stripped``, ``negative_normalised``).
        splits: Rows per split.
        prompt_length: Length statistics of the kept prompts (min, mean, median, p95, max).
        negative_length: The same for the kept negatives.
        length_unit: ``"tokens"`` (of the tokenizer given) or ``"words"``.
    """

    source: str
    rows_in: int = 0
    rows_out: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_RULES, 0))
    changed: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    prompt_length: dict[str, float] = field(default_factory=dict)
    negative_length: dict[str, float] = field(default_factory=dict)
    length_unit: str = "words"

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    def __str__(self) -> str:
        lines = [f"data: {self.source}", f"  rows read          {self.rows_in:>10,}"]
        for rule, n in self.dropped.items():
            lines.append(f"  - {rule:<17}{n:>10,}")
        lines.append(f"  rows kept          {self.rows_out:>10,}")
        for name, n in self.changed.items():
            lines.append(f"  ({name}: {n:,} rows changed)")
        lines.append("  splits             " + ", ".join(f"{k} {v:,}" for k, v in self.splits.items()))
        for name, stats in (("prompt", self.prompt_length), ("negative", self.negative_length)):
            if stats:
                lines.append(
                    f"  {name} length ({self.length_unit}): min {stats['min']}, mean {stats['mean']}, "
                    f"median {stats['median']}, p95 {stats['p95']}, max {stats['max']}"
                )
        return "\n".join(lines)


def _load_source(source, *, revision, cache_dir, token):
    datasets = import_datasets()
    if isinstance(source, datasets.DatasetDict):
        return datasets.concatenate_datasets(list(source.values())), "a DatasetDict"
    if isinstance(source, datasets.Dataset):
        return source, "a Dataset"
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a hub id, a file path or a datasets.Dataset, got {type(source).__name__}.")
    path = os.fspath(source)
    if os.path.isfile(path):
        return read_local(path), path
    if os.path.isdir(path):
        raise ValueError(f"source {path!r} is a folder; pass a parquet, CSV or JSONL file inside it, or a hub id.")
    # A hub id is "name" or "owner/name"; anything else that does not exist is a missing file.
    if path.lower().endswith(LOCAL_SUFFIXES) or not is_hub_id(path):
        raise FileNotFoundError(f"source {path!r} does not exist; check the path.")
    try:
        ds = datasets.load_dataset(path, revision=revision, cache_dir=cache_dir, token=token, split="train")
    except Exception as e:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ...)
        raise ValueError(
            f"cannot load dataset {path!r} from the Hugging Face hub (revision={revision!r}): "
            f"{type(e).__name__}: {e}. Check the id and your network (HF_HUB_OFFLINE must not be set), "
            "or pass a local parquet, CSV or JSONL file with 'prompt' and 'negative_prompt' columns."
        ) from e
    return ds, f"{path}" + (f"@{revision}" if revision else "")


def load_negative_prompts(
    source: str | os.PathLike | datasets.Dataset = DEFAULT_DATASET,
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    token: str | bool | None = None,
    min_likes: int | None = None,
    strip_weights: bool = True,
    max_prompt_length: int | None = 256,
    max_negative_length: int | None = 128,
    tokenizer=None,
    validation_size: float = 0.05,
    test_size: float = 0.05,
    split_seed: int = 0,
    return_summary: bool = False,
) -> datasets.DatasetDict | tuple[datasets.DatasetDict, DataSummary]:
    """Load, clean and split prompt / negative-prompt pairs.

    The cleaning rules and their order are in this module's docstring; every other column is kept.

    Args:
        source: A hub dataset id (its ``train`` split is read), a local ``.parquet``, ``.csv`` or ``.jsonl`` file
            (``.json`` too: JSON Lines or one array of objects), a ``datasets.Dataset``, or a ``DatasetDict`` (its
            splits are joined and split afresh). It needs ``prompt`` and ``negative_prompt`` columns.
        revision: Hub revision (branch, tag or commit) of a hub ``source``.
        cache_dir: Where the hub download is cached.
        token: Hub token for a private dataset.
        min_likes: Drop rows with fewer likes (needs a ``likes`` column). None keeps all.
        strip_weights: Remove AUTOMATIC1111 emphasis syntax, ``(blurry:1.3)`` -> ``blurry``, from both texts.
        max_prompt_length: Drop rows whose prompt is longer (tokens of ``tokenizer``, else words). None: no limit.
        max_negative_length: The same for the negative prompt.
        tokenizer: A transformers tokenizer to count lengths in its tokens.
        validation_size: Expected fraction of prompts in the ``validation`` split.
        test_size: Expected fraction of prompts in the ``test`` split.
        split_seed: Salt of the split hash; keep it fixed to keep the splits.
        return_summary: Also return a :class:`DataSummary`.

    Returns:
        A ``datasets.DatasetDict`` with ``train``, ``validation`` and ``test`` (and the summary if asked for).

    Raises:
        FileNotFoundError: A local ``source`` does not exist.
        ValueError: The source cannot be read, misses a column, is empty after cleaning, or an argument is out of
            range.
        ImportError: ``datasets`` is not installed.

    Example:
        >>> dd, summary = load_negative_prompts("pairs.csv", min_likes=1, return_summary=True)  # doctest: +SKIP
        >>> print(summary)  # doctest: +SKIP
    """
    datasets = import_datasets()
    for name, value in (("validation_size", validation_size), ("test_size", test_size)):
        if not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{name} must be a fraction in [0, 1), got {value!r}.")
    if validation_size + test_size >= 1:
        raise ValueError(
            f"validation_size + test_size must be below 1 to leave rows for training, got "
            f"{validation_size} + {test_size}."
        )
    for name, value in (("max_prompt_length", max_prompt_length), ("max_negative_length", max_negative_length)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}.")

    ds, label = _load_source(source, revision=revision, cache_dir=cache_dir, token=token)
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"source {label!r} lacks the column(s) {missing}; it has {ds.column_names}. Rename your columns to "
            "'prompt' and 'negative_prompt'."
        )
    if min_likes is not None and "likes" not in ds.column_names:
        raise ValueError(
            f"min_likes={min_likes} needs a 'likes' column, which source {label!r} lacks (it has "
            f"{ds.column_names}). Pass min_likes=None, or add a 'likes' column."
        )

    summary = DataSummary(source=label, rows_in=len(ds))
    summary.length_unit = "tokens" if tokenizer is not None else "words"
    prompts_in = ds["prompt"]
    negatives_in = ds["negative_prompt"]
    likes = ds["likes"] if min_likes is not None else None

    keep: list[int] = []
    prompts: list[str] = []
    negatives: list[str] = []
    seen: set[tuple[str, str]] = set()
    changed: dict[str, list[bool]] = {"weights_stripped": [], "negative_normalised": []}
    dropped = summary.dropped
    for i, (p, n) in enumerate(zip(prompts_in, negatives_in)):
        if p is not None and not isinstance(p, str):
            dropped["prompt_not_text"] += 1
            continue
        if n is not None and not isinstance(n, str):
            dropped["negative_not_text"] += 1
            continue
        p = p.strip() if isinstance(p, str) else ""
        n = n.strip() if isinstance(n, str) else ""
        empty = _empty_rule(p, n)
        if empty:
            dropped[empty] += 1
            continue
        if likes is not None and (likes[i] is None or likes[i] < min_likes):
            dropped["min_likes"] += 1
            continue
        if strip_weights:
            n2 = _strip_weights(n)
            had_weights = n2 != clean_negative(n)
            if _HAS_EMPHASIS.search(p):
                # Only a prompt with emphasis is rewritten: strip_weights also re-joins terms with ", ".
                p2 = _strip_weights(p)
                had_weights = had_weights or p2 != clean_negative(p)
                p = p2
        else:
            n2 = clean_negative(n)
            had_weights = False
        normalised = n2 != n
        n = n2
        empty = _empty_rule(p, n)
        if empty:
            dropped[empty] += 1
            continue
        if (p, n) in seen:
            dropped["duplicate_pair"] += 1
            continue
        seen.add((p, n))
        changed["weights_stripped"].append(had_weights)
        changed["negative_normalised"].append(normalised)
        keep.append(i)
        prompts.append(p)
        negatives.append(n)

    if tokenizer is not None and prompts:
        p_len = [len(x) for x in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
        n_len = [len(x) for x in tokenizer(negatives, add_special_tokens=False)["input_ids"]]
    else:
        p_len = [count_words(x) for x in prompts]
        n_len = [count_words(x) for x in negatives]
    final = []
    for j in range(len(keep)):
        if max_prompt_length is not None and p_len[j] > max_prompt_length:
            dropped["prompt_too_long"] += 1
        elif max_negative_length is not None and n_len[j] > max_negative_length:
            dropped["negative_too_long"] += 1
        else:
            final.append(j)

    summary.rows_out = len(final)
    if not final:
        raise ValueError(
            f"no rows left in {label!r} after cleaning: {summary.rows_in} read, dropped {dict(dropped)}. "
            "Check the column contents, or relax min_likes / max_prompt_length / max_negative_length."
        )
    summary.prompt_length = _length_stats([p_len[j] for j in final])
    summary.negative_length = _length_stats([n_len[j] for j in final])

    # Rebuild the table with pyarrow: no cache files and no progress bar for a few column operations.
    import pyarrow as pa

    table = ds.with_format("arrow")[[keep[j] for j in final]]
    others = [c for c in ds.column_names if c not in REQUIRED_COLUMNS]
    table = pa.table(
        {
            "prompt": pa.array([prompts[j] for j in final], type=pa.string()),
            "negative_prompt": pa.array([negatives[j] for j in final], type=pa.string()),
            **{c: table.column(c) for c in others},
        }
    )
    clean = datasets.Dataset(table)
    summary.changed = {name: sum(flags[j] for j in final) for name, flags in changed.items()}
    if not strip_weights:
        del summary.changed["weights_stripped"]

    assignment = [split_of(p, validation_size, test_size, split_seed) for p in clean["prompt"]]
    by_split: dict[str, list[int]] = {name: [] for name in SPLITS}
    for idx, name in enumerate(assignment):
        by_split[name].append(idx)
    out = datasets.DatasetDict({name: clean.select(by_split[name]) for name in SPLITS})
    summary.splits = {name: len(out[name]) for name in SPLITS}
    logger.info("%s", summary)
    return (out, summary) if return_summary else out
