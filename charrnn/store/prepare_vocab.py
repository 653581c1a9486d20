"""`charrnn prepare`'s vocabulary: which symbols a dataset gets (charrnn.store.prepare writes it).

- ``--jamo auto``: whether Hangul syllables are split into jamo (``auto_jamo``);
- ``--min-count``: symbols rarer than it become the unknown symbol U+FFFD (``make_vocab``);
- ``--vocab-from RUN``: a run's vocabulary, ids and all, extended (``extend_vocab``);
- the rare-symbol report (``rare_symbols``): how much of the vocabulary symbols seen fewer
  than ``RARE_BELOW`` times are, and what ``--min-count`` would give.
"""

from __future__ import annotations

import os

import numpy as np

from charrnn.atomic import StrPath, read_json
from charrnn.errors import CharrnnError
from charrnn.store import loader, rundir
from charrnn.store.dataset import is_dataset
from charrnn.text import N_SYLLABLES, S_BASE, UNK, Vocab
from charrnn.text.jamo import jamo_counts

# --jamo auto (docs/data.md, "Korean: the jamo scheme"): jamo when Hangul syllables are at least 10%
# of the characters, except where syllables measured better: mostly Hangul text (jamo spend 2-3
# predictions on each syllable) of few distinct syllables, and enough of it.
AUTO_JAMO_SHARE = 0.10
AUTO_SYLLABLES_SHARE = 0.45  # syllables won at 50% and 65% Hangul, jamo at 38%
AUTO_SYLLABLES_MAX = 1000  # distinct syllables: at most 835 where syllables were measured
AUTO_SYLLABLES_MIN = 20_000  # syllables in the text: at least 23,000 where they were measured


def _dtype_for(n: int) -> np.dtype:
    for dt in (np.uint8, np.uint16, np.uint32):
        if n <= np.iinfo(dt).max + 1:
            return np.dtype(dt)


def auto_jamo(counts: np.ndarray) -> tuple[bool, str | None]:
    """``--jamo auto``'s choice from the code point counts: ``(on, why)``, ``why`` None
    for text without Hangul."""
    syl = counts[S_BASE : S_BASE + N_SYLLABLES]
    n, distinct = int(syl.sum()), int(np.count_nonzero(syl))
    if not n:
        return False, None
    share = n / int(counts.sum())
    seen = f"Hangul syllables {share:.0%} of the characters, {n:,} of them, {distinct:,} distinct"
    if share < AUTO_JAMO_SHARE:
        return False, f"{seen}: too little Hangul to split"
    if share < AUTO_SYLLABLES_SHARE:
        return True, f"{seen}: jamo, which train better on text this mixed"
    if distinct > AUTO_SYLLABLES_MAX:
        return True, f"{seen}: jamo, for so many distinct syllables"
    if n < AUTO_SYLLABLES_MIN:
        return True, f"{seen}: jamo, for so little text"
    return False, f"{seen}: whole syllables, which train better on such text"


def make_vocab(counts: np.ndarray, applied: bool, min_count: int) -> tuple[Vocab, np.ndarray, int]:
    """``(vocab, lookup table code point -> id, symbols replaced by unknown)``, split into jamo
    if ``applied``."""
    sym_counts = jamo_counts(counts) if applied else counts
    present = np.flatnonzero(sym_counts)
    rare = present[(sym_counts[present] < min_count) & (present != ord(UNK))]
    keep = present[sym_counts[present] >= min_count]
    unk_replaced = int(sym_counts[rare].sum())
    unk_id = None
    vocab_counts = sym_counts[keep]
    if len(rare):
        if not len(keep[keep != ord(UNK)]):
            raise CharrnnError(
                f"--min-count {min_count} leaves no symbol in the vocabulary "
                "(every symbol is rarer); lower --min-count"
            )
        keep = np.union1d(keep, [ord(UNK)])
        vocab_counts = sym_counts[keep].copy()
        unk_id = int(np.searchsorted(keep, ord(UNK)))
        vocab_counts[unk_id] += unk_replaced
    vocab = Vocab([chr(c) for c in keep], vocab_counts.tolist(), unk_id, applied)
    lut = np.zeros(int(max(present[-1], keep[-1])) + 1, _dtype_for(len(vocab)))
    lut[rare] = unk_id or 0
    lut[keep] = np.arange(len(keep))
    return vocab, lut, unk_replaced


