"""``evaluate()``: render each prompt under each condition, score the images, write the report and the figures.

It runs in one process, or in each of several under a launcher (:mod:`negopt.eval.distributed`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from negopt import __version__
from negopt.eval.config import EvalConfig, check_name, check_output_dir
from negopt.eval.distributed import Processes
from negopt.eval.figures import import_matplotlib, make_grid, plot_metrics
from negopt.eval.intervals import bootstrap_indices, mean_interval, set_statistic_interval
from negopt.eval.metrics import InceptionScoreMetric, default_metrics
from negopt.eval.rendering import ImageCache, check_pipeline_kwargs, render, resolve_render_guidance, split_strip
from negopt.eval.report import relative_to, write_report

__all__ = ["evaluate"]

logger = logging.getLogger(__name__)


def _prompt_rows(prompts: Any) -> list[tuple[str, str | None]]:
    """``(prompt, its own negative or None)`` for each prompt, read by :func:`negopt.data.load_prompts`."""
    from negopt.data import load_prompts

    if isinstance(prompts, (str, os.PathLike)):
        raise TypeError(
            "prompts is a single string; pass a list of prompts (or of {'prompt', 'negative_prompt'}), or read a "
            "file with negopt.data.load_prompts(path, negatives=True)."
        )
    if hasattr(prompts, "__len__") and len(prompts) == 0:
        raise ValueError("prompts is empty; pass at least one prompt.")
    rows = load_prompts(prompts, negatives=True)
    return [(row["prompt"], row["negative_prompt"]) for row in rows]


def _call_generator(name: str, generator: Callable, prompts: list[str]) -> list[str]:
    negatives = generator(prompts)
    if isinstance(negatives, str) or not isinstance(negatives, Sequence):
        raise TypeError(f"generator {name!r} returned a {type(negatives).__name__}; expected a list of strings.")
    negatives = list(negatives)
    if len(negatives) != len(prompts):
        raise ValueError(f"generator {name!r} returned {len(negatives)} negatives for {len(prompts)} prompts.")
    for negative in negatives:
        if not isinstance(negative, str):
            raise TypeError(f"generator {name!r} returned a {type(negative).__name__} among its negatives.")
    return negatives


def _conditions(rows, generators, include_none: bool, pipeline) -> dict[str, Any]:
    """Name -> None (no negative), ``"dataset"`` (the prompts' own), or a generator; in report order."""
    conditions: dict[str, Any] = {}
    if include_none:
        conditions["none"] = None
    if any(negative for _, negative in rows):
        conditions["dataset"] = "dataset"
    for name, generator in (generators or {}).items():
        check_name(name, "generator")
        if name in ("none", "dataset"):
            raise ValueError(f"generator name {name!r} is taken by a built-in condition; rename the generator.")
        if not callable(generator):
            raise TypeError(f"generator {name!r} is a {type(generator).__name__}, which is not callable.")
        conditions[name] = generator
    if not conditions:
        raise ValueError(
            "no conditions to evaluate: include_none=False, the prompts carry no negatives, and no generators."
        )
    if any(c is not None for c in conditions.values()):
        from negopt.pipeline import negative_slots

        negative_slots(pipeline)  # the one test of "has a negative slot"; raises the standard ValueError
    return conditions


def evaluate(
    pipeline: Callable,
    prompts: Sequence[str] | Sequence[Mapping[str, Any]] | Any,
    *,
    generators: Mapping[str, Callable] | None = None,
    metrics: Mapping[str, Any] | None = None,
    config: EvalConfig | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Render the prompts under each condition, score them, and write the report and figures.

    Conditions: ``none`` (no negative prompt), ``dataset`` (the prompts' own negatives, when they carry any), and
    one per generator. Prompt ``i`` is rendered with ``torch.Generator().manual_seed(seed + i)`` in every condition,
    so the differences between conditions come from the negatives alone. Files written to ``output_dir``:
    ``report.json`` (``{"conditions": {name: {metric: {"mean", "ci95"}}}, "relative_to_none": ..., ...}``),
    ``report.md``, ``grid.png`` (prompts as rows, conditions as columns, each image captioned with its negative),
    ``metrics.png`` (a bar chart with the intervals) and ``images/<condition>/<index>-<hash>.png`` (+ ``.json``).

    Under ``torchrun`` or ``accelerate launch``, call it in every process, each with its pipeline (and generators and
    metrics) on its own device: the processes share the batches and the scoring (:mod:`negopt.eval.distributed`),
    the main process writes the files, and every process gets the report, the same as one process writes for the same
    prompts and seeds. ``output_dir`` must be a folder all the processes see.

    Args:
        pipeline: A diffusers pipeline with a ``negative_prompt`` argument, called as it is: set its device and
            dtype before. A video pipeline (one of :data:`negopt.pipeline.families.FAMILIES`' video families, or one
            whose call takes ``num_frames``) is scored on ``video_frames`` frames of each video, a video's score
            being the mean of its frames' (see :class:`~negopt.eval.EvalConfig`). Its own progress bar is off while
            it renders (evaluate shows one over the prompts).
        prompts: A list of prompts; a list of dicts with ``prompt`` and optionally ``negative_prompt``; or a
            ``datasets.Dataset`` with those columns (see :func:`negopt.data.load_prompts` for files).
        generators: Condition name -> generator (``gen(list[str]) -> list[str]``): a ``NegOptGenerator``, the
            built-in, or any function.
        metrics: Metric name -> reward callable (scored per image, reported as the mean over prompts) or
            :class:`~negopt.eval.InceptionScoreMetric` (scored on the whole set). Default:
            :func:`~negopt.eval.default_metrics` (aesthetics, CLIP score, Inception Score; downloads their models).
        config: The run's settings; see :class:`~negopt.eval.EvalConfig`.
        **settings: :class:`~negopt.eval.EvalConfig` fields given one by one (``output_dir="out/eval"``), over
            ``config``'s.

    Returns:
        The report (what ``report.json`` holds), with ``files``: the paths written.

    Raises:
        ValueError: On empty prompts, clashing or unsafe condition names, no condition at all, pipeline arguments
            that evaluate() sets itself, a setting out of range, or a pipeline without a ``negative_prompt`` slot.
        TypeError: On prompts, generators or metrics of the wrong type, or an unknown setting.
        ImportError: If the ``eval`` extra (torchmetrics, matplotlib) is missing.

    Example:
        >>> report = evaluate(pipe, ["a red fox"], generators={"builtin": BuiltinGenerator()},
        ...                   output_dir="out/eval")  # doctest: +SKIP
        >>> report["conditions"]["builtin"]["aesthetic"]["mean"]  # doctest: +SKIP
    """
    import dataclasses

    from tqdm.auto import tqdm

    known = {f.name for f in dataclasses.fields(EvalConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"evaluate() got unknown setting(s) {unknown}; valid: {', '.join(sorted(known))}.")
    cfg = dataclasses.replace(config, **settings) if config is not None else EvalConfig(**settings)
    check_output_dir(cfg.output_dir)
    import_matplotlib()
    rows = _prompt_rows(prompts)
    kwargs = check_pipeline_kwargs(cfg.pipeline_kwargs, stacklevel=3, negative_guidance=cfg.negative_guidance)
    conditions = _conditions(rows, generators, cfg.include_none, pipeline)
    guidance = cfg.guidance
    used = None
    if any(c is not None for c in conditions.values()):
        used = resolve_render_guidance(pipeline, kwargs, guidance, stacklevel=2)
    if metrics is None:
        metrics = default_metrics(device=getattr(pipeline, "device", None))
    metrics = dict(metrics)
    for name, metric in metrics.items():
        check_name(name, "metric")
        if not (isinstance(metric, InceptionScoreMetric) or callable(metric)):
            raise TypeError(f"metric {name!r} is a {type(metric).__name__}: expected a reward callable.")

    from negopt.pipeline.families import is_video_pipeline

    # A video is kept as a strip of cfg.video_frames sampled frames: cached, scored frame by frame, shown in the grid.
    video_frames = cfg.video_frames if is_video_pipeline(pipeline) else None
    output_dir = cfg.output_dir
    # NAG's images differ from those made with the negative ignored: they get their own cache entries.
    nag = None
    if used == "nag":  # the knobs in effect, the family's defaults filled in
        from negopt.pipeline.guidance import NAG_KNOBS, nag_family
        from negopt.pipeline.guidance.modes import check_nag_knobs, nag_settings

        nag = nag_settings(nag_family(pipeline), check_nag_knobs(**{k: guidance[k] for k in NAG_KNOBS}))
    cache_kwargs = kwargs if nag is None else {**kwargs, "negopt_nag": nag}
    cache = ImageCache(os.path.join(output_dir, "images"), cache_kwargs, video_frames=video_frames)
    processes = Processes()
    batches = [list(range(b, min(b + cfg.batch_size, len(rows)))) for b in range(0, len(rows), cfg.batch_size)]
    mine = processes.share(batches)  # all of them in one process
    paths: dict[str, list[str]] = {name: [""] * len(rows) for name in conditions}
    negatives: dict[str, list[str | None]] = {name: [None] * len(rows) for name in conditions}
    rendered = reused = 0
    desc = "negopt eval" if processes.num_processes == 1 else f"negopt eval (process 0 of {processes.num_processes})"
    show = cfg.progress and processes.is_main_process
    with tqdm(total=sum(map(len, mine)), desc=desc, unit="prompt", disable=not show) as bar:
        for indices in mine:
            for name, condition in conditions.items():
                if condition is None:
                    batch_negatives: list[str | None] = [None] * len(indices)
                elif condition == "dataset":
                    batch_negatives = [rows[i][1] or "" for i in indices]
                else:
                    batch_negatives = list(_call_generator(name, condition, [rows[i][0] for i in indices]))
                for i, negative in zip(indices, batch_negatives):
                    paths[name][i] = cache.path(name, i, rows[i][0], negative, cfg.seed + i)
                    negatives[name][i] = negative
                missing = [i for i in indices if not cache.has(paths[name][i])]
                reused += len(indices) - len(missing)
                if missing:
                    images = render(
                        pipeline,
                        [rows[i][0] for i in missing],
                        None if condition is None else [negatives[name][i] for i in missing],
                        [cfg.seed + i for i in missing],
                        pipeline_kwargs=kwargs,
                        video_frames=video_frames,
                        guidance=guidance,
                    )
                    # Saved as soon as the call returns: a process that stops loses only the call in progress.
                    for i, image in zip(missing, images):
                        meta = {
                            "condition": name,
                            "index": i,
                            "prompt": rows[i][0],
                            "negative_prompt": negatives[name][i],
                        }
                        if video_frames is not None:  # which frames of the video the strip holds
                            meta.update(frames=image.info["frames"], num_frames=image.info["num_frames"])
                        cache.save(paths[name][i], image, {**meta, "seed": cfg.seed + i})
                    rendered += len(missing)
            bar.update(len(indices))
    if processes.num_processes > 1:  # every process learns the others' negatives and image paths
        own = [(name, i, paths[name][i], negatives[name][i]) for batch in mine for name in conditions for i in batch]
        parts = processes.gather({"images": own, "rendered": rendered, "reused": reused})
        for part in parts:
            for name, i, path, negative in part["images"]:
                paths[name][i], negatives[name][i] = path, negative
        rendered, reused = sum(p["rendered"] for p in parts), sum(p["reused"] for p in parts)
    logger.info("rendered %d images, reused %d from %s", rendered, reused, cache.folder)

    # Each process scores its share of the chunks a one-process run would score (the images are on disk by now);
    # the main process puts the per-image scores and logits together and computes every statistic on the whole set.
    chunks = [(name, c) for name in conditions for c in range(0, len(rows), cfg.score_batch_size)]
    scored = processes.gather(
        _score_chunks(processes.share(chunks), metrics, rows, paths, negatives, cfg, video_frames)
    )
    if not processes.is_main_process:
        return processes.broadcast(None)
    scores, summary = _summarize(
        conditions, metrics, len(rows), {k: v for part in scored for k, v in part.items()}, cfg, video_frames
    )
    report = {
        "negopt_version": __version__,
        "num_prompts": len(rows),
        "seed": cfg.seed,
        "pipeline": type(pipeline).__name__,
        "pipeline_kwargs": json.loads(json.dumps(kwargs, default=repr)),
        "negative_guidance": used,
        "nag": nag,
        "metrics": list(metrics),
        "conditions": summary,
        "relative_to_none": relative_to(summary, "none"),
        "num_bootstrap": cfg.num_bootstrap,
        "intervals": {"per_image": "percentile bootstrap", "set": "half-sampling (delete-d jackknife)"},
        "per_prompt": {
            name: {
                "images": [os.path.relpath(p, output_dir) for p in paths[name]],
                "negative_prompts": negatives[name],
                **scores[name],
            }
            for name in conditions
        },
        "prompts": [row[0] for row in rows],
    }
    if video_frames is not None:
        with open(paths[next(iter(conditions))][0][: -len(".png")] + ".json", encoding="utf-8") as f:
            first = json.load(f)  # every video of a run has the same length: its call's num_frames
        report["video"] = {
            "frames_scored": len(first["frames"]),
            "frame_indices": first["frames"],
            "num_frames": first["num_frames"],
        }
    files = write_report(report, output_dir)
    files["grid"] = os.path.join(output_dir, "grid.png")
    files["metrics_plot"] = os.path.join(output_dir, "metrics.png")
    from PIL import Image

    shown = range(min(cfg.grid_rows, len(rows)))
    grid_images = [[Image.open(paths[name][i]).convert("RGB") for name in conditions] for i in shown]
    captions = [[negatives[name][i] for name in conditions] for i in shown]
    cell_width = None
    if video_frames is not None and grid_images:  # a strip keeps its shape: grid_cell_size high
        width, height = grid_images[0][0].size
        cell_width = max(1, round(cfg.grid_cell_size * width / height))
    grid = make_grid(
        grid_images,
        [rows[i][0] for i in shown],
        list(conditions),
        captions,
        cell_size=cfg.grid_cell_size,
        cell_width=cell_width,
    )
    grid.save(files["grid"])
    plot_metrics(summary, files["metrics_plot"])
    report["files"] = files
    return processes.broadcast(report)


def _score_chunks(
    chunks, metrics, rows, paths, negatives, cfg: EvalConfig, video_frames: int | None = None
) -> dict[tuple[str, int], dict[str, Any]]:
    """``(condition, start) -> {metric: per-image scores, or the Inception classifier's logits}`` for each chunk of
    ``score_batch_size`` images, read from disk (no process ever holds every image in memory).

    For a video pipeline (``video_frames``), each image is a frame strip: its frames are scored as images, each with
    its video's prompt and negative, all in one call, and a video's entry is the list of its frames' scores."""
    from PIL import Image

    out: dict[tuple[str, int], dict[str, Any]] = {}
    for name, start in chunks:
        stop = min(start + cfg.score_batch_size, len(rows))
        images = []
        for path in paths[name][start:stop]:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        prompts = [row[0] for row in rows[start:stop]]
        chunk_negatives = [n or "" for n in negatives[name][start:stop]]
        k = 1
        if video_frames is not None:
            strips = [
                split_strip(image, len(_frames_of(path))) for image, path in zip(images, paths[name][start:stop])
            ]
            k = len(strips[0])
            images = [frame for strip in strips for frame in strip]
            prompts = [p for p in prompts for _ in range(k)]
            chunk_negatives = [n for n in chunk_negatives for _ in range(k)]
        out[(name, start)] = {}
        for metric_name, metric in metrics.items():
            if isinstance(metric, InceptionScoreMetric):
                out[(name, start)][metric_name] = metric.logits(images)
                continue
            values = [float(v) for v in metric(images=images, prompts=prompts, negative_prompts=chunk_negatives)]
            if len(values) != len(images):
                raise ValueError(f"metric {metric_name!r} returned {len(values)} scores for {len(images)} images.")
            if video_frames is not None:
                values = [values[j : j + k] for j in range(0, len(values), k)]
            out[(name, start)][metric_name] = values
    return out


def _frames_of(path: str) -> list[int]:
    """The frames a cached strip holds, from its sidecar."""
    with open(path[: -len(".png")] + ".json", encoding="utf-8") as f:
        return json.load(f)["frames"]


def _summarize(
    conditions,
    metrics,
    n: int,
    chunks: dict[tuple[str, int], dict[str, Any]],
    cfg: EvalConfig,
    video_frames: int | None = None,
):
    """Per-image scores and each condition's summary (mean and 95% interval per metric), from every chunk.

    For a video pipeline, a video's score is the mean of its frames' scores (kept under ``frame_scores``), and the
    Inception Score is that of every frame kept, its interval resampling whole videos."""
    scores: dict[str, dict[str, Any]] = {}
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    resamples = bootstrap_indices(n, cfg.num_bootstrap, cfg.seed)  # shared by all: paired intervals
    starts = range(0, n, cfg.score_batch_size)
    for name in conditions:
        scores[name], summary[name] = {}, {}
        for metric_name, metric in metrics.items():
            parts = [chunks[(name, start)][metric_name] for start in starts]
            if isinstance(metric, InceptionScoreMetric):
                all_logits = torch.cat(parts)
                k = len(all_logits) // n  # rows per video (1 for images)
                summary[name][metric_name] = set_statistic_interval(
                    lambda idx, m=metric, x=all_logits, k=k: m.score(x[_rows(idx, k)]),
                    n,
                    cfg.num_bootstrap,
                    cfg.seed,
                )
            elif video_frames is not None:
                frames = [v for part in parts for v in part]
                scores[name].setdefault("frame_scores", {})[metric_name] = frames
                scores[name][metric_name] = [float(np.mean(v)) for v in frames]
                summary[name][metric_name] = mean_interval(scores[name][metric_name], resamples)
            else:
                scores[name][metric_name] = [v for part in parts for v in part]
                summary[name][metric_name] = mean_interval(scores[name][metric_name], resamples)
    return scores, summary


def _rows(indices, k: int) -> torch.Tensor:
    """The logit rows of items ``indices`` when each item holds ``k`` consecutive rows (a video's frames)."""
    idx = torch.from_numpy(np.asarray(indices, dtype=np.int64))
    return (idx[:, None] * k + torch.arange(k)).reshape(-1) if k > 1 else idx
