"""Tiny real diffusers pipelines of the newest image families, built in-process (the video ones: tiny_video.py).

Sizes follow diffusers' own fast pipeline tests. Their tokenizers come from the hub there; here each is built
offline: T5 encoders take ``ByT5Tokenizer`` (no vocabulary file), CLIP encoders the byte-level
:func:`tiny_clip.tiny_clip_tokenizer`, and the chat-model encoders (Qwen2.5-VL, Llama, Gemma 2, Qwen3, Mistral 3) a
byte-level BPE from :func:`byte_tokenizer`: the 256 byte symbols and the special tokens the pipeline's template uses,
wrapped in the transformers class the pipeline expects. A byte-level tokenizer cuts a prompt template into more tokens
than the real one, so a pipeline that drops the template's tokens by a fixed count (Qwen-Image's
``prompt_template_encode_start_idx``; HunyuanVideo's ``crop_start`` in tiny_video.py) is given the count for this
tokenizer.

Every builder is deterministic for a given seed and returns a pipeline on the CPU in float32 with its progress bar
off.
"""

from __future__ import annotations

import torch

from tiny_clip import tiny_clip_tokenizer
from tiny_pipelines import _clip_config, _flow_vae, _ready, _t5_encoder

__all__ = [
    "byte_tokenizer",
    "tiny_qwen_image",
    "tiny_chroma",
    "tiny_hidream",
    "tiny_sd35",
    "tiny_sana",
    "tiny_flux2",
    "tiny_flux2_klein",
]


def byte_tokenizer(cls=None, special_tokens: tuple[str, ...] = (), **kwargs):
    """A byte-level BPE tokenizer with no merges (one token per byte), built with the ``tokenizers`` library.

    Args:
        cls: The transformers fast-tokenizer class to wrap it in (``Qwen2TokenizerFast``, ``GemmaTokenizerFast``, ...);
            ``PreTrainedTokenizerFast`` when None.
        special_tokens: Tokens kept whole (a template's ``<|im_start|>``, the pad and end tokens), numbered from 256
            in this order.
        **kwargs: For ``cls`` (``bos_token``, ``eos_token``, ``pad_token``, ``model_max_length``, ...).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())  # the byte -> printable character table, in byte order
    tokenizer = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(symbols)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(list(special_tokens))
    return (cls or PreTrainedTokenizerFast)(tokenizer_object=tokenizer, **kwargs)


def _template_tokens(tokenizer, template: str) -> int:
    """How many tokens of ``template`` come before its ``{}``: what the pipeline drops from the encoder's output."""
    return len(tokenizer(template.split("{}")[0], add_special_tokens=False).input_ids)


