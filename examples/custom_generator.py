"""Your own function as the negative-prompt generator, and the three ways to combine it with your own negative.

Anything that maps a list of prompts to a list of negatives (same length, same order) works wherever a generator is
expected: ``NegOptPipeline``, ``negopt.eval.evaluate``. This one writes style-aware negatives: a photo gets the
drawn styles as negatives, a drawing gets the photographic ones. The script renders each prompt under each
``combine`` mode and prints the negative that was sent:

- ``merge`` (the default): your terms first and verbatim, then the generated terms you do not already have;
- ``user``: yours only (the generator is not called);
- ``generated``: the generated negative only.

On a GPU (float16 on CUDA)::

    python examples/custom_generator.py --negative-prompt "easynegative, (blurry:1.2)" --output-dir custom
"""

from __future__ import annotations

import argparse
import os

from negopt.text import merge_negatives

QUALITY = "worst quality, low quality, blurry, jpeg artifacts, watermark, signature"
# Words in the prompt -> styles that clash with them.
STYLE_NEGATIVES = {
    ("photo", "photograph", "cinematic"): "cartoon, anime, illustration, painting, 3d render",
    ("anime", "cartoon", "illustration"): "photo, photorealistic, realistic skin, 3d render",
    ("painting", "watercolor", "oil on canvas"): "photo, 3d render, digital art, smooth plastic",
}
PROMPTS = [
    "a portrait photo of an old fisherman, detailed",
    "an anime illustration of a girl reading under a tree",
    "an oil painting of a harbour at dawn",
]


def style_aware_negatives(prompts: list[str]) -> list[str]:
    """One negative per prompt: quality terms, then the styles that clash with the prompt's."""
    negatives = []
    for prompt in prompts:
        text = prompt.lower()
        clashing = [terms for words, terms in STYLE_NEGATIVES.items() if any(w in text for w in words)]
        negatives.append(merge_negatives(QUALITY, ", ".join(clashing)))  # joins and drops repeated terms
    return negatives


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pipeline",
        default="stable-diffusion-v1-5/stable-diffusion-v1-5",
        help="diffusers pipeline: hub id or folder (default: %(default)s)",
    )
    parser.add_argument("--negative-prompt", default="easynegative, (blurry:1.2)", help="your own negative prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=30, help="denoising steps (default: %(default)s)")
    parser.add_argument("--output-dir", default="custom_generator", help="where the PNGs go (default: %(default)s)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    from negopt import NegOptPipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.startswith("cuda") else None
    pipe = NegOptPipeline.from_pretrained(args.pipeline, style_aware_negatives, torch_dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    os.makedirs(args.output_dir, exist_ok=True)

    for combine in ("merge", "user", "generated"):
        out = pipe(
            PROMPTS,
            negative_prompt=args.negative_prompt,
            combine=combine,
            num_inference_steps=args.steps,
            generator=[torch.Generator(device).manual_seed(args.seed + i) for i in range(len(PROMPTS))],
        )
        for i, (prompt, negative, image) in enumerate(zip(PROMPTS, out.negative_prompts, out.images)):
            image.save(os.path.join(args.output_dir, f"{combine}-{i}.png"))
            print(f"[{combine}] {prompt} -> {negative}")


if __name__ == "__main__":
    main()
