"""negopt.hub and negopt.model_card: hub ids, folders, safe loading, refusing broken folders, the model card."""

from __future__ import annotations

import json
import os
import shutil
import warnings

import pytest
import torch
from huggingface_hub import ModelCard

from negopt import hub
from negopt.generator import NegOptGenerator
from negopt.model_card import GeneratorCardInfo, generator_model_card, write_model_card
from tiny import tiny_gpt2, tiny_t5

SHORT = {"max_new_tokens": 8}


def _copy(src, dst, keep=None):
    """A copy of the folder ``src``; ``keep`` limits it to those file names."""
    os.makedirs(dst)
    for name in os.listdir(src):
        if keep is None or name in keep:
            shutil.copy(os.path.join(src, name), dst)
    return str(dst)


# ---------------------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("google/flan-t5-small", True),
        ("t5-small", True),
        ("Org_1/model.v2-final", True),
        ("./out/sft", False),
        ("../model", False),
        ("~/model", False),
        ("/abs/model", False),
        ("out/sft/checkpoint-10", False),  # a third part: a path, not an id
        ("org/foo--bar", False),  # validate_repo_id forbids "--" and ".."
        ("org/model.git", False),
        ("C:\\models\\t5", False),
        ("", False),
        ("has space/model", False),
    ],
)
def test_is_hub_id_follows_huggingface_hub(name, expected):
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    assert hub.is_hub_id(name) is expected
    if expected:  # the same verdict as huggingface_hub's own check
        validate_repo_id(name)
    elif name and not name.startswith((".", "~", "/")) and "\\" not in name:
        with pytest.raises(HFValidationError):
            validate_repo_id(name)


def test_folder_or_hub_id_and_hub_model_id(tmp_path):
    folder = tmp_path / "org"
    folder.mkdir()
    assert hub.is_folder_or_hub_id(str(folder)) and hub.is_folder_or_hub_id("org/name")
    assert not hub.is_folder_or_hub_id(str(tmp_path / "a" / "b")) and not hub.is_folder_or_hub_id(None)
    assert hub.hub_model_id("google/flan-t5-small") == "google/flan-t5-small"
    assert hub.hub_model_id(str(folder)) is None and hub.hub_model_id(None) is None


def test_resolve_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hub.resolve_folder(str(tmp_path / "missing" / "model"))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        hub.resolve_folder(tmp_path / "file.txt")
    with pytest.raises(TypeError, match="got int"):
        hub.resolve_folder(3)
    with pytest.raises(OSError, match="locally and the hub is offline"):
        hub.resolve_folder("someone/not-cached")


# ---------------------------------------------------------------------------------------------------- model type
def test_model_type_of_configs_models_and_adapters():
    from peft import LoraConfig, get_peft_model
    from transformers import T5Config, T5EncoderModel, ViTConfig

    t5, _ = tiny_t5()
    gpt2, _ = tiny_gpt2()
    assert hub.model_type_of(t5.config) == hub.model_type_of(t5) == "seq2seq"
    assert hub.model_type_of(gpt2.config) == hub.model_type_of(gpt2) == "causal"
    with hub.quiet_peft_wrap():
        peft_model = get_peft_model(tiny_gpt2()[0], LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["c_attn"]))
    assert hub.model_type_of(peft_model) == "causal"
    # The class decides for a model: an encoder alone has a T5 config but no language-modelling head.
    encoder = T5EncoderModel(T5Config(vocab_size=32, d_model=8, d_kv=4, num_heads=2, d_ff=8, num_layers=1))
    with pytest.raises(ValueError, match="class T5EncoderModel, which is neither a seq2seq"):
        hub.model_type_of(encoder)
    with pytest.raises(ValueError, match="model type 'vit'"):
        hub.model_type_of(ViTConfig())
    with pytest.raises(TypeError, match="expected a transformers model"):
        hub.model_type_of(object())


def test_resolve_dtype():
    assert hub.resolve_dtype(None) is torch.float32
    assert hub.resolve_dtype("bfloat16") is torch.bfloat16 and hub.resolve_dtype("auto") == "auto"
    with pytest.raises(ValueError, match="got 'float3'"):
        hub.resolve_dtype("float3")


# ---------------------------------------------------------------------------------------------- broken folders
def test_folder_without_tokenizer_files_is_refused(tmp_path, t5_dir):
    # transformers builds a vocabulary-less T5Tokenizer from config.json alone; the generator then wrote "".
    folder = _copy(t5_dir, tmp_path / "m", keep={"config.json", "generation_config.json", "model.safetensors"})
    with pytest.raises(FileNotFoundError, match="no tokenizer in") as e:
        NegOptGenerator.from_pretrained(folder)
    assert folder in str(e.value) and "tokenizer_config.json" in str(e.value) and "tokenizer.json" in str(e.value)


def test_tokenizer_files_without_a_vocabulary_are_refused(tmp_path, t5_dir):
    folder = _copy(t5_dir, tmp_path / "m", keep={"config.json", "generation_config.json", "model.safetensors"})
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "T5Tokenizer"}, f)  # a slow T5 tokenizer whose spiece.model is missing
    with pytest.raises(ValueError, match="has no usable vocabulary") as e:
        NegOptGenerator.from_pretrained(folder)
    assert folder in str(e.value) and "tokenizer_config.json" in str(e.value)


def test_weights_of_another_architecture_are_refused(tmp_path, t5_dir, gpt2_dir):
    # A T5 config with GPT-2 weights: every T5 tensor is missing, and transformers would start them all at random.
    folder = _copy(t5_dir, tmp_path / "m", keep=None)
    shutil.copy(os.path.join(gpt2_dir, "model.safetensors"), os.path.join(folder, "model.safetensors"))
    with pytest.raises(
        ValueError, match=r"do not fit its config.json .*T5ForConditionalGeneration.*tensors are missing"
    ):
        NegOptGenerator.from_pretrained(folder)