# ------------------------------------------------------------------------------------------------------- Qwen-Image
def tiny_qwen_image(seed: int = 0):
    """Qwen-Image: a Qwen2.5-VL text encoder (hidden size 16, 2 layers) on a byte-level ``Qwen2TokenizerFast``; call
    with ``height=32, width=32``.

    Qwen-Image drops the first ``prompt_template_encode_start_idx`` tokens of its template (34 with the real
    tokenizer, the system turn); here that is the count of the same text in bytes.
    """
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2TokenizerFast

    specials = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>")
    tokenizer = byte_tokenizer(Qwen2TokenizerFast, specials, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    vision_start, vision_end, image_pad = tokenizer.convert_tokens_to_ids(list(specials[3:]))
    text = {
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
        "rope_theta": 1000000.0,
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    vision = {"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16}
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        hidden_size=16,
        vocab_size=len(tokenizer),
        vision_start_token_id=vision_start,
        vision_end_token_id=vision_end,
        vision_token_id=image_pad,
        image_token_id=image_pad,
        video_token_id=image_pad,
    )
    torch.manual_seed(seed)
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLQwenImage(
        base_dim=24,
        z_dim=4,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    pipe = QwenImagePipeline(
        transformer=transformer.eval(),
        vae=vae.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    )
    pipe.prompt_template_encode_start_idx = _template_tokens(tokenizer, pipe.prompt_template_encode)
    return _ready(pipe)


# ----------------------------------------------------------------------------------------------------------- Chroma
def tiny_chroma(seed: int = 0):
    """Chroma: one T5 encoder (``ByT5Tokenizer``), CFG through ``guidance_scale``; call with ``height=8, width=8``."""
    from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    torch.manual_seed(seed)
    transformer = ChromaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        axes_dims_rope=[4, 4, 8],
        approximator_hidden_dim=32,
        approximator_layers=1,
        approximator_num_channels=16,
    )
    text_encoder, tokenizer = _t5_encoder(d_model=32, seed=seed)
    pipe = ChromaPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer.eval(),
        vae=_flow_vae(seed, latent_channels=1),
        image_encoder=None,
        feature_extractor=None,
    )
    return _ready(pipe)


# ---------------------------------------------------------------------------------------------------------- HiDream
def tiny_hidream(seed: int = 0):
    """HiDream-I1: two CLIP encoders with projection, a T5 encoder and a Llama (``tokenizer_4``, a byte-level BPE),
    one negative slot each. It renders at the area of ``default_sample_size`` whatever the call asks, set here to
    16x16; the CLIPs take 128 positions, ``max_sequence_length`` at most."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HiDreamImagePipeline, HiDreamImageTransformer2DModel
    from transformers import CLIPTextModelWithProjection, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    transformer = HiDreamImageTransformer2DModel(
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_channels=[32, 16],
        text_emb_dim=64,
        num_routed_experts=4,
        num_activated_experts=2,
        axes_dims_rope=(4, 2, 2),
        max_resolution=(32, 32),
        llama_layers=(0, 1),
    )
    tokenizer, tokenizer_2 = tiny_clip_tokenizer(), tiny_clip_tokenizer()
    clip = dict(max_position_embeddings=128)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModelWithProjection(_clip_config(tokenizer, **clip)).eval()
    torch.manual_seed(seed + 1)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(tokenizer_2, **clip)).eval()
    text_encoder_3, tokenizer_3 = _t5_encoder(d_model=32, seed=seed)
    tokenizer_4 = byte_tokenizer(
        special_tokens=("<|begin_of_text|>", "<|end_of_text|>"),
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        model_max_length=512,
    )
    llama = LlamaConfig(
        vocab_size=len(tokenizer_4),
        hidden_size=16,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        bos_token_id=tokenizer_4.bos_token_id,
        eos_token_id=tokenizer_4.eos_token_id,
        pad_token_id=tokenizer_4.eos_token_id,
        attn_implementation="eager",  # HiDream asks for output_attentions, which sdpa does not give
    )
    torch.manual_seed(seed)
    text_encoder_4 = LlamaForCausalLM(llama).eval()
    pipe = HiDreamImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_flow_vae(seed, latent_channels=4),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
        text_encoder_4=text_encoder_4,
        tokenizer_4=tokenizer_4,
        transformer=transformer.eval(),
    )
    # HiDream scales every call to the area of default_sample_size (128 latent pixels a side): 16 keeps it tiny.
    pipe.default_sample_size = 16
    return _ready(pipe)


# ------------------------------------------------------------------------------------------------------------ SD3.5
def tiny_sd35(seed: int = 0):
    """SD3.5 (the ``StableDiffusion3Pipeline`` class): the SD3 build with SD3.5's transformer, whose config differs
    from SD3's in RMS query/key norms and dual attention (MMDiT-X) in its first layer; call with
    ``height=32, width=32``."""
    from diffusers import SD3Transformer2DModel

    from tiny_pipelines import tiny_sd3

    pipe = tiny_sd3(seed)
    torch.manual_seed(seed)
    pipe.transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=1,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        pooled_projection_dim=64,
        out_channels=4,
        qk_norm="rms_norm",
        dual_attention_layers=(0,),
    ).eval()
    return pipe


# ------------------------------------------------------------------------------------------------------------- Sana
def tiny_sana(seed: int = 0):
    """Sana: a Gemma 2 text encoder (hidden size 8, 1 layer) on a byte-level ``GemmaTokenizerFast``; call with
    ``height=32, width=32, use_resolution_binning=False`` (binning renders at 1024x1024 and resizes)."""
    from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model, GemmaTokenizerFast

    tokenizer = byte_tokenizer(
        GemmaTokenizerFast,
        ("<pad>", "<eos>", "<bos>", "<unk>"),
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        model_max_length=2048,
    )
    config = Gemma2Config(
        head_dim=16,
        hidden_size=8,
        intermediate_size=64,
        max_position_embeddings=8192,
        num_attention_heads=2,
        num_hidden_layers=1,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    text_encoder = Gemma2Model(config).eval()
    torch.manual_seed(seed)
    transformer = SanaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_attention_heads=2,
        attention_head_dim=4,
        num_cross_attention_heads=2,
        cross_attention_head_dim=4,
        cross_attention_dim=8,
        caption_channels=8,
        sample_size=32,
    )
    torch.manual_seed(seed)
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        encoder_qkv_multiscales=((), (5,)),
        decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=[1, 1],
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )
    pipe = SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae.eval(),
        transformer=transformer.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
    )
    return _ready(pipe)


# ----------------------------------------------------------------------------------------------- Flux.2 and Klein
def _flux2_parts(seed: int, joint_attention_dim: int, guidance_embeds: bool):
    from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel

    torch.manual_seed(seed)
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=joint_attention_dim,
        timestep_guidance_channels=256,
        axes_dims_rope=[4, 4, 4, 4],
        guidance_embeds=guidance_embeds,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLFlux2(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=1,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    return transformer.eval(), vae.eval()


_QWEN3_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


_MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}[SYSTEM_PROMPT]"
    "{% for c in m['content'] %}{{ c['text'] }}{% endfor %}[/SYSTEM_PROMPT]{% else %}[INST]"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% else %}[IMG]{% endif %}{% endfor %}"
    "[/INST]{% endif %}{% endfor %}"
)


def tiny_flux2(seed: int = 0):
    """Flux.2 (dev): a Mistral 3 text encoder (hidden size 16, 1 layer); no negative prompt at all. Call with
    ``height=8, width=8, max_sequence_length=...`` and ``text_encoder_out_layers=(1,)``.

    The real pipeline's ``tokenizer`` is a ``PixtralProcessor``, which needs torchvision (it does not import beside
    the CPU torch here); the pipeline only calls its ``apply_chat_template`` for text, so the byte-level tokenizer,
    given a Mistral-style chat template, stands in for it.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2Pipeline
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    specials = ("<unk>", "<s>", "</s>", "<pad>", "[IMG]", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]")
    tokenizer = byte_tokenizer(
        special_tokens=specials, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tokenizer.chat_template = _MISTRAL_CHAT_TEMPLATE
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    ids["pad_token_id"] = tokenizer.pad_token_id
    text = dict(
        model_type="mistral",
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=37,
        max_position_embeddings=512,
        num_attention_heads=4,
        num_hidden_layers=1,
        num_key_value_heads=2,
        rope_theta=1e9,
        sliding_window=None,
        **ids,
    )
    vision = dict(
        model_type="pixtral",
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=30,
        patch_size=6,
        num_channels=3,
    )
    config = Mistral3Config(
        text_config=text,
        vision_config=vision,
        image_seq_length=4,
        vision_feature_layer=-1,
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        **ids,
    )
    torch.manual_seed(seed)
    text_encoder = Mistral3ForConditionalGeneration(config).eval()
    transformer, vae = _flux2_parts(seed, joint_attention_dim=16, guidance_embeds=True)
    pipe = Flux2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )
    return _ready(pipe)


def tiny_flux2_klein(seed: int = 0, is_distilled: bool = False):
    """Flux.2 Klein: a Qwen3 text encoder (hidden size 16, 2 layers) on a byte-level ``Qwen2TokenizerFast`` with a
    Qwen3-style chat template; a base model by default (CFG through ``guidance_scale`` and
    ``negative_prompt_embeds``), ``is_distilled=True`` for a distilled one. Call with ``height=8, width=8,
    max_sequence_length=...`` and ``text_encoder_out_layers=(1,)``."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline
    from transformers import Qwen2TokenizerFast, Qwen3Config, Qwen3ForCausalLM

    tokenizer = byte_tokenizer(
        Qwen2TokenizerFast,
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = _QWEN3_CHAT_TEMPLATE
    config = Qwen3Config(
        intermediate_size=16,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    text_encoder = Qwen3ForCausalLM(config).eval()
    transformer, vae = _flux2_parts(seed, joint_attention_dim=16, guidance_embeds=False)
    pipe = Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        vae=vae,
        is_distilled=is_distilled,
    )
    return _ready(pipe)
