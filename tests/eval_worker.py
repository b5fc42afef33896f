"""A script the distributed-evaluation tests run under ``torchrun``: ``negopt eval``'s evaluation, with a built-in
generator that fails on one prompt, to show what a process that dies leaves behind.

Not collected by pytest (no ``test_`` prefix). Run as ``python tests/eval_worker.py PIPELINE_DIR PROMPTS OUT FAIL_ON``.
"""

from __future__ import annotations

import sys


class FailingBuiltin:
    """The built-in generator, until it is asked for ``fail_on``."""

    def __init__(self, fail_on: str):
        from negopt.builtin import BuiltinGenerator

        self.generator = BuiltinGenerator()
        self.fail_on = fail_on

    def __call__(self, prompts, **kwargs):
        if self.fail_on in prompts:
            raise RuntimeError(f"this process dies on {self.fail_on!r}")
        return self.generator(prompts, **kwargs)


def main(pipeline_dir: str, prompts_file: str, output_dir: str, fail_on: str) -> None:
    from diffusers import DiffusionPipeline

    from negopt.data import load_prompts
    from negopt.eval import evaluate

    pipe = DiffusionPipeline.from_pretrained(pipeline_dir, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    prompts = load_prompts(prompts_file, negatives=True)
    # What `negopt eval --steps 2 --batch-size 2` runs (the same conditions, arguments and so the same image files);
    # no metric is reached: the failing process stops the run first.
    evaluate(
        pipe,
        prompts,
        generators={"builtin": FailingBuiltin(fail_on)},
        metrics={"unused": lambda images, **kwargs: [0.0] * len(images)},
        output_dir=output_dir,
        pipeline_kwargs={"num_inference_steps": 2},
        batch_size=2,
        progress=False,
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
