"""What Normalized Attention Guidance costs per denoising step, against the bare step and true CFG, in one process.

For an SD-1.5-shaped UNet and a Flux-shaped transformer (random weights), one denoising step is timed three ways:

- bare: the denoiser's forward on the prompt's text (one image);
- NAG: the same forward with NAG's processors installed (the ones a ``NegOptPipeline`` call installs, from
  ``negopt.pipeline.guidance.families.plan``) and the prompt's text followed by the negative's;
- true CFG, as diffusers runs it: SD one forward at batch 2 (negative and prompt), Flux two forwards
  (``true_cfg_scale > 1``).

The three are interleaved, repeated, and the medians compared to the bare step; on a CPU the clock is the process's
CPU time (``--wall`` for wall-clock time), which a machine shared with other work disturbs far less. Goals: NAG
at most 1.3x the bare step on the UNet, 1.5x on the Flux shape (true CFG is about 2x).

The Flux shape keeps Flux.1's widths (3072 = 24 heads x 128, T5 width 4096, 512 text tokens as Flux.1-dev) and
its 1:2 mix of double- and single-stream blocks, at a reduced depth (``--flux-blocks``, default 1 double + 2 single
instead of 19 + 38), which a CPU can run; NAG adds the same work to every block of a kind, so the ratio carries over.
At 1024x1024 (4096 image tokens) the text is a smaller share of the tokens than at 512x512 and NAG costs less.

    python benchmarks/bench_nag.py [--sd-size 512] [--flux-size 512] [--flux-blocks 1,2] [--repeats 3]
        [--threads N] [--no-sd] [--no-flux] [--tiny] [--device cpu|cuda] [--wall]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
import types
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(os.path.dirname(HERE), "src"), os.path.join(os.path.dirname(HERE), "tests")]

from negopt.pipeline.guidance.families import plan  # noqa: E402
from negopt.pipeline.guidance.nag import NAGState  # noqa: E402


def say(line: str = "") -> None:
    print(line, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cast(model, device: torch.device, dtype: torch.dtype):
    """``model`` on ``device`` in ``dtype`` (built in float32: no cast, and no diffusers notice about one, for it)."""
    model = model.to(device)
    return model if dtype == torch.float32 else model.to(dtype)


def timed(fn, device: torch.device, clock) -> float:
    sync(device)
    start = clock()
    with torch.inference_mode():
        fn()
    sync(device)
    return clock() - start


@contextlib.contextmanager
def nag_installed(denoiser, family: str, positive: int, negative: int):
    """NAG's processors on ``denoiser`` (as a NegOptPipeline call installs them), then the previous ones back."""
    holder = types.SimpleNamespace(unet=denoiser) if family in ("sd", "sdxl") else types.SimpleNamespace()
    if family not in ("sd", "sdxl"):
        holder.transformer = denoiser
    state = NAGState(scale=5.0, tau=2.5, alpha=0.25, positive_length=positive, negative_length=negative)
    ((model, current, new),) = plan(holder, family, state)
    model.set_attn_processor(dict(new))
    try:
        yield
    finally:
        model.set_attn_processor(dict(current))


def compare(name: str, rows: dict, repeats: int, device: torch.device, clock, unit: str) -> dict[str, float]:
    """Warm each row up once, then time them interleaved ``repeats`` times; median seconds per row.

    A row is ``(step, context)``: the step is timed inside the context (NAG's processors), which is not timed.
    """
    times: dict[str, list[float]] = {k: [] for k in rows}
    for repeat in range(repeats + 1):
        for key, (fn, context) in rows.items():
            with context():
                seconds = timed(fn, device, clock)
            if repeat:  # the first round warms up
                times[key].append(seconds)
    medians = {k: statistics.median(v) for k, v in times.items()}
    bare = medians["bare"]
    say(f"{name}, {unit}:")
    for key, value in medians.items():
        spread = f"{min(times[key]) * 1000:.0f}-{max(times[key]) * 1000:.0f}"
        say(f"  {key:<9} median {value * 1000:10.1f} ms a step ({spread} ms)   {value / bare:5.2f}x bare")
    return medians


