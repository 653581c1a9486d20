"""Faster LSTM and GRU layers for CPUs: the same weights and maths as Keras' layers.

On a CPU Keras runs a generic while-loop in which every time step multiplies the
input AND the state by their kernels, and autodiff then differentiates that loop
step by step (a small weight-gradient matmul per step).  Here instead:

- the loop's serial chain is only the recurrent matmul and the gate maths; what does
  not depend on it (input projections, the factors the backward pass needs) runs
  beside it on the other core (parallel_iterations);
- a hand-written backward pass (tf.custom_gradient) walks back through time doing only
  ``dz @ recurrent_kernel^T`` (and, in the LSTM stack, each upper layer's ``dz @ kernel^T``
  for the layer below) and a few element-wise ops per step; the gradients of the kernels
  and the bias are then one large matmul each over all T*B rows;
- the LSTM runs its whole stack in one loop as a wavefront (:func:`lstm_stack`):
  iteration j runs layer k at time j - 2k, so the layers of one iteration depend only
  on the previous iteration and two cores run them side by side; and the embedding and
  layer 0's input projection become one [vocab, 4H] table, so that projection is a
  gather per step and its gradients one sum over the symbols instead of two
  [T*B, 4H] matmuls.

Gate order (LSTM i, f, c, o; GRU z, r, h with reset_after, Keras' default),
sigmoid/tanh and the variables are Keras' own, so checkpoints do not care which
path trained them and GPUs keep the cuDNN path.
With ``compute_dtype`` bfloat16 only the matmul operands are rounded to
bfloat16 (CPUs with AVX512_BF16/AMX run those about twice as fast); the cell
state, gates and weights stay float32.  Measured in benchmarks/bench_train.py.
"""

from charrnn.backend import tensorflow


def gru_sequence(x, kernel, recurrent_kernel, bias, h0, compute_dtype="float32"):
    """Run one GRU layer (``reset_after=True``; ``bias`` is [2, 3H]: input, recurrent) over
    time-major ``x`` [T, B, D] from state h0.

    Returns (outputs [T, B, H], h_T), all float32.
    """
    return _run(_gru, compute_dtype, x, kernel, recurrent_kernel, bias, h0)


def _run(layer, compute_dtype, *args):
    tf = tensorflow()
    cdt = tf.as_dtype(compute_dtype)

    def mm(a, w, **kw):
        return _matmul(tf, cdt, a, w, **kw)

    # float32 in and out (under a mixed policy Keras hands us bfloat16-cast weights)
    f32 = [tf.cast(v, tf.float32) for v in args]
    return tf.custom_gradient(lambda *a: layer(tf, cdt, mm, *a))(*f32)


def _matmul(tf, cdt, a, w, **kw):
    """A matmul with ``cdt`` operands and a float32 result."""
    return tf.cast(tf.matmul(tf.cast(a, cdt), tf.cast(w, cdt), **kw), tf.float32)


def _saved(tf, size):
    """A TensorArray of what the forward pass keeps for the backward pass (kept after a read,
    so a value can be read twice, and again if the gradient is taken twice)."""
    return tf.TensorArray(tf.float32, size=size, clear_after_read=False)


def _gru(tf, cdt, mm, x, K, U, b, h0):
    # Keras' GRU (reset_after): z, r = sigmoid(x W_zr + b_x + h U_zr + b_h),
    # n = tanh(x W_n + b_xn + r * (h U_n + b_hn)), h' = z * h + (1 - z) * n.
    # Layer by layer: the input projection runs ahead inside the loop, the backward pass is
    # hand-written and the weight gradients are one matmul each.
    T, B, D = tf.unstack(tf.shape(x))
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
    # gates from the two projections.
    _, hT, hs, xzs, hzs = tf.while_loop(
        lambda t, *_: t < T,
        step,
        (tf.constant(0), h0, _saved(tf, T + 1).write(0, h0), _saved(tf, T), _saved(tf, T)),
        parallel_iterations=2,
    )
    h_all = hs.stack()

    def grad(dhs, dhT):
        dhs = tf.zeros_like(h_all[1:]) if dhs is None else dhs
        dhT = tf.zeros_like(h0) if dhT is None else dhT
        Ut = tf.transpose(Uc)  # once: a transpose_b matmul in the loop is much slower

        def back(t, dh_next, dxzs, dhzs):
            t = t - 1
            # off the serial chain (run ahead on the other core): the gates and the factors
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
            lambda t, *_: t > 0,
            back,
            (T, dhT, tf.TensorArray(cdt, size=T), tf.TensorArray(cdt, size=T)),
            parallel_iterations=2,
        )
        # The weight gradients: one large matmul each over all T*B rows.
        dx_rows = tf.reshape(dxzs.stack(), [T * B, H3])
        dh_rows = tf.reshape(dhzs.stack(), [T * B, H3])
        ones = tf.ones([1, T * B])
        dx = tf.reshape(mm(dx_rows, K, transpose_b=True), [T, B, D])
        dK = mm(tf.reshape(x, [T * B, D]), dx_rows, transpose_a=True)
        dU = mm(tf.reshape(h_all[:-1], [T * B, -1]), dh_rows, transpose_a=True)
        db = tf.concat([mm(ones, dx_rows), mm(ones, dh_rows)], 0)  # [2, 3H] like Keras' bias
        return dx, dK, dU, db, dh0

    return (h_all[1:], hT), grad