def extend_vocab(counts: np.ndarray, base: Vocab, min_count: int) -> tuple[Vocab, np.ndarray, int]:
    """``make_vocab`` for ``prepare --vocab-from``: ``base``'s symbols keep their ids
    (whether or not this corpus has them) and the corpus' other symbols follow, sorted
    by code point; new symbols rarer than ``min_count`` become the unknown symbol
    (the base's own, else U+FFFD added after them).  Counts are this corpus'."""
    sym_counts = jamo_counts(counts) if base.jamo else counts
    present = np.flatnonzero(sym_counts)
    new = present[~base.lookup(present.astype(np.uint32))[1]]
    rare = new[(sym_counts[new] < min_count) & (new != ord(UNK))]
    added = new[sym_counts[new] >= min_count]
    symbols = base.symbols + [chr(c) for c in added]
    unk_id = base.unk_id
    if len(rare) and unk_id is None:
        if UNK not in symbols:
            symbols.append(UNK)
        unk_id = symbols.index(UNK)
    unk_replaced = int(sym_counts[rare].sum())
    vocab = Vocab(symbols, None, unk_id, base.jamo)
    vocab.counts = sym_counts[vocab.code_points].tolist()
    if unk_id is not None:
        vocab.counts[unk_id] += unk_replaced
    lut = np.zeros(int(present[-1]) + 1, _dtype_for(len(vocab)))
    lut[present] = vocab.lookup(present.astype(np.uint32))[0]
    lut[rare] = unk_id or 0
    return vocab, lut, unk_replaced


def base_vocab(run: StrPath, jamo: str, newlines: str) -> Vocab:
    """The vocabulary of run (or dataset, or weights file) ``run`` for ``prepare
    --vocab-from``, after checking that the jamo and newline settings agree with it."""
    if loader.is_weights_file(run) or rundir.is_run(run):
        source = loader.load(run, read_weights=False)
        base, old_nl = source.vocab, source.newlines
    elif is_dataset(run):
        base = Vocab.load(os.path.join(run, "vocab.json"))
        old_nl = read_json(os.path.join(run, "meta.json")).get("newlines", "lf")
    else:
        raise CharrnnError(
            f"--vocab-from {run}: no vocab.json there; pass the directory of a "
            "`charrnn train` run (or of a prepared dataset), or a .safetensors "
            "file from `charrnn export`"
        )
    if old_nl != newlines:
        fix = "pass --keep-newlines" if old_nl == "keep" else "leave out --keep-newlines"
        raise CharrnnError(
            f"--vocab-from {run}: its data was prepared with newlines {old_nl}, "
            f"this one with {newlines}; {fix} so the newline symbols mean the same"
        )
    if jamo != "auto" and (jamo == "on") != base.jamo:
        raise CharrnnError(
            f"--vocab-from {run}: its vocabulary has jamo "
            f"{'on' if base.jamo else 'off'}, but --jamo {jamo} was given; leave "
            "out --jamo (the run's setting is used)"
        )
    return base


# The rare-symbol report.  Each symbol costs the output layer as much as a common one (a row
# of the logits and of the softmax, for every symbol trained), so a long tail of rare ones
# makes training slow for no gain: on 197 MB of Python, 8,530 of 8,779 symbols are seen
# fewer than 100 times, 0.024% of the text, and without them a 1x64 LSTM trained 17x
# faster, a 2x256 4.8x (benchmarks/RESULTS.md, "Rare symbols").  prepare keeps every symbol
# by default (a
# dataset is the text, exactly) and says so when folding them is cheap.
RARE_BELOW = 100  # "rare": seen fewer times than this
RARE_NOTE_FROM_VOCAB = 256  # below this the output layer costs little beside the LSTM's
MIN_COUNT_OPTIONS = (10, 100)
MAX_UNK_SHARE = 0.001  # an option is offered if it leaves at most 0.1% of the text unknown


def rare_symbols(vocab: Vocab, min_count: int) -> dict:
    """The rare-symbol report of a new ``vocab`` (counts in it) for meta.json: how many
    symbols are seen fewer than ``RARE_BELOW`` times and their share of the text; for each
    ``--min-count`` of ``MIN_COUNT_OPTIONS`` above ``min_count``, the vocabulary size and
    share of the text U+FFFD would have; ``note``: whether rare symbols are at least half
    of a vocabulary of ``RARE_NOTE_FROM_VOCAB`` or more and some option is offered."""
    counts = np.asarray(vocab.counts, np.int64)
    unk = vocab.code_points == ord(UNK)  # folding keeps U+FFFD, whatever its count
    total = max(1, int(counts.sum()))
    rare = (counts < RARE_BELOW) & ~unk
    options = []
    for n in MIN_COUNT_OPTIONS:
        if n <= min_count:
            continue
        fold = (counts < n) & ~unk
        size = int((~fold & ~unk).sum()) + int(bool(fold.any() or unk.any()))
        share = float(counts[fold | unk].sum()) / total
        options.append(
            {
                "min_count": n,
                "vocab_size": size,
                "unk_share": share,
                "offered": share <= MAX_UNK_SHARE and size < len(vocab),
            }
        )
    dominant = len(vocab) >= RARE_NOTE_FROM_VOCAB and 2 * int(rare.sum()) >= len(vocab)
    return {
        "below": RARE_BELOW,
        "symbols": int(rare.sum()),
        "share": float(counts[rare].sum()) / total,
        "options": options,
        "note": bool(dominant and any(o["offered"] for o in options)),
    }
