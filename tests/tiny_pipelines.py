"""Tiny real diffusers pipelines, built in-process with no hub (see OFFLINE.md in the project's shared notes).

Component sizes follow diffusers' own fast pipeline tests; the tokenizers are built offline: the byte-level CLIP
tokenizer of :func:`tiny_clip.tiny_clip_tokenizer` (one token per byte, no merges, cut at 77 tokens like the real
one) and ``ByT5Tokenizer`` for the T5 text encoders. Every builder is deterministic for a given seed, returns a
pipeline on the CPU in float32 with its progress bar off, and takes a second or so. Used by the tests, the examples'
tests and the benchmarks.
"""

from __future__ import annotations

import os

import torch

from tiny_clip import tiny_clip_tokenizer

__all__ = [
    "tiny_sd",
    "tiny_sd_ln_bias",
    "tiny_sd_real_clip",
    "save_tiny_sd",
    "tiny_sd_img2img",
    "tiny_sd_inpaint",
    "tiny_sdxl",
    "tiny_sd3",
    "tiny_flux",
    "tiny_wan",
    "tiny_pixart",
    "tiny_lcm",
    "sd15_shaped",
]


def _clip_config(tokenizer, hidden_size: int = 32, projection_dim: int = 32, **overrides):
    from transformers import CLIPTextConfig

    kwargs = dict(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=hidden_size,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=1000,
        hidden_act="gelu",
        projection_dim=projection_dim,
        max_position_embeddings=77,
    )
    kwargs.update(overrides)
    return CLIPTextConfig(**kwargs)


def _t5_encoder(d_model: int = 32, seed: int = 0):
    """A 2-layer ``T5EncoderModel`` and a ``ByT5Tokenizer`` (no vocabulary file)."""
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    tokenizer = ByT5Tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=8,
        num_heads=4,
        d_ff=37,
        num_layers=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return T5EncoderModel(config).eval(), tokenizer


def _ready(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _vae(seed: int = 0, **overrides):
    """The 2-block ``AutoencoderKL`` of diffusers' SD tests: 4 latent channels, images 2x the latents' size."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=[4, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=2,
        **overrides,
    )
    return vae.eval()


def _flow_vae(seed: int = 0, latent_channels: int = 4):
    """The 1-block ``AutoencoderKL`` of diffusers' SD3 and Flux tests (no quant convs, SD3's shift and scale)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    return vae.eval()


