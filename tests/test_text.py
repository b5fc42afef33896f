"""negopt.text: splitting, keys, dedupe, emphasis, echo removal, merging and the token budget."""

import random
import re
import warnings

import pytest

from negopt.text import (
    PromptSyntaxWarning,
    clean_negative,
    dedupe_terms,
    fit_terms,
    join_terms,
    merge_negatives,
    parse_attention,
    remove_extra_networks,
    split_terms,
    strip_echo,
    strip_weights,
    term_key,
    unsupported_a1111_syntax,
)


# ------------------------------------------------------------------------------------------------- split_terms
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("blurry, low quality,watermark", ["blurry", "low quality", "watermark"]),
        ("(ugly, deformed:1.2), blurry", ["(ugly, deformed:1.2)", "blurry"]),
        ("((bad hands, (extra fingers:1.3))), text", ["((bad hands, (extra fingers:1.3)))", "text"]),
        ("[cropped, out of frame], ok", ["[cropped, out of frame]", "ok"]),
        ("<lora:neg, v2:0.5>, blurry", ["<lora:neg, v2:0.5>", "blurry"]),
        ("blurry\nwatermark\n\nugly", ["blurry", "watermark", "ugly"]),
        ("blurry; watermark", ["blurry", "watermark"]),
        ("  blurry  ,,  ,  low   quality.  ", ["blurry", "low quality"]),
        # Escaped brackets are literal: they neither open nor close a group.
        (r"\(artist\), blurry", [r"\(artist\)", "blurry"]),
        (r"\(a, b\)", [r"\(a", r"b\)"]),
        # A closing bracket with no opener does not make the depth negative.
        ("blurry), ugly, text", ["blurry)", "ugly", "text"]),
        ("", []),
        (None, []),
    ],
)
def test_split_terms(text, expected):
    assert split_terms(text) == expected


def test_split_terms_unclosed_bracket_does_not_swallow_the_rest():
    # Model output often ends an emphasis group without closing it; the terms after it must still be terms.
    assert split_terms("(worst quality:1.4), (low quality, blurry, watermark") == [
        "(worst quality:1.4)",
        "(low quality",
        "blurry",
        "watermark",
    ]
    # A matched group before an unclosed one keeps its inner comma.
    assert split_terms("(a, b), (c, d") == ["(a, b)", "(c", "d"]


# ---------------------------------------------------------------------------------------------------- term_key
@pytest.mark.parametrize(
    ("term", "key"),
    [
        ("Blurry", "blurry"),
        ("((Blurry:1.3))", "blurry"),
        ("(blurry:1.3)", "blurry"),
        ("[watermark]", "watermark"),
        ("[(bad hands:1.1)]", "bad hands"),
        ("blurry:0.8", "blurry"),
        ("bad_anatomy", "bad anatomy"),
        ("  low    quality ", "low quality"),
        ("<lora:neg:0.5>", "<lora:neg:0.5>"),
        ("EasyNegative", "easynegative"),
        # Two groups side by side are not one wrapped group: their brackets stay.
        ("(ugly) (deformed)", "(ugly) (deformed)"),
        ("[a] or (b)", "[a] or (b)"),
    ],
)
def test_term_key(term, key):
    assert term_key(term) == key


# ------------------------------------------------------------------------------------------------ dedupe, clean
def test_dedupe_terms_keeps_first_spelling_and_order():
    terms = ["(Blurry:1.2)", "watermark", "blurry", "BLURRY", "((watermark))", "text", ""]
    assert dedupe_terms(terms) == ["(Blurry:1.2)", "watermark", "text"]


def test_join_terms():
    assert join_terms(["a", "b c"]) == "a, b c"
    assert join_terms([]) == ""


def test_clean_negative_normalises_and_keeps_weights():
    assert clean_negative(" blurry ,, (bad hands:1.3),  Blurry , watermark ") == "blurry, (bad hands:1.3), watermark"
    assert clean_negative("blurry\n(BLURRY:1.1)\nugly.") == "blurry, ugly"
    assert clean_negative(None) == ""
    assert clean_negative("") == ""


