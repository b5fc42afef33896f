"""negopt.eval and ``negopt eval`` on a tiny real Stable Diffusion pipeline and tiny real metric models."""

from __future__ import annotations

import json
import os
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from negopt.eval import PLOT_DPI, PLOT_PANEL_INCHES, InceptionScoreMetric, evaluate
from negopt.rewards import AestheticMLP, AestheticReward, CLIPScoreReward
from tiny_clip import ColorClassifier, save_tiny_image_classifier, trained_tiny_clip
from tiny_pipelines import save_tiny_sd, tiny_sd

PROMPTS = [
    {"prompt": "a photo of red", "negative_prompt": "blurry"},
    {"prompt": "a photo of blue", "negative_prompt": "lowres, watermark"},
    {"prompt": "a photo of green", "negative_prompt": ""},
    {"prompt": "a photo of yellow", "negative_prompt": "jpeg artifacts"},
]
STEPS = {"num_inference_steps": 2, "guidance_scale": 6.0}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    _, _, clip_dir = trained_tiny_clip(root / "clip", steps=10)
    torch.manual_seed(0)
    AestheticMLP(embed_dim=16).eval().save_pretrained(root / "head")
    return {"clip": clip_dir, "head": str(root / "head"), "root": root}


@pytest.fixture(scope="module")
def metrics(models):
    return {
        "aesthetic": AestheticReward(models["clip"], models["head"], local_files_only=True),
        "clip_score": CLIPScoreReward(models["clip"], local_files_only=True),
        "inception_score": InceptionScoreMetric(ColorClassifier(10.0).eval()),
    }


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return tiny_sd()