def _sd_scheduler():
    """Stable Diffusion 1.x's DDIM schedule."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def _sd_components(seed: int = 0, in_channels: int = 4, time_cond_proj_dim: int | None = None):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=2,
        time_cond_proj_dim=time_cond_proj_dim,
    )
    scheduler = _sd_scheduler()
    vae = _vae(seed)
    tokenizer = tiny_clip_tokenizer()
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_clip_config(tokenizer)).eval()
    return {
        "unet": unet.eval(),
        "scheduler": scheduler,
        "vae": vae.eval(),
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
        "requires_safety_checker": False,
    }


def tiny_sd(seed: int = 0):
    """A tiny ``StableDiffusionPipeline`` (UNet 4/8 channels, 2-layer CLIP text encoder of width 32)."""
    from diffusers import StableDiffusionPipeline

    return _ready(StableDiffusionPipeline(**_sd_components(seed)))


def tiny_sd_ln_bias(seed: int = 0):
    """:func:`tiny_sd` whose text encoder's final LayerNorm has a random bias and scale, as a trained CLIP's has.

    A freshly initialised LayerNorm (bias 0) gives every token's features a mean of exactly 0, so the mean of the
    last hidden state is 0 up to rounding; prompt weighting's rescale-to-the-mean (A1111's "Original" emphasis) needs
    a mean that is not.
    """
    pipe = tiny_sd(seed)
    norm = getattr(pipe.text_encoder, "text_model", pipe.text_encoder).final_layer_norm
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        norm.bias.copy_(torch.randn(norm.bias.shape, generator=generator) * 0.5)
        norm.weight.copy_(1 + torch.randn(norm.weight.shape, generator=generator) * 0.1)
    return pipe


def tiny_sd_real_clip(seed: int = 0):
    """:func:`tiny_sd_ln_bias` with the real CLIP tokenizer (:func:`tiny_clip.real_clip_tokenizer`, 49,408 tokens) and
    a tiny text encoder of that vocabulary: for tokenization rules that a byte-level tokenizer cannot show (merges,
    word ends)."""
    from transformers import CLIPTextModel

    from tiny_clip import real_clip_tokenizer

    pipe = tiny_sd_ln_bias(seed)
    tokenizer = real_clip_tokenizer()
    torch.manual_seed(seed)
    pipe.tokenizer = tokenizer
    pipe.text_encoder = CLIPTextModel(_clip_config(tokenizer, vocab_size=len(tokenizer))).eval()
    norm = pipe.text_encoder.text_model.final_layer_norm if hasattr(pipe.text_encoder, "text_model") else None
    norm = norm or pipe.text_encoder.final_layer_norm
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        norm.bias.copy_(torch.randn(norm.bias.shape, generator=generator) * 0.5)
    return pipe


def save_tiny_sd(path: str | os.PathLike, seed: int = 0) -> str:
    """Save :func:`tiny_sd` to ``path`` as a diffusers folder (safetensors); returns the path."""
    tiny_sd(seed).save_pretrained(path)
    return str(path)


def tiny_sd_img2img(seed: int = 0):
    """A tiny ``StableDiffusionImg2ImgPipeline`` (same components as :func:`tiny_sd`)."""
    from diffusers import StableDiffusionImg2ImgPipeline

    return _ready(StableDiffusionImg2ImgPipeline(**_sd_components(seed)))


def tiny_sd_inpaint(seed: int = 0):
    """A tiny ``StableDiffusionInpaintPipeline`` (a 9-channel UNet, as inpainting checkpoints have)."""
    from diffusers import StableDiffusionInpaintPipeline

    return _ready(StableDiffusionInpaintPipeline(**_sd_components(seed, in_channels=9)))


def tiny_lcm(seed: int = 0):
    """A tiny ``LatentConsistencyModelPipeline``: a real pipeline whose ``__call__`` has no ``negative_prompt``."""
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler

    components = _sd_components(seed, time_cond_proj_dim=32)  # LCM embeds the guidance scale
    components["scheduler"] = LCMScheduler.from_config(components["scheduler"].config)
    return _ready(LatentConsistencyModelPipeline(**components))


def tiny_sdxl(seed: int = 0):
    """A tiny ``StableDiffusionXLPipeline``: two CLIP text encoders (the second with projection)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(2, 4),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 * addition_time_embed_dim + the pooled width (32)
        cross_attention_dim=64,  # the two encoders' hidden states side by side
        norm_num_groups=1,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    vae = _vae(seed, sample_size=128)
    tokenizer = tiny_clip_tokenizer()
    tokenizer_2 = tiny_clip_tokenizer()
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_clip_config(tokenizer)).eval()
    torch.manual_seed(seed + 1)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(tokenizer_2)).eval()
    pipe = StableDiffusionXLPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet.eval(),
        scheduler=scheduler,
        image_encoder=None,
        feature_extractor=None,
    )
    return _ready(pipe)


