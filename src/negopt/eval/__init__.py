"""Does a negative-prompt generator help on my pipeline? Conditions x metrics, a report and figures.

:func:`evaluate` ties the parts together: :mod:`~negopt.eval.rendering` (seeded, cached images),
:mod:`~negopt.eval.metrics` (NegOpt's metrics by name), :mod:`~negopt.eval.intervals` (95% intervals),
:mod:`~negopt.eval.report` (``report.json`` / ``report.md``) and :mod:`~negopt.eval.figures` (the captioned grid and
the bar chart). :class:`EvalConfig` holds its settings. Needs the ``eval`` extra: ``pip install "negopt[eval]"``.
"""

from __future__ import annotations

from negopt.eval.config import EvalConfig
from negopt.eval.core import evaluate
from negopt.eval.figures import PLOT_DPI, PLOT_PANEL_INCHES, make_grid, plot_metrics
from negopt.eval.intervals import mean_interval, set_statistic_interval
from negopt.eval.metrics import InceptionScoreMetric, default_metrics
from negopt.eval.rendering import ImageCache, render
from negopt.eval.report import report_markdown

__all__ = [
    "evaluate",
    "EvalConfig",
    "default_metrics",
    "InceptionScoreMetric",
    "make_grid",
    "plot_metrics",
    "report_markdown",
    "render",
    "ImageCache",
    "mean_interval",
    "set_statistic_interval",
    "PLOT_DPI",
    "PLOT_PANEL_INCHES",
]
