"""NegOptGenerator: loading, generation contracts, post-processing, saving, bad input, and the CLI on top.

Tiny random models write garbage text, so these tests check contracts (types, lengths, order, determinism,
equality between paths), not text quality.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

from negopt import __version__
from negopt.config import CONFIG_NAME, NegOptConfig
from negopt.generator import NegOptGenerator
from tiny import tiny_gpt2, tiny_t5

PROMPTS = [
    "a cat",
    "a portrait photo of an old fisherman, detailed wrinkles, 85mm, dramatic lighting",
    "city",
    "a bowl of fruit on a wooden table, oil painting, still life",
    "(masterpiece:1.2), 1girl, solo, cherry blossoms",
    "a dog",
    "an astronaut riding a horse on mars, cinematic, 4k, highly detailed, trending on artstation",
]
SHORT = {"max_new_tokens": 12}


# ------------------------------------------------------------------------------------------------------ fixtures
# t5_dir and gpt2_dir: conftest.py
@pytest.fixture(scope="module")
def t5_gen(t5_dir):
    return NegOptGenerator.from_pretrained(t5_dir)


@pytest.fixture(scope="module")
def gpt2_gen(gpt2_dir):
    return NegOptGenerator.from_pretrained(gpt2_dir)


@pytest.fixture(scope="module", params=["seq2seq", "causal"])
def gen(request, t5_gen, gpt2_gen):
    return t5_gen if request.param == "seq2seq" else gpt2_gen


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, t5_dir):
    """A LoRA adapter over the tiny T5 saved in t5_dir: (folder, the in-memory peft model)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSeq2SeqLM

    base = AutoModelForSeq2SeqLM.from_pretrained(t5_dir)
    peft_model = get_peft_model(base, LoraConfig(task_type="SEQ_2_SEQ_LM", target_modules=["q", "v"], r=4))
    torch.manual_seed(1)
    with torch.no_grad():  # LoRA B starts at zero (a no-op adapter): give it weights so the adapter shows
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.eval()
    folder = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(folder)
    NegOptConfig(model_type="seq2seq", prompt_template="negative for: {prompt}").save_pretrained(folder)
    return str(folder), peft_model


