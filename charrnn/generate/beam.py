"""`--beam N`: the most probable continuation of -n characters, by beam search.

Every step extends each of the N live texts by every symbol and keeps the N most
probable (by the model's log probability, with --allow's mask); a text is finished at
-n characters (jamo: whole syllables) or just after --stop.  Finished texts compete on
their log probability per character (length-normalised, so a text that stopped early
is not preferred for being short).  The greedy text (the most likely symbol at every
step) is run alongside and kept among the candidates, so the result is never less
probable than greedy's.  Deterministic: temperature, top-k, top-p and seed do not apply.

Memory and time per step do not grow with the text: the live texts are rows of arrays
(state, log probability, characters so far) and each step appends one (parent, symbol)
pair per kept text, so a search of S steps holds about S x N small integers; the text
is spelled out once, at the end, from the winner's symbols.  :func:`beam_steps` is a
generator that hands back control every ``chunk_seconds`` (a server steps other
requests in between); :func:`beam_search` runs it to the end.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from charrnn.nn.step import NumpyOps, cell_step

if TYPE_CHECKING:
    from charrnn.generate.constraints import Allowed
    from charrnn.generate.textstream import TextStream
    from charrnn.nn.step import Weights


@dataclass
class Beam:
    text: str  # the continuation (not the prime)
    logprob: float  # its log probability under the model, nats
    ids: tuple  # its symbols


def max_steps(length: int) -> int:
    """Symbols a search of ``length`` characters runs at most: a jamo text needs up to 3
    (+ escapes) per character."""
    return 8 * length + 64


def beam_search(
    weights: Weights,
    stream: TextStream,
    prime_ids: Iterable[int],
    start: int,
    length: int,
    width: int,
    allowed: Allowed | None = None,
) -> Beam:
    """The best continuation of ``prime_ids`` (``start`` is the first input when there are
    none) among beam search of ``width`` and the greedy text.  ``stream``: the
    TextStream the continuation goes through (it has read the prime)."""
    gen = beam_steps(weights, stream, prime_ids, start, length, width, allowed)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def beam_steps(
    weights: Weights,
    stream: TextStream,
    prime_ids: Iterable[int],
    start: int,
    length: int,
    width: int,
    allowed: Allowed | None = None,
    chunk_seconds: float = 0.02,
) -> Generator[None, None, Beam]:
    """:func:`beam_search` as a generator: yields None about every ``chunk_seconds``,
    returns the Beam."""
    clock = _Clock(chunk_seconds)
    states = weights.zero_states(1)
    ids = list(prime_ids) or [start]
    with np.errstate(over="ignore", under="ignore"):
        for tok in ids[:-1]:
            _, states = cell_step(NumpyOps, weights, np.array([tok], np.int32), states)
            if clock.turn_over():
                yield
    astate = 0
    if allowed is not None:
        for tok in ids:
            astate = int(allowed.advance(np.array([astate]), np.array([tok]))[0])
    best = []
    for k in sorted({1, width}):
        best.append(
            (
                yield from _search(
                    weights, states, ids[-1], astate, stream, k, allowed, length, clock
                )
            )
        )
    winner = max(best, key=lambda b: b[0])  # the first of equals: greedy's
    _, logprob, symbols = winner
    text = stream.copy()
    text.feed(np.array(symbols, np.int32))
    return Beam(text.take(), logprob, tuple(symbols))


class _Clock:
    def __init__(self, seconds: float) -> None:
        self.seconds, self.since = seconds, time.perf_counter()

    def turn_over(self) -> bool:
        now = time.perf_counter()
        if now - self.since < self.seconds:
            return False
        self.since = now
        return True


class _Trail:
    """The (parent, symbol) of every text kept at every step, to spell out one at the end."""

    def __init__(self, width: int, vocab: int) -> None:
        self.kind = np.min_scalar_type(max(width, vocab))
        self.parents, self.symbols = [], []

    def add(self, parents: list[int], symbols: list[int]) -> None:
        self.parents.append(np.array(parents, self.kind))
        self.symbols.append(np.array(symbols, self.kind))

    def spell(self, step: int, j: int) -> list[int]:
        """The symbols of text ``j`` kept at ``step``, from the first step on."""
        out = []
        for s in range(step, -1, -1):
            out.append(int(self.symbols[s][j]))
            j = int(self.parents[s][j])
        return out[::-1]


def _search(
    weights, root_states, root_tok, root_astate, root_stream, width, allowed, length, clock
):
    """One search of ``width``: (score, logprob, symbols) of its best text.  Live text i
    is row i of ``states``, ``logprob``, ``chars``, ``astate`` and ``toks``, with its
    TextStream in ``streams[i]`` and its place among the texts kept at the last step in
    ``kept[i]``."""
    states, toks = root_states, np.array([root_tok], np.int32)
    logprob, chars = np.zeros(1), np.zeros(1, np.int64)
    astate, streams, kept = np.array([root_astate], np.int32), [root_stream], [-1]
    trail = _Trail(width, weights.vocab_size)
    finished = None  # (score, logprob, step, j) of the best finished text
    for step in range(max_steps(length)):
        if not len(toks):
            break
        with np.errstate(over="ignore", under="ignore"):
            logits, new = cell_step(NumpyOps, weights, toks, states)
        logp = _log_softmax(logits)
        if allowed is not None:
            logp = np.where(allowed.masks[astate], logp, -np.inf)
        total = logp + logprob[:, None]
        parents, symbols, rows, nxt_streams, nxt_chars = [], [], [], [], []
        for flat in _top(total, width):
            b, sym = divmod(int(flat), total.shape[1])
            if not np.isfinite(total[b, sym]):
                break
            stream = streams[b].copy()
            stream.feed(np.array([sym], np.int32))
            n = int(chars[b]) + len(stream.take())
            j = len(parents)
            parents.append(max(kept[b], 0))
            symbols.append(sym)
            if stream.done:
                score = float(total[b, sym]) / max(1, n)
                if finished is None or score > finished[0]:
                    finished = (score, float(total[b, sym]), step, j)
            else:
                rows.append((b, sym, j))
                nxt_streams.append(stream)
                nxt_chars.append(n)
        trail.add(parents, symbols)
        b_rows = np.array([r[0] for r in rows], np.int64)
        s_rows = np.array([r[1] for r in rows], np.int32)
        states = [s[b_rows] for s in new]
        toks, logprob = s_rows, total[b_rows, s_rows] if len(rows) else np.zeros(0)
        astate = (
            allowed.trans[astate[b_rows], s_rows]
            if allowed is not None
            else np.zeros(len(rows), np.int32)
        )
        streams, chars, kept = nxt_streams, np.array(nxt_chars, np.int64), [r[2] for r in rows]
        if finished and len(toks) and finished[0] >= logprob.max() / length:
            break  # log probabilities only fall: no live text can beat it per character
        if clock.turn_over():
            yield
    if finished is not None:
        score, lp, step, j = finished
        return score, lp, trail.spell(step, j)
    if len(toks):  # out of steps: the best live text
        scores = logprob / np.maximum(1, chars)
        i = int(np.argmax(scores))  # the first of equals
        return float(scores[i]), float(logprob[i]), trail.spell(len(trail.parents) - 1, kept[i])
    return 0.0, 0.0, []


def _top(total: np.ndarray, width: int) -> np.ndarray:
    """The flat indices of the ``width`` largest of ``total``, largest first, equals in
    index order: ``np.argsort(-total, axis=None, kind="stable")[:width]`` without sorting
    all of it (width x vocabulary values a step)."""
    flat = -total.ravel()
    if width >= flat.size:
        return np.argsort(flat, kind="stable")
    kth = np.partition(flat, width - 1)[width - 1]
    near = np.flatnonzero(flat <= kth)
    return near[np.argsort(flat[near], kind="stable")][:width]


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
