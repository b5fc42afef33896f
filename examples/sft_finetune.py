"""Supervised fine-tuning (SFT): teach a small model to write negative prompts from prompt/negative pairs.

NegOpt's first stage. A LoRA adapter on ``google-t5/t5-small`` is trained on Negative Prompts DB
(``mikeogezi/negopt_full``: prompts and the negatives their authors used), or on your own ``.jsonl`` / ``.csv`` /
``.parquet`` file with ``prompt`` and ``negative_prompt`` columns. The data is cleaned and split by prompt, so no
prompt of the validation split is trained on. The output folder is a generator: the script loads it with
``NegOptGenerator`` and prints its negatives for a few prompts.

The defaults are small, for a first look. On a GPU, a real run is longer (the data is 256k rows)::

    python examples/sft_finetune.py --output-dir out/sft --max-steps 20000 --batch-size 32 --bf16
    python examples/sft_finetune.py --dataset my_pairs.jsonl --output-dir out/sft --max-steps 500

Then try it: ``python examples/quickstart.py --generator out/sft``, or RL: ``examples/rl_finetune.py``.
"""

from __future__ import annotations

import argparse

PROMPTS = [
    "a portrait photo of an old fisherman, detailed, 8k",
    "a cartoon cat wearing a wizard hat",
    "a misty mountain lake at sunrise, oil painting",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="google-t5/t5-small", help="base model: hub id or folder (%(default)s)")
    parser.add_argument(
        "--dataset",
        default="mikeogezi/negopt_full",
        help="hub dataset id, or a local .jsonl/.csv/.parquet file with prompt and negative_prompt (%(default)s)",
    )
    parser.add_argument("--min-likes", type=int, help="keep only pairs with at least this many likes")
    parser.add_argument("--output-dir", default="out/sft", help="where the generator is saved (%(default)s)")
    parser.add_argument("--max-steps", type=int, default=200, help="training steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision (recent GPUs)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output-dir")
    parser.add_argument("--prompt", action="append", help="a prompt to try the result on (repeatable)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Heavy imports after parsing, so that --help answers at once.
    from negopt import NegOptGenerator
    from negopt.train import SFTConfig, SFTTrainer

    config = SFTConfig(
        model=args.model,
        dataset=args.dataset,
        min_likes=args.min_likes,
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        lora_r=args.lora_r,
        bf16=args.bf16,
        save_steps=max(args.max_steps // 4, 1),  # checkpoints under output_dir/checkpoints, for --resume
        resume=args.resume,
    )
    trainer = SFTTrainer(config)  # loads the model, adds the LoRA adapter, cleans and splits the data
    print(trainer.data_summary)
    result = trainer.train()
    print(f"trained {result.global_step} steps; train loss {result.train_loss}, validation loss {result.eval_loss}")
    print(f"generator saved to {result.output_dir}")

    generator = NegOptGenerator.from_pretrained(result.output_dir)  # the adapter over its base model
    prompts = args.prompt or PROMPTS
    for prompt, negative in zip(prompts, generator(prompts)):
        print(f"{prompt} -> {negative}")


if __name__ == "__main__":
    main()
