"""The built-in generator: content-aware terms, the never-contradict rule, the token budget, the call contract."""

import doctest
import json
import os
import random
import re
import subprocess
import sys

import pytest

import negopt.builtin.rules
from negopt import BuiltinGenerator
from negopt.builtin import _CLIP_WORD_TOKENS, _vocabulary_words, approx_clip_tokens
from negopt.text import fit_terms, join_terms, split_terms, term_key


@pytest.fixture(scope="module")
def gen():
    return BuiltinGenerator()


def terms_of(negative: str) -> list[str]:
    return split_terms(negative)


def words_of(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


# ---------------------------------------------------------------------------------------------- detection
CONTENT_CASES = [
    # prompt, terms that must be there
    ("a portrait photo of an old fisherman", ["poorly drawn face", "disfigured face", "asymmetric eyes", "cartoon"]),
    ("close-up of a woman's face, freckles, soft light", ["poorly drawn face", "cross-eyed"]),
    ("a man waving his hand", ["bad hands", "extra fingers", "missing fingers"]),
    ("a girl holding an umbrella in the rain", ["bad hands", "extra fingers", "bad anatomy"]),
    ("full body shot of a dancer on stage", ["bad proportions", "extra legs", "bad anatomy"]),
    ("a golden retriever puppy playing in the grass", ["bad anatomy", "extra legs", "extra limbs"]),
    ("a tabby cat sleeping on a windowsill", ["extra legs", "missing legs"]),
    ('a coffee shop sign that says "open late"', ["misspelled text", "garbled letters", "illegible text"]),
    ("a vintage movie poster", ["misspelled text", "garbled letters"]),
    ("a gothic cathedral interior with stained glass", ["distorted perspective", "warped lines"]),
    ("a modern kitchen interior", ["distorted perspective", "warped lines"]),
    ("a red sports car on a mountain road", ["deformed wheels", "extra wheels", "tilted horizon"]),
    ("a plate of sushi on a wooden table", ["unappetizing", "rotten"]),
    ("a perfume bottle product shot, studio lighting", ["distorted shape", "warped"]),
    ("a misty mountain lake at sunrise", ["tilted horizon", "overexposed sky"]),
    # Styles: a photo gets the other styles, an anime picture gets realism, pixel art gets smoothness...
    ("a photo of a lighthouse", ["cartoon", "anime", "painting", "illustration", "3d render"]),
    ("anime girl with silver hair", ["photorealistic", "realistic", "photo", "3d"]),
    ("an oil painting of a harbor", ["photo", "photorealistic", "3d render"]),
    ("a children's book illustration of a bear", ["photo", "photorealistic", "3d render"]),
    ("a 3d render of a robot, octane", ["2d", "flat", "sketch"]),
    ("pixel art of a knight", ["blurry", "anti-aliasing", "smooth gradients", "soft edges"]),
    ("a pencil sketch of a tree", ["photo", "photorealistic", "3d render"]),
    ("a black and white photo of a street musician", ["color cast", "cartoon"]),
]


@pytest.mark.parametrize(("prompt", "expected"), CONTENT_CASES)
def test_terms_follow_the_prompt(gen, prompt, expected):
    terms = terms_of(gen(prompt))
    missing = [t for t in expected if t not in terms]
    assert not missing, f"{prompt!r} -> {terms}: missing {missing}"


def test_universal_terms_come_first(gen):
    for prompt in ("a dog", "a photo of a lighthouse", "anime girl", "a plate of sushi"):
        assert terms_of(gen(prompt))[:4] == ["worst quality", "low quality", "blurry", "jpeg artifacts"]


def test_unrelated_subjects_add_nothing(gen):
    landscape = terms_of(gen("a misty mountain lake at sunrise"))
    for term in ("extra fingers", "bad hands", "misspelled text", "deformed wheels", "unappetizing", "cross-eyed"):
        assert term not in landscape
    # A word that only looks like a subject does not make it one.
    assert "deformed wheels" not in terms_of(gen("starry night in the style of van gogh"))
    assert "unappetizing" not in terms_of(gen("cherry blossoms along a river"))
    assert "tilted horizon" not in terms_of(gen("a macro photo of a dew drop, shallow depth of field"))


def test_context_words_need_a_person(gen):
    assert "bad hands" in terms_of(gen("a woman holding a cup"))
    assert "bad hands" not in terms_of(gen("a glass vase holding flowers"))
    assert "extra legs" in terms_of(gen("a man walking in the park"))
    assert "extra legs" not in terms_of(gen("a clock standing on a shelf"))


def test_analyze_reports_what_it_found(gen):
    analysis = gen.analyze("a blurry photo of a woman holding a dog, shallow depth of field")
    assert {"people", "hands", "animal"} <= set(analysis.subjects)
    assert analysis.styles == ("photo",)
    assert "blur" in analysis.asks
    assert "blurry" in analysis.removed and "blurry" not in analysis.terms
    assert gen("a blurry photo of a woman holding a dog, shallow depth of field").startswith(
        join_terms(analysis.terms[:3])
    )
    with pytest.raises(TypeError, match="prompt"):
        gen.analyze(None)


def test_negation_does_not_ask(gen):
    # "no blur" does not ask for blur, so "blurry" stays; "no people" shows no people.
    assert "blurry" in terms_of(gen("a crisp photo of a street at noon, no blur"))
    assert "cartoon" in terms_of(gen("a cat, not a cartoon, a real photo"))
    empty_street = gen.analyze("an empty street at dawn, no people")
    assert "people" not in empty_street.subjects
    assert "extra fingers" in terms_of(gen("a woman, no extra fingers, detailed hands"))
    # Text-bearing objects still ask for text when negated: "a no parking sign" shows text.
    assert "text" not in terms_of(gen("a no parking sign on a brick wall"))


# ------------------------------------------------------------------------------------- never contradict
CONTRADICTION_CASES = [
    # prompt, terms that must not be there
    ("a blurry long-exposure photo of traffic", ["blurry", "motion blur", "out of focus", "blurry text"]),
    ("a cartoon cat", ["cartoon", "cartoonish", "toon"]),
    ("a black and white photo", ["monochrome", "grayscale", "black and white", "desaturated"]),
    ("a black-and-white portrait, film noir", ["monochrome", "grayscale"]),
    ("a grainy film photo of a diner", ["grainy", "film grain", "noise", "noisy"]),
    ("a 35mm analog photo of a beach", ["grainy", "noise"]),
    ("pixel art of a castle", ["pixelated", "lowres", "low resolution", "pixel art", "8-bit"]),
    ("an oil painting of a ship", ["painting", "oil painting", "brush strokes"]),
    ("a 3d render of a chair", ["3d render", "3d", "render", "cgi"]),
    ("an octane render of a crystal", ["3d render", "render", "cgi"]),
    ("a watercolor of a fox", ["watercolor", "painting"]),
    ("a sumi-e ink wash painting of bamboo", ["painting", "monochrome"]),
    ("anime girl with a sword", ["anime", "manga", "cartoon"]),
    ("a photorealistic portrait of a queen", ["photorealistic", "realistic", "photo"]),
    ("a pencil sketch of a horse", ["sketch", "monochrome", "drawing"]),
    ("a neon sign with the word 'bar'", ["text", "words", "oversaturated"]),
    ("a logo for a coffee shop", ["logo", "text"]),
    ("a bokeh portrait of a man", ["blurry", "out of focus"]),
    ("a portrait of a man, shallow depth of field", ["blurry"]),
    ("a dark alley at night, low light", ["underexposed", "too dark", "dark"]),
    ("a foggy forest at dawn", ["low contrast", "hazy", "foggy"]),
    ("a low poly fox", ["low poly"]),
    ("a three-headed dragon", ["extra heads", "mutated"]),
    ("a four-armed goddess statue", ["extra arms", "extra limbs"]),
    ("an octopus on the sea floor", ["extra limbs", "extra legs"]),
    ("a surreal melting clock, distorted", ["distorted", "warped", "melting"]),
    ("a fisheye photo of a skateboarder", ["distorted perspective", "lens distortion"]),
    ("a close-up of an eye, macro", ["cropped", "out of frame"]),
    ("an ugly goblin merchant", ["ugly", "grotesque"]),
    ("a seamless floral pattern", ["tiling", "duplicate"]),
    ("identical twins in a field", ["duplicate", "cloned face"]),
    ("a wrinkled old man with freckles", ["skin blemishes", "plastic skin"]),
    ("a rotten apple on a table", ["rotten", "unappetizing"]),
    ("a rusty scratched old bottle, product photo", ["scratches", "dust"]),
    ("a cluttered messy desk", ["cluttered", "messy"]),
    ("a signed baseball", ["signature"]),
    ("a watermark design for a bank note", ["watermark"]),
    ("a plastic toy robot", ["plastic", "plastic skin"]),
    ("a vibrant, oversaturated psychedelic poster", ["oversaturated"]),
    ("a glitch art portrait, jpeg artifacts", ["jpeg artifacts", "artifacts", "distorted"]),
    ("a low quality webcam photo", ["low quality", "lowres", "grainy", "jpeg artifacts"]),
    ("a colored pencil sketch of a rainbow", ["color", "colors"]),
    ("a man with a long neck and extra fingers", ["long neck", "extra fingers"]),
    ("a flat design illustration of a city", ["flat", "2d", "illustration"]),
    ("an amateur crayon drawing by a child", ["amateur", "bad art", "drawing"]),
]


ALL_FORBIDDEN = sorted({t for _, terms in CONTRADICTION_CASES for t in terms})


@pytest.fixture(scope="module")
def gen_all():
    # Every forbidden term is offered for every prompt (user terms obey the same rules), with no budget to hide
    # behind, so each case checks the rules themselves and not the vocabulary the prompt happens to select.
    return BuiltinGenerator(max_tokens=100_000, extra_terms=ALL_FORBIDDEN)


def test_forbidden_terms_are_offered_when_not_asked(gen_all):
    assert set(ALL_FORBIDDEN) <= set(terms_of(gen_all("a dog")))


@pytest.mark.parametrize(("prompt", "forbidden"), CONTRADICTION_CASES)
def test_never_contradicts_the_prompt(gen, gen_all, prompt, forbidden):
    for negative in (gen(prompt), gen_all(prompt), *gen(prompt, num_candidates=4, seed=2)):
        keys = {term_key(t) for t in terms_of(negative)}
        present = [t for t in forbidden if t in keys]
        assert not present, f"{prompt!r} -> {sorted(keys)}: contradicts {present}"


@pytest.mark.parametrize("prompt", [p for p, _ in CONTENT_CASES + CONTRADICTION_CASES])
def test_no_term_is_spelled_out_in_the_prompt(gen, prompt):
    # The direct rule: every word of an output term (function words aside) occurring in the prompt means it asked.
    prompt_words = {w.rstrip("s") for w in words_of(prompt)}
    for candidate in gen(prompt, num_candidates=3, seed=1):
        for term in terms_of(candidate):
            words = {w.rstrip("s") for w in words_of(term)} - {"a", "of", "the", "too", "and", "with", "in", "on"}
            assert not words <= prompt_words, f"{prompt!r}: {term!r} is asked for"


# -------------------------------------------------------------------------------------------- token budget
def test_approx_clip_tokens_counts_letters_digits_and_symbols():
    assert approx_clip_tokens("") == 0
    assert approx_clip_tokens("worst quality, low quality") == 5
    assert approx_clip_tokens("3d render") == 3  # CLIP reads "3d" as "3" and "d"
    assert approx_clip_tokens("(blurry:1.2)") == 7  # ( blurry : 1 . 2 )
    assert approx_clip_tokens("watermark") == 2  # tabled: CLIP splits it into two
    assert approx_clip_tokens("Watermark") == approx_clip_tokens("watermark")
    # Unknown words: one token per four letters, at least one.
    assert approx_clip_tokens("zq") == 1
    assert approx_clip_tokens("qzxwvkjhgfdp") == 3


def test_token_table_covers_the_vocabulary():
    # Adding a term with a word the table lacks must fail here: measure it with scripts/clip_word_counts.py.
    missing = _vocabulary_words() - set(_CLIP_WORD_TOKENS)
    assert not missing, f"measure these with scripts/clip_word_counts.py: {sorted(missing)}"
    assert all(isinstance(n, int) and n >= 1 for n in _CLIP_WORD_TOKENS.values())


PROMPTS = [p for p, _ in CONTENT_CASES] + ["", "a", "a blurry photo of a woman holding a dog, full body, at night"]


@pytest.mark.parametrize("max_tokens", [8, 20, 60, 75])
def test_budget_is_honoured_with_the_estimate(max_tokens):
    gen = BuiltinGenerator(max_tokens=max_tokens)
    for prompt in PROMPTS:
        for negative in gen(prompt, num_candidates=3, seed=0):
            assert 0 < approx_clip_tokens(negative) <= max_tokens, (prompt, negative)


def test_default_budget_is_spent_not_wasted(gen):
    # With plenty of terms to choose from, the default negative fills most of its 60-token budget.
    negative = gen("a portrait photo of a woman holding a dog")
    assert 50 <= approx_clip_tokens(negative) <= 60


@pytest.fixture(scope="module")
def clip_tokenizer():
    """A real CLIPTokenizer with a byte-level vocabulary (no merges), built offline: one token per byte."""
    from tiny_clip import tiny_clip_tokenizer

    return tiny_clip_tokenizer()


def test_budget_is_honoured_with_a_real_tokenizer(clip_tokenizer):
    def count(text: str) -> int:
        return len(clip_tokenizer(text).input_ids) - 2  # without start and end tokens

    budget = 75
    gen = BuiltinGenerator(max_tokens=budget, count_tokens=count)
    for prompt in PROMPTS:
        negative = gen(prompt)
        assert 0 < count(negative) <= budget, (prompt, negative)
        # The budget is filled greedily in order of importance, with the counter given.
        assert terms_of(negative) == fit_terms(list(gen.analyze(prompt).terms), budget, count)[0]
        # Nothing the pipeline would truncate: with start and end tokens it fits CLIP's 77.
        assert len(clip_tokenizer(negative).input_ids) <= 77
    # The byte-level tokenizer counts far more tokens than CLIP's, so fewer terms fit than with the estimate.
    assert len(terms_of(gen("a dog"))) < len(terms_of(BuiltinGenerator(max_tokens=budget)("a dog")))


def test_max_terms():
    gen = BuiltinGenerator(max_terms=5)
    for prompt in PROMPTS:
        assert len(terms_of(gen(prompt))) == 5
    assert len(terms_of(BuiltinGenerator(max_terms=3, count_tokens=len)("a dog"))) == 3


# -------------------------------------------------------------------------------------------- determinism
def test_deterministic_and_independent_of_global_random_state():
    prompts = [p for p, _ in CONTENT_CASES]
    state = random.getstate()
    first = BuiltinGenerator()(prompts)
    assert random.getstate() == state  # the generator never touches the global stream
    random.seed(12345)
    assert BuiltinGenerator()(prompts) == first
    assert BuiltinGenerator()(prompts, num_candidates=3, seed=7) == BuiltinGenerator()(
        prompts, num_candidates=3, seed=7
    )


def test_output_is_clean(gen):
    for prompt in PROMPTS:
        negative = gen(prompt)
        terms = terms_of(negative)
        assert negative == join_terms(terms)
        assert len({term_key(t) for t in terms}) == len(terms), negative


# ----------------------------------------------------------------------------------------------- contract
def test_str_gives_str_and_list_gives_list(gen):
    assert isinstance(gen("a dog"), str)
    prompts = ["a dog", "a photo of a lighthouse", "anime girl"]
    out = gen(prompts)
    assert isinstance(out, list) and len(out) == 3
    assert out == [gen(p) for p in prompts]
    assert gen(tuple(prompts)) == out
    assert gen([]) == []


def test_candidates(gen):
    prompt = "a portrait photo of a woman holding a dog in a city street"
    candidates = gen(prompt, num_candidates=5, seed=3)
    assert isinstance(candidates, list) and len(candidates) == 5
    assert all(isinstance(c, str) and c for c in candidates)
    assert candidates[0] == gen(prompt)  # the first candidate is the default negative
    assert len(set(candidates)) == 5  # a rich prompt has room for distinct variants
    for c in candidates:
        terms = terms_of(c)
        assert terms[:3] == ["worst quality", "low quality", "blurry"]
        assert approx_clip_tokens(c) <= gen.max_tokens
        assert "cartoon" in c or "anime" in c or "painting" in c or "illustration" in c  # variants stay on topic
    assert gen(prompt, num_candidates=5, seed=3) == candidates
    assert gen(prompt, num_candidates=5, seed=4) != candidates
    assert gen(prompt, num_candidates=5) == gen(prompt, num_candidates=5, seed=0)


def test_candidates_for_a_list(gen):
    prompts = ["a dog", "a plate of sushi"]
    out = gen(prompts, num_candidates=3, seed=9)
    assert len(out) == 2 and all(isinstance(c, list) and len(c) == 3 for c in out)
    # A prompt gets the same candidates alone or in a batch, at any position.
    assert out[1] == gen("a plate of sushi", num_candidates=3, seed=9)
    assert gen(prompts[::-1], num_candidates=3, seed=9) == out[::-1]


def test_candidates_of_a_poor_prompt_still_come(gen):
    # Few terms to vary: the contract (k candidates) holds even if some repeat.
    tiny = BuiltinGenerator(max_terms=1)
    assert len(tiny("x", num_candidates=4, seed=0)) == 4


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_empty_prompt_gets_a_generic_quality_negative(gen, prompt):
    terms = terms_of(gen(prompt))
    assert terms[:4] == ["worst quality", "low quality", "blurry", "jpeg artifacts"]
    assert {"watermark", "signature"} <= set(terms)
    assert gen(prompt) == gen("")


def test_model_generator_options_are_accepted_and_ignored(gen):
    assert gen("a dog", batch_size=8, max_new_tokens=40, temperature=0.7, do_sample=True) == gen("a dog")


@pytest.mark.parametrize(
    ("prompt", "match"),
    [
        (None, r"prompt must be a str or a list of str, got NoneType"),
        (3, r"prompt must be a str or a list of str, got int: 3"),
        ({"a": 1}, r"prompt must be"),
        (["a dog", 3], r"prompt\[1\] must be a str, got int: 3"),
        (["a dog", None], r"prompt\[1\] must be a str, got NoneType"),
    ],
)
def test_bad_prompt(gen, prompt, match):
    with pytest.raises(TypeError, match=match):
        gen(prompt)


def test_bad_call_options(gen):
    with pytest.raises(ValueError, match="num_candidates must be at least 1, got 0"):
        gen("a dog", num_candidates=0)
    with pytest.raises(TypeError, match="num_candidates must be an int"):
        gen("a dog", num_candidates="2")
    with pytest.raises(TypeError, match="num_candidates must be an int"):
        gen("a dog", num_candidates=True)
    with pytest.raises(TypeError, match="seed must be an int or None"):
        gen("a dog", seed="1")
    with pytest.raises(TypeError, match="'negative_prompt'"):
        gen("a dog", negative_prompt="ugly")


# ------------------------------------------------------------------------------------------------ options
def test_extra_terms_come_first_and_obey_the_prompt():
    gen = BuiltinGenerator(extra_terms="easynegative, (bad hands:1.3), motion blur")
    terms = terms_of(gen("a dog"))
    assert terms[:3] == ["easynegative", "(bad hands:1.3)", "motion blur"]
    assert terms[3] == "worst quality"
    # A user's term is dropped, like any other, when the prompt asks for it.
    assert "motion blur" not in gen("a long exposure photo of a waterfall")
    assert BuiltinGenerator(extra_terms=["nsfw", "nude"])("a dog").startswith("nsfw, nude, ")


def test_exclude_terms():
    gen = BuiltinGenerator(exclude_terms=["Blurry", "(watermark:1.2)"])
    terms = terms_of(gen("a dog"))
    assert "blurry" not in terms and "watermark" not in terms
    assert "worst quality" in terms


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_tokens": 0}, ValueError, "max_tokens must be at least 1, got 0"),
        ({"max_tokens": "60"}, TypeError, "max_tokens must be a positive int, got str"),
        ({"max_tokens": True}, TypeError, "max_tokens must be a positive int"),
        ({"max_terms": -1}, ValueError, "max_terms must be at least 1, got -1"),
        ({"count_tokens": 5}, TypeError, "count_tokens must be a callable"),
        ({"extra_terms": [1]}, TypeError, r"extra_terms\[0\] must be a str, got int"),
        ({"exclude_terms": 3}, TypeError, "exclude_terms must be a list of str or a comma-separated str"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        BuiltinGenerator(**kwargs)


def test_repr():
    default = "BuiltinGenerator(max_tokens=60, max_terms=None, count_tokens=approx_clip_tokens)"
    assert repr(BuiltinGenerator()) == default
    gen = BuiltinGenerator(max_tokens=40, max_terms=10, count_tokens=len, extra_terms="a, b", exclude_terms=["c"])
    text = repr(gen)
    assert text == (
        "BuiltinGenerator(max_tokens=40, max_terms=10, count_tokens=len, extra_terms=['a', 'b'], exclude_terms=['c'])"
    )


def test_docstring_examples():
    result = doctest.testmod(negopt.builtin.rules, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0


# ----------------------------------------------------------------------------------------------- lightness
def test_import_is_light():
    code = (
        "import sys, negopt.builtin; from negopt import BuiltinGenerator; BuiltinGenerator()('a dog');"
        "heavy = [m for m in ('torch', 'transformers', 'diffusers', 'peft', 'accelerate') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"importing negopt.builtin imported {out.stdout.strip()}"


def test_cli_generate_uses_the_builtin():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "negopt",
            "generate",
            "--json",
            "a cartoon cat",
            "a blurry long-exposure photo of traffic",
        ],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == ["a cartoon cat", "a blurry long-exposure photo of traffic"]
    assert rows[0]["negative_prompt"] == BuiltinGenerator()("a cartoon cat")
    assert "cartoon" not in terms_of(rows[0]["negative_prompt"])
    assert "blurry" not in terms_of(rows[1]["negative_prompt"])


# ------------------------------------------------------------------------------- the user's terms (issue 22)
@pytest.mark.parametrize(
    ("extra", "first", "builtin"),
    [
        ("(worst quality:1.4)", ["(worst quality:1.4)"], "worst quality"),
        ("Blurry", ["Blurry"], "blurry"),
        (["BLURRY", "(Watermark)"], ["BLURRY", "(Watermark)"], "watermark"),
        ("((jpeg artifacts:1.2))", ["((jpeg artifacts:1.2))"], "jpeg artifacts"),
    ],
)
def test_extra_terms_spelled_like_a_builtin_term_keep_the_users_spelling(extra, first, builtin):
    # A built-in term in another case or with a weight was a KeyError; it must dedupe against the built-in term and
    # keep the user's spelling and weight, first.
    gen = BuiltinGenerator(extra_terms=extra)
    for prompt in ("a dog", "a portrait photo of a woman", ""):
        terms = terms_of(gen(prompt))
        assert terms[: len(first)] == first, terms
        keys = [term_key(t) for t in terms]
        assert keys.count(builtin) == 1 and builtin not in terms, terms
        assert len(set(keys)) == len(keys), terms
    for candidate in gen("a dog", num_candidates=4, seed=1):
        assert terms_of(candidate)[: len(first)] == first


def test_extra_terms_spelled_like_a_subject_term():
    gen = BuiltinGenerator(extra_terms="(Bad Hands:1.3)")
    terms = terms_of(gen("a man waving his hand"))
    assert terms[0] == "(Bad Hands:1.3)"
    assert "bad hands" not in terms and "extra fingers" in terms
    # The user's spelling still obeys the prompt.
    assert "(Blurry:1.2)" not in terms_of(BuiltinGenerator(extra_terms="(Blurry:1.2)")("a blurry photo of a dog"))


@pytest.mark.parametrize("extra", ["(easynegative:1.2), EasyNegative", ["(easynegative:1.2)", "EasyNegative"]])
def test_extra_terms_repeated_in_another_spelling_keep_the_first(extra):
    gen = BuiltinGenerator(extra_terms=extra)
    assert gen.extra_terms == ("(easynegative:1.2)",)
    terms = terms_of(gen("a dog"))
    assert terms[:2] == ["(easynegative:1.2)", "worst quality"]
    assert "EasyNegative" not in terms


def test_extra_terms_are_never_dropped_for_the_budget():
    extra = ["easynegative", "(bad hands:1.3)", "an overly long description of every kind of ugly thing I dislike"]
    cost = approx_clip_tokens(join_terms(extra))
    # Exactly the user's budget: the user's terms, whole, and nothing generated.
    assert BuiltinGenerator(max_tokens=cost, extra_terms=extra)("a dog") == join_terms(extra)
    for max_tokens in (cost + 2, cost + 10, 60):
        gen = BuiltinGenerator(max_tokens=max_tokens, extra_terms=extra)
        for prompt in PROMPTS:
            for negative in gen(prompt, num_candidates=3, seed=0):
                assert terms_of(negative)[:3] == extra, (prompt, negative)
                assert approx_clip_tokens(negative) <= max_tokens
    # The same with a counter of one's own.
    gen = BuiltinGenerator(max_tokens=len(join_terms(extra)) + 12, count_tokens=len, extra_terms=extra)
    negative = gen("a dog")
    assert terms_of(negative)[:3] == extra and len(terms_of(negative)) > 3 and len(negative) <= gen.max_tokens


def test_extra_terms_over_the_budget_are_refused():
    # The user's terms come first in the budget; when they alone exceed it, dropping some of them while adding
    # generated ones (what it did) is wrong, so it says how to fix it.
    extra = "easynegative, an overly long description of every kind of ugly thing I dislike"
    with pytest.raises(ValueError, match=r"extra_terms take \d+ tokens, more than max_tokens=8"):
        BuiltinGenerator(max_tokens=8, extra_terms=extra)
    with pytest.raises(ValueError, match=r"extra_terms take \d+ tokens, more than max_tokens=8"):
        BuiltinGenerator(max_tokens=8, count_tokens=len, extra_terms=extra)
    with pytest.raises(ValueError, match=r"extra_terms has 3 terms, more than max_terms=2"):
        BuiltinGenerator(max_terms=2, extra_terms="a, b, c")
    assert terms_of(BuiltinGenerator(max_terms=3, extra_terms="a, b, c")("a dog")) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("count_tokens", "match"),
    [
        (lambda text: float(len(text)), r"count_tokens must return an int.*got float"),
        (lambda text: [1, 2, 3], r"count_tokens must return an int.*got list"),
        (lambda text: str(len(text)), r"count_tokens must return an int.*got str"),
        (lambda text: True, r"count_tokens must return an int.*got bool"),
        (lambda text: None, r"count_tokens must return an int.*got NoneType"),
    ],
)
def test_count_tokens_must_return_an_int(count_tokens, match):
    with pytest.raises(TypeError, match=match):
        BuiltinGenerator(count_tokens=count_tokens)("a dog")


def test_count_tokens_returning_a_negative_number_is_refused():
    with pytest.raises(ValueError, match=r"count_tokens returned -1"):
        BuiltinGenerator(count_tokens=lambda text: -1)("a dog")
