"""Tiny real diffusers video pipelines (and the image families that share their parts), built in-process.

Sizes follow diffusers' own fast pipeline tests; the T5 text encoders are the 2-layer ones of
:func:`tiny_pipelines._t5_encoder` with ``ByT5Tokenizer`` (no vocabulary file), HunyuanVideo's Llama a byte-level
tokenizer from :func:`tiny_families.byte_tokenizer`. Each builder returns a pipeline on
the CPU in float32 with its progress bar off.
"""

from __future__ import annotations

import torch

from tiny_clip import tiny_clip_tokenizer
from tiny_families import _template_tokens, byte_tokenizer
from tiny_pipelines import _clip_config, _ready, _t5_encoder

__all__ = [
    "tiny_wan",
    "tiny_wan_i2v",
    "tiny_ltx",
    "tiny_hunyuan_video",
    "hunyuan_prompt_template",
    "tiny_cogvideox",
    "tiny_cosmos2_t2i",
]


def _wan_vae(seed: int = 0):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )


def _wan_transformer(seed: int = 0, in_channels: int = 16):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=in_channels,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )


def tiny_wan(seed: int = 0):
    """Wan 2.1 text-to-video: call with ``height=16, width=16, num_frames=9``."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    text_encoder, tokenizer = _t5_encoder(d_model=32, seed=seed)
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=_wan_vae(seed),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        transformer=_wan_transformer(seed),
    )
    return _ready(pipe)


def tiny_wan_i2v(seed: int = 0):
    """Wan 2.2 image-to-video (two experts, no image encoder): call with ``image`` 16x16, ``num_frames=9``."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline

    text_encoder, tokenizer = _t5_encoder(d_model=32, seed=seed)
    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=_wan_vae(seed),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        image_processor=None,
        image_encoder=None,
        transformer=_wan_transformer(seed, in_channels=36),
        transformer_2=_wan_transformer(seed + 1, in_channels=36),
        boundary_ratio=0.875,
    )
    return _ready(pipe)


def tiny_ltx(seed: int = 0):
    """LTX-Video: call with ``height=32, width=32, num_frames=9`` (sides a multiple of 32)."""
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=32,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLLTXVideo(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    text_encoder, tokenizer = _t5_encoder(d_model=32, seed=seed)
    pipe = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )
    return _ready(pipe)


class _NoSafetyChecker:
    """Stands in for Cosmos's guardrail (the ``cosmos_guardrail`` package, weights from the hub) in tests: every
    text and video passes. Not a diffusers class: Cosmos's own checker cannot run offline."""

    def check_text_safety(self, prompt: str) -> bool:
        return True

    def check_video_safety(self, frames):
        return frames

    def to(self, *args, **kwargs):
        return self

    @property
    def device(self):
        return torch.device("cpu")

    @property
    def dtype(self):
        return torch.float32


def tiny_cosmos2_t2i(seed: int = 0):
    """Cosmos Predict2 text-to-image (its long default negative included): call with ``height=32, width=32``."""
    from diffusers import Cosmos2TextToImagePipeline, CosmosTransformer3DModel, FlowMatchEulerDiscreteScheduler

    torch.manual_seed(seed)
    transformer = CosmosTransformer3DModel(
        in_channels=16,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        mlp_ratio=2,
        text_embed_dim=32,
        adaln_lora_dim=4,
        max_size=(4, 32, 32),
        patch_size=(1, 2, 2),
        rope_scale=(2.0, 1.0, 1.0),
        concat_padding_mask=False,  # True resizes the mask with torchvision, which does not import here
        extra_pos_embed_type="learnable",
    )
    text_encoder, tokenizer = _t5_encoder(d_model=32, seed=seed)
    pipe = Cosmos2TextToImagePipeline(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        vae=_wan_vae(seed),
        scheduler=FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True),
        safety_checker=_NoSafetyChecker(),
    )
    return _ready(pipe)


# ----------------------------------------------------------------------------------------------------- HunyuanVideo
def tiny_hunyuan_video(seed: int = 0):
    """HunyuanVideo: a Llama text encoder (hidden size 16) on a byte-level tokenizer and a CLIP encoder (hidden size
    8); the negative acts through ``true_cfg_scale``. Call with ``height=16, width=16, num_frames=9`` and
    ``prompt_template=hunyuan_prompt_template(pipe)``."""
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import CLIPTextModel, LlamaConfig, LlamaModel

    torch.manual_seed(seed)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=1,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(2, 4, 4),
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        act_fn="silu",
        norm_num_groups=4,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )
    tokenizer = byte_tokenizer(
        special_tokens=(
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ),
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        pad_token="<|end_of_text|>",
        model_max_length=1024,
    )
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=1024,
    )
    torch.manual_seed(seed)
    text_encoder = LlamaModel(llama).eval()
    tokenizer_2 = tiny_clip_tokenizer()
    torch.manual_seed(seed)
    text_encoder_2 = CLIPTextModel(_clip_config(tokenizer_2, hidden_size=8)).eval()
    pipe = HunyuanVideoPipeline(
        transformer=transformer.eval(),
        vae=vae.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
    )
    return _ready(pipe)


def hunyuan_prompt_template(pipe) -> dict:
    """HunyuanVideo's own prompt template, with the ``crop_start`` (95 for the real Llama tokenizer) counted for the
    tiny pipeline's byte-level one."""
    import inspect

    template = inspect.signature(type(pipe).__call__).parameters["prompt_template"].default["template"]
    return {"template": template, "crop_start": _template_tokens(pipe.tokenizer, template)}


# -------------------------------------------------------------------------------------------------------- CogVideoX
def tiny_cogvideox(seed: int = 0, max_text_seq_length: int = 300):
    """CogVideoX: one T5 encoder (``ByT5Tokenizer``); call with ``height=16, width=16, num_frames=9`` and
    ``max_sequence_length`` equal to ``max_text_seq_length`` (the transformer's text positions; 300 bytes holds a
    built-in video negative whole)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXPipeline, CogVideoXTransformer3DModel, DDIMScheduler

    torch.manual_seed(seed)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=1,
        sample_width=2,
        sample_height=2,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=max_text_seq_length,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    text_encoder, tokenizer = _t5_encoder(d_model=32, seed=seed)
    pipe = CogVideoXPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae.eval(),
        transformer=transformer.eval(),
        scheduler=DDIMScheduler(),
    )
    return _ready(pipe)
