"""HPSv2.1 and ImageReward on transformers classes, against their original maths written out here.

Each reward loads a tiny checkpoint written in its authors' key layout (tests/tiny_preference.py) and must score as
the reference computation below does from that same state dict: OpenCLIP's ViT and text transformer (with
``nn.MultiheadAttention``'s packed ``in_proj``) for HPSv2, BLIP's ViT and ``med.py``'s BERT with cross-attention for
ImageReward. The preprocessing references are HPSv2's ``ResizeMaxSize`` and torchvision's ``Resize`` + ``CenterCrop``
as those transforms compute them on PIL images.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from negopt.rewards import HPSv2Reward, ImageRewardReward, build_reward
from negopt.rewards.hpsv2 import convert_open_clip_state_dict, vit_h_14_config
from negopt.rewards.imagereward import blip_large_config, convert_imagereward_state_dict
from tiny_preference import HPS, IR, save_tiny_hpsv2, save_tiny_imagereward

pytestmark = pytest.mark.usefixtures("one_thread")

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
PROMPTS = ["a photo of red", "a cat on the mat", "portrait of an old fisherman, painting"]


def images():
    """Three sizes: wider than tall, square at the model's size (no resize), taller than wide."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((40, 48, 3), (32, 32, 3), (50, 20, 3))]


@pytest.fixture(scope="module")
def hps_dir(tmp_path_factory):
    return save_tiny_hpsv2(tmp_path_factory.mktemp("hpsv2"))


@pytest.fixture(scope="module")
def ir_dir(tmp_path_factory):
    return save_tiny_imagereward(tmp_path_factory.mktemp("imagereward"))


@pytest.fixture(scope="module")
def hps(hps_dir):
    return HPSv2Reward(hps_dir, local_files_only=True)


@pytest.fixture(scope="module")
def ir(ir_dir):
    return ImageRewardReward(ir_dir, local_files_only=True)


def _to_pixels(image: Image.Image) -> torch.Tensor:
    return (torch.from_numpy(np.asarray(image.convert("RGB"))).permute(2, 0, 1).float() / 255.0 - MEAN) / STD


def _ln(x, sd, prefix, eps):
    return F.layer_norm(x, x.shape[-1:], sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps)


def _linear(x, sd, prefix):
    return F.linear(x, sd[f"{prefix}.weight"], sd[f"{prefix}.bias"])


