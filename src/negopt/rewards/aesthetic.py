"""Aesthetics: the LAION improved aesthetic predictor, an MLP over L2-normalised CLIP ViT-L/14 image embeddings.

The predictor (Schuhmann, "improved-aesthetic-predictor", the ``sac+logos+ava1-l14-linearMSE`` weights) maps the
768-d CLIP ViT-L/14 image embedding, divided by its norm, to a score of about 1 to 10. This is the aesthetics term of
NegOpt's reward and of its evaluation.

The head's weights
------------------
:class:`AestheticMLP` has the original architecture, so its state dict has the original keys: ``layers.0``,
``layers.2``, ``layers.4``, ``layers.6``, ``layers.7`` (``.weight`` and ``.bias``; the odd indices up to 5 are
dropouts). negopt loads them from a safetensors file: a ``.safetensors`` path, or a folder or hub repo holding
``model.safetensors`` (or exactly one ``.safetensors`` file; ``head_weights_name`` picks another). Keys with or
without the ``layers.`` prefix are accepted.

The original release is a pickled ``.pth``. negopt does not unpickle by default; convert it once with::

    python -c "import torch, safetensors.torch as st; st.save_file(torch.load('sac+logos+ava1-l14-linearMSE.pth', \
map_location='cpu', weights_only=True), 'model.safetensors')"

or pass ``use_safetensors=False`` to load a ``.pth`` you trust with ``torch.load(weights_only=True)``.

The default head, ``ttj/sac-logos-ava1-l14-linearMSE``, is a community port of those weights to the hub that
carries a safetensors file; it is not published by LAION. If its file name or keys do not match the above, the
loader says so and shows the conversion above.
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Any

import torch
from torch import nn

from negopt.hub import load_pretrained
from negopt.rewards._common import HubOptions, check_batch_size, check_call, resolve_device, warn_if_training
from negopt.rewards.clip import unwrap_features

__all__ = [
    "AestheticMLP",
    "AestheticReward",
    "AESTHETIC_HEAD_WEIGHTS_NAME",
    "DEFAULT_AESTHETIC_CLIP_MODEL",
    "DEFAULT_AESTHETIC_HEAD",
]

logger = logging.getLogger(__name__)

DEFAULT_AESTHETIC_CLIP_MODEL = "openai/clip-vit-large-patch14"
DEFAULT_AESTHETIC_HEAD = "ttj/sac-logos-ava1-l14-linearMSE"
AESTHETIC_HEAD_WEIGHTS_NAME = "model.safetensors"

_CONVERT = (
    'convert a .pth once with: python -c "import torch, safetensors.torch as st; st.save_file(torch.load('
    "'HEAD.pth', map_location='cpu', weights_only=True), 'model.safetensors')\", or pass use_safetensors=False "
    "to load a .pth you trust"
)
# Indices of the Linear layers inside AestheticMLP.layers (the others are dropouts, which have no weights).
_LINEAR_INDICES = (0, 2, 4, 6, 7)


class AestheticMLP(nn.Module):
    """The improved aesthetic predictor's head: ``Linear(d, 1024) - Dropout - Linear(1024, 128) - Dropout -
    Linear(128, 64) - Dropout - Linear(64, 16) - Linear(16, 1)``, with no activations (as released).

    Args:
        embed_dim: The CLIP image embedding size (768 for ViT-L/14).
    """

    def __init__(self, embed_dim: int = 768):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(embed_dim, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.layers(embeds)

    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        """Write the weights to ``save_directory/model.safetensors``; returns the file's path."""
        from safetensors.torch import save_file

        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, AESTHETIC_HEAD_WEIGHTS_NAME)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, path)
        return path

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor], source: str = "state_dict") -> AestheticMLP:
        """Build the head from a state dict with the original keys (with or without a ``layers.`` prefix).

        Raises:
            ValueError: If the keys or shapes are not those of the improved aesthetic predictor.
        """
        expected = [f"{i}.{p}" for i in _LINEAR_INDICES for p in ("weight", "bias")]
        prefixes = {k[: -len(e)] for k in state_dict for e in expected if k.endswith(e)}
        prefix = next((p for p in sorted(prefixes, key=len) if all(p + e in state_dict for e in expected)), None)
        if prefix is None or len(state_dict) != len(expected):
            raise ValueError(
                f"{source} is not an improved-aesthetic-predictor head: expected the keys "
                f"{['layers.' + e for e in expected]}, found {sorted(state_dict)[:12]}. {_CONVERT}."
            )
        weight = state_dict[prefix + "0.weight"]
        head = cls(embed_dim=int(weight.shape[1]))
        try:
            head.layers.load_state_dict({e: state_dict[prefix + e] for e in expected})
        except RuntimeError as e:
            raise ValueError(f"{source} has the right keys but wrong shapes: {e}") from e
        return head.eval()

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike,
        *,
        weights_name: str | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        use_safetensors: bool = True,
    ) -> AestheticMLP:
        """Load the head from a weights file, a folder, or a hub repo (see the module docstring for the file).

        Args:
            path_or_id: A ``.safetensors`` file, a folder, or a hub repo id.
            weights_name: The file inside the folder or repo (default ``model.safetensors``, else the only
                ``.safetensors`` file there).
            revision: Hub revision.
            cache_dir: Hub cache folder.
            token: Hub token.
            local_files_only: Use the local cache only.
            use_safetensors: Refuse pickled files (the default). With False, a ``.pth``/``.bin`` loads with
                ``torch.load(weights_only=True)``.

        Raises:
            FileNotFoundError: If there is no weights file where it points.
            ValueError: If the file is pickled and ``use_safetensors`` is True, or its keys are not the head's.
        """
        path = _resolve_head_file(
            os.fspath(path_or_id), weights_name, HubOptions(revision, cache_dir, token, local_files_only)
        )
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state_dict = load_file(path)
        elif use_safetensors:
            raise ValueError(f"the aesthetic head {path!r} is not a safetensors file; {_CONVERT}.")
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
            state_dict = state_dict.get("state_dict", state_dict)
        return cls.from_state_dict(state_dict, source=repr(path))


