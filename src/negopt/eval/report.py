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
    """The report's table in markdown: one row per condition, ``mean [lo, hi]`` per metric, then relative changes."""
    metrics = list(report["metrics"])
    lines = [
        f"# negopt eval: {report['num_prompts']} prompts, seed {report['seed']}",
        "",
        "Mean over prompts with a 95% bootstrap interval; the Inception Score is of each condition's image set, "
        "with a 95% half-sampling interval.",
        "",
        "| condition | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for name, values in report["conditions"].items():
        cells = []
        for metric in metrics:
            entry = values[metric]
            ci = entry["ci95"]
            cells.append(f"{entry['mean']:.4g}" + (f" [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if report.get("relative_to_none"):
        lines += ["", "Relative change against `none`:", "", "| condition | " + " | ".join(metrics) + " |"]
        lines.append("|---|" + "---|" * len(metrics))
        for name, values in report["relative_to_none"].items():
            cells = ["n/a" if values[m] is None else f"{100 * values[m]:+.1f}%" for m in metrics]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
