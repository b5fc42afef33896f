"""Does a negative-prompt generator help on my pipeline? Conditions x metrics, a report and figures.

:func:`evaluate` renders every prompt under each *condition* (no negative prompt, the prompts' own negatives, and one
per generator) with the same seed per prompt, so the differences between conditions come from the negatives alone.
It scores each condition's images with reward callables (aesthetics and CLIP score by default, mean over prompts with
a 95% bootstrap interval) and with the Inception Score of the condition's image set (torchmetrics' implementation),
then writes NegOpt's table and its Figure 1 for your pipeline:

- ``report.json``: ``{"conditions": {name: {metric: {"mean", "ci95"}}}, "relative_to_none": ..., ...}``
- ``report.md``: the same table in markdown.
- ``grid.png``: prompts as rows, conditions as columns, each image captioned with its negative prompt.
- ``metrics.png``: a bar chart of each metric by condition, with the intervals.
- ``images/<condition>/<index>-<hash>.png`` (+ ``.json`` with the prompt, negative prompt and seed): the images.

Images are cached on disk under a hash of the prompt, negative prompt, seed and pipeline arguments, so an
interrupted evaluation picks up where it stopped; change the pipeline itself and you must use a new ``output_dir``.
Needs the ``eval`` extra: ``pip install "negopt[eval]"``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from negopt import __version__

__all__ = ["evaluate", "default_metrics", "InceptionScoreMetric", "make_grid", "plot_metrics"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
# Arguments evaluate() sets itself on every pipeline call.
_RESERVED_KWARGS = ("prompt", "negative_prompt", "generator", "output_type", "return_dict", "num_images_per_prompt")

# Grid layout: captions are wrapped to this many lines under each image, prompts to this many above each row.
GRID_CAPTION_LINES = 3
GRID_PROMPT_LINES = 2
GRID_PAD = 4


# ------------------------------------------------------------------------------------------------------ metrics
class InceptionScoreMetric:
    """The Inception Score of a condition's image set, computed by torchmetrics' ``InceptionScore``.

    The classifier runs once over the set; the score and its bootstrap resamples are then computed from the stored
    logits by ``torchmetrics.image.inception.InceptionScore`` (so the number is the library's, with the classifier
    you chose).

    Args:
        classifier: As for :class:`~negopt.rewards.InceptionReward`: an ``nn.Module`` from ``(N, 3, H, W)`` uint8
            images to logits, a transformers image classifier's folder or hub id, or None for the Inception v3 of
            the Inception Score (``pip install "negopt[inception]"``).
        splits: torchmetrics' ``splits``; 1 (the default) makes the score deterministic and comparable with small
            sets.
        device: Where the classifier runs.
        batch_size: Images per forward pass.
        revision: Hub revision of a classifier given by name.
        cache_dir: Hub cache folder.
        token: Hub token.
        local_files_only: Load the classifier from a folder or the cache only.
        use_safetensors: Load safetensors weights only (the default); False allows pickle files you trust.
    """

    def __init__(
        self,
        classifier: torch.nn.Module | str | os.PathLike | None = None,
        *,
        splits: int = 1,
        device: str | torch.device | None = None,
        batch_size: int = 32,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        use_safetensors: bool = True,
    ):
        _import_torchmetrics()
        from negopt.rewards.inception import InceptionReward

        if isinstance(splits, bool) or not isinstance(splits, int) or splits < 1:
            raise ValueError(f"splits must be a positive int, got {splits!r}.")
        self.splits = splits
        self._metric = None
        self._reward = InceptionReward(
            classifier,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            use_safetensors=use_safetensors,
            device=device,
            batch_size=batch_size,
        )

    def logits(self, images) -> torch.Tensor:
        """The classifier's logits for a set of images (one size), float32 on the CPU."""
        return self._reward.logits(images)

    def score(self, logits: torch.Tensor) -> float:
        """The Inception Score of the images these logits came from (torchmetrics' ``InceptionScore``)."""
        from torchmetrics.image.inception import InceptionScore

        with warnings.catch_warnings():
            # torchmetrics warns that it keeps features in memory, and that one split has no std; both known here.
            warnings.simplefilter("ignore", UserWarning)
            if self._metric is None:
                # The logits are the features: the classifier already ran, once, over the whole set.
                self._metric = InceptionScore(feature=torch.nn.Identity(), splits=self.splits)
            metric = self._metric
            metric.reset()
            metric.update(logits)
            with torch.random.fork_rng():  # torchmetrics shuffles before splitting; keep it off the global RNG
                torch.manual_seed(0)
                return float(metric.compute()[0])

    def to(self, device) -> InceptionScoreMetric:
        self._reward.to(device)
        return self


