"""Faster LSTM and GRU layers for CPUs: the same weights and maths as Keras' layers.

On a CPU Keras runs a generic while-loop in which every time step multiplies the
input AND the state by their kernels, and autodiff then differentiates that loop
step by step (a small weight-gradient matmul per step).  Here instead:

- the loop's serial chain is only ``h @ recurrent_kernel`` and the gate maths; the
  input projection ``x_t @ kernel + bias`` does not depend on it and runs ahead on
  the other core (parallel_iterations); the pre-activations and cell states are
  kept for the backward pass, which recomputes the gates from them (cheaper than
  storing and copying more);
- a hand-written backward pass (tf.custom_gradient) walks back through time doing
  only ``dz @ recurrent_kernel^T`` and a few element-wise ops per step (the gate
  derivatives, off that serial chain, overlap with it on the other core); the
  gradients of the input, the kernels and the bias are then one large matmul each.

Gate order (LSTM i, f, c, o; GRU z, r, h with reset_after, Keras' default),
sigmoid/tanh and the variables are Keras' own, so checkpoints do not care which
path trained them and GPUs keep the cuDNN path.
With ``compute_dtype`` bfloat16 only the matmul operands are rounded to
bfloat16 (CPUs with AVX512_BF16/AMX run those about twice as fast); the cell
state, gates and weights stay float32.  Measured in benchmarks/bench_train.py.
"""

from charrnn.backend import tensorflow


def lstm_sequence(x, kernel, recurrent_kernel, bias, h0, c0, compute_dtype="float32"):
    """Run one LSTM layer over time-major ``x`` [T, B, I] from state (h0, c0).

    Returns (outputs [T, B, H], h_T, c_T), all float32.
    """
    return _run(_lstm, compute_dtype, x, kernel, recurrent_kernel, bias, h0, c0)


def gru_sequence(x, kernel, recurrent_kernel, bias, h0, compute_dtype="float32"):
    """Run one GRU layer (``reset_after=True``; ``bias`` is [2, 3H]: input, recurrent) over
    time-major ``x`` [T, B, I] from state h0.

    Returns (outputs [T, B, H], h_T), all float32.
    """
    return _run(_gru, compute_dtype, x, kernel, recurrent_kernel, bias, h0)


def _run(layer, compute_dtype, *args):
    tf = tensorflow()
    cdt = tf.as_dtype(compute_dtype)

    def mm(a, w, **kw):  # matmul with ``cdt`` operands, float32 result
        return tf.cast(tf.matmul(tf.cast(a, cdt), tf.cast(w, cdt), **kw), tf.float32)

    # float32 in and out (under a mixed policy Keras hands us bfloat16-cast weights)
    f32 = [tf.cast(v, tf.float32) for v in args]
    return tf.custom_gradient(lambda *a: layer(tf, cdt, mm, *a))(*f32)


def _saved(tf, size):
    """A TensorArray of what the forward pass keeps, read more than once going back."""
    return tf.TensorArray(tf.float32, size=size, clear_after_read=False)