def _copy(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


# -------------------------------------------------------------------------------------------------------- loading
def test_loads_seq2seq_and_causal_from_folders(t5_gen, gpt2_gen):
    from transformers import GPT2LMHeadModel, T5ForConditionalGeneration

    assert isinstance(t5_gen.model, T5ForConditionalGeneration) and t5_gen.is_seq2seq
    assert isinstance(gpt2_gen.model, GPT2LMHeadModel) and not gpt2_gen.is_seq2seq
    assert gpt2_gen.config.prompt_template == "Prompt: {prompt}\nNegative prompt:"
    for g in (t5_gen, gpt2_gen):
        assert g.device == torch.device("cpu") and g.dtype == torch.float32
        assert not g.model.training
    assert "T5ForConditionalGeneration" in repr(t5_gen) and "seq2seq" in repr(t5_gen) and "cpu" in repr(t5_gen)
    assert "GPT2LMHeadModel" in repr(gpt2_gen) and "causal" in repr(gpt2_gen) and "Prompt: {prompt}" in repr(gpt2_gen)


def test_to_returns_self_and_moves(t5_dir):
    g = NegOptGenerator.from_pretrained(t5_dir, torch_dtype="float64")
    assert g.dtype == torch.float64
    assert g.to("cpu") is g
    assert g.to(dtype=torch.float32).dtype == torch.float32


def test_constructor_is_the_from_model_path_and_leaves_components_alone():
    model, tokenizer = tiny_gpt2()
    side = tokenizer.padding_side
    g = NegOptGenerator(model, tokenizer)
    assert g.model is model and g.tokenizer is tokenizer and g.config.model_type == "causal"
    g(["a cat", "a much longer prompt about a dog in a field"], **SHORT)
    assert tokenizer.padding_side == side  # left padding is done by the generator, not by mutating the tokenizer

    with pytest.raises(TypeError, match="config must be a negopt.NegOptConfig"):
        NegOptGenerator(model, tokenizer, {"model_type": "causal"})
    with pytest.raises(ValueError, match="model_type is 'seq2seq' but the model"):
        NegOptGenerator(model, tokenizer, NegOptConfig(model_type="seq2seq"))
    with pytest.raises(TypeError, match="model must be a transformers language model"):
        NegOptGenerator(torch.nn.Linear(2, 2), tokenizer)


def test_lora_adapter_folder_loads_base_and_adapter(adapter, t5_dir, t5_gen):
    from peft import PeftModel

    folder, peft_model = adapter
    g = NegOptGenerator.from_pretrained(folder)
    assert isinstance(g.model, PeftModel)
    assert g.config.prompt_template == "negative for: {prompt}"  # negopt_config.json of the adapter folder
    assert "adapter=lora over T5ForConditionalGeneration" in repr(g)
    loaded = dict(g.model.named_parameters())
    for name, p in peft_model.named_parameters():
        if "lora_" in name:
            assert torch.equal(loaded[name], p), name

    reference = NegOptGenerator(peft_model, g.tokenizer, g.config)
    out = g(PROMPTS, **SHORT)
    assert out == reference(PROMPTS, **SHORT)
    # The adapter changes what the model writes (same template, so only the weights differ).
    base = NegOptGenerator(peft_model.get_base_model(), g.tokenizer, g.config)
    with peft_model.disable_adapter():
        assert base(PROMPTS, **SHORT) != out


def test_not_a_language_model_is_refused(tmp_path):
    from transformers import ViTConfig, ViTModel

    ViTModel(
        ViTConfig(
            hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, image_size=8, patch_size=4
        )
    ).save_pretrained(tmp_path / "vit")
    with pytest.raises(ValueError, match="model type 'vit', which is neither a seq2seq LM"):
        NegOptGenerator.from_pretrained(tmp_path / "vit")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(ValueError, match="cannot read the model config in .*odd"):
        NegOptGenerator.from_pretrained(tmp_path / "odd")


def test_negopt_config_model_type_must_match(tmp_path, t5_dir):
    folder = _copy(t5_dir, tmp_path / "m")
    NegOptConfig(model_type="causal").save_pretrained(folder)
    with pytest.raises(ValueError, match="model_type='causal', but the model is a seq2seq"):
        NegOptGenerator.from_pretrained(folder)


# ----------------------------------------------------------------------------------------------------- generation
def test_str_gives_str_and_list_gives_list_in_order(gen):
    one = gen("a cat", **SHORT)
    assert isinstance(one, str)
    many = gen(PROMPTS, **SHORT)
    assert isinstance(many, list) and len(many) == len(PROMPTS) and all(isinstance(x, str) for x in many)
    assert gen(list(reversed(PROMPTS)), **SHORT) == list(reversed(many))
    assert gen(tuple(PROMPTS[:2]), **SHORT) == many[:2]


def test_batched_greedy_equals_one_by_one(gen):
    """Padding, attention masks and (for causal left padding) position ids make batching invisible."""
    kwargs = {"max_new_tokens": 16}
    singles = [gen(p, **kwargs) for p in PROMPTS]
    assert len(set(singles)) > 2  # non-trivial outputs, or the equality below proves nothing
    for batch_size in (3, 32):
        assert gen(PROMPTS, batch_size=batch_size, **kwargs) == singles
    # Without repetition control too, and with a length floor.
    plain = {"max_new_tokens": 10, "min_new_tokens": 10, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
    assert gen(PROMPTS, batch_size=4, **plain) == [gen(p, **plain) for p in PROMPTS]


def test_matches_plain_generate_plus_postprocess(gen):
    """The output is exactly model.generate's text for the formatted prompt, cleaned by postprocess()."""
    tok, model = gen.tokenizer, gen.model
    kwargs = {**gen.config.generation_kwargs, **SHORT}
    for prompt in PROMPTS[:3]:
        enc = tok(gen.config.format_prompt(prompt), return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**enc, **kwargs, pad_token_id=gen._pad_token_id)
        if not gen.is_seq2seq:
            ids = ids[:, enc["input_ids"].shape[1] :]
        raw = tok.decode(ids[0], skip_special_tokens=True)
        assert gen(prompt, **SHORT) == NegOptGenerator.postprocess(raw, prompt)


def test_postprocess_strips_echo_normalises_and_keeps_weights():
    post = NegOptGenerator.postprocess
    assert post("a cat, blurry ,, (bad hands:1.3),  Blurry , watermark", "a cat") == (
        "blurry, (bad hands:1.3), watermark"
    )
    assert post("A portrait of a man, ugly,\n\n (blurry:1.3),((bad hands)), bad hands ,", "a portrait of a man") == (
        "ugly, (blurry:1.3), ((bad hands))"
    )
    assert post("  lowres   ,  jpeg   artifacts ", "x") == "lowres, jpeg artifacts"
    assert post("", "x") == ""


def test_generation_kwargs_pass_through(t5_gen):
    steps = []
    handle = t5_gen.model.get_decoder().register_forward_hook(lambda *a: steps.append(1))
    try:
        # ByT5 tokens are bytes: two new tokens can never make more than two bytes of text.
        assert len(t5_gen("a cat", max_new_tokens=2).encode()) <= 2
        assert len(steps) <= 2
        steps.clear()
        t5_gen("a cat", max_new_tokens=9, min_new_tokens=9)
        assert len(steps) == 9  # one decoder pass per new token: the length settings reached generate
    finally:
        handle.remove()
    with pytest.raises(ValueError, match="not_a_generate_option"):
        t5_gen("a cat", not_a_generate_option=3)


def test_candidates_shape_and_seeds(gen):
    kwargs = {"max_new_tokens": 12}
    c = gen("a cat", num_candidates=3, seed=0, **kwargs)
    assert isinstance(c, list) and len(c) == 3 and all(isinstance(x, str) for x in c)
    cc = gen(PROMPTS[:4], num_candidates=2, seed=0, **kwargs)
    assert len(cc) == 4 and all(isinstance(x, list) and len(x) == 2 for x in cc)

    state = torch.get_rng_state()
    a = gen(PROMPTS[:4], num_candidates=3, seed=123, **kwargs)
    assert torch.equal(torch.get_rng_state(), state)  # seeding does not disturb the global RNG
    assert gen(PROMPTS[:4], num_candidates=3, seed=123, **kwargs) == a
    assert gen(PROMPTS[:4], num_candidates=3, seed=124, **kwargs) != a
    # k > 1 samples by default: candidates of one prompt differ.
    assert any(len(set(cands)) > 1 for cands in a)


def test_candidates_with_beam_search_are_deterministic(t5_gen):
    a = t5_gen(PROMPTS[:2], num_candidates=2, num_beams=3, **SHORT)
    assert a == t5_gen(PROMPTS[:2], num_candidates=2, num_beams=3, **SHORT)
    assert all(len(x) == 2 for x in a)


# ------------------------------------------------------------------------------------------------- saving, loading
@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_save_pretrained_round_trip(tmp_path, kind):
    model, tokenizer = tiny_t5(3) if kind == "seq2seq" else tiny_gpt2(3)
    template = "negative prompt for: {prompt}" if kind == "seq2seq" else "P: {prompt}\nN:"
    cfg = NegOptConfig(
        model_type=kind,
        prompt_template=template,
        generation_kwargs={"max_new_tokens": 14, "no_repeat_ngram_size": 2},
        max_input_tokens=300,
    )
    g = NegOptGenerator(model, tokenizer, cfg)
    folder = g.save_pretrained(tmp_path / "saved")
    files = set(os.listdir(folder))
    assert {"config.json", "model.safetensors", CONFIG_NAME, "README.md", "tokenizer_config.json"} <= files
    assert not any(f.endswith(".bin") for f in files)
    saved_cfg = json.loads((tmp_path / "saved" / CONFIG_NAME).read_text())
    assert saved_cfg["negopt_version"] == __version__ and saved_cfg["prompt_template"] == template
    card = (tmp_path / "saved" / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: negopt" in card and "NegOptGenerator.from_pretrained" in card

    loaded = NegOptGenerator.from_pretrained(folder)
    assert loaded.config.to_dict() == g.config.to_dict()
    assert loaded(PROMPTS) == g(PROMPTS)
    assert loaded(PROMPTS[:3], num_candidates=2, seed=5) == g(PROMPTS[:3], num_candidates=2, seed=5)


def test_adapter_save_round_trip(tmp_path, adapter):
    g = NegOptGenerator.from_pretrained(adapter[0])
    folder = g.save_pretrained(tmp_path / "a")
    files = set(os.listdir(folder))
    assert "adapter_config.json" in files and "adapter_model.safetensors" in files and "model.safetensors" not in files
    assert NegOptGenerator.from_pretrained(folder)(PROMPTS, **SHORT) == g(PROMPTS, **SHORT)


def test_push_to_hub_folder(tmp_path, t5_gen, adapter):
    folder = t5_gen.prepare_upload_folder(tmp_path / "up", "someone/negopt-tiny")
    files = set(os.listdir(folder))
    assert {"config.json", "model.safetensors", CONFIG_NAME, "README.md"} <= files
    card = (tmp_path / "up" / "README.md").read_text()
    assert "library_name: negopt" in card and 'from_pretrained("someone/negopt-tiny")' in card
    assert NegOptGenerator.from_pretrained(folder)(PROMPTS[:3], **SHORT) == t5_gen(PROMPTS[:3], **SHORT)

    # An adapter over a local base model would not load for anyone else: say so.
    with pytest.warns(UserWarning, match="is a local path, so others cannot load"):
        NegOptGenerator.from_pretrained(adapter[0]).prepare_upload_folder(tmp_path / "up2", "someone/adapter")
    with pytest.raises(ValueError, match="repo_id must be a hub id"):
        t5_gen.push_to_hub("not a/valid/id")


def test_model_card_keeps_a_users_readme(tmp_path, t5_gen):
    (tmp_path / "README.md").write_text("# my own notes\n")
    t5_gen.save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text() == "# my own notes\n"


# ------------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("bad", "match"),
    [(None, "got NoneType"), (42, "got int"), (["a cat", 3], r"prompt\[1\] is int"), ([None], r"prompt\[0\]")],
)
def test_bad_prompt_types(t5_gen, bad, match):
    with pytest.raises(TypeError, match=match) as e:
        t5_gen(bad)
    assert "prompt" in str(e.value)


def test_bad_call_options(t5_gen):
    with pytest.raises(ValueError, match="num_candidates must be at least 1"):
        t5_gen("a cat", num_candidates=0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        t5_gen("a cat", batch_size=2.5)
    with pytest.raises(TypeError, match="seed must be an int"):
        t5_gen("a cat", seed="1")


def test_empty_inputs_do_not_run_the_model(gen):
    calls = []
    handle = gen.model.register_forward_hook(lambda *a: calls.append(1))
    gen.clear_cache()  # "a cat" may be cached by an earlier test: this one checks that the model runs
    try:
        assert gen([]) == []
        assert gen("") == ""
        assert gen("   \n") == ""
        assert gen(["", " "], num_candidates=2) == [["", ""], ["", ""]]
        assert calls == []
        out = gen(["", "a cat", " "], **SHORT)
        assert out[0] == "" and out[2] == "" and out[1] == gen("a cat", **SHORT)
        assert calls  # the non-empty prompt did run
    finally:
        handle.remove()


def test_long_prompt_is_truncated_with_a_warning(gen):
    lengths = []
    # The encoder (seq2seq) or the first forward pass (causal) sees the whole, padded input.
    module = gen.model.get_encoder() if gen.is_seq2seq else gen.model
    handle = module.register_forward_pre_hook(
        lambda m, args, kwargs: (
            lengths.append(kwargs["input_ids"].shape[1]) if kwargs.get("input_ids") is not None else None
        ),
        with_kwargs=True,
    )
    long_prompt = "a very detailed photo of a cat " * 330  # about 10,000 characters
    assert len(long_prompt) > 9_900
    try:
        with pytest.warns(UserWarning, match="longer than the model's input limit"):
            out = gen(["a cat", long_prompt], **SHORT)
    finally:
        handle.remove()
    assert isinstance(out[1], str)
    limit = gen._input_limit({**gen.config.generation_kwargs, **SHORT})
    assert lengths and max(lengths) <= limit
    if not gen.is_seq2seq:  # n_positions 256 must also hold the new tokens
        assert limit == 256 - SHORT["max_new_tokens"]
    else:
        assert limit == 512  # ByT5Tokenizer has no sane model_max_length: the default


def test_unknown_config_keys_warn_then_load(tmp_path, t5_dir, t5_gen):
    folder = _copy(t5_dir, tmp_path / "m")
    data = {**NegOptConfig().to_dict(), "negopt_version": "9.0.0", "future_option": True}
    (tmp_path / "m" / CONFIG_NAME).write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="future_option"):
        g = NegOptGenerator.from_pretrained(folder)
    assert g.config.to_dict() == {**NegOptConfig().to_dict(), "negopt_version": "9.0.0"}  # the known keys kept
    assert g("a cat", **SHORT) == t5_gen("a cat", **SHORT) != ""  # the same model, loaded and working


def test_pickle_only_weights_refused_unless_opted_in(tmp_path, t5_dir, t5_gen):
    from safetensors.torch import load_file

    folder = _copy(t5_dir, tmp_path / "m")
    state = load_file(os.path.join(folder, "model.safetensors"))
    os.remove(os.path.join(folder, "model.safetensors"))
    torch.save(state, os.path.join(folder, "pytorch_model.bin"))
    with pytest.raises(ValueError, match="use_safetensors=False also loads it") as e:
        NegOptGenerator.from_pretrained(folder)
    assert "pytorch_model.bin" in str(e.value)
    g = NegOptGenerator.from_pretrained(folder, use_safetensors=False)
    assert g(PROMPTS, **SHORT) == t5_gen(PROMPTS, **SHORT)


def test_missing_folder_and_offline_hub_id(tmp_path):
    missing = str(tmp_path / "no-such-generator")
    with pytest.raises(FileNotFoundError, match="no-such-generator"):
        NegOptGenerator.from_pretrained(missing)
    with pytest.raises(OSError, match=r"could not find 'someone/not-cached-gen' locally and the hub is offline"):
        NegOptGenerator.from_pretrained("someone/not-cached-gen")
    with pytest.raises(FileNotFoundError, match="not a generator folder"):
        NegOptGenerator.from_pretrained(tmp_path)  # an existing folder without a model
    with pytest.raises(ValueError, match="torch_dtype"):
        NegOptGenerator.from_pretrained(missing, torch_dtype="float3")


def test_adapter_with_missing_base_names_both(tmp_path, adapter):
    folder = _copy(adapter[0], tmp_path / "a")
    path = os.path.join(folder, "adapter_config.json")
    cfg = json.loads(open(path).read())
    cfg["base_model_name_or_path"] = str(tmp_path / "gone-base")
    with open(path, "w") as f:
        json.dump(cfg, f)
    with pytest.raises(FileNotFoundError, match="base model of the adapter") as e:
        NegOptGenerator.from_pretrained(folder)
    assert "gone-base" in str(e.value)


# ------------------------------------------------------------------------------------------------------------ CLI
def test_cli_generate_in_process(capsys, t5_dir, t5_gen):
    from negopt.cli import main

    assert main(["generate", "--model", t5_dir, "a cat", "a dog", "--json", "--max-new-tokens", "12"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["prompt"] for x in lines] == ["a cat", "a dog"]
    assert [x["negative_prompt"] for x in lines] == t5_gen(["a cat", "a dog"], max_new_tokens=12)

    assert (
        main(["generate", "--model", t5_dir, "a cat", "--num-candidates", "2", "--seed", "1", "--max-new-tokens", "8"])
        == 0
    )
    assert capsys.readouterr().out.splitlines() == t5_gen("a cat", num_candidates=2, seed=1, max_new_tokens=8)


def test_cli_usage_error_exits_2_without_traceback(capsys, tmp_path):
    from negopt.cli import main

    with pytest.raises(SystemExit) as e:
        main(["generate", "--model", str(tmp_path / "missing-model"), "a cat"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "missing-model" in err and "Traceback" not in err


def test_cli_version_and_env(capsys):
    from negopt.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert f"negopt: {__version__}" in out and "torch:" in out and "device:" in out


def test_cli_subprocess(t5_dir, t5_gen):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*sys.path])}
    proc = subprocess.run(
        [sys.executable, "-m", "negopt", "generate", "--model", t5_dir, "a cat", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"prompt": "a cat", "negative_prompt": t5_gen("a cat")}


def test_bart_is_a_seq2seq_generator(tmp_path):
    from transformers import BartConfig, BartForConditionalGeneration, ByT5Tokenizer

    tokenizer = ByT5Tokenizer()
    config = BartConfig(
        vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=512,
        pad_token_id=0, bos_token_id=2, eos_token_id=1, decoder_start_token_id=0, forced_bos_token_id=None,
        forced_eos_token_id=None, init_std=0.3,  # larger weights than the default: prompts get different outputs
    )  # fmt: skip
    torch.manual_seed(0)
    g = NegOptGenerator(BartForConditionalGeneration(config).eval(), tokenizer)
    assert g.is_seq2seq
    out = g(PROMPTS, **SHORT)
    assert len(set(out)) > 1
    assert out == [g(p, **SHORT) for p in PROMPTS]
    assert NegOptGenerator.from_pretrained(g.save_pretrained(tmp_path / "bart"))(PROMPTS, **SHORT) == out


def test_truncation_warning_points_at_the_users_line():
    model, tokenizer = tiny_t5()
    gen = NegOptGenerator(model, tokenizer)
    gen.config.max_input_tokens = 8
    long = "a very long prompt about many many things and more things"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gen(long, max_new_tokens=4)
        gen.encode_prompts([long])
    found = [w for w in caught if "input limit" in str(w.message)]
    assert [os.path.basename(w.filename) for w in found] == ["test_generator.py"] * 2