def _import_torchmetrics():
    try:
        import torchmetrics  # noqa: F401
    except ImportError as e:
        raise ImportError('the Inception Score needs torchmetrics: pip install "negopt[eval]"') from e


def default_metrics(
    names: Sequence[str] = ("aesthetic", "clip", "inception"),
    *,
    clip_model: str | os.PathLike | None = None,
    aesthetic_clip_model: str | os.PathLike | None = None,
    aesthetic_head: str | os.PathLike | None = None,
    inception_model: str | os.PathLike | torch.nn.Module | None = None,
    pickscore_model: str | os.PathLike | None = None,
    pickscore_processor: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> dict[str, Any]:
    """The evaluation metrics of NegOpt's table, loaded by hub id (the defaults) or from local folders.

    Args:
        names: Which metrics: ``aesthetic`` (reported as ``aesthetic``), ``clip`` (``clip_score``), ``inception``
            (``inception_score``, the set's Inception Score), ``pickscore`` (``pickscore``).
        clip_model: CLIP for the CLIP score (default ``openai/clip-vit-large-patch14``).
        aesthetic_clip_model: CLIP for the aesthetic predictor (default the same ViT-L/14; loaded once when it is
            the same as ``clip_model``).
        aesthetic_head: The aesthetic MLP head (see :mod:`negopt.rewards.aesthetic`).
        inception_model: The Inception Score's classifier (default torch-fidelity's Inception v3).
        pickscore_model: PickScore's model.
        pickscore_processor: PickScore's processor.
        device: Where the metric models run.
        cache_dir: Hub cache folder.
        token: Hub token.
        local_files_only: Load from local folders or the cache only.

    Returns:
        Metric name -> metric, for :func:`evaluate`'s ``metrics``.

    Raises:
        ValueError: If a name is unknown.
    """
    from negopt.rewards._common import HubOptions
    from negopt.rewards.aesthetic import DEFAULT_AESTHETIC_CLIP_MODEL, DEFAULT_AESTHETIC_HEAD, AestheticReward
    from negopt.rewards.clip import DEFAULT_CLIP_MODEL, CLIPScoreReward, PickScoreReward, load_clip

    valid = ("aesthetic", "clip", "inception", "pickscore")
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {unknown or list(names)}; valid names: {', '.join(valid)}.")
    hub = {"cache_dir": cache_dir, "token": token, "local_files_only": local_files_only}
    clip_model = os.fspath(clip_model or DEFAULT_CLIP_MODEL)
    aesthetic_clip_model = os.fspath(aesthetic_clip_model or DEFAULT_AESTHETIC_CLIP_MODEL)
    shared = None
    if "aesthetic" in names and "clip" in names and clip_model == aesthetic_clip_model:
        # One ViT-L/14 for both metrics instead of two copies.
        model, tokenizer, image_processor = load_clip(clip_model, None, HubOptions(**hub), True, "clip_model")
        from transformers import CLIPProcessor

        shared = (model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer))
    metrics: dict[str, Any] = {}
    for name in names:
        if name == "aesthetic":
            clip = shared[0] if shared else aesthetic_clip_model
            processor = shared[1] if shared else None
            metrics["aesthetic"] = AestheticReward(
                clip, aesthetic_head or DEFAULT_AESTHETIC_HEAD, image_processor=processor, device=device, **hub
            )
        elif name == "clip":
            model, processor = shared if shared else (clip_model, None)
            metrics["clip_score"] = CLIPScoreReward(model, processor, device=device, **hub)
        elif name == "pickscore":
            kwargs = {k: v for k, v in (("model", pickscore_model), ("processor", pickscore_processor)) if v}
            metrics["pickscore"] = PickScoreReward(device=device, **kwargs, **hub)
        elif name == "inception":
            metrics["inception_score"] = InceptionScoreMetric(inception_model, device=device, **hub)
    if shared is not None and device is not None:
        shared[0].to(device)
    return metrics


