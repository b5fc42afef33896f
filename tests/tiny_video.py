"""Tiny real diffusers video pipelines (and the image families that share their parts), built in-process.

Sizes follow diffusers' own fast pipeline tests; the T5 text encoders are the 2-layer ones of
:func:`tiny_pipelines._t5_encoder` with ``ByT5Tokenizer`` (no vocabulary file). Each builder returns a pipeline on
the CPU in float32 with its progress bar off.
"""

from __future__ import annotations

import torch

from tiny_pipelines import _ready, _t5_encoder

__all__ = ["tiny_wan", "tiny_wan_i2v", "tiny_ltx"]


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
