"""Print the CLIP token count of every word of the built-in generator's vocabulary (``negopt/builtin/vocabulary.py``).

The built-in generator budgets its negatives with ``_CLIP_WORD_TOKENS``, a table of these counts, so that it needs no
tokenizer at run time. Run this after adding terms to the vocabulary and paste its output over the table:

    python scripts/clip_word_counts.py                       # openai/clip-vit-large-patch14 from the hub
    python scripts/clip_word_counts.py path/to/clip/tokenizer

Every CLIP model of Stable Diffusion 1.x/2.x/SDXL uses the same BPE vocabulary, so one tokenizer serves them all.
"""

from __future__ import annotations

import argparse
import re

from transformers import CLIPTokenizer

from negopt.builtin import _vocabulary_words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tokenizer", nargs="?", default="openai/clip-vit-large-patch14", help="CLIP tokenizer")
    args = parser.parse_args()
    tokenizer = CLIPTokenizer.from_pretrained(args.tokenizer)
    counts: dict[int, list[str]] = {}
    for word in sorted(_vocabulary_words()):
        n = len(tokenizer.tokenize(word))
        if not re.fullmatch(r"[^\W\d_]+", word):
            raise SystemExit(f"not a letter run: {word!r}")
        counts.setdefault(n, []).append(word)
    print("_CLIP_WORD_TOKENS = _word_table(")
    print("    {")
    for n in sorted(counts):
        lines = re.findall(r".{1,96}(?:\s|$)", " ".join(counts[n]) + " ")
        print(f"        {n}: (")
        for line in lines:
            print(f'            "{line.strip()} "')
        print("        ),")
    print("    }")
    print(")")


if __name__ == "__main__":
    main()
