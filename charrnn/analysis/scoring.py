"""The one scoring definition: what a model's loss on a text is.

Used by `charrnn evaluate` (whole files and --per-line), by training's
validation, and by anything that shows per-character surprise.

1. **Context.**  The model reads the symbols in order with its recurrent state
   carried, so every symbol is predicted from everything before it.  For speed
   the text may be cut into ``pieces`` scored side by side; each piece after the
   first first reads the ``WARMUP`` (256) symbols before it, unscored, so no
   symbol is scored from a cold (zero) state except at the very start of the text.
2. **The start.**  The first symbol is context only (there is nothing to predict
   it from).  For a text, the first *character* is context only: with jamo, all
   the symbols of the first syllable.
3. **Characters outside the vocabulary** (OOV) cost what a code would have to
   spend on them: ``-log2 P(escape) + log2 |class|``.
   - P(escape): when the vocabulary has an unknown symbol (``prepare
     --min-count`` > 1) the character is read as that symbol and P(escape) is
     the model's own probability of it at that position.  Without one the model
     cannot say "something new comes here", so P(escape) is fixed from the
     training corpus by the Witten-Bell estimate that PPM compressors use for
     their escape (method C): ``V / (N + V)`` for V distinct symbols in N symbols,
     i.e. how often reading the corpus met a symbol it had not met before.  The
     character is left out of what the model reads.
   - |class|: the model knows nothing about the character beyond its kind, so it
     is spelled out uniformly within its class (below): 11,172 for a Hangul
     syllable, 20,992 for a CJK ideograph, 128 for ASCII, 1,920 for the other
     two-byte UTF-8 characters (Latin accents, Greek, Cyrillic, ...), the rest of
     the Basic Multilingual Plane, and the 1,048,576 supplementary code points.
   The same rule holds for jamo and syllable models: a syllable a jamo model cannot
   spell (a jamo it never saw) is charged like a syllable missing from a syllable
   model's vocabulary.  (The escape probability is not taken away from the
   in-vocabulary symbols; that would cost -log2(1 - P(escape)) bits a symbol,
   about 0.0001 for a corpus of a million characters.)
   Figures are reported with the charge (``bits_per_char``) and without it, over
   the in-vocabulary characters only (``bits_per_char_in_vocab``).  Dropping OOV
   characters from the score, or scoring them as one cheap unknown symbol,
   would flatter a model.

Bits per character are per original character (a Hangul syllable is one), so a
jamo model compares fairly with a syllable model.
"""

import math
import zlib
from dataclasses import dataclass

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.text import ESC, to_cps
from charrnn.text.jamo import extra_symbols_table

WARMUP = 256         # unscored context symbols read before each piece after the first
WINDOW = 256         # symbols per compiled call, at most
MIN_PIECE = 1024     # scored symbols per piece when choosing the number of pieces
MAX_PIECES = 64
LN2 = math.log(2.0)

# (first, last, name), checked in order; what is left of the BMP (U+0800..U+FFFF without
# the syllables and ideographs, surrogates included) is one more class.
_CLASSES = ((0xAC00, 0xD7A3, "hangul syllable"), (0x4E00, 0x9FFF, "cjk ideograph"),
            (0x0000, 0x007F, "ascii"), (0x0080, 0x07FF, "two-byte"),
            (0x10000, 0x10FFFF, "supplementary"))
_BMP_REST = 0x10000 - 0x800 - (0xD7A3 - 0xAC00 + 1) - (0x9FFF - 0x4E00 + 1)  # 31,324


def char_class(ch: str):
    """``(name, size)`` of the class a character outside the vocabulary is spelled in."""
    cp = ord(ch)
    for lo, hi, name in _CLASSES:
        if lo <= cp <= hi:
            return name, hi - lo + 1
    return "other bmp", _BMP_REST


def escape_probability(vocab):
    """P(escape) for a vocabulary without an unknown symbol: Witten-Bell, V / (N + V)."""
    v = len(vocab)
    n = int(sum(vocab.counts)) or v  # counts come from prepare; an old vocab may lack them
    return v / (n + v)


