"""Seeded image rendering, and an on-disk cache of rendered images keyed by everything that made them.

:func:`render` is the one place a pipeline is called for images with a seed per prompt (``negopt eval`` and RL's
sample images); :class:`ImageCache` lets an interrupted evaluation pick up where it stopped. A video pipeline's
video is kept as a *frame strip*: a few frames sampled from it (:func:`sample_frames`), side by side in one image
(:func:`frame_strip`), which the cache stores, the grid shows and the metrics score frame by frame
(:func:`split_strip`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from negopt.pipeline.token_budget import quiet_sequence_length_warning

__all__ = [
    "RESERVED_KWARGS",
    "render",
    "sample_frames",
    "frame_strip",
    "split_strip",
    "check_pipeline_kwargs",
    "check_pipeline_counts",
    "warn_if_guidance_off",
    "resolve_render_guidance",
    "ImageCache",
]

# Arguments render() sets itself on every pipeline call.
RESERVED_KWARGS = ("prompt", "negative_prompt", "generator", "output_type", "return_dict", "num_images_per_prompt")


def warn_if_guidance_off(pipeline_kwargs: Mapping[str, Any], *, stacklevel: int = 2) -> None:
    """Warn when ``guidance_scale <= 1``: diffusers then skips classifier-free guidance, and the negative prompt."""
    scale = pipeline_kwargs.get("guidance_scale")
    if isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale <= 1:
        warnings.warn(
            f"guidance_scale={scale} <= 1 turns classifier-free guidance off, and with it the negative prompt: "
            "images will not depend on it. Use a value above 1 (e.g. 7.5).",
            UserWarning,
            stacklevel=stacklevel + 1,
        )


def check_pipeline_counts(pipeline_kwargs: Mapping[str, Any]) -> None:
    """Refuse a step count or image size that is not a positive int (a pipeline would fail on it mid-run).

    Raises:
        ValueError: ``num_inference_steps``, ``height``, ``width`` or ``num_frames`` is not an int >= 1.
    """
    for key in ("num_inference_steps", "height", "width", "num_frames"):
        value = pipeline_kwargs.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"pipeline_kwargs[{key!r}] must be an int >= 1, got {value!r}.")


def check_pipeline_kwargs(
    pipeline_kwargs: Mapping[str, Any] | None, *, stacklevel: int = 2, negative_guidance: str = "cfg"
) -> dict[str, Any]:
    """A copy of ``pipeline_kwargs``, refused if it sets what :func:`render` sets or a count below 1
    (:func:`check_pipeline_counts`); warns if guidance is off.

    With ``negative_guidance`` other than ``"cfg"``, guidance off may be where NAG acts: the warning waits for the
    pipeline (:func:`resolve_render_guidance`).

    Raises:
        ValueError: ``pipeline_kwargs`` sets one of :data:`RESERVED_KWARGS`, or a step count or size below 1.
    """
    kwargs = dict(pipeline_kwargs or {})
    reserved = [k for k in RESERVED_KWARGS if k in kwargs]
    if reserved:
        raise ValueError(
            f"pipeline_kwargs sets {reserved}, which negopt sets itself (one image per prompt, seeded per prompt, "
            "the negatives being compared); remove them."
        )
    check_pipeline_counts(kwargs)
    if negative_guidance == "cfg":
        warn_if_guidance_off(kwargs, stacklevel=stacklevel + 1)
    return kwargs


def resolve_render_guidance(
    pipeline: Any, pipeline_kwargs: Mapping[str, Any], guidance: Mapping[str, Any], *, stacklevel: int = 2
) -> str | None:
    """How the negatives of :func:`render` calls with these arguments act (``"cfg"``, ``"nag"`` or None), with the
    guidance-off warning when they would have no effect.

    Args:
        pipeline: The diffusers pipeline.
        pipeline_kwargs: The calls' arguments.
        guidance: ``negative_guidance`` and the NAG knobs (see :func:`negopt.pipeline.guidance.guided_call`).

    Raises:
        ValueError: ``negative_guidance="nag"`` where it cannot run, or a NAG knob out of range.
    """
    from negopt.pipeline.guidance.modes import NAG_KNOBS, check_nag_knobs, resolve_guidance

    check_nag_knobs(**{k: guidance.get(k) for k in NAG_KNOBS})
    used = resolve_guidance(guidance.get("negative_guidance", "cfg"), pipeline, pipeline_kwargs, True)
    if used is None and guidance.get("negative_guidance", "cfg") != "cfg":
        warn_if_guidance_off(pipeline_kwargs, stacklevel=stacklevel + 1)
    return used


def _progress_bar_owner(pipeline: Any) -> Any:
    """The diffusers pipeline whose ``set_progress_bar_config`` drives the bar: ``pipeline``, or the one it wraps."""
    for _ in range(4):  # a NegOptPipeline, or a user's wrapper, holds the diffusers pipeline as `.pipeline`
        if hasattr(type(pipeline), "set_progress_bar_config"):
            return pipeline
        pipeline = getattr(pipeline, "pipeline", None)
        if pipeline is None:
            return None
    return None


@contextlib.contextmanager
def _quiet(pipeline: Any) -> Iterator[None]:
    """For one call: the pipeline's own progress bar off (the caller shows one over the images) and transformers'
    sequence-length message dropped; the user's progress-bar settings are put back whatever happens."""
    owner = _progress_bar_owner(pipeline)
    before = dict(getattr(owner, "_progress_bar_config", None) or {}) if owner is not None else None
    if owner is not None:
        owner.set_progress_bar_config(**{**before, "disable": True})
    try:
        with quiet_sequence_length_warning():
            yield
    finally:
        if owner is not None:
            owner.set_progress_bar_config(**before)


