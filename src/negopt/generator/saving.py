"""A ``NegOptGenerator``'s folder: saving it (with its model card), pushing it to the hub, and the
``negopt_config.json`` that ``from_pretrained`` reads back from it.

:class:`GeneratorSavingMixin` holds the methods (``save_pretrained``, ``model_card``, ``prepare_upload_folder``,
``push_to_hub``) that ``NegOptGenerator`` inherits, as transformers' models inherit ``PushToHubMixin``: the mixin needs
only ``model``, ``tokenizer`` and ``config`` attributes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import warnings
from typing import TYPE_CHECKING, Any

import torch

from negopt import hub
from negopt.config import CONFIG_NAME, NegOptConfig
from negopt.generator.cache import ModelWatch
from negopt.model_card import GeneratorCardInfo, generator_model_card, write_model_card

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from negopt.hub import LoadedLM

__all__ = ["GeneratorSavingMixin", "Unoptimized", "keep_unoptimized", "load_generation_config", "saved_config"]


@dataclasses.dataclass
class Unoptimized:
    """What ``optimize()`` changed, kept so that ``save_pretrained`` writes the weights the generator had before:
    ``optimize`` is a speed step, and a transformers user expects a save to write what was loaded unless they cast
    it themselves.

    Attributes:
        model: The model before the first ``optimize`` that changed weights: the user's model, cast in place by
            ``"bfloat16"`` / ``"float16"``, or left as it was by ``"int8"`` (which runs a quantized copy).
        current: The generator's model right after that ``optimize`` (the quantized copy, or ``model``).
        weights: CPU copies of ``model``'s floating-point tensors before a cast, by state-dict name (None: never
            cast), tensors that shared storage sharing it again.
        dtype: ``model``'s floating-point dtype before a cast.
        values: ``ModelWatch.values`` of ``model`` right after ``optimize``: a later write to its weights (which the
            kept weights do not have) is seen.
    """

    model: torch.nn.Module
    current: torch.nn.Module
    weights: dict[str, torch.Tensor] | None
    dtype: torch.dtype | None
    values: tuple
    watch: ModelWatch


def _cpu_copies(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the floating-point tensors of ``model.state_dict()``; tied tensors stay one tensor."""
    copies: dict[Any, torch.Tensor] = {}
    out = {}
    for name, t in model.state_dict().items():
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
            if key not in copies:
                copies[key] = t.detach().to("cpu", copy=True)
            out[name] = copies[key]
    return out


def keep_unoptimized(
    kept: Unoptimized | None, model: torch.nn.Module, precision: str, dtype: torch.dtype
) -> Unoptimized | None:
    """The record to keep for an ``optimize(precision)`` of ``model`` (whose dtype is ``dtype``), taken before it
    runs: the earlier record if ``model`` is what that ``optimize`` made (the record holds the weights as loaded), a
    new one if this call changes the weights (``"int8"``, or a cast to another dtype), else None. The caller sets
    its ``current`` once ``optimize`` worked."""
    if kept is not None and kept.current is model:  # optimize() again on what an earlier one made
        return kept
    cast = precision != "int8" and getattr(torch, precision) != dtype
    if precision != "int8" and not cast:
        return None
    watch = ModelWatch()
    weights = _cpu_copies(model) if cast else None
    return Unoptimized(model, model, weights, dtype if cast else None, watch.values(model), watch)


def load_generation_config(loaded: LoadedLM) -> None:
    """Give an adapter's base model the ``generation_config.json`` that :meth:`GeneratorSavingMixin.save_pretrained`
    writes beside the adapter (the generator's settings when saved); a folder without one keeps the base's."""
    path = os.path.join(loaded.folder, "generation_config.json")
    if loaded.is_adapter and os.path.isfile(path):
        from transformers import GenerationConfig

        loaded.model.get_base_model().generation_config = GenerationConfig.from_pretrained(loaded.folder)


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


