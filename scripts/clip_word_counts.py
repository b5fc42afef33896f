"""Print the CLIP token count of every word of the built-in generator's vocabulary (``negopt/builtin/vocabulary.py``).

The built-in generator budgets its negatives with ``CLIP_WORD_TOKENS``, a table of these counts, so that it needs no
tokenizer at run time; a test fails when a word of the vocabulary (image or video) is missing from it. Run this after
adding terms to the vocabulary and paste its output over the table:

    python scripts/clip_word_counts.py                       # openai/clip-vit-large-patch14 from the hub
    python scripts/clip_word_counts.py path/to/clip/tokenizer
    python scripts/clip_word_counts.py --bpe path/to/bpe_simple_vocab_16e6.txt.gz    # offline

Every CLIP model of Stable Diffusion 1.x/2.x/SDXL uses the same BPE vocabulary, so one tokenizer serves them all.
With no hub, ``--bpe`` builds that tokenizer from CLIP's own merges file, ``bpe_simple_vocab_16e6.txt.gz``, which
ships inside the ``open_clip_torch`` and ``clip`` packages (``pip download open-clip-torch --no-deps``, then unzip
``open_clip/bpe_simple_vocab_16e6.txt.gz`` from the wheel): the vocabulary is built the way CLIP's
``SimpleTokenizer`` builds it, which gives the 49,408 ids of the hub tokenizer.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import tempfile

from transformers import CLIPTokenizer

from negopt.builtin import _vocabulary_words


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's byte -> printable character table (the one GPT-2 uses)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def tokenizer_from_bpe(bpe_path: str, folder: str) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` written to ``folder`` from CLIP's ``bpe_simple_vocab_16e6.txt.gz``."""
    with gzip.open(bpe_path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]  # as CLIP's SimpleTokenizer
    symbols = list(_bytes_to_unicode().values())
    vocab = [
        *symbols,
        *(s + "</w>" for s in symbols),
        *("".join(m) for m in merges),
        "<|startoftext|>",
        "<|endoftext|>",
    ]
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({token: i for i, token in enumerate(vocab)}, f)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in merges))
    return CLIPTokenizer.from_pretrained(folder, model_max_length=77)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tokenizer", nargs="?", default="openai/clip-vit-large-patch14", help="CLIP tokenizer")
    parser.add_argument("--bpe", help="CLIP's bpe_simple_vocab_16e6.txt.gz, to build the tokenizer offline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = tokenizer_from_bpe(args.bpe, folder) if args.bpe else CLIPTokenizer.from_pretrained(args.tokenizer)
        counts: dict[int, list[str]] = {}
        for word in sorted(_vocabulary_words()):
            if not re.fullmatch(r"[^\W\d_]+", word):
                raise SystemExit(f"not a letter run: {word!r}")
            counts.setdefault(len(tokenizer.tokenize(word)), []).append(word)
    print("CLIP_WORD_TOKENS = word_table(")
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
