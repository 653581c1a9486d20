"""Fused CPU training passes (the LSTM's and GRU's, in charrnn.nn.cells.lstm and .gru): the
same weights and maths as Keras' layers, and the toolkit they share.

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
- the LSTM runs its whole stack in one loop as a wavefront (``lstm_stack``):
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

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

from charrnn.backend import tensorflow

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


def run(
    layer: Callable[..., tuple[tuple[tf.Tensor, ...], Callable]],
    compute_dtype: str | tf.DType,
    *args: tf.Tensor | keras.Variable,
) -> tuple[tf.Tensor, ...]:
    """``layer(tf, cdt, mm, *args)`` -> (outputs, grad) under tf.custom_gradient, its
    arguments cast to float32; ``mm`` a matmul with ``compute_dtype`` operands."""
    tf = tensorflow()
    cdt = tf.as_dtype(compute_dtype)

    def mm(a, w, **kw):
        return matmul(tf, cdt, a, w, **kw)

    # float32 in and out (under a mixed policy Keras hands us bfloat16-cast weights)
    f32 = [tf.cast(v, tf.float32) for v in args]
    return tf.custom_gradient(lambda *a: layer(tf, cdt, mm, *a))(*f32)


def matmul(tf: ModuleType, cdt: tf.DType, a: tf.Tensor, w: tf.Tensor, **kw: bool) -> tf.Tensor:
    """A matmul with ``cdt`` operands and a float32 result."""
    return tf.cast(tf.matmul(tf.cast(a, cdt), tf.cast(w, cdt), **kw), tf.float32)


def saved(tf: ModuleType, size: int | tf.Tensor) -> tf.TensorArray:
    """A TensorArray of what the forward pass keeps for the backward pass (kept after a read,
    so a value can be read twice, and again if the gradient is taken twice)."""
    return tf.TensorArray(tf.float32, size=size, clear_after_read=False)
