"""negopt.data: loading, cleaning rules (each counted), the leak-free split, and bad input."""

from __future__ import annotations

import json

import pytest

datasets = pytest.importorskip("datasets")

from negopt.data import count_words, load_negative_prompts, split_of  # noqa: E402

NO_SPLIT = {"validation_size": 0.0, "test_size": 0.0}


def _rows(dd) -> list[dict]:
    return [row for name in ("train", "validation", "test") for row in dd[name]]


def _write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return str(path)


def test_local_formats_keep_other_columns(tmp_path):
    rows = [
        {"prompt": "a cat", "negative_prompt": "blurry", "likes": 3, "model": "sd15"},
        {"prompt": "a dog", "negative_prompt": "lowres, ugly", "likes": 0, "model": "sdxl"},
    ]
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "p.parquet"))
    ds.to_csv(str(tmp_path / "p.csv"), index=False)
    _write_jsonl(tmp_path / "p.jsonl", rows)
    for name in ("p.parquet", "p.csv", "p.jsonl"):
        dd = load_negative_prompts(str(tmp_path / name), **NO_SPLIT)
        assert list(dd) == ["train", "validation", "test"]
        assert dd["train"].column_names == ["prompt", "negative_prompt", "likes", "model"]
        got = sorted((r["prompt"], r["negative_prompt"], r["likes"], r["model"]) for r in dd["train"])
        assert got == [("a cat", "blurry", 3, "sd15"), ("a dog", "lowres, ugly", 0, "sdxl")], name


def test_each_cleaning_rule_is_applied_and_counted():
    rows = [
        {"prompt": "  a cat  ", "negative_prompt": " blurry ", "likes": 5},  # kept, stripped
        {"prompt": "   ", "negative_prompt": "blurry", "likes": 5},  # empty prompt
        {"prompt": None, "negative_prompt": "blurry", "likes": 5},  # missing prompt
        {"prompt": "a dog", "negative_prompt": " \n ", "likes": 5},  # empty negative
        {"prompt": "a cat", "negative_prompt": "blurry", "likes": 5},  # duplicate of row 0 after strip
        {"prompt": "a fox", "negative_prompt": "ugly", "likes": 0},  # below min_likes
        {"prompt": "a (red:1.2) car", "negative_prompt": "(blurry:1.3), [text], blurry", "likes": 9},  # weights
        {"prompt": "a bird", "negative_prompt": "(:1.2)", "likes": 9},  # empty once the weights are gone
        {"prompt": "one two three four five six", "negative_prompt": "ok", "likes": 9},  # prompt too long
        {"prompt": "a cow", "negative_prompt": "a, b, c, d, e", "likes": 9},  # negative too long
    ]
    dd, summary = load_negative_prompts(
        datasets.Dataset.from_list(rows),
        min_likes=1,
        max_prompt_length=5,
        max_negative_length=4,
        return_summary=True,
        **NO_SPLIT,
    )
    kept = {(r["prompt"], r["negative_prompt"]) for r in _rows(dd)}
    assert kept == {("a cat", "blurry"), ("a red car", "blurry, text")}
    assert summary.rows_in == 10 and summary.rows_out == 2
    assert summary.dropped == {
        "prompt_not_text": 0,
        "negative_not_text": 0,
        "empty_prompt": 2,
        "empty_negative": 2,
        "min_likes": 1,
        "duplicate_pair": 1,
        "prompt_too_long": 1,
        "negative_too_long": 1,
    }
    assert summary.changed == {"weights_stripped": 1, "negative_normalised": 1}
    assert summary.length_unit == "words"
    assert summary.negative_length["max"] == 2 and summary.prompt_length["max"] == 3
    text = str(summary)
    for rule in summary.dropped:
        assert rule in text
    assert "rows kept" in text and "words" in text


def test_weights_kept_when_asked_and_no_likes_filter_by_default():
    rows = [{"prompt": "a (red:1.2) car", "negative_prompt": "(blurry:1.3),, blurry", "likes": 0}]
    dd, summary = load_negative_prompts(
        datasets.Dataset.from_list(rows), strip_weights=False, return_summary=True, **NO_SPLIT
    )
    assert dd["train"][0] == {"prompt": "a (red:1.2) car", "negative_prompt": "(blurry:1.3)", "likes": 0}
    assert summary.dropped["min_likes"] == 0 and "weights_stripped" not in summary.changed


def test_lengths_in_tokens_with_a_tokenizer():
    from tiny import word_tokenizer

    tok = word_tokenizer(["a", "cat", "blurry", ","])
    rows = [{"prompt": "a cat", "negative_prompt": "blurry, blurry2"}, {"prompt": "a", "negative_prompt": "blurry"}]
    # "blurry, blurry2" is 2 words but 3 tokens ("blurry" "," "<unk>").
    assert count_words("blurry, blurry2") == 2
    dd, summary = load_negative_prompts(
        datasets.Dataset.from_list(rows), tokenizer=tok, max_negative_length=2, return_summary=True, **NO_SPLIT
    )
    assert [r["negative_prompt"] for r in _rows(dd)] == ["blurry"]
    assert summary.dropped["negative_too_long"] == 1 and summary.length_unit == "tokens"


