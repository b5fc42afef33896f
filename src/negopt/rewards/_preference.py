"""What the two human-preference rewards (HPSv2.1, ImageReward) share: a model scored on batches of preprocessed
images and their prompts, on the model's device.

A subclass sets ``model`` (a torch module whose ``config.vision_config.image_size`` is the input side) and
``batch_size``, and defines ``_preprocess(arrays)`` (8-bit RGB arrays to ``(N, 3, S, S)`` pixel values, its own
model's transform) and ``_score(pixels, prompts)`` (one score a row).
"""

from __future__ import annotations

import numpy as np
import torch

from negopt.rewards._common import check_call, resolve_device

__all__ = ["PreferenceReward"]


class PreferenceReward:
    """A reward model that scores an image against its prompt, one forward pass a batch."""

    model: torch.nn.Module
    batch_size: int

    def _preprocess(self, arrays: list[np.ndarray]) -> torch.Tensor:  # pragma: no cover - each subclass has one
        raise NotImplementedError

    def _score(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:  # pragma: no cover - the same
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        return next(self.model.parameters()).device

    @property
    def image_size(self) -> int:
        """The side of the square images the model reads."""
        return int(self.model.config.vision_config.image_size)

    def to(self, device: str | torch.device):
        """Move the model to ``device``; returns self."""
        self.model.to(resolve_device(device))
        return self

    def preprocess(self, images) -> torch.Tensor:
        """The model's own transform: ``(N, 3, S, S)`` float32 pixel values on the CPU."""
        arrays, _ = check_call(images, None, None, need_prompts=False)
        return self._preprocess(arrays)

    @torch.no_grad()
    def __call__(self, images=None, prompts=None, negative_prompts=None, **kwargs) -> list[float]:
        """Score each image against its prompt, ``batch_size`` images a forward pass.

        Args:
            images: A batch of images (PIL list, numpy ``(N, H, W, C)`` or torch ``(N, C, H, W)`` in [0, 1]).
            prompts: One prompt per image.
            negative_prompts: Ignored (checked for length).
            **kwargs: Ignored, so every reward takes the same call.

        Returns:
            One float per image, higher is better (the class says on what scale).
        """
        arrays, prompts = check_call(images, prompts, negative_prompts, need_prompts=True)
        scores: list[float] = []
        for start in range(0, len(arrays), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            scores += self._score(self._preprocess(arrays[chunk]), prompts[chunk]).cpu().tolist()
        return scores
