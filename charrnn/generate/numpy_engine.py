"""The NumPy engine of charrnn.generate.sampler: the step loop without TensorFlow.

At batch 1 a step costs its number of NumPy calls, not its arithmetic (a 2x128
LSTM step is ~200,000 multiply-adds, a few dozen microseconds of BLAS, but each
NumPy call costs about a microsecond), so the hot path is written for few calls:
a fused LSTM step on preallocated buffers and views, and sampling in log space.
It runs the same algorithm as the shared ``cell_step`` / ``choose`` (tested
against them and against the Keras model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from charrnn.generate.choice import Options, choose, hash_u32, seed_mix, uniform
from charrnn.nn.cells import get
from charrnn.nn.step import NumpyOps, Weights, cell_step

if TYPE_CHECKING:
    from charrnn.generate.constraints import Allowed


class NumpyEngine:
    """The step loop in NumPy, tuned for small batches: at batch 1 a step costs its
    number of NumPy calls, not its arithmetic, so LSTM layers run a fused step on
    preallocated buffers (``charrnn.nn.cells.lstm.NumpyFast``) and plain temperature
    sampling skips the generic ``choose``.  The other cells use the shared ``cell_step``.

    ``first_lane``: the sample index of row 0 (the uniforms of row b are those of sample
    first_lane + b); ``allowed``: a charrnn.generate.constraints.Allowed, whose automaton
    state per row this engine carries from call to call."""

    def __init__(
        self,
        w: Weights,
        opt: Options,
        batch: int,
        first_lane: int = 0,
        allowed: Allowed | None = None,
    ):
        self.w, self.opt, self.allowed = w, opt, allowed
        self.mix = int(seed_mix(opt.seed))
        self.lanes = np.arange(first_lane, first_lane + batch, dtype=np.uint32)
        fast = get(w.cell).numpy_fast  # a cell's batch-1 fast path (the LSTM's), or None
        self.fused = fast(w, batch) if fast else None
        self.plain = opt.temperature > 0 and not opt.top_k and opt.top_p >= 1
        self.cdf = np.empty((batch, w.vocab_size), np.float32)
        self.allowed_state = allowed.start(batch) if allowed is not None else None

    def run(
        self, tok: np.ndarray, states: list[np.ndarray], t0: int, forced: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Run ``forced.shape[1]`` steps; forced[b, i] >= 0 replaces the sampled id."""
        fused = self.fused
        if fused is not None:
            fused.load(states)
        with np.errstate(over="ignore", under="ignore"):
            if (
                fused is not None
                and self.plain
                and self.allowed is None
                and self.lanes.tolist() == [0]
            ):
                out, tok = self._run_one(int(tok[0]), t0, forced[0])
            else:
                out, tok, states = self._run_batch(np.array(tok, np.int32), states, t0, forced)
        if fused is not None:
            states = fused.save()
        return out, tok, states

    def _run_batch(self, tok, states, t0, forced):
        out = np.empty(forced.shape, np.int32)
        ops, w, opt, fused = NumpyOps, self.w, self.opt, self.fused
        for i in range(forced.shape[1]):
            if fused is not None:
                logits = fused.step(tok)
            else:
                logits, states = cell_step(ops, w, tok, states)
            if self.allowed is not None:
                logits = self.allowed.mask(logits, self.allowed_state)
            u = _uniform_np(self.mix, t0 + i, self.lanes)
            choice = self._sample(logits, u) if self.plain else choose(ops, opt, logits, u)
            f = forced[:, i]
            tok = np.where(f >= 0, f, choice).astype(np.int32)
            if self.allowed is not None:
                self.allowed_state = self.allowed.advance(self.allowed_state, tok)
            out[:, i] = tok
        return out, tok, states

    def _run_one(self, tok, t0, forced):
        """Batch 1, LSTM, temperature only: the hot loop with as few NumPy calls per
        step as possible.  Inverse-CDF sampling as in ``choose``, in log space: the
        running log-sum-exp of the logits is one ufunc call (and never overflows, so
        no max is subtracted); the uniforms of all steps are hashed at once."""
        step, cum = self.fused.step, self.cdf[0]
        inv_t, last = 1.0 / self.opt.temperature, cum.shape[0] - 1
        acc = np.logaddexp.accumulate
        t = (np.arange(len(forced), dtype=np.int64) + t0).astype(np.uint32)
        with np.errstate(divide="ignore"):  # log(0) = -inf: the first symbol, as in choose
            log_u = np.log(uniform(NumpyOps, np.uint32(self.mix), t, np.uint32(0))).tolist()
        out = forced.tolist()
        for i, f in enumerate(out):
            z = step(tok)[0]
            if f >= 0:
                tok = f
                continue
            if inv_t != 1.0:  # (x * 1.0 is x)
                z *= inv_t
            acc(z, out=cum)
            tok = out[i] = min(
                int(cum.searchsorted(np.float32(log_u[i] + cum[last]), "right")), last
            )
        return np.array([out], np.int32), np.array([tok], np.int32)

    def _sample(self, logits, u):
        """``choose`` without top-k/top-p, the same arithmetic on buffers."""
        z = np.multiply(logits, 1.0 / self.opt.temperature, out=logits)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        cdf = np.cumsum(z, axis=1, dtype=np.float32, out=self.cdf)
        j = np.sum(cdf <= (u * cdf[:, -1])[:, None], axis=1, dtype=np.int32)
        return np.minimum(j, cdf.shape[1] - 1)


def _uniform_np(mix, t, lanes):
    """``uniform`` for NumPy with the per-step part in Python integers (one step)."""
    h = _hash_int((t & 0xFFFFFFFF) ^ mix)
    if len(lanes) == 1:
        x = _hash_int((h + int(lanes[0]) * 0x9E3779B9) & 0xFFFFFFFF)
        return np.array([(x >> 8) * (1.0 / (1 << 24))], np.float32)
    x = hash_u32(NumpyOps, np.uint32(h) + lanes * np.uint32(0x9E3779B9))
    return (x >> 8).astype(np.float32) * np.float32(1.0 / (1 << 24))


def _hash_int(x):
    x = ((x ^ (x >> 16)) * 0x7FEB352D) & 0xFFFFFFFF
    x = ((x ^ (x >> 15)) * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)
