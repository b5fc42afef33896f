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
        with open(path, encoding="utf-8") as f:
            head = f.read(1024).lstrip()
            f.seek(0)
            records = json.load(f) if head.startswith("[") else [json.loads(line) for line in f if line.strip()]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ValueError("every record must be a JSON object")
        return datasets.Dataset.from_list(records)
    except (OSError, ValueError, TypeError, UnicodeDecodeError) as e:  # pyarrow's errors subclass these
        raise ValueError(f"cannot read source {path!r} as {suffix[1:]}: {e}") from e
