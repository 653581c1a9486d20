"""The LSTM (Keras' LSTM): gates i, f, c, o; each layer carries h and c.

    i, f, o = sigmoid(.), c~ = tanh(.)  of  x W + h U + b  (four blocks of H)
    c' = f * c + i * c~,  h' = o * tanh(c')

Here: its maths once (``update``, over NumPy or TensorFlow), its ONNX nodes, its fused CPU
training pass (``lstm_stack``: the whole stack in one loop, charrnn.nn.fused has the design)
and the NumPy engine's batch-1 fast path (``NumpyFast``, tested against ``update``).  Its
JavaScript step is ``lstmUpdate`` in charrnn/web/sampler.html.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from charrnn.backend import tensorflow
from charrnn.nn import fused
from charrnn.nn.cells.base import COMMON
from charrnn.nn.cells.recurrent import Recurrent

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from charrnn.nn.cells.base import OnnxGraph
    from charrnn.nn.ops import Array, Ops
    from charrnn.nn.step import Weights


class LSTM(Recurrent):
    name = "lstm"
    gates = 4
    gate_order = "i,f,c,o"
    states = ("h", "c")
    keras_layer = "LSTM"
    js_step = "lstmUpdate"
    backends = (*COMMON, "fused", "numpy_fast")

    def update(
        self,
        ops: Ops,
        xz: Array,
        h_in: Array | None,
        layer: dict,
        h: Array,
        c: Array | None = None,
    ) -> tuple[Array, Array]:
        ig, fg, cg, og = ops.split(self.preactivation(xz, h_in, layer), 4)
        c = ops.sigmoid(fg) * c + ops.sigmoid(ig) * ops.tanh(cg)
        return ops.sigmoid(og) * ops.tanh(c), c

    def onnx_layer(self, g: OnnxGraph, i: int, x: str) -> str:
        op, p = g.op, f"l{i}"
        a = self.onnx_preactivation(g, i, x)
        ig, fg, cg, og = op("Split", [a, "split_sizes"], f"{p}_gates", 4, axis=1)
        c = op(
            "Add",
            [
                op("Mul", [op("Sigmoid", [fg], f"{p}_f"), f"state_c_{i}"], f"{p}_fc"),
                op("Mul", [op("Sigmoid", [ig], f"{p}_i"), op("Tanh", [cg], f"{p}_g")], f"{p}_ig"),
            ],
            f"new_state_c_{i}",
        )
        return op(
            "Mul", [op("Sigmoid", [og], f"{p}_o"), op("Tanh", [c], f"{p}_tc")], f"new_state_h_{i}"
        )

    def fused_call(
        self,
        tf: ModuleType,
        model: keras.Model,
        ids: tf.Tensor,
        states: list[tf.Tensor],
        training: bool,
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """The whole stack in one loop, embedding included (``lstm_stack``)."""
        masks = None
        if model.drop is not None and training:  # the dropout between layers, drawn up front
            ones = tf.ones([tf.shape(ids)[0], tf.shape(ids)[1], model.rnn_size])
            masks = [model.drop(ones, training=True) for _ in model.rnns[1:]]
        x, *new_states = lstm_stack(
            ids,
            model.embedding.embeddings,
            [(r.cell.kernel, r.cell.recurrent_kernel, r.cell.bias) for r in model.rnns],
            states,
            masks,
            model.rnns[0].compute_dtype,
        )
        if model.drop is not None:
            x = model.drop(x, training=training)
        return x, new_states


# --- the fused training pass -------------------------------------------------------------


def lstm_stack(
    ids: tf.Tensor,
    embedding: tf.Tensor | keras.Variable,
    layers: list[tuple[tf.Tensor | keras.Variable, ...]],
    states: list[tf.Tensor],
    masks: list[tf.Tensor] | None = None,
    compute_dtype: str = "float32",
) -> tuple[tf.Tensor, ...]:
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

    def mm(self, a: tf.Tensor, w: tf.Tensor, **kw: bool) -> tf.Tensor:
        return fused.matmul(self.tf, self.cdt, a, w, **kw)

    def at(self, t: tf.Tensor) -> tf.Tensor:
        """A time index clamped into the window: what an idle layer reads."""
        return self.tf.clip_by_value(t, 0, self.T - 1)

    def live(self, t: tf.Tensor) -> tf.Tensor:
        """Is time t in the window (else the layer idles this iteration)."""
        return self.tf.logical_and(t >= 0, t < self.T)

    def masked(self, k: int, h: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        """Layer k's output h at time t as layer k + 1 reads it."""
        return h * self.masks[k][self.at(t)] if self.masks else h

    def window(self, k: int, stacked: tf.Tensor) -> tf.Tensor:
        """Layer k's [T, ...] rows of an iteration-indexed stack."""
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
        (tf.constant(0), w.h0, w.c0, proj0, [fused.saved(tf, w.J) for _ in range(4 * n)]),
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