def lstm_stack(ids, embedding, layers, states, masks=None, compute_dtype="float32"):
    """Run an embedding and ``len(layers)`` stacked LSTM layers over time-major ids [T, B].

    ``layers``: (kernel, recurrent_kernel, bias) per layer; ``states``: h0, c0 per layer;
    ``masks``: None, or for every layer but the last a [T, B, H] tensor that multiplies
    its outputs before the next layer reads them (dropout; constants, no gradient).
    Returns the last layer's outputs [T, B, H], then h_T, c_T per layer, all float32; the
    embedding's gradient is dense.
    """
    tf = tensorflow()
    n = len(layers)
    masks = list(masks or [])
    weights = [w for layer in layers for w in layer]
    f32 = [tf.cast(v, tf.float32) for v in [embedding, *weights, *states, *masks]]

    def run(E, *a):
        wave = _Wave(
            tf,
            tf.as_dtype(compute_dtype),
            ids,
            E,
            [a[3 * i : 3 * i + 3] for i in range(n)],
            a[3 * n : 5 * n],
            a[5 * n :],
        )
        outs, final, saved = _wave_forward(wave)
        return (outs[-1], *final), lambda dout, *dfinal: _wave_backward(
            wave, outs, saved, dout, dfinal
        )

    return tf.custom_gradient(run)(*f32)


class _Wave:
    """One call of :func:`lstm_stack`: its inputs, their matmul-dtype copies, the schedule."""

    LAG = 2  # layer k runs time t in iteration t + LAG * k

    def __init__(self, tf, cdt, ids, E, ws, states, masks):
        self.tf, self.cdt, self.ids, self.E, self.masks = tf, cdt, ids, E, list(masks)
        self.n = len(ws)
        self.T, self.B = tf.unstack(tf.shape(ids))
        self.J = self.T + self.LAG * (self.n - 1)  # iterations
        self.K = [tf.cast(K, cdt) for K, _, _ in ws]
        self.U = [tf.cast(U, cdt) for _, U, _ in ws]
        self.b = [b for _, _, b in ws]
        self.h0, self.c0 = list(states[0::2]), list(states[1::2])
        H = tf.shape(self.h0[0])[1]
        # one sigmoid for all four gates: the cell input's tanh(x) is 2 sigmoid(2x) - 1
        self.gate_scale = tf.concat([tf.ones([2 * H]), tf.fill([H], 2.0), tf.ones([H])], 0)

    def mm(self, a, w, **kw):
        return _matmul(self.tf, self.cdt, a, w, **kw)

    def at(self, t):  # a time index clamped into the window: what an idle layer reads
        return self.tf.clip_by_value(t, 0, self.T - 1)

    def live(self, t):  # is time t in the window (else the layer idles this iteration)
        return self.tf.logical_and(t >= 0, t < self.T)

    def masked(self, k, h, t):  # layer k's output h at time t as layer k + 1 reads it
        return h * self.masks[k][self.at(t)] if self.masks else h

    def window(self, k, stacked):  # layer k's [T, ...] rows of an iteration-indexed stack
        return stacked[self.LAG * k : self.LAG * k + self.T]


def _wave_forward(w):
    tf, n = w.tf, w.n
    # Layer 0's input projection of every symbol at once: a gather per step.
    table = w.mm(w.E, w.K[0]) + w.b[0]

    def step(j, hs, cs, proj, saved):
        saved, new_h, new_c, new_proj = list(saved), [], [], []
        for k in range(n):
            t = j - w.LAG * k
            xz = tf.gather(table, w.ids[w.at(t)]) if k == 0 else proj[k - 1]
            act = tf.sigmoid((xz + w.mm(hs[k], w.U[k])) * w.gate_scale)
            i, f, s, o = tf.split(act, 4, axis=1)
            g = 2.0 * s - 1.0
            c = f * cs[k] + i * g
            tc = tf.tanh(c)
            h = o * tc
            # Kept for the backward pass, which then needs no gate maths of its own:
            # dz = [dc dc dc dh] * coef and dc_{t-1} = (dh_t * ot_t + dc_t) * f_t.
            coef = tf.concat([g, cs[k], 4.0 * i, tc], 1) * (act - act * act)
            ot = o * (1.0 - tc * tc)
            if n > 1:  # before its first step and after its last a layer keeps its state
                h = tf.where(w.live(t), h, hs[k])
                c = tf.where(w.live(t), c, cs[k])
            if k > 0:  # this layer's next input projection, off the chains of both layers
                new_proj.append(w.mm(w.masked(k - 1, hs[k - 1], t + 1), w.K[k]) + w.b[k])
            for m, v in enumerate((h, coef, ot, f)):
                saved[4 * k + m] = saved[4 * k + m].write(j, v)
            new_h.append(h)
            new_c.append(c)
        return j + 1, new_h, new_c, new_proj, saved

    proj0 = [tf.zeros([w.B, 4 * tf.shape(h)[1]]) for h in w.h0[1:]]
    _, hT, cT, _, saved = tf.while_loop(
        lambda j, *_: j < w.J,
        step,
        (tf.constant(0), w.h0, w.c0, proj0, [_saved(tf, w.J) for _ in range(4 * n)]),
        parallel_iterations=2,
    )
    outs = [w.window(k, saved[4 * k].stack()) for k in range(n)]
    return outs, [s for pair in zip(hT, cT) for s in pair], saved


