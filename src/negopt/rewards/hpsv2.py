"""Human Preference Score v2.1 (HPSv2.1, Wu et al., 2023): an OpenCLIP ViT-H-14 fine-tuned on human preferences.

The score of an image and its prompt is the cosine similarity of their normalised CLIP features (about 0.2 to 0.3
for real images; HPSv2's benchmark reports it times 100). The authors publish the weights as one OpenCLIP
checkpoint, ``HPS_v2.1_compressed.pt`` in the hub repository ``xswu/HPSv2`` (a ``{"state_dict": ...}`` file, 986M
parameters; the ``hpsv2`` code is Apache-2.0, but no licence is stated for the checkpoint itself, so check its terms
before you use it); its text side is OpenCLIP's ViT-H-14
(``laion2b_s32b_b79k``), whose tokenizer is CLIP's BPE (the hub repository
``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` holds it).

negopt does not depend on the ``hpsv2`` package: the checkpoint is read with ``torch.load(weights_only=True)`` and
its weights re-keyed onto transformers' ``CLIPModel`` (:func:`convert_open_clip_state_dict`): each attention's
``in_proj`` is split into q/k/v, ``visual.proj`` and ``text_projection`` are transposed, ``ln_pre`` becomes
``pre_layrnorm``, and the config uses exact GELU and ``eos_token_id=49407`` (:func:`vit_h_14_config`).

Preprocessing is HPSv2's evaluation transform: RGB, the longest side resized to 224 (bicubic), zero-padded (black)
to a square, centred, then OpenAI CLIP's mean and std.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

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
from negopt.rewards.clip import unwrap_features

__all__ = [
    "HPSv2Reward",
    "load_hpsv2_model",
    "convert_open_clip_state_dict",
    "vit_h_14_config",
    "DEFAULT_HPSV2_MODEL",
    "DEFAULT_HPSV2_TOKENIZER",
    "HPSV2_WEIGHTS_NAME",
]

logger = logging.getLogger(__name__)

DEFAULT_HPSV2_MODEL = "xswu/HPSv2"
HPSV2_WEIGHTS_NAME = "HPS_v2.1_compressed.pt"
DEFAULT_HPSV2_TOKENIZER = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"

# OpenCLIP residual-block names -> transformers CLIP encoder-layer names.
_BLOCK = [("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."), ("mlp.c_fc.", "mlp.fc1."), ("mlp.c_proj.", "mlp.fc2.")]
_BLOCK += [("attn.out_proj.", "self_attn.out_proj.")]
_DIRECT = {
    "logit_scale": "logit_scale",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
}
_TRANSPOSED = {"text_projection": "text_projection.weight", "visual.proj": "visual_projection.weight"}
# Buffers some OpenCLIP versions saved: the text tower's causal mask, rebuilt by transformers.
_UNUSED = {"attn_mask", "visual.attn_mask"}
_RESBLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")


def vit_h_14_config() -> Any:
    """OpenCLIP ViT-H-14's architecture as a transformers ``CLIPConfig`` (HPSv2.1's; exact GELU, CLIP's BPE ids).

    Vision: 224 px, patch 14, width 1280, 32 layers, 16 heads (head width 80); text: width 1024, 24 layers, 16 heads,
    77 positions, 49,408 tokens; both projected to 1024.
    """
    from transformers import CLIPConfig

    text = dict(
        vocab_size=49408,
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        max_position_embeddings=77,
        hidden_act="gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=0,
        projection_dim=1024,
    )
    vision = dict(
        image_size=224,
        patch_size=14,
        hidden_size=1280,
        intermediate_size=5120,
        num_hidden_layers=32,
        num_attention_heads=16,
        hidden_act="gelu",
        projection_dim=1024,
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=1024)


def convert_open_clip_state_dict(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Re-key an OpenCLIP ``CLIP`` state dict (HPSv2's layout) for transformers' ``CLIPModel``.

    Returns:
        ``(converted, unknown, unused)``: the weights under ``CLIPModel``'s names, the keys no rule maps, and the
        keys known to hold no weights (saved attention masks).
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    unused: list[str] = []
    for key, value in state_dict.items():
        if key in _UNUSED:
            unused.append(key)
        elif key in _DIRECT:
            out[_DIRECT[key]] = value
        elif key in _TRANSPOSED:
            out[_TRANSPOSED[key]] = value.t().contiguous()
        elif match := _RESBLOCK.match(key):
            visual, index, rest = match.groups()
            prefix = f"{'vision' if visual else 'text'}_model.encoder.layers.{index}.self_attn."
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = "weight" if rest.endswith("weight") else "bias"
                for name, part in zip(("q", "k", "v"), value.chunk(3, dim=0)):
                    out[f"{prefix}{name}_proj.{kind}"] = part.contiguous()
                continue
            layer = prefix[: -len("self_attn.")]
            renamed = next((new + rest[len(old) :] for old, new in _BLOCK if rest.startswith(old)), None)
            if renamed is None:
                unknown.append(key)
            else:
                out[layer + renamed] = value
        else:
            unknown.append(key)
    return out, unknown, unused


def load_hpsv2_model(
    source: str | os.PathLike = DEFAULT_HPSV2_MODEL,
    *,
    config: Any = None,
    weights_name: str = HPSV2_WEIGHTS_NAME,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    use_safetensors: bool = True,
) -> Any:
    """HPSv2's checkpoint as a transformers ``CLIPModel`` (CPU, float32, eval mode, frozen).

    Args:
        source: The checkpoint file (``.pt`` or ``.safetensors`` in OpenCLIP's layout), a folder holding it (or a
            ``CLIPModel`` saved with ``save_pretrained``), or a hub repository id.
        config: The ``CLIPConfig`` to build (an object, a dict or a JSON path). None: the ``config.json`` beside the
            checkpoint if there is one, else :func:`vit_h_14_config`.
        weights_name: The checkpoint's name inside a folder or repository.
        revision: Hub revision.
        cache_dir: Hub cache folder.
        token: Hub token.
        local_files_only: Use local files and the cache only.
        use_safetensors: For a ``save_pretrained`` folder: load safetensors only. The original checkpoint is always
            read with ``torch.load(weights_only=True)``, which rebuilds tensors and runs no code from the file.

    Raises:
        FileNotFoundError: No checkpoint where ``source`` points.
        ValueError: The checkpoint does not cover the model, or its shapes do not fit the config.
    """
    from transformers import CLIPConfig, CLIPModel

    hub = HubOptions(revision, cache_dir, token, local_files_only)
    name = os.path.expanduser(os.fspath(source))
    folder = name if os.path.isdir(name) else None
    if folder and not os.path.isfile(os.path.join(folder, weights_name)):
        if os.path.isfile(os.path.join(folder, "config.json")):  # a converted model, saved with save_pretrained
            return load_pretrained(
                CLIPModel, folder, argument="model", what="HPSv2 model", hub=hub, use_safetensors=use_safetensors
            ).requires_grad_(False)
    path = resolve_checkpoint_file(name, weights_name, hub, argument="model", what="HPSv2 checkpoint")
    state, unknown, unused = convert_open_clip_state_dict(read_state_dict(path, argument="model"))
    model = CLIPModel(load_config(config, local_folder(name), CLIPConfig, vit_h_14_config, argument="config"))
    return load_converted(model, state, source=path, what="HPSv2", unknown=unknown, unused=unused)


def resize_longest_and_pad(array: np.ndarray, size: int) -> np.ndarray:
    """HPSv2's ``ResizeMaxSize``: resize the longest side to ``size`` (PIL bicubic), zero-pad to a centred square.

    HPSv2's own transform skips the padding when no resize is needed; an image whose longest side is already
    ``size`` is padded here too, so every image comes out square.
    """
    from PIL import Image

    height, width = array.shape[:2]
    scale = size / float(max(height, width))
    if scale != 1.0:
        height, width = round(height * scale), round(width * scale)
        array = np.asarray(Image.fromarray(array).resize((width, height), Image.BICUBIC))
    out = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = (size - height) // 2, (size - width) // 2
    out[top : top + height, left : left + width] = array
    return out


class HPSv2Reward(PreferenceReward):
    """HPSv2.1 of each image against its prompt: the cosine of their normalised CLIP-H features (about 0.2-0.3).

    Loads the authors' OpenCLIP checkpoint onto transformers' ``CLIPModel`` (see the module docstring); no
    ``hpsv2`` package needed. Negative prompts are accepted and ignored.

    Args:
        model: A ``CLIPModel`` already converted, or where the checkpoint is: a ``.pt`` file, a folder holding it
            (with an optional ``config.json`` and tokenizer files beside it), or a hub id (None: ``xswu/HPSv2``).
        tokenizer: A CLIP tokenizer, or its folder or hub id. None: the checkpoint's folder when it holds tokenizer
            files, else ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` (CLIP's BPE, as OpenCLIP's ViT-H-14 uses).
        config: The ``CLIPConfig`` of a checkpoint that is not ViT-H-14 (see :func:`load_hpsv2_model`).
        weights_name: The checkpoint's file name in a folder or repository (default ``HPS_v2.1_compressed.pt``).
        revision: Hub revision of ``model`` (and of the tokenizer when it is loaded from the same place).
        cache_dir: Hub cache folder.
        token: Hub token.
        local_files_only: Load from local folders and the cache only.
        use_safetensors: For a converted ``save_pretrained`` folder: safetensors only.
        device: Where to run (default: the CPU for a loaded model; a model object stays where it is).
        batch_size: Images per forward pass.

    Raises:
        FileNotFoundError: If the checkpoint cannot be found.
        ValueError: If it does not fit the config, or the tokenizer's end token is not the model's.

    Example:
        >>> reward = HPSv2Reward(device="cuda")  # doctest: +SKIP
        >>> reward(images=pipe(prompts).images, prompts=prompts)  # doctest: +SKIP
        [0.271, 0.254]
    """

    def __init__(
        self,
        model: str | os.PathLike | torch.nn.Module | None = None,
        tokenizer: str | os.PathLike | Any | None = None,
        *,
        config: Any = None,
        weights_name: str = HPSV2_WEIGHTS_NAME,
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
        model = DEFAULT_HPSV2_MODEL if model is None else model
        if isinstance(model, torch.nn.Module):
            warn_if_training(model, "model")
            self.model = model
        else:
            self.model = load_hpsv2_model(
                model, config=config, weights_name=weights_name, use_safetensors=use_safetensors, **hub
            )
            folder = local_folder(model)
            if (
                tokenizer is None
                and folder
                and any(os.path.isfile(os.path.join(folder, f)) for f in ("tokenizer.json", "vocab.json"))
            ):
                tokenizer = folder
        if tokenizer is None:
            tokenizer, hub = DEFAULT_HPSV2_TOKENIZER, HubOptions(None, cache_dir, token, local_files_only)
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = load_pretrained(AutoTokenizer, tokenizer, argument="tokenizer", what="CLIP tokenizer", hub=hub)
        self.tokenizer = tokenizer
        eos = self.model.config.text_config.eos_token_id
        if getattr(tokenizer, "eos_token_id", None) != eos:
            raise ValueError(
                f"the tokenizer's end token id is {getattr(tokenizer, 'eos_token_id', None)} but the model pools the "
                f"text at token {eos} (text_config.eos_token_id); pass the tokenizer the model was trained with."
            )
        if device is not None:
            self.to(device)

    def _preprocess(self, arrays: list[np.ndarray]) -> torch.Tensor:
        if not arrays:
            return torch.empty(0, 3, self.image_size, self.image_size)
        square = np.stack([resize_longest_and_pad(a, self.image_size) for a in arrays])
        return normalize_openai_clip(torch.from_numpy(square).permute(0, 3, 1, 2).float() / 255.0)

    def _text_embeds(self, prompts: list[str]) -> torch.Tensor:
        limit = self.model.config.text_config.max_position_embeddings
        text = self.tokenizer(
            prompts,
            padding=True,
            truncation=True,
            max_length=min(int(self.tokenizer.model_max_length), int(limit)),
            return_tensors="pt",
        )
        features = self.model.get_text_features(
            input_ids=text["input_ids"].to(self.device), attention_mask=text["attention_mask"].to(self.device)
        )
        return unwrap_features(features).float()

    def _score(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        image = unwrap_features(self.model.get_image_features(pixel_values=pixels.to(self.device, dtype))).float()
        return torch.nn.functional.cosine_similarity(image, self._text_embeds(prompts), dim=-1)

    def differentiable_score(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """HPSv2.1 as a differentiable function of the pixels, for reward gradients (e.g. through a VAE decoder).

        The transform is redone in torch: bicubic resize of the longest side (antialiased, clamped to [0, 1]),
        zero padding, normalisation. It matches :meth:`__call__` exactly on images that need no resize; after a
        resize the two differ by the gap between torch's and PIL's bicubic filters. The model's own weights are
        frozen when negopt loaded them; one batch, one forward pass (chunk it yourself).

        Args:
            images: ``(N, 3, H, W)`` float pixels in [0, 1], on any device (moved to the model's).
            prompts: One prompt per image.

        Returns:
            ``(N,)`` float32 cosines on the model's device, with a graph back to ``images``.
        """
        images, prompts = check_pixel_tensor(images, prompts)
        size = self.image_size
        pixels = images.to(self.device, torch.float32)
        height, width = pixels.shape[-2:]
        scale = size / float(max(height, width))
        if scale != 1.0:
            height, width = round(height * scale), round(width * scale)
            pixels = torch.nn.functional.interpolate(
                pixels, size=(height, width), mode="bicubic", antialias=True, align_corners=False
            ).clamp(0.0, 1.0)
        top, left = (size - height) // 2, (size - width) // 2
        pixels = torch.nn.functional.pad(pixels, (left, size - width - left, top, size - height - top), value=0.0)
        return self._score(normalize_openai_clip(pixels), prompts)

    def __repr__(self) -> str:
        name = getattr(self.model, "name_or_path", "") or type(self.model).__name__
        return f"HPSv2Reward(model={name!r}, device={self.device})"
