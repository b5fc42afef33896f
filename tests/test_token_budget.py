"""negopt.pipeline.token_budget: token limits, counts with textual inversions, word cuts and whole-term fitting,
pinned on a
byte-level CLIP tokenizer whose count is written out by hand (one token per non-space ASCII character)."""

from __future__ import annotations

import pytest

from negopt.pipeline.token_budget import Trimmed, count_tokens, cut_words, fit_negatives, token_limit, trimmed_message
from tiny_clip import tiny_clip_tokenizer


def by_hand(text: str) -> int:
    return len(text.replace(" ", ""))


@pytest.fixture(scope="module")
def clip():
    return tiny_clip_tokenizer()


def test_token_limit_clip_keeps_its_own_and_t5_takes_the_calls(clip):
    from transformers import ByT5Tokenizer

    assert token_limit(clip) == 77 and token_limit(clip, 512) == 77  # CLIP cuts at model_max_length whatever the call
    unlimited = ByT5Tokenizer()  # model_max_length is the "no limit" sentinel
    assert token_limit(unlimited) is None and token_limit(unlimited, 256) == 256
    assert token_limit(ByT5Tokenizer(model_max_length=128), 256) == 128


def test_count_tokens_expands_a_multi_vector_embedding(clip):
    texts = ["lowres, bad hands", "blurry"]
    assert count_tokens(clip, texts) == [by_hand(t) for t in texts]
    tokenizer = tiny_clip_tokenizer()
    tokenizer.add_tokens(["badneg", "badneg_1", "badneg_2"])  # a 3-vector textual inversion, as diffusers loads it

    def convert(texts, tok):  # what diffusers' maybe_convert_prompt writes for it
        return [t.replace("badneg", "badneg badneg_1 badneg_2") for t in texts]

    assert count_tokens(tokenizer, ["badneg, jpeg"]) == [1 + 1 + 4]
    assert count_tokens(tokenizer, ["badneg, jpeg"], convert) == [3 + 1 + 4]


def test_cut_words_keeps_the_longest_head_that_fits():
    text = "one two three four five"
    for budget in range(0, 25):
        head, tail = cut_words(text, lambda h, budget=budget: by_hand(h) - budget)
        words = text.split(" ")
        reference = max((k for k in range(len(words) + 1) if by_hand(" ".join(words[:k])) <= budget), default=0)
        assert head == " ".join(words[:reference]) and tail == " ".join(words[reference:])
    assert cut_words(text, lambda h: 1) == ("", text)
    assert cut_words(text, lambda h: 1, keep_one=True) == ("one", "two three four five")


def test_fit_negatives_keeps_user_terms_first_and_whole_generated_terms(clip):
    negatives = [
        "lowres, bad hands, blurry, watermark, text, jpeg",
        "blurry",
        "one two three four five six seven eight, blurry",
    ]
    fitted, trimmed = fit_negatives(negatives, [(clip, 30)], n_user=[2, 0, 1])  # 28 tokens besides start and end
    # By hand: "lowres, bad hands" is 15; + ", blurry" 22; + ", watermark" 32 (out); + ", text" 27; + ", jpeg" 32
    # (out).
    # The user's one long term: the words up to "seven" are 27 tokens, "eight" would make 32.
    assert fitted == ["lowres, bad hands, blurry, text", "blurry", "one two three four five six seven"]
    assert trimmed == [Trimmed(0, "", ["watermark", "jpeg"]), Trimmed(2, "eight", ["blurry"])]
    assert all(by_hand(f) <= 28 for f in fitted)
    message = trimmed_message(fitted, trimmed, [(clip, 30)])
    assert "CLIPTokenizer 30" in message and "'watermark', 'jpeg'" in message and "not sent: 'eight'" in message
    assert fit_negatives(negatives[1:2], [(clip, 30)]) == (["blurry"], [])  # it fits: unchanged, nothing trimmed
    assert fit_negatives(negatives, []) == (negatives, [])  # no limit: unchanged


def test_a_generated_negative_without_commas_is_cut_at_a_word_boundary_not_dropped(clip):
    # A generated negative written as one long term (no commas): 20 words of 5 tokens, 100 tokens in all.
    words = [f"w{i:02d}ab" for i in range(20)]
    generated = " ".join(words)
    fitted, trimmed = fit_negatives([generated], [(clip, 30)])  # 28 tokens besides start and end
    # By hand: 5 words are 25 tokens, a 6th makes 30 > 28. Before the fix the whole term was dropped: "".
    assert fitted == [" ".join(words[:5])]
    assert trimmed == [Trimmed(0, "", [], " ".join(words[5:]))]
    # After the user's terms, the generated term fills what is left: "lowres" is 6, ", " 1, three words 15.
    fitted, trimmed = fit_negatives([f"lowres, {generated}, blurry"], [(clip, 30)], n_user=[1])
    assert fitted == ["lowres, " + " ".join(words[:4])]
    assert by_hand(fitted[0]) + 1 <= 28 < by_hand(fitted[0]) + 1 + 5
    assert trimmed == [Trimmed(0, "", ["blurry"], " ".join(words[4:]))]
    # Whole generated terms still come first: a term that fits whole is never cut.
    fitted, _ = fit_negatives([f"{generated}, blurry"], [(clip, 30)])
    assert fitted == [" ".join(words[:5])]

    message = trimmed_message(fitted, trimmed, [(clip, 30)])
    assert "the generated negative prompt was cut at a word boundary" in message
    assert f"not sent: {' '.join(words[4:])!r}" in message and "dropped generated terms 'blurry'" in message
    # The user passed nothing that was cut: the warning does not tell them to shorten their negative.
    assert "Only generated text was trimmed" in message and "Shorten `negative_prompt`" not in message


def test_counting_through_diffusers_conversion_logs_no_sequence_length_message(tokenizer_log):
    tokenizer = tiny_clip_tokenizer()  # fresh: transformers logs the message once per tokenizer
    tokenizer.add_tokens(["badneg", "badneg_1"])

    def convert(texts, tok):  # as diffusers' maybe_convert_prompt does, it tokenizes without verbose=False
        tok.tokenize(texts[0])
        return [t.replace("badneg", "badneg badneg_1") for t in texts]

    long = "badneg, " + " ".join(["abcd"] * 50)  # 200+ tokens: over the 77 of the tokenizer
    assert count_tokens(tokenizer, [long], convert) == [2 + 1 + 200]
    assert not any("Token indices sequence length" in m for m in tokenizer_log)
    tiny_clip_tokenizer().tokenize(long)  # what the conversion logs outside count_tokens (once per tokenizer)
    assert any("Token indices sequence length" in m for m in tokenizer_log)