class CountingPipeline:
    """The real pipeline, called through: counts the images it is asked to render."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.images = 0

    def __call__(self, prompt, negative_prompt=None, **kwargs):  # a named negative slot, as negative_slots() asks
        self.images += len(prompt)
        return self.pipeline(prompt=prompt, negative_prompt=negative_prompt, **kwargs)


def constant(text):
    return lambda prompts: [text] * len(prompts)


@pytest.fixture(scope="module")
def report(pipe, metrics, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    return evaluate(
        pipe,
        PROMPTS,
        generators={"fixed": constant("blurry, deformed"), "empty": constant("")},
        metrics=metrics,
        output_dir=out,
        pipeline_kwargs=STEPS,
        batch_size=2,
        num_bootstrap=200,
        progress=False,
    )


def test_report_structure(report):
    out = os.path.dirname(report["files"]["report_json"])
    with open(report["files"]["report_json"], encoding="utf-8") as f:
        saved = json.load(f)
    conditions = ["none", "dataset", "fixed", "empty"]
    assert list(saved["conditions"]) == conditions
    for name in conditions:
        assert set(saved["conditions"][name]) == {"aesthetic", "clip_score", "inception_score"}
        for metric, entry in saved["conditions"][name].items():
            lo, hi = entry["ci95"]
            assert lo <= hi
            if metric != "inception_score":  # a mean lies inside its bootstrap interval
                assert lo - 1e-9 <= entry["mean"] <= hi + 1e-9
    assert set(saved["relative_to_none"]) == {"dataset", "fixed", "empty"}
    none_clip = saved["conditions"]["none"]["clip_score"]["mean"]
    fixed_clip = saved["conditions"]["fixed"]["clip_score"]["mean"]
    assert saved["relative_to_none"]["fixed"]["clip_score"] == pytest.approx((fixed_clip - none_clip) / none_clip)
    # The per-image scores average to the reported means; the dataset condition used the prompts' negatives.
    per = saved["per_prompt"]
    assert np.mean(per["fixed"]["aesthetic"]) == pytest.approx(saved["conditions"]["fixed"]["aesthetic"]["mean"])
    assert per["dataset"]["negative_prompts"] == ["blurry", "lowres, watermark", "", "jpeg artifacts"]
    assert per["none"]["negative_prompts"] == [None] * 4
    with open(report["files"]["report_md"], encoding="utf-8") as f:
        markdown = f.read()
    for name in conditions:
        assert f"| {name} |" in markdown
    # Each image is the pipeline's size, with its negative saved beside it.
    for name in conditions:
        for k, relative in enumerate(per[name]["images"]):
            with Image.open(os.path.join(out, relative)) as image:
                assert image.size == (64, 64)
            with open(os.path.join(out, relative[: -len(".png")] + ".json"), encoding="utf-8") as f:
                meta = json.load(f)
            assert meta["negative_prompt"] == per[name]["negative_prompts"][k] and meta["seed"] == k


def test_figures_open_at_their_size(report):
    with Image.open(report["files"]["grid"]) as grid:
        assert grid.width == 4 * 256  # four conditions, 256-pixel cells
        assert 4 * 256 < grid.height < 4 * (256 + 120) + 40  # four prompt rows, with text bands
    with Image.open(report["files"]["metrics_plot"]) as plot:
        assert plot.size == (3 * PLOT_PANEL_INCHES * PLOT_DPI, PLOT_PANEL_INCHES * PLOT_DPI)


def _images(report, condition):
    out = os.path.dirname(report["files"]["report_json"])
    return [
        np.asarray(Image.open(os.path.join(out, p)).convert("RGB")) for p in report["per_prompt"][condition]["images"]
    ]


def test_same_seed_per_prompt_across_conditions(report, pipe):
    none, empty, fixed = _images(report, "none"), _images(report, "empty"), _images(report, "fixed")
    # SD 1.x encodes "no negative prompt" as the empty string: a generator of "" changes nothing, to the pixel.
    assert all(np.array_equal(a, b) for a, b in zip(none, empty))
    assert report["conditions"]["empty"] == report["conditions"]["none"]
    assert any(not np.array_equal(a, b) for a, b in zip(none, fixed))  # a real negative does change them
    # Prompt i was rendered with seed 0 + i: the bare pipeline gives the same images.
    generators = [torch.Generator("cpu").manual_seed(i) for i in (0, 1)]
    direct = pipe(prompt=[p["prompt"] for p in PROMPTS[:2]], generator=generators, output_type="pil", **STEPS).images
    assert all(np.array_equal(np.asarray(a), b) for a, b in zip(direct, none[:2]))


def test_inception_score_is_torchmetrics_on_the_saved_images(report):
    from torchmetrics.image.inception import InceptionScore

    for condition in ("none", "fixed"):
        batch = torch.from_numpy(np.stack(_images(report, condition))).permute(0, 3, 1, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metric = InceptionScore(feature=ColorClassifier(10.0).eval(), splits=1)
            metric.update(batch)
            expected = float(metric.compute()[0])
        assert report["conditions"][condition]["inception_score"]["mean"] == pytest.approx(expected, rel=1e-5)


def test_guidance_off_evaluates_the_negatives_through_nag(pipe, metrics, tmp_path):
    """A distilled-style call (guidance_scale=1): NAG lets the negatives act, and the report says so; "cfg" keeps the
    old behaviour (a warning, and every condition the same images)."""
    common = dict(
        generators={"fixed": constant("blurry, deformed")},
        metrics={"clip_score": metrics["clip_score"]},
        pipeline_kwargs={"num_inference_steps": 2, "guidance_scale": 1.0},
        num_bootstrap=0,
        progress=False,
    )
    prompts = [p["prompt"] for p in PROMPTS[:2]]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no guidance warning, no "knob not used"
        nag = evaluate(pipe, prompts, output_dir=tmp_path / "nag", nag_scale=4.0, **common)
    assert nag["negative_guidance"] == "nag"
    assert nag["nag"] == {"nag_scale": 4.0, "nag_tau": 2.5, "nag_alpha": 0.38, "nag_end": 1.0}  # SD 1.x defaults
    assert all(not np.array_equal(a, b) for a, b in zip(_images(nag, "none"), _images(nag, "fixed")))
    with pytest.warns(UserWarning, match="guidance_scale=1.0 <= 1"):
        cfg = evaluate(pipe, prompts, output_dir=tmp_path / "cfg", negative_guidance="cfg", **common)
    assert cfg["negative_guidance"] is None and cfg["nag"] is None
    assert all(np.array_equal(a, b) for a, b in zip(_images(cfg, "none"), _images(cfg, "fixed")))


def test_resume_reuses_cached_images(pipe, metrics, tmp_path):
    class FailingGenerator:
        def __init__(self, fail_after):
            self.fail_after, self.seen = fail_after, 0

        def __call__(self, prompts):
            self.seen += len(prompts)
            if self.seen > self.fail_after:
                raise RuntimeError("interrupted")
            return [f"negative for {p}" for p in prompts]

    counting = CountingPipeline(pipe)
    common = dict(metrics=metrics, output_dir=tmp_path, pipeline_kwargs=STEPS, batch_size=1, progress=False)
    prompts = [p["prompt"] for p in PROMPTS]
    with pytest.raises(RuntimeError, match="interrupted"):
        evaluate(counting, prompts, generators={"gen": FailingGenerator(2)}, num_bootstrap=0, **common)
    # Prompts 0 and 1 in both conditions, then prompt 2's "none" image before the generator failed.
    assert counting.images == 5
    counting.images = 0
    resumed = evaluate(counting, prompts, generators={"gen": FailingGenerator(100)}, num_bootstrap=0, **common)
    assert counting.images == 3  # prompt 3's "none", prompts 2 and 3 for "gen": nothing rendered twice
    counting.images = 0
    again = evaluate(counting, prompts, generators={"gen": FailingGenerator(100)}, num_bootstrap=0, **common)
    assert counting.images == 0 and again["conditions"] == resumed["conditions"]


def test_dataset_prompts_and_bad_inputs(pipe, metrics, tmp_path):
    import datasets

    dataset = datasets.Dataset.from_dict({"prompt": ["a photo of red"], "negative_prompt": ["blurry"]})
    report = evaluate(
        pipe, dataset, metrics={"clip_score": metrics["clip_score"]}, output_dir=tmp_path / "ds",
        pipeline_kwargs=STEPS, num_bootstrap=10, progress=False, include_none=False,
    )  # fmt: skip
    assert list(report["conditions"]) == ["dataset"] and report["relative_to_none"] == {}
    common = dict(metrics=metrics, output_dir=tmp_path / "bad", progress=False)
    with pytest.raises(ValueError, match="taken by a built-in condition"):
        evaluate(pipe, ["a"], generators={"none": constant("x")}, **common)
    with pytest.raises(ValueError, match="pipeline_kwargs sets \\['negative_prompt'\\]"):
        evaluate(pipe, ["a"], pipeline_kwargs={"negative_prompt": "x"}, **common)
    with pytest.raises(ValueError, match="prompts is empty"):
        evaluate(pipe, [], **common)
    with pytest.raises(TypeError, match="single string"):
        evaluate(pipe, "a photo", **common)
    with pytest.raises(ValueError, match="name 'my gen'"):
        evaluate(pipe, ["a"], generators={"my gen": constant("x")}, **common)
    with pytest.raises(ValueError, match="returned 2 negatives for 1 prompts"):
        evaluate(pipe, ["a"], generators={"g": lambda prompts: ["x", "y"]}, **common)
    with pytest.raises(ValueError, match="no conditions"):
        evaluate(pipe, ["a"], include_none=False, **common)


def test_cli_eval_from_saved_folders(models, tmp_path, capsys):
    from negopt.cli import main

    pipeline_dir = save_tiny_sd(tmp_path / "sd")
    classifier_dir = save_tiny_image_classifier(tmp_path / "vit")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps(p) for p in PROMPTS), encoding="utf-8")
    out = tmp_path / "out"
    argv = [
        "eval", "--pipeline", pipeline_dir, "--prompts", str(prompts), "--num-prompts", "3", "--output-dir", str(out),
        "--no-builtin", "--steps", "2", "--clip-model", models["clip"], "--aesthetic-head", models["head"],
        "--aesthetic-clip-model", models["clip"], "--inception-model", classifier_dir, "--local-files-only",
        "--bootstrap", "20",
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| none |" in printed and "| dataset |" in printed and "report.json" in printed
    saved = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert saved["num_prompts"] == 3 and list(saved["conditions"]) == ["none", "dataset"]
    assert set(saved["conditions"]["none"]) == {"aesthetic", "clip_score", "inception_score"}
    # Usage errors exit 2 with one line.
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--pipeline", pipeline_dir, "--prompts", str(prompts), "--output-dir", str(out),
              "--generator", "nameonly"])  # fmt: skip
    assert exit_info.value.code == 2
    assert "NAME=PATH_OR_ID" in capsys.readouterr().err


def test_cli_eval_with_the_builtin(models, tmp_path):
    from negopt.builtin import BuiltinGenerator
    from negopt.cli import main

    pipeline_dir = save_tiny_sd(tmp_path / "sd")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of red\na portrait of an old fisherman\n", encoding="utf-8")
    argv = [
        "eval", "--pipeline", pipeline_dir, "--prompts", str(prompts), "--output-dir", str(tmp_path / "out"),
        "--steps", "2", "--metric", "clip", "--clip-model", models["clip"], "--local-files-only", "--bootstrap", "0",
    ]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert list(saved["conditions"]) == ["none", "builtin"]
    negatives = saved["per_prompt"]["builtin"]["negative_prompts"]
    assert all(negatives) and negatives == BuiltinGenerator()(["a photo of red", "a portrait of an old fisherman"])


def test_cli_eval_with_a_saved_generator(models, tmp_path):
    from negopt.cli import main
    from negopt.config import DEFAULT_GENERATION_KWARGS, NegOptConfig
    from negopt.generator import NegOptGenerator
    from tiny import save_tiny_t5

    generator_dir = save_tiny_t5(tmp_path / "gen", seed=2)  # seed 2 writes text for these prompts, not ""
    NegOptConfig(generation_kwargs={**DEFAULT_GENERATION_KWARGS, "max_new_tokens": 8}).save_pretrained(generator_dir)
    pipeline_dir = save_tiny_sd(tmp_path / "sd")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of red\na photo of blue\n", encoding="utf-8")
    argv = [
        "eval", "--pipeline", pipeline_dir, "--prompts", str(prompts), "--output-dir", str(tmp_path / "out"),
        "--no-builtin", "--generator", f"tiny={generator_dir}", "--steps", "2", "--metric", "clip",
        "--clip-model", models["clip"], "--local-files-only", "--bootstrap", "0",
    ]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert list(saved["conditions"]) == ["none", "tiny"]
    negatives = saved["per_prompt"]["tiny"]["negative_prompts"]
    # The saved generator's own (non-empty) output, so a report that ignored --generator could not match it.
    assert all(negatives) and negatives == NegOptGenerator.from_pretrained(generator_dir)(
        ["a photo of red", "a photo of blue"]
    )


# ------------------------------------------------------------------------------------------- negative slot
def test_a_pipeline_without_a_negative_slot_is_refused(metrics, tmp_path, capsys):
    from negopt.cli import main
    from tiny_pipelines import tiny_lcm

    lcm = tiny_lcm()  # its __call__ takes **kwargs and would swallow negative_prompt: same images for every negative
    with pytest.raises(ValueError, match="LatentConsistencyModelPipeline cannot use a negative prompt"):
        evaluate(lcm, ["a"], generators={"g": constant("blurry")}, metrics=metrics, output_dir=tmp_path / "e")
    assert not (tmp_path / "e" / "images").exists()  # refused before rendering anything
    lcm.save_pretrained(tmp_path / "lcm")
    prompts = tmp_path / "p.txt"
    prompts.write_text("a photo of red\n", encoding="utf-8")
    with pytest.raises(SystemExit) as e:
        main(["eval", "--pipeline", str(tmp_path / "lcm"), "--prompts", str(prompts), "--output-dir",
              str(tmp_path / "out"), "--local-files-only"])  # fmt: skip
    err = capsys.readouterr().err  # progress bars of the save and the load, then the error
    assert e.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("negopt eval: error: ") and "cannot use a negative prompt" in err


# ------------------------------------------------------------------------------------ Inception Score interval
def _is_reference(logits: np.ndarray) -> float:
    """The Inception Score written out: exp(mean_x KL(p(y|x) || p(y))), p(y) the set's mean of p(y|x)."""
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    marginal = p.mean(axis=0)
    return float(np.exp(np.mean(np.sum(p * (np.log(p) - np.log(marginal)), axis=1))))


