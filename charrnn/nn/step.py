"""One step of the network, for every engine: the engines' arrangement of the weights
(``Weights``) and ``cell_step``, which runs the cell's own step (charrnn.nn.cells) over NumPy
(``NumpyOps``) or TensorFlow (``tf_ops()``).

The NumPy engine and the XLA loop (charrnn.generate), the exports' checks and TFLite graph
(charrnn.export) all run ``cell_step``, so every engine computes the same cell; `visualize`
runs the cell's ``sweep`` (the same maths a layer at a time); the web page's JavaScript steps
(charrnn/web/sampler.html) are held to it by tests/test_cells.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from charrnn.nn.cells import get
from charrnn.nn.ops import NumpyOps, tf_ops

if TYPE_CHECKING:
    from charrnn.nn.ops import Array, Ops

__all__ = ["LAYER_ARRAYS", "NumpyOps", "Weights", "cell_step", "tf_ops"]

# The engines' names for the arrays of ``Weights`` ("table", "dense", "dense_b",
# "final_norm" and "<layer>/<name>"): the XLA child process and the web page receive
# them under these names (Weights.arrays / Weights.from_arrays).
LAYER_ARRAYS = (
    "W",
    "U",
    "WU",
    "b",
    "br",  # the parallel cells' blocks add:
    "norm",
    "ff_norm",
    "F1",
    "f1b",
    "F2",
    "f2b",
)


# --- weights --------------------------------------------------------------------
# A step needs only arrays, arranged by the cell's family (its ``arrange``): a recurrent
# cell's first input projection of every symbol precomputed into one table, so a step starts
# with a row lookup; a minimal cell's table is the embedding itself, its residual stream.


@dataclass
class Weights:
    cell: str  # one of charrnn.nn.cells.CELLS
    table: np.ndarray  # (vocab, gates): first layer's input projection; parallel
    #                          cells: (vocab, units), the embedding
    layers: list  # per layer: dict(W=input kernel (None in layer 0), U=recurrent kernel,
    #                  WU=both stacked (LSTM/RNN layers > 0), b=input bias, br=GRU recurrent bias;
    #                  parallel cells: W, b, norm, ff_norm, F1, f1b, F2, f2b, U=None)
    dense: np.ndarray  # (units, vocab)
    dense_b: np.ndarray  # (vocab,)
    final_norm: np.ndarray | None = None  # (units,): parallel cells' norm before the logits

    @property
    def vocab_size(self) -> int:
        return self.dense.shape[1]

    @property
    def units(self) -> int:
        return self.dense.shape[0]

    @property
    def states_per_layer(self) -> int:
        return len(get(self.cell).states)

    def zero_states(self, batch: int = 1) -> list[np.ndarray]:
        return [
            np.zeros((batch, self.units), np.float32)
            for _ in range(len(self.layers) * self.states_per_layer)
        ]

    def arrays(self) -> dict:
        """Every array under its engine name (see LAYER_ARRAYS), None-valued ones left out."""
        out = {"table": self.table, "dense": self.dense, "dense_b": self.dense_b}
        if self.final_norm is not None:
            out["final_norm"] = self.final_norm
        for i, layer in enumerate(self.layers):
            out.update({f"{i}/{k}": layer[k] for k in LAYER_ARRAYS if layer.get(k) is not None})
        return out

    @classmethod
    def from_arrays(cls, cell: str, arrays: dict) -> Weights:
        """The inverse of :meth:`arrays` (arrays may be NumPy or TensorFlow tensors)."""
        n = 1 + max(int(k.split("/")[0]) for k in arrays if "/" in k)
        layers = [{k: arrays.get(f"{i}/{k}") for k in LAYER_ARRAYS if k != "WU"} for i in range(n)]
        for i, layer in enumerate(layers):
            if f"{i}/WU" in arrays:
                layer["WU"] = arrays[f"{i}/WU"]
        return cls(
            cell,
            arrays["table"],
            layers,
            arrays["dense"],
            arrays["dense_b"],
            arrays.get("final_norm"),
        )

    def macs_per_step(self) -> int:
        """Multiply-adds of one step at batch 1 (to size the NumPy phase)."""
        return self.dense.size + sum(
            layer[k].size
            for layer in self.layers
            for k in ("W", "U", "F1", "F2")
            if layer.get(k) is not None
        )


def cell_step(ops: Ops, w: Weights, tok: Array, states: list[Array]) -> tuple[Array, list[Array]]:
    """One step of every layer: symbol ids (batch,) and the flat state list ->
    logits (batch, vocab) and the new state list."""
    return get(w.cell).step(ops, w, tok, states)
