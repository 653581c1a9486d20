"""The GRU (Keras' GRU with reset_after=True, its default): gates z, r, h.

    z = sigmoid(x W_z + b_xz + h U_z + b_hz),  r = sigmoid(x W_r + b_xr + h U_r + b_hr)
    n = tanh(x W_n + b_xn + r * (h U_n + b_hn)),  h' = z * h + (1 - z) * n

Two biases (input, recurrent: ``layers.<i>.bias`` is (2, 3H)), so the input and recurrent
projections stay two matmuls.  Its JavaScript step is ``gruUpdate`` in charrnn/web/sampler.html.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from charrnn.nn import fused
from charrnn.nn.cells.base import COMMON
from charrnn.nn.cells.recurrent import Recurrent

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from charrnn.nn.cells.base import OnnxGraph
    from charrnn.nn.ops import Array, Ops


class GRU(Recurrent):
    name = "gru"
    gates = 3
    gate_order = "z,r,h (reset_after)"
    keras_layer = "GRU"
    split_bias = True
    js_step = "gruUpdate"
    backends = (*COMMON, "fused")

    def update(
        self,
        ops: Ops,
        xz: Array,
        h_in: Array | None,
        layer: dict,
        h: Array,
        c: Array | None = None,
    ) -> tuple[Array, None]:
        hz = h_in @ layer["U"] + layer["br"]
        xz_, xr, xh = ops.split(xz, 3)
        hz_, hr, hh = ops.split(hz, 3)
        z = ops.sigmoid(xz_ + hz_)
        r = ops.sigmoid(xr + hr)
        return z * h + (1 - z) * ops.tanh(xh + r * hh), None

    def onnx_layer(self, g: OnnxGraph, i: int, x: str) -> str:
        op, p, h = g.op, f"l{i}", f"state_h_{i}"
        xw, hu = self.onnx_projections(g, i, x)
        b_in, b_rec = op("Split", [f"layers.{i}.bias", "two_rows"], f"{p}_b", 2, axis=0)
        # (batch, 3H) + (1, 3H) broadcasts
        xz = op("Split", [op("Add", [xw, b_in], f"{p}_xz"), "split_sizes"], f"{p}_x", 3, axis=1)
        hz = op("Split", [op("Add", [hu, b_rec], f"{p}_hz"), "split_sizes"], f"{p}_h", 3, axis=1)
        z = op("Sigmoid", [op("Add", [xz[0], hz[0]], f"{p}_za")], f"{p}_z")
        r = op("Sigmoid", [op("Add", [xz[1], hz[1]], f"{p}_ra")], f"{p}_r")
        cand = op(
            "Tanh", [op("Add", [xz[2], op("Mul", [r, hz[2]], f"{p}_rh")], f"{p}_ca")], f"{p}_cand"
        )
        keep = op("Mul", [z, h], f"{p}_keep")
        new = op("Mul", [op("Sub", [g.const(1.0), z], f"{p}_1mz"), cand], f"{p}_new")
        return op("Add", [keep, new], f"new_state_h_{i}")

    def fused_call(
        self,
        tf: ModuleType,
        model: keras.Model,
        ids: tf.Tensor,
        states: list[tf.Tensor],
        training: bool,
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """Layer by layer through ``gru_sequence`` (charrnn.nn.fused has the design)."""
        x = model.embedding(ids, training=training)
        new_states = []
        for i, rnn in enumerate(model.rnns):
            cell = rnn.cell
            x, h = gru_sequence(
                x, cell.kernel, cell.recurrent_kernel, cell.bias, states[i], rnn.compute_dtype
            )
            new_states.append(h)
            if model.drop is not None:
                x = model.drop(x, training=training)
        return x, new_states


def gru_sequence(
    x: tf.Tensor,
    kernel: tf.Tensor | keras.Variable,
    recurrent_kernel: tf.Tensor | keras.Variable,
    bias: tf.Tensor | keras.Variable,
    h0: tf.Tensor,
    compute_dtype: str = "float32",
) -> tuple[tf.Tensor, tf.Tensor]:
    """Run one GRU layer (``bias`` is [2, 3H]: input, recurrent) over time-major ``x`` [T, B, D]
    from state h0.  Returns (outputs [T, B, H], h_T), all float32."""
    return fused.run(_gru_pass, compute_dtype, x, kernel, recurrent_kernel, bias, h0)


def _gru_pass(tf, cdt, mm, x, K, U, b, h0):
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
        (
            tf.constant(0),
            h0,
            fused.saved(tf, T + 1).write(0, h0),
            fused.saved(tf, T),
            fused.saved(tf, T),
        ),
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
