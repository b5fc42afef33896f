"""Training throughput of negopt's SFT against the recipe a user would copy from the transformers docs.

Both train the same t5-small-shaped model (random weights: d_model 512, 6+6 layers, 8 heads, d_ff 2048, vocab 32128;
a word-level tokenizer built offline) with the same LoRA (r=16 on every linear layer), batch size, learning rate and
data: synthetic prompt / negative pairs whose lengths vary as Negative Prompts DB's do (a few words to well over a
hundred).

- ``negopt``: ``SFTTrainer`` (what ``negopt train sft`` runs): dynamic padding and length-grouped batches.
- ``baseline``: the recipe of the transformers summarization / translation docs, which a competent user copies:
  ``tokenizer(..., truncation=True)`` to the same 256 / 128 token limits with no padding, ``DataCollatorForSeq2Seq``
  padding each batch to its longest row (labels with -100), ``Seq2SeqTrainer`` with peft ``get_peft_model``, random
  batches. This is the baseline the ratio is taken against.
- ``maxlen``: the same recipe, but padded to the maximum length in preprocessing (``padding="max_length"``): what a
  user who pads everything gets. A second, labelled row, not the baseline.

Each variant runs in its own subprocess and trains for exactly one epoch over the same rows, so both see the same
lengths (length grouping reorders the batches, and puts the longest first). Throughput is training samples per second
from the start of the first step to the end of the last (start-up and data preparation left out), and memory is the
peak resident set size of that process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``): everything the process held at
its peak -- Python, torch, the model, activations -- not the training alone, so the difference between the two is
what padding costs.

    python benchmarks/bench_sft.py [--quick] [--steps 16] [--repeats 1] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BATCH = 8
MAX_SOURCE, MAX_TARGET = 256, 128
LABELS = {
    "baseline": "baseline: docs recipe, dynamic padding",
    "negopt": "negopt SFTTrainer",
    "maxlen": "docs recipe padded to max length (2nd row)",
}
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}


def _vocab(n: int = 3000) -> list[str]:
    rng = random.Random(1)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(n)}
    return sorted(words)


def _length(rng: random.Random, median: float, cap: int) -> int:
    # Log-normal: most prompts short, a long tail of tag lists (as in Negative Prompts DB).
    return max(2, min(cap, int(rng.lognormvariate(0, 0.7) * median)))


def make_data(path: str, rows: int) -> None:
    rng = random.Random(0)
    vocab = _vocab()
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            prompt = " ".join(rng.choice(vocab) for _ in range(_length(rng, 28, 120)))
            negative = ", ".join(rng.choice(vocab) for _ in range(_length(rng, 16, 60)))
            f.write(json.dumps({"prompt": f"{i} {prompt}", "negative_prompt": negative}) + "\n")


def make_model(path: str) -> None:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from tiny import word_tokenizer

    tokenizer = word_tokenizer([*_vocab(), ",", *map(str, range(10))])
    config = T5Config(
        vocab_size=32128,
        d_model=512,
        d_kv=64,
        num_heads=8,
        d_ff=2048,
        num_layers=6,
        num_decoder_layers=6,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


# --------------------------------------------------------------------------------------------- the two runs
def _timer():
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def __init__(self):
            self.start = self.end = None
            self.steps = 0

        def on_step_begin(self, args, state, control, **kwargs):
            if self.start is None:
                self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1
            self.end = time.perf_counter()

    return Timer()


def run_negopt(model_dir: str, data: str, out: str, steps: int) -> dict:
    from negopt.train import SFTConfig, SFTTrainer

    config = SFTConfig(
        model=model_dir,
        dataset=data,
        output_dir=out,
        max_steps=steps,
        batch_size=BATCH,
        learning_rate=3e-4,
        lora_r=LORA["r"],
        lora_alpha=LORA["lora_alpha"],
        lora_dropout=LORA["lora_dropout"],
        max_source_length=MAX_SOURCE,
        max_target_length=MAX_TARGET,
        max_prompt_length=None,
        max_negative_length=None,
        validation_size=0.0,
        test_size=0.0,
        save_steps=10_000,
        logging_steps=10_000,
        disable_tqdm=True,
    )
    timer = _timer()
    SFTTrainer(config, callbacks=[timer]).trainer.train()
    return {"samples_per_s": timer.steps * BATCH / (timer.end - timer.start), "steps": timer.steps}


def run_baseline(model_dir: str, data: str, out: str, steps: int, pad_to_max: bool = False) -> dict:
    # The recipe from the transformers summarization / translation docs, with peft's LoRA added. pad_to_max: pad in
    # preprocessing to the limits instead of letting the collator pad each batch.
    from datasets import load_dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir)
    model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM, **LORA))
    ds = load_dataset("json", data_files=data, split="train")

    def preprocess(batch):
        padding = "max_length" if pad_to_max else False
        enc = tokenizer(batch["prompt"], max_length=MAX_SOURCE, padding=padding, truncation=True)
        labels = tokenizer(
            text_target=batch["negative_prompt"], max_length=MAX_TARGET, padding=padding, truncation=True
        )
        if pad_to_max:
            enc["labels"] = [
                [(t if t != tokenizer.pad_token_id else -100) for t in ids] for ids in labels["input_ids"]
            ]
        else:  # DataCollatorForSeq2Seq pads the labels with -100
            enc["labels"] = labels["input_ids"]
        return enc

    ds = ds.map(preprocess, batched=True, remove_columns=ds.column_names)
    args = Seq2SeqTrainingArguments(
        output_dir=out,
        per_device_train_batch_size=BATCH,
        learning_rate=3e-4,
        max_steps=steps,
        save_steps=10_000,
        logging_steps=10_000,
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        dataloader_pin_memory=False,
        seed=42,
    )
    timer = _timer()
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=ds,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
        processing_class=tokenizer,
        callbacks=[timer],
    )
    trainer.train()
    return {"samples_per_s": timer.steps * BATCH / (timer.end - timer.start), "steps": timer.steps}


def _child(variant: str, model_dir: str, data: str, steps: int) -> None:
    with tempfile.TemporaryDirectory() as out:
        if variant == "negopt":
            result = run_negopt(model_dir, data, out, steps)
        else:
            result = run_baseline(model_dir, data, out, steps, pad_to_max=variant == "maxlen")
    # ru_maxrss is in kilobytes on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    print("RESULT " + json.dumps(result), flush=True)


def _spawn(variant: str, model_dir: str, data: str, steps: int, threads: int | None) -> dict:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "src"), env.get("PYTHONPATH", "")])
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", variant, model_dir, data, str(steps)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{variant} run failed:\n{proc.stderr[-4000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 steps instead of 16 (a smoke run)")
    parser.add_argument("--steps", type=int, help="training steps per run, one epoch (default 16, or 4 with --quick)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each variant, alternating; best is kept")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: torch's own choice)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, model_dir, data, steps = args.child
        _child(variant, model_dir, data, int(steps))
        return
    steps = args.steps or (4 if args.quick else 16)

    import torch

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    threads = args.threads or torch.get_num_threads()
    print(f"python {platform.python_version()}, torch {torch.__version__} ({threads} threads per run)")
    print(f"model: T5 d_model 512, 6+6 layers, d_ff 2048, vocab 32128 (random); LoRA r=16 all-linear; batch {BATCH}")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "pairs.jsonl")
        model_dir = os.path.join(tmp, "t5-small-shaped")
        make_data(data, rows=steps * BATCH)  # one epoch
        make_model(model_dir)
        best: dict[str, dict] = {}
        for _ in range(args.repeats):
            for variant in ("baseline", "negopt", "maxlen"):
                r = _spawn(variant, model_dir, data, steps, args.threads)
                print(
                    f"  {LABELS[variant]:<44} {r['samples_per_s']:7.2f} samples/s   "
                    f"peak RSS {r['peak_rss_mib']:7.0f} MiB",
                    flush=True,
                )
                if variant not in best or r["samples_per_s"] > best[variant]["samples_per_s"]:
                    best[variant] = r
    neg, base, maxlen = best["negopt"], best["baseline"], best["maxlen"]
    print(
        f"negopt train sft: {neg['samples_per_s']:.2f} samples/s vs docs recipe (dynamic padding) "
        f"{base['samples_per_s']:.2f} samples/s -> {neg['samples_per_s'] / base['samples_per_s']:.2f}x "
        f"({steps} steps; peak RSS {neg['peak_rss_mib']:.0f} vs {base['peak_rss_mib']:.0f} MiB)"
    )
    print(
        f"  (vs the recipe padded to max length, {maxlen['samples_per_s']:.2f} samples/s: "
        f"{neg['samples_per_s'] / maxlen['samples_per_s']:.2f}x; peak RSS {maxlen['peak_rss_mib']:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
