"""SFT's data: the prompt / negative-prompt pairs of a run, as token rows the Trainer batches.

:func:`select_pairs` loads and cleans ``config.dataset`` (or checks the datasets passed in), :func:`tokenize_pairs`
turns pairs into model inputs and labels (a causal LM learns the negative's tokens only), and :class:`PairCollator`
pads a batch to its longest row.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

__all__ = ["PairCollator", "select_pairs", "tokenize_pairs"]

PAIR_COLUMNS = ("prompt", "negative_prompt")


def select_pairs(config, tokenizer, train_dataset=None, eval_dataset=None):
    """The training and validation pairs of a run: ``(train, validation or None, DataSummary or None)``.

    Args:
        config: The run's :class:`~negopt.train.SFTConfig`.
        tokenizer: Measures lengths for ``max_prompt_length`` / ``max_negative_length``.
        train_dataset: As for :class:`~negopt.train.SFTTrainer`; None loads ``config.dataset`` with
            :func:`negopt.data.load_negative_prompts` (whose summary is returned).
        eval_dataset: As for :class:`~negopt.train.SFTTrainer`.

    Raises:
        TypeError: A dataset that is not a ``datasets.Dataset``.
        ValueError: A missing column or split, or an empty training split.
    """
    import datasets

    summary = None
    if train_dataset is None:
        from negopt.data import load_negative_prompts

        dd, summary = load_negative_prompts(
            config.dataset,
            revision=config.dataset_revision,
            min_likes=config.min_likes,
            strip_weights=config.strip_weights,
            max_prompt_length=config.max_prompt_length,
            max_negative_length=config.max_negative_length,
            tokenizer=tokenizer,
            validation_size=config.validation_size,
            test_size=config.test_size,
            split_seed=config.split_seed,
            return_summary=True,
        )
        train_dataset, eval_dataset = dd["train"], dd["validation"]
    elif isinstance(train_dataset, datasets.DatasetDict):
        if "train" not in train_dataset:
            raise ValueError(f"train_dataset has no 'train' split; it has {list(train_dataset)}.")
        if eval_dataset is None:
            eval_dataset = train_dataset.get("validation")
        train_dataset = train_dataset["train"]
    for name, ds in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
        if ds is None:
            continue
        if not isinstance(ds, datasets.Dataset):
            raise TypeError(f"{name} must be a datasets.Dataset, got {type(ds).__name__}.")
        missing = [c for c in PAIR_COLUMNS if c not in ds.column_names]
        if missing:
            raise ValueError(f"{name} lacks the column(s) {missing}; it has {ds.column_names}.")
    if len(train_dataset) == 0:
        raise ValueError("the training split is empty; give more data or lower validation_size / test_size.")
    if eval_dataset is not None and len(eval_dataset) == 0:
        # stacklevel: this function, SFTTrainer.__init__, the user's call.
        warnings.warn("the validation split is empty; training runs without evaluation.", UserWarning, stacklevel=3)
        eval_dataset = None
    if eval_dataset is not None and config.max_eval_samples is not None:
        eval_dataset = eval_dataset.select(range(min(len(eval_dataset), config.max_eval_samples)))
    return train_dataset, eval_dataset, summary


def tokenize_pairs(
    ds,
    tokenizer,
    *,
    format_prompt: Callable[[str], str],
    model_type: str,
    max_source_length: int,
    max_target_length: int,
):
    """Token rows of a dataset of pairs: ``input_ids``, ``attention_mask``, ``labels`` and ``length``.

    Seq2seq: the formatted prompt is the encoder input, the negative the labels. Causal: one sequence, the formatted
    prompt then the negative and the end-of-sequence token, with the prompt's labels masked (-100) so that the loss
    is on the negative only. ``length`` (what a row costs in a batch) is what length-grouped batching reads.
    """
    tok = tokenizer

    def seq2seq(batch):
        enc = tok([format_prompt(p) for p in batch["prompt"]], max_length=max_source_length, truncation=True)
        labels = tok(text_target=batch["negative_prompt"], max_length=max_target_length, truncation=True)
        enc["labels"] = labels["input_ids"]
        # What a batch costs: encoder and decoder lengths together.
        enc["length"] = [len(a) + len(b) for a, b in zip(enc["input_ids"], enc["labels"])]
        return enc

    add_bos = tok.bos_token_id is not None and getattr(tok, "add_bos_token", False)

    def causal(batch):
        prompts = [format_prompt(p) for p in batch["prompt"]]
        # The negative continues the formatted prompt after a space, as the generator will read it.
        sep = [("" if p.endswith((" ", "\n")) else " ") for p in prompts]
        p_ids = tok(prompts, add_special_tokens=False, max_length=max_source_length, truncation=True)
        n_ids = tok(
            [s + n for s, n in zip(sep, batch["negative_prompt"])],
            add_special_tokens=False,
            max_length=max_target_length - 1,
            truncation=True,
        )
        out = {"input_ids": [], "attention_mask": [], "labels": [], "length": []}
        for p, n in zip(p_ids["input_ids"], n_ids["input_ids"]):
            p = ([tok.bos_token_id] if add_bos else []) + p
            n = n + [tok.eos_token_id]
            out["input_ids"].append(p + n)
            out["attention_mask"].append([1] * (len(p) + len(n)))
            out["labels"].append([-100] * len(p) + n)
            out["length"].append(len(p) + len(n))
        return out

    fn = seq2seq if model_type == "seq2seq" else causal
    return ds.map(fn, batched=True, remove_columns=ds.column_names, desc="tokenizing")


class PairCollator:
    """Dynamic padding (transformers' ``DataCollatorForSeq2Seq``) without the ``length`` column the sampler reads."""

    def __init__(self, tokenizer, pad_to_multiple_of: int | None = None) -> None:
        from transformers import DataCollatorForSeq2Seq

        self.inner = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, pad_to_multiple_of=pad_to_multiple_of)

    def __call__(self, features):
        return self.inner([{k: v for k, v in f.items() if k != "length"} for f in features])
