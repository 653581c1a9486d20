"""Choosing the next symbol: counter-based random numbers and temperature / top-k / top-p.

Written once over ``ops`` (NumPy or TensorFlow, charrnn.nn.step), so the NumPy engine,
the XLA loop, `sample -i` and the exports' checks pick the same symbol for the same
seed and options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.nn.step import NumpyOps

if TYPE_CHECKING:
    import tensorflow as tf

# ``ops`` below is NumpyOps or tf_ops()'s class (charrnn.nn: a type, the same names
# over NumPy or TensorFlow); the arrays are NumPy's or TensorFlow's accordingly.


# Counter-based random numbers (Wellons' lowbias32 hash): the uniform for
# sample b at step t is a pure function of (seed, t, b), identical in NumPy and
# XLA, so output does not depend on how the steps are split into calls.
def hash_u32(ops: type, x: np.ndarray | tf.Tensor) -> np.ndarray | tf.Tensor:
    x = ops.xor(x, ops.shr(x, 16)) * ops.cast(0x7FEB352D, ops.uint32)
    x = ops.xor(x, ops.shr(x, 15)) * ops.cast(0x846CA68B, ops.uint32)
    return ops.xor(x, ops.shr(x, 16))


def uniform(
    ops: type,
    seed_mix: np.uint32 | tf.Tensor,
    t: int | tf.Tensor,
    lanes: np.ndarray | np.uint32 | tf.Tensor,
) -> np.ndarray | tf.Tensor:
    """(batch,) float32 in [0, 1) for global step ``t``; ``lanes`` = uint32 0..batch-1."""
    h = hash_u32(ops, ops.xor(ops.cast(t, ops.uint32), seed_mix))
    x = hash_u32(ops, h + lanes * ops.cast(0x9E3779B9, ops.uint32))
    return ops.cast(ops.shr(x, 8), ops.float32) * (1.0 / (1 << 24))


PAIRWISE_MAX = 1 << 22  # batch x vocab x vocab up to this: find the nucleus without sorting


def choose(
    ops: type, opt: Options, logits: np.ndarray | tf.Tensor, u: np.ndarray | tf.Tensor
) -> np.ndarray | tf.Tensor:
    """Sample one id per row from ``logits`` with the options; ``u`` (batch,) uniforms."""
    if opt.temperature == 0:
        return ops.argmax(logits)
    vocab = logits.shape[1]
    pairwise = opt.top_p < 1 and not opt.top_k and logits.shape[0] * vocab * vocab <= PAIRWISE_MAX
    idx = None
    if (opt.top_k or opt.top_p < 1) and not pairwise:
        # Sorted descending (ties: lower id first); keep the top_k best.
        logits, idx = ops.top_k(logits, min(opt.top_k or vocab, vocab))
    z = logits * (1.0 / opt.temperature)
    p = ops.exp(z - ops.rmax(z))  # unnormalised probabilities
    if pairwise:
        # Nucleus without a sort (slow in XLA on a CPU): the mass ahead of each
        # symbol is that of the symbols more probable than it, or as probable
        # with a lower id -- the same order a stable descending sort gives.
        pi, pj = p[:, :, None], p[:, None, :]
        ahead = (pj > pi) | ((pj == pi) & lower_id(vocab))
        before = ops.sum_last(ops.where(ahead, pj + 0.0 * pi, 0.0 * pi * pj))
        p = ops.where(before < opt.top_p * ops.sum_last(p)[:, None], p, 0.0 * p)
    elif opt.top_p < 1:
        # Nucleus: the smallest prefix whose mass reaches top_p (never empty,
        # since the first symbol's preceding mass is 0).
        cum = ops.cumsum(p)
        before = cum - p
        p = ops.where(before < opt.top_p * cum[:, -1:], p, 0.0 * p)
    cdf = ops.cumsum(p)
    # Inverse CDF: the first j with cdf[j] > u * total (p[j] > 0 there).
    j = ops.rsum(cdf <= u[:, None] * cdf[:, -1:], ops.int32)
    j = ops.minimum(j, logits.shape[1] - 1)
    return j if idx is None else ops.take_rows(idx, j)


def lower_id(n: int) -> np.ndarray:
    """(n, n) bool: [i, j] is j < i."""
    return np.tril(np.ones((n, n), bool), -1)


@dataclass(frozen=True)
class Options:
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    top_p: float = 1.0  # 1: no nucleus cut
    seed: int = 0

    def check(self) -> None:
        if not self.temperature >= 0:
            raise CharrnnError("--temperature must be 0 (greedy) or more, e.g. 0.8")
        if self.top_k < 0:
            raise CharrnnError("--top-k must be 0 (off) or a positive number of symbols")
        if not 0 < self.top_p <= 1:
            raise CharrnnError("--top-p must be in (0, 1], e.g. 0.9; 1 turns it off")


def seed_mix(seed: int) -> np.uint32:
    s = int(seed) & 0xFFFFFFFFFFFFFFFF
    lo = hash_u32(NumpyOps, np.array([s & 0xFFFFFFFF], np.uint32))
    return hash_u32(NumpyOps, np.bitwise_xor(lo, np.uint32(s >> 32)) + np.uint32(0x632BE5AB))[0]
