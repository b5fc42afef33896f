"""negopt_config.json: defaults, validation, the save/load round trip, configs from newer versions."""

import json
import warnings

import pytest

from negopt import __version__
from negopt.config import (
    CONFIG_NAME,
    DEFAULT_CAUSAL_TEMPLATE,
    DEFAULT_GENERATION_KWARGS,
    DEFAULT_SEQ2SEQ_TEMPLATE,
    NegOptConfig,
)


def test_defaults_follow_the_model_type():
    assert NegOptConfig().prompt_template == DEFAULT_SEQ2SEQ_TEMPLATE
    causal = NegOptConfig(model_type="causal")
    assert causal.prompt_template == DEFAULT_CAUSAL_TEMPLATE
    assert causal.format_prompt("a cat") == DEFAULT_CAUSAL_TEMPLATE.replace("{prompt}", "a cat")
    assert NegOptConfig().negopt_version == __version__


def test_given_generation_kwargs_override_only_their_keys():
    cfg = NegOptConfig(generation_kwargs={"max_new_tokens": 8, "repetition_penalty": 1.0})
    assert cfg.generation_kwargs["max_new_tokens"] == 8
    assert cfg.generation_kwargs["repetition_penalty"] == 1.0  # a default turned off by its neutral value
    assert cfg.generation_kwargs["no_repeat_ngram_size"] == DEFAULT_GENERATION_KWARGS["no_repeat_ngram_size"]
    assert DEFAULT_GENERATION_KWARGS["max_new_tokens"] == 64  # the module's defaults are not mutated


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model_type": "encoder"}, ValueError, "model_type must be 'seq2seq' or 'causal'"),
        ({"prompt_template": "negatives for: "}, ValueError, "prompt_template must contain '{prompt}'"),
        ({"generation_kwargs": [("max_new_tokens", 8)]}, TypeError, "generation_kwargs must be a dict"),
        # 0 read as "no limit" (a falsy-zero default) was a silent wrong result: it is an error now.
        ({"max_input_tokens": 0}, ValueError, r"max_input_tokens must be a positive number.*got 0.*does not mean"),
        ({"max_input_tokens": -5}, ValueError, r"max_input_tokens must be a positive number.*got -5"),
        ({"max_input_tokens": True}, ValueError, r"max_input_tokens must be a positive number.*got True"),
    ],
)
def test_bad_values_name_the_field(kwargs, error, match):
    with pytest.raises(error, match=match):
        NegOptConfig(**kwargs)


def test_round_trip_and_newer_keys(tmp_path):
    cfg = NegOptConfig(model_type="causal", prompt_template="P: {prompt}\nN:", max_input_tokens=99)
    path = cfg.save_pretrained(tmp_path)
    assert path == str(tmp_path / CONFIG_NAME)
    assert NegOptConfig.from_json_file(path) == cfg

    data = json.loads((tmp_path / CONFIG_NAME).read_text())
    data["sampling_schedule"] = "cosine"  # a key from a newer negopt
    (tmp_path / CONFIG_NAME).write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=r"does not know and ignores: \['sampling_schedule'\]"):
        loaded = NegOptConfig.from_json_file(path)
    assert loaded == cfg


def test_unreadable_json_is_a_clear_error(tmp_path):
    (tmp_path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        NegOptConfig.from_json_file(tmp_path / CONFIG_NAME)
    (tmp_path / CONFIG_NAME).write_text("[1, 2]")
    with warnings.catch_warnings(), pytest.raises(ValueError, match="must hold a JSON object"):
        NegOptConfig.from_json_file(tmp_path / CONFIG_NAME)


def test_max_input_tokens_zero_from_a_file_or_the_command_line_is_an_error(tmp_path, t5_dir, capsys):
    with pytest.raises(ValueError, match=r"max_input_tokens must be a positive number.*got 0"):
        NegOptConfig.from_dict({"max_input_tokens": "0"})
    assert NegOptConfig(max_input_tokens=1).max_input_tokens == 1

    from negopt.cli import main

    with pytest.raises(SystemExit) as e:
        main(["generate", "--model", t5_dir, "--max-input-tokens", "0", "a cat"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "max_input_tokens must be a positive number" in err and "Traceback" not in err