def test_split_is_by_prompt_deterministic_and_leak_free():
    prompts = [f"prompt number {i}" for i in range(400)]
    rows = []
    for i, p in enumerate(prompts):
        for k in range(3):  # each prompt with three different negatives, and a case/spacing variant
            rows.append({"prompt": p if k < 2 else "  " + p.upper(), "negative_prompt": f"neg {i} {k}"})
    dd = load_negative_prompts(datasets.Dataset.from_list(rows), validation_size=0.1, test_size=0.1)
    key = {name: {" ".join(r["prompt"].lower().split()) for r in dd[name]} for name in dd}
    assert not key["train"] & key["validation"] and not key["train"] & key["test"]
    assert not key["validation"] & key["test"]
    assert sum(len(dd[n]) for n in dd) == 1200
    # About 10% / 10% of the 400 prompts, with a generous margin.
    assert 20 <= len(key["validation"]) <= 60 and 20 <= len(key["test"]) <= 60
    # The split of a prompt depends on the prompt only: the same with half the data, and in another order.
    half = load_negative_prompts(datasets.Dataset.from_list(rows[::-2]), validation_size=0.1, test_size=0.1)
    for name in half:
        for r in half[name]:
            assert split_of(r["prompt"], 0.1, 0.1) == name
            assert " ".join(r["prompt"].lower().split()) in key[name]
    other_seed = {p: split_of(p, 0.1, 0.1, seed=1) for p in prompts}
    assert other_seed != {p: split_of(p, 0.1, 0.1) for p in prompts}


def test_missing_columns_are_named(tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"text": "a cat", "negative": "blurry"}])
    with pytest.raises(ValueError, match=r"'prompt', 'negative_prompt'.*has \['text', 'negative'\]"):
        load_negative_prompts(path)
    ok = datasets.Dataset.from_list([{"prompt": "a", "negative_prompt": "b"}])
    with pytest.raises(ValueError, match=r"min_likes=3 needs a 'likes' column"):
        load_negative_prompts(ok, min_likes=3)


def test_empty_after_cleaning_reports_the_drops():
    rows = [{"prompt": "a cat", "negative_prompt": "  "}, {"prompt": "", "negative_prompt": "blurry"}]
    with pytest.raises(ValueError, match=r"no rows left.*'empty_prompt': 1, 'empty_negative': 1"):
        load_negative_prompts(datasets.Dataset.from_list(rows))


def test_unreadable_and_missing_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_negative_prompts(str(tmp_path / "nope.parquet"))
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"this is not parquet")
    with pytest.raises(ValueError, match="cannot read source"):
        load_negative_prompts(str(bad))
    bad_json = tmp_path / "broken.jsonl"
    bad_json.write_text('{"prompt": "a", "negative_prompt": \n')
    with pytest.raises(ValueError, match="cannot read source"):
        load_negative_prompts(str(bad_json))
    unknown = tmp_path / "pairs.txt"
    unknown.write_text("x")
    with pytest.raises(ValueError, match="unknown file type"):
        load_negative_prompts(str(unknown))
    with pytest.raises(ValueError, match="folder"):
        load_negative_prompts(str(tmp_path))
    with pytest.raises(TypeError, match="source must be"):
        load_negative_prompts(42)


def test_hub_id_offline_gives_a_clear_error():
    # The test session is offline (HF_HUB_OFFLINE=1): the hub path fails with a message that says what to do.
    with pytest.raises(ValueError, match="cannot load dataset 'someone/no-such-dataset' from the Hugging Face hub"):
        load_negative_prompts("someone/no-such-dataset")


def test_bad_arguments():
    ds = datasets.Dataset.from_list([{"prompt": "a", "negative_prompt": "b"}])
    with pytest.raises(ValueError, match="validation_size"):
        load_negative_prompts(ds, validation_size=1.5)
    with pytest.raises(ValueError, match="below 1"):
        load_negative_prompts(ds, validation_size=0.5, test_size=0.5)
    with pytest.raises(ValueError, match="max_prompt_length"):
        load_negative_prompts(ds, max_prompt_length=0)


# ---------------------------------------------------------------------------------------------- numeric cells
def test_numbers_are_counted_as_not_text_not_as_empty():
    numeric = datasets.Dataset.from_dict({"prompt": [1, 2], "negative_prompt": ["blurry", "ugly"]})
    with pytest.raises(ValueError, match=r"'prompt_not_text': 2, 'negative_not_text': 0, 'empty_prompt': 0"):
        load_negative_prompts(numeric, **NO_SPLIT)
    numeric = datasets.Dataset.from_dict({"prompt": ["a cat", "a dog"], "negative_prompt": [3.5, 4.0]})
    with pytest.raises(ValueError, match=r"'negative_not_text': 2, 'empty_prompt': 0, 'empty_negative': 0"):
        load_negative_prompts(numeric, **NO_SPLIT)


