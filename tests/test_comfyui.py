"""negopt's ComfyUI nodes, called the way ComfyUI calls them, and ``negopt comfyui install``.

ComfyUI is not on PyPI and is not installed here. ComfyUI builds a node's keyword arguments from ``INPUT_TYPES()``
(widget values, their defaults unless the user changed them, and links), instantiates the class and calls the
method named by ``FUNCTION``; :func:`run_node` does the same. The installed ``__init__.py`` is loaded by path with
``importlib.util.spec_from_file_location``, under the module name ComfyUI gives a custom node folder.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import subprocess
import sys
import types

import pytest

from negopt.cli.comfyui import MARKER, install
from negopt.integrations import comfyui
from negopt.integrations.comfyui import NegOptGeneratorLoader, NegOptNegativePrompt
from negopt.integrations.comfyui.loading import clear_cache, load_generator

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
PROMPTS = ["a portrait photo of an old fisherman", "a pixel art castle at night, 8-bit"]


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_cache()
    yield
    clear_cache()


def widget_defaults(node_class) -> dict:
    """The values ComfyUI sends for an untouched node: each widget's default (links are not widgets)."""
    values = {}
    for group in ("required", "optional"):
        for name, spec in node_class.INPUT_TYPES().get(group, {}).items():
            kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
            if isinstance(kind, list):  # a combo: its default, else its first entry
                values[name] = options.get("default", kind[0])
            elif kind in ("STRING", "INT", "FLOAT", "BOOLEAN"):
                values[name] = options["default"]
    return values


def run_node(node_class, **inputs):
    """ComfyUI's call: the widget defaults, overridden by what the user set or wired, to ``FUNCTION``."""
    declared = {n for group in node_class.INPUT_TYPES().values() for n in group}
    unknown = set(inputs) - declared
    assert not unknown, f"{sorted(unknown)} are not inputs of {node_class.__name__}"
    out = getattr(node_class(), node_class.FUNCTION)(**{**widget_defaults(node_class), **inputs})
    assert isinstance(out, tuple) and len(out) == len(node_class.RETURN_TYPES)
    return out


def cli_generate(capsys, *args) -> list[str]:
    from negopt.cli import main

    capsys.readouterr()
    assert main(["generate", *args]) == 0
    return capsys.readouterr().out.splitlines()


@pytest.fixture(scope="module")
def sampling_dir(tmp_path_factory):
    """A tiny T5 whose negopt_config.json samples: its text depends on the seed."""
    from negopt.config import DEFAULT_GENERATION_KWARGS, NegOptConfig
    from tiny import save_tiny_t5

    folder = save_tiny_t5(tmp_path_factory.mktemp("sampling"), seed=2)
    kwargs = {**DEFAULT_GENERATION_KWARGS, "max_new_tokens": 10, "do_sample": True, "top_k": 0}
    NegOptConfig(generation_kwargs=kwargs).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------- the V1 shape
def test_nodes_have_the_v1_shape():
    assert set(comfyui.NODE_CLASS_MAPPINGS) == {"NegOptGeneratorLoader", "NegOptNegativePrompt"}
    assert set(comfyui.NODE_DISPLAY_NAME_MAPPINGS) == set(comfyui.NODE_CLASS_MAPPINGS)
    for node_id, node_class in comfyui.NODE_CLASS_MAPPINGS.items():
        assert node_class.__name__ == node_id and node_class.CATEGORY == "negopt" and node_class.DESCRIPTION
        assert len(node_class.RETURN_TYPES) == len(node_class.RETURN_NAMES) == len(node_class.OUTPUT_TOOLTIPS)
        inputs = node_class.INPUT_TYPES()
        assert set(inputs) <= {"required", "optional"} and inputs["required"]
        # ComfyUI passes every input by its declared name: the method takes exactly those.
        params = list(inspect.signature(getattr(node_class, node_class.FUNCTION)).parameters)[1:]
        assert set(params) == {n for group in inputs.values() for n in group}
        for group in inputs.values():
            for spec in group.values():
                assert isinstance(spec, tuple) and spec[1]["tooltip"]
    assert NegOptGeneratorLoader.RETURN_TYPES == ("NEGOPT_GENERATOR",)
    prompt = NegOptNegativePrompt.INPUT_TYPES()
    assert prompt["required"]["prompt"] == ("STRING", prompt["required"]["prompt"][1])
    assert prompt["required"]["prompt"][1]["multiline"] is True
    assert prompt["optional"]["generator"][0] == "NEGOPT_GENERATOR"
    assert prompt["optional"]["combine"][0] == ["merge", "user", "generated"]
    assert NegOptNegativePrompt.RETURN_TYPES == ("STRING",)


