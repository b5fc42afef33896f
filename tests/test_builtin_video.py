"""The built-in generator for video: temporal and motion terms, never contradicting the prompt, never in an image."""

import doctest
import re

import pytest

import negopt.builtin.rules
from negopt import BuiltinGenerator
from negopt.builtin import _CLIP_WORD_TOKENS, approx_clip_tokens
from negopt.builtin.vocabulary import (
    CORE,
    SUBJECTS,
    VIDEO_CONCEPTS,
    VIDEO_CORE,
    VIDEO_EXTRAS,
    VIDEO_SOURCES,
    VIDEO_SUBJECT_TERMS,
    VIDEO_TERMS,
)
from negopt.text import split_terms, term_key

VIDEO_TERM_KEYS = {term_key(t.term) for t in VIDEO_TERMS}


@pytest.fixture(scope="module")
def video():
    return BuiltinGenerator(kind="video")


@pytest.fixture(scope="module")
def image():
    return BuiltinGenerator()


def keys_of(negative: str) -> set[str]:
    return {term_key(t) for t in split_terms(negative)}


# ------------------------------------------------------------------------------------------------- the kind
def test_kind_defaults_to_image_and_is_checked():
    assert BuiltinGenerator().kind == "image"
    assert BuiltinGenerator(kind="video").kind == "video"
    for bad in ("Video", "videos", "audio", ""):
        with pytest.raises(ValueError, match=r"kind must be one of 'image', 'video', got " + re.escape(repr(bad))):
            BuiltinGenerator(kind=bad)
    for bad in (None, 1, ["video"]):
        with pytest.raises(TypeError, match=r"kind must be one of 'image', 'video', got "):
            BuiltinGenerator(kind=bad)


def test_with_kind_keeps_the_settings():
    gen = BuiltinGenerator(max_tokens=70, max_terms=30, count_tokens=len, extra_terms="nsfw", exclude_terms="text")
    assert gen.with_kind("image") is gen
    video = gen.with_kind("video")
    assert (video.kind, video.max_tokens, video.max_terms, video.count_tokens) == ("video", 70, 30, len)
    assert (video.extra_terms, video.exclude_terms) == (("nsfw",), ("text",))
    assert video.with_kind("image")("a dog") == gen("a dog")
    assert video("a dog running") == BuiltinGenerator(
        max_tokens=70, max_terms=30, count_tokens=len, extra_terms="nsfw", exclude_terms="text", kind="video"
    )("a dog running")
    with pytest.raises(ValueError, match="kind must be one of"):
        gen.with_kind("gif")


def test_repr_names_the_kind():
    assert repr(BuiltinGenerator(kind="video")) == (
        "BuiltinGenerator(max_tokens=60, max_terms=None, count_tokens=approx_clip_tokens, kind='video')"
    )


def test_docstring_examples_include_with_kind():
    result = doctest.testmod(negopt.builtin.rules, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert any(t.name.endswith("with_kind") and t.examples for t in doctest.DocTestFinder().find(negopt.builtin.rules))


# ---------------------------------------------------------------------------------------------- the vocabulary
def test_every_video_term_has_a_reason_and_a_source():
    places = {"core", "extra", *(g.name for g in SUBJECTS)}
    for t in VIDEO_TERMS:
        assert t.place in places, t
        assert t.reason.strip() and t.sources, t
        assert set(t.sources) <= set(VIDEO_SOURCES), t
    # No source is listed that no term uses.
    assert {s for t in VIDEO_TERMS for s in t.sources} == set(VIDEO_SOURCES)


def test_video_terms_are_not_image_terms():
    # Otherwise "never in an image negative" could not be told apart from the image vocabulary.
    image_terms = set(negopt.builtin.rules._builtin_terms("image"))
    assert not VIDEO_TERM_KEYS & {term_key(t) for t in image_terms}
    video_terms = set(negopt.builtin.rules._builtin_terms("video")) - image_terms
    assert {term_key(t) for t in video_terms} == VIDEO_TERM_KEYS
    # No video concept contradicts an image term: that is why an image generator need not search them.
    for c in VIDEO_CONCEPTS:
        assert not [t for t in image_terms if c.drops.search(term_key(t))], c.name
        assert [t for t in VIDEO_TERMS if c.drops.search(term_key(t.term))], f"{c.name} contradicts no video term"


def test_token_table_covers_the_video_vocabulary():
    # The same check as the image vocabulary's: every word of a video term is measured (scripts/clip_word_counts.py).
    words = {w for t in VIDEO_TERMS for w in re.findall(r"[^\W\d_]+", t.term.lower())}
    assert not words - set(_CLIP_WORD_TOKENS), sorted(words - set(_CLIP_WORD_TOKENS))
    # So the estimate is exact for them: the sum of the tabled words (these terms have no digits or symbols).
    for t in VIDEO_TERMS:
        assert approx_clip_tokens(t.term) == sum(_CLIP_WORD_TOKENS[w] for w in t.term.lower().split())


# -------------------------------------------------------------------------------------------- what it writes
VIDEO_PROMPTS = [
    "a dog running on a beach",
    "a portrait of a woman smiling at the camera",
    "a man waving his hand in a park",
    "a dancer performing on stage, full body",
    'a neon sign that says "open late"',
    "a red sports car on a mountain road",
    "a plate of sushi on a wooden table",
    "a drone shot over a misty forest at sunrise",
    "a cat playing with yarn, anime style",
    "a 3d render of a robot walking through a city",
    "",
    # A Wan-style paragraph.
    "A cinematic close-up of an elderly fisherman mending a net on a wooden pier, waves rolling in behind him, "
    "seagulls circling overhead, warm golden light, the camera slowly pushing in, 4k, highly detailed",
]


def test_video_terms_come_right_after_the_universal_ones(video):
    for prompt in ("a dog running on a beach", "a red sports car on a mountain road", ""):
        assert split_terms(video(prompt))[: len(CORE) + len(VIDEO_CORE)] == [*CORE, *VIDEO_CORE]
        for candidate in video(prompt, num_candidates=4, seed=3):
            assert split_terms(candidate)[: len(CORE) + len(VIDEO_CORE)] == [*CORE, *VIDEO_CORE]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a woman walking down a street", ["walking backwards", "sliding feet"]),
        ("a portrait of a man talking", ["inconsistent face", "morphing face"]),
        ("a woman holding a cup of coffee", ["morphing hands"]),
        ("a horse galloping across a field", ["walking backwards"]),
        ('a shop sign that says "open"', ["flickering text"]),
        ("a truck on a highway", ["driving backwards"]),
    ],
)
def test_subject_motion_terms(prompt, expected):
    terms = split_terms(BuiltinGenerator(kind="video", max_tokens=1000)(prompt))
    assert set(expected) <= set(terms), terms
    # Nothing in these prompts asks for a motion defect; a sign that "says" something asks for text (subtitles).
    assert set(VIDEO_EXTRAS) - {"subtitles"} <= set(terms)