def bench_unet(args, device: torch.device, dtype: torch.dtype) -> None:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    if args.tiny:
        config = dict(block_out_channels=(4, 8), layers_per_block=1, norm_num_groups=2, cross_attention_dim=32)
        config.update(down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"))
        config.update(up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), sample_size=32)
        width, text, latent, label = 32, 77, args.sd_size // 8, "tiny UNet"
    else:
        config = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=768)
        config.update(attention_head_dim=8, sample_size=64)
        config.update(down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",))
        config.update(up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
        width, text, latent, label = 768, 77, args.sd_size // 8, "SD-1.5-shaped UNet"
    unet = cast(UNet2DConditionModel(in_channels=4, out_channels=4, **config).eval(), device, dtype)
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    sample = torch.randn(1, 4, latent, latent, device=device, dtype=dtype)
    prompt = torch.randn(1, text, width, device=device, dtype=dtype)
    negative = torch.randn(1, text, width, device=device, dtype=dtype)
    t = torch.tensor([500], device=device)
    say(f"{label} ({params:.0f} M parameters, {dtype}), {args.sd_size}x{args.sd_size}, {text}+{text} text tokens")
    both = torch.cat([prompt, negative], 1)
    rows = {
        "bare": (lambda: unet(sample, t, encoder_hidden_states=prompt), contextlib.nullcontext),
        "NAG": (lambda: unet(sample, t, encoder_hidden_states=both), lambda: nag_installed(unet, "sd", text, text)),
        "true CFG": (
            lambda: unet(
                torch.cat([sample] * 2), torch.cat([t] * 2), encoder_hidden_states=torch.cat([negative, prompt])
            ),
            contextlib.nullcontext,
        ),
    }
    compare("SD-1.5 UNet step (CFG: one forward at batch 2)", rows, args.repeats, device, *args.clock)


def bench_flux(args, device: torch.device, dtype: torch.dtype) -> None:
    from diffusers import FluxTransformer2DModel

    double, single = (int(x) for x in args.flux_blocks.split(","))
    torch.manual_seed(0)
    if args.tiny:
        config = dict(num_attention_heads=2, attention_head_dim=16, joint_attention_dim=32, pooled_projection_dim=32)
        config.update(axes_dims_rope=[4, 4, 8], in_channels=4)
        text, label = 48, "tiny Flux"
    else:
        config = dict(num_attention_heads=24, attention_head_dim=128, joint_attention_dim=4096)
        config.update(pooled_projection_dim=768, axes_dims_rope=[16, 56, 56], in_channels=64, guidance_embeds=True)
        text, label = args.flux_text, "Flux-shaped transformer"
    model = FluxTransformer2DModel(patch_size=1, num_layers=double, num_single_layers=single, **config)
    model = cast(model.eval(), device, dtype)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    side = args.flux_size // 16  # 8x VAE, then 2x2 patches
    image = side * side
    channels = config["in_channels"]
    latents = torch.randn(1, image, channels, device=device, dtype=dtype)
    prompt = torch.randn(1, text, config["joint_attention_dim"], device=device, dtype=dtype)
    negative = torch.randn(1, text, config["joint_attention_dim"], device=device, dtype=dtype)
    pooled = torch.randn(1, config["pooled_projection_dim"], device=device, dtype=dtype)
    rows_ids = torch.arange(side, device=device).repeat_interleave(side)
    img_ids = torch.stack([torch.zeros_like(rows_ids), rows_ids, torch.arange(side, device=device).repeat(side)], 1)
    img_ids = img_ids.to(dtype)
    common = dict(pooled_projections=pooled, timestep=torch.tensor([0.5], device=device, dtype=dtype))
    common.update(img_ids=img_ids, return_dict=False)
    if config.get("guidance_embeds"):
        common["guidance"] = torch.tensor([3.5], device=device, dtype=dtype)

    def step(context):
        txt_ids = torch.zeros(context.shape[1], 3, device=device, dtype=dtype)
        return model(hidden_states=latents, encoder_hidden_states=context, txt_ids=txt_ids, **common)

    say(
        f"{label} ({params:.0f} M parameters, {dtype}; {double} double + {single} single blocks), "
        f"{args.flux_size}x{args.flux_size} ({image} image tokens), {text}+{text} text tokens"
    )
    both = torch.cat([prompt, negative], 1)
    rows = {
        "bare": (lambda: step(prompt), contextlib.nullcontext),
        "NAG": (lambda: step(both), lambda: nag_installed(model, "flux", text, text)),
        "true CFG": (lambda: (step(prompt), step(negative)), contextlib.nullcontext),
    }
    compare("Flux step (true CFG: two forwards)", rows, args.repeats, device, *args.clock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sd-size", type=int, default=512, help="image side of the UNet step (512)")
    parser.add_argument("--flux-size", type=int, default=512, help="image side of the Flux step (512)")
    parser.add_argument("--flux-text", type=int, default=512, help="text tokens of the prompt and of the negative")
    parser.add_argument("--flux-blocks", default="1,2", help="double,single blocks of the Flux shape (1,2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per row, interleaved (3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu (float32) or cuda (bfloat16)")
    parser.add_argument("--tiny", action="store_true", help="tiny models: a dry run of the same code")
    parser.add_argument("--no-sd", action="store_true", help="skip the UNet")
    parser.add_argument("--no-flux", action="store_true", help="skip the Flux shape")
    parser.add_argument(
        "--wall", action="store_true", help="time wall-clock on the CPU too (default: the process's CPU time)"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    # On a CPU shared with other work, wall times swing with the load; the process's CPU time (all its threads) counts
    # the step's own work. On a GPU, wall time with synchronisation.
    if device.type == "cpu" and not args.wall:
        args.clock = (time.process_time, "process CPU time")
    else:
        args.clock = (time.perf_counter, "wall time")
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    if args.tiny:
        args.sd_size, args.flux_size = min(args.sd_size, 64), min(args.flux_size, 64)

    import diffusers

    if device.type == "cuda":
        card = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    else:
        cpu = platform.processor() or platform.machine()
        card = f"CPU ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    say(f"device: {card}")
    say(
        f"machine: {platform.platform()}, python {platform.python_version()}, torch {torch.__version__}, "
        f"diffusers {diffusers.__version__}"
    )
    start = time.perf_counter()
    if not args.no_sd:
        bench_unet(args, device, dtype)
    if not args.no_flux:
        bench_flux(args, device, dtype)
    say(f"total wall time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