def test_importing_the_nodes_is_light():
    """ComfyUI imports every node pack at start-up: the nodes import no torch, transformers or diffusers."""
    code = (
        "import sys; import negopt.integrations.comfyui as c; c.NegOptNegativePrompt.INPUT_TYPES(); "
        "print(sorted(m for m in ('torch', 'transformers', 'diffusers') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------- what the nodes write
def test_builtin_negative_is_what_negopt_generate_prints(capsys):
    for prompt in PROMPTS:
        (unwired,) = run_node(NegOptNegativePrompt, prompt=prompt, seed=7)
        (loaded,) = run_node(NegOptGeneratorLoader)  # model="builtin" by default
        (wired,) = run_node(NegOptNegativePrompt, prompt=prompt, seed=7, generator=loaded)
        printed = cli_generate(capsys, prompt, "--seed", "7")
        assert unwired == wired == printed[0] and unwired
    assert run_node(NegOptNegativePrompt, prompt="  \n ")[0] == ""  # a blank line gets a blank negative


def test_loaded_generator_is_what_negopt_generate_prints_for_each_seed(sampling_dir, capsys):
    (generator,) = run_node(NegOptGeneratorLoader, model=sampling_dir, local_files_only=True)
    seen = {}
    for seed in (1, 2, 3):
        (negative,) = run_node(NegOptNegativePrompt, prompt=PROMPTS[0], seed=seed, generator=generator)
        printed = cli_generate(capsys, PROMPTS[0], "--model", sampling_dir, "--seed", str(seed), "--local-files-only")
        assert negative == printed[0]
        seen[seed] = negative
    assert len(set(seen.values())) > 1  # the seed reaches the generator: a node that dropped it could not pass


def test_combine_modes_are_the_pipelines():
    from negopt.builtin import BuiltinGenerator
    from negopt.text import merge_negatives

    prompt, user = PROMPTS[0], "easynegative, (blurry:1.2), watermark"
    generated = BuiltinGenerator()([prompt])[0]
    assert "watermark" in generated  # so that "merge" has a term to drop
    merged = run_node(NegOptNegativePrompt, prompt=prompt, negative_prompt=user)[0]  # combine="merge" by default
    assert merged == merge_negatives(user, generated)
    assert merged.startswith(user + ", ") and merged.count("watermark") == 1
    assert run_node(NegOptNegativePrompt, prompt=prompt, negative_prompt=user, combine="user")[0] == user
    assert run_node(NegOptNegativePrompt, prompt=prompt, negative_prompt=user, combine="generated")[0] == generated
    assert run_node(NegOptNegativePrompt, prompt=prompt, negative_prompt="  ")[0] == generated


def test_a_generator_is_loaded_once_per_source_and_settings(sampling_dir, tmp_path):
    import shutil

    folder = shutil.copytree(sampling_dir, tmp_path / "gen")
    first = run_node(NegOptGeneratorLoader, model=str(folder), local_files_only=True)[0]
    assert run_node(NegOptGeneratorLoader, model=str(folder), local_files_only=True)[0] is first
    assert run_node(NegOptGeneratorLoader, model=str(folder))[0] is not first  # other settings, another load
    assert run_node(NegOptGeneratorLoader)[0] is run_node(NegOptGeneratorLoader, model="")[0]  # one built-in
    before = NegOptGeneratorLoader.IS_CHANGED(str(folder), "", "cpu", True)
    # The folder is saved again (a retrained generator): ComfyUI is told to run the loader again, which reloads.
    config = folder / "negopt_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "max_input_tokens": 64}))
    assert NegOptGeneratorLoader.IS_CHANGED(str(folder), "", "cpu", True) != before
    reloaded = run_node(NegOptGeneratorLoader, model=str(folder), local_files_only=True)[0]
    assert reloaded is not first


def test_a_name_under_comfyuis_models_folder(sampling_dir, tmp_path, monkeypatch):
    """Inside ComfyUI (its folder_paths module loaded), a bare name is looked up in ComfyUI/models/negopt/."""
    import shutil

    shutil.copytree(sampling_dir, tmp_path / "models" / "negopt" / "mine")
    name = "mine-" + os.urandom(4).hex()  # no such folder or hub id outside ComfyUI
    os.rename(tmp_path / "models" / "negopt" / "mine", tmp_path / "models" / "negopt" / name)
    monkeypatch.chdir(tmp_path)
    with pytest.raises((OSError, ValueError)):
        load_generator(name, local_files_only=True)
    monkeypatch.setitem(sys.modules, "folder_paths", types.SimpleNamespace(models_dir=str(tmp_path / "models")))
    generator = run_node(NegOptGeneratorLoader, model=name, local_files_only=True)[0]
    assert type(generator).__name__ == "NegOptGenerator"


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="revision='v1' was given for the built-in generator"):
        run_node(NegOptGeneratorLoader, revision="v1")
    with pytest.raises(ValueError, match="device must be one of"):
        load_generator("builtin", device="tpu")
    with pytest.raises(ValueError, match="combine must be one of"):
        run_node(NegOptNegativePrompt, prompt="a cat", combine="both")
    with pytest.raises(ValueError, match="seed must be an int"):
        run_node(NegOptNegativePrompt, prompt="a cat", seed=-1)
    with pytest.raises(TypeError, match="generator must be a negopt generator"):
        run_node(NegOptNegativePrompt, prompt="a cat", generator="builtin")
    with pytest.raises(TypeError, match="expected a list of one str"):
        run_node(NegOptNegativePrompt, prompt="a cat", generator=lambda prompts, seed: "blurry")
    with pytest.raises(FileNotFoundError):
        run_node(NegOptGeneratorLoader, model=os.path.join(os.sep, "no", "such", "negopt-folder"))
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA device; choose 'cpu'"):
            run_node(NegOptGeneratorLoader, model=os.path.dirname(SRC), device="cuda")
    assert NegOptGeneratorLoader.IS_CHANGED("builtin", "v1").startswith("invalid: ")


