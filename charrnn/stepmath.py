"""One sampling step, written out from the layer weights: the maths every engine shares.

The NumPy engine (charrnn.numpy_engine), the XLA loop (charrnn.sample), export's
verification (charrnn.export) and `sample -i` (charrnn.interactive) all run these
functions, over NumPy (``NumpyOps``) or TensorFlow (``tf_ops()``), so every engine
computes the same cell, the same counter-based random numbers and the same
temperature / top-k / top-p choice.
"""

from dataclasses import dataclass

import numpy as np

from charrnn.errors import CharrnnError


# --- weights --------------------------------------------------------------------
# The cell math below needs only arrays.  The first layer's input projection of
# every symbol is precomputed into one table (embedding @ kernel + bias), so a
# step starts with a row lookup instead of an embedding lookup and a matmul.

@dataclass
class Weights:
    cell: str        # "lstm", "gru" or "rnn"
    table: np.ndarray        # (vocab, gates): first layer's input projection
    layers: list     # per layer: dict(W=input kernel (None in layer 0), U=recurrent kernel,
    #                  WU=both stacked (LSTM/RNN layers > 0), b=input bias, br=GRU recurrent bias)
    dense: np.ndarray        # (units, vocab)
    dense_b: np.ndarray      # (vocab,)

    @property
    def vocab_size(self):
        return self.dense.shape[1]

    @property
    def units(self):
        return self.dense.shape[0]

    @property
    def states_per_layer(self):
        return 2 if self.cell == "lstm" else 1

    def macs_per_step(self):
        """Multiply-adds of one step at batch 1 (to size the NumPy phase)."""
        n = self.dense.size
        for layer in self.layers:
            n += layer["U"].size + (0 if layer["W"] is None else layer["W"].size)
        return n


def make_weights(cell, embedding, kernels, recurrent_kernels, biases, dense, dense_b) -> Weights:
    """Arrange raw layer weights (Keras layout) for the engines."""
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
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


def weights_from_model(model) -> Weights:
    """Weights of a built charrnn.model CharRNN."""
    cells = [rnn.cell for rnn in model.rnns]
    return make_weights(model.cell, model.embedding.embeddings.numpy(),
                        [c.kernel.numpy() for c in cells],
                        [c.recurrent_kernel.numpy() for c in cells],
                        [c.bias.numpy() for c in cells],
                        model.dense.kernel.numpy(), model.dense.bias.numpy())


# --- the step, written once for both engines -------------------------------------
# ``ops`` is NumPy or TensorFlow behind the same few names, so the NumPy and XLA
# engines cannot drift apart.

class NumpyOps:
    float32, int32, uint32 = np.float32, np.int32, np.uint32
    take = staticmethod(lambda a, i: a[i])
    tanh = staticmethod(np.tanh)
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


def tf_ops():
    from charrnn.backend import tensorflow

    tf = tensorflow()

    class TFOps:
        float32, int32, uint32 = tf.float32, tf.int32, tf.uint32
        take = staticmethod(tf.gather)
        tanh = staticmethod(tf.tanh)
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
    k = w.states_per_layer
    new, x = [], None
    for i, layer in enumerate(w.layers):
        h = states[i * k]
        if i == 0:
            xz = ops.take(w.table, tok)
        elif w.cell == "gru":
            xz = x @ layer["W"] + layer["b"]
        if w.cell == "gru":
            # Keras 3 GRU, reset_after=True; gates z, r, h.
            hz = h @ layer["U"] + layer["br"]
            xz_, xr, xh = ops.split(xz, 3)
            hz_, hr, hh = ops.split(hz, 3)
            z = ops.sigmoid(xz_ + hz_)
            r = ops.sigmoid(xr + hr)
            cand = ops.tanh(xh + r * hh)
            h = z * h + (1 - z) * cand
            new.append(h)
        else:
            if i == 0:
                a = xz + h @ layer["U"]
            else:  # one matmul for input and recurrent parts
                a = ops.concat([x, h]) @ layer["WU"] + layer["b"]
            if w.cell == "lstm":
                # Keras LSTM gate order: input, forget, cell candidate, output.
                ig, fg, cg, og = ops.split(a, 4)
                c = ops.sigmoid(fg) * states[i * k + 1] + ops.sigmoid(ig) * ops.tanh(cg)
                h = ops.sigmoid(og) * ops.tanh(c)
                new += [h, c]
            else:
                h = ops.tanh(a)
                new.append(h)
        x = h
    return x @ w.dense + w.dense_b, new


# Counter-based random numbers (Wellons' lowbias32 hash): the uniform for
# sample b at step t is a pure function of (seed, t, b), identical in NumPy and
# XLA, so output does not depend on how the steps are split into calls.
def hash_u32(ops, x):
    x = ops.xor(x, ops.shr(x, 16)) * ops.cast(0x7FEB352D, ops.uint32)
    x = ops.xor(x, ops.shr(x, 15)) * ops.cast(0x846CA68B, ops.uint32)
    return ops.xor(x, ops.shr(x, 16))


def uniform(ops, seed_mix, t, lanes):
    """(batch,) float32 in [0, 1) for global step ``t``; ``lanes`` = uint32 0..batch-1."""
    h = hash_u32(ops, ops.xor(ops.cast(t, ops.uint32), seed_mix))
    x = hash_u32(ops, h + lanes * ops.cast(0x9E3779B9, ops.uint32))
    return ops.cast(ops.shr(x, 8), ops.float32) * (1.0 / (1 << 24))


PAIRWISE_MAX = 1 << 22  # batch x vocab x vocab up to this: find the nucleus without sorting


def choose(ops, opt, logits, u):
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


def lower_id(n):
    """(n, n) bool: [i, j] is j < i."""
    return np.tril(np.ones((n, n), bool), -1)


@dataclass(frozen=True)
class Options:
    temperature: float = 1.0
    top_k: int = 0          # 0: no top-k cut
    top_p: float = 1.0      # 1: no nucleus cut
    seed: int = 0

    def check(self):
        if not self.temperature >= 0:
            raise CharrnnError("--temperature must be 0 (greedy) or more, e.g. 0.8")
        if self.top_k < 0:
            raise CharrnnError("--top-k must be 0 (off) or a positive number of symbols")
        if not 0 < self.top_p <= 1:
            raise CharrnnError("--top-p must be in (0, 1], e.g. 0.9; 1 turns it off")


def seed_mix(seed):
    s = int(seed) & 0xFFFFFFFFFFFFFFFF
    lo = hash_u32(NumpyOps, np.array([s & 0xFFFFFFFF], np.uint32))
    return hash_u32(NumpyOps, np.bitwise_xor(lo, np.uint32(s >> 32)) + np.uint32(0x632BE5AB))[0]