# ------------------------------------------------------------------------------------------------------ inputs
def _prompt_rows(prompts: Any) -> list[tuple[str, str | None]]:
    """``(prompt, dataset negative or None)`` for each prompt."""
    if isinstance(prompts, str):
        raise TypeError("prompts is a single string; pass a list of prompts (or of {'prompt', 'negative_prompt'}).")
    column_names = getattr(prompts, "column_names", None)
    if column_names is not None:  # a datasets.Dataset
        if "prompt" not in column_names:
            raise ValueError(f"the prompts dataset has no 'prompt' column (columns: {column_names}); rename one.")
        negatives = prompts["negative_prompt"] if "negative_prompt" in column_names else [None] * len(prompts)
        prompts = [{"prompt": p, "negative_prompt": n} for p, n in zip(prompts["prompt"], negatives)]
    rows = []
    for i, item in enumerate(prompts):
        if isinstance(item, str):
            prompt, negative = item, None
        elif isinstance(item, Mapping):
            if "prompt" not in item:
                raise ValueError(f"prompts[{i}] has no 'prompt' key (keys: {sorted(item)}).")
            prompt, negative = item["prompt"], item.get("negative_prompt")
        else:
            raise TypeError(f"prompts[{i}] is a {type(item).__name__}; expected a str or a dict with 'prompt'.")
        if not isinstance(prompt, str):
            raise TypeError(f"prompts[{i}]['prompt'] is a {type(prompt).__name__}; prompts must be strings.")
        if negative is not None and not isinstance(negative, str):
            raise TypeError(f"prompts[{i}]['negative_prompt'] is a {type(negative).__name__}; expected a string.")
        rows.append((prompt, negative))
    if not rows:
        raise ValueError("prompts is empty; pass at least one prompt.")
    return rows


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"{what} name {name!r} must start with a letter or digit and hold only letters, digits and ._+- "
            "(it names a folder and a column)."
        )
    return name


