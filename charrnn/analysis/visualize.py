"""`charrnn visualize`: what the model expected at every character, and what its cells track.

The text goes through the run's own pipeline (prepare's decoding and newline
policy, the vocabulary, jamo) and the model reads it in one continuous pass from
the zero state, in NumPy (charrnn.nn.step's cell maths, no TensorFlow), recording the
logits and every layer's h (and c for an LSTM) after each symbol.  The scoring
is charrnn.analysis.scoring's, the one definition `charrnn evaluate` uses (its per-symbol
nats come from this pass): the first character is context only, and characters
outside the vocabulary are charged -log2 P(escape) + log2 |class| bits.  All
maths happens here; the page only renders the data.

The data is one JSON object (format charrnn-visualize/1).  Activations are
stored 8-bit per unit (linear between the unit's min and max over the text,
unit-major, base64) -- every unit when that fits ACTIVATION_BUDGET bytes, else
the units ranked at the top for some feature plus those asked for.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

import numpy as np

from charrnn.analysis import features as feat
from charrnn.analysis import scoring
from charrnn.errors import CharrnnError
from charrnn.nn.cells import get
from charrnn.text import UNK, recompose
from charrnn.web import fill, script_json, template

if TYPE_CHECKING:
    from charrnn.nn.step import Weights
    from charrnn.store.loaded import LoadedModel

FORMAT = "charrnn-visualize/1"
TOP = 5  # predictions shown per character
ACTIVATION_BUDGET = 3_000_000  # bytes of 8-bit activations stored before choosing units
TOP_UNITS = 10  # units listed per feature
WORST_LINES = 10
OOV_RULE = (
    "characters outside the vocabulary are charged -log2 P(escape) + log2 |class| bits "
    '(charrnn.analysis.scoring; docs/sampling.md, "How a text is scored")'
)


# --- running the model -----------------------------------------------------------


def run_states(weights: Weights, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Feed ``ids`` from the zero state: (logits (n, vocab), states (n, units_total)),
    row i after reading ids[i]; states are each layer's h then c (LSTM), layer by layer.
    The cell's own ``sweep`` (charrnn.nn.cells): its step's maths, a layer at a time."""
    with np.errstate(over="ignore", under="ignore"):
        logits, acts = get(weights.cell).sweep(weights, ids)
    return logits, np.concatenate(acts, axis=1)


def unit_groups(weights: Weights) -> list[dict]:
    kinds = get(weights.cell).states
    groups, first = [], 0
    for layer in range(len(weights.layers)):
        for kind in kinds:
            groups.append({"layer": layer + 1, "kind": kind, "size": weights.units, "first": first})
            first += weights.units
    return groups


def unit_name(groups: list[dict], u: int) -> str:
    g = next(g for g in groups if g["first"] <= u < g["first"] + g["size"])
    return f"layer {g['layer']} {g['kind']} {u - g['first']}"


# --- text -> symbols ----------------------------------------------------------------


def _shown(sym):
    return {"\n": "\u21b5", " ": "\u2423", "\t": "\u21e5", UNK: "\ufffd"}.get(sym, sym)


def _composed_candidates(vocab, ids, top_ids, first_of_char):
    """Jamo models: each candidate composed with the syllable pending before it
    (the jamo of the same character already read), as the reader would see it."""
    syms = vocab.symbols
    out = []
    for i in range(len(ids)):
        pending = "".join(syms[j] for j in ids[first_of_char[i] : i])
        out.append(
            [
                _shown(recompose(pending + syms[c])) if pending else _shown(recompose(syms[c]))
                for c in top_ids[i]
            ]
        )
    return out


# --- the analysis -----------------------------------------------------------------


def predictions(logits: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, dict]:
    """Per symbol: nats (NaN for symbol 0, which nothing predicts), as scoring.symbol_nats
    gives them, and the page's table of its probability, rank and the TOP most likely
    symbols at its position."""
    logp = logits[:-1].astype(np.float64)
    logp -= logp.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    actual = logp[np.arange(len(ids) - 1), ids[1:]]
    nats = np.concatenate([[np.nan], -actual])
    rank = np.concatenate([[0], 1 + (logp > actual[:, None]).sum(axis=1)])
    order = np.argsort(-logp, axis=1, kind="stable")[:, :TOP]
    top_p = np.exp(np.take_along_axis(logp, order, axis=1))
    pad = np.zeros((1, order.shape[1]))
    return nats, {
        "ids": ids.tolist(),
        "bits": [None if math.isnan(x) else round(float(x) / math.log(2), 6) for x in nats],
        "p": [None if math.isnan(x) else round(float(math.exp(-x)), 6) for x in nats],
        "rank": rank.tolist(),
        "top_ids": np.concatenate([pad.astype(np.int64), order]).tolist(),
        "top_p": np.round(np.concatenate([pad, top_p]), 6).tolist(),
    }


