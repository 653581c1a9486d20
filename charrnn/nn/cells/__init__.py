"""The recurrent cells charrnn knows: one module each, and this registry.

Two families (each module's docstring has its maths and weight names):
- recurrent (charrnn.nn.cells.recurrent): ``lstm``, ``gru``, ``rnn``, Keras' recurrent layers,
  gates from the input and the previous state (a matmul per time step);
- minimal (charrnn.nn.cells.minimal): ``mingru``, ``minlstm``, residual blocks whose gates
  depend on the input only, so a window's matmuls are one and only an element-wise recurrence
  is sequential.

A cell module holds what that cell is: its weights' shapes, its Keras layers, its step over
NumPy and TensorFlow, its fused CPU training pass where it has one, its ONNX nodes, its cost for
``model: auto``, what ``visualize`` sweeps, and the name of its JavaScript step in the web page.
Code outside this package asks ``get(name)`` and never branches on a cell's name
(tests/test_cells.py checks both).  Adding a cell: a module, its JavaScript step in
charrnn/web/sampler.html, and a line below (CONTRIBUTING.md).
"""

from charrnn.nn.cells.base import BACKENDS, Cell
from charrnn.nn.cells.gru import GRU
from charrnn.nn.cells.lstm import LSTM
from charrnn.nn.cells.mingru import MinGRU
from charrnn.nn.cells.minlstm import MinLSTM
from charrnn.nn.cells.rnn import RNN

REGISTRY = {cell.name: cell for cell in (LSTM(), GRU(), RNN(), MinGRU(), MinLSTM())}
CELLS = tuple(REGISTRY)
# Order of the weight blocks along the G*H axis (Keras'), recorded in weights files.
GATE_ORDER = {name: cell.gate_order for name, cell in REGISTRY.items()}
# TEMPORARY (until train/setup.py asks get()): the minimal family's names
PARALLEL = tuple(n for n, c in REGISTRY.items() if c.parallel)

__all__ = ["BACKENDS", "CELLS", "GATE_ORDER", "REGISTRY", "Cell", "embedding_size", "get"]


def get(name: str) -> Cell:
    """The cell called ``name`` (a model.cell value); ValueError names the known ones."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown cell {name!r}; choose one of {', '.join(CELLS)}") from None


def embedding_size(cell: str, rnn_size: int, asked: int) -> int:
    """The embedding width a model of ``cell`` has: a minimal cell's embedding is its
    residual stream, rnn_size wide, whatever was asked."""
    return get(cell).embedding_size(rnn_size, asked)
