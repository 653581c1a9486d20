"""`--beam N`: the most probable continuation of -n characters, by beam search.

Every step extends each of the N live texts by every symbol and keeps the N most
probable (by the model's log probability, with --allow's mask); a text is finished at
-n characters (jamo: whole syllables) or just after --stop.  Finished texts compete on
their log probability per character (length-normalised, so a text that stopped early
is not preferred for being short).  The greedy text (the most likely symbol at every
step) is run alongside and kept among the candidates, so the result is never less
probable than greedy's.  Deterministic: temperature, top-k, top-p and seed do not apply.
"""

from dataclasses import dataclass

import numpy as np

from charrnn.generate.textstream import TextStream
from charrnn.nn.step import NumpyOps, cell_step


@dataclass
class Beam:
    text: str           # the continuation (not the prime)
    logprob: float      # its log probability under the model, nats
    ids: tuple          # its symbols


@dataclass
class _Hyp:
    logprob: float
    states: list        # one (1, units) row per state tensor
    tok: int            # the last symbol (the next input)
    stream: TextStream
    allowed_state: int
    text: str = ""
    ids: tuple = ()

    def score(self):
        return self.logprob / max(1, len(self.text))


def beam_search(weights, stream, prime_ids, start, length, width, allowed=None):
    """The best continuation of ``prime_ids`` (``start`` is the first input when there are
    none) among beam search of ``width`` and the greedy text.  ``stream``: the
    TextStream the continuation goes through (it has read the prime)."""
    states = weights.zero_states(1)
    ids = list(prime_ids) or [start]
    astate = 0
    with np.errstate(over="ignore", under="ignore"):
        for tok in ids[:-1]:
            _, states = cell_step(NumpyOps, weights, np.array([tok], np.int32), states)
    if allowed is not None:
        for tok in ids:
            astate = int(allowed.advance(np.array([astate]), np.array([tok]))[0])
    root = _Hyp(0.0, states, ids[-1], stream, astate)
    best = [_search(weights, root, k, allowed, length) for k in sorted({1, width})]
    winner = max(best, key=lambda h: h.score())
    return Beam(winner.text, winner.logprob, winner.ids)


def _search(weights, root, width, allowed, length):
    live, finished = [root], []
    limit = 8 * length + 64  # symbols: a jamo text needs up to 3 (+ escapes) per character
    for _ in range(limit):
        if not live:
            break
        k = weights.states_per_layer * len(weights.layers)
        batch = [np.concatenate([h.states[j] for h in live]) for j in range(k)]
        with np.errstate(over="ignore", under="ignore"):
            logits, new = cell_step(NumpyOps, weights, np.array([h.tok for h in live], np.int32),
                                    batch)
        logp = _log_softmax(logits)
        if allowed is not None:
            logp = np.where(allowed.masks[[h.allowed_state for h in live]], logp, -np.inf)
        total = logp + np.array([h.logprob for h in live])[:, None]
        order = np.argsort(-total, axis=None, kind="stable")[:width]
        nxt = []
        for flat in order:
            b, sym = divmod(int(flat), total.shape[1])
            if not np.isfinite(total[b, sym]):
                break
            h = live[b]
            stream = h.stream.copy()
            stream.feed(np.array([sym], np.int32))
            child = _Hyp(float(total[b, sym]), [s[b:b + 1] for s in new], sym, stream,
                         int(allowed.trans[h.allowed_state, sym]) if allowed is not None else 0,
                         h.text + stream.take(), h.ids + (sym,))
            (finished if stream.done else nxt).append(child)
        live = nxt
        if finished and live and max(f.score() for f in finished) >= max(
                h.logprob for h in live) / length:
            break  # log probabilities only fall: no live text can beat it per character
    return max(finished or live or [root], key=lambda h: h.score())


def _log_softmax(logits):
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
