"""What every reward shares: turning image batches into one form, checking a call's inputs, loading models.

Images arrive as diffusers returns them: a list of PIL images (``output_type="pil"``), a numpy array ``(N, H, W, C)``
with values in [0, 1] (``"np"``), or a torch tensor ``(N, C, H, W)`` in [0, 1] (``"pt"``). Every reward first turns
them into 8-bit RGB arrays, so a reward gives the same score to an image whatever form it came in, and the same score
as to that image saved to PNG and read back.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from negopt.hub import HubOptions

__all__ = [
    "to_uint8_arrays",
    "to_uint8_tensor",
    "check_call",
    "check_pixel_tensor",
    "normalize_openai_clip",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "HubOptions",
    "resolve_device",
    "warn_if_training",
]

ImageInput = Any  # a list of PIL images, a numpy array, a torch tensor, or a list of arrays/tensors

# OpenAI CLIP's pixel mean and std, which CLIP-family reward models (HPSv2, ImageReward) normalise with.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Float images a hair outside [0, 1] come from rounding in VAE decoders; anything further out is a wrong range.
_RANGE_SLACK = 1e-3


def _float_to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    lo, hi = float(array.min()), float(array.max())
    if lo < -_RANGE_SLACK or hi > 1 + _RANGE_SLACK:
        raise ValueError(
            f"{what} has float values in [{lo:.3g}, {hi:.3g}], expected [0, 1]. Pass images as diffusers returns them "
            "with output_type='pil', 'np' or 'pt' (values in [0, 1]), or as uint8 arrays."
        )
    return (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _one_to_uint8(image: Any, index: int, channels_first: bool) -> np.ndarray:
    """One image (PIL, HWC/CHW array or tensor) -> an HWC uint8 RGB array."""
    what = f"images[{index}]"
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    if isinstance(image, torch.Tensor):
        image = image.detach().to("cpu", torch.float32 if image.is_floating_point() else image.dtype).numpy()
        channels_first = True if image.ndim == 3 and image.shape[0] in (1, 3, 4) else channels_first
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{what} is a {type(image).__name__}; expected a PIL image, a numpy array or a torch tensor.")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"{what} has shape {image.shape}; expected (H, W, C) or (C, H, W).")
    if channels_first:
        image = np.transpose(image, (1, 2, 0))
    if image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{what} has shape {image.shape}: the channel axis must hold 1, 3 or 4 channels.")
    if image.dtype == np.uint8:
        array = image
    elif np.issubdtype(image.dtype, np.floating):
        array = _float_to_uint8(image, what)
    else:
        raise TypeError(f"{what} has dtype {image.dtype}; expected uint8 or float in [0, 1].")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array[..., :3])


def to_uint8_arrays(images: ImageInput) -> list[np.ndarray]:
    """Turn a batch of images, in any form diffusers returns, into a list of ``(H, W, 3)`` uint8 RGB arrays.

    Args:
        images: A list of PIL images; a numpy array ``(N, H, W, C)`` (float in [0, 1] or uint8); a torch tensor
            ``(N, C, H, W)`` (float in [0, 1] or uint8); or a list of single arrays/tensors. A single PIL image
            counts as a batch of one.

    Returns:
        One array per image.

    Raises:
        TypeError: If an image is of an unknown type or dtype.
        ValueError: If the shapes or value ranges are not those of an image batch.
    """
    if hasattr(images, "convert") and hasattr(images, "size"):
        images = [images]
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"images is a tensor of shape {tuple(images.shape)}; expected a batch (N, C, H, W).")
        return [_one_to_uint8(image, i, channels_first=True) for i, image in enumerate(images)]
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(f"images is an array of shape {images.shape}; expected a batch (N, H, W, C).")
        channels_first = images.shape[-1] not in (1, 3, 4) and images.shape[1] in (1, 3, 4)
        return [_one_to_uint8(image, i, channels_first=channels_first) for i, image in enumerate(images)]
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise TypeError(
            f"images must be a list of PIL images, a numpy array or a torch tensor, got {type(images).__name__}."
        )
    return [_one_to_uint8(image, i, channels_first=False) for i, image in enumerate(images)]


def to_uint8_tensor(images: ImageInput) -> torch.Tensor:
    """A batch of images as one ``(N, 3, H, W)`` uint8 tensor, as torchmetrics' and torch-fidelity's Inception take.

    Raises:
        ValueError: If the images are not all the same size.
    """
    arrays = to_uint8_arrays(images)
    if not arrays:
        return torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) > 1:
        raise ValueError(
            f"images have different sizes {sorted(sizes)}; resize them to one size before scoring them together."
        )
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def check_call(images: ImageInput, prompts: Sequence[str] | str | None, negative_prompts: Any, *, need_prompts: bool):
    """Check a reward call's arguments; returns ``(arrays, prompts)`` with prompts a list (or None).

    Raises:
        ValueError: If the lengths disagree, or prompts are needed and missing.
        TypeError: If prompts are not strings.
    """
    arrays = to_uint8_arrays(images)
    if isinstance(prompts, str):
        prompts = [prompts]
    if prompts is None:
        if need_prompts:
            raise ValueError("prompts is None; this reward scores an image against its prompt, pass prompts=[...].")
    else:
        prompts = list(prompts)
        if len(prompts) != len(arrays):
            raise ValueError(
                f"got {len(arrays)} images but {len(prompts)} prompts; pass one prompt per image "
                "(repeat a prompt for each of its num_images_per_prompt images)."
            )
        bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
        if bad:
            raise TypeError(f"prompts[{bad[0]}] is a {type(prompts[bad[0]]).__name__}; prompts must be strings.")
    if negative_prompts is not None and not isinstance(negative_prompts, str):
        if len(negative_prompts) != len(arrays):
            raise ValueError(
                f"got {len(arrays)} images but {len(negative_prompts)} negative_prompts; pass one per image."
            )
    return arrays, prompts


def check_pixel_tensor(images: torch.Tensor, prompts: Sequence[str] | str) -> tuple[torch.Tensor, list[str]]:
    """Check the arguments of a reward's differentiable path; returns ``(images, prompts)`` with prompts a list.

    Raises:
        TypeError: ``images`` is not a float tensor, or a prompt is not a string.
        ValueError: ``images`` is not ``(N, 3, H, W)``, or there is not one prompt per image.
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        got = f"a tensor of dtype {images.dtype}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(
            f"images must be a float tensor (N, 3, H, W) with values in [0, 1] (diffusers' output_type='pt'), got "
            f"{got}."
        )
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images has shape {tuple(images.shape)}; expected (N, 3, H, W).")
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if len(prompts) != len(images):
        raise ValueError(f"got {len(images)} images but {len(prompts)} prompts; pass one prompt per image.")
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    if bad:
        raise TypeError(f"prompts[{bad[0]}] is a {type(prompts[bad[0]]).__name__}; prompts must be strings.")
    return images, prompts


def normalize_openai_clip(pixels: torch.Tensor) -> torch.Tensor:
    """``(pixels - mean) / std`` per channel with OpenAI CLIP's statistics, for ``(N, 3, H, W)`` values in [0, 1]."""
    mean = torch.tensor(OPENAI_CLIP_MEAN, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
    return (pixels - mean) / std


def warn_if_training(module: torch.nn.Module, argument: str) -> None:
    """Warn that a model handed in is in training mode: its dropout makes the scores random."""
    if module.training:
        warnings.warn(
            f"{argument} is in training mode (dropout active), so its scores are random; call .eval() on it first.",
            stacklevel=3,
        )


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` is the CPU: models load on the CPU in float32 and the user moves them."""
    return torch.device("cpu") if device is None else torch.device(device)


def batched(items: Sequence, batch_size: int):
    """Consecutive slices of ``items`` of at most ``batch_size``."""
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    return batch_size
