"""Does a negative-prompt generator help on my pipeline? Conditions x metrics, a report and figures.

:func:`evaluate` ties the parts together: :mod:`~negopt.eval.rendering` (seeded, cached images),
:mod:`~negopt.eval.metrics` (NegOpt's metrics by name), :mod:`~negopt.eval.intervals` (95% intervals),
:mod:`~negopt.eval.report` (``report.json`` / ``report.md``) and :mod:`~negopt.eval.figures` (the captioned grid and
the bar chart). :class:`EvalConfig` holds its settings. Needs the ``eval`` extra: ``pip install "negopt[eval]"``.
Names load lazily, so ``from negopt.eval import EvalConfig`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_LAZY = {
    "evaluate": "negopt.eval.core",
    "EvalConfig": "negopt.eval.config",
    "default_metrics": "negopt.eval.metrics",
    "InceptionScoreMetric": "negopt.eval.metrics",
    "make_grid": "negopt.eval.figures",
    "plot_metrics": "negopt.eval.figures",
    "PLOT_DPI": "negopt.eval.figures",
    "PLOT_PANEL_INCHES": "negopt.eval.figures",
    "report_markdown": "negopt.eval.report",
    "render": "negopt.eval.rendering",
    "ImageCache": "negopt.eval.rendering",
    "mean_interval": "negopt.eval.intervals",
    "set_statistic_interval": "negopt.eval.intervals",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from negopt.eval.config import EvalConfig
    from negopt.eval.core import evaluate
    from negopt.eval.figures import PLOT_DPI, PLOT_PANEL_INCHES, make_grid, plot_metrics
    from negopt.eval.intervals import mean_interval, set_statistic_interval
    from negopt.eval.metrics import InceptionScoreMetric, default_metrics
    from negopt.eval.rendering import ImageCache, render
    from negopt.eval.report import report_markdown


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'negopt.eval' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
