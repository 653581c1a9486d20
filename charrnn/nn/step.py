"""One step of the network, written out from the layer weights: the cell maths, once.

The NumPy engine and the XLA loop (charrnn.generate), the exports' checks and TFLite
graph (charrnn.export) and `visualize` (charrnn.analysis) all run these functions,
over NumPy (``NumpyOps``) or TensorFlow (``tf_ops()``), so every engine computes the
same cell.  (The one other copy is the JavaScript step of the web page,
charrnn/web/sampler.html, held to this one by the browser tests.)
"""

import functools
from dataclasses import dataclass

import numpy as np

from charrnn.nn.cells import PARALLEL, states_per_layer

# The engines' names for the arrays of ``Weights`` ("table", "dense", "dense_b",
# "final_norm" and "<layer>/<name>"): the XLA child process and the web page receive
# them under these names (Weights.arrays / Weights.from_arrays).
LAYER_ARRAYS = (
    "W",
    "U",
    "WU",
    "b",
    "br",  # the parallel cells' blocks add:
    "norm",
    "ff_norm",
    "F1",
    "f1b",
    "F2",
    "f2b",
)
RMS_EPS = 1e-6  # in the parallel cells' RMS norms


# --- weights --------------------------------------------------------------------
# The cell math below needs only arrays.  The first layer's input projection of
# every symbol is precomputed into one table (embedding @ kernel + bias), so a
# step starts with a row lookup instead of an embedding lookup and a matmul.
# (A parallel cell's first block reads the embedding itself: its residual stream.)


@dataclass
class Weights:
    cell: str  # one of charrnn.nn.cells.CELLS
    table: np.ndarray  # (vocab, gates): first layer's input projection; parallel
    #                          cells: (vocab, units), the embedding
    layers: list  # per layer: dict(W=input kernel (None in layer 0), U=recurrent kernel,
    #                  WU=both stacked (LSTM/RNN layers > 0), b=input bias, br=GRU recurrent bias;
    #                  parallel cells: W, b, norm, ff_norm, F1, f1b, F2, f2b, U=None)
    dense: np.ndarray  # (units, vocab)
    dense_b: np.ndarray  # (vocab,)
    final_norm: np.ndarray = None  # (units,): parallel cells' norm before the logits

    @property
    def vocab_size(self):
        return self.dense.shape[1]

    @property
    def units(self):
        return self.dense.shape[0]

    @property
    def states_per_layer(self):
        return states_per_layer(self.cell)

    def zero_states(self, batch=1):
        return [
            np.zeros((batch, self.units), np.float32)
            for _ in range(len(self.layers) * self.states_per_layer)
        ]

    def arrays(self) -> dict:
        """Every array under its engine name (see LAYER_ARRAYS), None-valued ones left out."""
        out = {"table": self.table, "dense": self.dense, "dense_b": self.dense_b}
        if self.final_norm is not None:
            out["final_norm"] = self.final_norm
        for i, layer in enumerate(self.layers):
            out.update({f"{i}/{k}": layer[k] for k in LAYER_ARRAYS if layer.get(k) is not None})
        return out

    @classmethod
    def from_arrays(cls, cell, arrays: dict):
        """The inverse of :meth:`arrays` (arrays may be NumPy or TensorFlow tensors)."""
        n = 1 + max(int(k.split("/")[0]) for k in arrays if "/" in k)
        layers = [{k: arrays.get(f"{i}/{k}") for k in LAYER_ARRAYS if k != "WU"} for i in range(n)]
        for i, layer in enumerate(layers):
            if f"{i}/WU" in arrays:
                layer["WU"] = arrays[f"{i}/WU"]
        return cls(
            cell,
            arrays["table"],
            layers,
            arrays["dense"],
            arrays["dense_b"],
            arrays.get("final_norm"),
        )

    def macs_per_step(self):
        """Multiply-adds of one step at batch 1 (to size the NumPy phase)."""
        return self.dense.size + sum(
            layer[k].size
            for layer in self.layers
            for k in ("W", "U", "F1", "F2")
            if layer.get(k) is not None
        )


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def make_weights(cell, embedding, kernels, recurrent_kernels, biases, dense, dense_b) -> Weights:
    """Arrange raw layer weights (Keras layout) for the engines."""
    layers = []
    for i, (k, u, b) in enumerate(zip(kernels, recurrent_kernels, biases)):
        b = f32(b)
        # Keras' GRU (reset_after=True) keeps separate input and recurrent biases.
        b_in, b_rec = (b[0], b[1]) if cell == "gru" else (b, None)
        if i == 0:
            table = f32(embedding) @ f32(k) + b_in
            layers.append({"W": None, "U": f32(u), "b": None, "br": b_rec})
        else:
            layer = {"W": f32(k), "U": f32(u), "b": b_in, "br": b_rec}
            if cell != "gru":  # input and recurrent parts in one matmul
                layer["WU"] = np.concatenate([layer["W"], layer["U"]], axis=0)
            layers.append(layer)
    return Weights(cell, f32(table), layers, f32(dense), f32(dense_b))