def _lstm(tf, cdt, mm, x, K, U, b, h0, c0):
    T, B, I = tf.unstack(tf.shape(x))
    H4 = tf.shape(K)[1]
    x2 = tf.reshape(x, [T * B, I])
    Uc = tf.cast(U, cdt)
    # The input projection x_t @ kernel + b is done per step inside the loop, not as one
    # large matmul before it: it does not depend on the recurrence, so with
    # parallel_iterations the executor runs it ahead on the core the serial h @ U chain
    # leaves idle (1.07-1.16x the whole train step at 2x128, 1.04x at 3x512).
    xc, Kc = tf.cast(x, cdt), tf.cast(K, cdt)

    def step(t, h, c, hs, zs, cs):
        z = (mm(xc[t], Kc) + b) + mm(h, Uc)
        zi, zf, zg, zo = tf.split(z, 4, axis=1)
        c = tf.sigmoid(zf) * c + tf.sigmoid(zi) * tf.tanh(zg)
        h = tf.sigmoid(zo) * tf.tanh(c)
        return t + 1, h, c, hs.write(t, h), zs.write(t, z), cs.write(t + 1, c)

    # Kept for the backward pass: the pre-activations z and the cell states (cs[t] before
    # step t, cs[t + 1] after it), read back in place from the TensorArrays. Storing less and
    # recomputing the gates costs less than writing and copying more (measured: stacking
    # gates and states, a shifted copy of hs and a cast of dz cost 1.09x the layer's time).
    _, hT, cT, hs, zs, cs = tf.while_loop(
        lambda t, *_: t < T, step,
        (tf.constant(0), h0, c0, _saved(tf, T), _saved(tf, T), _saved(tf, T + 1).write(0, c0)),
        parallel_iterations=2)
    hs = hs.stack()

    def grad(dhs, dhT, dcT):
        dhs = tf.zeros_like(hs) if dhs is None else dhs
        dhT = tf.zeros_like(h0) if dhT is None else dhT
        dcT = tf.zeros_like(c0) if dcT is None else dcT
        Ut = tf.transpose(Uc)  # once: a transpose_b matmul in the loop is much slower

        def back(t, dh_next, dc_next, dzs):
            t = t - 1
            # The coefficients of step t (dc_t = dc_{t+1} f_{t+1} + dh_t a_t and
            # dz_t = [dc_t dc_t dc_t dh_t] * coef_t) do not depend on the recurrence: computed
            # here, the executor runs them ahead (parallel_iterations) on the core the serial
            # dz @ U^T chain leaves idle -- 1.09-1.14x the whole train step at 2x128 vs computing
            # them over [T, B, 4H] before the loop (benchmarks/bench_train.py's shape).
            zi, zf, zg, zo = tf.split(zs.read(t), 4, axis=1)
            i, f, g, o = tf.sigmoid(zi), tf.sigmoid(zf), tf.tanh(zg), tf.sigmoid(zo)
            tc = tf.tanh(cs.read(t + 1))
            coef = tf.concat([g * i * (1.0 - i), cs.read(t) * f * (1.0 - f), i * (1.0 - g * g),
                              tc * o * (1.0 - o)], 1)
            dh = dhs[t] + dh_next
            dc = dc_next + dh * (o * (1.0 - tc * tc))
            # dz in the matmul dtype: what the loop's matmul and the weight gradients read
            dz = tf.cast(tf.concat([dc, dc, dc, dh], 1) * coef, cdt)
            return t, tf.cast(tf.matmul(dz, Ut), tf.float32), dc * f, dzs.write(t, dz)

        _, dh0, dc0, dzs = tf.while_loop(
            lambda t, *_: t > 0, back, (T, dhT, dcT, tf.TensorArray(cdt, size=T)),
            parallel_iterations=2)
        # The weight gradients: one large matmul each over all T*B rows.
        dzs = dzs.stack()
        dz = tf.reshape(dzs, [T * B, H4])
        dx = tf.reshape(mm(dz, K, transpose_b=True), [T, B, I])
        dK = mm(x2, dz, transpose_a=True)
        # h_{t-1}^T dz_t summed over t, without copying hs into a shifted [h0, hs[:-1]]
        dU = mm(h0, dzs[0], transpose_a=True) + mm(
            tf.reshape(hs[:-1], [(T - 1) * B, -1]), tf.reshape(dzs[1:], [(T - 1) * B, H4]),
            transpose_a=True)
        db = tf.reshape(mm(tf.ones([1, T * B]), dz), [H4])  # a matmul beats reduce_sum here
        return dx, dK, dU, db, dh0, dc0

    return (hs, hT, cT), grad