# ------------------------------------------------------------------------------------------------ strip_weights
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(blurry:1.3), ((bad hands)), [text]", "blurry, bad hands, text"),
        ("(ugly, deformed:1.2), watermark", "ugly, deformed, watermark"),
        ("(worst quality:1.4), worst quality", "worst quality"),
        ("<lora:neg:0.5>, (blurry:0.9)", "<lora:neg:0.5>, blurry"),
        # Escaped brackets are literal text: unescaped, not removed.
        (r"\(artist\), (blurry:1.2)", "(artist), blurry"),
        (r"\[x\], y", "[x], y"),
    ],
)
def test_strip_weights(text, expected):
    assert strip_weights(text) == expected


# -------------------------------------------------------------------------------------------------- strip_echo
def test_strip_echo_removes_a_leading_copy_of_the_prompt():
    assert strip_echo("a cat on a sofa, blurry, watermark", "a cat on a sofa") == "blurry, watermark"
    assert strip_echo("A Cat On A Sofa: blurry", "a cat on a sofa") == "blurry"


def test_strip_echo_removes_prompt_terms_anywhere():
    assert strip_echo("blurry, red dress, watermark, Night", "a woman, red dress, night") == "blurry, watermark"


def test_strip_echo_only_strips_whole_words():
    # "a cat" is a prefix of "a catastrophe" as text, not as words: nothing is an echo here.
    assert strip_echo("a catastrophe, blurry", "a cat") == "a catastrophe, blurry"


def test_strip_echo_keeps_unrelated_output_and_empty_prompt():
    assert strip_echo("blurry, ugly", "") == "blurry, ugly"
    assert strip_echo("blurry, ugly", "a dog") == "blurry, ugly"


# --------------------------------------------------------------------------------------------- merge_negatives
def test_merge_negatives_user_first_verbatim():
    merged = merge_negatives("easynegative, (blurry:1.2), <lora:bad-hands:0.7>", "Blurry, watermark, bad hands")
    assert merged == "easynegative, (blurry:1.2), <lora:bad-hands:0.7>, watermark, bad hands"


@pytest.mark.parametrize(
    ("user", "generated", "expected"),
    [
        (None, "blurry, watermark", "blurry, watermark"),
        ("", "blurry", "blurry"),
        ("ugly", None, "ugly"),
        (None, None, ""),
        ("EasyNegative, bad-hands-5", "easynegative, text", "EasyNegative, bad-hands-5, text"),
    ],
)
def test_merge_negatives_edge_cases(user, generated, expected):
    assert merge_negatives(user, generated) == expected


# --------------------------------------------------------------------------------------------------- fit_terms
def _words(text: str) -> int:
    return len(text.replace(",", " ").split())


def test_fit_terms_keeps_whole_terms_in_order_within_budget():
    terms = ["worst quality", "blurry", "extra fingers on the left hand", "watermark", "text"]
    kept, dropped = fit_terms(terms, 5, _words)
    # The long term does not fit; the shorter ones after it still do.
    assert kept == ["worst quality", "blurry", "watermark", "text"]
    assert dropped == ["extra fingers on the left hand"]
    assert _words(join_terms(kept)) <= 5


def test_fit_terms_counts_the_joined_text():
    calls = []

    def count(text: str) -> int:
        calls.append(text)
        return len(text)

    kept, dropped = fit_terms(["ab", "cd", "ef"], 6, count)
    assert kept == ["ab", "cd"]  # "ab, cd" is 6 characters; "ab, cd, ef" is 10
    assert dropped == ["ef"]
    assert calls == ["ab", "ab, cd", "ab, cd, ef"]


def test_fit_terms_zero_budget_and_empty_input():
    assert fit_terms(["a", "b"], 0, _words) == ([], ["a", "b"])
    assert fit_terms([], 10, _words) == ([], [])


