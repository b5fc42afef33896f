"""Rewards on tiny real models with known answers: CLIP score, aesthetics, Inception terms, the composite."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest
import torch

from negopt.rewards import (
    AestheticMLP,
    AestheticReward,
    CLIPScoreReward,
    CompositeReward,
    InceptionReward,
    PickScoreReward,
    build_reward,
    load_reward,
    parse_reward_spec,
    parse_reward_specs,
)
from negopt.rewards._common import to_uint8_arrays
from tiny_clip import COLORS, ColorClassifier, color_image, save_tiny_image_classifier, trained_tiny_clip

CAPTIONS = [f"a photo of {name}" for name in COLORS]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip")
    model, processor, path = trained_tiny_clip(path)
    return path


@pytest.fixture(scope="module")
def clip_reward(clip_dir):
    return CLIPScoreReward(clip_dir, local_files_only=True)


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory):
    torch.manual_seed(0)
    head = AestheticMLP(embed_dim=16).eval()
    path = tmp_path_factory.mktemp("head")
    head.save_pretrained(path)
    return str(path)


def color_batch(names, noise=0.0):
    rng = np.random.default_rng(1)
    return [color_image(n, noise=noise, rng=rng) for n in names]


# ------------------------------------------------------------------------------------------------------ images
def test_image_forms_convert_to_the_same_arrays():
    images = color_batch(["red", "blue"], noise=20.0)
    arrays = to_uint8_arrays(images)
    as_np = np.stack(arrays).astype(np.float32) / 255.0  # diffusers output_type="np"
    as_pt = torch.from_numpy(as_np).permute(0, 3, 1, 2)  # diffusers output_type="pt"
    for other in (to_uint8_arrays(as_np), to_uint8_arrays(as_pt), to_uint8_arrays(np.stack(arrays))):
        assert all(np.array_equal(a, b) for a, b in zip(arrays, other))


def test_image_inputs_are_checked():
    with pytest.raises(ValueError, match=r"expected \[0, 1\]"):
        to_uint8_arrays(np.full((1, 8, 8, 3), 2.0, dtype=np.float32))
    with pytest.raises(TypeError, match="images must be"):
        to_uint8_arrays("red.png")
    with pytest.raises(ValueError, match=r"shape \(3, 8, 8\); expected a batch \(N, C, H, W\)"):
        to_uint8_arrays(torch.zeros(3, 8, 8))


# -------------------------------------------------------------------------------------------------------- CLIP
def test_clip_score_is_highest_for_the_matching_caption(clip_reward):
    for name in COLORS:
        images = color_batch([name] * len(CAPTIONS), noise=8.0)
        scores = clip_reward(images=images, prompts=CAPTIONS)
        best = CAPTIONS[int(np.argmax(scores))]
        assert best == f"a photo of {name}", (name, scores)
        assert all(0.0 <= s <= 100.0 for s in scores)


def test_clip_score_is_100_times_clipped_cosine(clip_reward, clip_dir):
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(clip_dir).eval()
    processor = CLIPProcessor.from_pretrained(clip_dir)
    images = color_batch(["red", "green", "blue"], noise=30.0)
    prompts = ["a photo of red", "a photo of blue", "a photo of blue"]
    with torch.no_grad():
        pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        text = processor.tokenizer(prompts, padding=True, return_tensors="pt")
        image_embeds = model.get_image_features(pixel_values=pixels)
        text_embeds = model.get_text_features(**text)
        image_embeds = getattr(image_embeds, "pooler_output", image_embeds)
        text_embeds = getattr(text_embeds, "pooler_output", text_embeds)
        cosine = torch.nn.functional.cosine_similarity(image_embeds, text_embeds)
    expected = (100 * cosine).clamp(min=0).tolist()
    assert clip_reward(images=images, prompts=prompts) == pytest.approx(expected, abs=1e-3)
    # The same reward built from the objects, and the same images as a diffusers "pt" batch.
    from_objects = CLIPScoreReward(model, processor)
    as_pt = torch.from_numpy(np.stack(to_uint8_arrays(images)).astype(np.float32) / 255).permute(0, 3, 1, 2)
    assert from_objects(images=as_pt, prompts=prompts) == pytest.approx(expected, abs=1e-3)


def test_clip_score_truncates_long_prompts(clip_reward):
    image = color_batch(["red"])
    long_prompt = "a photo of red " + "very " * 100  # far beyond 77 tokens
    score = clip_reward(images=image, prompts=[long_prompt])  # the text model has 77 positions: no crash
    tokenizer = clip_reward.tokenizer
    ids = tokenizer(long_prompt, truncation=True, max_length=77)["input_ids"]
    assert len(ids) == 77
    prefix = tokenizer.decode(ids, skip_special_tokens=True)
    assert score == pytest.approx(clip_reward(images=image, prompts=[prefix]), abs=1e-4)
    assert score != pytest.approx(clip_reward(images=image, prompts=["a photo of red"]), abs=1e-2)


def test_pickscore_is_logit_scale_times_cosine(clip_dir):
    reward = PickScoreReward(clip_dir, clip_dir, local_files_only=True)
    images = color_batch(["red", "blue"])
    prompts = ["a photo of red", "a photo of red"]
    scale = float(reward.model.logit_scale.detach().exp())
    expected = (scale * reward.cosine(images, prompts)).tolist()
    scores = reward(images=images, prompts=prompts)
    assert scores == pytest.approx(expected)
    assert scores[0] > scores[1]


def test_reward_calls_check_lengths(clip_reward, head_dir, clip_dir):
    images = color_batch(["red", "blue"])
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        clip_reward(images=images, prompts=["a photo of red"])
    with pytest.raises(ValueError, match="prompts is None"):
        clip_reward(images=images)
    aesthetic = AestheticReward(clip_dir, head_dir, local_files_only=True)
    with pytest.raises(ValueError, match="2 images but 3 negative_prompts"):
        aesthetic(images=images, negative_prompts=["a", "b", "c"])


def test_clip_reward_missing_folder_names_it(tmp_path):
    with pytest.raises(OSError, match="cannot load the CLIP model"):
        CLIPScoreReward(str(tmp_path / "missing"), local_files_only=True)


# --------------------------------------------------------------------------------------------------- aesthetic
def test_aesthetic_equals_mlp_on_normalised_embeddings(clip_dir, head_dir):
    from transformers import CLIPModel

    reward = AestheticReward(clip_dir, head_dir, local_files_only=True)
    images = color_batch(list(COLORS), noise=25.0)
    model = CLIPModel.from_pretrained(clip_dir).eval()
    head = AestheticMLP.from_pretrained(head_dir)
    with torch.no_grad():
        pixels = reward.image_processor(images=images, return_tensors="pt")["pixel_values"]
        embeds = model.get_image_features(pixel_values=pixels)
        embeds = getattr(embeds, "pooler_output", embeds)
        expected = head(embeds / embeds.norm(dim=-1, keepdim=True))[:, 0].tolist()
    scores = reward(images=images, prompts=CAPTIONS)
    assert scores == pytest.approx(expected, abs=1e-5)
    assert len(set(np.round(scores, 6))) == len(images)  # the score depends on the image
    # The head passed as a module, and the CLIP model as an object, give the same scores.
    same = AestheticReward(model, head, image_processor=clip_dir)
    assert same(images=images) == pytest.approx(expected, abs=1e-5)


def test_aesthetic_head_files(tmp_path, head_dir):
    from safetensors.torch import load_file, save_file

    state = load_file(os.path.join(head_dir, "model.safetensors"))
    reference = AestheticMLP.from_pretrained(head_dir)
    x = torch.nn.functional.normalize(torch.randn(3, 16), dim=-1)
    # Keys without the "layers." prefix, in a folder with another file name.
    bare = tmp_path / "bare"
    bare.mkdir()
    save_file({k.removeprefix("layers."): v for k, v in state.items()}, str(bare / "head.safetensors"))
    assert torch.allclose(AestheticMLP.from_pretrained(bare)(x), reference(x))
    # A pickled .pth is refused by default, with the conversion one-liner; loads on opt-in.
    pth = tmp_path / "head.pth"
    torch.save(state, pth)
    with pytest.raises(ValueError, match="st.save_file"):
        AestheticMLP.from_pretrained(pth)
    assert torch.allclose(AestheticMLP.from_pretrained(pth, use_safetensors=False)(x), reference(x))
    # Wrong keys and missing files are named.
    wrong = tmp_path / "wrong.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(wrong))
    with pytest.raises(ValueError, match="not an improved-aesthetic-predictor head"):
        AestheticMLP.from_pretrained(wrong)
    with pytest.raises(FileNotFoundError, match="neither a file, a folder"):
        AestheticMLP.from_pretrained(str(tmp_path / "missing" / "dir"))
    with pytest.raises(FileNotFoundError, match="not in the local hub cache"):  # the tests run offline
        AestheticMLP.from_pretrained("someone/no-such-head", cache_dir=str(tmp_path / "cache"))


# --------------------------------------------------------------------------------------------------- inception
def test_inception_terms_separate_confident_diverse_from_uniform():
    images = color_batch(["red", "green", "blue"])
    confident = InceptionReward(ColorClassifier(30.0).eval())(images=images)
    uniform = InceptionReward(ColorClassifier(0.0).eval())(images=images)
    assert uniform == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)
    assert min(confident) > 0.9  # close to log 3 = 1.10: each image its own class, all three classes present
    assert math.exp(np.mean(confident)) > 2.5
    # Confident but not diverse: the same class for every image scores 0 too.
    same = InceptionReward(ColorClassifier(30.0).eval())(images=color_batch(["red"] * 3))
    assert same == pytest.approx([0.0] * 3, abs=1e-6)


def test_inception_mean_term_exponentiated_is_torchmetrics_inception_score():
    from torchmetrics.image.inception import InceptionScore

    images = color_batch(["red", "green", "blue", "yellow", "red"], noise=40.0)
    classifier = ColorClassifier(8.0).eval()
    terms = InceptionReward(classifier)(images=images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns that it keeps features in memory
        metric = InceptionScore(feature=classifier, splits=1)
    batch = torch.from_numpy(np.stack(to_uint8_arrays(images))).permute(0, 3, 1, 2)
    metric.update(batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the std of one split is undefined
        score = float(metric.compute()[0])
    assert math.exp(np.mean(terms)) == pytest.approx(score, rel=1e-5)


def test_inception_uniform_marginal_and_batch_of_one():
    classifier = ColorClassifier(30.0).eval()
    with pytest.warns(UserWarning, match="batch of one"):
        assert InceptionReward(classifier)(images=color_batch(["red"])) == pytest.approx([0.0], abs=1e-6)
    uniform = InceptionReward(classifier, marginal="uniform")(images=color_batch(["red"]))
    assert uniform[0] == pytest.approx(math.log(3), abs=1e-3)  # a confident image is log K from uniform
    with pytest.raises(ValueError, match="marginal"):
        InceptionReward(classifier, marginal="global")


def test_inception_with_a_transformers_classifier_folder(tmp_path):
    path = save_tiny_image_classifier(tmp_path / "vit")
    reward = InceptionReward(path, local_files_only=True)
    scores = reward(images=color_batch(list(COLORS), noise=30.0))
    assert len(scores) == 4 and all(s >= -1e-6 for s in scores)
    assert reward.logits(color_batch(["red"])).shape == (1, 5)


# --------------------------------------------------------------------------------------------------- composite
def _constant(values):
    def reward(images=None, prompts=None, negative_prompts=None, **kwargs):
        return list(values[: len(images)])

    return reward


def test_composite_weights_and_terms():
    images = color_batch(["red", "green"])
    composite = CompositeReward({"a": _constant([1.0, 2.0]), "b": _constant([10.0, 30.0])}, {"a": 2.0, "b": 0.5})
    totals, terms = composite.score(images=images, return_terms=True)
    assert totals == pytest.approx([2 * 1 + 0.5 * 10, 2 * 2 + 0.5 * 30])
    assert terms == {"a": [1.0, 2.0], "b": [10.0, 30.0]} == composite.last_terms
    # A zero weight leaves its term out (not computed).
    calls = []

    def counted(images=None, **kwargs):
        calls.append(1)
        return [0.0] * len(images)

    composite = CompositeReward({"a": _constant([1.0, 2.0]), "z": counted}, {"a": 1.0, "z": 0.0})
    assert composite(images=images) == [1.0, 2.0] and not calls and "z" not in composite.last_terms


def test_composite_normalisation_is_running_standardisation():
    batches = [[1.0, 3.0], [5.0, 7.0, 11.0]]
    composite = CompositeReward({"a": lambda images=None, **k: list(images)}, normalize=True)
    seen = []
    for batch in batches:
        out = composite(images=np.array(batch))  # a plain callable may take any images
        seen += batch
        mean, std = np.mean(seen), np.std(seen)
        assert out == pytest.approx([(v - mean) / (std + composite.eps) for v in batch])
        assert composite.last_normalized["a"] == pytest.approx(out)
    state = composite.state_dict()
    frozen = CompositeReward({"a": lambda images=None, **k: list(images)}, normalize=True)
    frozen.load_state_dict(state)
    assert frozen.score(images=np.array([2.0]), update_stats=False) == pytest.approx([(2.0 - mean) / (std + 1e-6)])
    assert frozen.stats["a"].count == 5


@pytest.mark.parametrize(
    ("weights", "error", "match"),
    [
        ({"a": -1.0}, ValueError, "finite number >= 0"),
        ({"a": float("nan")}, ValueError, "finite number >= 0"),
        ({"a": 0.0}, ValueError, "every reward weight is 0"),
        ({"c": 1.0}, ValueError, "unknown reward 'c'.*valid names: a"),
        ({"a": True}, TypeError, "must be a number"),
    ],
)
def test_composite_rejects_bad_weights(weights, error, match):
    with pytest.raises(error, match=match):
        CompositeReward({"a": _constant([1.0])}, weights)


# ---------------------------------------------------------------------------------------------------- registry
def test_reward_specs():
    assert parse_reward_spec("aesthetic=1.0") == ("aesthetic", 1.0)
    assert parse_reward_spec("clip") == ("clip", 1.0)
    assert parse_reward_specs(["aesthetic=1", "clip=0.5"]) == {"aesthetic": 1.0, "clip": 0.5}
    valid = "valid names: aesthetic, clip, hpsv2, imagereward, inception, pickscore"
    with pytest.raises(ValueError, match=f"unknown reward 'beauty'; {valid}"):
        parse_reward_spec("beauty=1")
    with pytest.raises(ValueError, match="not a number"):
        parse_reward_spec("clip=high")
    with pytest.raises(ValueError, match="must be a finite number >= 0, got -1.0"):
        parse_reward_spec("clip=-1")
    with pytest.raises(ValueError, match="given twice"):
        parse_reward_specs(["clip=1", "clip=2"])


def test_build_reward_from_local_folders(clip_dir, head_dir):
    reward = build_reward(
        ["aesthetic=1.0", "clip=0.5", "inception=0"],
        models={"aesthetic": {"clip_model": clip_dir, "head": head_dir}, "clip": clip_dir},
        local_files_only=True,
    )
    assert isinstance(reward, CompositeReward) and set(reward.rewards) == {"aesthetic", "clip"}
    images = color_batch(["red", "blue"])
    totals = reward(images=images, prompts=["a photo of red", "a photo of red"])
    aesthetic = AestheticReward(clip_dir, head_dir)(images=images)
    clip = CLIPScoreReward(clip_dir)(images=images, prompts=["a photo of red"] * 2)
    assert totals == pytest.approx([a + 0.5 * c for a, c in zip(aesthetic, clip)], abs=1e-4)
    assert reward.last_terms["clip"] == pytest.approx(clip, abs=1e-4)
    assert isinstance(load_reward("inception", ColorClassifier().eval()), InceptionReward)
    with pytest.raises(ValueError, match="valid names"):
        load_reward("sharpness")
    with pytest.raises(ValueError, match="no weight"):
        build_reward({"clip": 1.0}, models={"aesthetic": head_dir})
