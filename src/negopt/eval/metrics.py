"""Evaluation metrics by name: NegOpt's table (aesthetics, CLIP score, Inception Score) and the human-preference
models papers report beside it (PickScore, HPSv2.1, ImageReward).

Per-image metrics are reward callables (:mod:`negopt.rewards`); the Inception Score is a statistic of a condition's
whole image set, so it is its own class, :class:`InceptionScoreMetric`, with its own interval
(:func:`negopt.eval.intervals.set_statistic_interval`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["InceptionScoreMetric", "default_metrics", "METRIC_NAMES"]

METRIC_NAMES = ("aesthetic", "clip", "inception", "pickscore", "hpsv2", "imagereward")


class InceptionScoreMetric:
    """The Inception Score of a condition's image set, computed by torchmetrics' ``InceptionScore``.

    The classifier runs once over the set; the score and its subsample scores are then computed from the stored
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
                # The logits are the features: the classifier already ran, once, over the whole set. They are the
                # whole set in every process too (evaluate() gathers them under torchrun): torchmetrics must not
                # gather them again, which would wait for the other processes and count each image once per process.
                self._metric = InceptionScore(feature=torch.nn.Identity(), splits=self.splits, sync_on_compute=False)
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
    hpsv2_model: str | os.PathLike | None = None,
    imagereward_model: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> dict[str, Any]:
    """The evaluation metrics of NegOpt's table, loaded by hub id (the defaults) or from local folders.

    Args:
        names: Which metrics: ``aesthetic`` (reported as ``aesthetic``), ``clip`` (``clip_score``), ``inception``
            (``inception_score``, the set's Inception Score), ``pickscore`` (``pickscore``), ``hpsv2`` (``hpsv2``,
            HPSv2.1's cosine; its benchmark reports it times 100), ``imagereward`` (``imagereward``).
        clip_model: CLIP for the CLIP score (default ``openai/clip-vit-large-patch14``).
        aesthetic_clip_model: CLIP for the aesthetic predictor (default the same ViT-L/14; loaded once when it is
            the same as ``clip_model``).
        aesthetic_head: The aesthetic MLP head (see :mod:`negopt.rewards.aesthetic`).
        inception_model: The Inception Score's classifier (default torch-fidelity's Inception v3).
        pickscore_model: PickScore's model.
        pickscore_processor: PickScore's processor.
        hpsv2_model: HPSv2.1's checkpoint: a file, a folder holding it (and optionally its tokenizer), or a hub id
            (default ``xswu/HPSv2``).
        imagereward_model: ImageReward's checkpoint: a file, a folder holding it (and optionally its tokenizer), or
            a hub id (default ``THUDM/ImageReward``).
        device: Where the metric models run.
        cache_dir: Hub cache folder.
        token: Hub token.
        local_files_only: Load from local folders or the cache only.

    Returns:
        Metric name -> metric, for :func:`evaluate`'s ``metrics``.

    Raises:
        ValueError: If a name is unknown.
    """
    from negopt.rewards.aesthetic import DEFAULT_AESTHETIC_CLIP_MODEL, DEFAULT_AESTHETIC_HEAD, AestheticReward
    from negopt.rewards.clip import DEFAULT_CLIP_MODEL, CLIPScoreReward, PickScoreReward, load_clip

    valid = METRIC_NAMES
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {unknown or list(names)}; valid names: {', '.join(valid)}.")
    hub = {"cache_dir": cache_dir, "token": token, "local_files_only": local_files_only}
    clip_model = os.fspath(clip_model or DEFAULT_CLIP_MODEL)
    aesthetic_clip_model = os.fspath(aesthetic_clip_model or DEFAULT_AESTHETIC_CLIP_MODEL)
    shared = None
    if "aesthetic" in names and "clip" in names and clip_model == aesthetic_clip_model:
        # One ViT-L/14 for both metrics instead of two copies.
        model, tokenizer, image_processor = load_clip(clip_model, None, {"revision": None, **hub}, True, "clip_model")
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
        elif name == "hpsv2":
            from negopt.rewards.hpsv2 import HPSv2Reward

            metrics["hpsv2"] = HPSv2Reward(hpsv2_model, device=device, **hub)
        elif name == "imagereward":
            from negopt.rewards.imagereward import ImageRewardReward

            metrics["imagereward"] = ImageRewardReward(imagereward_model, device=device, **hub)
        elif name == "inception":
            metrics["inception_score"] = InceptionScoreMetric(inception_model, device=device, **hub)
    if shared is not None and device is not None:
        shared[0].to(device)
    return metrics
