"""Tiny real models, built in-process with no hub (see OFFLINE.md in the project's shared notes).

Used by the tests, the examples' tests and the benchmarks. Each builder is deterministic for a given seed.
"""

from __future__ import annotations

import os

import torch


def tiny_t5(
    seed: int = 0, *, tokenizer=None, d_model: int = 48, d_kv: int = 16, d_ff: int = 96, tie_word_embeddings=True
):
    """A 2+2-layer T5: ``(model, tokenizer)``.

    The tokenizer defaults to the byte-level ``ByT5Tokenizer`` (no vocabulary file); the model's pad, eos and
    decoder-start ids are taken from whichever tokenizer it gets. With tied embeddings (T5's default) a random T5
    tends to repeat its input token, its start (pad) token included; ``tie_word_embeddings=False`` rarely writes it.
    """
    from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration

    tokenizer = tokenizer if tokenizer is not None else ByT5Tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_kv,
        num_heads=4,
        d_ff=d_ff,
        num_layers=2,
        num_decoder_layers=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tie_word_embeddings,
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


_GPT2_CORPUS = [
    "Prompt: a portrait photo of an old fisherman, detailed, 8k\nNegative prompt: blurry, lowres, bad hands",
    "Prompt: a cat sitting on a windowsill at sunset\nNegative prompt: watermark, text, deformed, ugly",
    "Prompt: a futuristic city at night, neon lights, cinematic\nNegative prompt: (worst quality:1.4), jpeg artifacts",
    "Prompt: a bowl of fruit, still life, oil painting\nNegative prompt: cropped, out of frame, extra fingers",
]


def tiny_gpt2_tokenizer():
    """A byte-level BPE tokenizer (vocabulary ~400) trained in-process; ``<|endoftext|>`` is bos, eos and pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_GPT2_CORPUS * 4, trainer)
    eos = "<|endoftext|>"
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=eos, eos_token=eos, pad_token=eos, unk_token=eos
    )


def tiny_gpt2(
    seed: int = 0, *, tokenizer=None, n_head: int = 4, n_positions: int = 256, initializer_range: float = 0.02
):
    """A 2-layer GPT-2 (n_embd 32): ``(model, tokenizer)``; the tokenizer defaults to :func:`tiny_gpt2_tokenizer`.

    The model's eos (also its bos, as in GPT-2) and pad ids are taken from the tokenizer. The RL tests pass the
    byte-level ``ByT5Tokenizer`` and ``initializer_range=0.3``: wider than GPT-2's 0.02, so that a small LoRA update
    moves the output distribution and a reward rises within a few steps.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = tokenizer if tokenizer is not None else tiny_gpt2_tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=32,
        n_layer=2,
        n_head=n_head,
        initializer_range=initializer_range,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()
    return model, tokenizer


def save_tiny_gpt2(path: str | os.PathLike, seed: int = 0) -> str:
    """Save :func:`tiny_gpt2` as a transformers checkpoint folder (safetensors); returns the path."""
    model, tokenizer = tiny_gpt2(seed)
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


def tiny_t5_words(words, seed: int = 0):
    """A 2+2-layer T5 (d_model 32) over :func:`word_tokenizer` ``(words)``: ``(model, tokenizer)``."""
    return tiny_t5(seed, tokenizer=word_tokenizer(words), d_model=32, d_kv=8, d_ff=64)


def tiny_gpt2_words(words, seed: int = 0):
    """A 2-layer GPT-2 over :func:`word_tokenizer` ``(words, append_eos=False)``: ``(model, tokenizer)``."""
    tokenizer = word_tokenizer(words, append_eos=False)
    tokenizer.bos_token = "</s>"
    return tiny_gpt2(seed, tokenizer=tokenizer, n_positions=128)


# Eight prompts of varied length and style, for the generator's tests.
PROMPTS = [
    "a cat",
    "a portrait photo of an old fisherman, detailed wrinkles, 85mm, dramatic lighting",
    "city at night",
    "a bowl of fruit on a wooden table, oil painting, still life",
    "(masterpiece:1.2), 1girl, solo, cherry blossoms",
    "a dog",
    "an astronaut riding a horse on mars, cinematic, 4k, highly detailed, trending on artstation",
    "mountain lake at dawn",
]


class ForwardCounter:
    """Counts forward passes of a real model (a forward hook): tells a cache hit, or another engine's answer, from a
    run of this model."""

    def __init__(self, model):
        self.n = 0
        self.handle = model.register_forward_hook(self)

    def __call__(self, module, args, output):
        self.n += 1
