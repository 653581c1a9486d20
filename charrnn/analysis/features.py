"""Features of a text and the recurrent units that track them.

A feature is one number per symbol describing the text up to and including that
symbol (the state a unit has *after* reading it): inside a quotation, bracket
depth, position in the line, indentation, inside a comment, and for jamo models
the jamo's position in its syllable.  Units are ranked by Pearson's r with each
feature.  A text has few quotations and long stretches of the same depth, so a
large |r| can happen by chance; the null distribution comes from the same
feature circularly shifted against the activations (which keeps its
autocorrelation) and we report the largest |r| any unit reached against any
shift.  A unit above that is unlikely to be a chance hit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from charrnn.text.jamo import L_BASE, L_COUNT, T_BASE, T_COUNT, V_BASE, V_COUNT

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

OPEN, CLOSE = "([{", ")]}"
QUOTES = {'"': '"', "\u201c": "\u201d"}  # opening -> closing; apostrophes are not quotes
TAB = 4  # columns a tab counts for in indentation

LABELS = {
    "in_quotes": "inside quotes",
    "bracket_depth": "bracket/brace depth",
    "line_position": "position in the line",
    "indentation": "indentation",
    "in_comment": "inside a comment",
    "jamo_position": "jamo position in the syllable (1 L, 2 V, 3 T; 0 outside syllables)",
}


def char_features(text: str) -> dict[str, np.ndarray]:
    """Per character (after reading it): name -> float32 array of len(text)."""
    n = len(text)
    quote = np.zeros(n, np.float32)
    depth = np.zeros(n, np.float32)
    col = np.zeros(n, np.float32)
    indent = np.zeros(n, np.float32)
    comment = np.zeros(n, np.float32)
    closing, d, c, ind, at_start = None, 0, 0, 0, True
    block_from, line_comment = -1, False  # block_from: where an open /* began
    prev = ""
    for i, ch in enumerate(text):
        nxt = text[i + 1 : i + 2]
        if ch == "\n":
            c, ind, at_start, line_comment = 0, 0, True, False
            if prev == "\n":
                closing = None  # a blank line ends a quotation someone forgot to close
        else:
            c += 1
            if at_start and ch in " \t":
                ind += TAB if ch == "\t" else 1
            elif at_start:
                at_start = False
                # '#' first on a line: shell/Python comments (and C directives)
                line_comment = line_comment or (ch == "#" and block_from < 0)
        if block_from < 0 and not line_comment and ch == "/" and nxt in ("*", "/") and nxt:
            block_from, line_comment = (i, False) if nxt == "*" else (-1, True)
        if closing is not None and ch == closing:
            closing = None
        elif closing is None and ch in QUOTES and block_from < 0 and not line_comment:
            closing = QUOTES[ch]
        if ch in OPEN:
            d += 1
        elif ch in CLOSE:
            d = max(0, d - 1)
        quote[i], depth[i], col[i], indent[i] = closing is not None, d, c, ind
        comment[i] = block_from >= 0 or line_comment
        if block_from >= 0 and ch == "/" and prev == "*" and i >= block_from + 3:
            block_from = -1  # the closing */ is still part of the comment
        prev = ch
    return {
        "in_quotes": quote,
        "bracket_depth": depth,
        "line_position": col,
        "indentation": indent,
        "in_comment": comment,
    }


def jamo_position(symbol_cps: ArrayLike) -> np.ndarray:
    """Per symbol: 1 leading consonant, 2 vowel, 3 trailing consonant, 0 anything else."""
    c = np.asarray(symbol_cps, np.int64)
    pos = np.zeros(len(c), np.float32)
    pos[(c >= L_BASE) & (c < L_BASE + L_COUNT)] = 1
    pos[(c >= V_BASE) & (c < V_BASE + V_COUNT)] = 2
    pos[(c > T_BASE) & (c < T_BASE + T_COUNT)] = 3
    # an escaped literal jamo (U+E000 then the jamo) is not part of a syllable
    esc = np.flatnonzero(c[:-1] == 0xE000) + 1
    pos[esc] = 0
    return pos


def _standardise(x: ArrayLike, axis: int = 0) -> np.ndarray:
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=axis, keepdims=True)
    norm = np.sqrt((x * x).sum(axis=axis, keepdims=True))
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-12)


def rank_units(
    activations: ArrayLike,
    features: dict[str, ArrayLike],
    top: int = 10,
    shifts: int = 64,
    seed: int = 0,
) -> dict:
    """Rank units (columns of ``activations``, (steps, units)) by |r| with each feature.

    Returns {feature: {"top": [(unit, r), ...], "null_max": largest |r| of any unit
    against any circular shift, "null_p95": the 95th percentile of the per-shift
    maxima, "shifts": number of shifts}}.  Features that are constant over the text
    are left out (r is undefined).
    """
    a = _standardise(activations)  # (T, U), unit columns with norm 1
    t = a.shape[0]
    rng = np.random.default_rng(seed)
    lo, hi = max(1, t // 10), max(2, t - t // 10)  # shifts far from 0 (mod t)
    offsets = rng.integers(lo, hi, size=shifts) if t > 20 else np.arange(1, max(2, t))
    out = {}
    for name, f in features.items():
        f = np.asarray(f, np.float64)
        if len(f) != t or np.ptp(f) == 0:
            continue
        fs = _standardise(f)
        r = fs @ a  # (U,)
        shifted = np.stack([np.roll(fs, int(k)) for k in offsets])  # (S, T)
        null = np.abs(shifted @ a).max(axis=1)  # per shift: the best chance hit
        order = np.argsort(-np.abs(r), kind="stable")[:top]
        out[name] = {
            "top": [(int(u), float(r[u])) for u in order],
            "null_max": float(null.max()),
            "null_p95": float(np.percentile(null, 95)),
            "shifts": int(len(offsets)),
        }
    return out