# --- symbols ----------------------------------------------------------------------

def pieces_for(predictions: int, pieces=None) -> int:
    """How many pieces to score side by side (default: one per MIN_PIECE, at most MAX_PIECES)."""
    b = pieces or max(1, min(MAX_PIECES, predictions // MIN_PIECE))
    return max(1, min(b, predictions))


def make_step(model, jit=None):
    """A compiled (x, y, states) -> (NLL in nats of every y [b, w], new states)."""
    from charrnn.backend import tensorflow

    tf = tensorflow()
    if jit is None:
        # XLA on a CPU (cuDNN is not XLA-able): since the fused CPU layers it is about
        # even (0.9x at 2x128, 1.05x at 3x512 for `charrnn evaluate`, session 2).
        jit = not tf.config.list_physical_devices("GPU")

    @tf.function(jit_compile=jit)
    def step(x, y, states):
        logits, states = model(x, states=states, return_state=True, training=False)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits), states

    return step


class Spans:
    """Which targets of a text are scored, as pieces read side by side: piece i scores
    targets ``first[i] .. end[i] - 1``, reading ``warmup`` unscored symbols before them
    (fewer at the text's start).  :meth:`cover` scores every target (the definition
    above); :meth:`subset` scores a fixed, evenly spaced sample of them (training's
    bounded validation).  Reading is cut into ``calls`` windows of one traced shape."""

    def __init__(self, n, first, end, warmup=WARMUP):
        self.n = n                                          # symbols in the text
        m = n - 1                                           # predictions: targets 1..m
        self.first, self.end = first, np.minimum(m + 1, end)
        self.start = np.maximum(0, first - 1 - warmup)      # first input read
        self.lengths = self.end - 1 - self.start            # inputs read per piece
        self.calls = -(-int(self.lengths.max()) // WINDOW)
        self.width = -(-int(self.lengths.max()) // self.calls)  # little padding
        self.scored = int(np.maximum(0, self.end - self.first).sum())

    @classmethod
    def cover(cls, n, pieces=None, warmup=WARMUP):
        """Every target 1..n-1 exactly once, in ``pieces`` (default :func:`pieces_for`)."""
        m = n - 1
        b = pieces_for(m, pieces)
        per = -(-m // b)
        first = 1 + per * np.arange(b)
        return cls(n, first, first + per, warmup)

    @classmethod
    def subset(cls, n, symbols, warmup=WARMUP):
        """About ``symbols`` targets: up to MAX_PIECES pieces of equal length spread evenly
        from the text's start to its end (the whole text when it has no more targets).
        Depends only on ``n`` and ``symbols``, so every evaluation reads the same ones."""
        m = n - 1
        if symbols >= m:
            return cls.cover(n, warmup=warmup)
        b = max(1, min(MAX_PIECES, symbols // MIN_PIECE))
        per = max(1, symbols // b)
        first = 1 + np.round(np.arange(b) * ((m - per) / max(1, b - 1))).astype(np.int64)
        return cls(n, first, first + per, warmup)

    @property
    def whole(self) -> bool:
        return self.scored == self.n - 1

    def describe(self) -> str:
        if self.whole:
            return f"the whole split ({self.scored:,} symbols)"
        return (f"a fixed subset: {len(self.first)} pieces of {self.scored // len(self.first):,} "
                f"symbols, {self.scored:,} of {self.n - 1:,} ({self.scored / (self.n - 1):.1%})")

    def identity(self, ids) -> str:
        """Names the pieces and the symbols they score, for checkpoints: evaluations with
        the same identity are comparable."""
        crc = 0
        for a, b in zip(self.first.tolist(), self.end.tolist()):
            crc = zlib.crc32(np.ascontiguousarray(ids[a:b]).tobytes(), crc)
        return f"{len(self.first)}x{self.scored // len(self.first)}/{self.n - 1}:{crc:08x}"

    def windows(self, model, ids, step=None):
        """Yield (target positions, their NLLs) window by window, ``calls`` times.  Only one
        window of ids is copied at a time (``ids`` may be a memory-mapped split); a caller
        may stop early (Ctrl-C) or time a few windows and multiply by ``calls``."""
        m = self.n - 1
        b, w = len(self.first), self.width
        step = step or make_step(model)
        states = model.initial_state(b)
        for c in range(0, self.calls * w, w):
            cols = np.arange(c, c + w)
            pos = self.start[:, None] + cols[None, :]      # input position of each column
            x = np.asarray(ids[np.minimum(pos, m).ravel()], np.int32).reshape(b, w)
            y = np.asarray(ids[np.minimum(pos + 1, m).ravel()], np.int32).reshape(b, w)
            nll, states = step(x, y, states)
            scored = (cols[None, :] < self.lengths[:, None]) & (pos + 1 >= self.first[:, None])
            yield (pos + 1)[scored], np.asarray(nll, np.float64)[scored]


def symbol_nats(model, ids, pieces=None, step=None, warmup=WARMUP) -> np.ndarray:
    """-ln P(ids[t] | ids[:t]) for every t (float64, same length as ids; NaN at t = 0).

    ``pieces``: score the text as this many pieces side by side, each after the
    first reading ``warmup`` unscored symbols before it (default :func:`pieces_for`).
    ``step``: from :func:`make_step`, to reuse its compilation across calls.
    """
    out = np.full(len(ids), np.nan)
    if len(ids) >= 2:
        for where, nll in Spans.cover(len(ids), pieces, warmup).windows(model, ids, step):
            out[where] = nll
    return out


def mean_nats(model, ids, pieces=None, step=None, spans=None):
    """Mean nats per predicted symbol of ``ids`` (training's validation loss), or None.
    ``spans``: only the targets of these :class:`Spans` (default: all of them)."""
    if len(ids) < 2:
        return None
    spans = spans or Spans.cover(len(ids), pieces)
    return sum(float(nll.sum()) for _, nll in spans.windows(model, ids, step)) / spans.scored


# --- text -------------------------------------------------------------------------

@dataclass
class Scored:
    """A text scored under the definition above.  Arrays are per symbol or per character."""
    text: str
    ids: np.ndarray            # the symbols the model read
    symbol_nats: np.ndarray    # per symbol; NaN for context
    symbol_char: np.ndarray    # index in ``text`` of the character each symbol spells
    char_nats: np.ndarray      # per character, OOV charge included; NaN for context
    oov: np.ndarray            # per character: outside the vocabulary
    context: int               # leading characters that are context only (usually 1)
    unk_symbols: int           # symbols that stand for an OOV character (unknown symbol)

    @property
    def char_bits(self):
        return self.char_nats / LN2

    def line_bits(self):
        """Per line of the text (its newline included; the last line may lack one):
        ``(start, end, scored characters, bits)``, the OOV charge included.  The one
        per-line figure of `evaluate --per-line` and `visualize`."""
        bits = self.char_bits
        ends = np.flatnonzero(to_cps(self.text) == 10) + 1
        if not len(ends) or ends[-1] != len(self.text):
            ends = np.append(ends, len(self.text))
        start = 0
        for end in ends.tolist():
            seg = bits[start:end]
            yield start, end, int((~np.isnan(seg)).sum()), float(np.nansum(seg))
            start = end

    def figures(self) -> dict:
        """Totals for this text: see :func:`figures`."""
        nats = self.symbol_nats[~np.isnan(self.symbol_nats)]
        in_vocab = ~np.isnan(self.char_nats) & ~self.oov
        return figures(
            chars=len(self.text), scored_chars=len(self.text) - self.context,
            in_vocab_chars=int(in_vocab.sum()), symbols=len(self.ids),
            predictions=len(nats) - self.unk_symbols,
            nats=float(np.nansum(self.char_nats)),
            in_vocab_nats=float(self.char_nats[in_vocab].sum()),
            oov_chars=int(self.oov.sum()))


def figures(chars, scored_chars, in_vocab_chars, symbols, predictions, nats, in_vocab_nats,
            oov_chars) -> dict:
    """Counts and figures.  Summing the counts and nats of several texts and calling this
    again gives their joint figures.

    nats: everything scored, OOV charge included; in_vocab_nats: the in-vocabulary
    characters only (also the nats of the ``predictions`` symbols that spell them).
    """
    def per(x, n):
        return x / n if n else None

    return {"chars": chars, "scored_chars": scored_chars, "oov_chars": oov_chars,
            "in_vocab_chars": in_vocab_chars, "symbols": symbols, "predictions": predictions,
            "nats": nats, "in_vocab_nats": in_vocab_nats, "oov_bits": (nats - in_vocab_nats) / LN2,
            "loss_nats": per(in_vocab_nats, predictions),
            "bits_per_symbol": per(in_vocab_nats / LN2, predictions),
            "bits_per_char": per(nats / LN2, scored_chars),
            "bits_per_char_in_vocab": per(in_vocab_nats / LN2, in_vocab_chars)}


def _symbols_of_each_char(vocab, cps):
    if not vocab.jamo:
        return np.ones(len(cps), np.int64)
    out = np.ones(len(cps), np.int64)
    small = cps <= ESC
    out[small] += extra_symbols_table()[cps[small]]
    return out


def score_text(model, vocab, text: str, pieces=None, step=None, name="the text",
               nats_of=None) -> Scored:
    """Score ``text`` (already through the run's newline policy) under the definition above.

    ``nats_of(ids)``: the per-symbol nats (as :func:`symbol_nats` gives them) from another
    engine, e.g. `charrnn visualize`'s NumPy pass; default: ``model`` through TensorFlow."""
    cps = to_cps(text)
    bad = vocab.unknown_chars(text)
    bad_cps = np.sort(to_cps("".join(bad)))
    oov = np.isin(cps, bad_cps)
    unk = vocab.unk_id is not None
    per_char = _symbols_of_each_char(vocab, cps)
    per_char[oov] = 1 if unk else 0            # the unknown symbol, or left out
    ids = vocab.encode(text, unknown="unk" if unk else "skip")
    if len(ids) != per_char.sum():  # would mean a bug here, never bad input
        raise RuntimeError(f"internal error: {len(ids)} symbols, expected {per_char.sum()}")
    symbol_char = np.repeat(np.arange(len(cps)), per_char)
    # The first character the model reads is context only, with everything before it.
    context = int(symbol_char[0]) + 1 if len(ids) else len(cps)
    skip = int(per_char[:context].sum())
    if skip >= len(ids):
        raise CharrnnError(f"{name} has {len(text)} character(s) of which the model can read "
                           f"{int((~oov).sum())}; scoring needs at least 2 (the first is "
                           "only context)")
    nats = nats_of(ids) if nats_of else symbol_nats(model, ids, pieces, step)
    nats[:skip] = np.nan

    char_nats = np.bincount(symbol_char, weights=np.nan_to_num(nats), minlength=len(cps))
    if len(bad_cps):
        spell = np.log([char_class(chr(c))[1] for c in bad_cps])
        where = np.flatnonzero(oov)
        charge = spell[np.searchsorted(bad_cps, cps[where])]
        if not unk:  # the model's own P(unknown symbol) is already in char_nats otherwise
            charge = charge - math.log(escape_probability(vocab))
        char_nats[where] += charge
    char_nats[:context] = np.nan
    unk_symbols = int((oov[symbol_char] & ~np.isnan(nats)).sum()) if unk else 0
    return Scored(text, ids, nats, symbol_char, char_nats, oov, context, unk_symbols)


def escape_info(vocab) -> dict:
    """How characters outside ``vocab`` are charged, for reports."""
    if vocab.unk_id is not None:
        return {"escape": "unknown symbol", "p_escape": None}
    return {"escape": "witten-bell", "p_escape": escape_probability(vocab)}
