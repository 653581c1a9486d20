"""A faster LSTM layer for CPUs: the same weights and maths as keras.layers.LSTM.

On a CPU Keras runs a generic while-loop in which every time step multiplies the
input AND the state by their kernels, and autodiff then differentiates that loop
step by step (a small weight-gradient matmul per step).  Here instead:

- the input projection ``x @ kernel + bias`` of all time steps is one large matmul,
  outside the loop;
- the loop only does ``h @ recurrent_kernel`` and the gate maths, keeping the gate
  activations for the backward pass;
- a hand-written backward pass (tf.custom_gradient) walks back through time doing
  only ``dz @ recurrent_kernel^T`` and a few element-wise ops per step (the rest is
  computed for all steps at once, outside the loop); the gradients of the input,
  the kernels and the bias are then one large matmul each.

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
    layer = tf.custom_gradient(lambda *args: _layer(tf, tf.as_dtype(compute_dtype), *args))
    # float32 in and out (under a mixed policy Keras hands us bfloat16-cast weights)
    f32 = [tf.cast(v, tf.float32) for v in (x, kernel, recurrent_kernel, bias, h0, c0)]
    return layer(*f32)


def _layer(tf, cdt, x, K, U, b, h0, c0):
    def mm(a, w, **kw):  # matmul with ``cdt`` operands, float32 result
        return tf.cast(tf.matmul(tf.cast(a, cdt), tf.cast(w, cdt), **kw), tf.float32)

    T, B, I = tf.unstack(tf.shape(x))
    H4 = tf.shape(K)[1]
    x2 = tf.reshape(x, [T * B, I])
    Uc = tf.cast(U, cdt)
    xw = tf.reshape(mm(x2, K) + b, [T, B, H4])  # all input projections: one matmul

    def array():
        return tf.TensorArray(tf.float32, size=T)

    def step(t, h, c, hs, cs, zs):
        z = xw[t] + mm(h, Uc)
        zi, zf, zg, zo = tf.split(z, 4, axis=1)
        c = tf.sigmoid(zf) * c + tf.sigmoid(zi) * tf.tanh(zg)
        h = tf.sigmoid(zo) * tf.tanh(c)
        return t + 1, h, c, hs.write(t, h), cs.write(t, c), zs.write(t, z)

    _, hT, cT, hs, cs, zs = tf.while_loop(
        lambda t, *_: t < T, step, (tf.constant(0), h0, c0, array(), array(), array()))
    hs, cs, zs = hs.stack(), cs.stack(), zs.stack()

    def grad(dhs, dhT, dcT):
        dhs = tf.zeros_like(hs) if dhs is None else dhs
        dhT = tf.zeros_like(h0) if dhT is None else dhT
        dcT = tf.zeros_like(c0) if dcT is None else dcT
        # Everything that does not depend on the backward recurrence, for all steps at once:
        # dc_t = dc_{t+1} f_{t+1} + dh_t a_t  and  dz_t = [dc_t dc_t dc_t dh_t] * coef_t.
        zi, zf, zg, zo = tf.split(zs, 4, axis=2)
        i, f, g, o = tf.sigmoid(zi), tf.sigmoid(zf), tf.tanh(zg), tf.sigmoid(zo)
        tc = tf.tanh(cs)
        c_prev = tf.concat([c0[None], cs[:-1]], 0)
        a = o * (1.0 - tc * tc)
        coef = tf.concat([g * i * (1.0 - i), c_prev * f * (1.0 - f), i * (1.0 - g * g),
                          tc * o * (1.0 - o)], 2)

        Ut = tf.transpose(Uc)  # once: a transpose_b matmul in the loop is much slower

        def back(k, dh_next, dc_next, dzs):
            t = T - 1 - k
            dh = dhs[t] + dh_next
            dc = dc_next + dh * a[t]
            dz = tf.concat([dc, dc, dc, dh], 1) * coef[t]
            return k + 1, mm(dz, Ut), dc * f[t], dzs.write(t, dz)

        _, dh0, dc0, dzs = tf.while_loop(
            lambda k, *_: k < T, back, (tf.constant(0), dhT, dcT, array()))
        # The weight gradients: one large matmul each over all T*B rows.
        dz = tf.cast(tf.reshape(dzs.stack(), [T * B, H4]), cdt)
        h_prev = tf.reshape(tf.concat([h0[None], hs[:-1]], 0), [T * B, -1])
        dx = tf.reshape(mm(dz, K, transpose_b=True), [T, B, I])
        dK = mm(x2, dz, transpose_a=True)
        dU = mm(h_prev, dz, transpose_a=True)
        db = tf.reshape(mm(tf.ones([1, T * B]), dz), [H4])  # a matmul beats reduce_sum here
        return dx, dK, dU, db, dh0, dc0

    return (hs, hT, cT), grad
