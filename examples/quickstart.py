"""Quick start: Stable Diffusion 1.5 with negative prompts written for you.

Wraps a diffusers pipeline in ``NegOptPipeline``: every call gets a negative prompt written for its prompt, by the
built-in generator (no download) or by a learned one (``--generator``, a folder or hub id). The script prints the
negative it used and saves the image.

On a GPU (float16 is chosen on CUDA; the first run downloads about 4 GB)::

    python examples/quickstart.py --prompt "a portrait photo of an old fisherman" --output fisherman.png
    python examples/quickstart.py --generator out/sft --prompt "a cartoon cat" --output cat.png
"""

from __future__ import annotations

import argparse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pipeline",
        default="stable-diffusion-v1-5/stable-diffusion-v1-5",
        help="diffusers pipeline: hub id or folder (default: %(default)s)",
    )
    parser.add_argument("--generator", help="a NegOptGenerator folder or hub id (default: the built-in generator)")
    parser.add_argument("--prompt", default="a portrait photo of an old fisherman, detailed, 8k")
    parser.add_argument("--negative-prompt", help="your own negative terms, merged with the generated ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=30, help="denoising steps (default: %(default)s)")
    parser.add_argument("--guidance-scale", type=float, default=7.5, help="must be > 1 for a negative to matter")
    parser.add_argument("--height", type=int, help="image height (default: the pipeline's, 512 for SD 1.5)")
    parser.add_argument("--width", type=int, help="image width")
    parser.add_argument("--output", default="quickstart.png", help="where to save the PNG (default: %(default)s)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Heavy imports after parsing, so that --help answers at once.
    import torch

    from negopt import NegOptGenerator, NegOptPipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.startswith("cuda") else None  # None: diffusers' float32

    generator = NegOptGenerator.from_pretrained(args.generator) if args.generator else None  # None: built-in
    pipe = NegOptPipeline.from_pretrained(args.pipeline, generator, torch_dtype=dtype).to(device)

    out = pipe(
        args.prompt,
        negative_prompt=args.negative_prompt,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        height=args.height,
        width=args.width,
        generator=torch.Generator(device).manual_seed(args.seed),  # diffusers' torch.Generator, for the noise
    )
    out.images[0].save(args.output)
    print(f"prompt:          {args.prompt}")
    print(f"negative prompt: {out.negative_prompts[0]}")
    print(f"image:           {args.output} ({out.images[0].width}x{out.images[0].height})")


if __name__ == "__main__":
    main()
