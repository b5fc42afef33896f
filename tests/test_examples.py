"""The scripts in examples/ run end to end, as a user runs them, against tiny local models (no hub).

Each script is a subprocess (``python examples/x.py ...``) pointed at tiny real models saved to folders once per
module; every run is 1-2 denoising steps on 32x32 or 64x64 images, or 2 training steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import negopt
from negopt import NegOptGenerator
from negopt.config import NegOptConfig

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCRIPTS = ["quickstart", "sdxl", "custom_generator", "sft_finetune", "rl_finetune", "evaluate"]
# What the tiny generator fixture is taught to write, whatever the prompt.
TAUGHT = "lowres, ugly"


def _env() -> dict:
    env = dict(os.environ)
    # The subprocess imports the same negopt as this process (a checkout's src/ or the installed package).
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(negopt.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in [package_root, env.get("PYTHONPATH", "")] if p)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


def run(script: str, *args, timeout: int = 180) -> str:
    """Run ``examples/<script>.py`` with ``args``; returns its stdout, failing with its stderr if it fails."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{script}.py"), *map(str, args)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{script}.py exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc.stdout


def printed(stdout: str, label: str) -> str:
    """The value of a ``label: value`` line of a script's output."""
    lines = [line for line in stdout.splitlines() if line.startswith(label + ":")]
    assert len(lines) == 1, f"no single {label!r} line in:\n{stdout}"
    return lines[0].split(":", 1)[1].strip()


def arrows(stdout: str) -> list[tuple[str, str]]:
    """The ``prompt -> negative`` lines of a script's output."""
    return [tuple(line.split(" -> ", 1)) for line in stdout.splitlines() if " -> " in line]