def _wave_backward(w, outs, saved, dout, dfinal):
    tf, n, T, B = w.tf, w.n, w.T, w.B
    dout = tf.zeros_like(outs[-1]) if dout is None else dout
    dfinal = [
        tf.zeros_like(s) if d is None else d
        for d, s in zip(dfinal, (s for pair in zip(w.h0, w.c0) for s in pair))
    ]
    Ut = [tf.transpose(U) for U in w.U]  # once: a transpose_b matmul in the loop is slower
    Kt = [None] + [tf.transpose(K) for K in w.K[1:]]
    coefs, ots, fs = saved[1::4], saved[2::4], saved[3::4]

    def back(j, dhs, dcs, dxs, dz_last, dzs):
        j = j - 1
        dzs, new_dh, new_dc, new_dx, new_dz = list(dzs), [], [], [], []
        for k in range(n):
            t = j - w.LAG * k
            # from above: the loss, or the next layer's input gradient from an earlier iteration
            above = dout[w.at(t)] if k == n - 1 else w.masked(k, dxs[k], t)
            dh = above + dhs[k]
            dc = dcs[k] + dh * ots[k].read(j)
            dz = tf.cast(tf.concat([dc, dc, dc, dh], 1) * coefs[k].read(j), w.cdt)
            dh_prev = tf.cast(tf.matmul(dz, Ut[k]), tf.float32)
            dc_prev = dc * fs[k].read(j)
            if n > 1:
                dh_prev = tf.where(w.live(t), dh_prev, dhs[k])
                dc_prev = tf.where(w.live(t), dc_prev, dcs[k])
            if k > 0:  # layer k - 1's input gradient at time t + 1, read next iteration
                new_dx.append(tf.cast(tf.matmul(dz_last[k - 1], Kt[k]), tf.float32))
                new_dz.append(dz)
            new_dh.append(dh_prev)
            new_dc.append(dc_prev)
            dzs[k] = dzs[k].write(j, dz)
        return j, new_dh, new_dc, new_dx, new_dz, dzs

    _, dh0, dc0, _, _, dzs = tf.while_loop(
        lambda j, *_: j > 0,
        back,
        (
            w.J,
            list(dfinal[0::2]),
            list(dfinal[1::2]),
            [tf.zeros_like(h) for h in w.h0[:-1]],
            [tf.zeros([B, 4 * tf.shape(h)[1]], w.cdt) for h in w.h0[1:]],
            [tf.TensorArray(w.cdt, size=w.J) for _ in range(n)],
        ),
        parallel_iterations=2,
    )
    # The weight gradients: one large matmul each over all T*B rows.
    grads = []
    for k in range(n):
        dzl = w.window(k, dzs[k].stack())
        H4 = tf.shape(dzl)[2]
        dz = tf.reshape(dzl, [T * B, H4])
        if k == 0:  # through the table: one [V, 4H] sum over the symbols
            dtable = tf.math.unsorted_segment_sum(
                tf.cast(dz, tf.float32), tf.reshape(w.ids, [-1]), tf.shape(w.E)[0]
            )
            dE = w.mm(dtable, w.K[0], transpose_b=True)
            dK = w.mm(w.E, dtable, transpose_a=True)
            db = tf.reduce_sum(dtable, 0)
        else:
            x = outs[k - 1] * w.masks[k - 1] if w.masks else outs[k - 1]
            dK = w.mm(tf.reshape(x, [T * B, -1]), dz, transpose_a=True)
            db = tf.reshape(w.mm(tf.ones([1, T * B]), dz), [H4])  # a matmul beats reduce_sum
        # h_{t-1}^T dz_t summed over t, without copying outs into a shifted [h0, outs[:-1]]
        dU = w.mm(w.h0[k], dzl[0], transpose_a=True) + w.mm(
            tf.reshape(outs[k][:-1], [(T - 1) * B, tf.shape(outs[k])[2]]),
            tf.reshape(dzl[1:], [(T - 1) * B, H4]),
            transpose_a=True,
        )
        grads += [dK, dU, db]
    return [dE, *grads, *(d for pair in zip(dh0, dc0) for d in pair), *([None] * len(w.masks))]
