"""Prepared datasets: `charrnn prepare` (charrnn.store.prepare) writes them, everything else
loads them.

A dataset directory holds vocab.json, meta.json and train/val/test.npy (symbol ids
in the smallest unsigned dtype), memory-mapped when read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import numpy as np

from charrnn.atomic import StrPath
from charrnn.errors import CharrnnError
from charrnn.text import Vocab

FORMAT = "charrnn-dataset/1"
SPLITS = ("train", "val", "test")


def is_dataset(path: StrPath) -> bool:
    """Does ``path`` hold a prepared dataset (its meta.json says so)?"""
    try:
        with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
            return json.load(f).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


# --- reading --------------------------------------------------------------------


class Dataset:
    """A prepared dataset: ``path``, ``vocab`` (Vocab), ``meta`` (dict), ``split(name)``."""

    def __init__(self, path: str, vocab: Vocab, meta: dict) -> None:
        self.path, self.vocab, self.meta = path, vocab, meta
        self.summary: dict | None = None  # what prepare said of it, when it was just written

    def __repr__(self) -> str:
        return (
            f"Dataset({self.path!r}, vocabulary {len(self.vocab)}, "
            f"{self.meta['symbols']:,} symbols of text)"
        )

    def split(self, name: str) -> np.memmap:
        """The ids of ``name`` (train, val or test), memory-mapped read-only."""
        if name not in SPLITS:
            raise CharrnnError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return np.load(os.path.join(self.path, f"{name}.npy"), mmap_mode="r", allow_pickle=False)

    def counts(self, name: str, chunk: int = 1 << 22) -> np.ndarray:
        """How often each symbol occurs in ``name``, read from the file a chunk at a time:
        one pass over the memory-mapped split would leave all of it resident (378 MB after
        counting a 190M-symbol train split that way)."""
        ids = self.split(name)
        counts = np.zeros(len(self.vocab), np.int64)
        with open(ids.filename, "rb") as f:
            f.seek(ids.offset)
            for start in range(0, len(ids), chunk):
                block = np.fromfile(f, ids.dtype, min(chunk, len(ids) - start))
                counts += np.bincount(block, minlength=len(counts))[: len(counts)]
        return counts


def load_dataset(path: StrPath) -> Dataset:
    path = os.fspath(path)
    hint = f"run `charrnn prepare INPUT -o {path}` first"
    if not os.path.isdir(path):
        raise CharrnnError(f"{path} is not a prepared dataset (no such directory); {hint}")
    missing = [
        n
        for n in ("meta.json", "vocab.json", *(f"{s}.npy" for s in SPLITS))
        if not os.path.isfile(os.path.join(path, n))
    ]
    if missing:
        raise CharrnnError(
            f"{path} is not a prepared dataset (missing {', '.join(missing)}); {hint}"
        )
    try:
        with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (ValueError, UnicodeDecodeError):
        raise CharrnnError(
            f"{path} is not a prepared dataset (meta.json is not valid JSON); {hint}"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CharrnnError(f"{path} is not a prepared dataset (meta.json is not {FORMAT}); {hint}")
    vocab = Vocab.load(os.path.join(path, "vocab.json"))
    return Dataset(path, vocab, meta)


def iter_dump(dataset: Dataset, split: str = "all", chunk: int = 1 << 20) -> Iterator[str]:
    """Yield the stored text of ``split`` (or all three in order), recomposed, in chunks."""
    names = SPLITS if split == "all" else (split,)
    dec = dataset.vocab.stream_decoder()
    for name in names:
        ids = dataset.split(name)
        for i in range(0, len(ids), chunk):
            text = dec.feed(ids[i : i + chunk])
            if text:
                yield text
    text = dec.flush()
    if text:
        yield text
