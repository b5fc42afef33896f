"""``EvalConfig``: the settings of :func:`negopt.eval.evaluate` (and the ``negopt eval`` flags of the same names)."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from negopt.values import check_seed, coerce_fields

__all__ = ["EvalConfig", "check_name", "check_output_dir"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def check_name(name: Any, what: str) -> str:
    """A condition or metric name that can name a folder and a report column; returns it.

    Raises:
        ValueError: ``name`` does not start with a letter or digit, or holds other characters than ``._+-``.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"{what} name {name!r} must start with a letter or digit and hold only letters, digits and ._+- "
            "(it names a folder and a column)."
        )
    return name


def check_output_dir(output_dir: str | os.PathLike) -> None:
    """Refuse an ``output_dir`` (or its ``images`` entry) that exists and is not a folder, before anything is
    loaded or rendered.

    Raises:
        NotADirectoryError: With the fix.
    """
    output_dir = os.fspath(output_dir)
    for path in (output_dir, os.path.join(output_dir, "images")):
        if os.path.exists(path) and not os.path.isdir(path):
            raise NotADirectoryError(
                f"output_dir={output_dir!r}: {path!r} exists and is a file, not a folder; choose another output_dir "
                "(or move the file)."
            )


@dataclass
class EvalConfig:
    """Settings of an evaluation run.

    Args:
        output_dir: Where the images, report and figures go; rerunning with the same folder resumes.
        seed: Prompt ``i`` is rendered with seed ``seed + i`` in every condition; also seeds the intervals.
        include_none: Include the ``none`` condition (no negative prompt), the baseline of the relative changes.
        pipeline_kwargs: Passed to every pipeline call (``num_inference_steps``, ``guidance_scale``, ``height``...).
        batch_size: Prompts per pipeline call.
        num_bootstrap: Resamples for the 95% intervals: bootstrap resamples of the prompts for per-image metrics,
            half-size subsamples for the Inception Score (0: no intervals).
        grid_rows: Prompts shown in ``grid.png`` (the first ones).
        grid_cell_size: Pixel size of each image in the grid (for a video, the height of its frame strip).
        score_batch_size: Images read from disk and passed to each metric at a time (for a video pipeline, videos:
            the metric gets their ``video_frames`` frames each).
        video_frames: For a video pipeline: the frames of each video that are kept, scored and shown, evenly
            spaced with the first and last included (1: the middle frame). Each metric scores every kept frame
            as an image; a video's score is the mean over its frames. Not used for images.
        progress: Show a progress bar over the prompts.
        negative_guidance: How the negatives act: ``"auto"`` (classifier-free guidance where the calls have it on,
            Normalized Attention Guidance where it is off and the pipeline is SD, SDXL, Flux, SD3 or Wan), ``"cfg"``
            or ``"nag"``; see :mod:`negopt.pipeline.guidance`.
        nag_scale: NAG's scale (>= 1); unset: the pipeline family's default (from the NAG reference code).
        nag_tau: NAG's normalisation threshold (>= 1); unset: the family's default.
        nag_alpha: NAG's blend weight, in [0, 1]; unset: the family's default.
        nag_end: The fraction of the steps NAG guides, in (0, 1]; unset: the family's default.

    Raises:
        ValueError: A setting out of range (the error names it and its value).
    """

    output_dir: str
    seed: int = 0
    include_none: bool = True
    pipeline_kwargs: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 4
    num_bootstrap: int = 1000
    grid_rows: int = 8
    grid_cell_size: int = 256
    score_batch_size: int = 64
    video_frames: int = 3
    progress: bool = True
    negative_guidance: Literal["auto", "cfg", "nag"] = "auto"
    nag_scale: float | None = None
    nag_tau: float | None = None
    nag_alpha: float | None = None
    nag_end: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.output_dir, (str, os.PathLike)) or not os.fspath(self.output_dir):
            raise ValueError(f"output_dir must be a folder path, got {self.output_dir!r}.")
        self.output_dir = os.fspath(self.output_dir)
        for name, low in (
            ("batch_size", 1),
            ("grid_cell_size", 1),
            ("score_batch_size", 1),
            ("num_bootstrap", 0),
            ("video_frames", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
        for name in ("seed", "grid_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}.")
        check_seed("seed", self.seed)
        for name in ("include_none", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        if not isinstance(self.pipeline_kwargs, dict):
            raise TypeError(f"pipeline_kwargs must be a dict, got {type(self.pipeline_kwargs).__name__}.")
        from negopt.eval.rendering import check_pipeline_counts  # here: the module imports torch

        check_pipeline_counts(self.pipeline_kwargs)
        from negopt.pipeline.guidance.modes import NAG_KNOBS, check_nag_knobs, check_negative_guidance

        check_negative_guidance(self.negative_guidance)
        check_nag_knobs(**{k: getattr(self, k) for k in NAG_KNOBS})

    @property
    def guidance(self) -> dict[str, Any]:
        """``negative_guidance`` and the NAG knobs, as :func:`negopt.eval.rendering.render` takes them."""
        from negopt.pipeline.guidance.modes import NAG_KNOBS

        return {"negative_guidance": self.negative_guidance, **{k: getattr(self, k) for k in NAG_KNOBS}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalConfig:
        """Build from a mapping (a YAML file, say): values typed by field; unknown keys are an error listing the
        valid ones."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown EvalConfig keys {unknown}; valid keys: {', '.join(known)}.")
        return cls(**coerce_fields(cls, dict(data)))
