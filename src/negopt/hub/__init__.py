"""Folders and hub ids: the one place that finds, checks and loads a language model for negopt.

Everything that takes "a folder or a hub id" goes through here: the generator, the trainers, the data loader, the
pipeline wrapper and the rewards. It tells a hub id from a path (on ``huggingface_hub``'s own ``validate_repo_id``),
resolves either to a local folder (local first, then the hub cache, then the hub), refuses pickle-only weights
unless asked, tells a seq2seq LM from a causal one, and loads the model (or a LoRA adapter over its base) and its
tokenizer, refusing a checkpoint that does not cover the model or a tokenizer that is missing or empty.

:mod:`negopt.hub.paths` holds the names and folders part, :mod:`negopt.hub.loading` the loading part; import both
from here (``from negopt import hub; hub.load_lm(...)``).

Nothing heavy is imported at module level (``is_hub_id`` needs only ``huggingface_hub``): torch, transformers and peft
load when a model does.
"""

from negopt.hub import loading, paths
from negopt.hub.loading import (
    TOKENIZER_FILES,
    LoadedLM,
    load_adapter,
    load_lm,
    load_model,
    load_pretrained,
    load_tokenizer,
    model_type_of,
    quiet_peft_wrap,
    resolve_dtype,
)
from negopt.hub.paths import (
    ADAPTER_CONFIG_NAME,
    HubOptions,
    check_safetensors,
    hub_model_id,
    is_folder_or_hub_id,
    is_hub_id,
    is_offline,
    resolve_folder,
    safetensors_error,
)

__all__ = [*paths.__all__, *loading.__all__]