def analyse(
    loaded: LoadedModel,
    text: str,
    *,
    max_chars: int = 5000,
    units: Collection[int] = (),
    all_units: bool = False,
    run_name: str = "",
    on_info: Callable[[str], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> dict:
    """Everything the page shows, as one JSON-ready dict (see the module doc)."""
    vocab, w = loaded.vocab, loaded.weights
    full = len(text)
    if max_chars and full > max_chars:
        if on_info:
            on_info(f"Using the first {max_chars:,} of {full:,} characters (--max-chars)")
        text = text[:max_chars]
    groups = unit_groups(w)
    total_units = groups[-1]["first"] + groups[-1]["size"]
    for u in units:
        if not 0 <= u < total_units:
            raise CharrnnError(
                f"unit {u} does not exist; this model has units 0-{total_units - 1} "
                f"({len(w.layers)} layers x {len(groups) // len(w.layers)} x {w.units})"
            )

    run = {}

    def nats_of(ids: np.ndarray) -> np.ndarray:  # the model pass, inside the one scoring definition
        run["logits"], run["acts"] = run_states(w, ids)
        nats, run["symbols"] = predictions(run["logits"], ids)
        return nats

    sc = scoring.score_text(None, vocab, text, nats_of=nats_of)
    ids, acts, symbols = sc.ids, run["acts"], run["symbols"]
    context = np.isnan(sc.symbol_nats)
    for key in ("bits", "p"):  # context symbols are not scored
        symbols[key] = [None if c else x for x, c in zip(symbols[key], context)]
    per_char = np.bincount(sc.symbol_char, minlength=len(text))
    oov = "".join(dict.fromkeys(ch for ch, o in zip(text, sc.oov) if o))
    if oov and on_warning:
        on_warning(
            f"{len(oov)} character(s) outside the vocabulary ({oov[:20]!r}) are charged "
            'as the scoring definition says (docs/sampling.md, "How a text is scored")'
        )

    # features per symbol: a character's features hold for each of its symbols
    sym_f = {k: np.repeat(v, per_char) for k, v in feat.char_features(text).items()}
    if vocab.jamo:
        sym_f["jamo_position"] = feat.jamo_position(vocab.code_points[ids])
    ranking = feat.rank_units(acts, sym_f, top=TOP_UNITS)
    if vocab.jamo:
        first_of_char = np.repeat(np.cumsum(per_char) - per_char, per_char)
        symbols["cand"] = _composed_candidates(vocab, ids, symbols["top_ids"], first_of_char)
    summary = sc.figures()
    summary["lines"], summary["worst_lines"] = _lines(sc)
    return {
        "format": FORMAT,
        "run": run_name,
        "checkpoint": loaded.short_checkpoint,
        "cell": w.cell,
        "layers": len(w.layers),
        "units": w.units,
        "jamo": vocab.jamo,
        "text": text,
        "text_chars": full,
        "oov": oov,
        "oov_rule": OOV_RULE,
        "vocab": [_shown(s) for s in vocab.symbols],
        "char_symbols": per_char.tolist(),
        "char_bits": [
            None if math.isnan(b) else round(float(b) / math.log(2), 6) for b in sc.char_nats
        ],
        "summary": summary,
        "symbols": symbols,
        "unit_groups": groups,
        "features": {
            name: dict(
                r,
                label=feat.LABELS[name],
                top=[
                    {"unit": u, "name": unit_name(groups, u), "r": round(c, 4)} for u, c in r["top"]
                ],
            )
            for name, r in ranking.items()
        },
        "activations": _quantise(acts, _stored_units(acts, ranking, units, all_units)),
    }


def _lines(scored):
    """Per line (its newline included): start, end, scored chars, bits/char; and the
    most surprising lines (at least 3 scored characters)."""
    lines = [
        {"start": start, "end": end, "chars": n, "bits_per_char": round(bits / n, 4) if n else None}
        for start, end, n, bits in scored.line_bits()
        if end > start
    ]
    ok = [i for i, ln in enumerate(lines) if ln["chars"] >= 3]
    worst = sorted(ok, key=lambda i: -lines[i]["bits_per_char"])[:WORST_LINES]
    return lines, worst


def _stored_units(acts, ranking, asked, all_units):
    n, total = acts.shape
    if all_units or n * total <= ACTIVATION_BUDGET:
        return list(range(total))
    keep = {u for r in ranking.values() for u, _ in r["top"]} | set(asked)
    return sorted(keep)


def _quantise(acts, stored):
    a = acts[:, stored].T  # (units, steps): one unit's values are one slice on the page
    lo = a.min(axis=1) if a.size else np.zeros(0)
    hi = a.max(axis=1) if a.size else np.zeros(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    q = np.rint((a - lo[:, None]) / span[:, None] * 255).astype(np.uint8)
    return {
        "encoding": "uint8, value = lo + q / 255 * (hi - lo), unit-major, base64",
        "steps": int(acts.shape[0]),
        "stored": [int(u) for u in stored],
        "lo": [float(x) for x in lo],
        "hi": [float(x) for x in hi],
        "data": base64.b64encode(q.tobytes()).decode("ascii"),
    }


# --- output ------------------------------------------------------------------------


def page_title(run_name: str) -> str:
    return f"{run_name} \u00b7 charrnn visualize"


def visualize_page(data: dict, title: str = "") -> str:
    return fill(
        template("visualize.html"),
        TITLE=html.escape(title or "charrnn visualize"),
        DATA=script_json(data),
    )