def save_taught_generator(path: Path, steps: int = 60) -> str:
    """A tiny T5 trained in-process to write ``TAUGHT`` for any prompt, saved as a generator folder."""
    from tiny import tiny_t5

    model, tokenizer = tiny_t5()
    prompts = ["a cat", "a portrait photo of an old fisherman", "a city at night", "a bowl of fruit, oil painting"]
    inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    labels = tokenizer([TAUGHT] * len(prompts), return_tensors="pt").input_ids
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    model.train()
    for _ in range(steps):
        loss = model(**inputs, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    generator = NegOptGenerator(model, tokenizer, NegOptConfig(generation_kwargs={"max_new_tokens": 16}))
    generator.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    from negopt.rewards import AestheticMLP
    from tiny import save_tiny_t5
    from tiny_clip import save_tiny_image_classifier, trained_tiny_clip
    from tiny_pipelines import save_tiny_sd, tiny_sdxl

    root = tmp_path_factory.mktemp("models")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # models this small build faster on one thread of a shared CPU
    try:
        tiny_sdxl().save_pretrained(root / "sdxl")
        _, _, clip = trained_tiny_clip(root / "clip", steps=5)
        torch.manual_seed(0)
        AestheticMLP(embed_dim=16).eval().save_pretrained(root / "head")  # the tiny CLIP's embedding width
        paths = {
            "sd": save_tiny_sd(root / "sd"),
            "sdxl": str(root / "sdxl"),
            "t5": save_tiny_t5(root / "t5"),
            "generator": save_taught_generator(root / "generator"),
            "clip": clip,
            "head": str(root / "head"),
            "classifier": save_tiny_image_classifier(root / "classifier"),
        }
    finally:
        torch.set_num_threads(threads)
    return paths


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
    out = run(script, "--help", timeout=60)
    assert out.startswith("usage:") and "--help" in out
    assert "--model" in out or "--pipeline" in out  # every script takes its models as arguments


def test_quickstart_with_the_builtin(models, tmp_path):
    out = run("quickstart", "--pipeline", models["sd"], "--steps", 2, "--output", tmp_path / "a.png")
    negative = printed(out, "negative prompt")
    assert negative and "worst quality" in negative  # the built-in's first terms
    with Image.open(tmp_path / "a.png") as image:
        assert image.size == (64, 64)  # the tiny pipeline's default size


def test_quickstart_with_a_generator_and_a_size(models, tmp_path):
    args = ["--pipeline", models["sd"], "--generator", models["generator"], "--prompt", "a cat", "--seed", 3]
    out = run("quickstart", *args, "--steps", 1, "--height", 32, "--width", 32, "--output", tmp_path / "b.png")
    assert printed(out, "negative prompt") == TAUGHT
    with Image.open(tmp_path / "b.png") as image:
        assert image.size == (32, 32)


def test_sdxl_fills_both_slots(models, tmp_path):
    args = ["--pipeline", models["sdxl"], "--generator", models["generator"], "--negative-prompt", "easynegative"]
    out = run("sdxl", *args, "--steps", 2, "--output", tmp_path / "x.png")
    assert printed(out, "negative slots") == "negative_prompt, negative_prompt_2"
    assert printed(out, "negative prompt") == f"easynegative, {TAUGHT}"  # yours first, then the generated terms
    with Image.open(tmp_path / "x.png") as image:
        assert image.size == (64, 64)


def test_custom_generator_and_combine_modes(models, tmp_path):
    mine = "easynegative, (blurry:1.2)"
    out = run(
        "custom_generator", "--pipeline", models["sd"], "--negative-prompt", mine, "--steps", 1,
        "--output-dir", tmp_path,
    )  # fmt: skip
    sent: dict[str, dict[str, str]] = {}
    for left, negative in arrows(out):
        mode, prompt = left[1:].split("] ", 1)
        sent.setdefault(mode, {})[prompt] = negative
    assert list(sent) == ["merge", "user", "generated"] and all(len(v) == 3 for v in sent.values())
    photo, anime, painting = sent["generated"]
    assert all(negative == mine for negative in sent["user"].values())
    assert all(n.startswith(mine + ", worst quality") for n in sent["merge"].values())
    generated = sent["generated"]
    assert all(n.startswith("worst quality") and "easynegative" not in n for n in generated.values())
    # Style-aware: a photo gets drawn styles as negatives, a drawing gets photographic ones.
    assert "cartoon" in generated[photo] and "photo" not in generated[photo]
    assert "photo" in generated[anime] and "cartoon" not in generated[anime]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(
        f"{mode}-{i}.png" for mode in ("merge", "user", "generated") for i in range(3)
    )


def test_sft_finetune(models, tmp_path):
    pytest.importorskip("datasets")
    data = tmp_path / "pairs.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for i, subject in enumerate(["cat", "dog", "car", "house", "woman", "tree", "boat", "city"] * 3):
            negative = "lowres, blurry" if i % 2 else "watermark, text"
            f.write(json.dumps({"prompt": f"a photo of a {subject} number {i}", "negative_prompt": negative}) + "\n")
    output = tmp_path / "sft"
    prompts = ["a red cat", "a dark city at night"]
    out = run(
        "sft_finetune", "--model", models["t5"], "--dataset", data, "--output-dir", output, "--max-steps", 2,
        "--batch-size", 4, "--lora-r", 4, "--prompt", prompts[0], "--prompt", prompts[1],
    )  # fmt: skip
    assert "trained 2 steps" in out
    assert (output / "adapter_config.json").is_file() and (output / "negopt_config.json").is_file()
    generator = NegOptGenerator.from_pretrained(output)  # an adapter over the tiny base, as the script loaded it
    assert generator.is_seq2seq
    # Greedy decoding: the loaded folder writes exactly what the script printed.
    assert arrows(out) == list(zip(prompts, generator(prompts)))


def test_rl_finetune(models, tmp_path):
    output = tmp_path / "rl"
    out = run(
        "rl_finetune", "--generator", models["generator"], "--pipeline", models["sd"],
        "--reward", "aesthetic=1.0", "--reward", "clip=0.5", "--reward", "inception=0.5", "--normalize",
        "--clip-model", models["clip"], "--aesthetic-head", models["head"], "--inception-model", models["classifier"],
        "--output-dir", output, "--max-steps", 2, "--batch-size", 2, "--num-candidates", 2,
        "--max-new-tokens", 8, "--steps", 1, "--height", 32, "--width", 32,
    )  # fmt: skip
    assert "trained 2 steps" in out
    assert (output / "adapter_config.json").is_file()
    generator = NegOptGenerator.from_pretrained(output)
    pairs = arrows(out)
    assert len(pairs) == 2 and all(negative for _, negative in pairs)
    assert [negative for _, negative in pairs] == generator([prompt for prompt, _ in pairs])


def test_evaluate(models, tmp_path):
    pytest.importorskip("torchmetrics")
    prompts = [{"prompt": "a photo of red", "negative_prompt": "blurry"}, {"prompt": "a photo of blue"}]
    source = tmp_path / "prompts.jsonl"
    source.write_text("\n".join(json.dumps(p) for p in prompts), encoding="utf-8")
    output = tmp_path / "eval"
    out = run(
        "evaluate", "--pipeline", models["sd"], "--generator", f"tiny={models['generator']}", "--prompts", source,
        "--output-dir", output, "--steps", 1, "--metric", "clip", "--metric", "aesthetic",
        "--clip-model", models["clip"], "--aesthetic-head", models["head"], "--bootstrap", 10,
    )  # fmt: skip
    report = json.loads((output / "report.json").read_text(encoding="utf-8"))
    conditions = ["none", "dataset", "builtin", "tiny"]
    assert list(report["conditions"]) == conditions
    assert all(set(report["conditions"][c]) == {"clip_score", "aesthetic"} for c in conditions)
    for condition in conditions:
        assert f"| {condition} |" in out  # the printed table
    taught = NegOptGenerator.from_pretrained(models["generator"])
    assert report["per_prompt"]["tiny"]["negative_prompts"] == taught([p["prompt"] for p in prompts])
    assert report["per_prompt"]["dataset"]["negative_prompts"] == ["blurry", ""]  # a prompt without one gets ""
    assert (output / "grid.png").is_file() and (output / "metrics.png").is_file()