def _resolve_head_file(source: str, weights_name: str | None, hub: HubOptions) -> str:
    """The local path of the head's weights file, downloading it from the hub if ``source`` is a repo id."""
    if os.path.isfile(source):
        return source
    if os.path.isdir(source):
        if weights_name:
            candidate = os.path.join(source, weights_name)
            if not os.path.isfile(candidate):
                raise FileNotFoundError(f"no {weights_name!r} in the aesthetic head folder {source!r}.")
            return candidate
        if os.path.isfile(os.path.join(source, AESTHETIC_HEAD_WEIGHTS_NAME)):
            return os.path.join(source, AESTHETIC_HEAD_WEIGHTS_NAME)
        found = sorted(glob.glob(os.path.join(source, "*.safetensors")))
        if len(found) == 1:
            return found[0]
        others = sorted(os.listdir(source))
        raise FileNotFoundError(
            f"the aesthetic head folder {source!r} has {len(found)} .safetensors files (files: {others[:10]}); "
            f"name one with head_weights_name=, or {_CONVERT}."
        )
    if source.startswith((".", "/", "~", "\\")) or source.count("/") > 1 or "\\" in source:
        raise FileNotFoundError(f"the aesthetic head {source!r} is neither a file, a folder, nor a hub repo id.")
    from huggingface_hub import hf_hub_download, list_repo_files
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    name = weights_name or AESTHETIC_HEAD_WEIGHTS_NAME
    try:
        return hf_hub_download(source, name, **hub)
    except LocalEntryNotFoundError as e:
        raise FileNotFoundError(
            f"the aesthetic head {source!r} is not in the local hub cache and the hub cannot be reached "
            "(offline, or local_files_only=True); load it once online, or pass a local file or folder."
        ) from e
    except EntryNotFoundError:
        if weights_name:
            raise FileNotFoundError(f"no {name!r} in the hub repo {source!r}; {_CONVERT}.") from None
    files = list_repo_files(source, revision=hub["revision"], token=hub["token"])
    found = [f for f in files if f.endswith(".safetensors")]
    if len(found) != 1:
        raise FileNotFoundError(
            f"the hub repo {source!r} has {len(found)} .safetensors files (files: {files[:10]}); name one with "
            f"head_weights_name=, or {_CONVERT}."
        )
    return hf_hub_download(source, found[0], **hub)


