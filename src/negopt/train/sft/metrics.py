"""SFT's validation metric: ROUGE-L between the generated and the reference negative prompts.

A text metric of the SFT stage, apart from :mod:`negopt.eval.metrics` (the image metrics of NegOpt's table), so that
SFT does not load the evaluation package; pure Python, with no dependency.
"""

from __future__ import annotations

import re

__all__ = ["rouge_l", "mean_rouge_l"]

_WORD = re.compile(r"[^\s,]+")


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 between two texts over lowercase words (split at whitespace and commas).

    The longest common subsequence of the two word lists, as an F1 of its precision and recall; 1.0 for two empty
    texts. A small, dependency-free stand-in for the ``rouge-score`` package's ROUGE-L on negative prompts.

    Example:
        >>> rouge_l("a b c d", "A, c, d, e")  # LCS [a c d]: precision = recall = 3/4
        0.75
    """
    a = _WORD.findall(prediction.lower())
    b = _WORD.findall(reference.lower())
    if not a or not b:
        return float(a == b)
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def mean_rouge_l(eval_pred, tokenizer) -> dict[str, float]:
    """The Trainer's ``compute_metrics`` for generated token ids: ``{"rouge_l": mean ROUGE-L over the rows}``.

    Args:
        eval_pred: transformers' ``EvalPrediction`` of a ``predict_with_generate`` evaluation (token ids, with -100
            where the Trainer padded).
        tokenizer: Decodes predictions and labels.
    """
    import numpy as np

    preds, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(preds, tuple):
        preds = preds[0]
    pad = tokenizer.pad_token_id
    preds = np.where(preds < 0, pad, preds)
    labels = np.where(labels < 0, pad, labels)
    decoded = tokenizer.batch_decode(preds, skip_special_tokens=True)
    refs = tokenizer.batch_decode(labels, skip_special_tokens=True)
    scores = [rouge_l(p, r) for p, r in zip(decoded, refs)]
    return {"rouge_l": float(sum(scores) / max(len(scores), 1))}
