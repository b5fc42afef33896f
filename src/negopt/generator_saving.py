"""A ``NegOptGenerator``'s folder: saving it (with its model card), pushing it to the hub, and the
``negopt_config.json`` that ``from_pretrained`` reads back from it.

Internal: this module's names may change in any release. The public surface is the generator's methods of the same
names (``save_pretrained``, ``model_card``, ``prepare_upload_folder``, ``push_to_hub``), which document them.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings
from typing import TYPE_CHECKING

from negopt import hub
from negopt.config import CONFIG_NAME, NegOptConfig
from negopt.model_card import GeneratorCardInfo, generator_model_card, write_model_card

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import ModelCard

    from negopt.generator import NegOptGenerator
    from negopt.hub import LoadedLM

__all__ = ["saved_config", "save_pretrained", "model_card", "prepare_upload_folder", "push_to_hub"]


def saved_config(loaded: LoadedLM, name_or_path: str | os.PathLike) -> NegOptConfig | None:
    """The ``negopt_config.json`` that ``NegOptGenerator.from_pretrained`` reads with a loaded model: the folder's,
    else its base model's; for a plain hub checkpoint, a default one that names it as the base model.

    Raises:
        ValueError: The file's model type does not match the model's.
    """
    folder, base_folder, model_type = loaded.folder, loaded.base_folder, loaded.model_type
    config = None
    for candidate in (folder, base_folder):
        path = os.path.join(candidate, CONFIG_NAME)
        if os.path.isfile(path):
            config = NegOptConfig.from_json_file(path)
            break
    if config is None and not os.path.isdir(os.path.expanduser(os.fspath(name_or_path))):
        # A plain hub checkpoint: remember where it came from, for the model card of a later save.
        config = NegOptConfig(model_type=model_type, base_model_name_or_path=os.fspath(name_or_path))
    if config is not None and config.model_type != model_type:
        raise ValueError(
            f"{CONFIG_NAME} in {folder!r} says model_type={config.model_type!r}, but the model is a {model_type} "
            f"LM; fix the file (model_type: {model_type!r}) or delete it."
        )
    return config


def save_pretrained(gen: NegOptGenerator, save_directory: str | os.PathLike) -> str:
    """``gen.save_pretrained(save_directory)``."""
    from negopt import __version__

    save_directory = os.fspath(save_directory)
    os.makedirs(save_directory, exist_ok=True)
    gen.model.save_pretrained(save_directory)
    gen.tokenizer.save_pretrained(save_directory)
    base = gen.config.base_model_name_or_path
    if hasattr(gen.model, "peft_config"):
        base = gen.model.peft_config[getattr(gen.model, "active_adapter", "default")].base_model_name_or_path
    config = dataclasses.replace(gen.config, negopt_version=__version__, base_model_name_or_path=base)
    config.save_pretrained(save_directory)
    write_model_card(save_directory, gen.model_card(config))
    return save_directory


def model_card(gen: NegOptGenerator, config: NegOptConfig | None = None, repo_id: str | None = None) -> ModelCard:
    """``gen.model_card(config, repo_id)``."""
    config = config if config is not None else gen.config
    is_adapter = hasattr(gen.model, "peft_config")
    info = GeneratorCardInfo(
        model_class=type(gen.model.get_base_model() if is_adapter else gen.model).__name__,
        model_type=config.model_type,
        prompt_template=config.prompt_template,
        negopt_version=config.negopt_version,
        base_model=config.base_model_name_or_path,
        is_adapter=is_adapter,
    )
    return generator_model_card(info, repo_id=repo_id)


def prepare_upload_folder(gen: NegOptGenerator, folder: str | os.PathLike, repo_id: str) -> str:
    """``gen.prepare_upload_folder(folder, repo_id)``."""
    folder = gen.save_pretrained(folder)
    config = NegOptConfig.from_json_file(os.path.join(folder, CONFIG_NAME))
    base = config.base_model_name_or_path
    if hasattr(gen.model, "peft_config") and hub.hub_model_id(base) is None:
        warnings.warn(
            f"the adapter's base model {base!r} is a local path, so others cannot load {repo_id!r} from the hub; "
            "train the adapter on a hub model, or push a merged model (model.merge_and_unload()).",
            UserWarning,
            stacklevel=4,  # the user's call of gen.push_to_hub (one frame more than the method)
        )
    # The card again, with the repository's name in it.
    write_model_card(folder, gen.model_card(config, repo_id=repo_id), overwrite=True)
    return folder


def push_to_hub(
    gen: NegOptGenerator,
    repo_id: str,
    private: bool | None,
    token: str | bool | None,
    commit_message: str,
    revision: str | None,
) -> str:
    """``gen.push_to_hub(repo_id, ...)``, every argument given (the method holds the defaults)."""
    if not isinstance(repo_id, str) or not hub.is_hub_id(repo_id):
        raise ValueError(f"repo_id must be a hub id such as 'user/negopt-generator', got {repo_id!r}.")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepare_upload_folder(gen, tmp, repo_id)
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message, revision=revision)
    return str(getattr(info, "commit_url", info))
