"""Benchmark: NegOptGenerator's batched call against the loop a user would write.

A model of t5-small's shape (d_model 512, 6+6 layers, 8 heads, d_ff 2048, vocabulary 32128) with random weights
writes exactly 32 new tokens (``min_new_tokens = max_new_tokens = 32``) for 64 realistic Stable Diffusion prompts of
varied length. The baseline tokenizes one prompt and calls ``model.generate`` on it, prompt after prompt, with the
same generation settings (negopt's defaults: greedy, ``no_repeat_ngram_size=3``, ``repetition_penalty=1.2``). Its
text goes through the same clean-up as negopt's, and the two outputs are compared.

There is no T5 tokenizer file offline, so the tokenizer is a BPE tokenizer (Metaspace pre-tokenizer, like T5's
SentencePiece) trained in-process on the prompts with a 1,000-token vocabulary -- frequent words stay whole and rare
words split, about as T5's does -- and its vocabulary is padded with filler tokens to the model's 32,128 so that every
id the model can emit decodes.

One prompt alone (batch-1 latency) is timed several ways, interleaved prompt by prompt so that all see the same
load: eager float32 (the generator as loaded), ``NegOptGenerator.optimize`` in bfloat16 and in int8 (dynamic
quantization of the linear layers), and, with the ctranslate2 extra installed, ``optimize(backend="ctranslate2")`` in
float32 and int8, each a copy of the same model; with ``--compile``, also float32 with a static cache and
``torch.compile`` (tens of seconds to compile per input-length bucket on a CPU). Each row says on how many prompts
its text equals eager float32's, and how long its ``optimize()`` took. The CTranslate2 rows also run the batched
call once. Last, a cached repeat: the same call again, answered by the generator's cache.

Run: ``python benchmarks/bench_generator.py`` (``--quick`` for a smaller run, ``--sweep`` to time batch sizes,
``--compile`` to add the compiled float32 row).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import statistics
import time

import torch

PROMPTS = [
    "a cat",
    "portrait of a woman",
    "a red fox in the snow",
    "mountain lake at dawn",
    "a bowl of ramen, food photography",
    "an astronaut riding a horse on mars",
    "cyberpunk street at night, neon lights, rain",
    "a cozy cabin in the woods, winter, smoke from the chimney",
    "a portrait photo of an old fisherman, detailed wrinkles, 85mm, f/1.8",
    "a watercolor painting of a lighthouse on a cliff, soft pastel colors",
    "isometric view of a tiny medieval village, low poly, 3d render",
    "a golden retriever puppy playing in autumn leaves, bokeh, warm light",
    "masterpiece, best quality, 1girl, solo, long hair, looking at viewer, smile",
    "a dragon flying over a burning castle, epic fantasy art, dramatic sky",
    "studio photo of a luxury wristwatch on black marble, product shot",
    "a samurai standing in a bamboo forest, mist, cinematic lighting, 4k",
    "an oil painting of a stormy sea with a sailing ship, by ivan aivazovsky",
    "close-up of a hummingbird drinking nectar from a red flower, macro photography, sharp focus",
    "a futuristic sports car parked in front of a glass skyscraper, sunset reflections, hyperrealistic",
    "ultra realistic photo of a bowl of fruit on a wooden table, natural window light, still life",
    "anime style illustration of a girl with headphones sitting on a rooftop at night, city lights, lo-fi",
    "a majestic lion with a flowing mane lying on a rock in the savanna, golden hour, national geographic",
    "interior of a scandinavian living room, minimalist, white walls, plants, soft daylight, architectural digest",
    "concept art of an alien jungle planet with bioluminescent plants and floating rocks, matte painting",
    "a steampunk airship above victorian london, brass and copper details, fog, intricate, highly detailed",
    "photo of a young man with freckles and red hair, wearing a knitted sweater, shallow depth of field, "
    "kodak portra 400",
    "(masterpiece:1.2), best quality, ultra-detailed, 1girl, silver hair, blue eyes, school uniform, cherry blossoms",
    "a knight in shining armor kneeling before a queen in a grand throne room, stained glass windows, "
    "volumetric light",
    "an abandoned amusement park overgrown with vines, ferris wheel, overcast sky, post-apocalyptic, moody atmosphere",
    "a cute robot watering flowers in a greenhouse, pixar style, 3d render, octane render, "
    "soft lighting, vibrant colors",
    "aerial drone shot of a winding road through a dense green forest in autumn, orange and red leaves, "
    "mist in valleys",
    "a portrait of an elderly woman in traditional clothing, rembrandt lighting, oil on canvas, visible brush strokes",
    "street photography of a busy market in marrakech, spices, colorful fabrics, people, candid, 35mm film grain",
    "a whimsical treehouse village connected by rope bridges in a giant redwood forest, fairy lights, dusk, fantasy",
    "sci-fi spaceship cockpit interior, holographic displays, pilot seat, stars through the window, unreal engine 5",
    "a bowl of steaming pho with fresh herbs and lime on a rustic table, overhead shot, food styling, 8k",
    "full body shot of a warrior woman in leather armor holding a sword, windswept hair, mountains behind her, "
    "artstation, trending, by greg rutkowski",
    "a serene japanese garden with a koi pond, stone lanterns, red maple trees, a small wooden bridge, spring, "
    "soft morning light",
    "an underwater scene with a sunken pirate ship, schools of tropical fish, coral reef, sun rays through the water, "
    "photorealistic",
    "a cozy coffee shop on a rainy day, people reading books, warm lamps, condensation on the window, "
    "impressionist painting",
    "a highly detailed portrait of a cyborg with glowing blue eyes, exposed circuitry on the face, "
    "dark background, rim light, 8k, sharp focus",
    "(best quality, masterpiece:1.3), ultra high res, photorealistic, 1boy, short black hair, business suit, "
    "office background, soft light, detailed skin",
    "vintage travel poster of the swiss alps, a red train crossing a stone viaduct, snow-capped peaks, "
    "art deco style, bold flat colors, typography",
    "a giant tortoise carrying a small city on its back walking through a desert, surreal, dreamlike, "
    "salvador dali inspired, long shadows",
    "macro photograph of dew drops on a spider web at sunrise, each drop reflecting the landscape, "
    "extreme detail, shallow depth of field, bokeh",
    "portrait of a tabby cat wearing a tiny wizard hat and a cloak, sitting on a pile of old books, "
    "candlelight, magical sparkles, fantasy illustration",
    "a brutalist concrete building in the fog, geometric shapes, a lone person walking with a red umbrella, "
    "minimalist composition, black and white photography except the umbrella",
    "epic landscape of a volcano erupting at night, lava rivers, lightning in the ash cloud, stars, "
    "long exposure, national geographic photo of the year",
    "a young witch brewing potions in a cluttered cottage kitchen, hanging herbs, bubbling cauldron, cat on the "
    "shelf, warm firelight, studio ghibli style",
    "product photography of a perfume bottle on a reflective surface surrounded by flowers and water splashes, "
    "high key lighting, commercial, advertisement, 8k",
    "an old man playing chess against a robot in a park in autumn, falling leaves, pigeons, afternoon sun, "
    "cinematic still, film grain, anamorphic lens flare",
    "fantasy map of an archipelago with hand-drawn islands, sea monsters, compass rose, ships, parchment texture, "
    "ink and watercolor, highly detailed cartography",
    "ultra-wide shot of a lone astronaut standing on an alien planet looking at two moons rising over a crystal "
    "desert, cinematic composition, volumetric fog, blade runner colors",
    "masterpiece, best quality, highly detailed, 1girl, solo, red kimono, holding a paper umbrella, standing on a "
    "bridge, lanterns, night festival, fireworks in the sky, depth of field",
    "a hyperrealistic close-up portrait of a tiger's face with intense amber eyes, every whisker and fur strand "
    "visible, water droplets, dark jungle background, wildlife photography, canon eos r5",
    "the interior of an enormous gothic library with spiral staircases, floating books, candles, stained glass "
    "dome, dust in the light beams, mysterious atmosphere, digital painting, trending on artstation",
    "a bustling futuristic tokyo street in the year 2150, flying cars, holographic advertisements in japanese, "
    "crowds with umbrellas, reflections on wet asphalt, cyberpunk, ultra detailed, octane render, 8k",
    "a family of four having a picnic on a hill overlooking the sea, checkered blanket, basket of bread and "
    "cheese, kites in the sky, summer afternoon, norman rockwell style, warm nostalgic colors",
    "award winning nature photograph of a kingfisher diving into a river to catch a fish, frozen motion, splash "
    "of water, perfectly sharp, fast shutter speed, soft green background, 600mm telephoto lens",
    "a cathedral made entirely of ice and glowing crystals in the middle of a frozen tundra under the aurora "
    "borealis, tiny explorers with torches at the entrance, epic scale, fantasy concept art, dramatic lighting",
    "(masterpiece, best quality:1.4), (ultra detailed:1.2), 1girl, solo, long flowing white hair, golden eyes, "
    "ornate silver armor, holding a glowing spear, standing on a cliff, wind, sunset clouds, cinematic angle, "
    "dynamic pose, intricate details",
    "a still life painting in the style of the dutch golden age: a silver goblet, half-peeled lemon, oysters, a "
    "loaf of bread, grapes and a dead pheasant on a table draped with a dark green cloth, chiaroscuro lighting, "
    "oil on canvas, museum quality",
    "photorealistic architectural visualization of a modern glass house built over a waterfall in a tropical "
    "rainforest, infinity pool, cantilevered terraces, lush vegetation, morning mist, golden light, shot on a "
    "tilt-shift lens, 8k, highly detailed, unreal engine",
    "a detailed character sheet of a steampunk inventor girl showing front, side and back views, goggles on her "
    "head, leather apron with many pockets, mechanical arm, brass tools, color palette swatches, clean white "
    "background, concept art, artstation",
]


def build_tokenizer(vocab_size: int):
    """A T5-like BPE tokenizer trained on PROMPTS, its vocabulary padded with filler tokens to ``vocab_size``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2, as in T5
    trained = Tokenizer(models.BPE(unk_token="<unk>"))
    trained.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=specials, show_progress=False)
    trained.train_from_iterator(PROMPTS, trainer)
    vocab = trained.get_vocab()
    merges = [tuple(m) for m in trained.model.get_merges()] if hasattr(trained.model, "get_merges") else None
    if merges is None:  # older tokenizers: read merges from the serialised model
        import json

        merges = [
            tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
            for m in json.loads(trained.to_str())["model"]["merges"]
        ]
    for i in range(len(vocab), vocab_size):
        vocab[f"<filler_{i}>"] = i
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )


