"""Symbols <-> ids: the vocabulary of a dataset or model, and incremental decoding."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from charrnn.atomic import StrPath, write_json_atomic
from charrnn.errors import CharrnnError
from charrnn.text.jamo import JAMO_SCHEME, decompose_cps, from_cps, recompose_cps, to_cps

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

UNK = "\ufffd"  # the unknown symbol; it is also what --errors replace produces


def _show(ch: str) -> str:
    return repr(ch) if ch.isprintable() and ch != UNK else f"U+{ord(ch):04X}"


class Vocab:
    """Symbols (single code points, unique) <-> ids, with the jamo scheme when ``jamo``.

    ``prepare`` sorts a new vocabulary by code point; ``prepare --vocab-from RUN`` keeps
    the run's ids and appends the new corpus' symbols after them, so the order is
    not assumed anywhere: lookups go through a sorted index.
    """

    FORMAT = "charrnn-vocab/1"

    def __init__(
        self,
        symbols: Iterable[str],
        counts: Iterable[int] | None = None,
        unk_id: int | None = None,
        jamo: bool = False,
    ) -> None:
        self.symbols = list(symbols)
        self.counts = list(counts) if counts is not None else [0] * len(self.symbols)
        self.unk_id = unk_id
        self.jamo = bool(jamo)
        if any(len(s) != 1 for s in self.symbols):
            raise CharrnnError(
                "vocabulary symbols must be single characters; the vocab.json "
                "is damaged, run `charrnn prepare` again"
            )
        self._cps = to_cps("".join(self.symbols))
        self._order = np.argsort(self._cps, kind="stable")  # ids by code point
        self._sorted = self._cps[self._order]
        if len(self._cps) and not (np.diff(self._sorted.astype(np.int64)) > 0).all():
            raise CharrnnError(
                "vocabulary symbols are not unique; the vocab.json "
                "is damaged, run `charrnn prepare` again"
            )

    def __len__(self) -> int:
        return len(self.symbols)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} symbols, jamo={self.jamo}, unk_id={self.unk_id})"

    @property
    def code_points(self) -> np.ndarray:
        """The symbols' code points (uint32, in id order): id i is code_points[i]."""
        return self._cps

    # -- json
    def to_json(self) -> dict:
        return {
            "format": self.FORMAT,
            "symbols": self.symbols,
            "counts": [int(c) for c in self.counts],
            "unk": self.unk_id,
            "jamo": JAMO_SCHEME if self.jamo else None,
        }

    @classmethod
    def from_json(cls, d: object, where: str = "vocab.json") -> Vocab:
        if not isinstance(d, dict) or d.get("format") != cls.FORMAT:
            raise CharrnnError(
                f"{where} is not a charrnn vocabulary ({cls.FORMAT}); "
                "run `charrnn prepare` to make one"
            )
        if d.get("jamo") not in (None, JAMO_SCHEME):
            raise CharrnnError(
                f"{where} uses jamo scheme {d.get('jamo')!r}, which this charrnn "
                f"does not know ({JAMO_SCHEME}); upgrade charrnn"
            )
        return cls(d["symbols"], d.get("counts"), d.get("unk"), d.get("jamo") is not None)

    @classmethod
    def load(cls, path: StrPath) -> Vocab:
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise CharrnnError(
                f"{path} does not exist; run `charrnn prepare` to make a dataset with a vocabulary"
            ) from None
        except (ValueError, UnicodeDecodeError) as e:
            raise CharrnnError(
                f"{path} is not valid JSON ({e}); run `charrnn prepare` again"
            ) from None
        return cls.from_json(d, str(path))

    def save(self, path: StrPath) -> None:
        write_json_atomic(path, self.to_json())

    # -- encode
    def lookup(self, cps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ids of symbol code points ``cps`` and a mask of those in the vocabulary."""
        pos = np.searchsorted(self._sorted, cps)
        ok = pos < len(self._sorted)
        ok[ok] = self._sorted[pos[ok]] == cps[ok]
        return self._order[np.where(ok, pos, 0)] if len(self._order) else pos, ok

    def _symbols_of(self, text: str) -> np.ndarray:
        cps = to_cps(text)
        return decompose_cps(cps) if self.jamo else cps

    def unknown_chars(self, text: str) -> list[str]:
        """The distinct characters of ``text`` the vocabulary cannot encode, in order."""
        cps = to_cps(text)
        uniq, first = np.unique(cps, return_index=True)
        bad = []
        for i in np.argsort(first):
            ch = chr(int(uniq[i]))
            if not self.lookup(self._symbols_of(ch))[1].all():
                bad.append(ch)
        return bad

    def _closest(self, ch: str) -> str:
        near = [
            c
            for c in (ch.lower(), ch.upper(), unicodedata.normalize("NFKC", ch))
            if c != ch and len(c) == 1 and not self.unknown_chars(c)
        ]
        if not near and len(self._cps):
            i = int(np.searchsorted(self._sorted, ord(ch)))  # the neighbours by code point
            near = [self.symbols[self._order[j]] for j in (i - 1, i) if 0 <= j < len(self)]
        return ", ".join(_show(c) for c in dict.fromkeys(near))

    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        """``text`` -> int32 ids.  ``unknown``: "error" (CharrnnError), "skip" or "unk"."""
        if unknown not in ("error", "skip", "unk"):
            raise CharrnnError("unknown must be one of error, skip, unk")
        sym = self._symbols_of(text)
        ids, ok = self.lookup(sym)
        if not ok.all():
            bad = self.unknown_chars(text)
            if unknown == "error":
                shown = "; ".join(
                    f"{_show(c)} (closest: {self._closest(c) or 'none'})" for c in bad[:8]
                )
                more = f" and {len(bad) - 8} more" if len(bad) > 8 else ""
                raise CharrnnError(
                    f"{len(bad)} character(s) are not in the vocabulary: {shown}{more}; "
                    "remove or replace them, or skip unknown characters"
                )
            if unknown == "unk" and self.unk_id is None:
                raise CharrnnError(
                    "this vocabulary has no unknown symbol (prepare used "
                    "--min-count 1); remove or skip the unknown characters"
                )
            repl = None if unknown == "skip" else UNK
            text = text.translate({ord(c): repl for c in bad})
            sym = self._symbols_of(text)
            ids, ok = self.lookup(sym)
        return ids.astype(np.int32)

    # -- decode
    def _cps_of(self, ids: ArrayLike) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise CharrnnError(
                f"id {int(ids.max() if ids.max() >= len(self) else ids.min())} is "
                f"outside this vocabulary of {len(self)} symbols; the ids come from "
                "another dataset or model"
            )
        return self._cps[ids.astype(np.int64, copy=False).reshape(-1)]

    def decode(self, ids: ArrayLike) -> str:
        """ids -> text, recomposing Hangul when ``jamo``."""
        cps = self._cps_of(ids)
        if self.jamo:
            cps = recompose_cps(cps, final=True)[0]
        return from_cps(cps)

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder(self)


class StreamDecoder:
    """Incremental :meth:`Vocab.decode`: never emits a half syllable a later jamo could change."""

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        self._pending = np.zeros(0, np.uint32)

    def feed(self, ids: ArrayLike) -> str:
        cps = self.vocab._cps_of(ids)
        if not self.vocab.jamo:
            return from_cps(cps)
        cps = np.concatenate([self._pending, cps]) if len(self._pending) else cps
        out, used = recompose_cps(cps, final=False)
        self._pending = cps[used:].copy()
        return from_cps(out)

    def flush(self) -> str:
        out = recompose_cps(self._pending, final=True)[0]
        self._pending = np.zeros(0, np.uint32)
        return from_cps(out)
