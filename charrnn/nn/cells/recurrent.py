"""The recurrent family (lstm, gru, rnn): gates from the input and the previous state, Keras'
recurrent layers, a matmul per time step.

Their weights (Keras layout, float32; G = the cell's gates, H = rnn_size):

  embedding                   (vocab_size, embedding_size)
  layers.<i>.kernel           (input size, G*H)   input size: embedding_size for i = 0, else H
  layers.<i>.recurrent_kernel (H, G*H)
  layers.<i>.bias             (G*H,); gru: (2, G*H) = [input bias, recurrent bias]
  logits.kernel               (H, vocab_size)
  logits.bias                 (vocab_size,)

The engines' arrangement (charrnn.nn.step.Weights): the first layer's input projection of
every symbol precomputed into one table (embedding @ kernel + bias), so a step starts with a
row lookup; later layers keep W, U, b (and br, GRU's recurrent bias), and where the cell adds
the two projections before its gates, WU = [W; U] stacked, one matmul for both.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from charrnn.nn.cells.base import Cell
from charrnn.nn.ops import NumpyOps, f32

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from charrnn.nn.cells.base import OnnxGraph
    from charrnn.nn.ops import Array, Ops
    from charrnn.nn.step import Weights


class Recurrent(Cell):
    parallel = False
    keras_layer: str  # the keras.layers class: LSTM, GRU, SimpleRNN
    split_bias = False  # Keras' GRU (reset_after) keeps an input and a recurrent bias

    # --- weights ------------------------------------------------------------------------

    def tensor_shapes(self, vocab: int, embed: int, units: int, layers: int) -> dict:
        """Tensor name -> shape (charrnn.nn.tensors' names)."""
        g = self.gates * units
        shapes = {
            "embedding": (vocab, embed),
            "logits.kernel": (units, vocab),
            "logits.bias": (vocab,),
        }
        for i in range(layers):
            shapes[f"layers.{i}.kernel"] = (embed if i == 0 else units, g)
            shapes[f"layers.{i}.recurrent_kernel"] = (units, g)
            shapes[f"layers.{i}.bias"] = (2, g) if self.split_bias else (g,)
        return shapes

    def variables(self, model: keras.Model) -> dict:
        """Tensor name -> the Keras variable of a built CharRNN that holds it."""
        v = {"embedding": model.embedding.embeddings}
        for i, rnn in enumerate(model.rnns):
            v[f"layers.{i}.kernel"] = rnn.cell.kernel
            v[f"layers.{i}.recurrent_kernel"] = rnn.cell.recurrent_kernel
            v[f"layers.{i}.bias"] = rnn.cell.bias
        v["logits.kernel"], v["logits.bias"] = model.dense.kernel, model.dense.bias
        return v

    def arrange(self, tensors: dict) -> tuple[np.ndarray, list[dict], None]:
        """The engines' arrangement of named arrays: (table, layers, final_norm=None)."""
        n = sum(1 for k in tensors if k.endswith(".recurrent_kernel"))
        layers, table = [], None
        for i in range(n):
            k, u, b = (
                f32(tensors[f"layers.{i}.{name}"])
                for name in ("kernel", "recurrent_kernel", "bias")
            )
            b_in, b_rec = (b[0], b[1]) if self.split_bias else (b, None)
            if i == 0:
                table = f32(tensors["embedding"]) @ k + b_in
                layers.append({"W": None, "U": u, "b": None, "br": b_rec})
            else:
                layer = {"W": k, "U": u, "b": b_in, "br": b_rec}
                if not self.split_bias:  # input and recurrent parts in one matmul
                    layer["WU"] = np.concatenate([k, u], axis=0)
                layers.append(layer)
        return f32(table), layers, None

    # --- the Keras model (charrnn.nn.model.CharRNN) --------------------------------------

    def build(self, model: keras.Model, keras: ModuleType, dropout: float) -> None:
        """Give a CharRNN its layers: ``model.rnns`` and the dropout between them."""
        layer = getattr(keras.layers, self.keras_layer)
        model.rnns = [
            layer(model.rnn_size, return_sequences=True, return_state=True, name=f"{self.name}_{i}")
            for i in range(model.num_layers)
        ]
        model.drop = keras.layers.Dropout(dropout) if dropout > 0 else None

    def call(
        self,
        tf: ModuleType,
        model: keras.Model,
        inputs: tf.Tensor,
        states: list[tf.Tensor] | None,
        training: bool,
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """A window through the model: (logits [B, T, V], new states)."""
        if model.fused:
            return self._call_fused(tf, model, inputs, states, training)
        x = model.embedding(inputs, training=training)
        k = len(self.states)
        new_states = []
        for i, rnn in enumerate(model.rnns):  # Keras' own layers (cuDNN on a GPU)
            init = None if states is None else list(states[i * k : (i + 1) * k])
            x, *layer_states = rnn(x, initial_state=init, training=training)
            # float32 out whatever the compute dtype, so carried state keeps one dtype
            new_states.extend(tf.cast(s, tf.float32) for s in layer_states)
            if model.drop is not None:
                x = model.drop(x, training=training)
        return model.dense(x, training=training), new_states

    def _call_fused(self, tf, model, inputs, states, training):
        """The same layers' weights through the cell's ``fused_call`` (CPUs)."""
        ids = tf.transpose(inputs)  # time-major: transposing ids is cheaper than the embeddings
        if states is None:
            states = model.initial_state(tf.shape(inputs)[0])
        if not model.embedding.built:
            model.embedding.build((None,))
        for i, rnn in enumerate(model.rnns):
            if not rnn.built:
                rnn.build((None, None, model.embedding_size if i == 0 else model.rnn_size))
        x, new_states = self.fused_call(tf, model, ids, states, training)
        # Dense on 2-D rows: a plain matmul (on 3-D input Keras uses a slower einsum)
        shape = tf.shape(x)
        logits = model.dense(tf.reshape(x, [-1, model.rnn_size]), training=training)
        logits = tf.reshape(logits, [shape[0], shape[1], model.vocab_size])
        return tf.transpose(logits, [1, 0, 2]), new_states

    # --- one step over NumPy or TensorFlow (the engines, exports, the reference) ---------

    def step(
        self, ops: Ops, w: Weights, tok: Array, states: list[Array]
    ) -> tuple[Array, list[Array]]:
        """Symbol ids (batch,) and the flat state list -> logits (batch, vocab), new states."""
        k = len(self.states)
        new, x = [], None
        for i, layer in enumerate(w.layers):
            h = states[i * k]
            c = states[i * k + 1] if k == 2 else None
            if i == 0:
                xz, h_in = ops.take(w.table, tok), h
            elif "WU" in layer:  # one matmul for input and recurrent parts
                xz, h_in = ops.concat([x, h]) @ layer["WU"] + layer["b"], None
            else:
                xz, h_in = x @ layer["W"] + layer["b"], h
            h, c = self.update(ops, xz, h_in, layer, h, c)
            new += [h, c] if k == 2 else [h]
            x = h
        return x @ w.dense + w.dense_b, new

    def update(
        self,
        ops: Ops,
        xz: Array,
        h_in: Array | None,
        layer: dict,
        h: Array,
        c: Array | None = None,
    ) -> tuple[Array, Array | None]:
        """One layer's cell from its input projection ``xz`` (batch, G*H), bias included: the
        new ``(h, c)`` (c None but for an LSTM).  ``h_in``: the state the recurrent kernel U
        multiplies, or None when ``xz`` already holds that product (the stacked WU)."""
        raise NotImplementedError

    @staticmethod
    def preactivation(xz: Array, h_in: Array | None, layer: dict) -> Array:
        """x W + b (``xz``) plus h U, unless ``xz`` holds it already (the stacked WU)."""
        return xz if h_in is None else xz + h_in @ layer["U"]

    def sweep(self, w: Weights, ids: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """``visualize``'s run: the text through the model a layer at a time (a layer's input
        projection for the whole text is one matrix product, and only its recurrent matrix is
        used step by step, so it stays in the CPU cache: 3x512 ~10x faster than stepping all
        layers together).  (logits (n, vocab), [h (n, H)] + [c (n, H)] per layer)."""
        acts, x = [], None
        for i, layer in enumerate(w.layers):
            xz = w.table[ids] if i == 0 else x @ layer["W"] + layer["b"]  # (n, gates)
            h = np.zeros((1, w.units), np.float32)
            c = np.zeros((1, w.units), np.float32) if "c" in self.states else None
            hs = np.empty((len(ids), w.units), np.float32)
            cs = np.empty_like(hs) if c is not None else None
            for t in range(len(ids)):
                h, c = self.update(NumpyOps, xz[t : t + 1], h, layer, h, c)
                hs[t] = h[0]
                if cs is not None:
                    cs[t] = c[0]
            acts += [hs] if cs is None else [hs, cs]
            x = hs
        return x @ w.dense + w.dense_b, acts

    # --- ONNX (charrnn.export.onnx_graph) ------------------------------------------------

    def onnx_setup(self, g: OnnxGraph, units: int) -> None:
        """The constants this cell's nodes use, once per graph."""
        if self.gates > 1:
            g.array(np.full(self.gates, units, np.int64), "split_sizes")
        if self.split_bias:  # the two rows of Keras' GRU bias: input and recurrent
            g.array(np.array([1, 1], np.int64), "two_rows")

    def onnx_layer(self, g: OnnxGraph, i: int, x: str) -> str:
        """Layer i's nodes, as ``update``; its new h (and c) are graph outputs."""
        raise NotImplementedError

    def onnx_projections(self, g: OnnxGraph, i: int, x: str) -> tuple[str, str]:
        """Layer i's two matmuls, x W and h U."""
        xw = g.op("MatMul", [x, f"layers.{i}.kernel"], f"l{i}_xw")
        hu = g.op("MatMul", [f"state_h_{i}", f"layers.{i}.recurrent_kernel"], f"l{i}_hu")
        return xw, hu

    def onnx_preactivation(self, g: OnnxGraph, i: int, x: str) -> str:
        """x W + h U + b, for a cell with one bias (``preactivation``)."""
        xw, hu = self.onnx_projections(g, i, x)
        return g.op("Add", [g.op("Add", [xw, hu], f"l{i}_a0"), f"layers.{i}.bias"], f"l{i}_a")

    def onnx_output(self, g: OnnxGraph, x: str) -> str:
        return x

    # --- cost (charrnn.training.autosize) ---------------------------------------------------

    def matrix_weights(self, layers: int, units: int, embed: int) -> int:
        """The matrix weights, each multiplied once per symbol: input and recurrent kernels."""
        return self.gates * units * (embed + (layers - 1) * units + layers * units)

    def other_params(self, layers: int, units: int) -> int:
        """Weights besides the matrices, embedding and output layer: the biases."""
        return layers * self.gates * units * (2 if self.split_bias else 1)