class GeneratorSavingMixin:
    """Saving, model cards and hub uploads of a generator; the class that inherits it has ``model``, ``tokenizer``
    and ``config`` (a :class:`~negopt.config.NegOptConfig`)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    config: NegOptConfig
    _unoptimized: Unoptimized | None

    def _model_to_save(self) -> tuple[torch.nn.Module, Unoptimized | None]:
        """The model a save writes, and the record of an ``optimize`` whose original weights it writes instead of
        the model's own (None: the model's own).

        Raises:
            ValueError: The weights changed after ``optimize`` cast or quantized them: the weights as loaded are not
                the generator's any more, and the reduced-precision ones are not what the user loaded.
        """
        kept = getattr(self, "_unoptimized", None)
        if kept is None or self.model is not kept.current:  # no optimize, or the user set another model since
            return self.model, None
        if kept.watch.values(kept.model) != kept.values:
            how = (
                "call gen.to(dtype=...) first to save the weights in that dtype as they are now"
                if kept.weights is not None
                else "the generator runs an int8 copy made before the change: save the model yourself "
                "(model.save_pretrained), or call optimize('int8') again after loading the saved generator"
            )
            raise ValueError(
                "the model's weights changed after optimize() cast or quantized them, so save_pretrained can write "
                f"neither the weights as loaded nor, silently, reduced-precision ones; {how}."
            )
        return kept.model, (kept if kept.weights is not None else None)

    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        """Save the model (safetensors; a LoRA adapter saves only the adapter), tokenizer, ``negopt_config.json``
        and a model card (``README.md``, unless the folder already has one that negopt did not write).

        ``NegOptGenerator.from_pretrained(save_directory)`` then gives the same output. An adapter is saved as the
        folder's adapter whatever its name (the active one, if there are several), at the scale it runs at now
        (after ``set_scale`` or inside ``rescale_adapter_scale``, ``alpha_pattern`` in ``adapter_config.json``
        records it); inside ``disable_adapter()`` the adapter is saved all the same, with a warning. After
        :meth:`optimize`, the
        weights as they were before it are saved, in their dtype: ``optimize`` is a speed step, not a change of the
        model (``"bfloat16"`` / ``"float16"`` keep a CPU copy of the weights they cast for this; ``"int8"`` keeps
        the model it quantized a copy of). To save half-precision weights on purpose, cast with :meth:`to` first.

        Args:
            save_directory: The folder (created if missing).

        Returns:
            The folder's path.

        Raises:
            ValueError: The weights were changed after ``optimize`` cast or quantized them (the message says what
                to do).
        """
        from negopt import __version__

        model, kept = self._model_to_save()
        save_directory = os.fspath(save_directory)
        os.makedirs(save_directory, exist_ok=True)
        state_dict = None if kept is None else kept.weights
        if hasattr(model, "peft_config"):
            _save_adapter(model, save_directory, state_dict)
        else:
            model.save_pretrained(save_directory, **({} if state_dict is None else {"state_dict": state_dict}))
            if kept is not None:
                _write_dtype(save_directory, kept.dtype)
        self.tokenizer.save_pretrained(save_directory)
        base = self.config.base_model_name_or_path
        if hasattr(model, "peft_config"):
            base = model.peft_config[getattr(model, "active_adapter", "default")].base_model_name_or_path
        config = dataclasses.replace(self.config, negopt_version=__version__, base_model_name_or_path=base)
        config.save_pretrained(save_directory)
        write_model_card(save_directory, self.model_card(config))
        return save_directory

    def model_card(self, config: NegOptConfig | None = None, repo_id: str | None = None):
        """The model card (a ``huggingface_hub.ModelCard``) that :meth:`save_pretrained` writes as ``README.md``.

        Args:
            config: The config to describe (default: the generator's).
            repo_id: The hub repository, named in the card's title and examples when pushing.
        """
        config = config if config is not None else self.config
        model = self._model_to_save()[0]
        is_adapter = hasattr(model, "peft_config")
        info = GeneratorCardInfo(
            model_class=type(model.get_base_model() if is_adapter else model).__name__,
            model_type=config.model_type,
            prompt_template=config.prompt_template,
            negopt_version=config.negopt_version,
            base_model=config.base_model_name_or_path,
            is_adapter=is_adapter,
        )
        return generator_model_card(info, repo_id=repo_id)

    def prepare_upload_folder(self, folder: str | os.PathLike, repo_id: str) -> str:
        """Write what :meth:`push_to_hub` would upload into ``folder``; returns the folder.

        Warns when the generator is a LoRA adapter whose base model is a local path: others could not load it.
        """
        return self._write_upload_folder(folder, repo_id, stacklevel=3)

    def _write_upload_folder(self, folder: str | os.PathLike, repo_id: str, stacklevel: int) -> str:
        folder = self.save_pretrained(folder)
        config = NegOptConfig.from_json_file(os.path.join(folder, CONFIG_NAME))
        base = config.base_model_name_or_path
        if hasattr(self._model_to_save()[0], "peft_config") and hub.hub_model_id(base) is None:
            warnings.warn(
                f"the adapter's base model {base!r} is a local path, so others cannot load {repo_id!r} from the hub; "
                "train the adapter on a hub model, or push a merged model (model.merge_and_unload()).",
                UserWarning,
                stacklevel=stacklevel,  # the user's call of prepare_upload_folder or push_to_hub
            )
        # The card again, with the repository's name in it.
        write_model_card(folder, self.model_card(config, repo_id=repo_id), overwrite=True)
        return folder

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | bool | None = None,
        commit_message: str = "Upload negopt generator",
        revision: str | None = None,
    ) -> str:
        """Upload the generator (as :meth:`save_pretrained` writes it) to a hub repository, created if missing.

        Args:
            repo_id: ``"user/name"`` or ``"org/name"``.
            private: Make a new repository private (None: the hub's default).
            token: Hub token (default: the one you are logged in with).
            commit_message: The commit message.
            revision: Branch to push to.

        Returns:
            The URL of the commit.
        """
        if not isinstance(repo_id, str) or not hub.is_hub_id(repo_id):
            raise ValueError(f"repo_id must be a hub id such as 'user/negopt-generator', got {repo_id!r}.")
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self._write_upload_folder(tmp, repo_id, stacklevel=3)
            info = api.upload_folder(
                repo_id=repo_id, folder_path=tmp, commit_message=commit_message, revision=revision
            )
        return str(getattr(info, "commit_url", info))


def _write_dtype(folder: str, dtype: torch.dtype) -> None:
    """Put ``dtype`` in the saved ``config.json``: transformers writes the dtype of the model's parameters there,
    which after ``optimize``'s cast is not that of the weights saved (an adapter folder has no such file)."""
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    name = str(dtype).removeprefix("torch.")
    for key in ("dtype", "torch_dtype"):
        if key in data:
            data[key] = name
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def _save_adapter(model: Any, folder: str, state_dict: dict[str, torch.Tensor] | None) -> None:
    """Save ``model``'s active adapter as the adapter of ``folder``, at the scale it runs at.

    peft saves an adapter not named ``"default"`` in a subfolder named after it, where ``from_pretrained`` would not
    find it, and writes its own template model card: the adapter's files are taken from a temporary folder instead.
    """
    import shutil

    active = getattr(model, "active_adapter", "default")
    if getattr(model, "_adapters_disabled", False):
        warnings.warn(
            "save_pretrained inside disable_adapter(): the adapter is saved all the same, and the saved generator "
            "runs with it; save outside the context, or save the base model (model.get_base_model()) if that is "
            "what you want.",
            UserWarning,
            stacklevel=4,  # the user's save_pretrained call
        )
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(
            tmp, selected_adapters=[active], **({} if state_dict is None else {"state_dict": state_dict})
        )
        source = tmp if active == "default" else os.path.join(tmp, active)
        for name in os.listdir(source):
            if name.startswith("adapter_") and os.path.isfile(os.path.join(source, name)):
                shutil.move(os.path.join(source, name), os.path.join(folder, name))
    _record_scale(model, active, os.path.join(folder, hub.ADAPTER_CONFIG_NAME))
    # The base model's generation settings as the generator runs them (an edit of model.generation_config would be
    # lost otherwise: the adapter folder holds no model config); from_pretrained reads them back.
    model.get_base_model().generation_config.save_pretrained(folder)


def _record_scale(model: Any, adapter: str, config_path: str) -> None:
    """Write into the saved ``adapter_config.json`` an ``alpha_pattern`` for each LoRA layer whose scale is not the
    one its config gives (``lora_alpha / r``, or ``/ sqrt(r)`` with rsLoRA): ``set_scale``, ``rescale_adapter_scale``
    or an edited ``scaling``, which peft's own save does not record."""
    import math

    changed = {}
    for name, module in model.get_base_model().named_modules():
        scaling, alpha, rank = (getattr(module, a, None) for a in ("scaling", "lora_alpha", "r"))
        if not all(isinstance(d, dict) and adapter in d for d in (scaling, alpha, rank)):
            continue
        rslora = getattr(module, "use_rslora", {})
        rslora = rslora.get(adapter, False) if isinstance(rslora, dict) else bool(rslora)
        divisor = math.sqrt(rank[adapter]) if rslora else rank[adapter]
        if not math.isclose(scaling[adapter], alpha[adapter] / divisor, rel_tol=1e-12, abs_tol=0.0):
            changed[re.escape(name)] = scaling[adapter] * divisor
    if not changed or not os.path.isfile(config_path):
        return
    with open(config_path, encoding="utf-8") as f:
        data = json.load(f)
    data["alpha_pattern"] = {**(data.get("alpha_pattern") or {}), **changed}
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