def make_parallel_weights(cell, embedding, blocks, final_norm, dense, dense_b) -> Weights:
    """Arrange a parallel cell's weights: ``blocks`` a dict per layer with the engine
    names of LAYER_ARRAYS (W, b, norm, ff_norm, F1, f1b, F2, f2b)."""
    layers = [
        {k: (f32(block[k]) if k in block else None) for k in LAYER_ARRAYS if k != "WU"}
        for block in blocks
    ]
    return Weights(cell, f32(embedding), layers, f32(dense), f32(dense_b), f32(final_norm))


# --- the step, written once for both engines -------------------------------------
# ``ops`` is NumPy or TensorFlow behind the same few names, so the NumPy and XLA
# engines cannot drift apart.


class NumpyOps:
    float32, int32, uint32 = np.float32, np.int32, np.uint32
    take = staticmethod(lambda a, i: a[i])
    tanh = staticmethod(np.tanh)
    rsqrt = staticmethod(lambda x: np.float32(1) / np.sqrt(x))
    mean_last = staticmethod(lambda x: np.mean(x, axis=-1, keepdims=True, dtype=np.float32))
    exp = staticmethod(np.exp)
    split = staticmethod(lambda x, n: np.split(x, n, axis=1))
    concat = staticmethod(lambda xs: np.concatenate(xs, axis=1))
    cumsum = staticmethod(lambda x: np.cumsum(x, axis=1, dtype=np.float32))
    sum_last = staticmethod(lambda x: np.sum(x, axis=-1, dtype=np.float32))
    rmax = staticmethod(lambda x: np.max(x, axis=1, keepdims=True))
    rsum = staticmethod(lambda x, dtype=np.float32: np.sum(x, axis=1, dtype=dtype))
    argmax = staticmethod(lambda x: np.argmax(x, axis=1).astype(np.int32))
    where = staticmethod(np.where)
    minimum = staticmethod(np.minimum)
    cast = staticmethod(lambda x, dtype: np.asarray(x).astype(dtype))
    take_rows = staticmethod(lambda a, j: np.take_along_axis(a, j[:, None], axis=1)[:, 0])
    shr = staticmethod(np.right_shift)
    xor = staticmethod(np.bitwise_xor)

    @staticmethod
    def sigmoid(x):
        return np.float32(0.5) * (np.tanh(np.float32(0.5) * x) + np.float32(1))  # no overflow

    @staticmethod
    def top_k(x, k):
        # Stable, so ties keep the lower id first, exactly like tf.math.top_k.
        idx = np.argsort(-x, axis=1, kind="stable")[:, :k].astype(np.int32)
        return np.take_along_axis(x, idx, axis=1), idx


@functools.cache
def tf_ops():
    from charrnn.backend import tensorflow

    tf = tensorflow()

    class TFOps:
        float32, int32, uint32 = tf.float32, tf.int32, tf.uint32
        take = staticmethod(tf.gather)
        tanh = staticmethod(tf.tanh)
        rsqrt = staticmethod(tf.math.rsqrt)
        mean_last = staticmethod(lambda x: tf.reduce_mean(x, axis=-1, keepdims=True))
        sigmoid = staticmethod(tf.sigmoid)
        exp = staticmethod(tf.exp)
        split = staticmethod(lambda x, n: tf.split(x, n, axis=1))
        concat = staticmethod(lambda xs: tf.concat(xs, axis=1))
        cumsum = staticmethod(lambda x: tf.cumsum(x, axis=1))
        sum_last = staticmethod(lambda x: tf.reduce_sum(x, axis=-1))
        rmax = staticmethod(lambda x: tf.reduce_max(x, axis=1, keepdims=True))
        rsum = staticmethod(lambda x, dtype=tf.float32: tf.reduce_sum(tf.cast(x, dtype), axis=1))
        argmax = staticmethod(lambda x: tf.argmax(x, axis=1, output_type=tf.int32))
        where = staticmethod(tf.where)
        minimum = staticmethod(tf.minimum)
        cast = staticmethod(tf.cast)
        take_rows = staticmethod(lambda a, j: tf.gather(a, j, batch_dims=1))
        shr = staticmethod(tf.bitwise.right_shift)
        xor = staticmethod(tf.bitwise.bitwise_xor)
        top_k = staticmethod(lambda x, k: tf.math.top_k(x, k))

    return tf, TFOps


