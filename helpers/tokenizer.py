"""Tokenizers: text <-> integer ids. Word level (the course's choice) and character level.

Why words: the text world is made of a few hundred distinct words, so a word tokenizer gives a
vocabulary of about a thousand entries and short sequences: a 128-token window holds a few whole
articles, and each fact is one or two prediction steps. At the same training budget a character
model must first learn to spell every made-up name before it can learn any fact (lesson 07
measures sequence lengths under both). Byte-pair encoding sits between the two; for a closed,
generated world it buys nothing over words.

A tokenizer is saved with the checkpoint as its vocabulary (a JSON list, see ``to_json``), so a
loaded model always decodes with the ids it was trained with.

Example:
    >>> tok = WordTokenizer.fit(["the cat sat .", "the dog ."])
    >>> tok.decode(tok.encode("the dog sat ."))
    'the dog sat .'
"""
from __future__ import annotations

import json
import re
from collections import Counter

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
SPECIALS = [PAD, UNK, EOS]
_WORDS = re.compile(r"<eos>|[a-z0-9]+|[^\sa-z0-9]")


def split_words(text: str) -> list[str]:
    """Lower-case words and single punctuation marks: "Kel vora, fever." -> kel vora , fever ."""
    return _WORDS.findall(text.lower())


class WordTokenizer:
    """One id per word or punctuation mark; ids 0, 1, 2 are <pad>, <unk> and <eos>."""
    kind = "word"

    def __init__(self, vocab: list[str]):
        if vocab[:3] != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}, got {vocab[:3]}")
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.pad_id, self.unk_id, self.eos_id = 0, 1, 2

    @classmethod
    def fit(cls, texts, min_count: int = 1, max_size: int | None = None) -> "WordTokenizer":
        """The vocabulary of ``texts``: words seen at least ``min_count`` times, most common first
        (at most ``max_size`` entries, specials included); rarer words become <unk>."""
        counts = Counter(w for t in texts for w in split_words(t) if w not in SPECIALS)
        words = [w for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count]
        if max_size is not None:
            words = words[:max_size - len(SPECIALS)]
        return cls(SPECIALS + words)

    def __len__(self):
        return len(self.vocab)

    def encode(self, text: str, eos: bool = False) -> list[int]:
        ids = [self.index.get(w, self.unk_id) for w in split_words(text)]
        return ids + [self.eos_id] if eos else ids

    def decode(self, ids) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        return " ".join(self.vocab[i] for i in ids if i != self.pad_id)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "vocab": self.vocab})


class CharTokenizer(WordTokenizer):
    """One id per character (for comparison): same interface as ``WordTokenizer``."""
    kind = "char"

    @classmethod
    def fit(cls, texts, min_count: int = 1, max_size: int | None = None) -> "CharTokenizer":
        counts = Counter(ch for t in texts for ch in t.lower())
        chars = [c for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count]
        return cls(SPECIALS + chars)

    def encode(self, text: str, eos: bool = False) -> list[int]:
        ids = [self.index.get(c, self.unk_id) for c in text.lower()]
        return ids + [self.eos_id] if eos else ids

    def decode(self, ids) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        return "".join(self.vocab[i] for i in ids if i != self.pad_id)


def tokenizer_from_json(text: str) -> WordTokenizer:
    """The tokenizer ``to_json`` wrote (as stored in a checkpoint's metadata)."""
    data = json.loads(text)
    kinds = {"word": WordTokenizer, "char": CharTokenizer}
    if data.get("kind") not in kinds:
        raise ValueError(f"unknown tokenizer kind {data.get('kind')!r}; known: {sorted(kinds)}")
    return kinds[data["kind"]](data["vocab"])