def _check_pipeline_kwargs(pipeline_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    kwargs = dict(pipeline_kwargs or {})
    reserved = [k for k in _RESERVED_KWARGS if k in kwargs]
    if reserved:
        raise ValueError(
            f"pipeline_kwargs sets {reserved}, which evaluate() sets itself (one image per prompt, seeded per "
            "prompt, each condition's negatives); remove them."
        )
    scale = kwargs.get("guidance_scale")
    if isinstance(scale, (int, float)) and scale <= 1:
        warnings.warn(
            f"guidance_scale={scale} <= 1 turns classifier-free guidance off, and with it the negative prompt: "
            "every condition will give the same images.",
            stacklevel=3,
        )
    return kwargs


def _hash(prompt: str, negative: str | None, seed: int, kwargs: Mapping[str, Any]) -> str:
    payload = json.dumps([prompt, negative, seed, kwargs], sort_keys=True, default=repr, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


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


# -------------------------------------------------------------------------------------------------------- core
def evaluate(
    pipeline: Callable,
    prompts: Sequence[str] | Sequence[Mapping[str, Any]] | Any,
    *,
    generators: Mapping[str, Callable] | None = None,
    metrics: Mapping[str, Any] | None = None,
    output_dir: str | os.PathLike,
    seed: int = 0,
    include_none: bool = True,
    pipeline_kwargs: Mapping[str, Any] | None = None,
    batch_size: int = 4,
    num_bootstrap: int = 1000,
    grid_rows: int = 8,
    grid_cell_size: int = 256,
    score_batch_size: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Render the prompts under each condition, score them, and write the report and figures.

    Conditions: ``none`` (no negative prompt), ``dataset`` (the prompts' own negatives, when they carry any), and
    one per generator. Prompt ``i`` is rendered with ``torch.Generator().manual_seed(seed + i)`` in every condition.

    Args:
        pipeline: A diffusers pipeline (anything called as ``pipeline(prompt=[...], negative_prompt=[...],
            generator=[...], output_type="pil")`` that returns ``.images``). It is called as it is: set its
            device, dtype and progress bar before.
        prompts: A list of prompts; a list of dicts with ``prompt`` and optionally ``negative_prompt``; or a
            ``datasets.Dataset`` with those columns (e.g. Negative Prompts DB's test split).
        generators: Condition name -> generator (``gen(list[str]) -> list[str]``): a ``NegOptGenerator``, the
            built-in, or any function.
        metrics: Metric name -> reward callable (scored per image, reported as the mean over prompts) or
            :class:`InceptionScoreMetric` (scored on the whole set). Default: :func:`default_metrics` (aesthetics,
            CLIP score, Inception Score; downloads their models).
        output_dir: Where the images, report and figures go; rerunning with the same folder resumes.
        seed: Prompt ``i`` uses ``seed + i``; also seeds the bootstrap.
        include_none: Include the ``none`` condition (the baseline the relative changes are taken against).
        pipeline_kwargs: Passed to every pipeline call (``num_inference_steps``, ``guidance_scale``, ``height``...).
        batch_size: Prompts per pipeline call.
        num_bootstrap: Bootstrap resamples of the prompts for the 95% intervals (0 for none).
        grid_rows: Prompts shown in ``grid.png`` (the first ones).
        grid_cell_size: Pixel size of each image in the grid.
        score_batch_size: Images read from disk and passed to each metric at a time. A batch-dependent reward
            (such as :class:`~negopt.rewards.InceptionReward`) sees these batches; the Inception Score metric
            always scores the whole set.
        progress: Show a progress bar over the prompts.

    Returns:
        The report (what ``report.json`` holds), with ``files``: the paths written.

    Raises:
        ValueError: On empty prompts, clashing or unsafe condition names, no condition at all, pipeline arguments
            that evaluate() sets itself, or a pipeline without a ``negative_prompt`` argument.
        TypeError: On prompts, generators or metrics of the wrong type.
        ImportError: If the ``eval`` extra (torchmetrics, matplotlib) is missing.

    Example:
        >>> from diffusers import StableDiffusionPipeline
        >>> from negopt import BuiltinGenerator
        >>> pipe = StableDiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")
        >>> report = evaluate(pipe, prompts, generators={"builtin": BuiltinGenerator()},
        ...                   output_dir="out/eval")  # doctest: +SKIP
        >>> report["conditions"]["builtin"]["aesthetic"]["mean"]  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    _import_plotting()
    rows = _prompt_rows(prompts)
    kwargs = _check_pipeline_kwargs(pipeline_kwargs)
    for value, what in (
        (batch_size, "batch_size"),
        (grid_cell_size, "grid_cell_size"),
        (score_batch_size, "score_batch_size"),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{what} must be a positive int, got {value!r}.")
    if isinstance(num_bootstrap, bool) or not isinstance(num_bootstrap, int) or num_bootstrap < 0:
        raise ValueError(f"num_bootstrap must be an int >= 0, got {num_bootstrap!r}.")

    # The conditions, in report order: name -> None (no negative), "dataset", or a generator.
    conditions: dict[str, Any] = {}
    if include_none:
        conditions["none"] = None
    if any(negative for _, negative in rows):
        conditions["dataset"] = "dataset"
    for name, generator in (generators or {}).items():
        _check_name(name, "generator")
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
        try:
            parameters = inspect.signature(pipeline.__call__).parameters
        except (TypeError, ValueError):
            parameters = {}
        if (
            parameters
            and "negative_prompt" not in parameters
            and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        ):
            raise ValueError(
                f"{type(pipeline).__name__} takes no negative_prompt, so negatives cannot change its images; "
                "evaluate a pipeline that has one."
            )

    if metrics is None:
        metrics = default_metrics(device=getattr(pipeline, "device", None))
    metrics = dict(metrics)
    for name, metric in metrics.items():
        _check_name(name, "metric")
        if not (isinstance(metric, InceptionScoreMetric) or callable(metric)):
            raise TypeError(f"metric {name!r} is a {type(metric).__name__}: expected a reward callable.")

    output_dir = os.fspath(output_dir)
    image_dir = os.path.join(output_dir, "images")
    for name in conditions:
        os.makedirs(os.path.join(image_dir, name), exist_ok=True)

    # ---- render (or find) every image
    paths: dict[str, list[str]] = {name: [""] * len(rows) for name in conditions}
    negatives: dict[str, list[str | None]] = {name: [None] * len(rows) for name in conditions}
    rendered = reused = 0
    bar = tqdm(total=len(rows), desc="negopt eval", unit="prompt", disable=not progress)
    try:
        for start in range(0, len(rows), batch_size):
            indices = list(range(start, min(start + batch_size, len(rows))))
            batch_prompts = [rows[i][0] for i in indices]
            for name, condition in conditions.items():
                if condition is None:
                    batch_negatives: list[str | None] = [None] * len(indices)
                elif condition == "dataset":
                    batch_negatives = [rows[i][1] or "" for i in indices]
                else:
                    batch_negatives = list(_call_generator(name, condition, batch_prompts))
                missing = []
                for i, negative in zip(indices, batch_negatives):
                    stem = os.path.join(image_dir, name, f"{i:05d}-{_hash(rows[i][0], negative, seed + i, kwargs)}")
                    paths[name][i], negatives[name][i] = stem + ".png", negative
                    if os.path.isfile(stem + ".png") and os.path.isfile(stem + ".json"):
                        reused += 1
                    else:
                        missing.append(i)
                if missing:
                    _render(pipeline, rows, missing, negatives[name], paths[name], seed, kwargs, name)
                    rendered += len(missing)
            bar.update(len(indices))
    finally:
        bar.close()
    logger.info("rendered %d images, reused %d from %s", rendered, reused, image_dir)

    # ---- score
    from PIL import Image

    scores: dict[str, dict[str, list[float]]] = {}
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    rng = np.random.default_rng(seed)
    # One set of resampled prompt indices for every condition and metric: paired intervals.
    resamples = rng.integers(0, len(rows), size=(num_bootstrap, len(rows))) if num_bootstrap else None
    prompts_list = [row[0] for row in rows]
    for name in conditions:
        condition_negatives = [n or "" for n in negatives[name]]
        values: dict[str, list[float]] = {m: [] for m in metrics}
        logits: dict[str, list[torch.Tensor]] = {m: [] for m in metrics}
        # Scored in chunks read from disk, so a large evaluation never holds every image in memory.
        for start in range(0, len(rows), score_batch_size):
            stop = min(start + score_batch_size, len(rows))
            images = []
            for path in paths[name][start:stop]:
                with Image.open(path) as image:
                    images.append(image.convert("RGB"))
            for metric_name, metric in metrics.items():
                if isinstance(metric, InceptionScoreMetric):
                    logits[metric_name].append(metric.logits(images))
                    continue
                raw = metric(
                    images=images, prompts=prompts_list[start:stop], negative_prompts=condition_negatives[start:stop]
                )
                chunk = [float(v) for v in raw]
                if len(chunk) != len(images):
                    raise ValueError(f"metric {metric_name!r} returned {len(chunk)} scores for {len(images)} images.")
                values[metric_name] += chunk
        scores[name], summary[name] = {}, {}
        for metric_name, metric in metrics.items():
            if isinstance(metric, InceptionScoreMetric):
                all_logits = torch.cat(logits[metric_name])
                value = metric.score(all_logits)
                samples = [metric.score(all_logits[torch.from_numpy(i)]) for i in resamples] if num_bootstrap else []
                summary[name][metric_name] = _summary(value, samples)
            else:
                scores[name][metric_name] = values[metric_name]
                array = np.asarray(values[metric_name], dtype=np.float64)
                samples = array[resamples].mean(axis=1).tolist() if num_bootstrap else []
                summary[name][metric_name] = _summary(float(array.mean()), samples)

    relative = {}
    if "none" in summary:
        for name in conditions:
            if name == "none":
                continue
            relative[name] = {}
            for metric_name in metrics:
                base = summary["none"][metric_name]["mean"]
                value = summary[name][metric_name]["mean"]
                relative[name][metric_name] = (value - base) / abs(base) if base else None

    report = {
        "negopt_version": __version__,
        "num_prompts": len(rows),
        "seed": seed,
        "pipeline": type(pipeline).__name__,
        "pipeline_kwargs": json.loads(json.dumps(kwargs, default=repr)),
        "metrics": list(metrics),
        "conditions": summary,
        "relative_to_none": relative,
        "num_bootstrap": num_bootstrap,
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
    files = {
        "report_json": os.path.join(output_dir, "report.json"),
        "report_md": os.path.join(output_dir, "report.md"),
        "grid": os.path.join(output_dir, "grid.png"),
        "metrics_plot": os.path.join(output_dir, "metrics.png"),
    }
    with open(files["report_json"], "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
    with open(files["report_md"], "w", encoding="utf-8") as f:
        f.write(report_markdown(report))
    shown = range(min(grid_rows, len(rows)))
    grid_images = [[Image.open(paths[name][i]).convert("RGB") for name in conditions] for i in shown]
    captions = [[negatives[name][i] for name in conditions] for i in shown]
    make_grid(grid_images, [rows[i][0] for i in shown], list(conditions), captions, cell_size=grid_cell_size).save(
        files["grid"]
    )
    plot_metrics(summary, files["metrics_plot"])
    report["files"] = files
    return report


def _render(pipeline, rows, indices, negatives, paths, seed, kwargs, condition) -> None:
    """Render the images of ``indices`` in one pipeline call and save each with its sidecar."""
    call = dict(kwargs)
    call["prompt"] = [rows[i][0] for i in indices]
    if negatives[indices[0]] is not None:
        call["negative_prompt"] = [negatives[i] for i in indices]
    # A CPU generator per prompt: the same noise on every device and in every condition.
    call["generator"] = [torch.Generator("cpu").manual_seed(seed + i) for i in indices]
    call["output_type"] = "pil"
    output = pipeline(**call)
    images = getattr(output, "images", None)
    if images is None or len(images) != len(indices):
        raise TypeError(
            f"the pipeline returned {type(output).__name__} without one image per prompt in .images; "
            "evaluate() needs a text-to-image pipeline."
        )
    for i, image in zip(indices, images):
        stem = paths[i][: -len(".png")]
        # Write to a temporary name, then rename: an interrupted write never leaves a half image behind.
        image.save(stem + ".tmp.png")
        os.replace(stem + ".tmp.png", stem + ".png")
        meta = {"condition": condition, "index": i, "prompt": rows[i][0], "negative_prompt": negatives[i]}
        meta["seed"] = seed + i
        with open(stem + ".json", "w", encoding="utf-8") as f:
            json.dump(meta, f, ensure_ascii=False)


def _summary(mean: float, samples: list[float]) -> dict[str, Any]:
    if samples:
        lo, hi = np.percentile(samples, [2.5, 97.5]).tolist()
        return {"mean": mean, "ci95": [lo, hi]}
    return {"mean": mean, "ci95": None}


# ------------------------------------------------------------------------------------------------------ output
def report_markdown(report: Mapping[str, Any]) -> str:
    """The report's table in markdown: one row per condition, ``mean [lo, hi]`` per metric, then relative changes."""
    metrics = list(report["metrics"])
    lines = [
        f"# negopt eval: {report['num_prompts']} prompts, seed {report['seed']}",
        "",
        "Mean over prompts with a 95% bootstrap interval; the Inception Score is of each condition's image set.",
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


def _wrap(draw, text: str, font, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels, at most ``max_lines`` lines (the last one cut with '...')."""
    lines: list[str] = []
    words = text.split()
    current = ""
    for word in words:
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
):
    """A Figure-1 style grid: one row per prompt (its text above), one column per condition (its name on top),
    each image captioned below with its negative prompt.

    Args:
        images: ``images[row][column]``, PIL images (resized to ``cell_size`` squares).
        row_labels: The prompt of each row.
        column_labels: The condition of each column.
        captions: ``captions[row][column]``, the negative prompt (None: shown as "(no negative prompt)").
        cell_size: Pixel size of each image.

    Returns:
        A PIL image ``len(column_labels) * cell_size`` pixels wide.
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
    width = max(1, len(column_labels)) * cell_size
    canvas = Image.new("RGB", (width, header + len(row_labels) * row_height), "white")
    draw = ImageDraw.Draw(canvas)
    for c, label in enumerate(column_labels):
        text = _wrap(draw, label, font, cell_size - 2 * GRID_PAD, 1)[0] if label else ""
        draw.text((c * cell_size + GRID_PAD, GRID_PAD), text, fill="black", font=font)
    for r, prompt in enumerate(row_labels):
        y = header + r * row_height
        draw.line([(0, y), (width, y)], fill=(200, 200, 200))
        for k, text in enumerate(_wrap(draw, prompt, font, width - 2 * GRID_PAD, GRID_PROMPT_LINES)):
            draw.text((GRID_PAD, y + GRID_PAD + k * line), text, fill="black", font=font)
        for c in range(len(column_labels)):
            image = images[r][c].convert("RGB").resize((cell_size, cell_size))
            canvas.paste(image, (c * cell_size, y + prompt_band))
            caption = captions[r][c]
            caption = "(no negative prompt)" if caption is None else (caption or '""')
            x, y0 = c * cell_size + GRID_PAD, y + prompt_band + cell_size + GRID_PAD
            for k, text in enumerate(_wrap(draw, caption, font, cell_size - 2 * GRID_PAD, GRID_CAPTION_LINES)):
                draw.text((x, y0 + k * line), text, fill=(60, 60, 60), font=font)
    return canvas


# Bar chart size: one panel per metric, this many inches square, at this dpi.
PLOT_PANEL_INCHES = 4
PLOT_DPI = 100


def _import_plotting():
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ImportError('negopt eval draws its bar chart with matplotlib: pip install "negopt[eval]"') from e


def plot_metrics(summary: Mapping[str, Mapping[str, Mapping[str, Any]]], path: str | os.PathLike) -> str:
    """Save a bar chart of each metric by condition (with the 95% intervals) to ``path``.

    The figure is ``PLOT_PANEL_INCHES * PLOT_DPI`` pixels per metric wide and as many high. Uses matplotlib's Agg
    canvas directly, leaving the global backend alone.
    """
    _import_plotting()
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
