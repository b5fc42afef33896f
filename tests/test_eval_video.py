"""negopt.eval on a video pipeline (a tiny real Wan 2.1): image metrics on sampled frames, averaged per video, a frame
strip per condition in the grid, and the on-disk cache."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from negopt import BuiltinGenerator
from negopt.eval import EvalConfig, InceptionScoreMetric, evaluate
from negopt.eval.figures import GRID_CAPTION_LINES, GRID_PAD, GRID_PROMPT_LINES
from negopt.eval.rendering import frame_strip, sample_frames, split_strip
from negopt.rewards import AestheticMLP, AestheticReward, CLIPScoreReward
from tiny_clip import ColorClassifier, trained_tiny_clip

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["a red fox running through fresh snow", "a blue boat on a calm lake", "a green parrot taking off"]
CALL = {"height": 16, "width": 16, "num_frames": 9, "num_inference_steps": 2, "guidance_scale": 5.0}
FRAMES = 3  # of 9: frames 0, 4 and 8


@pytest.fixture(scope="module")
def wan():
    from tiny_video import tiny_wan

    return tiny_wan()


@pytest.fixture(scope="module")
def metrics(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    _, _, clip_dir = trained_tiny_clip(root / "clip", steps=10)
    torch.manual_seed(0)
    AestheticMLP(embed_dim=16).eval().save_pretrained(root / "head")
    return {
        "aesthetic": AestheticReward(clip_dir, str(root / "head"), local_files_only=True),
        "clip_score": CLIPScoreReward(clip_dir, local_files_only=True),
        "inception_score": InceptionScoreMetric(ColorClassifier(10.0).eval()),
    }


class CountingPipeline:
    """The real pipeline, called through: counts the videos it is asked to render."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.videos = 0

    def __call__(self, prompt, negative_prompt=None, num_frames=81, **kwargs):  # a video pipeline's signature
        self.videos += len(prompt)
        return self.pipeline(prompt=prompt, negative_prompt=negative_prompt, num_frames=num_frames, **kwargs)


@pytest.fixture(scope="module")
def run(wan, metrics, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    counting = CountingPipeline(wan)
    report = evaluate(
        counting,
        PROMPTS,
        generators={"builtin": BuiltinGenerator(kind="video")},
        metrics=metrics,
        output_dir=out,
        pipeline_kwargs=CALL,
        video_frames=FRAMES,
        batch_size=2,
        num_bootstrap=50,
        progress=False,
    )
    return report, out, counting


def test_frame_sampling_rule():
    assert sample_frames(9, 3) == [0, 4, 8]
    assert sample_frames(81, 3) == [0, 40, 80]
    assert sample_frames(81, 5) == [0, 20, 40, 60, 80]
    assert sample_frames(10, 4) == [0, 3, 6, 9]
    assert sample_frames(9, 1) == [4]  # the middle frame
    assert sample_frames(4, 8) == [0, 1, 2, 3]  # every frame, once
    frames = [Image.new("RGB", (4, 2), (10 * j, 0, 0)) for j in range(3)]
    strip = frame_strip(frames)
    assert strip.size == (12, 2)
    assert [f.tobytes() for f in split_strip(strip, 3)] == [f.tobytes() for f in frames]
    with pytest.raises(ValueError, match="does not split into 5 frames"):
        split_strip(strip, 5)
    with pytest.raises(ValueError, match="video_frames must be an int >= 1, got 0"):
        EvalConfig(output_dir="out", video_frames=0)


def test_report_is_written_with_the_video_settings(run):
    report, out, counting = run
    assert counting.videos == 2 * len(PROMPTS)  # none and builtin, each video rendered once
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        on_disk = json.load(f)
    assert on_disk["conditions"] == report["conditions"]
    assert report["video"] == {"frames_scored": FRAMES, "frame_indices": [0, 4, 8], "num_frames": 9}
    assert set(report["conditions"]) == {"none", "builtin"}
    assert all("flickering" in n or "static" in n for n in report["per_prompt"]["builtin"]["negative_prompts"])
    for name in ("report.md", "grid.png", "metrics.png"):
        assert os.path.isfile(os.path.join(out, name))


def test_strips_are_the_bare_pipelines_frames(run, wan):
    """Each strip holds frames 0, 4 and 8 of the video the bare pipeline makes with the same seed and negative."""
    report, out, _ = run
    i = 1
    negative = report["per_prompt"]["builtin"]["negative_prompts"][i]
    video = wan(
        PROMPTS[i], negative_prompt=negative, generator=torch.Generator().manual_seed(i), output_type="pil", **CALL
    ).frames[0]
    with Image.open(os.path.join(out, report["per_prompt"]["builtin"]["images"][i])) as strip:
        assert strip.size == (16 * FRAMES, 16)
        frames = split_strip(strip.convert("RGB"), FRAMES)
    for frame, j in zip(frames, [0, 4, 8]):
        np.testing.assert_array_equal(np.asarray(frame), np.asarray(video[j].convert("RGB")))


def test_a_videos_score_is_the_mean_of_its_frames_scores(run, metrics):
    report, out, _ = run
    for name in ("none", "builtin"):
        per_prompt = report["per_prompt"][name]
        all_frames = []
        for i, prompt in enumerate(PROMPTS):
            with Image.open(os.path.join(out, per_prompt["images"][i])) as strip:
                frames = split_strip(strip.convert("RGB"), FRAMES)
            all_frames += frames
            negative = per_prompt["negative_prompts"][i] or ""
            for metric_name in ("aesthetic", "clip_score"):
                by_hand = [
                    float(metrics[metric_name](images=[f], prompts=[prompt], negative_prompts=[negative])[0])
                    for f in frames
                ]
                assert per_prompt["frame_scores"][metric_name][i] == pytest.approx(by_hand, rel=1e-5, abs=1e-6)
                assert per_prompt[metric_name][i] == pytest.approx(np.mean(by_hand), rel=1e-5, abs=1e-6)
        summary = report["conditions"][name]
        assert summary["clip_score"]["mean"] == pytest.approx(np.mean(per_prompt["clip_score"]), rel=1e-9)
        # The Inception Score is a statistic of the set: here, of every frame kept of every video.
        inception = metrics["inception_score"]
        by_hand = inception.score(inception.logits(all_frames))
        assert summary["inception_score"]["mean"] == pytest.approx(by_hand, rel=1e-6)


def test_grid_shows_a_frame_strip_per_condition(run):
    report, out, _ = run
    cell = EvalConfig(output_dir="x").grid_cell_size
    with Image.open(os.path.join(out, "grid.png")) as grid:
        width, height = grid.size
        pixels = np.asarray(grid.convert("RGB"))
    assert width == 2 * FRAMES * cell  # two conditions, each a strip of three square frames, cell pixels high
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default()
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), "Ag", font=font)
    line = bottom - top + 3
    row = (GRID_PROMPT_LINES * line + 2 * GRID_PAD) + cell + (GRID_CAPTION_LINES * line + 2 * GRID_PAD)
    assert height == line + 2 * GRID_PAD + len(PROMPTS) * row
    # The first row's "builtin" cell is its strip, scaled: the middle frame's pixels sit in the middle third.
    y0 = line + 2 * GRID_PAD + GRID_PROMPT_LINES * line + 2 * GRID_PAD
    with Image.open(os.path.join(out, report["per_prompt"]["builtin"]["images"][0])) as strip:
        expected = np.asarray(strip.convert("RGB").resize((FRAMES * cell, cell)))
    np.testing.assert_array_equal(pixels[y0 : y0 + cell, FRAMES * cell : 2 * FRAMES * cell], expected)


