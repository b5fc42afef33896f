"""ImageReward (Xu et al., NeurIPS 2023): a BLIP image-text encoder and an MLP head trained on human rankings.

The image goes through BLIP's ViT-L/16 (224 px); the prompt through a BERT-base text encoder that cross-attends to
the image; the ``[CLS]`` state goes through a 768-1024-128-64-16-1 linear head (no activations, the aesthetic
predictor's architecture, :class:`~negopt.rewards.AestheticMLP`), and the reward is standardised,
``(r - 0.16717362830052426) / 1.0333394966054072``, so it reads as about -2 to 2 around 0.

The authors publish one checkpoint, ``ImageReward.pt`` in the hub repository ``THUDM/ImageReward`` (447M parameters,
with ``med_config.json``; the ``image-reward`` code is Apache-2.0, but no licence is stated for the checkpoint itself,
so check its terms before you use it). negopt does not depend
on that package: the checkpoint is read with ``torch.load(weights_only=True)`` and re-keyed onto transformers'
``BlipVisionModel`` + ``BlipTextModel(add_pooling_layer=False)`` + the head (:func:`convert_imagereward_state_dict`):

- ``blip.visual_encoder.{cls_token, pos_embed, patch_embed.proj}`` -> ``vision_model.embeddings.{class_embedding,
  position_embedding, patch_embedding}``;
- ``blip.visual_encoder.blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`` ->
  ``vision_model.encoder.layers.N.{layer_norm1, self_attn.qkv, self_attn.projection, layer_norm2, mlp.fc1, mlp.fc2}``;
- ``blip.visual_encoder.norm`` -> ``vision_model.post_layernorm``;
- ``blip.text_encoder.*`` -> ``text_model.*`` (``med.py``'s BERT names are transformers' BLIP text names);
- ``mlp.layers.N`` -> ``head.layers.N``.

``blip.vision_proj``, ``blip.text_proj`` (BLIP's contrastive projections) and the saved ``position_ids`` play no
part in the score. The official loader loads with ``strict=False``; negopt refuses a checkpoint that leaves a weight
unset and warns about keys it does not know.

Text: BERT's ``bert-base-uncased`` tokenizer plus ``[DEC]`` and ``[ENC]`` (30,524 tokens), padded and truncated to
35 tokens. Images: RGB, the shortest side resized to 224 (bicubic), centre-cropped to 224x224, OpenAI CLIP's mean
and std.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from negopt.hub import load_pretrained
from negopt.rewards._checkpoint import (
    load_config,
    load_converted,
    local_folder,
    read_state_dict,
    resolve_checkpoint_file,
)
from negopt.rewards._common import (
    HubOptions,
    check_batch_size,
    check_pixel_tensor,
    normalize_openai_clip,
    warn_if_training,
)
from negopt.rewards._preference import PreferenceReward
from negopt.rewards.aesthetic import AestheticMLP

__all__ = [
    "ImageRewardReward",
    "ImageRewardModel",
    "load_imagereward_model",
    "convert_imagereward_state_dict",
    "blip_large_config",
    "DEFAULT_IMAGEREWARD_MODEL",
    "DEFAULT_IMAGEREWARD_TOKENIZER",
    "IMAGEREWARD_WEIGHTS_NAME",
    "IMAGEREWARD_MEAN",
    "IMAGEREWARD_STD",
    "IMAGEREWARD_MAX_LENGTH",
]

logger = logging.getLogger(__name__)

DEFAULT_IMAGEREWARD_MODEL = "THUDM/ImageReward"
IMAGEREWARD_WEIGHTS_NAME = "ImageReward.pt"
DEFAULT_IMAGEREWARD_TOKENIZER = "google-bert/bert-base-uncased"
# The head's raw output is standardised with these (ImageReward.py's self.mean / self.std).
IMAGEREWARD_MEAN = 0.16717362830052426
IMAGEREWARD_STD = 1.0333394966054072
IMAGEREWARD_MAX_LENGTH = 35
# BLIP's tokenizer adds these to bert-base-uncased, in this order (ids 30522 and 30523).
_ADDED_TOKENS = ("[DEC]", "[ENC]")

_VISION_DIRECT = {
    "cls_token": "embeddings.class_embedding",
    "pos_embed": "embeddings.position_embedding",
    "patch_embed.proj.weight": "embeddings.patch_embedding.weight",
    "patch_embed.proj.bias": "embeddings.patch_embedding.bias",
    "norm.weight": "post_layernorm.weight",
    "norm.bias": "post_layernorm.bias",
}
_VISION_BLOCK = [
    ("norm1.", "layer_norm1."),
    ("norm2.", "layer_norm2."),
    ("attn.qkv.", "self_attn.qkv."),
    ("attn.proj.", "self_attn.projection."),
    ("mlp.fc1.", "mlp.fc1."),
    ("mlp.fc2.", "mlp.fc2."),
]
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
_UNUSED_PREFIXES = ("blip.vision_proj.", "blip.text_proj.")
_UNUSED = {"blip.text_encoder.embeddings.position_ids"}


def blip_large_config() -> Any:
    """ImageReward's architecture as a transformers ``BlipConfig``.

    Vision: BLIP's ViT-L/16 at 224 px (width 1024, 24 layers, 16 heads, layer-norm eps 1e-6). Text: ImageReward's
    ``med_config.json`` (BERT-base: width 768, 12 layers, 12 heads, 30,524 tokens), cross-attending to the 1024-wide
    image states.
    """
    from transformers import BlipConfig

    vision = dict(
        image_size=224,
        patch_size=16,
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
    )
    text = dict(
        vocab_size=30524,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=512,
        layer_norm_eps=1e-12,
        hidden_act="gelu",
        pad_token_id=0,
        is_decoder=True,
    )
    return BlipConfig(vision_config=vision, text_config=text)


class ImageRewardModel(nn.Module):
    """ImageReward on transformers classes: ``BlipVisionModel``, ``BlipTextModel`` (cross-attention, no pooler) and
    the linear head.

    Args:
        config: A ``BlipConfig`` (:func:`blip_large_config` for the released model). The text encoder is built with
            cross-attention layers whatever its ``is_decoder`` says, attending to states of the vision width.
    """

    def __init__(self, config: Any):
        super().__init__()
        from transformers import BlipTextModel, BlipVisionModel

        text_config = copy.deepcopy(config.text_config)
        text_config.is_decoder = True  # builds the cross-attention layers; the forward pass stays bidirectional
        text_config.encoder_hidden_size = config.vision_config.hidden_size
        self.config = config
        self.vision_model = BlipVisionModel(config.vision_config)
        self.text_model = BlipTextModel(text_config, add_pooling_layer=False)
        self.head = AestheticMLP(embed_dim=text_config.hidden_size)

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """The ImageReward score of each image/prompt pair, ``(head([CLS]) - mean) / std``, as an ``(N,)`` tensor."""
        image_states = self.vision_model(pixel_values=pixel_values).last_hidden_state
        text = self.text_model(input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_states)
        head_weight = self.head.layers[0].weight
        raw = self.head(text.last_hidden_state[:, 0].to(head_weight.dtype)).float()[:, 0]
        return (raw - IMAGEREWARD_MEAN) / IMAGEREWARD_STD


def convert_imagereward_state_dict(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Re-key ImageReward's checkpoint (``blip.*``, ``mlp.*``) for :class:`ImageRewardModel`.

    Returns:
        ``(converted, unknown, unused)``: the weights under :class:`ImageRewardModel`'s names, the keys no rule maps,
        and the keys known to play no part in the score.
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    unused: list[str] = []
    for key, value in state_dict.items():
        if key in _UNUSED or key.startswith(_UNUSED_PREFIXES):
            unused.append(key)
        elif key.startswith("blip.text_encoder."):
            out["text_model." + key[len("blip.text_encoder.") :]] = value
        elif key.startswith("mlp.layers."):
            out["head." + key[len("mlp.") :]] = value
        elif key.startswith("blip.visual_encoder."):
            rest = key[len("blip.visual_encoder.") :]
            if rest in _VISION_DIRECT:
                out["vision_model." + _VISION_DIRECT[rest]] = value
            elif (match := _BLOCK.match(rest)) and (
                renamed := next(
                    (new + match[2][len(old) :] for old, new in _VISION_BLOCK if match[2].startswith(old)), None
                )
            ):
                out[f"vision_model.encoder.layers.{match[1]}.{renamed}"] = value
            else:
                unknown.append(key)
        else:
            unknown.append(key)
    return out, unknown, unused


def load_imagereward_model(
    source: str | os.PathLike = DEFAULT_IMAGEREWARD_MODEL,
    *,
    config: Any = None,
    weights_name: str = IMAGEREWARD_WEIGHTS_NAME,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> ImageRewardModel:
    """ImageReward's checkpoint as an :class:`ImageRewardModel` (CPU, float32, eval mode, frozen).

    Args:
        source: The checkpoint (``.pt``, or ``.safetensors`` with the same keys), a folder holding it, or a hub
            repository id.
        config: The ``BlipConfig`` to build (an object, a dict or a JSON path). None: ``config.json`` beside the
            checkpoint if there is one, else :func:`blip_large_config`.
        weights_name: The checkpoint's name inside a folder or repository.
        revision: Hub revision.
        cache_dir: Hub cache folder.
        token: Hub token.
        local_files_only: Use local files and the cache only.

    Raises:
        FileNotFoundError: No checkpoint where ``source`` points.
        ValueError: The checkpoint does not cover the model, or its shapes do not fit the config.
    """
    from transformers import BlipConfig

    name = os.path.expanduser(os.fspath(source))
    hub = HubOptions(revision, cache_dir, token, local_files_only)
    path = resolve_checkpoint_file(name, weights_name, hub, argument="model", what="ImageReward checkpoint")
    state, unknown, unused = convert_imagereward_state_dict(read_state_dict(path, argument="model"))
    model = ImageRewardModel(load_config(config, local_folder(name), BlipConfig, blip_large_config, argument="config"))
    return load_converted(model, state, source=path, what="ImageReward", unknown=unknown, unused=unused)


def _with_blip_tokens(tokenizer: Any, copy_first: bool) -> Any:
    """BLIP's tokenizer: BERT's plus ``[DEC]`` and ``[ENC]`` (added after the vocabulary, in that order)."""
    missing = [t for t in _ADDED_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer = copy.deepcopy(tokenizer) if copy_first else tokenizer  # never change a tokenizer handed in
        tokenizer.add_tokens(missing, special_tokens=True)
    return tokenizer


def resize_shortest_and_crop(array: np.ndarray, size: int) -> np.ndarray:
    """torchvision's ``Resize(size)`` (shortest side, PIL bicubic) then ``CenterCrop(size)``, on a uint8 array."""
    from PIL import Image

    height, width = array.shape[:2]
    new_height, new_width = _shortest_side_size(height, width, size)
    if (new_height, new_width) != (height, width):
        array = np.asarray(Image.fromarray(array).resize((new_width, new_height), Image.BICUBIC))
    top, left = round((new_height - size) / 2.0), round((new_width - size) / 2.0)
    return np.ascontiguousarray(array[top : top + size, left : left + size])


