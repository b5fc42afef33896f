"""What one RL rollout costs on a video pipeline, against one on Stable Diffusion 1.5, counted in the same process.

RL on video is not something negopt runs; this script says what it would cost. A rollout is one sample: a negative
written, a whole video (or image) rendered, a reward computed on it. Rendering dominates, so the script counts the
floating-point operations of the denoiser's forward pass and of the VAE decode, with torch's ``FlopCounterMode`` on
the ``meta`` device (the real architectures at their real sizes, no weights, no memory, no GPU): Wan 2.1 T2V 1.3B at
832x480 with 81 frames (its default, 5 s at 16 fps) and with 33 frames, against SD 1.5 at 512x512. Seconds are
the FLOPs over an assumed sustained throughput (``--tflops``, default 400: about 40% of an H100's dense bf16 peak);
the ratios do not depend on it.

    python benchmarks/bench_video_cost.py [--tflops 400] [--steps-video 50] [--steps-image 25]
"""

from __future__ import annotations

import argparse
import os
import platform

import torch
from torch.utils.flop_counter import FlopCounterMode


def flops(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def wan_1_3b(frames: int, height: int, width: int) -> tuple[float, float]:
    """(one transformer forward, one VAE decode) of Wan 2.1 T2V 1.3B, in FLOPs (the config of its released weights)."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    with torch.device("meta"):
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=12,
            attention_head_dim=128,
            in_channels=16,
            out_channels=16,
            text_dim=4096,
            freq_dim=256,
            ffn_dim=8960,
            num_layers=30,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            eps=1e-6,
        )
        vae = AutoencoderKLWan()
        latents = torch.empty(1, 16, (frames - 1) // 4 + 1, height // 8, width // 8)
        text = torch.empty(1, 512, 4096)  # umT5's 512 tokens
        forward = flops(lambda: transformer(latents, torch.empty(1), text, return_dict=False))
        decode = flops(lambda: vae.decode(latents))
    return forward, decode


def sd15(size: int) -> tuple[float, float]:
    """(one UNet forward, one VAE decode) of Stable Diffusion 1.5 at ``size`` pixels a side, in FLOPs."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(cross_attention_dim=768, sample_size=size // 8)
        vae = AutoencoderKL(
            block_out_channels=[128, 256, 512, 512],
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
            layers_per_block=2,
            latent_channels=4,
        )
        latents = torch.empty(1, 4, size // 8, size // 8)
        forward = flops(lambda: unet(latents, torch.empty(1), torch.empty(1, 77, 768), return_dict=False))
        decode = flops(lambda: vae.decode(latents))
    return forward, decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tflops", type=float, default=400.0, help="sustained TFLOP/s assumed for the seconds")
    parser.add_argument("--steps-video", type=int, default=50, help="Wan's denoising steps (its default: 50)")
    parser.add_argument("--steps-image", type=int, default=25, help="SD 1.5's denoising steps")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print("counted on the meta device (no weights, no timing); classifier-free guidance on: two passes a step\n")

    forward, decode = sd15(512)
    image = 2 * args.steps_image * forward + decode
    rows = [("SD 1.5 image, 512x512", args.steps_image, forward, decode, image)]
    for frames, steps in ((81, args.steps_video), (33, args.steps_video), (33, 20)):
        forward, decode = wan_1_3b(frames, 480, 832)
        rows.append((f"Wan 2.1 1.3B, 832x480, {frames} frames", steps, forward, decode, 2 * steps * forward + decode))

    print(f"{'sample':<38} {'steps':>5} {'forward':>10} {'decode':>10} {'rollout':>10} {'x image':>8} {'s @ TF/s':>9}")
    for name, steps, forward, decode, total in rows:
        seconds = total / (args.tflops * 1e12)
        print(
            f"{name:<38} {steps:>5} {forward / 1e12:>8.2f}TF {decode / 1e12:>8.1f}TF {total / 1e15:>8.2f}PF "
            f"{total / image:>8.0f} {seconds:>9.1f}"
        )
    print(f"\nseconds at {args.tflops:.0f} TFLOP/s sustained; an RL step renders batch_size x num_candidates rollouts")


if __name__ == "__main__":
    main()
