"""Figures: one captioned image grid (``grid.png`` of an evaluation, RL's sample grids) and the metrics bar chart."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["make_grid", "plot_metrics", "GRID_CAPTION_LINES", "GRID_PROMPT_LINES", "GRID_PAD"]

# Grid layout: captions are wrapped to this many lines under each image, prompts to this many above each row.
GRID_CAPTION_LINES = 3
GRID_PROMPT_LINES = 2
GRID_PAD = 4

# Bar chart size: one panel per metric, this many inches square, at this dpi.
PLOT_PANEL_INCHES = 4
PLOT_DPI = 100


def _wrap(draw, text: str, font, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels, at most ``max_lines`` lines (the last one cut with '...')."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if draw.textlength(candidate, font=font) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] += " ..."
    for k, line in enumerate(lines):  # a single word wider than the cell: cut it
        while draw.textlength(line, font=font) > width and len(line) > 4:
            line = line[:-5] + "..."
        lines[k] = line
    return lines


def make_grid(
    images: Sequence[Sequence[Any]],
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    captions: Sequence[Sequence[str | None]],
    *,
    cell_size: int = 256,
    cell_width: int | None = None,
):
    """A Figure-1 style grid: one row per prompt (its text above), one column per condition or candidate (its label
    on top), each image captioned below (its negative prompt, and whatever else the caller writes there).

    Args:
        images: ``images[row][column]``, PIL images (resized to ``cell_width`` x ``cell_size``).
        row_labels: The prompt of each row.
        column_labels: The label of each column (a condition, or ``"reward 0.42"``).
        captions: ``captions[row][column]``, the negative prompt (None: shown as "(no negative prompt)").
        cell_size: Pixel height of each image (and its width, unless ``cell_width`` is given).
        cell_width: Pixel width of each image, for images that are not square (a video's frame strip); None for
            ``cell_size``.

    Returns:
        A PIL image ``len(column_labels) * cell_width`` pixels wide.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, right, bottom = scratch.textbbox((0, 0), "Ag", font=font)
    line = bottom - top + 3
    header = line + 2 * GRID_PAD
    prompt_band = GRID_PROMPT_LINES * line + 2 * GRID_PAD
    caption_band = GRID_CAPTION_LINES * line + 2 * GRID_PAD
    row_height = prompt_band + cell_size + caption_band
    cell_width = cell_size if cell_width is None else cell_width
    width = max(1, len(column_labels)) * cell_width
    canvas = Image.new("RGB", (width, header + len(row_labels) * row_height), "white")
    draw = ImageDraw.Draw(canvas)
    for c, label in enumerate(column_labels):
        text = _wrap(draw, label, font, cell_width - 2 * GRID_PAD, 1)[0] if label else ""
        draw.text((c * cell_width + GRID_PAD, GRID_PAD), text, fill="black", font=font)
    for r, prompt in enumerate(row_labels):
        y = header + r * row_height
        draw.line([(0, y), (width, y)], fill=(200, 200, 200))
        for k, text in enumerate(_wrap(draw, prompt, font, width - 2 * GRID_PAD, GRID_PROMPT_LINES)):
            draw.text((GRID_PAD, y + GRID_PAD + k * line), text, fill="black", font=font)
        for c in range(len(column_labels)):
            image = images[r][c].convert("RGB").resize((cell_width, cell_size))
            canvas.paste(image, (c * cell_width, y + prompt_band))
            caption = captions[r][c]
            caption = "(no negative prompt)" if caption is None else (caption or '""')
            x, y0 = c * cell_width + GRID_PAD, y + prompt_band + cell_size + GRID_PAD
            for k, text in enumerate(_wrap(draw, caption, font, cell_width - 2 * GRID_PAD, GRID_CAPTION_LINES)):
                draw.text((x, y0 + k * line), text, fill=(60, 60, 60), font=font)
    return canvas


def import_matplotlib():
    """Check that matplotlib is installed (the ``eval`` extra), with the install hint if not."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ImportError('negopt eval draws its bar chart with matplotlib: pip install "negopt[eval]"') from e


def plot_metrics(summary: Mapping[str, Mapping[str, Mapping[str, Any]]], path: str | os.PathLike) -> str:
    """Save a bar chart of each metric by condition (with the 95% intervals) to ``path``.

    The figure is ``PLOT_PANEL_INCHES * PLOT_DPI`` pixels per metric wide and as many high. Uses matplotlib's Agg
    canvas directly, leaving the global backend alone.
    """
    import_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    conditions = list(summary)
    metrics = list(next(iter(summary.values()))) if summary else []
    figure = Figure(figsize=(PLOT_PANEL_INCHES * max(1, len(metrics)), PLOT_PANEL_INCHES), dpi=PLOT_DPI)
    FigureCanvasAgg(figure)
    for k, metric in enumerate(metrics):
        ax = figure.add_subplot(1, max(1, len(metrics)), k + 1)
        means = [summary[c][metric]["mean"] for c in conditions]
        errors = np.zeros((2, len(conditions)))
        for j, c in enumerate(conditions):
            ci = summary[c][metric]["ci95"]
            if ci:
                errors[:, j] = [max(0.0, means[j] - ci[0]), max(0.0, ci[1] - means[j])]
        ax.bar(range(len(conditions)), means, yerr=errors, capsize=4, color=[f"C{j}" for j in range(len(conditions))])
        ax.set_xticks(range(len(conditions)), conditions, rotation=30, ha="right")
        ax.set_title(metric)
        finite = [m for m in means if math.isfinite(m)]
        if finite and min(finite) >= 0:
            ax.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(os.fspath(path))
    return os.fspath(path)
