"""What every cell declares, and the backends a cell can have.

A cell is one module of this package holding one subclass of a family (``recurrent.Recurrent``
or ``minimal.Minimal``) and one line of the registry (``charrnn.nn.cells.REGISTRY``).  The
family writes what its cells share (the weight names, the Keras model's layers, the generic
step's loop, ONNX's outer graph, the cost model); the cell writes its maths once over ``ops``
(charrnn.nn.ops: NumPy or TensorFlow) and its ONNX nodes, and names its JavaScript step in
charrnn/web/sampler.html.  tests/test_cells.py runs every cell through every backend it lists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

# Every backend a cell may list in ``Cell.backends``; tests/test_cells.py checks each listed one
# against the reference (the generic step over NumPy, ``step`` with charrnn.nn.ops.NumpyOps).
BACKENDS = (
    "keras",  # the Keras model's layers (charrnn.nn.model.CharRNN, cuDNN on a GPU)
    "fused",  # a fused CPU training pass, forward and gradients (``fused_call``)
    "step_numpy",  # the generic step over NumPy (the reference)
    "step_tf",  # the same step over TensorFlow
    "numpy_engine",  # charrnn.generate.numpy_engine (the generic step, or ``numpy_fast``)
    "numpy_fast",  # a batch-1 NumPy fast path beside the reference (``numpy_fast``)
    "xla_engine",  # charrnn.generate.xla_engine
    "onnx",  # charrnn.export.onnx_graph (``onnx_layer``)
    "tflite",  # charrnn.export.formats' TFLite graph (the step over TensorFlow)
    "page",  # the web page's JavaScript step (``js_step`` in charrnn/web/sampler.html)
)
# What every cell has: all but the optional fast paths.
COMMON = tuple(b for b in BACKENDS if b not in ("fused", "numpy_fast"))


class OnnxGraph(Protocol):
    """The graph a cell writes its ONNX nodes into (charrnn.export.onnx_graph's, which this
    layer may not import): every value is named by a string."""

    def array(self, value: np.ndarray, name: str) -> str: ...

    def const(self, value: float) -> str: ...

    # The output's name, or with n_out > 1 the list of their names.
    def op(self, kind: str, inputs: list[str], name: str, n_out: int = 1, **attrs: Any) -> Any: ...


class Cell:
    """One recurrent cell: its facts, and its code for each backend (see the families)."""

    name: str  # the model.cell value
    gates: int  # weight blocks per layer: the matmul's width in units of rnn_size
    gate_order: str  # the blocks' order along the G*H axis (Keras'), recorded in weights files
    states: tuple = ("h",)  # the states one layer carries, in the order of every state list
    parallel: bool  # gates from the input only: a window's matmuls are one (Minimal)
    js_step: str  # the name of this cell's step function in charrnn/web/sampler.html
    backends: tuple = COMMON
    # A fused CPU training pass (model, time-major ids, states, training) -> (outputs, states),
    # or None; a batch-1 NumPy fast path class (charrnn.generate.numpy_engine), or None.
    fused_call = None
    numpy_fast = None

    def __repr__(self):
        return f"<cell {self.name}>"

    def embedding_size(self, rnn_size: int, asked: int) -> int:
        """The embedding width a model of this cell has for ``embedding_size: asked``."""
        return int(asked)