# ----------------------------------------------------------------------------------------------- load_prompts
def test_load_prompts_reads_every_format_alike(tmp_path):
    from negopt.data import load_prompts

    rows = [{"prompt": "a cat", "negative_prompt": "blurry"}, {"prompt": "a dog", "negative_prompt": None}]
    (tmp_path / "p.txt").write_text("a cat\n\n  a dog  \n", encoding="utf-8")
    _write_jsonl(tmp_path / "p.jsonl", rows)
    (tmp_path / "p.json").write_text(json.dumps(["a cat", {"prompt": "a dog"}]), encoding="utf-8")
    ds = datasets.Dataset.from_list(
        [{"prompt": "a cat", "negative_prompt": "blurry"}, {"prompt": "a dog", "negative_prompt": ""}]
    )
    ds.to_csv(str(tmp_path / "p.csv"), index=False)
    ds.to_parquet(str(tmp_path / "p.parquet"))
    datasets.DatasetDict({"train": ds, "test": ds.select([1])}).save_to_disk(str(tmp_path / "saved"))
    for name in ("p.txt", "p.jsonl", "p.json", "p.csv", "p.parquet"):
        assert load_prompts(str(tmp_path / name)) == ["a cat", "a dog"], name
    assert load_prompts(str(tmp_path / "p.jsonl"), negatives=True) == [
        {"prompt": "a cat", "negative_prompt": "blurry"},
        {"prompt": "a dog", "negative_prompt": None},
    ]
    assert load_prompts(str(tmp_path / "p.csv"), negatives=True)[1]["negative_prompt"] is None  # an empty cell
    assert load_prompts(str(tmp_path / "saved"), split=("test",)) == ["a dog"]
    assert load_prompts(str(tmp_path / "saved")) == ["a cat", "a dog"]  # the first split
    assert load_prompts(ds, num_prompts=1) == ["a cat"] and load_prompts(["a", " ", "b"]) == ["a", "b"]
    kept = load_prompts([f"prompt number {i}" for i in range(200)], heldout_split="test")
    assert kept and len(kept) < 40 and all(split_of(p) == "test" for p in kept)


def test_load_prompts_errors_name_the_problem(tmp_path):
    from negopt.data import load_prompts

    with pytest.raises(FileNotFoundError, match="no such file: 'missing.txt'"):
        load_prompts("missing.txt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_prompts("./data/prompts")
    with pytest.raises(ValueError, match=r"item 1: the prompt 42 is a int, not text"):
        load_prompts(["a cat", 42])
    _write_jsonl(tmp_path / "bad.jsonl", [{"text": "a cat"}])
    with pytest.raises(ValueError, match=r"item 0 has no 'prompt' key \(keys: \['text'\]\)"):
        load_prompts(str(tmp_path / "bad.jsonl"))
    assert load_prompts(str(tmp_path / "bad.jsonl"), prompt_column="text") == ["a cat"]
    (tmp_path / "blank.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="no prompts in"):
        load_prompts(str(tmp_path / "blank.txt"))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"prompt": ["a"]})}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ValueError, match=r"no split 'test' \(splits: train\)"):
        load_prompts(str(tmp_path / "dd"), split="test")
    with pytest.raises(ValueError, match="cannot be loaded as a hub dataset"):
        load_prompts("someone/prompts")  # HF_HUB_OFFLINE: a hub id fails with its own message


def test_importing_negopt_data_is_light():
    import os
    import subprocess
    import sys

    code = (
        "import sys, negopt.data; "
        "print(sorted({'torch', 'transformers', 'diffusers', 'datasets', 'pyarrow'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- issue 22: where a JSONL file is wrong
@pytest.mark.parametrize(
    ("text", "named"),
    [
        # blank lines count, as in an editor: the broken record is on line 4
        ('{"prompt": "a", "negative_prompt": "b"}\n\n\n{"prompt": "c", "negative_prompt": "d"\n',
         "line 4, column 39: Expecting ',' delimiter"),
        ('{"prompt": "a", "negative_prompt": "b"}\n["c", "d"]\n', "line 2 is a JSON array, not an object"),
        ('{"prompt": "a", "negative_prompt": "b", "likes": 3}\n{"prompt": "c", "negative_prompt": "d", "likes": "x"}',
         "at line 2, 'likes' is a string (\"x\") where line 1 has a number"),
        ('[{"prompt": "a", "negative_prompt": "b"}, 7]', "record 2 of the array is a JSON number"),
    ],
)  # fmt: skip
def test_jsonl_errors_name_the_line(tmp_path, text, named):
    path = tmp_path / ("pairs.json" if text.startswith("[") else "pairs.jsonl")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as e:
        load_negative_prompts(str(path))
    assert named in str(e.value) and str(path) in str(e.value)


def test_jsonl_with_a_byte_order_mark_reads(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "a cat", "negative_prompt": "blurry"}\n')
    dd = load_negative_prompts(str(path), validation_size=0, test_size=0)
    assert dd["train"]["prompt"] == ["a cat"]