def _default_image_processor(image_size: int):
    """OpenAI CLIP's preprocessing (resize the short side, centre crop, CLIP mean/std) at ``image_size``."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )


class AestheticReward:
    """LAION aesthetic score of each image: the improved aesthetic predictor on its normalised CLIP embedding.

    ``score = head(e / ||e||)`` where ``e`` is the projected CLIP image embedding (``get_image_features``). Prompts
    and negative prompts are accepted and ignored: the score looks at the image alone. Scores run about 1 to 10
    with the released weights.

    Args:
        clip_model: A ``CLIPModel`` (or ``CLIPVisionModelWithProjection``), or the folder or hub id of a
            ``CLIPModel``.
        head: The MLP head: an ``nn.Module`` mapping ``(N, d)`` embeddings to ``(N, 1)`` scores, or a
            safetensors file, folder or hub repo with :class:`AestheticMLP` weights (see the module docstring).
        image_processor: A CLIP image processor or its folder/hub id (default: the one saved with ``clip_model``;
            for a model object, OpenAI CLIP's preprocessing at the model's image size).
        head_weights_name: The head's file inside its folder or repo.
        revision: Hub revision of ``clip_model``.
        head_revision: Hub revision of ``head``.
        cache_dir: Hub cache folder.
        token: Hub token.
        local_files_only: Load from the local cache or folders only.
        use_safetensors: Load safetensors weights only (see :meth:`AestheticMLP.from_pretrained`).
        device: Where to run (default: the CPU for loaded models; objects you pass stay where they are).
        batch_size: Images per forward pass.

    Raises:
        OSError: If the CLIP model cannot be loaded.
        FileNotFoundError: If the head's weights cannot be found.
        ValueError: If the head's weights are pickled (without opt-in) or do not fit the architecture.

    Example:
        >>> reward = AestheticReward(device="cuda")  # doctest: +SKIP
        >>> reward(images=pipe(prompts).images)  # doctest: +SKIP
        [5.9, 6.3]
    """

    def __init__(
        self,
        clip_model: str | os.PathLike | nn.Module = DEFAULT_AESTHETIC_CLIP_MODEL,
        head: str | os.PathLike | nn.Module = DEFAULT_AESTHETIC_HEAD,
        *,
        image_processor: str | os.PathLike | Any | None = None,
        head_weights_name: str | None = None,
        revision: str | None = None,
        head_revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        use_safetensors: bool = True,
        device: str | torch.device | None = None,
        batch_size: int = 32,
    ):
        self.batch_size = check_batch_size(batch_size)
        hub = HubOptions(revision, cache_dir, token, local_files_only)
        if isinstance(clip_model, nn.Module):
            warn_if_training(clip_model, "clip_model")
            self.clip_model = clip_model
        else:
            from transformers import CLIPModel

            source = os.fspath(clip_model)
            self.clip_model = load_pretrained(
                CLIPModel, source, argument="clip_model", what="CLIP model", hub=hub, use_safetensors=use_safetensors
            )
            if image_processor is None:
                image_processor = source
        if image_processor is None:
            config = self.clip_model.config
            image_size = getattr(getattr(config, "vision_config", config), "image_size", 224)
            image_processor = _default_image_processor(int(image_size))
        elif isinstance(image_processor, (str, os.PathLike)):
            from transformers import AutoImageProcessor

            image_processor = load_pretrained(
                AutoImageProcessor, image_processor, argument="image_processor", what="image processor", hub=hub
            )
        self.image_processor = getattr(image_processor, "image_processor", image_processor)
        if isinstance(head, nn.Module):
            warn_if_training(head, "head")
            self.head = head
        else:
            self.head = AestheticMLP.from_pretrained(
                head,
                weights_name=head_weights_name,
                revision=head_revision,
                cache_dir=cache_dir,
                token=token,
                local_files_only=local_files_only,
                use_safetensors=use_safetensors,
            )
        if device is not None:
            self.to(device)

    @property
    def device(self) -> torch.device:
        return next(self.clip_model.parameters()).device

    def to(self, device: str | torch.device) -> AestheticReward:
        """Move the CLIP model and the head to ``device``; returns self."""
        device = resolve_device(device)
        self.clip_model.to(device)
        self.head.to(device)
        return self

    def embed(self, images) -> torch.Tensor:
        """L2-normalised CLIP image embeddings ``(N, d)``, float32 on the model's device."""
        arrays, _ = check_call(images, None, None, need_prompts=False)
        return self._embed(arrays)

    @torch.no_grad()
    def _embed(self, arrays: list) -> torch.Tensor:
        device, dtype = self.device, next(self.clip_model.parameters()).dtype
        out = []
        for start in range(0, len(arrays), self.batch_size):
            pixels = self.image_processor(images=arrays[start : start + self.batch_size], return_tensors="pt")
            pixels = pixels["pixel_values"].to(device, dtype)
            if hasattr(self.clip_model, "get_image_features"):
                embeds = unwrap_features(self.clip_model.get_image_features(pixel_values=pixels))
            else:
                embeds = self.clip_model(pixel_values=pixels).image_embeds
            out.append(torch.nn.functional.normalize(embeds.float(), dim=-1))
        return torch.cat(out) if out else torch.empty(0, 0, device=device)

    @torch.no_grad()
    def __call__(self, images=None, prompts=None, negative_prompts=None, **kwargs) -> list[float]:
        """Score each image.

        Args:
            images: A batch of images (PIL list, numpy ``(N, H, W, C)`` or torch ``(N, C, H, W)`` in [0, 1]).
            prompts: Ignored (checked for length).
            negative_prompts: Ignored (checked for length).
            **kwargs: Ignored, so every reward takes the same call.

        Returns:
            One float per image, higher is better.
        """
        arrays, _ = check_call(images, prompts, negative_prompts, need_prompts=False)
        embeds = self._embed(arrays)
        if embeds.shape[0] == 0:
            return []
        head_dtype = next(self.head.parameters()).dtype
        scores = self.head(embeds.to(next(self.head.parameters()).device, head_dtype))
        return scores.float().reshape(len(embeds), -1)[:, 0].cpu().tolist()

    def __repr__(self) -> str:
        name = getattr(self.clip_model, "name_or_path", "") or type(self.clip_model).__name__
        return f"AestheticReward(clip_model={name!r}, device={self.device})"
