"""The minimal family (mingru, minlstm; Feng et al. 2024, "Were RNNs All We Needed?"): gates
from the input only, so all of a window's matmuls are one large matmul and only the element-wise
recurrence h_t = a_t * h_{t-1} + b_t is sequential.  Each layer is a residual block:
x += minRNN(rmsnorm(x)); x += feed-forward(rmsnorm(x)); the output is rmsnorm(x).  The
embedding is the residual stream, rnn_size wide.  A cell of the family gives only its
``recurrence`` (the gates -> a, b) and its ONNX nodes; the block is written here once.

Weights (F = FF_MULT * H):

  embedding                   (vocab_size, H)
  layers.<i>.norm             (H,)          RMS norm scale before the cell
  layers.<i>.kernel           (H, G*H)      the cell's input projection
  layers.<i>.bias             (G*H,)
  layers.<i>.ff_norm          (H,)          RMS norm scale before the feed-forward
  layers.<i>.ff_in.kernel     (H, F)   layers.<i>.ff_in.bias  (F,)
  layers.<i>.ff_out.kernel    (F, H)   layers.<i>.ff_out.bias (H,)
  final_norm                  (H,)          RMS norm scale before the logits
  logits.kernel, logits.bias  (H, vocab_size), (vocab_size,)

Training (``MinBlock``) runs the same functions as the step, over all a window's rows at once,
with dropout on the two residual branches; under a mixed precision policy only the matmul
operands are rounded to the compute dtype (norms, gates, the recurrence and the weights stay
float32, as in charrnn.nn.fused).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from charrnn.backend import tensorflow
from charrnn.nn.cells.base import Cell
from charrnn.nn.ops import NumpyOps, f32, tf_ops

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from charrnn.nn.cells.base import OnnxGraph
    from charrnn.nn.ops import Array, Ops
    from charrnn.nn.step import Weights

FF_MULT = 4  # the feed-forward's width, in units of rnn_size
RMS_EPS = 1e-6  # in the RMS norms
# tensor name (after "layers.<i>.") -> the engines' name (charrnn.nn.step.Weights)
ENGINE_NAMES = {
    "norm": "norm",
    "kernel": "W",
    "bias": "b",
    "ff_norm": "ff_norm",
    "ff_in.kernel": "F1",
    "ff_in.bias": "f1b",
    "ff_out.kernel": "F2",
    "ff_out.bias": "f2b",
}


def block_shapes(cell: Cell, h: int) -> dict[str, tuple[int, ...]]:
    """A block's tensors: name (after "layers.<i>.") -> shape, in MinBlock's order."""
    g, f = cell.gates * h, FF_MULT * h
    return {
        "norm": (h,),
        "kernel": (h, g),
        "bias": (g,),
        "ff_norm": (h,),
        "ff_in.kernel": (h, f),
        "ff_in.bias": (f,),
        "ff_out.kernel": (f, h),
        "ff_out.bias": (h,),
    }


class Minimal(Cell):
    parallel = True

    def recurrence(self, ops: Ops, p: Array) -> tuple[Array, Array]:
        """The input projection ``p`` (rows, G*H) -> (a, b) of h_t = a_t * h_{t-1} + b_t."""
        raise NotImplementedError

    def onnx_recurrence(self, g: OnnxGraph, p: str, pre: str) -> tuple[str, str]:
        """``recurrence`` as ONNX nodes named from prefix ``p``: (a, b)."""
        raise NotImplementedError

    def embedding_size(self, rnn_size: int, asked: int) -> int:
        return int(rnn_size)  # the residual stream, whatever was asked

    # --- weights ------------------------------------------------------------------------

    def tensor_shapes(
        self, vocab: int, embed: int, units: int, layers: int
    ) -> dict[str, tuple[int, ...]]:
        shapes = {
            "embedding": (vocab, units),
            "logits.kernel": (units, vocab),
            "logits.bias": (vocab,),
        }
        for i in range(layers):
            shapes.update({f"layers.{i}.{k}": s for k, s in block_shapes(self, units).items()})
        shapes["final_norm"] = (units,)
        return shapes

    def variables(self, model: keras.Model) -> dict:
        v = {"embedding": model.embedding.embeddings}
        for i, block in enumerate(model.rnns):  # MinBlock keeps its variables by name
            v.update({f"layers.{i}.{k}": var for k, var in block.named.items()})
        v["final_norm"] = model.final_norm
        v["logits.kernel"], v["logits.bias"] = model.dense.kernel, model.dense.bias
        return v

    def arrange(self, tensors: dict) -> tuple[np.ndarray, list[dict], np.ndarray]:
        """(table = the embedding, blocks under the engines' names, final_norm)."""
        n = sum(1 for k in tensors if k.endswith(".ff_norm"))
        layers = [
            {e: f32(tensors[f"layers.{i}.{k}"]) for k, e in ENGINE_NAMES.items()}
            | {"U": None, "br": None}
            for i in range(n)
        ]
        return f32(tensors["embedding"]), layers, f32(tensors["final_norm"])

    # --- the Keras model ------------------------------------------------------------------

    def build(self, model: keras.Model, keras: ModuleType, dropout: float) -> None:
        model.rnns = [
            min_block_class()(self, model.rnn_size, dropout, name=f"{self.name}_{i}")
            for i in range(model.num_layers)
        ]
        model.final_norm = model.add_weight(
            name="final_norm", shape=(model.rnn_size,), initializer="ones"
        )
        model.drop = None  # the blocks drop on their residual branches

    def call(
        self,
        tf: ModuleType,
        model: keras.Model,
        inputs: tf.Tensor,
        states: list[tf.Tensor] | None,
        training: bool,
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """The blocks over a time-major window: (logits [B, T, V], new states)."""
        x = tf.cast(model.embedding(tf.transpose(inputs), training=training), tf.float32)
        if states is None:
            states = model.initial_state(tf.shape(inputs)[0])
        new_states = []
        for block, h0 in zip(model.rnns, states):
            x, h = block(x, tf.cast(h0, tf.float32), training=training)
            new_states.append(h)
        shape = tf.shape(x)
        rows = rms_norm(tf_ops()[1], tf.reshape(x, [-1, model.rnn_size]), model.final_norm)
        logits = tf.reshape(model.dense(rows, training=training), [shape[0], shape[1], -1])
        return tf.transpose(logits, [1, 0, 2]), new_states

    # --- one step over NumPy or TensorFlow --------------------------------------------------

    def step(
        self, ops: Ops, w: Weights, tok: Array, states: list[Array]
    ) -> tuple[Array, list[Array]]:
        x, new = ops.take(w.table, tok), []
        for layer, h in zip(w.layers, states):
            a, b = self.recurrence(ops, rms_norm(ops, x, layer["norm"]) @ layer["W"] + layer["b"])
            h = a * h + b
            new.append(h)
            x = feed_forward(ops, layer, x + h)
        return rms_norm(ops, x, w.final_norm) @ w.dense + w.dense_b, new

    def sweep(self, w: Weights, ids: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """``visualize``'s run: each block over all rows at once, only the recurrence stepped."""
        ops = NumpyOps
        acts, x = [], w.table[ids]  # the embedding: the residual stream
        for layer in w.layers:
            a, b = self.recurrence(ops, rms_norm(ops, x, layer["norm"]) @ layer["W"] + layer["b"])
            hs, h = np.empty_like(b), np.zeros(w.units, np.float32)
            for t in range(len(b)):
                h = hs[t] = a[t] * h + b[t]
            acts.append(hs)
            x = feed_forward(ops, layer, x + hs)
        return rms_norm(ops, x, w.final_norm) @ w.dense + w.dense_b, acts

    # --- ONNX -------------------------------------------------------------------------------

    def onnx_setup(self, g: OnnxGraph, units: int) -> None:
        g.array(np.full(self.gates, units, np.int64), "split_sizes")

    def onnx_layer(self, g: OnnxGraph, i: int, x: str) -> str:
        """A block, op for op as ``step``."""
        op, p, t = g.op, f"l{i}", f"layers.{i}."
        pre = op(
            "Add",
            [
                op("MatMul", [onnx_rms_norm(g, x, t + "norm", f"{p}_n"), t + "kernel"], f"{p}_xw"),
                t + "bias",
            ],
            f"{p}_p",
        )
        a, b = self.onnx_recurrence(g, p, pre)
        h = op("Add", [op("Mul", [a, f"state_h_{i}"], f"{p}_ah"), b], f"new_state_h_{i}")
        x = op("Add", [x, h], f"{p}_x1")
        normed = onnx_rms_norm(g, x, t + "ff_norm", f"{p}_fn")
        f1 = op(
            "Add",
            [op("MatMul", [normed, t + "ff_in.kernel"], f"{p}_f1"), t + "ff_in.bias"],
            f"{p}_f1b",
        )
        r = op("Relu", [f1], f"{p}_relu")  # squared ReLU, as relu2
        y = op(
            "Add",
            [
                op("MatMul", [op("Mul", [r, r], f"{p}_r2"), t + "ff_out.kernel"], f"{p}_f2"),
                t + "ff_out.bias",
            ],
            f"{p}_f2b",
        )
        return op("Add", [x, y], f"{p}_x2")

    def onnx_output(self, g: OnnxGraph, x: str) -> str:
        return onnx_rms_norm(g, x, "final_norm", "final_n")

    # --- cost (charrnn.training.autosize) ------------------------------------------------------

    def matrix_weights(self, layers: int, units: int, embed: int) -> int:
        """The block's input projection and feed-forward, each multiplied once per symbol."""
        return layers * (self.gates + 2 * FF_MULT) * units * units

    def other_params(self, layers: int, units: int) -> int:
        """The projection's and feed-forward's biases, two norm scales a block, the final norm."""
        return layers * (self.gates + FF_MULT + 3) * units + units


# --- the block's maths, over NumPy or TensorFlow, for rows of any leading shape ------------


def feed_forward(ops: Ops, layer: dict, x: Array) -> Array:
    """The block's second half: x + F2 relu(F1 rmsnorm(x))^2."""
    f = relu2(rms_norm(ops, x, layer["ff_norm"]) @ layer["F1"] + layer["f1b"])
    return x + (f @ layer["F2"] + layer["f2b"])


def rms_norm(ops: Ops, x: Array, scale: Array) -> Array:
    """x / sqrt(mean(x^2) + eps) * scale over the last axis."""
    return x * ops.rsqrt(ops.mean_last(x * x) + RMS_EPS) * scale


def relu2(x: Array) -> Array:
    """Squared ReLU, the feed-forward's activation (So et al. 2021, "Primer"): measured
    better than GELU here at a quarter of its element-wise cost (benchmarks/RESULTS.md,
    "Parallel cells")."""
    r = 0.5 * (x + abs(x))  # max(x, 0) in NumPy and TensorFlow alike
    return r * r


def onnx_rms_norm(g: OnnxGraph, x: str, scale: str, p: str) -> str:
    op = g.op
    ms = op("ReduceMean", [op("Mul", [x, x], f"{p}_sq")], f"{p}_ms", axes=[-1], keepdims=1)
    r = op(
        "Reciprocal",
        [op("Sqrt", [op("Add", [ms, g.const(RMS_EPS)], f"{p}_mse")], f"{p}_rms")],
        f"{p}_r",
    )
    return op("Mul", [op("Mul", [x, r], f"{p}_xr"), scale], f"{p}_out")


# --- training: the recurrence over a window, and the block as a Keras layer -----------------


def linear_scan(a: tf.Tensor, b: tf.Tensor, h0: tf.Tensor) -> tf.Tensor:
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


def min_block_class() -> type[keras.layers.Layer]:
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

        def __init__(self, spec: Minimal, units: int, dropout: float = 0.0, **kwargs: Any):
            """``spec``: the cell (a Minimal) whose recurrence the block runs."""
            # autocast off: the casts are explicit (matmul operands only)
            super().__init__(autocast=False, **kwargs)
            self.spec, self.units = spec, int(units)
            # float32 in and out under a mixed policy (the residual stream stays float32)
            self.drop = keras.layers.Dropout(dropout, dtype="float32") if dropout > 0 else None

        def build(self, input_shape: tuple) -> None:
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
                for k, s in block_shapes(self.spec, self.units).items()
            }
            # one attribute each as well: tf.train.Checkpoint does not look inside the dict
            # (which Keras wraps), and would save none of them (keras-team/keras#18398)
            for k, var in self.named.items():
                setattr(self, "var_" + k.replace(".", "_"), var)

        def call(
            self, x: tf.Tensor, h0: tf.Tensor, training: bool = False
        ) -> tuple[tf.Tensor, tf.Tensor]:
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
            a, b = self.spec.recurrence(
                ops, mm(rms_norm(ops, rows, v["norm"]), "kernel") + v["bias"]
            )
            hs = linear_scan(tf.reshape(a, shape), tf.reshape(b, shape), h0)
            rows = rows + drop(tf.reshape(hs, [-1, self.units]))
            f = relu2(mm(rms_norm(ops, rows, v["ff_norm"]), "ff_in.kernel") + v["ff_in.bias"])
            rows = rows + drop(mm(f, "ff_out.kernel") + v["ff_out.bias"])
            return tf.reshape(rows, shape), hs[-1]

    _CLASS = MinBlock
    return MinBlock
