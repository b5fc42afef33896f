"""Tiny HPSv2 and ImageReward checkpoints written in their authors' own key layouts, with no hub (shared by tests and
benchmarks).

``open_clip_state_dict`` names its tensors as OpenCLIP's ``CLIP`` does (``visual.conv1.weight``,
``visual.transformer.resblocks.N.attn.in_proj_weight``, ``text_projection``...), and ``imagereward_state_dict`` as
ImageReward's ``ImageReward`` module does (``blip.visual_encoder.blocks.N.attn.qkv.weight``,
``blip.text_encoder.encoder.layer.N.crossattention.self.key.weight``, ``mlp.layers.N``...), so loading them proves the
key mapping. Weights are random (seeded) at scales that keep activations of order 1, so scores vary between inputs.
"""

from __future__ import annotations

import os

import torch

# Tiny sizes, shared with the reference implementations in tests/test_rewards_preference.py.
HPS = dict(width=32, layers=2, heads=4, patch=8, image=32, text_width=32, text_heads=4, text_layers=2, embed=16)
IR = dict(width=32, layers=2, heads=4, patch=8, image=32, text_width=24, text_heads=4, text_layers=2, text_ffn=48)
BERT_WORDS = ["a", "photo", "of", "red", "green", "blue", "yellow", "cat", "dog", "on", "the", "mat", "painting"]
BERT_WORDS += ["portrait", "old", "fisherman", ",", "."]


class _Random:
    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def normal(self, *shape: int, std: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator) * std

    def linear(self, out_features: int, in_features: int) -> torch.Tensor:
        return self.normal(out_features, in_features, std=in_features**-0.5)

    def norm(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return 1.0 + self.normal(size, std=0.1), self.normal(size, std=0.05)


# ------------------------------------------------------------------------------------------------------- HPSv2
def _open_clip_block(r: _Random, prefix: str, width: int) -> dict[str, torch.Tensor]:
    sd = {}
    sd[f"{prefix}ln_1.weight"], sd[f"{prefix}ln_1.bias"] = r.norm(width)
    sd[f"{prefix}attn.in_proj_weight"] = r.linear(3 * width, width)
    sd[f"{prefix}attn.in_proj_bias"] = r.normal(3 * width, std=0.05)
    sd[f"{prefix}attn.out_proj.weight"] = r.linear(width, width)
    sd[f"{prefix}attn.out_proj.bias"] = r.normal(width, std=0.05)
    sd[f"{prefix}ln_2.weight"], sd[f"{prefix}ln_2.bias"] = r.norm(width)
    sd[f"{prefix}mlp.c_fc.weight"] = r.linear(4 * width, width)
    sd[f"{prefix}mlp.c_fc.bias"] = r.normal(4 * width, std=0.05)
    sd[f"{prefix}mlp.c_proj.weight"] = r.linear(width, 4 * width)
    sd[f"{prefix}mlp.c_proj.bias"] = r.normal(width, std=0.05)
    return sd


def open_clip_state_dict(vocab_size: int, seed: int = 0, context: int = 77) -> dict[str, torch.Tensor]:
    """An OpenCLIP ``CLIP`` state dict at the sizes of ``HPS``, with OpenCLIP's key names and shapes."""
    r = _Random(seed)
    w, tw, e, p = HPS["width"], HPS["text_width"], HPS["embed"], HPS["patch"]
    grid = HPS["image"] // p
    sd = {
        "visual.class_embedding": r.normal(w, std=0.5),
        "visual.positional_embedding": r.normal(grid * grid + 1, w, std=0.5),
        "visual.conv1.weight": r.normal(w, 3, p, p, std=(3 * p * p) ** -0.5),
        "visual.proj": r.normal(w, e, std=w**-0.5),
        "token_embedding.weight": r.normal(vocab_size, tw, std=0.5),
        "positional_embedding": r.normal(context, tw, std=0.2),
        "text_projection": r.normal(tw, e, std=tw**-0.5),
        "logit_scale": torch.tensor(4.6052),
        # Older OpenCLIP versions saved the text tower's causal mask as a buffer.
        "attn_mask": torch.full((context, context), float("-inf")).triu(1),
    }
    sd["visual.ln_pre.weight"], sd["visual.ln_pre.bias"] = r.norm(w)
    sd["visual.ln_post.weight"], sd["visual.ln_post.bias"] = r.norm(w)
    sd["ln_final.weight"], sd["ln_final.bias"] = r.norm(tw)
    for i in range(HPS["layers"]):
        sd.update(_open_clip_block(r, f"visual.transformer.resblocks.{i}.", w))
    for i in range(HPS["text_layers"]):
        sd.update(_open_clip_block(r, f"transformer.resblocks.{i}.", tw))
    return sd


def tiny_hpsv2_config(tokenizer):
    """The transformers ``CLIPConfig`` of ``HPS``'s sizes (exact GELU; the tokenizer's end token pools the text)."""
    from transformers import CLIPConfig

    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=HPS["text_width"],
        intermediate_size=4 * HPS["text_width"],
        num_hidden_layers=HPS["text_layers"],
        num_attention_heads=HPS["text_heads"],
        max_position_embeddings=77,
        hidden_act="gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=HPS["embed"],
    )
    vision = dict(
        image_size=HPS["image"],
        patch_size=HPS["patch"],
        hidden_size=HPS["width"],
        intermediate_size=4 * HPS["width"],
        num_hidden_layers=HPS["layers"],
        num_attention_heads=HPS["heads"],
        hidden_act="gelu",
        projection_dim=HPS["embed"],
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=HPS["embed"])


