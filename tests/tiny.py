"""Tiny real models, built in-process with no hub (see OFFLINE.md in the project's shared notes).

Used by the tests, the examples' tests and the benchmarks. Each builder is deterministic for a given seed.
"""

from __future__ import annotations

import os

import torch


def tiny_t5(seed: int = 0):
    """A 2+2-layer T5 with a byte-level tokenizer (no vocabulary file): ``(model, tokenizer)``."""
    from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration

    tokenizer = ByT5Tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=48,
        d_kv=16,
        num_heads=4,
        d_ff=96,
        num_layers=2,
        num_decoder_layers=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config).eval()
    return model, tokenizer


def save_tiny_t5(path: str | os.PathLike, seed: int = 0) -> str:
    """Save :func:`tiny_t5` as a transformers checkpoint folder (safetensors); returns the path."""
    model, tokenizer = tiny_t5(seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def tiny_gpt2_rl(seed: int = 0):
    """A 2-layer GPT-2 with the byte-level ByT5 tokenizer (no vocabulary file): ``(model, tokenizer)``, causal."""
    from transformers import ByT5Tokenizer, GPT2Config, GPT2LMHeadModel

    tokenizer = ByT5Tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=256,
        initializer_range=0.3,  # wider than GPT-2's 0.02, so a small LoRA update moves the output distribution
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()
    return model, tokenizer
