"""A faster LSTM layer for CPUs: the same weights and maths as keras.layers.LSTM.

On a CPU Keras runs a generic while-loop in which every time step multiplies the
input AND the state by their kernels, and autodiff then differentiates that loop
step by step (a small weight-gradient matmul per step).  Here instead:

- the input projection ``x @ kernel + bias`` of all time steps is one large matmul,
  outside the loop;
- the loop only does ``h @ recurrent_kernel`` and the gate maths, keeping the gate
  activations for the backward pass;
- a hand-written backward pass (tf.custom_gradient) walks back through time doing
  only ``dz @ recurrent_kernel^T`` per step; the recurrent kernel's gradient is one
  large matmul over all steps at the end.

Gate order (i, f, c, o), sigmoid/tanh and the variables are Keras' own, so
checkpoints do not care which path trained them and GPUs keep the cuDNN path.
With ``compute_dtype`` bfloat16 only the matmul operands are rounded to
bfloat16 (CPUs with AVX512_BF16/AMX run those about twice as fast); the cell
state, gates and weights stay float32.  Measured in benchmarks/bench_train.py.
"""

from charrnn.backend import tensorflow


def lstm_sequence(x, kernel, recurrent_kernel, bias, h0, c0, compute_dtype="float32"):
    """Run one LSTM layer over time-major ``x`` [T, B, I] from state (h0, c0).

    Returns (outputs [T, B, H], h_T, c_T), all float32.
    """
    tf = tensorflow()
    cdt = tf.as_dtype(compute_dtype)
    xw = tf.einsum("tbi,ig->tbg", tf.cast(x, cdt), tf.cast(kernel, cdt))
    xw = tf.cast(xw, tf.float32) + tf.cast(bias, tf.float32)
    return _recurrence(xw, tf.cast(recurrent_kernel, cdt),
                       tf.cast(h0, tf.float32), tf.cast(c0, tf.float32))


def _recurrence(xw, U, h0, c0):
    tf = tensorflow()
    return tf.custom_gradient(_recurrence_fwd)(xw, U, h0, c0)


def _recurrence_fwd(xw, U, h0, c0):
    tf = tensorflow()
    T = tf.shape(xw)[0]
    cdt = U.dtype

    def array():
        return tf.TensorArray(tf.float32, size=T)

    def step(t, h, c, hs, cs, acts):
        z = xw[t] + tf.cast(tf.matmul(tf.cast(h, cdt), U), tf.float32)
        zi, zf, zg, zo = tf.split(z, 4, axis=1)
        i, f, g, o = tf.sigmoid(zi), tf.sigmoid(zf), tf.tanh(zg), tf.sigmoid(zo)
        c = f * c + i * g
        h = o * tf.tanh(c)
        return t + 1, h, c, hs.write(t, h), cs.write(t, c), acts.write(t, tf.concat([i, f, g, o], 1))

    _, hT, cT, hs, cs, acts = tf.while_loop(
        lambda t, *_: t < T, step, (tf.constant(0), h0, c0, array(), array(), array()))
    hs, cs, acts = hs.stack(), cs.stack(), acts.stack()

    def grad(dhs, dhT, dcT):
        dhs = tf.zeros_like(hs) if dhs is None else dhs
        dhT = tf.zeros_like(h0) if dhT is None else dhT
        dcT = tf.zeros_like(c0) if dcT is None else dcT
        c_prev = tf.concat([c0[None], cs[:-1]], 0)
        Ut = tf.transpose(U)

        def back(k, dh_next, dc_next, dzs):
            t = T - 1 - k
            i, f, g, o = tf.split(acts[t], 4, axis=1)
            tc = tf.tanh(cs[t])
            dh = dhs[t] + dh_next
            dc = dc_next + dh * o * (1.0 - tc * tc)
            dz = tf.concat([dc * g * i * (1.0 - i), dc * c_prev[t] * f * (1.0 - f),
                            dc * i * (1.0 - g * g), dh * tc * o * (1.0 - o)], 1)
            dh_prev = tf.cast(tf.matmul(tf.cast(dz, cdt), Ut), tf.float32)
            return k + 1, dh_prev, dc * f, dzs.write(t, dz)

        _, dh0, dc0, dzs = tf.while_loop(
            lambda k, *_: k < T, back, (tf.constant(0), dhT, dcT, array()))
        dz = dzs.stack()
        h_prev = tf.concat([h0[None], hs[:-1]], 0)
        dU = tf.einsum("tbh,tbg->hg", tf.cast(h_prev, cdt), tf.cast(dz, cdt))
        return dz, tf.cast(dU, cdt), dh0, dc0

    return (hs, hT, cT), grad