def save_tiny_hpsv2(folder: str | os.PathLike, seed: int = 0, module_prefix: bool = True) -> str:
    """A folder as a user would lay out HPSv2: ``HPS_v2.1_compressed.pt`` (``{"state_dict": ...}``, keys prefixed
    ``module.`` as DDP saves them), ``config.json`` (the tiny ``CLIPConfig``) and a byte-level CLIP tokenizer."""
    from tiny_clip import tiny_clip_tokenizer

    os.makedirs(folder, exist_ok=True)
    tokenizer = tiny_clip_tokenizer()
    state = open_clip_state_dict(len(tokenizer), seed=seed)
    if module_prefix:
        state = {f"module.{k}": v for k, v in state.items()}
    torch.save({"state_dict": state, "epoch": 1}, os.path.join(folder, "HPS_v2.1_compressed.pt"))
    tiny_hpsv2_config(tokenizer).to_json_file(os.path.join(folder, "config.json"))
    tokenizer.save_pretrained(folder)
    return str(folder)


# ------------------------------------------------------------------------------------------------- ImageReward
def tiny_bert_tokenizer(folder: str | os.PathLike):
    """A real ``BertTokenizer`` over a small word vocabulary, saved to ``folder`` (without BLIP's added tokens)."""
    from transformers import BertTokenizer

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS]) + "\n")
    tokenizer = BertTokenizer.from_pretrained(folder, model_max_length=512)
    tokenizer.save_pretrained(folder)
    return tokenizer