def build_model(vocab_size: int):
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=vocab_size,
        d_model=512,
        d_kv=64,
        d_ff=2048,
        num_layers=6,
        num_decoder_layers=6,
        num_heads=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(config).eval()
    # A random T5 repeats its input token, so it writes its start (pad) token first; a trained one never writes pad.
    # A zero output row for pad (logit 0) makes this model skip it too, as a trained one does. (For a seq2seq model,
    # optimize(backend="ctranslate2") hands a row that holds the start token to transformers.)
    with torch.no_grad():
        model.get_output_embeddings().weight[config.pad_token_id].zero_()
    return model


def call_kwargs_for(n_new: int) -> dict:
    return {"min_new_tokens": n_new, "max_new_tokens": n_new}


def naive_loop(model, tokenizer, prompts: list[str], kwargs: dict) -> list[str]:
    """What a user writes without negopt: one prompt at a time."""
    from negopt.text import clean_negative, strip_echo

    out = []
    with torch.no_grad():
        for p in prompts:
            enc = tokenizer(p, return_tensors="pt")
            ids = model.generate(**enc, **kwargs)
            out.append(clean_negative(strip_echo(tokenizer.decode(ids[0], skip_special_tokens=True), p)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 prompts, 16 new tokens")
    parser.add_argument("--sweep", action="store_true", help="also time batch sizes 8, 16, 32, 64")
    parser.add_argument("--batch-size", type=int, default=None, help="negopt batch size (default: negopt's)")
    parser.add_argument("--compile", action="store_true", help="also time float32 + static cache + torch.compile")
    args = parser.parse_args()

    from negopt import __version__
    from negopt.builtin import BuiltinGenerator
    from negopt.generator import NegOptGenerator
    from negopt.generator.fastpath import ctranslate2 as ctranslate2_backend

    n_prompts, n_new = (16, 16) if args.quick else (64, 32)
    prompts = PROMPTS[:: len(PROMPTS) // n_prompts][:n_prompts] if args.quick else PROMPTS[:n_prompts]
    vocab_size = 32128
    tokenizer = build_tokenizer(vocab_size)
    model = build_model(vocab_size)
    gen = NegOptGenerator(model, tokenizer, cache_size=0)  # every timed call runs the model
    gen.set_progress_bar_config(disable=True)
    # label -> optimize() arguments; the CTranslate2 rows need the ctranslate2 extra.
    options: dict[str, dict] = {"'bfloat16'": {"precision": "bfloat16"}, "'int8'": {"precision": "int8"}}
    if ctranslate2_backend.available():
        for precision in ("float32", "int8"):
            options[f"{precision!r}, backend='ctranslate2'"] = {"precision": precision, "backend": "ctranslate2"}
    else:
        print("(ctranslate2 is not installed: no backend='ctranslate2' rows; pip install 'negopt[ctranslate2]')")
    if args.compile:
        options["'float32', compile=True"] = {"precision": "float32", "compile": True}
    fast = {}
    for name, opts in options.items():
        g = NegOptGenerator(copy.deepcopy(model), tokenizer, gen.config, cache_size=0)
        g.set_progress_bar_config(disable=True)
        t0 = time.perf_counter()
        if opts.get("compile"):
            # The warm-up must compile the timed shape: same max_new_tokens, and a prompt in the first bucket.
            g.config = dataclasses.replace(
                gen.config, generation_kwargs={**gen.config.generation_kwargs, **call_kwargs_for(n_new)}
            )
        g.optimize(**opts)
        fast[name] = (g, time.perf_counter() - t0)
    kwargs = {**gen.config.generation_kwargs, "min_new_tokens": n_new, "max_new_tokens": n_new}
    call_kwargs = {"min_new_tokens": n_new, "max_new_tokens": n_new}
    if args.batch_size:
        call_kwargs["batch_size"] = args.batch_size
    lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]

    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), negopt {__version__}"
    )
    print(
        f"model: T5 of t5-small's shape, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
        "random weights, float32, CPU"
    )
    print(
        f"work: {len(prompts)} prompts ({min(lengths)}-{max(lengths)} tokens, mean "
        f"{statistics.mean(lengths):.0f}), exactly {n_new} new tokens each; settings {kwargs}"
    )

    gen(prompts[:2], **call_kwargs)  # warm-up (allocator, lazy imports)
    # The CPU may be shared: interleave the two so that both see the same load. Each round runs negopt's batched call
    # on every prompt, then the naive loop on a slice of the prompts, then one prompt alone (batch-1 latency).
    rounds = 2 if args.quick else 4
    slices = [prompts[r::rounds] for r in range(rounds)]
    t_batched: list[float] = []
    t_naive = 0.0
    single: list[float] = []
    naive_by_prompt: dict[str, str] = {}
    batched: list[str] = []
    fast_times: dict[str, list[float]] = {name: [] for name in fast}
    fast_out: dict[str, list[tuple[str, str]]] = {name: [] for name in fast}
    for r in range(rounds):
        t0 = time.perf_counter()
        out = gen(prompts, **call_kwargs)
        t_batched.append(time.perf_counter() - t0)
        if batched and out != batched:
            print("WARNING: two batched runs differ")
        batched = out

        t0 = time.perf_counter()
        naive_by_prompt.update(zip(slices[r], naive_loop(model, tokenizer, slices[r], kwargs)))
        t_naive += time.perf_counter() - t0

        for p in slices[r][:2]:
            t0 = time.perf_counter()
            ref = gen(p, **call_kwargs)
            single.append(time.perf_counter() - t0)
            for name, (g, _) in fast.items():
                t0 = time.perf_counter()
                out_fast = g(p, **call_kwargs)
                fast_times[name].append(time.perf_counter() - t0)
                fast_out[name].append((out_fast, ref))
    naive = [naive_by_prompt[p] for p in prompts]
    t_batch = statistics.median(t_batched)

    identical = batched == naive
    n_diff = sum(a != b for a, b in zip(batched, naive))
    tokens = len(prompts) * n_new
    print(f"naive loop (tokenizer + model.generate per prompt): {t_naive:8.2f} s  {tokens / t_naive:7.1f} tokens/s")
    print(
        f"negopt batched call (batch_size={call_kwargs.get('batch_size', 32)}):        {t_batch:8.2f} s  "
        f"{tokens / t_batch:7.1f} tokens/s  (median of {rounds} runs: "
        f"{', '.join(f'{t:.1f}' for t in t_batched)} s)"
    )
    print(f"speed-up: {t_naive / t_batch:.1f}x")
    print(
        f"outputs identical: {identical} ({n_diff} of {len(prompts)} differ; "
        f"{len(set(batched))} distinct, {sum(bool(x) for x in batched)} non-empty)"
    )
    print(
        f"batch-1 latency (one prompt, {n_new} tokens): median {statistics.median(single) * 1000:.0f} ms "
        f"over {len(single)} prompts"
    )
    eager_ms = statistics.median(single) * 1000
    for name, times in fast_times.items():
        ms = statistics.median(times) * 1000
        same = sum(a == b for a, b in fast_out[name])
        print(
            f"batch-1 fast path optimize({name}): median {ms:.0f} ms over {len(times)} prompts "
            f"({eager_ms / ms:.1f}x eager; same text as float32 on {same}/{len(times)}; set-up {fast[name][1]:.1f} s)"
        )
    for name, (g, _) in fast.items():
        if "ctranslate2" not in name:
            continue
        t0 = time.perf_counter()
        out = g(prompts, **call_kwargs)
        dt = time.perf_counter() - t0
        same = sum(a == b for a, b in zip(out, batched))
        print(
            f"batched call, optimize({name}): {dt:.2f} s ({t_batch / dt:.1f}x negopt's batched call, "
            f"{t_naive / dt:.1f}x the naive loop; same text as float32 on {same}/{len(prompts)})"
        )
    cached = NegOptGenerator(model, tokenizer)  # the default cache
    cached.set_progress_bar_config(disable=True)
    cached(prompts[0], **call_kwargs)
    hits = []
    for _ in range(1000):
        t0 = time.perf_counter()
        cached(prompts[0], **call_kwargs)
        hits.append(time.perf_counter() - t0)
    print(
        f"cached repeat (same prompt and settings again): median {statistics.median(hits) * 1000:.4f} ms "
        f"({eager_ms / (statistics.median(hits) * 1000):,.0f}x eager batch-1)"
    )
    builtin = BuiltinGenerator()
    builtin(prompts)  # warm-up
    t0 = time.perf_counter()
    for _ in range(20):
        builtin(prompts)
    per_prompt = (time.perf_counter() - t0) / (20 * len(prompts))
    print(
        f"built-in generator: {per_prompt * 1e6:.0f} us a prompt "
        f"({statistics.median(single) / per_prompt:,.0f}x faster than the model's batch-1 latency)"
    )

    if args.sweep:
        for bs in (8, 16, 32, 64):
            t0 = time.perf_counter()
            out = gen(prompts, batch_size=bs, **{k: v for k, v in call_kwargs.items() if k != "batch_size"})
            dt = time.perf_counter() - t0
            print(
                f"  batch_size={bs:3d}: {dt:6.2f} s  ({t_naive / dt:.1f}x the naive loop, identical: {out == naive})"
            )


if __name__ == "__main__":
    main()