def _shortest_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision's output size for ``Resize(size)``: the short side to ``size``, the long one scaled and floored."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


class ImageRewardReward(PreferenceReward):
    """ImageReward of each image against its prompt: BLIP + an MLP head trained on human rankings (about -2 to 2).

    Loads the authors' checkpoint onto transformers classes (see the module docstring); no ``image-reward`` package
    needed. Negative prompts are accepted and ignored.

    Args:
        model: An :class:`ImageRewardModel`, or where the checkpoint is: a ``.pt`` file, a folder holding it (with
            an optional ``config.json`` and tokenizer files beside it), or a hub id (None: ``THUDM/ImageReward``).
        tokenizer: A BERT tokenizer, or its folder or hub id. None: the checkpoint's folder when it holds tokenizer
            files, else ``google-bert/bert-base-uncased``. ``[DEC]`` and ``[ENC]`` are added when missing (to a copy).
        config: The ``BlipConfig`` of a checkpoint of another size (see :func:`load_imagereward_model`).
        weights_name: The checkpoint's file name in a folder or repository (default ``ImageReward.pt``).
        revision: Hub revision of ``model`` (and of the tokenizer when it is loaded from the same place).
        cache_dir: Hub cache folder.
        token: Hub token.
        local_files_only: Load from local folders and the cache only.
        use_safetensors: Accepted for a common signature with the other rewards; the checkpoint is always read with
            ``torch.load(weights_only=True)``, which runs no code from the file.
        device: Where to run (default: the CPU for a loaded model; a model object stays where it is).
        batch_size: Images per forward pass.

    Raises:
        FileNotFoundError: If the checkpoint cannot be found.
        ValueError: If it does not fit the config, or the tokenizer has more tokens than the model's vocabulary.

    Example:
        >>> reward = ImageRewardReward(device="cuda")  # doctest: +SKIP
        >>> reward(images=pipe(prompts).images, prompts=prompts)  # doctest: +SKIP
        [0.42, -0.17]
    """

    def __init__(
        self,
        model: str | os.PathLike | nn.Module | None = None,
        tokenizer: str | os.PathLike | Any | None = None,
        *,
        config: Any = None,
        weights_name: str = IMAGEREWARD_WEIGHTS_NAME,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        use_safetensors: bool = True,
        device: str | torch.device | None = None,
        batch_size: int = 32,
    ):
        from transformers import AutoTokenizer

        self.batch_size = check_batch_size(batch_size)
        hub = HubOptions(revision, cache_dir, token, local_files_only)
        model = DEFAULT_IMAGEREWARD_MODEL if model is None else model
        if isinstance(model, nn.Module):
            warn_if_training(model, "model")
            self.model = model
        else:
            self.model = load_imagereward_model(model, config=config, weights_name=weights_name, **hub)
            folder = local_folder(model)
            if (
                tokenizer is None
                and folder
                and any(os.path.isfile(os.path.join(folder, f)) for f in ("tokenizer.json", "vocab.txt"))
            ):
                tokenizer = folder
        if tokenizer is None:
            tokenizer, hub = DEFAULT_IMAGEREWARD_TOKENIZER, HubOptions(None, cache_dir, token, local_files_only)
        handed_in = not isinstance(tokenizer, (str, os.PathLike))
        if not handed_in:
            tokenizer = load_pretrained(AutoTokenizer, tokenizer, argument="tokenizer", what="BERT tokenizer", hub=hub)
        self.tokenizer = _with_blip_tokens(tokenizer, copy_first=handed_in)
        vocab_size = self.model.config.text_config.vocab_size
        if len(self.tokenizer) > vocab_size:
            raise ValueError(
                f"the tokenizer has {len(self.tokenizer)} tokens but the text encoder only {vocab_size} "
                "(text_config.vocab_size); pass the tokenizer the model was trained with."
            )
        if device is not None:
            self.to(device)

    def _preprocess(self, arrays: list[np.ndarray]) -> torch.Tensor:
        if not arrays:
            return torch.empty(0, 3, self.image_size, self.image_size)
        crops = np.stack([resize_shortest_and_crop(a, self.image_size) for a in arrays])
        return normalize_openai_clip(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0)

    def _score(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        text = self.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=IMAGEREWARD_MAX_LENGTH, return_tensors="pt"
        )
        dtype = next(self.model.parameters()).dtype
        return self.model(
            pixel_values=pixels.to(self.device, dtype),
            input_ids=text["input_ids"].to(self.device),
            attention_mask=text["attention_mask"].to(self.device),
        )

    def differentiable_score(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """ImageReward as a differentiable function of the pixels, for reward gradients (ReFL-style training).

        The transform is redone in torch: bicubic resize of the shortest side (antialiased, clamped to [0, 1]) and a
        centre crop, then normalisation. It matches :meth:`__call__` exactly on images that need no resize; after a
        resize the two differ by the gap between torch's and PIL's bicubic filters. One batch, one forward pass.

        Args:
            images: ``(N, 3, H, W)`` float pixels in [0, 1], on any device (moved to the model's).
            prompts: One prompt per image.

        Returns:
            ``(N,)`` float32 scores on the model's device, with a graph back to ``images``.
        """
        images, prompts = check_pixel_tensor(images, prompts)
        size = self.image_size
        pixels = images.to(self.device, torch.float32)
        height, width = pixels.shape[-2:]
        new_height, new_width = _shortest_side_size(height, width, size)
        if (new_height, new_width) != (height, width):
            pixels = torch.nn.functional.interpolate(
                pixels, size=(new_height, new_width), mode="bicubic", antialias=True, align_corners=False
            ).clamp(0.0, 1.0)
        top, left = round((new_height - size) / 2.0), round((new_width - size) / 2.0)
        return self._score(normalize_openai_clip(pixels[:, :, top : top + size, left : left + size]), prompts)

    def __repr__(self) -> str:
        return f"ImageRewardReward(model={type(self.model).__name__}, device={self.device})"
