"""Supervised fine-tuning (SFT) of a negative-prompt generator on prompt / negative-prompt pairs
(NegOpt's first stage).

``config`` (``SFTConfig``, ``SFTResult``), ``data`` (pairs to tokenized rows), ``metrics`` (ROUGE-L on the validation
split), ``card`` (the model card of the output folder) and ``trainer`` (``SFTTrainer``, on transformers'
``Seq2SeqTrainer``). Names load lazily: ``import negopt.train.sft`` does not import transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_LAZY = {
    "SFTConfig": "negopt.train.sft.config",
    "SFTResult": "negopt.train.sft.config",
    "SFTTrainer": "negopt.train.sft.trainer",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from negopt.train.sft.config import SFTConfig, SFTResult
    from negopt.train.sft.trainer import SFTTrainer


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'negopt.train.sft' has no attribute {name!r}")