# --- the NumPy engine's batch-1 fast path (charrnn.generate.numpy_engine) ----------------


class NumpyFast:
    """LSTM layers on preallocated buffers.  The columns are reordered to i, f, o, c
    and the sigmoid gates' columns halved, so one tanh covers all four gates:
    sigmoid(x) = 0.5 * tanh(x / 2) + 0.5, the formula ``NumpyOps`` uses (halving
    is exact in floating point).  Layer j > 0 keeps [input, h] in one buffer, so its
    two matmuls are one, and layer j - 1 writes its output straight into it."""

    def __init__(self, w: Weights, batch: int):
        H = w.units
        order = np.r_[0 : 2 * H, 3 * H : 4 * H, 2 * H : 3 * H]  # i f c o -> i f o c
        scale = np.r_[np.full(3 * H, 0.5, np.float32), np.ones(H, np.float32)]
        fix = lambda a: np.ascontiguousarray(a[..., order] * scale, np.float32)  # noqa: E731
        self.table = fix(w.table)
        self.kernels = [fix(lay["U"] if i == 0 else lay["WU"]) for i, lay in enumerate(w.layers)]
        # 2-D operands throughout: NumPy adds a (1, n) row faster than it broadcasts (n,).
        self.rows = [self.table[i : i + 1] for i in range(len(self.table))]
        self.biases = [None if i == 0 else fix(lay["b"])[None] for i, lay in enumerate(w.layers)]
        self.dense, self.dense_b = w.dense, w.dense_b[None]
        n = len(w.layers)
        self.xh = [None] + [np.zeros((batch, 2 * H), np.float32) for _ in range(n - 1)]
        self.h = [np.zeros((batch, H), np.float32)] + [xh[:, H:] for xh in self.xh[1:]]
        self.c = [np.zeros((batch, H), np.float32) for _ in range(n)]
        self.a = np.empty((batch, 4 * H), np.float32)
        self.tmp = np.empty((batch, H), np.float32)
        self.logits = np.empty((batch, w.vocab_size), np.float32)
        self.H = H
        # Per layer, every view the step uses, made once (slicing costs as much as a
        # small ufunc call at batch 1): (input, kernel, bias, sigmoid part, i, f, o,
        # candidate, c, h, where the next layer reads h or None).
        a = self.a
        self.plan = [
            (
                (self.h[0] if i == 0 else self.xh[i]),
                self.kernels[i],
                self.biases[i],
                a[:, : 3 * H],
                a[:, :H],
                a[:, H : 2 * H],
                a[:, 2 * H : 3 * H],
                a[:, 3 * H :],
                self.c[i],
                self.h[i],
                self.xh[i + 1][:, :H] if i + 1 < n else None,
            )
            for i in range(n)
        ]

    def load(self, states: list[np.ndarray]) -> None:
        for i in range(len(self.h)):
            self.h[i][...] = states[2 * i]
            self.c[i][...] = states[2 * i + 1]
        for i in range(1, len(self.h)):
            self.xh[i][:, : self.H] = self.h[i - 1]

    def save(self) -> list[np.ndarray]:
        return [x.copy() for i in range(len(self.h)) for x in (self.h[i], self.c[i])]

    def step(self, tok: int | np.ndarray) -> np.ndarray:
        a, tmp, table = self.a, self.tmp, self.table
        dot, tanh, multiply, add = np.dot, np.tanh, np.multiply, np.add
        for x, k, b, sig, ig, fg, og, cand, c, h, nxt in self.plan:
            dot(x, k, out=a)
            if b is not None:
                add(a, b, out=a)
            else:  # an id (batch 1) or an array of ids
                add(a, self.rows[tok] if isinstance(tok, int) else table[tok], out=a)
            tanh(a, out=a)
            multiply(sig, 0.5, out=sig)
            add(sig, 0.5, out=sig)
            multiply(cand, ig, out=cand)  # i * tanh(c~)
            multiply(c, fg, out=c)  # f * c
            add(c, cand, out=c)
            tanh(c, out=tmp)
            multiply(og, tmp, out=h)  # o * tanh(c)
            if nxt is not None:
                nxt[...] = h
        logits = dot(h, self.dense, out=self.logits)
        add(logits, self.dense_b, out=logits)
        return logits


LSTM.numpy_fast = NumpyFast
