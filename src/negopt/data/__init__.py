"""Data: Negative Prompts DB pairs and prompt lists.

- :func:`load_negative_prompts` loads, cleans and splits prompt / negative-prompt pairs (Negative Prompts DB or a
  file of your own), with a :class:`DataSummary` of what each cleaning rule dropped; :func:`split_of` tells the split
  of a prompt (:mod:`negopt.data.negative_prompts`).
- :func:`load_prompts` is the one reader of prompt lists for ``negopt eval``, ``negopt train rl`` and
  :func:`~negopt.eval.evaluate` (:mod:`negopt.data.prompts`).
- Local parquet, CSV and JSON Lines files are read in memory by :mod:`negopt.data.files`.

Importing this package is light; reading data needs the ``train`` extra (``datasets``):
``pip install "negopt[train]"``.
"""

from __future__ import annotations

from negopt.data.negative_prompts import (
    DEFAULT_DATASET,
    DataSummary,
    count_words,
    load_negative_prompts,
    split_of,
)
from negopt.data.prompts import load_prompts

__all__ = ["DEFAULT_DATASET", "DataSummary", "load_negative_prompts", "load_prompts", "split_of", "count_words"]
