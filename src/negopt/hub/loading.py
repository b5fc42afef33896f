"""Loading: tell seq2seq from causal, load a LM or a LoRA adapter over one, its tokenizer, and reward models."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from negopt.hub.paths import ADAPTER_CONFIG_NAME, HubOptions, check_safetensors, resolve_folder

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "TOKENIZER_FILES",
    "LoadedLM",
    "model_type_of",
    "resolve_dtype",
    "load_model",
    "load_adapter",
    "load_tokenizer",
    "load_lm",
    "load_pretrained",
    "quiet_peft_wrap",
]

logger = logging.getLogger(__name__)

# What transformers writes for a tokenizer: its config, the fast tokenizer, and the slow tokenizers' vocabularies.
TOKENIZER_FILES = (
    "tokenizer_config.json",
    "tokenizer.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "spiece.model",
    "tokenizer.model",
    "sentencepiece.bpe.model",
)
# A checkpoint may lack a few weights that the model rebuilds (buffers, a head tied to the embeddings, which
# transformers already leaves out of missing_keys); past this share of the model's tensors it is another model's.
_MAX_MISSING_SHARE = 0.1

ModelType = Literal["seq2seq", "causal"]


# ----------------------------------------------------------------------------------------------------- models
def model_type_of(obj: Any, where: str = "the model") -> ModelType:
    """``"seq2seq"`` or ``"causal"`` for a transformers config, or for a model (or a peft model over one).

    A config is judged by the model families transformers maps to ``AutoModelForSeq2SeqLM`` and
    ``AutoModelForCausalLM`` (or by the classes a remote-code config names); a model by its class, so that a
    model without a language-modelling head (``T5EncoderModel``) is refused even though its config is a T5's.

    Raises:
        ValueError: It is neither a seq2seq nor a causal LM (``where`` names it in the message).
        TypeError: It is neither a config nor a model with one.
    """
    from transformers import PretrainedConfig
    from transformers.models.auto import modeling_auto as auto

    if isinstance(obj, PretrainedConfig):
        config = obj
        if getattr(config, "is_encoder_decoder", False) or type(config) in auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING:
            return "seq2seq"
        if type(config) in auto.MODEL_FOR_CAUSAL_LM_MAPPING:
            return "causal"
        auto_map = getattr(config, "auto_map", None) or {}  # remote-code models name their own classes
        if "AutoModelForSeq2SeqLM" in auto_map:
            return "seq2seq"
        if "AutoModelForCausalLM" in auto_map:
            return "causal"
        kind = f"model type {getattr(config, 'model_type', type(config).__name__)!r}"
    else:
        model = obj.get_base_model() if callable(getattr(obj, "get_base_model", None)) else obj
        if not isinstance(getattr(model, "config", None), PretrainedConfig):
            raise TypeError(f"{where} is a {type(obj).__name__}; expected a transformers model or its config.")
        name = type(model).__name__
        if name in auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES.values() or (
            getattr(model.config, "is_encoder_decoder", False) and name.endswith("ForConditionalGeneration")
        ):
            return "seq2seq"
        if name in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() or name.endswith(("ForCausalLM", "LMHeadModel")):
            return "causal"
        kind = f"class {name}"
    raise ValueError(
        f"{where} has {kind}, which is neither a seq2seq LM (T5, Flan-T5, BART, ...) nor a causal LM (GPT-2, "
        "Llama, ...). negopt needs a model with a language-modelling head that generates text: pick a checkpoint "
        "of one of those families (e.g. T5ForConditionalGeneration or GPT2LMHeadModel)."
    )


def resolve_dtype(torch_dtype: torch.dtype | str | None) -> torch.dtype | str:
    """``None`` is float32 (load on the CPU in float32, as diffusers does); a name such as ``"bfloat16"`` or
    ``"auto"`` is taken as given.

    Raises:
        ValueError: Not a dtype, a dtype name or ``"auto"``.
    """
    import torch

    if torch_dtype is None:
        return torch.float32
    if isinstance(torch_dtype, torch.dtype) or torch_dtype == "auto":
        return torch_dtype
    if isinstance(torch_dtype, str) and isinstance(getattr(torch, torch_dtype, None), torch.dtype):
        return getattr(torch, torch_dtype)
    raise ValueError(
        f"torch_dtype must be a torch.dtype, a dtype name such as 'bfloat16', or 'auto'; got {torch_dtype!r}."
    )


def _check_coverage(model: torch.nn.Module, missing: list[str], folder: str) -> None:
    """Refuse weights that leave most of the model at its random initialisation; warn when a few are missing."""
    if not missing:
        return
    total = len(model.state_dict())
    shown = ", ".join(sorted(missing)[:5]) + (", ..." if len(missing) > 5 else "")
    if len(missing) > _MAX_MISSING_SHARE * total:
        raise ValueError(
            f"the weights in {folder!r} do not fit its config.json ({type(model).__name__}): {len(missing)} of the "
            f"model's {total} tensors are missing from the checkpoint ({shown}), so the model would be random. The "
            "weights belong to another architecture or size: put the matching config.json beside them."
        )
    warnings.warn(
        f"{len(missing)} of the {total} tensors of {type(model).__name__} are not in the checkpoint in {folder!r} "
        f"and start random: {shown}.",
        UserWarning,
        stacklevel=3,
    )


def load_model(
    folder: str,
    *,
    dtype: torch.dtype | str = "float32",
    model_type: ModelType | None = None,
    use_safetensors: bool = True,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, ModelType]:
    """Load the transformers LM in a local ``folder``, seq2seq or causal as its config says (or ``model_type``).

    Returns:
        ``(model in eval mode, model_type)``.

    Raises:
        FileNotFoundError: No ``config.json``.
        ValueError: An unreadable config, a model that is not an LM, pickle-only weights with
            ``use_safetensors=True``, or weights that do not cover the model (another architecture's).
        OSError: The weights cannot be read.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    dtype = resolve_dtype(dtype)
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise FileNotFoundError(
            f"{folder!r} is not a generator folder: it has neither config.json (a transformers model) nor "
            f"{ADAPTER_CONFIG_NAME} (a LoRA adapter)."
        )
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except ValueError as e:
        raise ValueError(f"cannot read the model config in {folder!r}: {e}") from e
    model_type = model_type or model_type_of(config, repr(folder))
    check_safetensors(folder, use_safetensors)
    auto_cls = AutoModelForSeq2SeqLM if model_type == "seq2seq" else AutoModelForCausalLM
    try:
        model, info = auto_cls.from_pretrained(
            folder,
            config=config,
            dtype=dtype,
            # None lets transformers fall back to .bin, which the caller allowed with use_safetensors=False.
            use_safetensors=True if use_safetensors else None,
            trust_remote_code=trust_remote_code,
            output_loading_info=True,
        )
    except ValueError as e:
        if "Unrecognized configuration class" in str(e):
            raise ValueError(
                f"{folder!r} ({config.model_type}) is not a {model_type} language model that transformers knows; "
                "pass a seq2seq (T5, BART) or causal (GPT-2, Llama) model."
            ) from e
        raise
    except OSError as e:
        raise OSError(f"cannot load the model weights in {folder!r}: {e}") from e
    _check_coverage(model, list(info.get("missing_keys") or []), folder)
    return model.eval(), model_type


@contextlib.contextmanager
def quiet_peft_wrap() -> Iterator[None]:
    """Wrap a model in a peft ``PeftModel`` without transformers' ``is_gradient_checkpointing`` FutureWarning.

    peft's ``PeftModel.__init__`` reads ``model.is_gradient_checkpointing``, a property transformers 5 deprecated
    (it warns on every read); there is no way to build a ``PeftModel`` without that read, so the one warning is
    silenced for the duration of the wrap and nothing else.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def load_adapter(
    folder: str,
    *,
    dtype: torch.dtype | str = "float32",
    hub: HubOptions | None = None,
    use_safetensors: bool = True,
    trust_remote_code: bool = False,
    is_trainable: bool = False,
) -> tuple[Any, ModelType, str]:
    """Load the LoRA adapter in ``folder`` over its base model (``base_model_name_or_path``, a folder or hub id).

    ``is_trainable=True`` loads the adapter to train it further (a trainer's starting point); the default is
    frozen, for inference.

    Returns:
        ``(peft model in eval mode, model_type, the base model's folder)``.

    Raises:
        ValueError: ``adapter_config.json`` is not JSON or names no base model; pickle-only adapter weights.
        FileNotFoundError / OSError: The base model cannot be found; the message names the adapter and the base.
    """
    try:
        from peft import PeftConfig, PeftModel
    except ImportError as e:  # peft is a dependency, but keep the message useful if it is missing
        raise ImportError(f"{folder!r} holds a LoRA adapter, which needs peft: pip install peft") from e

    hub = {k: v for k, v in (hub or HubOptions()).items() if k != "revision"}
    with open(os.path.join(folder, ADAPTER_CONFIG_NAME), encoding="utf-8") as f:
        try:
            raw = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{ADAPTER_CONFIG_NAME} in {folder!r} is not valid JSON ({e}).") from e
    base = raw.get("base_model_name_or_path")
    if not base:
        raise ValueError(
            f"{ADAPTER_CONFIG_NAME} in {folder!r} has no base_model_name_or_path, so its base model is unknown; "
            "set it to the folder or hub id the adapter was trained on."
        )
    if not os.path.isabs(base) and os.path.isdir(os.path.join(folder, base)):
        base = os.path.join(folder, base)  # a base saved beside/inside the adapter, by relative path
    check_safetensors(folder, use_safetensors, adapter=True)
    peft_config = PeftConfig.from_pretrained(folder)
    try:
        base_folder = resolve_folder(
            base,
            revision=getattr(peft_config, "revision", None),
            use_safetensors=use_safetensors,
            trust_remote_code=trust_remote_code,
            **hub,
        )
    except OSError as e:
        raise type(e)(f"cannot load the base model of the adapter in {folder!r}: {e}") from e
    base_model, model_type = load_model(
        base_folder, dtype=dtype, use_safetensors=use_safetensors, trust_remote_code=trust_remote_code
    )
    with quiet_peft_wrap():
        model = PeftModel.from_pretrained(base_model, folder, is_trainable=is_trainable)
    return model.eval(), model_type, base_folder


# -------------------------------------------------------------------------------------------------- tokenizers
_PROBE_TEXT = "a photo of a cat"
_MIN_ORDINARY_TOKENS = 8


def _has_tokenizer(folder: str) -> bool:
    return any(os.path.isfile(os.path.join(folder, f)) for f in TOKENIZER_FILES)


def load_tokenizer(*folders: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load the tokenizer from the first of ``folders`` that holds tokenizer files, and check that it can tokenize.

    transformers builds a tokenizer from a model's config alone when the files are missing, with no vocabulary: it
    turns every word into the unknown token, and the model then writes nothing. Here that is an error.

    Raises:
        FileNotFoundError: No folder holds tokenizer files; the message names the folders and the files expected.
        ValueError: The files load into a tokenizer with no vocabulary beyond its special tokens.
        OSError: The files cannot be read.
    """
    from transformers import AutoTokenizer

    folder = next((f for f in folders if _has_tokenizer(f)), None)
    if folder is None:
        where = " or ".join(repr(f) for f in dict.fromkeys(folders))
        raise FileNotFoundError(
            f"no tokenizer in {where}: expected tokenizer_config.json or tokenizer.json (or a vocabulary such as "
            "vocab.json, spiece.model). Save the tokenizer beside the model (tokenizer.save_pretrained(folder))."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise OSError(f"cannot load the tokenizer in {folder!r}: {e}") from e
    # A tokenizer built without its vocabulary file holds its special tokens and next to nothing else (a slow T5
    # tokenizer: 103 specials and "▁"), and turns every word into the unknown token. A real vocabulary, even a
    # word-level one for a narrow domain, has more ordinary tokens than this.
    special = set(tokenizer.all_special_tokens)
    ordinary = sum(1 for token in tokenizer.get_vocab() if token not in special)
    if ordinary < _MIN_ORDINARY_TOKENS:
        ids = tokenizer(_PROBE_TEXT, add_special_tokens=False)["input_ids"]
        files = ", ".join(sorted(f for f in os.listdir(folder) if f in TOKENIZER_FILES or f.endswith(".json")))
        raise ValueError(
            f"the tokenizer in {folder!r} has no usable vocabulary ({ordinary} tokens besides its special ones; "
            f"{_PROBE_TEXT!r} comes back as {tokenizer.decode(ids)!r}); found {files}. Save the full tokenizer beside "
            "the model (tokenizer.save_pretrained(folder)): tokenizer.json, or a slow tokenizer's vocabulary files."
        )
    return tokenizer


# ------------------------------------------------------------------------------------------------------ all of it
@dataclass
class LoadedLM:
    """What :func:`load_lm` returns.

    Attributes:
        model: The transformers model, or a peft ``PeftModel`` over one; in eval mode.
        tokenizer: Its tokenizer (None when not asked for).
        model_type: ``"seq2seq"`` or ``"causal"``.
        folder: The local folder that ``name_or_path`` resolved to.
        base_folder: The base model's folder for an adapter, else ``folder``.
        is_adapter: Whether ``folder`` holds a LoRA adapter.
    """

    model: Any
    tokenizer: Any
    model_type: ModelType
    folder: str
    base_folder: str
    is_adapter: bool


def load_lm(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    torch_dtype: torch.dtype | str | None = None,
    model_type: ModelType | None = None,
    use_safetensors: bool = True,
    trust_remote_code: bool = False,
    is_trainable: bool = False,
    with_tokenizer: bool = True,
) -> LoadedLM:
    """Load a seq2seq or causal LM, or a LoRA adapter over one, and its tokenizer, from a folder or hub id.

    A folder with ``adapter_config.json`` is an adapter: its base model is loaded the same way, then the adapter on
    top; the tokenizer comes from the adapter's folder when it has one, else from the base's.

    Args:
        name_or_path: A local folder or a hub id.
        revision: Hub revision of ``name_or_path``.
        cache_dir: Hub cache folder.
        token: Hub token.
        local_files_only: Never reach the hub.
        torch_dtype: Parameter dtype (default float32; ``"auto"`` takes the checkpoint's).
        model_type: Force ``"seq2seq"`` or ``"causal"`` instead of reading it from the config (not for adapters).
        use_safetensors: Refuse pickle weights (default).
        trust_remote_code: Allow a checkpoint's own code to run.
        is_trainable: Load an adapter to train it further (default: frozen).
        with_tokenizer: Load the tokenizer too (False: ``tokenizer`` is None, for a caller that has its own).

    Raises:
        FileNotFoundError, NotADirectoryError, OSError, ValueError: As :func:`resolve_folder`, :func:`load_model`,
            :func:`load_adapter` and :func:`load_tokenizer` raise them.
    """
    hub = HubOptions(revision, cache_dir, token, local_files_only)
    flags = {"use_safetensors": use_safetensors, "trust_remote_code": trust_remote_code}
    dtype = resolve_dtype(torch_dtype)
    folder = resolve_folder(name_or_path, **hub, **flags)
    is_adapter = os.path.isfile(os.path.join(folder, ADAPTER_CONFIG_NAME))
    if is_adapter:
        model, found_type, base_folder = load_adapter(folder, dtype=dtype, hub=hub, is_trainable=is_trainable, **flags)
    else:
        model, found_type = load_model(folder, dtype=dtype, model_type=model_type, **flags)
        base_folder = folder
    tokenizer = load_tokenizer(folder, base_folder, trust_remote_code=trust_remote_code) if with_tokenizer else None
    return LoadedLM(model, tokenizer, found_type, folder, base_folder, is_adapter)


def load_pretrained(
    cls: Any,
    source: str | os.PathLike,
    *,
    argument: str,
    what: str,
    hub: HubOptions,
    use_safetensors: bool | None = None,
) -> Any:
    """``cls.from_pretrained(source, ...)`` for a folder or hub id, with an error that names the argument.

    The loader for the reward models (CLIP, image classifiers) and their processors: a model comes back in eval
    mode; anything else (a processor) as loaded. ``use_safetensors`` goes to models only (processors have no weights).

    Raises:
        OSError: It cannot be loaded; the message names ``argument`` and ``source``.
    """
    source = os.fspath(source)
    kwargs = {} if use_safetensors is None else {"use_safetensors": use_safetensors}
    try:
        loaded = cls.from_pretrained(source, **kwargs, **hub)
    except OSError as e:
        raise OSError(f"cannot load the {what} {argument}={source!r}: {e}") from e
    return loaded.eval() if callable(getattr(loaded, "eval", None)) else loaded
