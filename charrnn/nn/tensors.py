"""The one naming of a model's weights, and the moves between its three homes.

Every weights file, export and engine names the arrays of a model by its cell family's names
(charrnn.nn.cells.recurrent and .minimal list them: ``embedding``, ``layers.<i>.kernel``, ...,
``logits.kernel``, ``logits.bias``; Keras layout, float32).  Here they move between a Keras
model (charrnn.nn.model), a dict of NumPy arrays under these names (what .safetensors files,
ONNX initialisers and the loader hold), and the engines' arrangement (charrnn.nn.step.Weights).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from charrnn.nn.cells import get
from charrnn.nn.ops import f32
from charrnn.nn.step import Weights

if TYPE_CHECKING:
    import keras

# The model arguments (charrnn.nn.model.build_model) that fix the weights' shapes.
SHAPE_KEYS = ("vocab_size", "cell", "num_layers", "rnn_size", "embedding_size")


def expected_shapes(args: dict) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape for model arguments ``args``."""
    v, e, h, n = (int(args[k]) for k in ("vocab_size", "embedding_size", "rnn_size", "num_layers"))
    return get(args["cell"]).tensor_shapes(v, e, h, n)


def _variables(model: keras.Model) -> dict:
    """name -> the Keras variable that holds it."""
    return get(model.cell).variables(model)


def tensors_from_model(model: keras.Model) -> dict[str, np.ndarray]:
    """The arrays of a built CharRNN under their names."""
    return {k: np.ascontiguousarray(v.numpy(), np.float32) for k, v in _variables(model).items()}


def fits(args: dict, tensors: dict) -> list[str]:
    """The names that are missing or of the wrong shape for model arguments ``args``
    (with "extra tensors" when there are more than the model has); [] when they fit."""
    want = expected_shapes(args)
    bad = [k for k in want if k not in tensors or tuple(np.shape(tensors[k])) != want[k]]
    return bad or (["extra tensors"] if set(tensors) != set(want) else [])


def assign_to_model(model: keras.Model, tensors: dict) -> None:
    """Load named arrays into a built CharRNN; they must fit it (readers check files with
    :func:`fits` first and say what is wrong)."""
    bad = fits(model_args_of(model), tensors)
    if bad:
        raise ValueError(f"this set of weights does not fit this model: {', '.join(bad)}")
    for k, var in _variables(model).items():
        var.assign(tensors[k])


def model_args_of(model: keras.Model) -> dict:
    from charrnn.nn.model import model_args

    return model_args(model)


def engine_weights(cell: str, tensors: dict) -> Weights:
    """The engines' arrangement (charrnn.nn.step.Weights) of named arrays."""
    table, layers, final_norm = get(cell).arrange(tensors)
    return Weights(
        cell, table, layers, f32(tensors["logits.kernel"]), f32(tensors["logits.bias"]), final_norm
    )


def weights_from_model(model: keras.Model) -> Weights:
    """The engines' Weights of a built CharRNN."""
    return engine_weights(model.cell, tensors_from_model(model))