def test_the_cache_answers_a_rerun_and_not_another_frame_count(run, wan, metrics):
    report, out, _ = run
    again = CountingPipeline(wan)
    kwargs = dict(metrics=metrics, output_dir=out, pipeline_kwargs=CALL, batch_size=2, num_bootstrap=50)
    kwargs["progress"] = False
    builtin = {"builtin": BuiltinGenerator(kind="video")}
    rerun = evaluate(again, PROMPTS, generators=builtin, video_frames=FRAMES, **kwargs)
    assert again.videos == 0  # every strip read back from disk
    assert rerun["conditions"] == report["conditions"]
    other = evaluate(again, PROMPTS, include_none=True, video_frames=2, **kwargs)
    assert again.videos == len(PROMPTS)  # two frames a strip is another strip: rendered again
    with Image.open(os.path.join(out, other["per_prompt"]["none"]["images"][0])) as strip:
        assert strip.size == (32, 16)


def test_cli_eval_on_a_saved_video_pipeline(wan, tmp_path, capsys):
    from negopt.cli import main
    from tiny_clip import save_tiny_image_classifier

    wan.save_pretrained(tmp_path / "wan")
    _, _, clip_dir = trained_tiny_clip(tmp_path / "clip", steps=2)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS[:2]), encoding="utf-8")
    out = tmp_path / "out"
    argv = [
        "eval", "--pipeline", str(tmp_path / "wan"), "--prompts", str(prompts), "--output-dir", str(out),
        "--steps", "1", "--height", "16", "--width", "16", "--num-frames", "5", "--video-frames", "2",
        "--metric", "clip", "--metric", "inception", "--clip-model", clip_dir,
        "--inception-model", save_tiny_image_classifier(tmp_path / "vit"), "--local-files-only", "--bootstrap", "10",
    ]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert saved["pipeline"] == "WanPipeline" and list(saved["conditions"]) == ["none", "builtin"]
    assert saved["video"] == {"frames_scored": 2, "frame_indices": [0, 4], "num_frames": 5}
    assert "flickering" in saved["per_prompt"]["builtin"]["negative_prompts"][0]  # the built-in wrote for video
    with Image.open(out / saved["per_prompt"]["builtin"]["images"][0]) as strip:
        assert strip.size == (32, 16)