# ------------------------------------------------------------------------------------------------- parse_attention
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text, no syntax", [("plain text, no syntax", 1.0)]),
        ("(cat:1.5) dog", [("cat", 1.5), (" dog", 1.0)]),
        ("(x)", [("x", 1.1)]),
        ("((x))", [("x", 1.1 * 1.1)]),
        ("[x]", [("x", 1 / 1.1)]),
        ("[[x]]", [("x", 1 / 1.1 / 1.1)]),
        ("((a) b:1.2)", [("a", 1.1 * 1.2), (" b", 1.2)]),  # nested: the weights multiply
        ("(worst quality:1.4), ((blurry))", [("worst quality", 1.4), (", ", 1.0), ("blurry", 1.1 * 1.1)]),
        ("(x: 1.3 )", [("x", 1.3)]),
        ("\\(literal\\) \\[too\\]", [("(literal) [too]", 1.0)]),
        ("a:b c", [("a:b c", 1.0)]),  # a colon outside brackets is text
        ("(style: anime art)", [("style: anime art", 1.1)]),  # not a ':word)' closer: text, as A1111
        ("(x:0)", [("x", 0.0)]),
        ("red BREAK sky", [("red", 1.0), ("BREAK", -1.0), ("sky", 1.0)]),
        ("BREAK", [("BREAK", -1.0)]),
        ("breakfast, BREAKING", [("breakfast, BREAKING", 1.0)]),  # only the word BREAK
        ("", [("", 1.0)]),
    ],
)
def test_parse_attention(text, expected):
    got = parse_attention(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


# AUTOMATIC1111's parse_prompt_attention (modules/prompt_parser.py, v1.6+), written out as the reference: its regex
# and its loop, including its float(weight), its lone backslash ("\\" -> "") and its merge of equal weights.
A1111_RE_ATTENTION = re.compile(
    r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""",
    re.X,
)
A1111_RE_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def a1111_parse_prompt_attention(text):
    res, round_brackets, square_brackets = [], [], []

    def multiply_range(start_position, multiplier):
        for p in range(start_position, len(res)):
            res[p][1] *= multiplier

    for m in A1111_RE_ATTENTION.finditer(text):
        text, weight = m.group(0), m.group(1)
        if text.startswith("\\"):
            res.append([text[1:], 1.0])
        elif text == "(":
            round_brackets.append(len(res))
        elif text == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), float(weight))
        elif text == ")" and round_brackets:
            multiply_range(round_brackets.pop(), 1.1)
        elif text == "]" and square_brackets:
            multiply_range(square_brackets.pop(), 1 / 1.1)
        else:
            for i, part in enumerate(re.split(A1111_RE_BREAK, text)):
                if i > 0:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])
    for pos in round_brackets:
        multiply_range(pos, 1.1)
    for pos in square_brackets:
        multiply_range(pos, 1 / 1.1)
    if len(res) == 0:
        res = [["", 1.0]]
    i = 0
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1
    return res


def as_a1111(text):
    """A1111's runs, the empty ones left out (they tokenize to nothing), or None where A1111 raises."""
    try:
        runs = [(t, float(w)) for t, w in a1111_parse_prompt_attention(text) if t]
    except ValueError:
        return None
    return runs or [("", 1.0)]


A1111_CASES = [
    "(a:1,3)",  # a comma in the weight: text, and the group gets the 1.1 of plain brackets
    "(a:)",
    "(a:0.1~1)",
    "(a:-1)",  # a negative weight multiplies
    "(masterpiece:1,2), (best quality:1.1)",
    "(x:inf)",
    "(x:high) y",
    "a\\b",  # a lone backslash is dropped: "ab"
    "a \\ b",
    "\\\\ (x) \\",
    "(a)\\(b)",
    "(x BREAK y)",  # BREAK inside brackets: A1111 multiplies its marker too
    "(red:1.2)(blue:1.2)",
    "((a) b:1.2) [[c]]",
    "a:1.2) b",
    "(a:1.)",
    "(a:.5) (b: 2 )",
    "(a:+1.5)",
]


@pytest.mark.parametrize("text", A1111_CASES)
def test_parse_attention_is_a1111s(text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PromptSyntaxWarning)
        got = parse_attention(text)
    expected = as_a1111(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


def test_parse_attention_matches_a1111_on_random_texts():
    rng = random.Random(0)
    alphabet = ["a", "b", " ", "(", ")", "[", "]", ":", "\\", "1", ".", "-", ",", "BREAK", "x"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        expected = as_a1111(text)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PromptSyntaxWarning)
            if expected is None:  # A1111 fails on the weight (several dots, no digit): so does negopt, clearly
                with pytest.raises(ValueError, match="is not a finite number"):
                    parse_attention(text)
                continue
            got = parse_attention(text)
        assert [t for t, _ in got] == [t for t, _ in expected], text
        assert [w for _, w in got] == pytest.approx([w for _, w in expected]), text


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("(a:1,3)", r"'1,3' is not a number \(the colon and it are read as text, the group as \(\.\.\.\)"),
        ("(a:)", r"whose weight '' is not a number"),
        ("(a:0.1~1)", r"whose weight '0.1~1' is not a number"),
        ("(a:-1)", r"the negative weight in ':-1\)' \(applied as it is\)"),
    ],
)
def test_weights_a1111_reads_leniently_warn_and_strict_refuses_them(text, match):
    with pytest.warns(PromptSyntaxWarning, match=match):
        assert parse_attention(text) == as_a1111(text)
    with pytest.raises(ValueError, match="refused \\(strict\\).*" + match):
        parse_attention(text, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_attention("(a:1.3), [b], \\(c\\)", strict=True)  # nothing lenient: no warning, no error


@pytest.mark.parametrize("text", ["(x:1.2.3)", "(x:.)", "(x:" + "9" * 400 + ")"])
def test_weights_a1111_fails_on_are_a_clear_error(text):
    with pytest.raises(ValueError, match=r"The weight .* is not a finite number \(AUTOMATIC1111 fails on it too\)"):
        parse_attention(text)


def test_remove_extra_networks_is_a1111s_rule():
    text = "a cat, <lora:film grain:0.6>, <lyco:x:1:0.5> night <hypernet:h:1><embedding> <a b:1>"
    # A1111: re.sub(r"<(\w+):([^>]+)>", "", prompt), any network type; "<embedding>" and "<a b:1>" are not tags.
    assert remove_extra_networks(text) == (
        "a cat, ,  night <embedding> <a b:1>",
        ["<lora:film grain:0.6>", "<lyco:x:1:0.5>", "<hypernet:h:1>"],
    )
    assert remove_extra_networks("blurry") == ("blurry", [])


@pytest.mark.parametrize(
    ("text", "prompt", "expected"),
    [
        ("a [cat:dog:0.5] in [snow:10]", True, ["prompt editing '[cat:dog:0.5]'", "prompt editing '[snow:10]'"]),
        (
            "[a::0.3] [[b]:c: 4] [d:1e1]",
            True,
            ["prompt editing '[a::0.3]'", "prompt editing '[[b]:c: 4]'", "prompt editing '[d:1e1]'"],
        ),
        ("a [cat|dog|(fox:1.2)]", True, ["alternation '[cat|dog|(fox:1.2)]'"]),
        ("a cat AND a dog :1.2", True, ["AND (composable diffusion)"]),
        ("a cat AND a dog", False, []),  # in a negative A1111 reads AND as a word
        ("[x] [(y:1.2)] [a:b] \\[c:1\\] (d:0.5) band, ANDROID", True, []),
    ],
)
def test_unsupported_a1111_syntax(text, prompt, expected):
    assert unsupported_a1111_syntax(text, prompt=prompt) == expected


def test_parse_attention_unbalanced_brackets_follow_a1111_with_a_warning():
    with pytest.warns(PromptSyntaxWarning, match=r"1 unclosed '\(' \(applied to the rest of the text\)"):
        assert parse_attention("a (b, c") == [("a ", 1.0), ("b, c", pytest.approx(1.1))]
    with pytest.warns(UserWarning, match=r"1 unmatched '\]' \(read as text\)"):
        assert parse_attention("a] b") == [("a] b", 1.0)]
