"""The one scoring definition: what a model's loss on a text is.

Used by `charrnn evaluate` (whole files and --per-line), by training's
validation, and by anything that shows per-character surprise.

1. **Context.**  The model reads the symbols in order with its recurrent state
   carried, so every symbol is predicted from everything before it.  For speed
   the text may be cut into ``pieces`` scored side by side; each piece after the
   first first reads the ``WARMUP`` (256) symbols before it, unscored, so no
   symbol is scored from a cold (zero) state except at the very start of the text.
   A long text is streamed ``CHUNK`` characters at a time (memory flat in its
   length), each part cut into its own pieces; with one piece the state is carried
   from part to part, so ``pieces=1`` is one pass over any length.
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

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.text import ESC, to_cps
from charrnn.text.jamo import extra_symbols_table

if TYPE_CHECKING:
    import keras

    from charrnn.text import Vocab

# make_step's compiled (inputs [b, w], targets [b, w], states) -> (NLL [b, w], new states):
# TensorFlow tensors; the states are the model's flat list (CharRNN.initial_state)
Step = Callable[[np.ndarray, np.ndarray, list], tuple[Any, list]]
# another engine's per-symbol nats of ids, as symbol_nats gives them (score_text's nats_of)
NatsOf = Callable[[np.ndarray], np.ndarray]

WARMUP = 256  # unscored context symbols read before each piece after the first
WINDOW = 256  # symbols per compiled call, at most
MIN_PIECE = 1024  # scored symbols per piece when choosing the number of pieces
MAX_PIECES = 64
CHUNK = 1 << 20  # characters a streamed text is scored in at a time (flat memory)
LOGITS_BYTES = 1 << 26  # one call's float32 logits (pieces x window x vocabulary), at most
LN2 = math.log(2.0)

# (first, last, name), checked in order; what is left of the BMP (U+0800..U+FFFF without
# the syllables and ideographs, surrogates included) is one more class.
_CLASSES = (
    (0xAC00, 0xD7A3, "hangul syllable"),
    (0x4E00, 0x9FFF, "cjk ideograph"),
    (0x0000, 0x007F, "ascii"),
    (0x0080, 0x07FF, "two-byte"),
    (0x10000, 0x10FFFF, "supplementary"),
)
_BMP_REST = 0x10000 - 0x800 - (0xD7A3 - 0xAC00 + 1) - (0x9FFF - 0x4E00 + 1)  # 31,324


def char_class(ch: str) -> tuple[str, int]:
    """``(name, size)`` of the class a character outside the vocabulary is spelled in."""
    cp = ord(ch)
    for lo, hi, name in _CLASSES:
        if lo <= cp <= hi:
            return name, hi - lo + 1
    return "other bmp", _BMP_REST


def escape_probability(vocab: Vocab) -> float:
    """P(escape) for a vocabulary without an unknown symbol: Witten-Bell, V / (N + V)."""
    v = len(vocab)
    n = int(sum(vocab.counts)) or v  # counts come from prepare; an old vocab may lack them
    return v / (n + v)


# --- symbols ----------------------------------------------------------------------


def pieces_for(predictions: int, pieces: int | None = None) -> int:
    """How many pieces to score side by side (default: one per MIN_PIECE, at most MAX_PIECES)."""
    b = pieces or max(1, min(MAX_PIECES, predictions // MIN_PIECE))
    return max(1, min(b, predictions))


def window_for(pieces: int, vocab_size: int) -> int:
    """Symbols per call: WINDOW, fewer when ``pieces`` rows of a big vocabulary's logits
    would pass LOGITS_BYTES (7,639 symbols x 64 pieces x 256 were 500 MB a call)."""
    return max(1, min(WINDOW, LOGITS_BYTES // (4 * pieces * vocab_size)))


def make_step(model: keras.Model, jit: bool | None = None) -> Step:
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
        # -log softmax(logits)[y], without sparse_softmax_cross_entropy_with_logits, whose
        # kernel also writes the gradient (softmax - onehot): for 8,772 symbols that was
        # 3x slower without XLA and 1.8x with it (the same values to 1e-6)
        return tf.reduce_logsumexp(logits, -1) - tf.gather(logits, y, batch_dims=2), states

    return step


class Spans:
    """Which targets of a text are scored, as pieces read side by side: piece i scores
    targets ``first[i] .. end[i] - 1``, reading ``warmup`` unscored symbols before them
    (fewer at the text's start).  :meth:`cover` scores every target (the definition
    above); :meth:`subset` scores a fixed, evenly spaced sample of them (training's
    bounded validation).  Reading is cut into ``calls`` windows of one traced shape, at
    most ``window`` symbols wide; ``exact``: no padding (full windows, then the rest in
    power-of-two windows, so few shapes are traced), so that with one piece the states
    after the last window (``states`` after :meth:`windows`) carry on exactly."""

    def __init__(
        self,
        n: int,
        first: np.ndarray,
        end: np.ndarray,
        warmup: int = WARMUP,
        window: int = WINDOW,
        exact: bool = False,
    ) -> None:
        self.n = n  # symbols in the text
        m = n - 1  # predictions: targets 1..m
        self.first, self.end = first, np.minimum(m + 1, end)
        self.start = np.maximum(0, first - 1 - warmup)  # first input read
        self.lengths = self.end - 1 - self.start  # inputs read per piece
        longest = int(self.lengths.max())
        if exact:
            rest = longest % window
            self.widths = [window] * (longest // window) + [
                1 << k for k in reversed(range(rest.bit_length())) if rest >> k & 1
            ]
        else:
            calls = -(-longest // window)
            self.widths = [-(-longest // calls)] * calls  # little padding
        self.calls, self.width = len(self.widths), self.widths[0]
        self.scored = int(np.maximum(0, self.end - self.first).sum())
        self.states = None

    @classmethod
    def cover(
        cls,
        n: int,
        pieces: int | None = None,
        warmup: int = WARMUP,
        window: int = WINDOW,
        lo: int = 1,
        exact: bool = False,
    ) -> Spans:
        """Every target lo..n-1 exactly once, in ``pieces`` (default :func:`pieces_for`);
        ``lo`` > 1: the symbols before it are context (a streamed text's previous part)."""
        m = n - lo
        b = pieces_for(m, pieces)
        per = -(-m // b)
        first = lo + per * np.arange(b)
        return cls(n, first, first + per, warmup, window, exact)

    @classmethod
    def subset(
        cls, n: int, symbols: int, warmup: int = WARMUP, vocab_size: int | None = None
    ) -> Spans:
        """About ``symbols`` targets: up to MAX_PIECES pieces of equal length spread evenly
        from the text's start to its end (the whole text when it has no more targets).
        Depends only on ``n`` and ``symbols``, so every evaluation reads the same ones;
        ``vocab_size``: narrower windows for a big vocabulary (:func:`window_for`)."""
        m = n - 1
        if symbols >= m:
            b = pieces_for(m)
            return cls.cover(n, b, warmup, window_for(b, vocab_size) if vocab_size else WINDOW)
        b = max(1, min(MAX_PIECES, symbols // MIN_PIECE))
        per = max(1, symbols // b)
        first = 1 + np.round(np.arange(b) * ((m - per) / max(1, b - 1))).astype(np.int64)
        return cls(
            n, first, first + per, warmup, window_for(b, vocab_size) if vocab_size else WINDOW
        )

    @property
    def whole(self) -> bool:
        return self.scored == self.n - 1

    def describe(self) -> str:
        if self.whole:
            return f"the whole split ({self.scored:,} symbols)"
        return (
            f"a fixed subset: {len(self.first)} pieces of {self.scored // len(self.first):,} "
            f"symbols, {self.scored:,} of {self.n - 1:,} ({self.scored / (self.n - 1):.1%})"
        )

    def identity(self, ids: np.ndarray) -> str:
        """Names the pieces and the symbols they score, for checkpoints: evaluations with
        the same identity are comparable."""
        crc = 0
        for a, b in zip(self.first.tolist(), self.end.tolist()):
            crc = zlib.crc32(np.ascontiguousarray(ids[a:b]).tobytes(), crc)
        return f"{len(self.first)}x{self.scored // len(self.first)}/{self.n - 1}:{crc:08x}"

    def windows(
        self,
        model: keras.Model,
        ids: np.ndarray,
        step: Step | None = None,
        states: list | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (target positions, their NLLs) window by window, ``calls`` times.  Only one
        window of ids is copied at a time (``ids`` may be a memory-mapped split); a caller
        may stop early (Ctrl-C) or time a few windows and multiply by ``calls``.
        ``states``: the pieces' states to start from (default zero); the last ones are
        left in ``self.states``."""
        m = self.n - 1
        b = len(self.first)
        step = step or make_step(model)
        states = model.initial_state(b) if states is None else states
        c = 0
        for w in self.widths:
            cols = np.arange(c, c + w)
            c += w
            pos = self.start[:, None] + cols[None, :]  # input position of each column
            x = np.asarray(ids[np.minimum(pos, m).ravel()], np.int32).reshape(b, w)
            y = np.asarray(ids[np.minimum(pos + 1, m).ravel()], np.int32).reshape(b, w)
            nll, states = step(x, y, states)
            self.states = states
            scored = (cols[None, :] < self.lengths[:, None]) & (pos + 1 >= self.first[:, None])
            yield (pos + 1)[scored], np.asarray(nll, np.float64)[scored]


def symbol_nats(
    model: keras.Model,
    ids: np.ndarray,
    pieces: int | None = None,
    step: Step | None = None,
    warmup: int = WARMUP,
) -> np.ndarray:
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


def mean_nats(
    model: keras.Model,
    ids: np.ndarray,
    pieces: int | None = None,
    step: Step | None = None,
    spans: Spans | None = None,
) -> float | None:
    """Mean nats per predicted symbol of ``ids`` (training's validation loss), or None.
    ``spans``: only the targets of these :class:`Spans` (default: all of them)."""
    if len(ids) < 2:
        return None
    spans = spans or Spans.cover(len(ids), pieces)
    return sum(float(nll.sum()) for _, nll in spans.windows(model, ids, step)) / spans.scored


# --- text -------------------------------------------------------------------------


@dataclass
class Scored:
    """A text, or one part of a streamed text (:func:`score_parts`), scored under the
    definition above.  Arrays are per symbol or per character of ``text``."""

    text: str
    ids: np.ndarray  # the symbols the model read
    symbol_nats: np.ndarray  # per symbol; NaN for context
    symbol_char: np.ndarray  # index in ``text`` of the character each symbol spells
    char_nats: np.ndarray  # per character, OOV charge included; NaN for context
    oov: np.ndarray  # per character: outside the vocabulary
    context: int  # leading characters that are context only (usually 1; 0 in
    # the parts of a streamed text after the first character)
    unk_symbols: int  # symbols that stand for an OOV character (unknown symbol)

    @property
    def char_bits(self) -> np.ndarray:
        return self.char_nats / LN2

    def line_bits(self) -> Iterator[tuple[int, int, int, float]]:
        """Per line of the text (its newline included; the last line may lack one, and in
        a part of a streamed text goes on in the next part): ``(start, end, scored
        characters, bits)``, the OOV charge included.  The one per-line figure of
        `evaluate --per-line` and `visualize`."""
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
            chars=len(self.text),
            scored_chars=len(self.text) - self.context,
            in_vocab_chars=int(in_vocab.sum()),
            symbols=len(self.ids),
            predictions=len(nats) - self.unk_symbols,
            nats=float(np.nansum(self.char_nats)),
            in_vocab_nats=float(self.char_nats[in_vocab].sum()),
            oov_chars=int(self.oov.sum()),
        )


def figures(
    chars: int,
    scored_chars: int,
    in_vocab_chars: int,
    symbols: int,
    predictions: int,
    nats: float,
    in_vocab_nats: float,
    oov_chars: int,
) -> dict:
    """Counts and figures.  Summing the counts and nats of several texts and calling this
    again gives their joint figures.

    nats: everything scored, OOV charge included; in_vocab_nats: the in-vocabulary
    characters only (also the nats of the ``predictions`` symbols that spell them).
    """

    def per(x: float, n: int) -> float | None:
        return x / n if n else None

    return {
        "chars": chars,
        "scored_chars": scored_chars,
        "oov_chars": oov_chars,
        "in_vocab_chars": in_vocab_chars,
        "symbols": symbols,
        "predictions": predictions,
        "nats": nats,
        "in_vocab_nats": in_vocab_nats,
        "oov_bits": (nats - in_vocab_nats) / LN2,
        "loss_nats": per(in_vocab_nats, predictions),
        "bits_per_symbol": per(in_vocab_nats / LN2, predictions),
        "bits_per_char": per(nats / LN2, scored_chars),
        "bits_per_char_in_vocab": per(in_vocab_nats / LN2, in_vocab_chars),
    }


def _symbols_of_each_char(vocab: Vocab, cps: np.ndarray) -> np.ndarray:
    if not vocab.jamo:
        return np.ones(len(cps), np.int64)
    out = np.ones(len(cps), np.int64)
    small = cps <= ESC
    out[small] += extra_symbols_table()[cps[small]]
    return out


def _encode(
    vocab: Vocab, text: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What the model reads of ``text``: (code points, OOV mask, the distinct OOV code
    points sorted, ids, the character of each id)."""
    cps = to_cps(text)
    bad_cps = np.sort(to_cps("".join(vocab.unknown_chars(text))))
    oov = np.isin(cps, bad_cps)
    unk = vocab.unk_id is not None
    per_char = _symbols_of_each_char(vocab, cps)
    per_char[oov] = 1 if unk else 0  # the unknown symbol, or left out
    ids = vocab.encode(text, unknown="unk" if unk else "skip")
    if len(ids) != per_char.sum():  # would mean a bug here, never bad input
        raise RuntimeError(f"internal error: {len(ids)} symbols, expected {per_char.sum()}")
    return cps, oov, bad_cps, ids, np.repeat(np.arange(len(cps), dtype=np.int32), per_char)


class TextScorer:
    """Scores one text handed over in parts, in order (:func:`score_parts`): the same
    definition as for the whole text, and a part holds all memory that grows with it.

    Each part's symbols are cut into pieces read side by side like a whole text's, each
    warming up on the WARMUP symbols before it (which may lie in the previous part), so a
    text of one part is scored exactly as :func:`score_text` scores it.  With one piece
    (``pieces=1``) the state is carried from part to part instead: one pass, exactly."""

    def __init__(
        self,
        model: keras.Model | None,
        vocab: Vocab,
        pieces: int | None = None,
        step: Step | None = None,
        nats_of: NatsOf | None = None,
    ) -> None:
        self.model, self.vocab, self.pieces, self.nats_of = model, vocab, pieces, nats_of
        self.step = step if step or nats_of else make_step(model)
        self.tail = np.zeros(0, np.int32)  # the last WARMUP + 1 symbols read
        self.symbols = 0  # read so far
        self.states = None  # one piece: its state after them
        self.started = False  # the first readable character (context) seen

    def part(self, text: str) -> Scored:
        cps, oov, bad_cps, ids, symbol_char = _encode(self.vocab, text)
        nats = self._nats(ids)
        context = len(cps)  # nothing readable yet: all context
        if self.started:
            context = 0
        elif len(ids):
            context = int(symbol_char[0]) + 1
            nats[: int(np.searchsorted(symbol_char, context))] = np.nan
            self.started = True
        unk = self.vocab.unk_id is not None
        char_nats = np.bincount(
            symbol_char, weights=np.nan_to_num(nats), minlength=len(cps)
        ).astype(np.float64)  # int64 if no symbols
        if len(bad_cps):
            spell = np.log([char_class(chr(c))[1] for c in bad_cps])
            where = np.flatnonzero(oov)
            charge = spell[np.searchsorted(bad_cps, cps[where])]
            if not unk:  # the model's own P(unknown symbol) is already in char_nats otherwise
                charge = charge - math.log(escape_probability(self.vocab))
            char_nats[where] += charge
        char_nats[:context] = np.nan
        unk_symbols = int((oov[symbol_char] & ~np.isnan(nats)).sum()) if unk else 0
        return Scored(text, ids, nats, symbol_char, char_nats, oov, context, unk_symbols)

    def _nats(self, ids: np.ndarray) -> np.ndarray:
        """-ln P of each of ``ids`` given everything read before it (NaN at the text's
        first symbol)."""
        if self.nats_of:
            if self.symbols:
                raise RuntimeError("internal error: nats_of scores a text in one part")
            self.symbols = len(ids)
            return self.nats_of(ids)
        out = np.full(len(ids), np.nan)
        one = self.pieces == 1
        keep = 1 if one else WARMUP + 1
        buf = np.concatenate([self.tail, ids])
        lo = len(self.tail) + (self.symbols == 0)  # the first target of this part
        if len(buf) > lo:
            b = pieces_for(len(buf) - lo, self.pieces)
            spans = Spans.cover(
                len(buf), b, WARMUP, window_for(b, self.model.vocab_size), lo, exact=one
            )
            for where, nll in spans.windows(
                self.model, buf, self.step, self.states if one else None
            ):
                out[where - len(self.tail)] = nll
            self.states = spans.states
        self.symbols += len(ids)
        self.tail = buf[-keep:]
        return out


def score_parts(
    model: keras.Model | None,
    vocab: Vocab,
    texts: Iterable[str],
    pieces: int | None = None,
    step: Step | None = None,
    name: str = "the text",
    nats_of: NatsOf | None = None,
    chunk: int | None = CHUNK,
) -> Iterator[Scored]:
    """Score the text that ``texts`` (strings) make together, ``chunk`` characters at a
    time (None: all at once): yields its :class:`Scored` parts in order; their figures
    add up to the text's.  Nothing is yielded until a symbol has been scored, so a text
    that cannot be scored (CharrnnError at the end) yields nothing.  ``nats_of`` (see
    :func:`score_text`) scores the text in one part."""
    scorer = TextScorer(model, vocab, pieces, step, nats_of)
    held, chars, readable = [], 0, 0
    for part in _parts(texts, None if nats_of else chunk):
        scored = scorer.part(part)
        chars += len(scored.text)
        readable += int((~scored.oov).sum())
        if held is None:
            yield scored
        elif (~np.isnan(scored.symbol_nats)).any():
            yield from held
            yield scored
            held = None
        else:
            held.append(scored)
    if held is not None:
        raise CharrnnError(
            f"{name} has {chars} character(s) of which the model can read "
            f"{readable}; scoring needs at least 2 (the first is only context)"
        )


def _parts(texts: Iterable[str], chunk: int | None) -> Iterator[str]:
    """``texts`` re-cut into strings of ``chunk`` characters (the last may be shorter)."""
    if chunk is None:
        yield "".join(texts)
        return
    rest = ""
    for text in texts:
        rest += text
        while len(rest) >= chunk:
            yield rest[:chunk]
            rest = rest[chunk:]
    if rest:
        yield rest


def score_text(
    model: keras.Model | None,
    vocab: Vocab,
    text: str,
    pieces: int | None = None,
    step: Step | None = None,
    name: str = "the text",
    nats_of: NatsOf | None = None,
) -> Scored:
    """Score ``text`` (already through the run's newline policy) under the definition above:
    :func:`score_parts` with the whole text as one part.

    ``nats_of(ids)``: the per-symbol nats (as :func:`symbol_nats` gives them) from another
    engine, e.g. `charrnn visualize`'s NumPy pass; default: ``model`` through TensorFlow."""
    parts = list(score_parts(model, vocab, [text], pieces, step, name, nats_of, chunk=None))
    return parts[0]


def escape_info(vocab: Vocab) -> dict:
    """How characters outside ``vocab`` are charged, for reports."""
    if vocab.unk_id is not None:
        return {"escape": "unknown symbol", "p_escape": None}
    return {"escape": "witten-bell", "p_escape": escape_probability(vocab)}
