"""SST-2 sentence-level sentiment: files, tokenizer, vocabulary, padded batches."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .core import data_dir, require_file

PAD, UNK = "<pad>", "<unk>"


def tokenize(sentence: str) -> list[str]:
    """The SST-2 copy is already tokenised: lower-case and split on whitespace."""
    return sentence.lower().split()


class Vocab:
    """Token <-> id map with ``<pad>`` = 0 and ``<unk>`` = 1."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.itos = [PAD, UNK] + [t for t in tokens if t not in (PAD, UNK)]
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def from_itos(cls, itos: Sequence[str]) -> "Vocab":
        """The vocabulary whose id -> token list is ``itos`` (``<pad>``, ``<unk>`` first), as a
        text checkpoint records it in ``meta["vocab"]``."""
        if list(itos[:2]) != [PAD, UNK]:
            raise ValueError(f"a vocabulary list starts with {PAD!r}, {UNK!r}; got "
                             f"{list(itos[:2])}")
        return cls(itos[2:])

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_freq: int = 1) -> "Vocab":
        """Vocabulary of tokens seen at least ``min_freq`` times, most frequent first."""
        counts = Counter(t for s in sentences for t in s)
        return cls([t for t, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                    if c >= min_freq])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> Tensor:
        return torch.tensor([self.stoi.get(t, 1) for t in tokens], dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]


def read_sst2(path: Path) -> list[tuple[int, list[str]]]:
    """Lines ``<label> <tokenised sentence>`` -> (label, tokens)."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        label, _, sentence = line.partition(" ")
        if label not in ("0", "1"):
            raise ValueError(f"{path}:{n}: expected a 0/1 label first, got {label!r}")
        out.append((int(label), tokenize(sentence)))
    return out


class SST2(Dataset):
    """(token ids, label) pairs; :meth:`collate` pads a batch with ``<pad>`` (id 0)."""

    def __init__(self, samples: list[tuple[int, list[str]]], vocab: Vocab,
                 max_len: int | None = None) -> None:
        self.samples, self.vocab, self.max_len = samples, vocab, max_len

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        label, tokens = self.samples[i]
        return self.vocab.encode(tokens[: self.max_len]), label

    @staticmethod
    def collate(batch: list[tuple[Tensor, int]]) -> tuple[Tensor, Tensor, Tensor]:
        """-> (ids (N, T) padded with 0, labels (N,), lengths (N,))."""
        lengths = torch.tensor([len(ids) for ids, _ in batch])
        ids = torch.nn.utils.rnn.pad_sequence([ids for ids, _ in batch], batch_first=True)
        return ids, torch.tensor([y for _, y in batch]), lengths


def load_sst2(data_dir_: str | os.PathLike | None = None, min_freq: int = 1,
              max_len: int | None = None) -> dict[str, SST2]:
    """The train/dev/test splits of ``<data dir>/sst2/stsa.binary.*`` sharing one vocabulary
    built on the training split."""
    folder = data_dir(data_dir_) / "sst2"
    splits = {s: read_sst2(require_file(folder / f"stsa.binary.{s}", f"SST-2 {s} split"))
              for s in ("train", "dev", "test")}
    vocab = Vocab.build((toks for _, toks in splits["train"]), min_freq=min_freq)
    return {s: SST2(v, vocab, max_len) for s, v in splits.items()}


#: token data sets by name: loader(data_dir, min_freq) -> {"train", "dev", "test"} splits
TEXT_DATASETS = {"sst2": load_sst2}
