"""Tiny real CLIP models, tokenizers and image classifiers, built in-process with no hub (shared by the tests).

``trained_tiny_clip`` is a real ``CLIPModel`` trained for a few dozen contrastive steps on solid-colour images and
their colour words, so it "knows" that a red image matches "red": enough for a CLIP score to be tested on a known
answer.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import torch

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}


def tiny_clip_tokenizer():
    """A real byte-level ``CLIPTokenizer``: one token per byte, no merges, 514 tokens, cut at 77 like the real one.

    The vocabulary is the 256 byte symbols, the same with ``</w>``, ``<|startoftext|>`` and ``<|endoftext|>``,
    written to a temporary folder and loaded from there.
    """
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    symbols = sorted(ByteLevel.alphabet())  # GPT-2/CLIP's byte -> printable character table, in byte order
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump({t: i for i, t in enumerate(tokens)}, f)
        with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
        # Without model_max_length it is about 1e30, and a pipeline pads to that.
        return CLIPTokenizer.from_pretrained(folder, model_max_length=77)


def _bytes_to_unicode() -> list[str]:
    """CLIP's 256 byte symbols in CLIP's order (openai/CLIP ``simple_tokenizer.bytes_to_unicode``)."""
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def clip_bpe_merges_path() -> str | None:
    """The file of CLIP's BPE merges that the ``open_clip_torch`` package ships, or None when it is not installed.

    Found without importing ``open_clip`` (which needs torchvision): ``scripts/setup.sh`` installs the package with
    ``--no-deps`` for its data file only.
    """
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "bpe_simple_vocab_16e6.txt.gz")
    return path if os.path.isfile(path) else None


def real_clip_tokenizer():
    """The real CLIP tokenizer of SD 1.x and SDXL (49,408 tokens, CLIP's BPE merges), built offline.

    The vocabulary is the 256 byte symbols in CLIP's order, the same with ``</w>``, one entry per merge (the first
    48,894 merge lines after the header), then ``<|startoftext|>`` and ``<|endoftext|>`` (ids 49406 and 49407), as
    openai/CLIP's ``SimpleTokenizer`` builds it; loaded as ``CLIPTokenizer(..., model_max_length=77)``. Needs the
    merges file of ``open_clip_torch`` (see :func:`clip_bpe_merges_path`); the caller skips without it.
    """
    import gzip

    from transformers import CLIPTokenizer

    path = clip_bpe_merges_path()
    if path is None:
        raise FileNotFoundError("open_clip_torch is not installed: run scripts/setup.sh (it installs it, data only)")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1 : 49152 - 256 - 2 + 1]
    symbols = _bytes_to_unicode()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump({t: i for i, t in enumerate(tokens)}, f)
        with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
        return CLIPTokenizer.from_pretrained(folder, model_max_length=77)


def tiny_image_processor(size: int = 32):
    """CLIP preprocessing at ``size`` pixels (the PIL backend: torchvision may be missing)."""
    try:
        from transformers import CLIPImageProcessorPil as cls
    except ImportError:  # transformers 4
        from transformers import CLIPImageProcessor as cls
    return cls(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def tiny_clip(tokenizer, seed: int = 0, projection_dim: int = 16):
    """An untrained 2-layer ``CLIPModel`` for 32x32 images and the given tokenizer."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=projection_dim,
    )
    vision = CLIPVisionConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=projection_dim)
    return CLIPModel(config).eval()


def color_image(name: str, size: int = 32, noise: float = 0.0, rng: np.random.Generator | None = None):
    """A solid-colour PIL image (optionally with Gaussian noise of ``noise`` in 0-255 units)."""
    from PIL import Image

    array = np.tile(np.array(COLORS[name], dtype=np.float32), (size, size, 1))
    if noise:
        array = array + (rng or np.random.default_rng(0)).normal(0, noise, array.shape)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def trained_tiny_clip(path: str | os.PathLike, steps: int = 60, seed: int = 0):
    """A tiny ``CLIPModel`` + ``CLIPProcessor`` taught that a solid colour matches its colour word.

    Trained with CLIP's own contrastive loss (``return_loss=True``) on noisy solid-colour images against
    ``"a photo of <colour>"``; a few seconds on a CPU. The model and processor are saved to ``path``.

    Returns:
        ``(model, processor, path)``.
    """
    from transformers import CLIPProcessor

    tokenizer = tiny_clip_tokenizer()
    processor = CLIPProcessor(image_processor=tiny_image_processor(32), tokenizer=tokenizer)
    model = tiny_clip(tokenizer, seed=seed)
    names = list(COLORS)
    captions = [f"a photo of {n}" for n in names]
    text = tokenizer(captions, padding=True, return_tensors="pt")
    rng = np.random.default_rng(seed)
    # A few noisy variants of each colour, preprocessed once: the image processor is slower than a step.
    variants = [
        processor.image_processor(images=[color_image(n, noise=12.0, rng=rng) for n in names], return_tensors="pt")[
            "pixel_values"
        ]
        for _ in range(4)
    ]
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small runs ~20x faster on one thread than on a busy shared CPU's two
    try:
        for step in range(steps):
            pixels = variants[step % len(variants)]
            loss = model(**text, pixel_values=pixels, return_loss=True).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return model, processor, str(path)


class ColorClassifier(torch.nn.Module):
    """A deliberate image classifier: ``(N, 3, H, W)`` uint8 -> logits over ``(red, green, blue)``.

    Logits are ``sharpness`` times each channel's mean share, so a saturated colour gets a confident prediction of
    its channel; ``sharpness=0`` gives the uniform distribution for every image.
    """

    def __init__(self, sharpness: float = 30.0):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(float(sharpness)), requires_grad=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        means = images.float().mean(dim=(2, 3)) / 255.0
        share = means / means.sum(dim=1, keepdim=True).clamp(min=1e-6)
        return self.scale * share


def save_tiny_image_classifier(path: str | os.PathLike, num_labels: int = 5, seed: int = 0) -> str:
    """A 1-layer ``ViTForImageClassification`` for 32x32 images and its image processor, saved to ``path``."""
    from transformers import ViTConfig, ViTForImageClassification

    try:
        from transformers import ViTImageProcessorPil as processor_cls
    except ImportError:  # transformers 4
        from transformers import ViTImageProcessor as processor_cls
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=num_labels,
    )
    torch.manual_seed(seed)
    ViTForImageClassification(config).eval().save_pretrained(path)
    processor_cls(size={"height": 32, "width": 32}).save_pretrained(path)
    return str(path)
