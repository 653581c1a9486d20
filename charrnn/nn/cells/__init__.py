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

import importlib
from collections.abc import Iterator, Mapping

from charrnn.nn.cells.base import BACKENDS, Cell


class _Registry(Mapping):
    """name -> Cell, each cell's module imported when first asked for: naming the cells
    (the settings' check, ``charrnn --help``) imports nothing, not even NumPy."""

    def __init__(self, where: dict[str, str]):
        self._where, self._cells = where, {}

    def __getitem__(self, name: str) -> Cell:
        if name not in self._cells:
            module, cls = self._where[name].split(":")
            self._cells[name] = getattr(importlib.import_module(module), cls)()
        return self._cells[name]

    def __contains__(self, name: object) -> bool:
        return name in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


# The cells, a line each: name -> "module:class".
REGISTRY = _Registry(
    {
        "lstm": "charrnn.nn.cells.lstm:LSTM",
        "gru": "charrnn.nn.cells.gru:GRU",
        "rnn": "charrnn.nn.cells.rnn:RNN",
        "mingru": "charrnn.nn.cells.mingru:MinGRU",
        "minlstm": "charrnn.nn.cells.minlstm:MinLSTM",
    }
)
CELLS = tuple(REGISTRY)

__all__ = ["BACKENDS", "CELLS", "REGISTRY", "Cell", "embedding_size", "get"]


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