def sample_frames(num_frames: int, k: int) -> list[int]:
    """The indices of the ``k`` frames of a video that are scored: evenly spaced, the first and the last included
    (rounded to the nearest frame); ``k=1`` gives the middle frame, and ``k >= num_frames`` every frame.

    Example:
        >>> sample_frames(81, 3)
        [0, 40, 80]
    """
    if num_frames < 1 or k < 1:
        raise ValueError(f"sample_frames needs num_frames >= 1 and k >= 1, got {num_frames} and {k}.")
    if k >= num_frames:
        return list(range(num_frames))
    if k == 1:
        return [(num_frames - 1) // 2]
    return [round(j * (num_frames - 1) / (k - 1)) for j in range(k)]


def frame_strip(frames: Sequence[Any]):
    """The frames (PIL images of one size) side by side, left to right, in one RGB image."""
    from PIL import Image

    width, height = frames[0].size
    if any(frame.size != (width, height) for frame in frames):
        raise ValueError(f"frame_strip needs frames of one size, got {sorted({f.size for f in frames})}.")
    strip = Image.new("RGB", (width * len(frames), height))
    for j, frame in enumerate(frames):
        strip.paste(frame.convert("RGB"), (j * width, 0))
    return strip


def split_strip(strip, k: int) -> list[Any]:
    """The ``k`` frames of a :func:`frame_strip`, left to right.

    Raises:
        ValueError: The strip's width is not a multiple of ``k``.
    """
    width, height = strip.size
    if k < 1 or width % k:
        raise ValueError(f"a frame strip {width} pixels wide does not split into {k} frames.")
    step = width // k
    return [strip.crop((j * step, 0, (j + 1) * step, height)) for j in range(k)]


def render(
    pipeline: Callable,
    prompts: Sequence[str],
    negative_prompts: Sequence[str] | None,
    seeds: Sequence[int],
    *,
    pipeline_kwargs: Mapping[str, Any] | None = None,
    video_frames: int | None = None,
    guidance: Mapping[str, Any] | None = None,
) -> list[Any]:
    """One image per prompt, prompt ``i`` from a CPU ``torch.Generator`` seeded with ``seeds[i]``, in one call.

    A CPU generator per prompt gives the same noise on every device and whatever else is in the batch, so two
    calls that differ only in their negatives differ only because of them. The pipeline's own progress bar is off
    during the call (its settings are put back after): the caller shows one bar over the images, not one per call.

    Args:
        pipeline: A diffusers pipeline (anything called as ``pipeline(prompt=[...], negative_prompt=[...],
            generator=[...], output_type="pil")`` that returns ``.images``, or ``.frames`` for a video pipeline).
        prompts: The prompts.
        negative_prompts: One negative per prompt, or None to pass no ``negative_prompt`` at all.
        seeds: One seed per prompt.
        pipeline_kwargs: More arguments of the call (``num_inference_steps``, ``guidance_scale``...).
        video_frames: For a video pipeline, how many frames of each video to keep (:func:`sample_frames`); each
            video then comes back as their :func:`frame_strip`, whose ``info["frames"]`` lists the frames kept and
            ``info["num_frames"]`` the video's length. None for an image pipeline.
        guidance: ``negative_guidance`` and the NAG knobs: the call is made by
            :func:`negopt.pipeline.guidance.guided_call`, so that the negatives act through NAG where guidance is
            off. None (or no negatives): the pipeline is called as it is.

    Returns:
        The PIL images (or frame strips), in the prompts' order.

    Raises:
        ValueError: The lengths differ.
        TypeError: The pipeline did not return one image per prompt in ``.images`` (or, with ``video_frames``, one
            video per prompt in ``.frames``).
    """
    if len(seeds) != len(prompts) or (negative_prompts is not None and len(negative_prompts) != len(prompts)):
        raise ValueError(
            f"render() needs one seed and one negative per prompt: {len(prompts)} prompts, {len(seeds)} seeds, "
            f"{'no' if negative_prompts is None else len(negative_prompts)} negatives."
        )
    call = dict(pipeline_kwargs or {})
    call["prompt"] = list(prompts)
    if negative_prompts is not None:
        call["negative_prompt"] = list(negative_prompts)
    call["generator"] = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    call["output_type"] = "pil"
    with _quiet(pipeline):
        if guidance is None or negative_prompts is None:
            output = pipeline(**call)
        else:
            from negopt.pipeline.guidance import guided_call

            output, _ = guided_call(pipeline, call, **guidance)
    if video_frames is not None:
        videos = getattr(output, "frames", None)
        if videos is None or len(videos) != len(prompts):
            raise TypeError(
                f"the pipeline returned {type(output).__name__} without one video per prompt in .frames; "
                "video_frames is for a video pipeline (Wan, LTX-Video, ...)."
            )
        strips = []
        for video in videos:
            kept = sample_frames(len(video), video_frames)
            strip = frame_strip([video[j] for j in kept])
            strip.info.update(frames=kept, num_frames=len(video))
            strips.append(strip)
        return strips
    images = getattr(output, "images", None)
    if images is None or len(images) != len(prompts):
        hint = (
            " It returned .frames: pass video_frames (negopt eval does so for a video pipeline)."
            if getattr(output, "frames", None) is not None
            else ""
        )
        raise TypeError(
            f"the pipeline returned {type(output).__name__} without one image per prompt in .images; "
            f"negopt needs a text-to-image pipeline.{hint}"
        )
    return list(images)


class ImageCache:
    """Rendered images on disk: ``folder/<condition>/<index>-<hash>.png`` with a ``.json`` sidecar (prompt, negative
    prompt, seed). The hash covers the prompt, negative prompt, seed and pipeline arguments (and, for a video
    pipeline, the number of frames kept in each strip); change the pipeline itself and use a new folder.

    Args:
        folder: Where the images go.
        pipeline_kwargs: The arguments of every pipeline call (part of each image's hash).
        video_frames: For a video pipeline, the frames kept of each video (part of each strip's hash); None for
            images, whose hashes it leaves as they were.
    """

    def __init__(self, folder: str | os.PathLike, pipeline_kwargs: Mapping[str, Any], video_frames: int | None = None):
        self.folder = os.fspath(folder)
        self.pipeline_kwargs = dict(pipeline_kwargs)
        self.video_frames = video_frames

    def path(self, condition: str, index: int, prompt: str, negative: str | None, seed: int) -> str:
        """The image file of one render (whether or not it exists yet)."""
        key: list[Any] = [prompt, negative, seed, self.pipeline_kwargs]
        if self.video_frames is not None:
            key.append({"video_frames": self.video_frames})
        payload = json.dumps(key, sort_keys=True, default=repr, ensure_ascii=False)
        digest = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]
        return os.path.join(self.folder, condition, f"{index:05d}-{digest}.png")

    def has(self, path: str) -> bool:
        """Both the image and its sidecar were written (an interrupted write leaves neither under the final name)."""
        return os.path.isfile(path) and os.path.isfile(path[: -len(".png")] + ".json")

    def save(self, path: str, image, meta: Mapping[str, Any]) -> None:
        """Write the image under a temporary name, rename it, then write the sidecar."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        stem = path[: -len(".png")]
        image.save(stem + ".tmp.png")
        os.replace(stem + ".tmp.png", path)
        with open(stem + ".json", "w", encoding="utf-8") as f:
            json.dump(dict(meta), f, ensure_ascii=False)