def cell_step(ops, w, tok, states):
    """One step of every layer: symbol ids (batch,) and the flat state list ->
    logits (batch, vocab) and the new state list."""
    if w.cell in PARALLEL:
        return _parallel_step(ops, w, tok, states)
    k = w.states_per_layer
    new, x = [], None
    for i, layer in enumerate(w.layers):
        h = states[i * k]
        c = states[i * k + 1] if k == 2 else None
        if i == 0:
            xz, h_in = ops.take(w.table, tok), h
        elif w.cell != "gru" and "WU" in layer:  # one matmul for input and recurrent parts
            xz, h_in = ops.concat([x, h]) @ layer["WU"] + layer["b"], None
        else:
            xz, h_in = x @ layer["W"] + layer["b"], h
        h, c = layer_update(ops, w.cell, xz, h_in, layer, h, c)
        new += [h, c] if k == 2 else [h]
        x = h
    return x @ w.dense + w.dense_b, new


def layer_update(ops, cell, xz, h_in, layer, h, c=None):
    """One layer's cell from its input projection ``xz`` (batch, G*H), bias included:
    the new ``(h, c)`` (c None but for an LSTM).  ``h_in``: the state the recurrent
    kernel U multiplies, or None when ``xz`` already holds that product (the stacked
    WU matmul of LSTM/RNN layers after the first).  Keras' gate orders: LSTM i, f, c, o;
    GRU z, r, h with reset_after=True."""
    if cell == "gru":
        hz = h_in @ layer["U"] + layer["br"]
        xz_, xr, xh = ops.split(xz, 3)
        hz_, hr, hh = ops.split(hz, 3)
        z = ops.sigmoid(xz_ + hz_)
        r = ops.sigmoid(xr + hr)
        return z * h + (1 - z) * ops.tanh(xh + r * hh), None
    a = xz if h_in is None else xz + h_in @ layer["U"]
    if cell == "lstm":
        ig, fg, cg, og = ops.split(a, 4)
        c = ops.sigmoid(fg) * c + ops.sigmoid(ig) * ops.tanh(cg)
        return ops.sigmoid(og) * ops.tanh(c), c
    return ops.tanh(a), None


# --- the parallel cells (mingru, minlstm) -----------------------------------------
# Written for rows of any leading shape (one step's (batch, H), or a whole window's
# (T*batch, H)): training (charrnn.nn.parallel) runs these same functions over a window.


def _parallel_step(ops, w, tok, states):
    x, new = ops.take(w.table, tok), []
    for layer, h in zip(w.layers, states):
        a, b = min_gates(ops, w.cell, rms_norm(ops, x, layer["norm"]) @ layer["W"] + layer["b"])
        h = a * h + b
        new.append(h)
        x = feed_forward(ops, layer, x + h)
    return rms_norm(ops, x, w.final_norm) @ w.dense + w.dense_b, new


def min_gates(ops, cell, p):
    """A parallel cell's input projection ``p`` (rows, G*H) -> (a, b) of its recurrence
    h_t = a_t * h_{t-1} + b_t.  minGRU: a = 1 - z, b = z * h~; minLSTM: the forget and
    input gates normalised to sum to one, a = f / (f + i), b = i / (f + i) * h~."""
    if cell == "mingru":
        zp, hc = ops.split(p, 2)
        z = ops.sigmoid(zp)
        return 1.0 - z, z * hc
    fp, ip, hc = ops.split(p, 3)
    f, i = ops.sigmoid(fp), ops.sigmoid(ip)
    return f / (f + i), i / (f + i) * hc


def feed_forward(ops, layer, x):
    """The block's second half: x + F2 relu(F1 rmsnorm(x))^2."""
    f = relu2(rms_norm(ops, x, layer["ff_norm"]) @ layer["F1"] + layer["f1b"])
    return x + (f @ layer["F2"] + layer["f2b"])


def rms_norm(ops, x, scale):
    """x / sqrt(mean(x^2) + eps) * scale over the last axis."""
    return x * ops.rsqrt(ops.mean_last(x * x) + RMS_EPS) * scale


def relu2(x):
    """Squared ReLU, the feed-forward's activation (So et al. 2021, "Primer"): measured
    better than GELU here at a quarter of its element-wise cost (benchmarks/RESULTS.md,
    "Parallel cells")."""
    r = 0.5 * (x + abs(x))  # max(x, 0) in NumPy and TensorFlow alike
    return r * r
