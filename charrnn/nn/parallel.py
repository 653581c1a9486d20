"""The parallel cells (mingru, minlstm) for training: a window at a time.

Their gates depend on the input only (charrnn.nn.cells), so a block's every matmul is
one large matmul over the whole window (T*B rows), and all that stays sequential is
the element-wise recurrence h_t = a_t * h_{t-1} + b_t (``linear_scan``).  The maths of
a block is charrnn.nn.step's (``min_gates``, ``rms_norm``, ``relu2``), the one the
samplers and exports step through; here it runs over all the window's rows at once,
with dropout on the two residual branches.

Under a mixed precision policy only the matmul operands are rounded to the compute
dtype; norms, gates, the recurrence and the weights stay float32 (as in
charrnn.nn.fused).
"""

from charrnn.backend import tensorflow
from charrnn.nn.cells import block_shapes
from charrnn.nn.step import min_gates, relu2, rms_norm, tf_ops


def linear_scan(a, b, h0):
    """h_t = a_t * h_{t-1} + b_t over time-major a, b [T, B, H] from h0 [B, H]:
    all the h_t [T, B, H].

    A plain loop of three element-wise ops a step, with a hand-written backward pass
    that is the same loop run backwards (the gradient obeys g_t = a_{t+1} g_{t+1} +
    dh_t).  A parallel (Hillis-Steele) scan of log2(T) rounds over the whole window
    was measured slower on a 2-core CPU (benchmarks/bench_scan.py; benchmarks/RESULTS.md,
    "Parallel cells")."""
    tf = tensorflow()

    @tf.custom_gradient
    def scan(a, b, h0):
        hs = _loop(tf, a, b, h0)

        def grad(dhs):
            # g_t, walked from the end: a reversed loop with a' = a shifted by one
            a_next = tf.concat([a[1:], tf.ones_like(a[:1])], 0)
            g = tf.reverse(
                _loop(tf, tf.reverse(a_next, [0]), tf.reverse(dhs, [0]), tf.zeros_like(h0)), [0]
            )
            h_prev = tf.concat([h0[None], hs[:-1]], 0)
            return g * h_prev, g, a[0] * g[0]

        return hs, grad

    return scan(a, b, h0)


def _loop(tf, a, b, h0):
    def step(t, h, hs):
        h = a[t] * h + b[t]
        return t + 1, h, hs.write(t, h)

    T = tf.shape(a)[0]
    _, _, hs = tf.while_loop(
        lambda t, *_: t < T, step, (tf.constant(0), h0, tf.TensorArray(a.dtype, size=T))
    )
    return hs.stack()


_CLASS = None


def min_block_class():
    """The Keras layer of one block (defined lazily: importing this module does not
    import TensorFlow)."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    tf = tensorflow()
    import keras

    _, ops = tf_ops()

    class MinBlock(keras.layers.Layer):
        """x += minRNN(rmsnorm(x)); x += FF(rmsnorm(x)), over a time-major window."""

        def __init__(self, cell, units, dropout=0.0, **kwargs):
            # autocast off: the casts are explicit (matmul operands only)
            super().__init__(autocast=False, **kwargs)
            self.cell, self.units = cell, int(units)
            # float32 in and out under a mixed policy (the residual stream stays float32)
            self.drop = keras.layers.Dropout(dropout, dtype="float32") if dropout > 0 else None

        def build(self, input_shape):
            def init(name):  # norm scales 1, biases 0, matrices Glorot
                return (
                    "ones"
                    if name.endswith("norm")
                    else "zeros"
                    if name.endswith("bias")
                    else "glorot_uniform"
                )

            # tensor name (charrnn.nn.tensors) -> variable
            self.named = {
                k: self.add_weight(name=k.replace(".", "_"), shape=s, initializer=init(k))
                for k, s in block_shapes(self.cell, self.units).items()
            }
            # one attribute each as well: tf.train.Checkpoint does not look inside the dict
            # (which Keras wraps), and would save none of them (keras-team/keras#18398)
            for k, var in self.named.items():
                setattr(self, "var_" + k.replace(".", "_"), var)

        def call(self, x, h0, training=False):
            """x [T, B, H] float32, h0 [B, H] -> (x out [T, B, H], h_T)."""
            shape = tf.shape(x)
            cdt = tf.as_dtype(self.compute_dtype)
            v = {k: tf.cast(var, tf.float32) for k, var in self.named.items()}

            def mm(rows, k):
                return tf.cast(
                    tf.matmul(tf.cast(rows, cdt), tf.cast(self.named[k], cdt)), tf.float32
                )

            def drop(y):
                return y if self.drop is None else self.drop(y, training=training)

            rows = tf.reshape(x, [-1, self.units])
            a, b = min_gates(
                ops, self.cell, mm(rms_norm(ops, rows, v["norm"]), "kernel") + v["bias"]
            )
            hs = linear_scan(tf.reshape(a, shape), tf.reshape(b, shape), h0)
            rows = rows + drop(tf.reshape(hs, [-1, self.units]))
            f = relu2(mm(rms_norm(ops, rows, v["ff_norm"]), "ff_in.kernel") + v["ff_in.bias"])
            rows = rows + drop(mm(f, "ff_out.kernel") + v["ff_out.bias"])
            return tf.reshape(rows, shape), hs[-1]

    _CLASS = MinBlock
    return MinBlock