def tiny_sd3(seed: int = 0):
    """A tiny ``StableDiffusion3Pipeline``: two CLIP encoders with projection and a T5 encoder (``ByT5Tokenizer``)."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=1,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        pooled_projection_dim=64,
        out_channels=4,
    )
    tokenizer = tiny_clip_tokenizer()
    tokenizer_2 = tiny_clip_tokenizer()
    torch.manual_seed(seed)
    text_encoder = CLIPTextModelWithProjection(_clip_config(tokenizer)).eval()
    torch.manual_seed(seed + 1)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(tokenizer_2)).eval()
    text_encoder_3, tokenizer_3 = _t5_encoder(d_model=32, seed=seed)
    vae = _flow_vae(seed, latent_channels=4)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae.eval(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )
    return _ready(pipe)


def tiny_flux(seed: int = 0):
    """A tiny ``FluxPipeline``: a CLIP encoder (pooled) and a T5 encoder (``ByT5Tokenizer``); true CFG available."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
    )
    tokenizer = tiny_clip_tokenizer()
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_clip_config(tokenizer)).eval()
    text_encoder_2, tokenizer_2 = _t5_encoder(d_model=32, seed=seed)
    vae = _flow_vae(seed, latent_channels=1)
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae.eval(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer.eval(),
        image_encoder=None,
        feature_extractor=None,
    )
    return _ready(pipe)


def tiny_wan(seed: int = 0, two_experts: bool = False):
    """A tiny ``WanPipeline`` (Wan 2.x text-to-video; OFFLINE.md's sizes): a 2-layer T5 encoder (``ByT5Tokenizer``).

    With ``two_experts``, a second transformer for the low-noise steps (Wan 2.2's ``transformer_2``), with a boundary
    of 0.9 so that even a 2-step call (timesteps 1000 and about 875 at shift 7) runs both.
    """
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    def transformer(offset: int):
        torch.manual_seed(seed + offset)
        return WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=16,
            out_channels=16,
            text_dim=32,
            freq_dim=256,
            ffn_dim=32,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
        ).eval()

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    text_encoder, tokenizer = _t5_encoder(d_model=32, seed=seed)
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        transformer=transformer(0),
        transformer_2=transformer(1) if two_experts else None,
        boundary_ratio=0.9 if two_experts else None,
    )
    return _ready(pipe)


def tiny_pixart(seed: int = 0):
    """A tiny ``PixArtAlphaPipeline``: one T5 encoder (``ByT5Tokenizer``), the negative's only slot."""
    from diffusers import DDIMScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel

    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(
        sample_size=8,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=32,
        in_channels=4,
        cross_attention_dim=24,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    vae = _vae(seed)
    text_encoder, tokenizer = _t5_encoder(d_model=32, seed=seed)
    pipe = PixArtAlphaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae.eval(),
        transformer=transformer.eval(),
        scheduler=DDIMScheduler(),
    )
    return _ready(pipe)


def sd15_text_config(tokenizer):
    """The ``CLIPTextConfig`` of SD 1.5's text encoder (CLIP ViT-L/14 text), special-token ids from ``tokenizer``."""
    return _clip_config(
        tokenizer,
        hidden_size=768,
        projection_dim=768,
        intermediate_size=3072,
        num_attention_heads=12,
        num_hidden_layers=12,
        vocab_size=49408,
        hidden_act="quick_gelu",
    )


def sd15_shaped(seed: int = 0):
    """A ``StableDiffusionPipeline`` with Stable Diffusion 1.5's shapes and random weights (about 1 B parameters).

    UNet: block_out_channels (320, 640, 1280, 1280), 2 layers per block, cross-attention width 768, 8 heads, sample
    size 64; the VAE of SD 1.5; a CLIP text encoder of ViT-L/14's text shape (width 768, 12 layers, 12 heads, MLP
    3072). The tokenizer is the byte-level one of :func:`tiny_clip.tiny_clip_tokenizer` (its vocabulary is not
    CLIP's, but it cuts at the same 77 tokens); the embedding table still has CLIP's 49,408 rows. For timing, not for
    images.
    """
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        cross_attention_dim=768,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
    )
    tokenizer = tiny_clip_tokenizer()
    text_encoder = CLIPTextModel(sd15_text_config(tokenizer)).eval()
    scheduler = _sd_scheduler()
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    return _ready(pipe)