# -------------------------------------------------------------------------------------------------- install
def load_like_comfyui(folder: str, module_name: str | None = None):
    """ComfyUI's loader (nodes.load_custom_node): the folder's __init__.py by path, registered before it runs."""
    name = module_name or folder.replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


@pytest.fixture
def comfyui_dir(tmp_path):
    root = tmp_path / "ComfyUI"
    (root / "custom_nodes").mkdir(parents=True)
    (root / "main.py").write_text("")
    return root


def test_install_writes_a_pack_comfyui_loads(comfyui_dir, capsys):
    result = install(comfyui_dir, check_pythons=False)
    folder = comfyui_dir / "custom_nodes" / "negopt"
    assert result.folder == str(folder) and sorted(os.listdir(folder)) == ["__init__.py", "requirements.txt"]
    assert (folder / "requirements.txt").read_text().splitlines()[1].startswith("negopt>=")
    assert all((folder / name).read_text().startswith(MARKER) for name in os.listdir(folder))
    module = load_like_comfyui(str(folder))
    assert module.NODE_CLASS_MAPPINGS == comfyui.NODE_CLASS_MAPPINGS
    assert module.NODE_DISPLAY_NAME_MAPPINGS == comfyui.NODE_DISPLAY_NAME_MAPPINGS
    node = module.NODE_CLASS_MAPPINGS["NegOptNegativePrompt"]
    assert run_node(node, prompt=PROMPTS[1])[0] == cli_generate(capsys, PROMPTS[1])[0]
    assert any("Python" in m for m in result.messages)