def _gru(tf, cdt, mm, x, K, U, b, h0):
    # Keras' GRU (reset_after): z, r = sigmoid(x W_zr + b_x + h U_zr + b_h),
    # n = tanh(x W_n + b_xn + r * (h U_n + b_hn)), h' = z * h + (1 - z) * n.
    # The same plan as the LSTM: the input projection runs ahead inside the loop, the
    # backward pass is hand-written and the weight gradients are one matmul each.
    T, B, I = tf.unstack(tf.shape(x))
    H3 = tf.shape(K)[1]
    xc, Kc, Uc = tf.cast(x, cdt), tf.cast(K, cdt), tf.cast(U, cdt)
    bx, bh = b[0], b[1]

    def step(t, h, hs, xzs, hzs):
        xz = mm(xc[t], Kc) + bx
        hz = mm(h, Uc) + bh
        x_z, x_r, x_n = tf.split(xz, 3, axis=1)
        h_z, h_r, h_n = tf.split(hz, 3, axis=1)
        z = tf.sigmoid(x_z + h_z)
        n = tf.tanh(x_n + tf.sigmoid(x_r + h_r) * h_n)
        h = z * h + (1.0 - z) * n
        return t + 1, h, hs.write(t + 1, h), xzs.write(t, xz), hzs.write(t, hz)

    # hs[t] is the state before step t, hs[t + 1] after it; the backward pass recomputes the
    # gates from the two projections (as the LSTM does from its pre-activations).
    _, hT, hs, xzs, hzs = tf.while_loop(
        lambda t, *_: t < T, step,
        (tf.constant(0), h0, _saved(tf, T + 1).write(0, h0), _saved(tf, T), _saved(tf, T)),
        parallel_iterations=2)
    h_all = hs.stack()

    def grad(dhs, dhT):
        dhs = tf.zeros_like(h_all[1:]) if dhs is None else dhs
        dhT = tf.zeros_like(h0) if dhT is None else dhT
        Ut = tf.transpose(Uc)  # once: a transpose_b matmul in the loop is much slower

        def back(t, dh_next, dxzs, dhzs):
            t = t - 1
            # off the serial chain (run ahead, as in the LSTM): the gates and the factors
            # that turn dh into the gradients of the two projections
            x_z, x_r, x_n = tf.split(xzs.read(t), 3, axis=1)
            h_z, h_r, h_n = tf.split(hzs.read(t), 3, axis=1)
            z, r = tf.sigmoid(x_z + h_z), tf.sigmoid(x_r + h_r)
            n = tf.tanh(x_n + r * h_n)
            dn = (1.0 - z) * (1.0 - n * n)  # d n_pre / dh
            a_z = (hs.read(t) - n) * z * (1.0 - z)
            a_r = dn * h_n * r * (1.0 - r)
            # on it: dh, then dz for the recurrent projection and the matmul
            dh = dhs[t] + dh_next
            dh3 = tf.concat([dh, dh, dh], 1)
            dxz = tf.cast(dh3 * tf.concat([a_z, a_r, dn], 1), cdt)
            dhz = tf.cast(dh3 * tf.concat([a_z, a_r, dn * r], 1), cdt)
            dh_prev = dh * z + tf.cast(tf.matmul(dhz, Ut), tf.float32)
            return t, dh_prev, dxzs.write(t, dxz), dhzs.write(t, dhz)

        _, dh0, dxzs, dhzs = tf.while_loop(
            lambda t, *_: t > 0, back,
            (T, dhT, tf.TensorArray(cdt, size=T), tf.TensorArray(cdt, size=T)),
            parallel_iterations=2)
        # The weight gradients: one large matmul each over all T*B rows.
        dx_rows = tf.reshape(dxzs.stack(), [T * B, H3])
        dh_rows = tf.reshape(dhzs.stack(), [T * B, H3])
        ones = tf.ones([1, T * B])
        dx = tf.reshape(mm(dx_rows, K, transpose_b=True), [T, B, I])
        dK = mm(tf.reshape(x, [T * B, I]), dx_rows, transpose_a=True)
        dU = mm(tf.reshape(h_all[:-1], [T * B, -1]), dh_rows, transpose_a=True)
        db = tf.concat([mm(ones, dx_rows), mm(ones, dh_rows)], 0)  # [2, 3H] like Keras' bias
        return dx, dK, dU, db, dh0

    return (h_all[1:], hT), grad
