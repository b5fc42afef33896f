"""Prompt/image alignment with CLIP: :class:`CLIPScoreReward` (CLIPScore) and :class:`PickScoreReward` (PickScore).

Both embed the image and its prompt with a transformers ``CLIPModel`` and score their cosine similarity. CLIPScore
is ``100 * max(cos, 0)``, as torchmetrics' ``CLIPScore`` computes it (Hessel et al., 2021, with w = 100); PickScore
(Kirstain et al., 2023) is ``exp(logit_scale) * cos`` from a CLIP-H fine-tuned on human preferences.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from negopt.hub import load_pretrained
from negopt.rewards._common import HubOptions, check_batch_size, check_call, resolve_device, warn_if_training

__all__ = [
    "CLIPScoreReward",
    "PickScoreReward",
    "DEFAULT_CLIP_MODEL",
    "DEFAULT_PICKSCORE_MODEL",
    "DEFAULT_PICKSCORE_PROCESSOR",
    "unwrap_features",
]

logger = logging.getLogger(__name__)

DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14"
DEFAULT_PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"
# PickScore's repository holds the model only; its authors process inputs with the CLIP-H processor.
DEFAULT_PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


def unwrap_features(output: Any) -> torch.Tensor:
    """The embedding tensor from ``get_image_features`` / ``get_text_features``, whatever transformers returns.

    transformers 4 returns the projected embeddings as a tensor; transformers 5 returns a
    ``BaseModelOutputWithPooling`` whose ``pooler_output`` holds them.
    """
    if isinstance(output, torch.Tensor):
        return output
    for name in ("pooler_output", "image_embeds", "text_embeds"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"cannot find the embeddings in a {type(output).__name__}; expected a tensor or pooler_output.")


def load_clip(
    model: str | os.PathLike | torch.nn.Module,
    processor: str | os.PathLike | Any | None,
    hub: HubOptions,
    use_safetensors: bool,
    argument: str = "model",
):
    """Load (or take) a ``CLIPModel`` and its processor; returns ``(model, tokenizer, image_processor)``."""
    from transformers import AutoProcessor, CLIPModel

    processor_hub = HubOptions(**{**hub, "revision": None})  # a processor named apart has its own revisions
    if isinstance(model, torch.nn.Module):
        warn_if_training(model, argument)
        if processor is None:
            name = getattr(model, "name_or_path", "") or ""
            if not name:
                raise ValueError(
                    f"{argument} is a model object with no name_or_path, so its processor cannot be found; pass "
                    "processor= (a CLIPProcessor, or the folder or hub id it was saved to)."
                )
            processor = name
    else:
        source = os.fspath(model)
        model = load_pretrained(
            CLIPModel, source, argument=argument, what="CLIP model", hub=hub, use_safetensors=use_safetensors
        )
        if processor is None:
            processor, processor_hub = source, hub
    if isinstance(processor, (str, os.PathLike)):
        processor = load_pretrained(
            AutoProcessor, processor, argument="processor", what="CLIP processor", hub=processor_hub
        )
    tokenizer = getattr(processor, "tokenizer", None)
    image_processor = getattr(processor, "image_processor", None)
    if tokenizer is None or image_processor is None:
        raise TypeError(
            "processor must be a CLIPProcessor (with a tokenizer and an image_processor), "
            f"got {type(processor).__name__}."
        )
    return model, tokenizer, image_processor


class _CLIPAlignment:
    """Shared body of the CLIP-based alignment rewards: embed, normalise, compare."""

    _argument = "model"
    # What model=None and processor=None load; a processor of None here means "the model's own".
    default_model: str = DEFAULT_CLIP_MODEL
    default_processor: str | None = None

    def __init__(
        self,
        model: str | os.PathLike | torch.nn.Module | None = None,
        processor: str | os.PathLike | Any | None = None,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        use_safetensors: bool = True,
        device: str | torch.device | None = None,
        batch_size: int = 32,
    ):
        model = self.default_model if model is None else model
        processor = self.default_processor if processor is None else processor
        self.batch_size = check_batch_size(batch_size)
        hub = HubOptions(revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only)
        self.model, self.tokenizer, self.image_processor = load_clip(
            model, processor, hub, use_safetensors, argument=self._argument
        )
        if device is not None:
            self.to(device)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> _CLIPAlignment:
        """Move the model to ``device``; returns self."""
        self.model.to(resolve_device(device))
        return self

    def _max_length(self) -> int:
        limit = getattr(getattr(self.model.config, "text_config", None), "max_position_embeddings", None) or 77
        return min(int(self.tokenizer.model_max_length), int(limit))

    def cosine(self, images, prompts) -> torch.Tensor:
        """Cosine similarity of each image with its prompt (text truncated to the model's limit), on the CPU."""
        arrays, prompts = check_call(images, prompts, None, need_prompts=True)
        return self._cosine(arrays, prompts)

    @torch.no_grad()
    def _cosine(self, arrays: list, prompts: list[str]) -> torch.Tensor:
        device, dtype = self.device, next(self.model.parameters()).dtype
        out = []
        for start in range(0, len(arrays), self.batch_size):
            chunk_images = arrays[start : start + self.batch_size]
            chunk_prompts = prompts[start : start + self.batch_size]
            pixels = self.image_processor(images=chunk_images, return_tensors="pt")["pixel_values"]
            text = self.tokenizer(
                chunk_prompts, padding=True, truncation=True, max_length=self._max_length(), return_tensors="pt"
            )
            image_embeds = unwrap_features(self.model.get_image_features(pixel_values=pixels.to(device, dtype)))
            text_embeds = unwrap_features(
                self.model.get_text_features(
                    input_ids=text["input_ids"].to(device), attention_mask=text["attention_mask"].to(device)
                )
            )
            out.append(torch.nn.functional.cosine_similarity(image_embeds.float(), text_embeds.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.empty(0)

    def __repr__(self) -> str:
        name = getattr(self.model, "name_or_path", "") or type(self.model).__name__
        return f"{type(self).__name__}(model={name!r}, device={self.device})"


class CLIPScoreReward(_CLIPAlignment):
    """CLIPScore of each image against its prompt: ``100 * max(cos(image, text), 0)``, in [0, 100].

    Matches torchmetrics' ``CLIPScore`` for one image/prompt pair. Text longer than the model's limit (77 tokens for
    OpenAI CLIP) is truncated. Negative prompts are accepted and ignored.

    Args:
        model: A ``CLIPModel``, or the folder or hub id to load one from (None: ``openai/clip-vit-large-patch14``).
        processor: A ``CLIPProcessor``, or its folder or hub id (None: the same as ``model``).
        revision: Hub revision of ``model`` (and of ``processor`` when it is loaded from the same place).
        cache_dir: Hub cache folder.
        token: Hub token.
        local_files_only: Load from the local cache or folder only.
        use_safetensors: Load safetensors weights only (set False to allow pickled ``.bin`` files you trust).
        device: Where to run (default: leave the model where it is; a loaded model starts on the CPU in float32).
        batch_size: Images per forward pass.

    Raises:
        OSError: If the model or processor cannot be loaded.
        ValueError: On a call, if the numbers of images and prompts differ.

    Example:
        >>> reward = CLIPScoreReward("openai/clip-vit-large-patch14", device="cuda")  # doctest: +SKIP
        >>> reward(images=pipe(prompts).images, prompts=prompts)  # doctest: +SKIP
        [31.2, 27.9]
    """

    def __call__(self, images=None, prompts=None, negative_prompts=None, **kwargs) -> list[float]:
        """Score each image against its prompt.

        Args:
            images: A batch of images (PIL list, numpy ``(N, H, W, C)`` or torch ``(N, C, H, W)`` in [0, 1]).
            prompts: One prompt per image.
            negative_prompts: Ignored (checked for length).
            **kwargs: Ignored, so every reward takes the same call.

        Returns:
            One float per image, in [0, 100].
        """
        arrays, prompts = check_call(images, prompts, negative_prompts, need_prompts=True)
        return (100.0 * self._cosine(arrays, prompts)).clamp(min=0).tolist()


class PickScoreReward(_CLIPAlignment):
    """PickScore of each image against its prompt: ``exp(logit_scale) * cos(image, text)`` (about 0 to 25).

    PickScore is a CLIP-H fine-tuned on human preference pairs (Pick-a-Pic); it loads through transformers' plain
    ``CLIPModel``, no extra package.

    Args:
        model: A ``CLIPModel``, or the folder or hub id to load one from (None: ``yuvalkirstain/PickScore_v1``).
        processor: A ``CLIPProcessor``, or its folder or hub id (None: the CLIP-H processor PickScore was trained
            with).
        revision: Hub revision of ``model`` (and of ``processor`` when it is loaded from the same place).
        cache_dir: Hub cache folder.
        token: Hub token.
        local_files_only: Load from the local cache or folder only.
        use_safetensors: Load safetensors weights only (set False to allow pickled ``.bin`` files you trust).
        device: Where to run (default: the CPU for a loaded model).
        batch_size: Images per forward pass.

    Example:
        >>> reward = PickScoreReward(device="cuda")  # doctest: +SKIP
        >>> reward(images=images, prompts=prompts)  # doctest: +SKIP
        [21.4, 20.8]
    """

    default_model = DEFAULT_PICKSCORE_MODEL
    default_processor = DEFAULT_PICKSCORE_PROCESSOR

    def __call__(self, images=None, prompts=None, negative_prompts=None, **kwargs) -> list[float]:
        """Score each image against its prompt; one float per image (same arguments as CLIPScoreReward)."""
        arrays, prompts = check_call(images, prompts, negative_prompts, need_prompts=True)
        scale = float(self.model.logit_scale.detach().exp())
        return (scale * self._cosine(arrays, prompts)).tolist()