def _synthetic_logits(n: int, classes: int = 32, seed: int = 0) -> np.ndarray:
    """Confident predictions spread over many classes: a diverse set, whose score duplicates would lower most."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), rng.integers(0, classes, n)] += 6.0
    return logits


def test_one_progress_bar_and_no_sequence_length_message(metrics, tmp_path, capfd, tokenizer_log):
    bare = tiny_sd()  # a fresh tokenizer: transformers logs its sequence-length message once per tokenizer
    bare.set_progress_bar_config(disable=False, leave=True)  # the user's own setting, shown on every bare call
    long_prompt = "a photo of red " + " ".join(["abcd"] * 50)  # 211 tokens: over CLIP's 77
    prompts = [{"prompt": long_prompt, "negative_prompt": "blurry"}, {"prompt": "a photo of blue"}]
    evaluate(
        bare,
        prompts,
        generators={"fixed": constant("blurry, deformed")},
        metrics={"clip_score": metrics["clip_score"]},
        output_dir=tmp_path / "eval",
        pipeline_kwargs=STEPS,
        batch_size=1,
    )
    err = capfd.readouterr().err
    bars = [line for line in re.split(r"[\r\n]", err) if re.search(r"\d+%\|", line)]
    # One bar, negopt's over the prompts: before, each of the 6 render calls drew the pipeline's own 2-step bar.
    assert bars and all(line.startswith("negopt eval") for line in bars), bars
    assert not any("Token indices sequence length" in m for m in tokenizer_log)  # diffusers' untruncated count
    assert bare._progress_bar_config == {"disable": False, "leave": True}  # the user's setting is put back
    # Without evaluate, the same pipeline shows its bar: the setting was only lifted for the renders.
    bare("a photo of red", num_inference_steps=2, height=32, width=32)
    assert re.search(r"2/2", capfd.readouterr().err)


def test_inception_interval_is_the_half_sampling_jackknife_written_out():
    import itertools

    from negopt.eval import set_statistic_interval

    metric = InceptionScoreMetric(ColorClassifier(10.0).eval())
    logits = _synthetic_logits(6)
    tensor = torch.from_numpy(logits).float()
    got = set_statistic_interval(lambda idx: metric.score(tensor[torch.from_numpy(idx)]), 6, 100, seed=0)
    # Independent reference: every half-sample of the 6 items (C(6, 3) = 20), the delete-d jackknife variance
    # r / (d * S) * sum (theta_s - mean theta)^2 with r = d = 3, and the normal 97.5% quantile 1.959963984540054.
    thetas = np.array([_is_reference(logits[list(s)]) for s in itertools.combinations(range(6), 3)])
    variance = 3 / (3 * 20) * np.sum((thetas - thetas.mean()) ** 2)
    point = _is_reference(logits)
    assert got["mean"] == pytest.approx(point, rel=1e-5)
    assert got["ci95"] == pytest.approx(
        [point - 1.959963984540054 * variance**0.5, point + 1.959963984540054 * variance**0.5], rel=1e-4
    )


def test_inception_interval_covers_the_point_estimate_where_the_bootstrap_does_not():
    from negopt.eval import set_statistic_interval

    metric = InceptionScoreMetric(ColorClassifier(10.0).eval())
    excluded = 0
    for seed in range(5):
        logits = _synthetic_logits(40, seed=seed)
        tensor = torch.from_numpy(logits).float()
        point = _is_reference(logits)
        # The old interval: percentile bootstrap, resampled with replacement. Repeated images sharpen the class
        # marginal, so the resampled scores sit below the point estimate.
        rng = np.random.default_rng(seed)
        boot = [_is_reference(logits[rng.integers(0, 40, 40)]) for _ in range(200)]
        excluded += np.percentile(boot, 97.5) < point
        got = set_statistic_interval(lambda idx, x=tensor: metric.score(x[torch.from_numpy(idx)]), 40, 200, seed=seed)
        lo, hi = got["ci95"]
        assert lo < got["mean"] < hi and got["mean"] == pytest.approx(point, rel=1e-5)
        assert hi - lo > 0.01 * point  # a real interval, not a point
    assert excluded >= 4  # the bias this replaces: the bootstrap interval missed the estimate on these sets


def test_eval_config_checks_its_values(tmp_path):
    from negopt.eval import EvalConfig

    with pytest.raises(ValueError, match="num_inference_steps.*0"):
        EvalConfig(output_dir=str(tmp_path), pipeline_kwargs={"num_inference_steps": 0})
    with pytest.raises(ValueError, match="batch_size"):
        EvalConfig(output_dir=str(tmp_path), batch_size=0)
    assert EvalConfig.from_dict({"output_dir": "o", "num_bootstrap": "7", "progress": "no"}).num_bootstrap == 7
    with pytest.raises(ValueError, match="unknown EvalConfig keys \\['seeds'\\]"):
        EvalConfig.from_dict({"output_dir": "o", "seeds": 1})
