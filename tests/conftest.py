"""Shared test set-up: no hub, tiny real models built in-process."""

import os

import pytest

# Before anything imports huggingface_hub: an accidental hub call fails fast instead of hanging.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: tiny models on a shared CPU run several times faster than on contended two.

    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    """The tiny T5 of ``tiny.tiny_t5`` saved as a checkpoint folder, one a test module."""
    from tiny import save_tiny_t5

    return save_tiny_t5(tmp_path_factory.mktemp("t5"))


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """The tiny GPT-2 of ``tiny.tiny_gpt2`` saved as a checkpoint folder, one a test module."""
    from tiny import save_tiny_gpt2

    return save_tiny_gpt2(tmp_path_factory.mktemp("gpt2"))


@pytest.fixture
def tokenizer_log():
    """The messages transformers' tokenizers log during the test, read from their logger directly (pytest's caplog
    does not see them here)."""
    import logging

    messages: list[str] = []

    class Record(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("transformers.tokenization_utils_base")
    handler = Record(logging.WARNING)
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)
