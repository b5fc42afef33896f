"""The evaluation report: relative changes against ``none``, ``report.json`` and its markdown table."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["relative_to", "report_markdown", "write_report"]


def relative_to(summary: Mapping[str, Mapping[str, Mapping[str, Any]]], base: str = "none") -> dict[str, Any]:
    """``(value - base) / |base|`` of each metric mean, for every condition but ``base`` ({} without ``base``)."""
    if base not in summary:
        return {}
    out: dict[str, Any] = {}
    for name, values in summary.items():
        if name == base:
            continue
        out[name] = {}
        for metric, entry in values.items():
            reference = summary[base][metric]["mean"]
            out[name][metric] = (entry["mean"] - reference) / abs(reference) if reference else None
    return out


def write_report(report: Mapping[str, Any], output_dir: str | os.PathLike) -> dict[str, str]:
    """Write ``report.json`` and ``report.md`` into ``output_dir``; returns their paths."""
    files = {
        "report_json": os.path.join(os.fspath(output_dir), "report.json"),
        "report_md": os.path.join(os.fspath(output_dir), "report.md"),
    }
    with open(files["report_json"], "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
    with open(files["report_md"], "w", encoding="utf-8") as f:
        f.write(report_markdown(report))
    return files


def report_markdown(report: Mapping[str, Any]) -> str:
    """The report's table in markdown: one row per condition, ``mean [lo, hi]`` per metric (and the bias-corrected
    centre of a whole-set statistic, the Inception Score, beside it), then relative changes."""
    metrics = list(report["metrics"])
    n = report["num_prompts"]
    # A statistic of the whole image set (the Inception Score) is reported with a bias-corrected centre.
    conditions = report["conditions"].values()
    whole_set = [m for m in metrics if any("bias_corrected" in v[m] for v in conditions)]
    about = "Mean over prompts with a 95% bootstrap interval."
    if whole_set:
        names = ", ".join(f"`{m}`" for m in whole_set)
        about = (
            f"Mean over prompts with a 95% bootstrap interval; {names}: the Inception Score of each condition's set "
            f"of {n} images, with a 95% half-sampling interval. That interval is for the score expected from {n} "
            "images, not for the score of the image distribution: the Inception Score grows with the number of "
            "images, by more than the interval's width when the images spread over many classes, so compare it only "
            f"between sets of {n} images."
        )
    # The bias-corrected centre gets a column of its own, beside its metric's: one row per condition.
    corrected = [m for m in whole_set if any(v[m]["bias_corrected"] is not None for v in conditions)]
    columns = [c for m in metrics for c in ([m, f"{m} (bias-corrected)"] if m in corrected else [m])]
    lines = [
        f"# negopt eval: {n} prompts, seed {report['seed']}",
        "",
        about,
        "",
        "| condition | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, values in report["conditions"].items():
        cells = []
        for metric in metrics:
            entry = values[metric]
            ci = entry["ci95"]
            cells.append(f"{entry['mean']:.4g}" + (f" [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""))
            if metric in corrected:
                cells.append(_number(entry["bias_corrected"]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if corrected:
        lines += [
            "",
            f"Bias-corrected: `(n * IS_n - r * mean IS_r) / (n - r)` over the half-samples of r = {n // 2} images "
            "(`2 * IS_n - mean IS_half` for even n), which removes the 1/n part of the score's small-sample bias: "
            "closer to the score of the image distribution, still below it when the images spread over more classes "
            "than there are images; it has no interval of its own.",
        ]
    if report.get("relative_to_none"):
        lines += ["", "Relative change against `none`:", "", "| condition | " + " | ".join(metrics) + " |"]
        lines.append("|---|" + "---|" * len(metrics))
        for name, values in report["relative_to_none"].items():
            cells = ["n/a" if values[m] is None else f"{100 * values[m]:+.1f}%" for m in metrics]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
