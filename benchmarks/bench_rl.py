"""Where the time of one RL step goes: negative sampling, image generation, reward, update.

Runs the real ``RLTrainer`` loop (its own per-phase timers, ``trainer.last_timings``) on

* tiny models (a 2+2-layer T5, a tiny Stable Diffusion at 32x32 with 1 step, a mean-brightness reward), and
* SD-1.5-shaped models with random weights (UNet, VAE and CLIP ViT-L/14 text encoder of SD 1.5's configuration;
  a T5-small-shaped generator sampling up to 64 tokens; a random CLIP ViT-L/14 scoring prompt/image similarity as
  the reward), at a reduced resolution and one inference step so that it runs on a CPU.

The goal: everything besides image generation and reward (sampling, update, bookkeeping) under 15% of a step.
Random weights change no shapes, so the split is the one trained models would show at the same settings (a random
generator rarely stops early, so sampling runs its full 64 tokens: a worst case).

    python benchmarks/bench_rl.py --quick          # tiny models only (seconds)
    python benchmarks/bench_rl.py                  # + SD-1.5-shaped, 256x256, 1 step (a few minutes on a CPU)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

PROMPTS = [
    "a portrait photo of an old fisherman",
    "a red fox in snow",
    "a city street at night, rain",
    "a bowl of fruit",
]


def brightness_reward(images, prompts, negative_prompts, **kwargs):
    import numpy as np

    return [float(np.asarray(img.convert("L"), dtype=np.float32).mean() / 255.0) for img in images]


class RandomCLIPScore:
    """A CLIP score (cosine similarity of prompt and image embeddings, x100) from a random ViT-L/14-shaped CLIP."""

    def __init__(self, tokenizer, device):
        from transformers import CLIPConfig, CLIPModel

        text = dict(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        vision = dict(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=224,
            patch_size=14,
        )
        self.model = (
            CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=768)).eval().to(device)
        )
        self.tokenizer = tokenizer
        self.device = device
        self.mean = torch.tensor([0.4815, 0.4578, 0.4082], device=device)[:, None, None]
        self.std = torch.tensor([0.2686, 0.2613, 0.2758], device=device)[:, None, None]

    @torch.no_grad()
    def __call__(self, images, prompts, negative_prompts, **kwargs):
        import numpy as np

        pix = torch.stack([torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0) for im in images])
        pix = pix.permute(0, 3, 1, 2).to(self.device)
        pix = torch.nn.functional.interpolate(pix, size=(224, 224), mode="bicubic", align_corners=False)
        pix = (pix - self.mean) / self.std
        tok = self.tokenizer(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt").to(
            self.device
        )
        img = self.model.get_image_features(pixel_values=pix)
        txt = self.model.get_text_features(**tok)
        img = getattr(img, "pooler_output", img)  # transformers 5 returns an output object
        txt = getattr(txt, "pooler_output", txt)
        sim = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
        return (100 * sim.clamp(min=0)).tolist()


def t5_small_shaped(folder):
    """A T5-small-shaped generator with T5's 32,128-token vocabulary and a word-level tokenizer that covers it."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{f"w{i}": i for i in range(3, 32128)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(
        T5Config(
            vocab_size=32128,
            d_model=512,
            d_kv=64,
            d_ff=2048,
            num_layers=6,
            num_heads=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    model.save_pretrained(folder)
    return folder, tok


def run(name, generator, pipeline, reward, config_kwargs, steps, out_root):
    import types

    from transformers import AutoModelForSeq2SeqLM

    from negopt.config import NegOptConfig
    from negopt.train import RLConfig, RLTrainer

    folder, tok = generator
    gen = types.SimpleNamespace(
        model=AutoModelForSeq2SeqLM.from_pretrained(folder).eval(),
        tokenizer=tok,
        config=NegOptConfig(model_type="seq2seq"),
    )
    cfg = RLConfig(
        output_dir=os.path.join(out_root, name), max_steps=steps, save_steps=0, sample_steps=0, **config_kwargs
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = RLTrainer(cfg, generator=gen, pipeline=pipeline, reward=reward, prompts=PROMPTS)
        rows = []
        for _ in range(steps):
            trainer.step()
            rows.append(dict(trainer.last_timings))
    last = rows[-1]  # the first step pays one-time costs (allocations, lazy imports)
    total = last["total"]
    other = total - sum(last[k] for k in ("sample", "images", "reward", "update"))
    overhead = (last["sample"] + last["update"] + other) / total
    print(
        f"\n{name}: {config_kwargs['batch_size']} prompt(s) x {config_kwargs['num_candidates']} negatives a step, "
        f"step {steps} of {steps}; loss_type={cfg.loss_type}, kl_mode={cfg.kl_mode}, kl_coef={cfg.kl_coef} "
        "(update = reference pass + policy forward/backward)"
    )
    for key in ("sample", "images", "reward", "update"):
        print(f"  {key:<8} {last[key]:8.3f} s  {100 * last[key] / total:5.1f}%")
    print(f"  {'other':<8} {other:8.3f} s  {100 * other / total:5.1f}%")
    print(f"  {'total':<8} {total:8.3f} s")
    verdict = "meets" if overhead < 0.15 else "misses"
    print(f"  besides images and reward: {100 * overhead:.1f}% of the step ({verdict} the < 15% goal)")
    return last


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny models only")
    p.add_argument("--steps", type=int, default=2, help="RL steps per case; the last is reported")
    p.add_argument("--size", type=int, default=256, help="image size of the SD-1.5-shaped case")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import diffusers
    import transformers

    from tiny import tiny_t5
    from tiny_pipelines import sd15_shaped, tiny_sd

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), transformers {transformers.__version__}, "
        f"diffusers {diffusers.__version__}, device {device}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = tiny_t5()
        model.save_pretrained(os.path.join(tmp, "t5-tiny"))
        run(
            "tiny",
            (os.path.join(tmp, "t5-tiny"), tok),
            tiny_sd(),
            brightness_reward,
            dict(
                batch_size=2,
                num_candidates=4,
                generation_kwargs={"max_new_tokens": 32},
                lora_r=4,
                lora_alpha=8,
                pipeline_kwargs={"num_inference_steps": 1, "height": 32, "width": 32},
            ),
            args.steps,
            tmp,
        )
        if args.quick:
            return 0
        t = time.perf_counter()
        pipe = sd15_shaped().to(device)
        reward = RandomCLIPScore(pipe.tokenizer, device)
        gen = t5_small_shaped(os.path.join(tmp, "t5-small-shaped"))
        print(
            f"\n(built SD-1.5-shaped pipeline, CLIP ViT-L/14 reward, T5-small generator in "
            f"{time.perf_counter() - t:.0f} s)"
        )
        run(
            f"SD-1.5-shaped, {args.size}x{args.size}, 1 inference step, CLIP-L/14 reward, T5-small generator",
            gen,
            pipe,
            reward,
            dict(
                batch_size=1,
                num_candidates=4,
                generation_kwargs={"max_new_tokens": 64},
                pipeline_kwargs={"num_inference_steps": 1, "height": args.size, "width": args.size},
            ),
            args.steps,
            tmp,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
