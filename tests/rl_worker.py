"""Shared set-up of the RL trainer's tests, and a script the tests run in subprocesses (kill/resume, torchrun).

Not collected by pytest (no ``test_`` prefix). Run as ``python tests/rl_worker.py --output-dir DIR ...``.
"""

from __future__ import annotations

import argparse
import os
import string
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

MAX_NEW_TOKENS = 12
PROMPTS = ["a red fox in snow", "portrait of an old man", "a city at night", "a bowl of fruit"]


class LetterReward:
    """A text-only reward a tiny generator can learn: lowercase ASCII letters in the negative, per token budget.

    It ignores the images on purpose; ``last_terms`` exposes the same value and the negative's length as terms.
    """

    def __init__(self, sleep: float = 0.0, nan_every: int = 0):
        self.sleep = sleep
        self.nan_every = nan_every
        self.calls = 0
        self.last_terms: dict[str, list[float]] = {}

    def __call__(self, images, prompts, negative_prompts, **kwargs):
        assert len(images) == len(prompts) == len(negative_prompts)
        self.calls += 1
        if self.sleep:
            time.sleep(self.sleep)
        out = [sum(c in string.ascii_lowercase for c in neg) / MAX_NEW_TOKENS for neg in negative_prompts]
        if self.nan_every:
            out = [float("nan") if i % self.nan_every == 0 else v for i, v in enumerate(out)]
        self.last_terms = {"letters": list(out), "chars": [float(len(n)) for n in negative_prompts]}
        return out


def brightness_reward(images, prompts, negative_prompts, **kwargs):
    """Mean pixel brightness in [0, 1]: a reward that reads the images."""
    import numpy as np

    return [float(np.asarray(img.convert("L"), dtype=np.float32).mean() / 255.0) for img in images]


def make_generator(kind: str, folder: str, seed: int = 0):
    """A tiny generator saved to ``folder`` and loaded back (so the adapter can name its base model)."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, ByT5Tokenizer

    from negopt.config import NegOptConfig
    from tiny import tiny_gpt2, tiny_t5

    if not os.path.isfile(os.path.join(folder, "config.json")):
        if kind == "seq2seq":
            model, tok = tiny_t5(seed)
        else:  # a wide init, so that a small LoRA update moves the output distribution
            model, tok = tiny_gpt2(seed, tokenizer=ByT5Tokenizer(), n_head=2, initializer_range=0.3)
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    model = auto.from_pretrained(folder).eval()
    return types.SimpleNamespace(model=model, tokenizer=ByT5Tokenizer(), config=NegOptConfig(model_type=kind))


def make_config(output_dir: str, **overrides):
    from negopt.train import RLConfig

    kwargs = dict(
        output_dir=output_dir,
        max_steps=4,
        learning_rate=3e-3,
        num_candidates=4,
        batch_size=2,
        seed=0,
        generation_kwargs={"max_new_tokens": MAX_NEW_TOKENS},
        pipeline_kwargs={"num_inference_steps": 1, "height": 32, "width": 32},
        lora_r=4,
        lora_alpha=8,
        kl_coef=0.0,
        save_steps=0,
        sample_steps=0,
    )
    kwargs.update(overrides)
    return RLConfig(**kwargs)


def adapter_state(trainer) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(trainer._policy).items()}


def main(argv=None) -> int:
    import warnings

    from safetensors.torch import save_file

    from negopt.train import RLTrainer
    from tiny_pipelines import tiny_sd

    warnings.simplefilter("ignore")
    p = argparse.ArgumentParser()
    p.add_argument("--output-dir", required=True)
    p.add_argument("--base-dir", required=True)
    p.add_argument("--max-steps", type=int, default=4)
    p.add_argument("--save-steps", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--kind", default="seq2seq")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    trainer = RLTrainer(
        make_config(
            args.output_dir,
            max_steps=args.max_steps,
            save_steps=args.save_steps,
            batch_size=args.batch_size,
            resume=args.resume,
        ),
        generator=make_generator(args.kind, args.base_dir),
        pipeline=tiny_sd(),
        reward=LetterReward(sleep=args.sleep),
        prompts=PROMPTS,
    )
    trainer.train()
    rank = trainer.accelerator.process_index
    save_file(adapter_state(trainer), os.path.join(args.output_dir, f"adapter_rank{rank}.safetensors"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