def test_an_image_negative_never_gets_a_video_term(image):
    wide = BuiltinGenerator(max_tokens=100_000)
    prompts = VIDEO_PROMPTS + [p for p, _ in VIDEO_CONTRADICTION_CASES] + ["a video of a dog", "a time-lapse"]
    for prompt in prompts:
        for negative in (image(prompt), wide(prompt), *image(prompt, num_candidates=4, seed=1)):
            assert not keys_of(negative) & VIDEO_TERM_KEYS, (prompt, negative)
    # The video generator does write them for the same prompts, so the check above can fail.
    assert all(keys_of(BuiltinGenerator(kind="video")(p)) & VIDEO_TERM_KEYS for p in VIDEO_PROMPTS)


def test_budget_is_honoured_for_video():
    for max_tokens in (12, 30, 60, 120):
        gen = BuiltinGenerator(kind="video", max_tokens=max_tokens)
        for prompt in VIDEO_PROMPTS:
            for negative in gen(prompt, num_candidates=3, seed=0):
                assert 0 < approx_clip_tokens(negative) <= max_tokens, (prompt, negative)


def test_budget_is_honoured_with_a_t5_tokenizer():
    # Video pipelines encode the negative with T5-family encoders (Wan's umT5, LTX-Video's and CogVideoX's T5), whose
    # limits are 128 to 512 tokens. ByT5's tokenizer is a real T5-family tokenizer that needs no download.
    from transformers import ByT5Tokenizer

    tokenizer = ByT5Tokenizer()

    def count(text: str) -> int:
        return len(tokenizer(text).input_ids) - 1  # without the end token

    for budget in (128, 226):
        gen = BuiltinGenerator(kind="video", max_tokens=budget, count_tokens=count)
        for prompt in VIDEO_PROMPTS:
            negative = gen(prompt)
            assert 0 < count(negative) <= budget, (prompt, negative)
            assert split_terms(negative)[:2] == ["worst quality", "low quality"]


def test_analyze_reports_video_concepts(video, image):
    analysis = video.analyze("a time-lapse of a frozen lake")
    assert {"time_lapse", "stillness"} <= set(analysis.asks)
    assert "static" in analysis.removed and "inconsistent lighting" in analysis.removed
    # An image generator does not look for them: no term of its own could contradict them.
    assert not {"time_lapse", "stillness"} & set(image.analyze("a time-lapse of a frozen lake").asks)


