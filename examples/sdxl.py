"""SDXL: one generated negative prompt reaches both text encoders.

Stable Diffusion XL has two text encoders and two negative-prompt slots, ``negative_prompt`` and
``negative_prompt_2``. Bare SDXL ignores ``negative_prompt_2`` when ``negative_prompt`` is None, so a negative meant
for both is easy to lose; ``NegOptPipeline`` reads the pipeline's signature and fills every slot it has. The script
prints the slots found, the negative sent to them, and saves the image.

On a GPU (float16 on CUDA; the first run downloads about 7 GB)::

    python examples/sdxl.py --prompt "a cinematic photo of a lighthouse in a storm" --output lighthouse.png
    python examples/sdxl.py --generator out/rl --negative-prompt "easynegative" --output lighthouse.png
"""

from __future__ import annotations

import argparse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pipeline",
        default="stabilityai/stable-diffusion-xl-base-1.0",
        help="SDXL pipeline: hub id or folder (default: %(default)s)",
    )
    parser.add_argument("--generator", help="a NegOptGenerator folder or hub id (default: the built-in generator)")
    parser.add_argument("--prompt", default="a cinematic photo of a lighthouse in a storm, dramatic light")
    parser.add_argument("--negative-prompt", help="your own negative terms, merged with the generated ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=30, help="denoising steps (default: %(default)s)")
    parser.add_argument("--guidance-scale", type=float, default=5.0, help="must be > 1 for a negative to matter")
    parser.add_argument("--height", type=int, help="image height (default: the pipeline's, 1024 for SDXL)")
    parser.add_argument("--width", type=int, help="image width")
    parser.add_argument("--output", default="sdxl.png", help="where to save the PNG (default: %(default)s)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Heavy imports after parsing, so that --help answers at once.
    import torch
    from diffusers import StableDiffusionXLPipeline

    from negopt import NegOptGenerator, NegOptPipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.startswith("cuda") else None  # None: diffusers' float32

    sdxl = StableDiffusionXLPipeline.from_pretrained(args.pipeline, torch_dtype=dtype, use_safetensors=True)
    generator = NegOptGenerator.from_pretrained(args.generator) if args.generator else None  # None: built-in
    pipe = NegOptPipeline(sdxl, generator).to(device)
    print(f"negative slots:  {', '.join(pipe.negative_slots)}")

    out = pipe(
        args.prompt,
        negative_prompt=args.negative_prompt,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        height=args.height,
        width=args.width,
        generator=torch.Generator(device).manual_seed(args.seed),
    )
    # The same text went to every slot: the bare pipeline called with negative_prompt=negative_prompt_2=this text
    # and the same seed gives the same image.
    print(f"prompt:          {args.prompt}")
    print(f"negative prompt: {out.negative_prompts[0]}")
    out.images[0].save(args.output)
    print(f"image:           {args.output} ({out.images[0].width}x{out.images[0].height})")


if __name__ == "__main__":
    main()
