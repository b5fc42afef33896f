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


def word_tokenizer(words, append_eos: bool = True):
    """A word-level fast tokenizer over ``words`` (plus ``<pad>``, ``</s>``, ``<unk>``) that appends ``</s>`` like T5.

    Text is split at whitespace and punctuation, so "blurry, cat" is three tokens. Saves and reloads with
    ``AutoTokenizer``; no vocabulary file or download needed. ``append_eos=False`` gives a GPT-2-like tokenizer that
    adds no special token (for a causal model).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in words:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    if append_eos:
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_t5_words(words, seed: int = 0, d_model: int = 32):
    """A 2+2-layer T5 over :func:`word_tokenizer` ``(words)``: ``(model, tokenizer)``; a few tokens per output."""
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = word_tokenizer(words)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_model // 4,
        num_heads=4,
        d_ff=2 * d_model,
        num_layers=2,
        num_decoder_layers=2,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(config).eval(), tokenizer


def tiny_gpt2_words(words, seed: int = 0):
    """A 2-layer GPT-2 over :func:`word_tokenizer` ``(words, append_eos=False)``: ``(model, tokenizer)``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = word_tokenizer(words, append_eos=False)
    tokenizer.bos_token = "</s>"
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=128, bos_token_id=1, eos_token_id=1
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config).eval(), tokenizer