# ------------------------------------------------------------------------------------- never contradict
VIDEO_CONTRADICTION_CASES = [
    # prompt, terms that must not be there
    ("a frozen lake at dawn", ["static", "still picture", "frozen frames"]),
    ("a still life of fruit on a table", ["static", "still picture", "frozen frames"]),
    ("a static shot of a lighthouse", ["static", "still picture"]),
    ("a still shot of a cat sleeping", ["static", "still picture"]),
    ("a freeze frame of a skateboarder in mid-air", ["static", "still picture", "frozen frames"]),
    ("a cinemagraph of a coffee cup with rising steam", ["static", "still picture"]),
    ("a city street with no movement at all", ["static", "still picture", "frozen frames"]),
    ("a person standing still in a busy crowd", ["static", "still picture"]),
    (
        "a time-lapse of clouds over the mountains",
        ["inconsistent lighting", "unnatural transitions", "sudden disappearance", "ghosting", "motion blur"],
    ),
    ("a hyperlapse through tokyo at night", ["inconsistent lighting", "jump cuts", "motion blur"]),
    ("a slow motion shot of a hummingbird", ["slow motion"]),
    ("a slow-mo water balloon bursting", ["slow motion", "sudden disappearance"]),
    ("a man walking backwards in the rain", ["walking backwards"]),
    ("a car reversing out of a driveway", ["driving backwards"]),
    ("a glass shattering, played in reverse", ["walking backwards", "driving backwards"]),
    ("a flickering candle in a dark room", ["flickering", "flickering text"]),
    ("a neon sign flickering at night", ["flickering", "flickering text"]),
    ("a strobe-lit dance floor", ["flickering", "inconsistent lighting"]),
    ("shaky handheld footage of a rock concert", ["camera shake", "shaky footage", "jittery"]),
    ("found footage of a dark forest", ["camera shake", "shaky footage"]),
    (
        "a stop motion animation of a clay figure",
        ["choppy motion", "stuttering", "jerky movements", "low frame rate", "frozen frames", "jittery"],
    ),
    ("12 fps animation of a bouncing ball", ["low frame rate", "choppy motion"]),
    ("cctv footage of a parking lot", ["low frame rate", "choppy motion"]),
    ("a caterpillar morphing into a butterfly", ["morphing", "morphing face", "morphing hands"]),
    ("a werewolf transformation under the full moon", ["morphing", "morphing face"]),
    ("a man aging from a child to an old man", ["inconsistent face", "morphing face"]),
    ("a flower blooming", ["morphing"]),
    (
        "a glitch art video with datamoshing",
        ["temporal artifacts", "flickering", "jittery", "morphing", "ghosting", "stuttering", "frozen frames"],
    ),
    ("a ghost drifting through a hallway", ["ghosting", "slow motion"]),
    ("light trails of cars on a highway at night", ["ghosting", "motion blur"]),
    ("a race car speeding past the camera", ["motion blur", "ghosting"]),
    ("a music video montage with quick cuts", ["jump cuts", "unnatural transitions"]),
    ("a magician makes a dove disappear", ["sudden disappearance"]),
    ("a thunderstorm with lightning over the sea", ["flickering", "inconsistent lighting"]),
    ("a movie scene with subtitles", ["subtitles"]),
    ("motion blur of a running dog", ["motion blur"]),
    ("a choppy sea under grey skies", ["choppy motion"]),
    ("a stuttering old film reel", ["stuttering", "flickering"]),
    ("an earthquake shaking a city", ["camera shake", "shaky footage", "jittery"]),
    ("a psychedelic kaleidoscope of colors", ["morphing"]),
]

ALL_VIDEO_FORBIDDEN = sorted({t for _, terms in VIDEO_CONTRADICTION_CASES for t in terms})


@pytest.fixture(scope="module")
def video_all():
    # Every forbidden term offered for every prompt with no budget to hide behind (as for the image cases).
    return BuiltinGenerator(kind="video", max_tokens=100_000, extra_terms=ALL_VIDEO_FORBIDDEN)


def test_every_forbidden_term_is_a_video_term_offered_when_not_asked(video_all):
    assert {term_key(t) for t in ALL_VIDEO_FORBIDDEN} <= VIDEO_TERM_KEYS
    assert set(ALL_VIDEO_FORBIDDEN) <= set(split_terms(video_all("a dog")))


@pytest.mark.parametrize(("prompt", "forbidden"), VIDEO_CONTRADICTION_CASES)
def test_video_never_contradicts_the_prompt(video, video_all, prompt, forbidden):
    wide = BuiltinGenerator(kind="video", max_tokens=100_000)
    for negative in (video(prompt), video_all(prompt), wide(prompt), *video(prompt, num_candidates=4, seed=2)):
        present = [t for t in forbidden if t in keys_of(negative)]
        assert not present, f"{prompt!r} -> {sorted(keys_of(negative))}: contradicts {present}"


def test_a_negated_mention_does_not_ask(video_all):
    # As for images: "no motion blur" does not ask for motion blur...
    assert "motion blur" in split_terms(video_all("a dog running on grass, no motion blur"))
    assert "walking backwards" in split_terms(video_all("a man walking forward, not backwards"))
    # ...but a negated motion asks for stillness, whatever follows.
    assert "static" not in split_terms(video_all("a mountain lake, no movement"))


def test_a_users_video_term_obeys_the_video_rules_in_an_image_negative():
    gen = BuiltinGenerator(extra_terms="flickering, (static:1.2)")
    assert split_terms(gen("a dog"))[:2] == ["flickering", "(static:1.2)"]
    assert "flickering" not in split_terms(gen("a flickering candle"))
    assert "(static:1.2)" not in split_terms(gen("a frozen lake"))


def test_video_subject_terms_cover_every_subject_group():
    assert set(VIDEO_SUBJECT_TERMS) == {g.name for g in SUBJECTS}
