"""The ``negopt`` command: flags generated from the configs, typed values, errors as a user meets them."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from negopt.cli import build_parser, main
from negopt.cli.args import UsageError, collect_settings, docstring_args, flag_name, plain_text
from negopt.cli.eval import eval_specs
from negopt.cli.train import parse_reward_models, rl_specs, sft_specs
from negopt.values import coerce_value

HERE = os.path.dirname(os.path.abspath(__file__))

# Every flag of negopt 0.1.0 (read from its parser): each must still parse.
OLD_FLAGS = {
    "generate": ["--batch-size", "--device", "--file", "--json", "--max-new-tokens", "--model", "--num-candidates",
                 "--revision", "--seed", "-f"],
    "eval": ["--aesthetic-clip-model", "--aesthetic-head", "--batch-size", "--bootstrap", "--clip-model", "--device",
             "--dtype", "--generator", "--grid-rows", "--guidance-scale", "--height", "--inception-model",
             "--local-files-only", "--metric", "--negative-column", "--no-builtin", "--no-none", "--num-prompts",
             "--output-dir", "--pickscore-model", "--pickscore-processor", "--pipeline", "--prompt-column",
             "--prompts", "--revision", "--seed", "--split", "--steps", "--width"],
    "train sft": ["--batch-size", "--bf16", "--config", "--dataset", "--dataset-revision", "--eval-steps", "--fp16",
                  "--full-finetune", "--gradient-accumulation-steps", "--learning-rate", "--logging-steps",
                  "--lora-alpha", "--lora-dropout", "--lora-r", "--lora-target-modules", "--max-eval-samples",
                  "--max-negative-length", "--max-prompt-length", "--max-steps", "--merge", "--min-likes", "--model",
                  "--model-type", "--no-progress", "--no-strip-weights", "--num-epochs", "--output-dir",
                  "--prompt-template", "--report-to", "--resume", "--revision", "--rouge", "--save-steps",
                  "--save-total-limit", "--seed", "--strip-weights", "--test-size", "--validation-size",
                  "--warmup-steps"],
    "train rl": ["--advantage", "--baseline-image", "--batch-size", "--clip-range", "--config", "--cpu", "--generator",
                 "--guidance-scale", "--height", "--image-batch-size", "--kl-coef", "--learning-rate",
                 "--logging-steps", "--lora-alpha", "--lora-r", "--max-new-tokens", "--max-steps",
                 "--mixed-precision", "--normalize-rewards", "--num-candidates", "--num-inference-steps",
                 "--output-dir", "--pipeline", "--pipeline-dtype", "--ppo-epochs", "--prompts", "--report-to",
                 "--resume", "--resume-from-checkpoint", "--reward", "--reward-fn", "--reward-model",
                 "--sample-steps", "--save-steps", "--save-total-limit", "--seed", "--temperature", "--width"],
}  # fmt: skip


def _subparser(path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path.split():
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(os.path.dirname(HERE), "src"), HERE, env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _negopt(*args, **kw):
    return subprocess.run([sys.executable, "-m", "negopt", *args], env=_env(), capture_output=True, text=True, **kw)


def _specs():
    from negopt.cli.generate import generate_specs

    return {"generate": generate_specs(), "eval": eval_specs(), "train sft": sft_specs(), "train rl": rl_specs()}


# ----------------------------------------------------------------------------------------------- flags from configs
@pytest.mark.parametrize("command", list(OLD_FLAGS))
def test_every_old_flag_still_parses(command):
    assert set(OLD_FLAGS[command]) <= _options(_subparser(command))
    # And old spellings parse to the fields they always set.
    parser = build_parser()
    if command == "train sft":
        args = parser.parse_args(["train", "sft", "--rouge", "--no-progress", "--no-strip-weights", "--resume", "ck"])
        assert args.compute_rouge is True and args.disable_tqdm is True and args.strip_weights is False
        assert args.resume == "ck"
    elif command == "eval":
        args = parser.parse_args(["eval", "--no-none", "--no-builtin", "--bootstrap", "7", "--steps", "3"])
        assert args.include_none is False and args.builtin is False and args.num_bootstrap == "7"
        assert vars(args)["pipeline_kwargs.num_inference_steps"] == "3"
    elif command == "train rl":
        args = parser.parse_args(["train", "rl", "--reward-model", "clip=x", "--reward-model", "aesthetic=y"])
        assert args.reward_models == ["clip=x", "aesthetic=y"]


@pytest.mark.parametrize("command", list(OLD_FLAGS))
def test_every_config_field_has_a_flag_or_a_reason(command):
    options = _options(_subparser(command))
    for spec in _specs()[command]:
        docs = docstring_args(spec.cls)
        for field in dataclasses.fields(spec.cls):
            assert field.name in docs, f"{spec.cls.__name__}.{field.name} is not documented in its docstring"
            if field.name in spec.exclude:
                continue
            if field.name in spec.config_only:
                assert len(spec.config_only[field.name]) > 10  # a reason, not a placeholder
            else:
                assert flag_name(field.name) in options, f"{command}: {spec.cls.__name__}.{field.name} has no flag"


def test_help_comes_from_the_config_docstring():
    from negopt.train import RLConfig, SFTConfig

    for command, cls, key in (("train sft", SFTConfig, "learning_rate"), ("train rl", RLConfig, "kl_coef")):
        action = next(a for a in _subparser(command)._actions if flag_name(key) in a.option_strings)
        assert action.help.startswith(plain_text(docstring_args(cls)[key]).replace("%", "%%"))
    docs = docstring_args(SFTConfig)
    assert docs["lora_target_modules"].endswith('``["q", "v"]``.')  # continuation lines are joined


# ------------------------------------------------------------------------------------------------ typed values
def _sft_settings(tmp_path, yaml_text, *argv):
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(yaml_text, encoding="utf-8")
    args = build_parser().parse_args(["train", "sft", "--config", str(cfg), *argv])
    (settings,) = collect_settings(args, sft_specs(), args.config)
    return settings


def test_yaml_values_are_typed_like_flags(tmp_path):
    from negopt.train import SFTConfig

    settings = _sft_settings(
        tmp_path,
        'learning_rate: 1e-4\nfull_finetune: "no"\nmerge: "false"\nseed: "7"\nlora_target_modules: q,v\n'
        "max_steps: 5\nwarmup_steps: 0.1\nsave_total_limit: null\n",
        "--lora-alpha", "8", "--strip-weights",
    )  # fmt: skip
    config = SFTConfig(**settings)
    assert config.learning_rate == 1e-4 and isinstance(config.learning_rate, float)
    assert config.full_finetune is False and config.merge is False  # "no" and "false" are False, not truthy
    assert config.seed == 7 and config.lora_target_modules == ["q", "v"]
    assert config.lora_alpha == 8 and config.strip_weights is True and config.max_steps == 5
    assert config.warmup_steps == 0.1 and config.save_total_limit is None


@pytest.mark.parametrize(
    "yaml_text, named",
    [
        ("lora_target_modules: 5\n", ["lora_target_modules", "5", "str or list[str]"]),
        ("full_finetune: nope\n", ["full_finetune", "'nope'", "bool"]),
        ('merge: "maybe"\n', ["merge", "'maybe'", "bool"]),
        ("seed: seven\n", ["seed", "'seven'", "int"]),
        ("learning_rate: fast\n", ["learning_rate", "'fast'", "float"]),
        ("model_type: gpt\n", ["model_type", "'gpt'", "seq2seq"]),
    ],
)
def test_bad_yaml_values_name_key_value_and_type(tmp_path, capsys, yaml_text, named):
    with pytest.raises(UsageError) as e:
        _sft_settings(tmp_path, yaml_text)
    for text in named:
        assert text in str(e.value)
    cfg = tmp_path / "sft.yaml"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "sft", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and named[0] in err  # one line, before any work


def test_bad_flag_values_name_the_flag(capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate", "--num-candidates", "two", "a cat"])
    assert e.value.code == 2 and "--num-candidates: 'two' is not a valid int" in capsys.readouterr().err


def test_booleans_take_only_boolean_spellings():
    for text, value in (("true", True), ("No", False), ("off", False), ("1", True), (False, False)):
        assert coerce_value("merge", text, bool) is value
    for bad in ("nope", "", 2, "y e s", None):
        with pytest.raises(ValueError, match="merge"):
            coerce_value("merge", bad, bool)


def test_negopt_config_from_dict_types_its_values():
    from negopt.config import NegOptConfig

    config = NegOptConfig.from_dict({"model_type": "seq2seq", "max_input_tokens": "128"})
    assert config.max_input_tokens == 128
    with pytest.raises(ValueError, match="max_input_tokens.*'many'.*int"):
        NegOptConfig.from_dict({"max_input_tokens": "many"})


def test_unknown_config_key_lists_the_valid_ones(tmp_path, capsys):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("num_bootstrp: 3\n", encoding="utf-8")
    with pytest.raises(SystemExit) as e:
        main(["eval", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "unknown key(s) ['num_bootstrp']" in err and "num_bootstrap" in err


# ----------------------------------------------------------------------------------------------- errors
def test_device_mistakes_are_one_line_usage_errors(capsys):
    import torch

    with pytest.raises(SystemExit) as e:
        main(["generate", "--device", "banana", "a cat"])
    assert e.value.code == 2 and "--device 'banana' is not a device" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as e:
            main(["generate", "--model", "some/model", "--device", "cuda", "a cat"])
        assert e.value.code == 2 and "torch.cuda.is_available() is False" in capsys.readouterr().err


def test_a_corrupt_weights_file_is_named(tmp_path, capsys):
    from tiny import save_tiny_t5

    folder = save_tiny_t5(tmp_path / "gen")
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(b"\x01\x00garbage")
    capsys.readouterr()  # the save's progress bar
    with pytest.raises(SystemExit) as e:
        main(["generate", "--model", folder, "a cat"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and os.path.join(folder, "model.safetensors") in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["generate", "--debug", "--model", folder, "a cat"])
    assert "Traceback" in capsys.readouterr().err  # --debug shows where it came from
    (tmp_path / "p.txt").write_text("a cat\n", encoding="utf-8")
    with pytest.raises(SystemExit) as e:  # the trainers load it too: the same one line
        main(["train", "rl", "--generator", folder, "--pipeline", str(tmp_path / "no-pipeline"), "--prompts",
              str(tmp_path / "p.txt"), "--reward-fn", "test_cli:sigterm_on_first_call", "--output-dir",
              str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert e.value.code == 2 and os.path.join(folder, "model.safetensors") in err and "Traceback" not in err


def test_eval_steps_zero_is_a_usage_error(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n", encoding="utf-8")
    with pytest.raises(SystemExit) as e:
        main(["eval", "--pipeline", "x", "--prompts", str(prompts), "--output-dir", str(tmp_path), "--steps", "0"])
    assert e.value.code == 2 and "num_inference_steps" in capsys.readouterr().err


def test_negative_guidance_flags(tmp_path, capsys):
    from negopt.eval import EvalConfig
    from negopt.train import RLConfig

    args = build_parser().parse_args(
        ["eval", "--output-dir", str(tmp_path), "--negative-guidance", "nag", "--nag-scale", "3", "--nag-end", "0.5"]
    )
    _, settings = collect_settings(args, eval_specs())
    config = EvalConfig(**settings)
    assert (config.negative_guidance, config.nag_scale, config.nag_end, config.nag_tau) == ("nag", 3.0, 0.5, None)
    args = build_parser().parse_args(["train", "rl", "--output-dir", str(tmp_path), "--nag-alpha", "0.25"])
    _, settings = collect_settings(args, rl_specs())
    assert RLConfig(**settings).guidance["nag_alpha"] == 0.25
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n", encoding="utf-8")
    for bad, shown in ((["--nag-tau", "0.5"], "nag_tau"), (["--negative-guidance", "both"], "not a valid one of")):
        with pytest.raises(SystemExit) as e:
            main(["eval", "--pipeline", "x", "--prompts", str(prompts), "--output-dir", str(tmp_path), *bad])
        assert e.value.code == 2 and shown in capsys.readouterr().err


def test_missing_prompt_files_say_no_such_file(tmp_path, capsys):
    argv = ["train", "rl", "--generator", "g", "--pipeline", "p", "--reward", "clip=1", "--output-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as e:
        main([*argv, "--prompts", "missing.txt"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "no such file: 'missing.txt'" in err and "hub" not in err.split("(")[0]
    with pytest.raises(SystemExit) as e:
        main(["eval", "--pipeline", "p", "--prompts", "./nowhere/prompts.csv", "--output-dir", str(tmp_path)])
    assert e.value.code == 2 and "no such file" in capsys.readouterr().err


def test_errors_raised_by_the_work_show_their_traceback(tmp_path, capsys):
    from tiny import save_tiny_t5

    folder = save_tiny_t5(tmp_path / "gen")
    # Setup accepts it; transformers refuses it while generating. That error is the work's: main() lets it through
    # (the interpreter prints its traceback, exit 1) instead of a one-line exit 2 that hides where it came from.
    with pytest.raises(Exception) as e:  # noqa: PT011 - whatever transformers raises; SystemExit would not match
        main(["generate", "--model", folder, "--generation-kwargs", "do_sample=true,temperature=0", "a cat"])
    assert not isinstance(e.value, UsageError) and "site-packages" in str(e.traceback[-1].path)


def test_generate_into_a_closed_pipe_exits_quietly(tmp_path):
    prompts = tmp_path / "many.txt"
    prompts.write_text("a portrait photo of an old fisherman\n" * 3000, encoding="utf-8")
    code = f'set -o pipefail; {sys.executable} -m negopt generate -f {prompts} | head -1 > /dev/null; echo "status=$?"'
    res = subprocess.run(["bash", "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert "status=141" in res.stdout and res.stderr == "", res.stderr[-2000:]


def test_generate_keeps_one_output_line_per_input_line(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n\na red fox\n   \nan old fisherman\n", encoding="utf-8")
    assert main(["generate", "-f", str(prompts)]) == 0
    lines = capsys.readouterr().out.split("\n")[:-1]
    assert len(lines) == 5 and lines[1] == "" and lines[3] == "" and all(lines[i] for i in (0, 2, 4))
    assert main(["generate", "-f", str(prompts), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["prompt"] for r in rows] == ["a cat", "", "a red fox", "", "an old fisherman"]
    assert rows[1]["negative_prompt"] == "" and rows[0]["negative_prompt"]


def test_generate_with_precision_and_backend(tmp_path, capsys, monkeypatch):
    pytest.importorskip("ctranslate2")
    from tiny import save_tiny_t5

    folder = save_tiny_t5(tmp_path / "gen")
    prompts = ["a cat", "a red fox in the snow"]
    assert main(["generate", "--model", folder, *prompts]) == 0
    plain = capsys.readouterr().out
    # float32 in CTranslate2 ("auto" on a CPU): the same text as the torch path
    assert main(["generate", "--model", folder, "--backend", "ctranslate2", *prompts]) == 0
    assert capsys.readouterr().out == plain
    assert main(["generate", "--model", folder, "--backend", "ctranslate2", "--precision", "int8", *prompts]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    for argv, named in [
        (["--precision", "int8", "a cat"], "--precision and --backend make a --model fast"),
        (["--model", folder, "--precision", "float16", "a cat"], "float16"),
        (["--model", folder, "--backend", "onnx", "a cat"], "--backend"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(["generate", *argv])
        assert e.value.code == 2 and named in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # as if the extra were not installed
    with pytest.raises(SystemExit) as e:
        main(["generate", "--model", folder, "--backend", "ctranslate2", "a cat"])
    assert e.value.code == 2 and "negopt[ctranslate2]" in capsys.readouterr().err


def test_generator_config_flags_need_a_model(capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate", "--prompt-template", "x {prompt}", "a cat"])
    assert e.value.code == 2 and "--prompt-template" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ rewards
def test_reward_models_give_every_model_from_the_command_line():
    models = parse_reward_models(["aesthetic=./head", "aesthetic.clip_model=./clip", "clip=./clip"])
    assert models == {"aesthetic": {"head": "./head", "clip_model": "./clip"}, "clip": {"model": "./clip"}}
    assert parse_reward_models({"aesthetic": {"head": "h"}, "aesthetic.clip_model": "c"}) == {
        "aesthetic": {"head": "h", "clip_model": "c"}
    }
    with pytest.raises(UsageError, match="NAME.ARG=VALUE"):
        parse_reward_models(["aesthetic"])
    with pytest.raises(UsageError, match="unknown reward 'beauty'"):
        parse_reward_models(["beauty=x"])


def test_aesthetic_reward_loads_offline_from_folders_given_as_flags(tmp_path):
    import torch
    from transformers import CLIPProcessor

    from negopt.rewards import AestheticMLP, build_reward
    from tiny_clip import color_image, tiny_clip, tiny_clip_tokenizer, tiny_image_processor

    tokenizer = tiny_clip_tokenizer()
    tiny_clip(tokenizer).save_pretrained(tmp_path / "clip")
    CLIPProcessor(image_processor=tiny_image_processor(), tokenizer=tokenizer).save_pretrained(tmp_path / "clip")
    torch.manual_seed(0)
    AestheticMLP(embed_dim=16).eval().save_pretrained(tmp_path / "head")
    args = build_parser().parse_args(
        ["train", "rl", "--reward", "aesthetic=1", "--reward-model", f"aesthetic={tmp_path / 'head'}",
         "--reward-model", f"aesthetic.clip_model={tmp_path / 'clip'}"]
    )  # fmt: skip
    run, _ = collect_settings(args, rl_specs())
    # HF_HUB_OFFLINE is set: a reward that still reached for openai/clip-vit-large-patch14 would fail here.
    reward = build_reward(run["reward"], models=parse_reward_models(run["reward_models"]))
    scores = reward(images=[color_image("red"), color_image("blue")], prompts=["a", "b"], negative_prompts=["", ""])
    assert len(scores) == 2 and all(isinstance(float(s), float) for s in scores)


# ------------------------------------------------------------------------------------------------- layering
def _negopt_imports(path: str) -> set[str]:
    import ast

    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("negopt"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("negopt"))
    return names


def test_imports_stay_layered():
    src = os.path.join(os.path.dirname(HERE), "src", "negopt")
    layers = {  # module -> negopt packages it must not import (nothing imports cli; lower layers not the upper)
        os.path.join("cli", "args.py"): ("negopt.cli", "negopt.train", "negopt.eval"),
        os.path.join("cli", "eval.py"): ("negopt.cli",),
        os.path.join("cli", "train.py"): ("negopt.cli",),
        os.path.join("cli", "generate.py"): ("negopt.cli",),
        os.path.join("cli", "env.py"): ("negopt.cli",),
        "values.py": ("negopt.",),
        os.path.join("pipeline", "token_budget.py"): (
            "negopt.cli",
            "negopt.train",
            "negopt.eval",
            "negopt.pipeline.core",
            "negopt.generator",
        ),
        "config.py": ("negopt.cli", "negopt.train", "negopt.eval", "negopt.pipeline", "negopt.generator"),
    }
    for name in os.listdir(os.path.join(src, "eval")):
        if name.endswith(".py"):
            layers[os.path.join("eval", name)] = ("negopt.cli", "negopt.train")
    for name in os.listdir(os.path.join(src, "data")):
        if name.endswith(".py"):
            layers[os.path.join("data", name)] = layers["config.py"]
    for module, forbidden in layers.items():
        for imported in _negopt_imports(os.path.join(src, module)):
            bad = [f for f in forbidden if imported == f or imported.startswith(f if f.endswith(".") else f + ".")]
            assert not bad or imported in ("negopt.cli.args", "negopt.cli.eval", "negopt.cli.train"), (
                module,
                imported,
            )
            assert "._" not in imported, (module, imported)  # no other module's private parts


def test_negopt_generate_imports_no_torch():
    code = (
        "import sys; from negopt.cli import main; rc = main(['generate', 'a cat']); "
        "assert rc == 0 and 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:3]"
    )
    res = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]


# ------------------------------------------------------------------------------------------- one trainer story
_TERM = {"calls": 0}


def sigterm_on_first_call(images, prompts=None, negative_prompts=None, **kwargs):
    """A reward that sends this process SIGTERM the first time it is called (as a cluster's scheduler would)."""
    import signal

    _TERM["calls"] += 1
    if _TERM["calls"] == 1:
        os.kill(os.getpid(), signal.SIGTERM)
    return [float(len(n or "")) for n in (negative_prompts or [""] * len(images))]


def test_rl_sigterm_exits_143_resumes_and_refuses_an_unresumed_rerun(tmp_path, capsys):
    from negopt.train.rl.checkpoint import list_checkpoints
    from tiny import save_tiny_t5
    from tiny_pipelines import save_tiny_sd

    generator, pipeline = save_tiny_t5(tmp_path / "gen"), save_tiny_sd(tmp_path / "sd")
    (tmp_path / "p.txt").write_text("a red fox\na cat\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = ["train", "rl", "--generator", generator, "--pipeline", pipeline, "--prompts", str(tmp_path / "p.txt"),
            "--reward-fn", "test_cli:sigterm_on_first_call", "--output-dir", str(out), "--max-steps", "2",
            "--save-steps", "0", "--batch-size", "2", "--num-candidates", "2", "--lora-r", "2",
            "--max-new-tokens", "4", "--num-inference-steps", "1", "--height", "32", "--width", "32",
            "--sample-steps", "0"]  # fmt: skip
    _TERM["calls"] = 0
    assert main(argv) == 143  # as for SFT: a checkpoint, then 143
    assert [step for step, _ in list_checkpoints(str(out))] == [1]
    assert "Run the same command with --resume" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # the same command without --resume would overwrite that run
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "already holds checkpoints" in err and "Traceback" not in err
    assert main([*argv, "--resume"]) == 0
    assert "trained 2 steps" in capsys.readouterr().out


# ------------------------------------------------------------------------------- issue 22: settings mappings typed
def test_settings_mappings_are_typed_like_fields(tmp_path):
    """Entries of generation_kwargs / pipeline_kwargs / training_args from YAML (where PyYAML leaves 1e-4 a string)
    and from key=value flags get the types a field gets: the known type where transformers or diffusers documents
    one, else the look of the text; prompt text stays text."""
    import yaml

    assert yaml.safe_load("x: 1e-4")["x"] == "1e-4"  # the reason: PyYAML (YAML 1.1) reads it as a string
    cfg = tmp_path / "rl.yaml"
    cfg.write_text(
        'generation_kwargs: {temperature: 1e-1}\npipeline_kwargs: {guidance_scale: "7.5", eta: 1e-2, '
        'num_inference_steps: "4", prompt_2: "42", my_flag: "yes"}\n',
        encoding="utf-8",
    )
    args = build_parser().parse_args(
        ["train", "rl", "--config", str(cfg), "--pipeline-kwargs", "guidance_rescale=7e-1,prompt_3=1girl,height=64"]
    )
    _, settings = collect_settings(args, rl_specs(), args.config)
    assert settings["generation_kwargs"] == {"temperature": 0.1}
    pipeline = settings["pipeline_kwargs"]
    assert pipeline == {
        "guidance_scale": 7.5, "eta": 0.01, "num_inference_steps": 4, "prompt_2": "42", "my_flag": True,
        "guidance_rescale": 0.7, "prompt_3": "1girl", "height": 64,
    }  # fmt: skip
    assert type(pipeline["num_inference_steps"]) is int and type(pipeline["guidance_scale"]) is float

    from negopt.train import RLConfig

    assert RLConfig.from_dict({"output_dir": "o", "generation_kwargs": {"temperature": "5e-1"}}).generation_kwargs == {
        "max_new_tokens": 64, "temperature": 0.5,
    }  # fmt: skip

    settings = _sft_settings(
        tmp_path,
        "training_args: {adam_epsilon: 1e-8, lr_scheduler_kwargs: {min_lr: 1e-6}, save_only_model: 'true'}\n",
        "--training-args", "adam_beta2=9.99e-1,run_name=123",
    )  # fmt: skip
    assert settings["training_args"] == {
        "adam_epsilon": 1e-8, "lr_scheduler_kwargs": {"min_lr": 1e-6}, "save_only_model": True, "adam_beta2": 0.999,
        "run_name": "123",  # a str field of TrainingArguments: the text stays text
    }  # fmt: skip
    with pytest.raises(
        UsageError, match=r"training_args\['adam_epsilon'\] in --config .*: 'tiny' is not a valid float"
    ):
        _sft_settings(tmp_path, "training_args: {adam_epsilon: tiny}\n")


def test_natural_values_keep_text_as_text():
    from negopt.values import natural_value

    cases = {"1e-4": 1e-4, "7.5": 7.5, "-3": -3, "1_000": 1000, ".5": 0.5, "true": True, "No": False, "null": None,
             "1girl": "1girl", "1e": "1e", "a cat": "a cat", "1.2.3": "1.2.3", "": ""}  # fmt: skip
    for text, expected in cases.items():
        got = natural_value(text)
        assert got == expected and type(got) is type(expected), (text, got)
    assert natural_value({"a": ["2", "x"]}) == {"a": [2, "x"]}


def test_generation_kwargs_in_a_saved_config_are_typed_or_named(tmp_path, capsys):
    from negopt.config import CONFIG_NAME, NegOptConfig
    from tiny import save_tiny_t5

    config = NegOptConfig.from_dict({"generation_kwargs": {"max_new_tokens": "8", "do_sample": "no"}})
    assert config.generation_kwargs["max_new_tokens"] == 8 and config.generation_kwargs["do_sample"] is False
    folder = save_tiny_t5(tmp_path / "gen")
    path = os.path.join(folder, CONFIG_NAME)
    capsys.readouterr()
    for content, named in [
        ({"max_input_tokens": "many"}, "max_input_tokens in {path}: 'many' is not a valid int or None"),
        (
            {"generation_kwargs": {"num_beams": "x"}},
            "generation_kwargs['num_beams'] in {path}: 'x' is not a valid int",
        ),
        ({"prompt_template": 5}, "prompt_template in {path}: 5 is not a valid str or None"),
    ]:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(content, f)
        with pytest.raises(ValueError) as e:  # Python: the file, the key, the value and the type expected
            NegOptConfig.from_json_file(path)
        assert named.format(path=path) in str(e.value)
        with pytest.raises(SystemExit) as e:  # the command line: the same, in one line
            main(["generate", "--model", folder, "a cat"])
        err = capsys.readouterr().err  # after transformers' "Loading weights" bar: the config is read after them
        last = err.splitlines()[-1]
        assert e.value.code == 2 and named.format(path=path) in last and "Traceback" not in err, err


# ----------------------------------------------------------------------------------- issue 22: one-line errors
@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory):
    from tiny import save_tiny_t5

    return save_tiny_t5(tmp_path_factory.mktemp("gen"))


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--max-new-tokens", "0"], "max_new_tokens must be an int >= 1, got 0"),
        (["--generation-kwargs", "num_beams=0"], "num_beams must be an int >= 1, got 0"),
        (["--seed", str(2**32)], "--seed must be an int from 0 to 4294967295"),
        (["--seed", "-1"], "--seed must be an int from 0 to 4294967295"),
        (["--num-candidates", "3", "--generation-kwargs", "do_sample=false"],
         "would give 3 identical candidates; pass do_sample=True to sample them, or num_beams>=3"),
        (["--num-candidates", "3", "--generation-kwargs", "num_beams=2"], "pass num_beams>=3"),
    ],
)  # fmt: skip
def test_generate_refuses_settings_that_fail_or_repeat_in_one_line(gen_dir, capsys, argv, named):
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["generate", "--model", gen_dir, *argv, "a cat"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and named in err and err.count("\n") == 1, err


def test_generate_candidates_follow_the_users_decoding_choice(gen_dir, capsys):
    assert main(["generate", "--model", gen_dir, "--num-candidates", "2", "--generation-kwargs", "num_beams=2",
                 "--max-new-tokens", "4", "a cat"]) == 0  # fmt: skip
    assert len(capsys.readouterr().out.splitlines()) == 2
    with pytest.raises(SystemExit) as e:  # the built-in generator takes a seed too, in the same range
        main(["generate", "--seed", str(2**40), "a cat"])
    assert e.value.code == 2 and "--seed" in capsys.readouterr().err


def test_the_same_checks_in_python(gen_dir, tmp_path):
    from negopt.eval import EvalConfig
    from negopt.generator import NegOptGenerator
    from negopt.train import RLConfig, SFTConfig

    gen = NegOptGenerator.from_pretrained(gen_dir)
    for kwargs, named in [
        ({"num_beams": 0}, "num_beams must be an int >= 1"),
        ({"max_new_tokens": 0}, "max_new_tokens must be an int >= 1"),
        ({"seed": 2**32}, "seed must be an int from 0"),
        ({"num_candidates": 2, "do_sample": False}, "2 identical candidates"),
        ({"num_candidates": 4, "num_beams": 3}, "num_beams>=4"),
    ]:
        with pytest.raises(ValueError, match=named):
            gen("a cat", **kwargs)
    assert len(gen("a cat", num_candidates=2, num_beams=2, max_new_tokens=4)) == 2
    with pytest.raises(ValueError, match="pipeline_kwargs\\['num_inference_steps'\\] must be an int >= 1, got 0"):
        RLConfig(output_dir=str(tmp_path), pipeline_kwargs={"num_inference_steps": 0})
    for build_config in (
        lambda: RLConfig(output_dir=str(tmp_path), seed=2**32),
        lambda: EvalConfig(output_dir=str(tmp_path), seed=2**40),
        lambda: SFTConfig(seed=-1),
        lambda: SFTConfig(data_seed=2**32),
    ):
        with pytest.raises(ValueError, match="seed must be an int from 0 to 4294967295"):
            build_config()


def test_rl_and_eval_mistakes_are_found_before_loading(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n", encoding="utf-8")
    missing = str(tmp_path / "no-such-pipeline")  # nothing may be loaded before these are found
    a_file = tmp_path / "a-file"
    a_file.write_text("x", encoding="utf-8")
    rl = ["train", "rl", "--generator", missing, "--pipeline", missing, "--prompts", str(prompts), "--reward-fn",
          "test_cli:sigterm_on_first_call"]  # fmt: skip
    ev = ["eval", "--pipeline", missing, "--prompts", str(prompts)]
    for argv, named in [
        ([*rl, "--output-dir", str(tmp_path / "o"), "--num-inference-steps", "0"], "num_inference_steps"),
        ([*rl, "--output-dir", str(tmp_path / "o"), "--seed", str(2**32)], "seed must be an int from 0"),
        ([*ev, "--output-dir", str(tmp_path / "o"), "--generator", "bad name=gen-dir"], "'bad name' must start"),
        ([*ev, "--output-dir", str(tmp_path / "o"), "--generator", "none=gen-dir"], "taken by a built-in"),
        ([*ev, "--output-dir", str(a_file)], "exists and is a file, not a folder"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and named in err and err.count("\n") == 1 and "no-such-pipeline" not in err, err


def test_evaluate_refuses_a_file_as_output_dir_before_rendering(tmp_path):
    from negopt.eval import evaluate

    a_file = tmp_path / "a-file"
    a_file.write_text("x", encoding="utf-8")
    with pytest.raises(NotADirectoryError, match="exists and is a file"):
        evaluate(None, ["a cat"], generators={}, output_dir=str(a_file))  # no pipeline needed to find it


def test_usage_errors_carry_the_command_prefix_once(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n", encoding="utf-8")
    for argv in (
        ["train", "sft", "--max-steps", "0", "--output-dir", str(tmp_path / "o")],
        ["train", "sft", "--dataset", str(tmp_path / "none.jsonl"), "--model", "x", "--output-dir", str(tmp_path)],
        ["train", "rl", "--generator", "g", "--pipeline", "p", "--prompts", str(prompts), "--reward-fn",
         "test_cli:sigterm_on_first_call", "--output-dir", str(tmp_path / "o"), "--batch-size", "0"],
        ["eval", "--pipeline", "p", "--prompts", str(prompts), "--output-dir", str(tmp_path), "--batch-size", "0"],
    ):  # fmt: skip
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        command = " ".join(argv[: 2 if argv[0] == "train" else 1])
        assert e.value.code == 2 and err.startswith(f"negopt {command}: error: ") and err.count("negopt ") == 1, err


def test_pickle_only_weights_give_a_command_line_fix_that_works(gen_dir, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "bin-only"
    folder.mkdir()
    for name in os.listdir(gen_dir):
        if name.endswith(".json"):
            (folder / name).write_bytes(open(os.path.join(gen_dir, name), "rb").read())
    torch.save(load_file(os.path.join(gen_dir, "model.safetensors")), folder / "pytorch_model.bin")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["generate", "--model", str(folder), "a cat"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "pytorch_model.bin" in err and err.count("\n") == 1
    code = err.split('python -c "', 1)[1].split('"', 1)[0]  # the command the message gives, run as given
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())
    assert main(["generate", "--model", str(folder), "a cat"]) == 0
    converted = capsys.readouterr().out
    assert main(["generate", "--model", gen_dir, "a cat"]) == 0
    assert converted == capsys.readouterr().out  # the same model as before the round trip through a pickle