def test_a_few_missing_tensors_warn_and_name_them(tmp_path, t5_dir):
    from safetensors.torch import load_file, save_file

    folder = _copy(t5_dir, tmp_path / "m")
    path = os.path.join(folder, "model.safetensors")
    state = load_file(path)
    del state["decoder.final_layer_norm.weight"]
    save_file(state, path, metadata={"format": "pt"})
    with pytest.warns(UserWarning, match="decoder.final_layer_norm.weight"):
        model, model_type = hub.load_model(folder)
    assert model_type == "seq2seq" and not model.training


def test_pickle_adapter_weights_are_refused(tmp_path):
    (tmp_path / "adapter_model.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"only pickle weights \(adapter_model.bin\)"):
        hub.check_safetensors(str(tmp_path), adapter=True)
    hub.check_safetensors(str(tmp_path), use_safetensors=False, adapter=True)


def test_adapter_load_prints_no_future_warning(tmp_path, t5_dir):
    from peft import LoraConfig, PeftModel, get_peft_model

    base = hub.load_model(t5_dir)[0]
    with hub.quiet_peft_wrap():
        peft_model = get_peft_model(base, LoraConfig(task_type="SEQ_2_SEQ_LM", target_modules=["q", "v"], r=2))
    peft_model.save_pretrained(tmp_path / "adapter")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the load, the is_gradient_checkpointing one included
        loaded = hub.load_lm(tmp_path / "adapter")
    assert isinstance(loaded.model, PeftModel) and loaded.is_adapter and loaded.base_folder == t5_dir
    assert not any(p.requires_grad for p in loaded.model.parameters())
    trainable = hub.load_lm(tmp_path / "adapter", is_trainable=True, with_tokenizer=False)
    assert trainable.tokenizer is None and any(
        p.requires_grad for n, p in trainable.model.named_parameters() if "lora_" in n
    )


def test_load_pretrained_names_the_argument(tmp_path):
    from transformers import CLIPModel

    with pytest.raises(OSError, match=r"cannot load the CLIP model clip_model='.*nothing-here'"):
        hub.load_pretrained(
            CLIPModel, tmp_path / "nothing-here", argument="clip_model", what="CLIP model", hub=hub.HubOptions()
        )


# ------------------------------------------------------------------------------------------------------ model card
def test_model_card_metadata_is_read_back_by_huggingface_hub(tmp_path):
    info = GeneratorCardInfo("T5ForConditionalGeneration", "seq2seq", "neg: {prompt}", "1.2.3", "google/flan-t5-small")
    assert write_model_card(tmp_path, generator_model_card(info, repo_id="me/neg-gen"))
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "negopt" and card.data.base_model == "google/flan-t5-small"
    assert card.data.pipeline_tag == "text2text-generation" and "negative-prompt" in card.data.tags
    assert 'from_pretrained("me/neg-gen")' in card.text and "`neg: {prompt}`" in card.text

    # A local base model is no hub id: it is named in the text, not in the metadata.
    local = GeneratorCardInfo("GPT2LMHeadModel", "causal", "P: {prompt}\nN:", "1.2.3", str(tmp_path), is_adapter=True)
    write_model_card(tmp_path, generator_model_card(local))
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model is None and card.data.pipeline_tag == "text-generation"
    assert f"LoRA adapter over `{tmp_path}`" in card.text and "`P: {prompt}\\nN:`" in card.text


def test_model_card_leaves_a_users_readme(tmp_path):
    info = GeneratorCardInfo("T5ForConditionalGeneration", "seq2seq", "{prompt}", "1.2.3")
    for text in ("# my notes\n", "---\nlicense: mit\n---\n# my card\n"):
        (tmp_path / "README.md").write_text(text)
        assert not write_model_card(tmp_path, generator_model_card(info))
        assert (tmp_path / "README.md").read_text() == text
    assert write_model_card(tmp_path, generator_model_card(info), overwrite=True)
    assert ModelCard.load(tmp_path / "README.md").data.library_name == "negopt"


def test_generator_save_writes_the_card_and_loads_back(tmp_path, t5_dir):
    gen = NegOptGenerator.from_pretrained(t5_dir)
    gen.save_pretrained(tmp_path / "saved")
    card = ModelCard.load(tmp_path / "saved" / "README.md")
    assert card.data.library_name == "negopt" and "T5ForConditionalGeneration (seq2seq)" in card.text
    assert NegOptGenerator.from_pretrained(tmp_path / "saved")("a cat", **SHORT) == gen("a cat", **SHORT)


# ----------------------------------------------------------------------------------- issue 22: damaged weights files
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_safetensors_file_is_named_by_from_pretrained(tmp_path, t5_dir, damage):
    folder = _copy(t5_dir, tmp_path / "gen")
    path = os.path.join(folder, "model.safetensors")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:  # a download or save cut short, or a file that is not safetensors at all
        f.write(b"\x01\x00garbage" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(OSError, match="damaged or incomplete") as e:
        NegOptGenerator.from_pretrained(folder)
    assert repr(path) in str(e.value) and "download the model again" in str(e.value)


def test_pickle_weights_message_gives_a_conversion_command(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ValueError) as e:
        hub.check_safetensors(str(tmp_path))
    message = str(e.value)
    assert 'python -c "' in message and repr(str(tmp_path / "model.safetensors")) in message
    assert "use_safetensors=False" in message  # the Python way is still named
