"""Local data files read into memory: parquet, CSV and JSON Lines (or a JSON array) as a ``datasets.Dataset``.

Nothing is cached on disk and nothing is downloaded; :mod:`negopt.data` reads local sources through here.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["LOCAL_SUFFIXES", "import_datasets", "read_local"]

#: The file types :func:`read_local` reads.
LOCAL_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")


def import_datasets() -> Any:
    """The ``datasets`` module, or an ImportError naming the extra that installs it."""
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError('negopt.data needs the `datasets` package: pip install "negopt[train]"') from e
    return datasets


def read_local(path: str) -> Any:
    """A local parquet, CSV or JSON Lines file as an in-memory ``datasets.Dataset`` (no cache files written).

    A ``.json`` file may be JSON Lines or one array of objects.

    Raises:
        ValueError: An unknown file type, or a file that cannot be read as its type.
        ImportError: ``datasets`` is not installed.
    """
    datasets = import_datasets()
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in LOCAL_SUFFIXES:
        raise ValueError(
            f"source {path!r} has an unknown file type {suffix!r}; use one of {', '.join(LOCAL_SUFFIXES)}."
        )
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return datasets.Dataset(pq.read_table(path))
        if suffix == ".csv":
            import pyarrow.csv as pcsv

            return datasets.Dataset(pcsv.read_csv(path, parse_options=pcsv.ParseOptions(newlines_in_values=True)))
        records, places = _read_json_records(path)
        try:
            return datasets.Dataset.from_list(records)
        except (ValueError, TypeError) as e:  # pyarrow's errors subclass these
            raise ValueError(f"{e}{_mixed_types(records, places)}") from e
    except (OSError, ValueError, TypeError, UnicodeDecodeError) as e:  # pyarrow's errors subclass these
        raise ValueError(f"cannot read source {path!r} as {suffix[1:]}: {e}") from e


def _read_json_records(path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The objects of a JSON Lines file (or of one JSON array), and where each is: ``line N`` (blank lines counted,
    as an editor counts them) or ``record N`` of the array (from 1).

    Raises:
        ValueError: A line that is not JSON, or a record that is not an object; the message says where.
    """
    # utf-8-sig: a byte-order mark, which some editors write, is not part of the first record.
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"line {e.lineno}, column {e.colno}: {e.msg}") from e
        places = [f"record {i} of the array" for i in range(1, len(records) + 1)] if isinstance(records, list) else []
    else:
        records, places = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"line {number}, column {e.colno}: {e.msg}: {line.strip()[:80]!r}") from e
            places.append(f"line {number}")
    if not isinstance(records, list):
        raise ValueError(
            f"the file must hold JSON objects, one a line, or one array of them; got a {type(records).__name__}"
        )
    for record, place in zip(records, places):
        if not isinstance(record, dict):
            raise ValueError(
                f"{place} is {_a('JSON ' + _json_kind(record))}, not an object: {json.dumps(record)[:80]}"
            )
    return records, places


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _mixed_types(records: list[dict[str, Any]], places: list[str]) -> str:
    """Where a column first changes its JSON type (a number, then a string), which pyarrow cannot store: "" if
    none."""
    first: dict[str, tuple[str, str]] = {}
    for record, place in zip(records, places):
        for key, value in record.items():
            if value is None:
                continue
            kind = _json_kind(value)
            if key not in first:
                first[key] = (kind, place)
            elif kind != first[key][0]:
                was, where = first[key]
                return (
                    f"; at {place}, {key!r} is {_a(kind)} ({json.dumps(value)[:60]}) where {where} has {_a(was)}: "
                    "give every row of a column the same type (quote numbers that are text)"
                )
    return ""