# ------------------------------------------------------------------------------------ HPSv2: OpenCLIP, written out
def hps_preprocess(array: np.ndarray, size: int) -> torch.Tensor:
    """HPSv2's ResizeMaxSize(size, fill=0) on a PIL image, then ToTensor and Normalize."""
    image = Image.fromarray(array)
    width, height = image.size
    scale = size / float(max(height, width))
    if scale != 1.0:
        new_h, new_w = round(height * scale), round(width * scale)
        image = image.resize((new_w, new_h), Image.BICUBIC)
        canvas = Image.new("RGB", (size, size), (0, 0, 0))
        canvas.paste(image, ((size - new_w) // 2, (size - new_h) // 2))
        image = canvas
    return _to_pixels(image)


def _open_clip_block(x, sd, prefix, heads, mask):
    """OpenCLIP's ResidualAttentionBlock: ``x + attn(ln_1(x))``, ``x + mlp(ln_2(x))``; x is (L, N, D)."""
    h = _ln(x, sd, f"{prefix}ln_1", 1e-5)
    attn, _ = F.multi_head_attention_forward(
        h, h, h, x.shape[-1], heads, sd[f"{prefix}attn.in_proj_weight"], sd[f"{prefix}attn.in_proj_bias"],
        None, None, False, 0.0, sd[f"{prefix}attn.out_proj.weight"], sd[f"{prefix}attn.out_proj.bias"],
        training=False, need_weights=False, attn_mask=mask,
    )  # fmt: skip
    x = x + attn
    h = _ln(x, sd, f"{prefix}ln_2", 1e-5)
    return x + _linear(F.gelu(_linear(h, sd, f"{prefix}mlp.c_fc")), sd, f"{prefix}mlp.c_proj")


def open_clip_hps(sd, pixels: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """HPS = cos(encode_image, encode_text) of OpenCLIP's CLIP; ``ids`` padded with 0 to the 77-token context."""
    x = F.conv2d(pixels, sd["visual.conv1.weight"], stride=HPS["patch"]).flatten(2).transpose(1, 2)
    x = torch.cat([sd["visual.class_embedding"].expand(len(x), 1, -1), x], dim=1) + sd["visual.positional_embedding"]
    x = _ln(x, sd, "visual.ln_pre", 1e-5).transpose(0, 1)
    for i in range(HPS["layers"]):
        x = _open_clip_block(x, sd, f"visual.transformer.resblocks.{i}.", HPS["heads"], None)
    image = _ln(x.transpose(0, 1)[:, 0], sd, "visual.ln_post", 1e-5) @ sd["visual.proj"]
    t = sd["token_embedding.weight"][ids] + sd["positional_embedding"]
    causal = torch.full((ids.shape[1],) * 2, float("-inf")).triu(1)
    t = t.transpose(0, 1)
    for i in range(HPS["text_layers"]):
        t = _open_clip_block(t, sd, f"transformer.resblocks.{i}.", HPS["text_heads"], causal)
    t = _ln(t.transpose(0, 1), sd, "ln_final", 1e-5)
    text = t[torch.arange(len(ids)), ids.argmax(dim=-1)] @ sd["text_projection"]  # the end token has the top id
    return (F.normalize(image, dim=-1) * F.normalize(text, dim=-1)).sum(-1)


def _hps_state(hps_dir):
    state = torch.load(os.path.join(hps_dir, "HPS_v2.1_compressed.pt"), weights_only=True)["state_dict"]
    return {k.removeprefix("module."): v for k, v in state.items()}


def test_hpsv2_scores_as_open_clip_computes_them(hps, hps_dir):
    sd = _hps_state(hps_dir)
    pixels = torch.stack([hps_preprocess(a, HPS["image"]) for a in images()])
    ids = [hps.tokenizer(p)["input_ids"] for p in PROMPTS]
    ids = torch.tensor([row + [0] * (77 - len(row)) for row in ids])  # open_clip.tokenize pads with 0 to 77
    with torch.no_grad():
        expected = open_clip_hps(sd, pixels, ids)
    scores = hps(images=images(), prompts=PROMPTS, negative_prompts=["blurry"] * 3)
    assert scores == pytest.approx(expected.tolist(), abs=1e-5)
    assert max(scores) - min(scores) > 1e-2  # the three pairs are told apart, not scored alike
    # Batched or one at a time, the same scores.
    one_by_one = [HPSv2Reward(hps.model, hps.tokenizer, batch_size=1)(images=[a], prompts=[p])[0] for a, p in
                  zip(images(), PROMPTS)]  # fmt: skip
    assert one_by_one == pytest.approx(scores, abs=1e-6)


def test_hpsv2_checkpoint_forms_and_errors(hps, hps_dir, tmp_path):
    from transformers import CLIPConfig

    # The file itself: its config.json and tokenizer are read from beside it.
    by_file = HPSv2Reward(os.path.join(hps_dir, "HPS_v2.1_compressed.pt"))
    assert by_file(images=images(), prompts=PROMPTS) == pytest.approx(hps(images=images(), prompts=PROMPTS), abs=1e-6)
    sd = _hps_state(hps_dir)
    bare = tmp_path / "bare.pt"
    torch.save(sd, bare)  # no {"state_dict": ...} wrapper, no module. prefix
    config = CLIPConfig.from_json_file(os.path.join(hps_dir, "config.json"))
    again = HPSv2Reward(str(bare), hps.tokenizer, config=config)
    assert again(images=images(), prompts=PROMPTS) == pytest.approx(hps(images=images(), prompts=PROMPTS), abs=1e-6)
    # Without a config, a file's weights are checked against ViT-H-14's and refused.
    with pytest.raises(ValueError, match="does not cover the model|does not fit the config"):
        HPSv2Reward(str(bare), hps.tokenizer)
    missing = dict(sd)
    del missing["visual.ln_post.bias"]
    torch.save({"state_dict": missing}, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"1 weights are missing.*post_layernorm\.bias"):
        HPSv2Reward(str(tmp_path / "missing.pt"), hps.tokenizer, config=config)
    torch.save({"state_dict": {**sd, "visual.extra_head.weight": torch.zeros(2)}}, tmp_path / "extra.pt")
    with pytest.warns(UserWarning, match=r"1 keys the model does not use.*visual\.extra_head\.weight"):
        HPSv2Reward(str(tmp_path / "extra.pt"), hps.tokenizer, config=config)
    with pytest.raises(FileNotFoundError, match=r"has no 'HPS_v2\.1_compressed\.pt'"):
        HPSv2Reward(str(tmp_path), hps.tokenizer)
    with pytest.raises(OSError, match="xswu/HPSv2.*cannot be reached"):  # the default hub id, offline
        HPSv2Reward(tokenizer=hps.tokenizer)
    from transformers import AutoTokenizer

    other = AutoTokenizer.from_pretrained(hps_dir)
    other.eos_token = "<|startoftext|>"
    with pytest.raises(ValueError, match="end token id is 512 but the model pools the text at token 513"):
        HPSv2Reward(hps.model, other)


def test_hpsv2_mapping_covers_every_vit_h_14_weight():
    """OpenCLIP ViT-H-14's keys and shapes, named here from OpenCLIP's layout, fill a ViT-H-14 CLIPModel exactly."""
    from transformers import CLIPModel

    width, text_width, embed = 1280, 1024, 1024
    shapes = {
        "visual.class_embedding": (width,), "visual.positional_embedding": (257, width),
        "visual.conv1.weight": (width, 3, 14, 14), "visual.proj": (width, embed), "visual.ln_pre.weight": (width,),
        "visual.ln_pre.bias": (width,), "visual.ln_post.weight": (width,), "visual.ln_post.bias": (width,),
        "token_embedding.weight": (49408, text_width), "positional_embedding": (77, text_width),
        "text_projection": (text_width, embed), "logit_scale": (), "ln_final.weight": (text_width,),
        "ln_final.bias": (text_width,),
    }  # fmt: skip
    for prefix, layers, d in (("visual.transformer", 32, width), ("transformer", 24, text_width)):
        for i in range(layers):
            block = f"{prefix}.resblocks.{i}."
            for name, shape in {
                "ln_1.weight": (d,), "ln_1.bias": (d,), "ln_2.weight": (d,), "ln_2.bias": (d,),
                "attn.in_proj_weight": (3 * d, d), "attn.in_proj_bias": (3 * d,), "attn.out_proj.weight": (d, d),
                "attn.out_proj.bias": (d,), "mlp.c_fc.weight": (4 * d, d), "mlp.c_fc.bias": (4 * d,),
                "mlp.c_proj.weight": (d, 4 * d), "mlp.c_proj.bias": (d,),
            }.items():  # fmt: skip
                shapes[block + name] = shape
    converted, unknown, unused = convert_open_clip_state_dict(
        {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    )
    assert unknown == [] and unused == []
    with torch.device("meta"):
        expected = CLIPModel(vit_h_14_config()).state_dict()
    assert sorted(converted) == sorted(expected)
    assert all(tuple(converted[k].shape) == tuple(v.shape) for k, v in expected.items())


# ------------------------------------------------------------------------ ImageReward: BLIP and med.py, written out
def ir_preprocess(array: np.ndarray, size: int) -> torch.Tensor:
    """torchvision's Resize(size, BICUBIC) + CenterCrop(size) on a PIL image, then ToTensor and Normalize."""
    image = Image.fromarray(array)
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.BICUBIC)
    left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
    return _to_pixels(image.crop((left, top, left + size, top + size)))


def blip_vit(sd, pixels):
    """BLIP's VisionTransformer.forward (timm blocks, pre-norm, eps 1e-6)."""
    v = "blip.visual_encoder."
    x = F.conv2d(pixels, sd[f"{v}patch_embed.proj.weight"], sd[f"{v}patch_embed.proj.bias"], stride=IR["patch"])
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([sd[f"{v}cls_token"].expand(len(x), -1, -1), x], dim=1)
    x = x + sd[f"{v}pos_embed"][:, : x.shape[1]]
    n, length, c = x.shape
    heads = IR["heads"]
    for i in range(IR["layers"]):
        b = f"{v}blocks.{i}."
        h = _ln(x, sd, f"{b}norm1", 1e-6)
        q, k, val = _linear(h, sd, f"{b}attn.qkv").reshape(n, length, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (c // heads) ** -0.5).softmax(dim=-1)
        x = x + _linear((attn @ val).transpose(1, 2).reshape(n, length, c), sd, f"{b}attn.proj")
        h = _ln(x, sd, f"{b}norm2", 1e-6)
        x = x + _linear(F.gelu(_linear(h, sd, f"{b}mlp.fc1")), sd, f"{b}mlp.fc2")
    return _ln(x, sd, f"{v}norm", 1e-6)


def _bert_attention(sd, prefix, hidden, context, mask, heads):
    """med.py's BertAttention: multi-head attention, then LayerNorm(dense(context) + hidden)."""

    def split(t):
        return t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)

    q = split(_linear(hidden, sd, f"{prefix}.self.query"))
    k, v = split(_linear(context, sd, f"{prefix}.self.key")), split(_linear(context, sd, f"{prefix}.self.value"))
    scores = q @ k.transpose(-1, -2) / (q.shape[-1] ** 0.5) + mask
    ctx = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(hidden.shape)
    return _ln(_linear(ctx, sd, f"{prefix}.output.dense") + hidden, sd, f"{prefix}.output.LayerNorm", 1e-12)


def image_reward_reference(sd, pixels, ids, attention_mask):
    """ImageReward.score: BLIP text encoder over the image states, [CLS] through the MLP, then standardised."""
    image_states = blip_vit(sd, pixels)
    t = "blip.text_encoder."
    h = (
        sd[f"{t}embeddings.word_embeddings.weight"][ids]
        + sd[f"{t}embeddings.position_embeddings.weight"][: ids.shape[1]]
    )
    h = _ln(h, sd, f"{t}embeddings.LayerNorm", 1e-12)
    padding = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0  # med.py's extended attention mask
    for i in range(IR["text_layers"]):
        layer = f"{t}encoder.layer.{i}."
        h = _bert_attention(sd, f"{layer}attention", h, h, padding, IR["text_heads"])
        h = _bert_attention(sd, f"{layer}crossattention", h, image_states, 0.0, IR["text_heads"])
        ffn = _linear(F.gelu(_linear(h, sd, f"{layer}intermediate.dense")), sd, f"{layer}output.dense")
        h = _ln(ffn + h, sd, f"{layer}output.LayerNorm", 1e-12)
    r = h[:, 0]
    for index in (0, 2, 4, 6, 7):  # the head's Linear layers; no activations between them
        r = _linear(r, sd, f"mlp.layers.{index}")
    return (r[:, 0] - 0.16717362830052426) / 1.0333394966054072


def blip_tokenizer(folder):
    """BLIP's init_tokenizer: BertTokenizer + bos_token [DEC] + additional special token [ENC]."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(folder)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


def test_imagereward_scores_as_blip_computes_them(ir, ir_dir):
    sd = torch.load(os.path.join(ir_dir, "ImageReward.pt"), weights_only=True)
    reference_tokenizer = blip_tokenizer(ir_dir)
    text = reference_tokenizer(PROMPTS, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    mine = ir.tokenizer(PROMPTS, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    assert torch.equal(mine["input_ids"], text["input_ids"])
    assert ir.tokenizer.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == reference_tokenizer.convert_tokens_to_ids(
        ["[DEC]", "[ENC]"]
    )
    pixels = torch.stack([ir_preprocess(a, IR["image"]) for a in images()])
    with torch.no_grad():
        expected = image_reward_reference(sd, pixels, text["input_ids"], text["attention_mask"])
    scores = ir(images=images(), prompts=PROMPTS, negative_prompts=None)
    assert scores == pytest.approx(expected.tolist(), abs=1e-5)
    assert max(scores) - min(scores) > 1e-2
    one_by_one = [ImageRewardReward(ir.model, ir.tokenizer, batch_size=1)(images=[a], prompts=[p])[0] for a, p in
                  zip(images(), PROMPTS)]  # fmt: skip
    assert one_by_one == pytest.approx(scores, abs=1e-6)


def test_imagereward_checkpoint_forms_and_errors(ir, ir_dir, tmp_path):
    by_file = ImageRewardReward(os.path.join(ir_dir, "ImageReward.pt"))  # config and tokenizer from beside it
    assert by_file(images=images(), prompts=PROMPTS) == pytest.approx(ir(images=images(), prompts=PROMPTS), abs=1e-6)
    sd = torch.load(os.path.join(ir_dir, "ImageReward.pt"), weights_only=True)
    config = os.path.join(ir_dir, "config.json")
    del sd["blip.text_encoder.encoder.layer.1.crossattention.self.key.weight"]
    torch.save(sd, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"weights are missing.*layer\.1\.crossattention\.self\.key\.weight"):
        ImageRewardReward(str(tmp_path / "missing.pt"), ir.tokenizer, config=config)
    full = torch.load(os.path.join(ir_dir, "ImageReward.pt"), weights_only=True)
    torch.save({**full, "blip.itm_head.weight": torch.zeros(2, 4)}, tmp_path / "extra.pt")
    with pytest.warns(UserWarning, match=r"1 keys the model does not use.*blip\.itm_head\.weight"):
        ImageRewardReward(str(tmp_path / "extra.pt"), ir.tokenizer, config=config)
    with pytest.raises(ValueError, match="does not cover the model|does not fit the config"):
        ImageRewardReward(str(tmp_path / "extra.pt"), ir.tokenizer)  # ViT-L + BERT-base by default
    # A pickle that names a class (as a training checkpoint with its options object does) is refused, not run.
    torch.save({"state_dict": {"a": torch.zeros(1)}, "opts": warnings.WarningMessage}, tmp_path / "code.pt")
    with pytest.raises(ValueError, match=r"cannot be read with torch\.load\(weights_only=True\)"):
        ImageRewardReward(str(tmp_path / "code.pt"), ir.tokenizer, config=config)


def test_imagereward_mapping_covers_every_vit_l_bert_base_weight():
    """ImageReward.pt's keys and shapes (ViT-L/16 at 224, BERT-base with cross-attention, the 768 head), named here
    from BLIP's layout, fill the model of blip_large_config() exactly; BLIP's projections are known to be unused."""
    from negopt.rewards import ImageRewardModel

    d, t, v, e = 1024, 768, "blip.visual_encoder.", "blip.text_encoder."
    shapes = {f"{v}cls_token": (1, 1, d), f"{v}pos_embed": (1, 197, d), f"{e}embeddings.position_ids": (1, 512)}

    def add(name, shape):  # a Linear, LayerNorm or conv: weight and bias
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = shape, shape[:1]

    add(f"{v}patch_embed.proj", (d, 3, 16, 16))
    add(f"{v}norm", (d,))
    for i in range(24):
        for name, shape in {"norm1": (d,), "norm2": (d,), "attn.qkv": (3 * d, d), "attn.proj": (d, d),
                            "mlp.fc1": (4 * d, d), "mlp.fc2": (d, 4 * d)}.items():  # fmt: skip
            add(f"{v}blocks.{i}.{name}", shape)
    shapes[f"{e}embeddings.word_embeddings.weight"] = (30524, t)
    shapes[f"{e}embeddings.position_embeddings.weight"] = (512, t)
    add(f"{e}embeddings.LayerNorm", (t,))
    for i in range(12):
        layer = f"{e}encoder.layer.{i}."
        for part, kv in (("attention", t), ("crossattention", d)):
            for name, fan_in in (("query", t), ("key", kv), ("value", kv)):
                add(f"{layer}{part}.self.{name}", (t, fan_in))
            add(f"{layer}{part}.output.dense", (t, t))
            add(f"{layer}{part}.output.LayerNorm", (t,))
        add(f"{layer}intermediate.dense", (3072, t))
        add(f"{layer}output.dense", (t, 3072))
        add(f"{layer}output.LayerNorm", (t,))
    add("blip.vision_proj", (256, d))
    add("blip.text_proj", (256, t))
    for index, shape in zip((0, 2, 4, 6, 7), ((1024, t), (128, 1024), (64, 128), (16, 64), (1, 16))):
        add(f"mlp.layers.{index}", shape)
    converted, unknown, unused = convert_imagereward_state_dict(
        {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    )
    assert unknown == []
    assert sorted(unused) == sorted(
        ["blip.vision_proj.weight", "blip.vision_proj.bias", "blip.text_proj.weight", "blip.text_proj.bias",
         f"{e}embeddings.position_ids"]
    )  # fmt: skip
    with torch.device("meta"):
        expected = ImageRewardModel(blip_large_config()).state_dict()
    assert sorted(converted) == sorted(expected)
    assert all(tuple(converted[k].shape) == tuple(v.shape) for k, v in expected.items())


# ---------------------------------------------------------------------------------------- the differentiable path
@pytest.mark.parametrize("which", ["hps", "ir"])
def test_differentiable_score_reaches_the_pixels(which, hps, ir):
    reward = hps if which == "hps" else ir
    rng = np.random.default_rng(3)
    # Values on the 8-bit grid, so the uint8 path of __call__ sees the very same image.
    native = torch.from_numpy(rng.integers(0, 256, (2, 3, 32, 32)).astype(np.float32) / 255.0).requires_grad_(True)
    scores = reward.differentiable_score(native, PROMPTS[:2])
    assert scores.shape == (2,) and scores.requires_grad
    assert scores.tolist() == pytest.approx(reward(images=native.detach(), prompts=PROMPTS[:2]), abs=1e-5)
    scores.sum().backward()
    assert torch.isfinite(native.grad).all() and native.grad.abs().sum() > 0
    # A size that needs resizing: gradients still reach every input pixel the transform keeps.
    resized = torch.from_numpy(rng.integers(0, 256, (1, 3, 40, 48)).astype(np.float32) / 255.0).requires_grad_(True)
    score = reward.differentiable_score(resized, PROMPTS[:1])
    score.sum().backward()
    assert torch.isfinite(resized.grad).all() and (resized.grad != 0).float().mean() > 0.5
    # torch's antialiased bicubic is not PIL's, so the two paths differ a little after a resize (measured: under
    # 1e-3 for HPSv2, under 1e-2 for ImageReward on these tiny models).
    assert score.item() == pytest.approx(reward(images=resized.detach(), prompts=PROMPTS[:1])[0], abs=0.02)
    assert not any(p.requires_grad for p in reward.model.parameters())  # frozen: no gradients spent on weights
    with pytest.raises(ValueError, match="got 1 images but 2 prompts"):
        reward.differentiable_score(resized.detach(), PROMPTS[:2])
    with pytest.raises(TypeError, match="float tensor"):
        reward.differentiable_score(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), PROMPTS[:1])


# ------------------------------------------------------------------------- registry, composite, RL and evaluation
def test_named_rewards_and_their_normalisation(hps_dir, ir_dir, hps, ir):
    reward = build_reward(
        ["hpsv2=1.0", "imagereward=0.5"],
        models={"hpsv2": hps_dir, "imagereward": ir_dir},
        normalize=True,
        local_files_only=True,
    )
    totals, terms = reward.score(images=images(), prompts=PROMPTS, return_terms=True)
    assert terms["hpsv2"] == pytest.approx(hps(images=images(), prompts=PROMPTS), abs=1e-6)
    assert terms["imagereward"] == pytest.approx(ir(images=images(), prompts=PROMPTS), abs=1e-6)

    def standardised(values):
        values = np.asarray(values)
        return (values - values.mean()) / (values.std() + 1e-6)

    expected = standardised(terms["hpsv2"]) + 0.5 * standardised(terms["imagereward"])
    assert totals == pytest.approx(expected.tolist(), abs=1e-5)


def test_reward_flags_of_negopt_train_rl(hps_dir, ir_dir):
    from negopt.cli.args import collect_settings
    from negopt.cli.main import build_parser
    from negopt.cli.train import parse_reward_models, rl_specs

    args = build_parser().parse_args(
        ["train", "rl", "--reward", "hpsv2=1.0", "--reward", "imagereward=0.5", "--reward-model", f"hpsv2={hps_dir}",
         "--reward-model", f"imagereward={ir_dir}"]
    )  # fmt: skip
    run, _ = collect_settings(args, rl_specs())
    models = parse_reward_models(run["reward_models"])
    assert models == {"hpsv2": {"model": hps_dir}, "imagereward": {"model": ir_dir}}
    reward = build_reward(run["reward"], models=models)  # offline: a reward reaching for the hub would fail
    assert list(reward.weights.items()) == [("hpsv2", 1.0), ("imagereward", 0.5)]
    assert len(reward(images=images(), prompts=PROMPTS, negative_prompts=["x"] * 3)) == 3


def test_rl_trains_against_both_rewards(tmp_path, hps_dir, ir_dir):
    """One RL step with HPSv2 + ImageReward: the reward is moved to the trainer's device and both terms are logged."""
    from negopt.train import RLTrainer
    from rl_worker import PROMPTS as RL_PROMPTS
    from rl_worker import make_config, make_generator
    from tiny_pipelines import tiny_sd

    reward = build_reward({"hpsv2": 1.0, "imagereward": 1.0}, models={"hpsv2": hps_dir, "imagereward": ir_dir},
                          normalize=True)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        trainer = RLTrainer(
            make_config(str(tmp_path / "out"), max_steps=1),
            generator=make_generator("seq2seq", str(tmp_path / "t5")),
            pipeline=tiny_sd(),
            reward=reward,
            prompts=RL_PROMPTS,
        )
    assert reward.rewards["hpsv2"].device == reward.rewards["imagereward"].device == trainer.accelerator.device
    trainer.train()
    logged = trainer.log_history[-1]
    assert np.isfinite(logged["reward/hpsv2"]) and np.isfinite(logged["reward/imagereward"])
    assert reward.stats["hpsv2"].count == reward.stats["imagereward"].count > 0


def test_negopt_eval_reports_both(tmp_path, hps_dir, ir_dir, capsys):
    from negopt.cli import main
    from negopt.eval import default_metrics
    from tiny_pipelines import save_tiny_sd

    metrics = default_metrics(["hpsv2", "imagereward"], hpsv2_model=hps_dir, imagereward_model=ir_dir)
    assert isinstance(metrics["hpsv2"], HPSv2Reward) and isinstance(metrics["imagereward"], ImageRewardReward)
    pipeline_dir = save_tiny_sd(tmp_path / "sd")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of red\na cat on the mat\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = ["eval", "--pipeline", pipeline_dir, "--prompts", str(prompts), "--output-dir", str(out), "--no-builtin",
            "--steps", "2", "--metric", "hpsv2", "--metric", "imagereward", "--hpsv2-model", hps_dir,
            "--imagereward-model", ir_dir, "--local-files-only", "--bootstrap", "10"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert set(report["conditions"]["none"]) == {"hpsv2", "imagereward"}
    assert "| condition | hpsv2 | imagereward |" in printed
    # The report's per-image scores are the rewards' scores of the images it saved.
    per_prompt = report["per_prompt"]["none"]
    rendered = [Image.open(out / path) for path in per_prompt["images"]]
    assert per_prompt["hpsv2"] == pytest.approx(metrics["hpsv2"](images=rendered, prompts=report["prompts"]), abs=1e-5)
    scores = metrics["imagereward"](images=rendered, prompts=report["prompts"])
    assert per_prompt["imagereward"] == pytest.approx(scores, abs=1e-5)