def imagereward_state_dict(vocab_size: int, seed: int = 0, max_positions: int = 40) -> dict[str, torch.Tensor]:
    """An ImageReward state dict at the sizes of ``IR``, with the key names and shapes of ``ImageReward.pt``."""
    r = _Random(seed)
    w, tw, p, ffn = IR["width"], IR["text_width"], IR["patch"], IR["text_ffn"]
    grid = IR["image"] // p
    v = "blip.visual_encoder."
    sd = {
        f"{v}cls_token": r.normal(1, 1, w, std=0.5),
        f"{v}pos_embed": r.normal(1, grid * grid + 1, w, std=0.5),
        f"{v}patch_embed.proj.weight": r.normal(w, 3, p, p, std=(3 * p * p) ** -0.5),
        f"{v}patch_embed.proj.bias": r.normal(w, std=0.05),
    }
    sd[f"{v}norm.weight"], sd[f"{v}norm.bias"] = r.norm(w)
    for i in range(IR["layers"]):
        b = f"{v}blocks.{i}."
        sd[f"{b}norm1.weight"], sd[f"{b}norm1.bias"] = r.norm(w)
        sd[f"{b}attn.qkv.weight"], sd[f"{b}attn.qkv.bias"] = r.linear(3 * w, w), r.normal(3 * w, std=0.05)
        sd[f"{b}attn.proj.weight"], sd[f"{b}attn.proj.bias"] = r.linear(w, w), r.normal(w, std=0.05)
        sd[f"{b}norm2.weight"], sd[f"{b}norm2.bias"] = r.norm(w)
        sd[f"{b}mlp.fc1.weight"], sd[f"{b}mlp.fc1.bias"] = r.linear(4 * w, w), r.normal(4 * w, std=0.05)
        sd[f"{b}mlp.fc2.weight"], sd[f"{b}mlp.fc2.bias"] = r.linear(w, 4 * w), r.normal(w, std=0.05)
    t = "blip.text_encoder."
    sd[f"{t}embeddings.word_embeddings.weight"] = r.normal(vocab_size, tw, std=0.5)
    sd[f"{t}embeddings.position_embeddings.weight"] = r.normal(max_positions, tw, std=0.2)
    sd[f"{t}embeddings.LayerNorm.weight"], sd[f"{t}embeddings.LayerNorm.bias"] = r.norm(tw)
    sd[f"{t}embeddings.position_ids"] = torch.arange(max_positions).expand((1, -1))  # a persistent buffer in med.py
    for i in range(IR["text_layers"]):
        layer = f"{t}encoder.layer.{i}."
        for part, kv_width in (("attention", tw), ("crossattention", w)):
            for name, fan_in in (("query", tw), ("key", kv_width), ("value", kv_width)):
                sd[f"{layer}{part}.self.{name}.weight"] = r.linear(tw, fan_in)
                sd[f"{layer}{part}.self.{name}.bias"] = r.normal(tw, std=0.05)
            sd[f"{layer}{part}.output.dense.weight"] = r.linear(tw, tw)
            sd[f"{layer}{part}.output.dense.bias"] = r.normal(tw, std=0.05)
            sd[f"{layer}{part}.output.LayerNorm.weight"], sd[f"{layer}{part}.output.LayerNorm.bias"] = r.norm(tw)
        sd[f"{layer}intermediate.dense.weight"], sd[f"{layer}intermediate.dense.bias"] = (
            r.linear(ffn, tw),
            r.normal(ffn, std=0.05),
        )
        sd[f"{layer}output.dense.weight"], sd[f"{layer}output.dense.bias"] = r.linear(tw, ffn), r.normal(tw, std=0.05)
        sd[f"{layer}output.LayerNorm.weight"], sd[f"{layer}output.LayerNorm.bias"] = r.norm(tw)
    # BLIP's contrastive projections: saved in the checkpoint, unused by the score.
    sd["blip.vision_proj.weight"], sd["blip.vision_proj.bias"] = r.linear(8, w), r.normal(8)
    sd["blip.text_proj.weight"], sd["blip.text_proj.bias"] = r.linear(8, tw), r.normal(8)
    for index, (out_features, in_features) in zip(
        (0, 2, 4, 6, 7), ((1024, tw), (128, 1024), (64, 128), (16, 64), (1, 16))
    ):
        sd[f"mlp.layers.{index}.weight"] = r.linear(out_features, in_features)
        sd[f"mlp.layers.{index}.bias"] = r.normal(out_features, std=0.1)
    return sd


def tiny_imagereward_config(vocab_size: int, max_positions: int = 40):
    """The transformers ``BlipConfig`` of ``IR``'s sizes."""
    from transformers import BlipConfig

    vision = dict(
        image_size=IR["image"],
        patch_size=IR["patch"],
        hidden_size=IR["width"],
        intermediate_size=4 * IR["width"],
        num_hidden_layers=IR["layers"],
        num_attention_heads=IR["heads"],
        layer_norm_eps=1e-6,
        hidden_act="gelu",
    )
    text = dict(
        vocab_size=vocab_size,
        hidden_size=IR["text_width"],
        intermediate_size=IR["text_ffn"],
        num_hidden_layers=IR["text_layers"],
        num_attention_heads=IR["text_heads"],
        max_position_embeddings=max_positions,
        layer_norm_eps=1e-12,
        hidden_act="gelu",
        pad_token_id=0,
    )
    return BlipConfig(vision_config=vision, text_config=text)


def save_tiny_imagereward(folder: str | os.PathLike, seed: int = 0) -> str:
    """A folder as a user would lay out ImageReward: ``ImageReward.pt`` (a plain state dict, as released),
    ``config.json`` (the tiny ``BlipConfig``) and a BERT tokenizer without BLIP's ``[DEC]`` / ``[ENC]``."""
    tokenizer = tiny_bert_tokenizer(folder)
    vocab_size = len(tokenizer) + 2  # + [DEC], [ENC]
    torch.save(imagereward_state_dict(vocab_size, seed=seed), os.path.join(folder, "ImageReward.pt"))
    tiny_imagereward_config(vocab_size).to_json_file(os.path.join(folder, "config.json"))
    return str(folder)
