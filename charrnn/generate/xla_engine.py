"""The sampling loop as one XLA-compiled ``tf.while_loop`` over up to CHUNK steps.

Calling the Keras model once per character costs a framework call per symbol
(34 chars/s here).  Instead the recurrent cell is written out from the layer
weights (charrnn.nn.step) and the whole loop -- cell step, temperature / top-k /
top-p sampling (charrnn.generate.choice), feeding the choice back in -- runs inside
one compiled loop that returns a chunk of symbols per call and carries the state to
the next call.  The chunk length is a tensor (at most ``CHUNK`` steps), so one
compilation serves every chunk.  It runs in this process (``engine="xla"``) or in
the child process of charrnn.generate.xla_process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from charrnn.generate.choice import Options, choose, seed_mix, uniform
from charrnn.nn.step import Weights, cell_step, tf_ops

if TYPE_CHECKING:
    import tensorflow as tf

CHUNK = 1024  # most steps one XLA call runs (the compiled buffer size)


class XLAEngine:
    """The same loop as one XLA-compiled tf.while_loop over up to CHUNK steps."""

    def __init__(self, w: Weights, opt: Options, batch: int, first_lane: int = 0):
        tf, ops = tf_ops()
        self.tf = tf
        # Weights are arguments, not captured constants: XLA compiles faster.  Layers
        # with the stacked WU need neither W nor U.
        named = w.arrays()
        arrays = {
            k: v
            for k, v in named.items()
            if not (k.endswith(("/W", "/U")) and k[:-1] + "WU" in named)
        }
        self.arrays = {k: tf.constant(v) for k, v in arrays.items()}
        lanes = tf.constant(np.arange(first_lane, first_lane + batch, dtype=np.uint32))
        mix = tf.constant(seed_mix(opt.seed), tf.uint32)

        # autograph=False: the loop is an explicit tf.while_loop and every Python `if`
        # is on a static option, so there is nothing to convert (and tracing is faster).
        @tf.function(jit_compile=True, autograph=False)
        def run(arrays, tok, states, t0, n, forced):
            ww = Weights.from_arrays(w.cell, arrays)
            out = tf.TensorArray(tf.int32, size=CHUNK, element_shape=[batch])

            def body(i, tok, states, out):
                logits, states = cell_step(ops, ww, tok, states)
                u = uniform(ops, mix, t0 + i, lanes)
                choice = choose(ops, opt, logits, u)
                f = forced[:, i]
                tok = tf.where(f >= 0, f, choice)
                return i + 1, tok, states, out.write(i, tok)

            _, tok, states, out = tf.while_loop(
                lambda i, *_: i < n,
                body,
                (tf.constant(0), tok, states, out),
                maximum_iterations=CHUNK,
            )
            return tf.transpose(out.stack()), tok, states

        self.fn = run
        self.batch = batch
        self.n_states = len(w.layers) * w.states_per_layer
        self.units = w.units

    def warm_up(self) -> None:
        """Compile (a call that runs zero steps compiles the whole loop)."""
        states = [np.zeros((self.batch, self.units), np.float32)] * self.n_states
        self.run(np.zeros(self.batch, np.int32), states, 0, np.full((self.batch, 0), -1, np.int32))

    def run(
        self,
        tok: np.ndarray | tf.Tensor,
        states: Sequence[np.ndarray | tf.Tensor],
        t0: int,
        forced: np.ndarray,
    ) -> tuple[np.ndarray, tf.Tensor, list[tf.Tensor]]:
        tf = self.tf
        n = forced.shape[1]
        assert n <= CHUNK
        buf = np.full((self.batch, CHUNK), -1, np.int32)
        buf[:, :n] = forced
        out, tok, states = self.fn(
            self.arrays,
            tf.constant(tok, tf.int32),
            list(states),
            tf.constant(t0, tf.int32),
            tf.constant(n, tf.int32),
            tf.constant(buf),
        )
        return out.numpy()[:, :n], tok, states
