"""Fidelity: each image's contribution to the Inception Score of its batch.

The Inception Score (Salimans et al., 2016) is a statistic of a set of images,
``IS = exp(mean_x KL(p(y|x) || p(y)))``, where ``p(y|x)`` is a classifier's class distribution for image ``x`` and
``p(y)`` its mean over the set. It is high when each image is confidently one class (sharp ``p(y|x)``) and the set
covers many classes (broad ``p(y)``). A reward needs one number per image, so :class:`InceptionReward` scores image
``x`` by its own term, ``KL(p(y|x) || p(y))``, with ``p(y)`` the marginal of the batch it was scored in: the mean of
these terms over the batch, exponentiated, is exactly the batch's Inception Score (with one split).

An image's score depends on its batch: score images together in batches of the same size when you compare them.
A batch of one always scores 0 (its marginal is itself); ``marginal="uniform"`` compares each image with the uniform
distribution instead, ``log K - H(p(y|x))``, a per-image confidence that needs no batch.

The classifier
--------------
Any ``nn.Module`` that maps a ``(N, 3, H, W)`` uint8 tensor (values 0-255, as torchmetrics' and torch-fidelity's
Inception take) to ``(N, K)`` logits. The default is the Inception v3 of the original Inception Score through
torchmetrics, which needs torch-fidelity (``pip install "negopt[inception]"``) and downloads its weights from
torch-fidelity's release page on first use. A folder or hub id loads a transformers image classifier
(``AutoModelForImageClassification`` with its image processor) wrapped in :class:`TransformersImageClassifier`.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from typing import Any, Literal

import torch
from torch import nn

from negopt.hub import load_pretrained
from negopt.rewards._common import HubOptions, check_batch_size, check_call, resolve_device, warn_if_training

__all__ = ["InceptionReward", "TransformersImageClassifier", "inception_v3", "inception_terms"]

logger = logging.getLogger(__name__)


def inception_v3() -> nn.Module:
    """The Inception v3 of the original Inception Score (torch-fidelity's port, through torchmetrics).

    Takes ``(N, 3, H, W)`` uint8 images (resized to 299 inside) and returns the 1008 "unbiased" logits.

    Raises:
        ImportError: If torchmetrics or torch-fidelity is missing.
    """
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
        from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE
    except ImportError as e:
        raise ImportError(
            'the default Inception v3 needs torchmetrics and torch-fidelity: pip install "negopt[inception]"'
        ) from e
    if not _TORCH_FIDELITY_AVAILABLE:
        raise ImportError(
            'the default Inception v3 needs torch-fidelity: pip install "negopt[inception]" (or pass classifier=, '
            "any nn.Module from uint8 images to logits, or a transformers image classifier's folder or hub id)"
        )
    return NoTrainInceptionV3(name="inception-v3-compat", features_list=["logits_unbiased"])


class TransformersImageClassifier(nn.Module):
    """A transformers image classifier behind the classifier contract: ``(N, 3, H, W)`` uint8 -> ``(N, K)`` logits.

    The image processor does the resizing and normalisation the model was trained with.

    Args:
        model: An ``AutoModelForImageClassification`` model.
        image_processor: Its image processor.
    """

    def __init__(self, model: nn.Module, image_processor: Any):
        super().__init__()
        self.model = model
        self.image_processor = image_processor

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        use_safetensors: bool = True,
    ) -> TransformersImageClassifier:
        """Load the model and its image processor from a folder or hub id (on the CPU, float32).

        Raises:
            OSError: If either cannot be loaded.
        """
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        source = os.fspath(path_or_id)
        hub = HubOptions(revision, cache_dir, token, local_files_only)
        what = "image classifier"
        model = load_pretrained(
            AutoModelForImageClassification,
            source,
            argument="path_or_id",
            what=what,
            hub=hub,
            use_safetensors=use_safetensors,
        )
        processor = load_pretrained(AutoImageProcessor, source, argument="path_or_id", what=what, hub=hub)
        return cls(model, processor)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        arrays = [image.permute(1, 2, 0).cpu().numpy() for image in images]
        pixels = self.image_processor(images=arrays, return_tensors="pt")["pixel_values"]
        parameter = next(self.model.parameters())
        return self.model(pixel_values=pixels.to(parameter.device, parameter.dtype)).logits


def inception_terms(logits: torch.Tensor, marginal: Literal["batch", "uniform"] = "batch") -> torch.Tensor:
    """Per-image Inception terms ``KL(p(y|x) || p(y))`` from ``(N, K)`` logits.

    ``exp(inception_terms(logits).mean())`` is the Inception Score of the set with one split, as torchmetrics'
    ``InceptionScore(splits=1)`` computes it.
    """
    logits = logits.float()
    log_p = logits.log_softmax(dim=1)
    p = log_p.exp()
    if marginal == "batch":
        log_m = p.mean(dim=0, keepdim=True).log()
    else:
        log_m = torch.full_like(p[:1], -math.log(p.shape[1]))
    return (p * (log_p - log_m)).sum(dim=1)


def _logits(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(getattr(output, "logits", None), torch.Tensor):
        return output.logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"the classifier returned a {type(output).__name__}; it must return (N, K) logits.")


class InceptionReward:
    """Each image's term of its batch's Inception Score: ``KL(p(y|x) || p(y))`` (see the module docstring).

    ``exp`` of the mean reward over a batch is the batch's Inception Score. Prompts and negative prompts are
    accepted and ignored.

    Args:
        classifier: An ``nn.Module`` from ``(N, 3, H, W)`` uint8 images to ``(N, K)`` logits; a folder or hub id
            of a transformers image classifier; or None for the Inception v3 of the Inception Score (needs
            ``pip install "negopt[inception]"``).
        marginal: ``"batch"`` (the Inception Score's own term) or ``"uniform"`` (``log K - H(p(y|x))``, no batch
            needed).
        revision: Hub revision of ``classifier``.
        cache_dir: Hub cache folder.
        token: Hub token.
        local_files_only: Load from the local cache or folder only.
        use_safetensors: Load safetensors weights only.
        device: Where to run (default: the CPU for a loaded classifier; a module you pass stays where it is).
        batch_size: Images per forward pass (the marginal is taken over the whole call, not per forward pass).

    Raises:
        ValueError: If ``marginal`` is unknown.
        ImportError: If the default classifier's package is missing.

    Example:
        >>> reward = InceptionReward(device="cuda")  # doctest: +SKIP
        >>> terms = reward(images=images)  # doctest: +SKIP
        >>> math.exp(sum(terms) / len(terms))  # the batch's Inception Score  # doctest: +SKIP
    """

    def __init__(
        self,
        classifier: nn.Module | str | os.PathLike | None = None,
        *,
        marginal: Literal["batch", "uniform"] = "batch",
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        use_safetensors: bool = True,
        device: str | torch.device | None = None,
        batch_size: int = 32,
    ):
        if marginal not in ("batch", "uniform"):
            raise ValueError(f"marginal must be 'batch' or 'uniform', got {marginal!r}.")
        self.marginal = marginal
        self.batch_size = check_batch_size(batch_size)
        if classifier is None:
            self.classifier = inception_v3()
        elif isinstance(classifier, nn.Module):
            warn_if_training(classifier, "classifier")
            self.classifier = classifier
        elif isinstance(classifier, (str, os.PathLike)):
            self.classifier = TransformersImageClassifier.from_pretrained(
                classifier,
                revision=revision,
                cache_dir=cache_dir,
                token=token,
                local_files_only=local_files_only,
                use_safetensors=use_safetensors,
            )
        else:
            raise TypeError(
                f"classifier must be an nn.Module, a folder or hub id, or None, got {type(classifier).__name__}."
            )
        self._warned_single = False
        if device is not None:
            self.to(device)

    @property
    def device(self) -> torch.device:
        parameter = next(self.classifier.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> InceptionReward:
        """Move the classifier to ``device``; returns self."""
        self.classifier.to(resolve_device(device))
        return self

    @torch.no_grad()
    def logits(self, images) -> torch.Tensor:
        """The classifier's ``(N, K)`` logits for a batch of images of one size, float32 on the CPU."""
        from negopt.rewards._common import to_uint8_arrays, to_uint8_tensor

        arrays = to_uint8_arrays(images)
        sizes = {a.shape[:2] for a in arrays}
        if len(sizes) > 1:
            raise ValueError(
                f"images have different sizes {sorted(sizes)}; resize them to one size before scoring them together."
            )
        out = []
        for start in range(0, len(arrays), self.batch_size):
            # One chunk at a time becomes a tensor: a large set never exists twice in memory.
            chunk = to_uint8_tensor(arrays[start : start + self.batch_size]).to(self.device)
            logits = _logits(self.classifier(chunk))
            if logits.ndim != 2 or logits.shape[0] != chunk.shape[0]:
                raise ValueError(
                    f"the classifier returned logits of shape {tuple(logits.shape)} for {chunk.shape[0]} images; "
                    "expected (N, K)."
                )
            out.append(logits.float().cpu())
        return torch.cat(out) if out else torch.empty(0, 0)

    def __call__(self, images=None, prompts=None, negative_prompts=None, **kwargs) -> list[float]:
        """Score each image by its Inception term.

        Args:
            images: A batch of images of one size (PIL list, numpy ``(N, H, W, C)`` or torch ``(N, C, H, W)``).
            prompts: Ignored (checked for length).
            negative_prompts: Ignored (checked for length).
            **kwargs: Ignored, so every reward takes the same call.

        Returns:
            One float per image (nats, at least 0 for ``marginal="batch"``).
        """
        arrays, _ = check_call(images, prompts, negative_prompts, need_prompts=False)
        if not arrays:
            return []
        if len(arrays) == 1 and self.marginal == "batch" and not self._warned_single:
            self._warned_single = True
            warnings.warn(
                "InceptionReward scored a batch of one image, which always scores 0 with marginal='batch'; "
                "score images in batches, or use marginal='uniform'.",
                stacklevel=2,
            )
        return inception_terms(self.logits(arrays), self.marginal).tolist()

    def __repr__(self) -> str:
        return f"InceptionReward(classifier={type(self.classifier).__name__}, marginal={self.marginal!r})"
