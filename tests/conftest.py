"""Shared test set-up: no hub, tiny real models built in-process."""

import os

# Before anything imports huggingface_hub: an accidental hub call fails fast instead of hanging.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