def test_install_twice_changes_nothing(comfyui_dir):
    install(comfyui_dir, check_pythons=False)
    init = comfyui_dir / "custom_nodes" / "negopt" / "__init__.py"
    stamp = init.stat().st_mtime_ns
    again = install(comfyui_dir, check_pythons=False)
    assert again.written == [] and "already up to date" in again.messages[0]
    assert init.stat().st_mtime_ns == stamp


def test_install_refuses_a_wrong_folder_and_another_pack(comfyui_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="has no custom_nodes folder.*did you mean"):
        install(tmp_path, check_pythons=False)  # the folder above ComfyUI
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        install(tmp_path / "nowhere", check_pythons=False)
    other = comfyui_dir / "custom_nodes" / "negopt"
    other.mkdir()
    (other / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    with pytest.raises(FileExistsError, match="was not written by negopt"):
        install(comfyui_dir, check_pythons=False)
    assert (other / "__init__.py").read_text() == "NODE_CLASS_MAPPINGS = {}\n"  # left as it was


def test_installed_pack_loads_under_its_bare_name_too(comfyui_dir):
    """Older ComfyUI registered a folder as sys.modules[<folder name>], here "negopt": the pack still loads."""
    install(comfyui_dir, check_pythons=False)
    folder = str(comfyui_dir / "custom_nodes" / "negopt")
    code = (
        "import importlib.util, os, sys\n"
        f"folder = {folder!r}\n"
        "spec = importlib.util.spec_from_file_location('negopt', os.path.join(folder, '__init__.py'))\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['negopt'] = module\n"
        "spec.loader.exec_module(module)\n"
        "print(sorted(module.NODE_CLASS_MAPPINGS))\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['NegOptGeneratorLoader', 'NegOptNegativePrompt']"


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory):
    """A virtual environment without negopt (nor anything else): a ComfyUI Python that lacks it."""
    import venv

    folder = tmp_path_factory.mktemp("bare") / "venv"
    venv.create(folder, with_pip=False, symlinks=True)
    return folder


def _without_pythonpath() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_installed_pack_without_negopt_names_the_python_to_install_into(comfyui_dir, bare_venv):
    install(comfyui_dir, check_pythons=False)
    init = os.path.join(comfyui_dir, "custom_nodes", "negopt", "__init__.py")
    code = (
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('pack', {init!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
    )
    python = str(bare_venv / "bin" / "python")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, env=_without_pythonpath(), timeout=120)
    assert done.returncode != 0
    assert f"need the negopt package in the Python that runs ComfyUI ({python})" in done.stderr
    assert f'run `"{python}" -m pip install negopt`' in done.stderr


def test_install_says_whether_comfyuis_python_has_negopt(comfyui_dir, bare_venv, monkeypatch):
    os.symlink(bare_venv, comfyui_dir / ".venv")
    python = str(comfyui_dir / ".venv" / "bin" / "python")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    without = install(comfyui_dir)
    assert without.pythons == {python: None}
    assert any(f'"{python}" -m pip install "negopt>=' in m for m in without.messages)
    monkeypatch.setenv("PYTHONPATH", SRC)  # as if negopt were installed in that environment
    with_negopt = install(comfyui_dir)
    from negopt import __version__

    assert with_negopt.pythons == {python: __version__}
    assert any(f"has negopt {__version__}" in m for m in with_negopt.messages)


def test_cli_install(comfyui_dir, tmp_path, capsys):
    from negopt.cli import main

    assert main(["comfyui", "install", str(comfyui_dir)]) == 0
    out = capsys.readouterr().out
    assert "installed the negopt nodes in" in out and "negopt must be installed in the Python that runs" in out
    assert main(["comfyui", "install", str(comfyui_dir)]) == 0
    assert "already up to date" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["comfyui", "install", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("negopt comfyui install: error: COMFYUI_DIR")
