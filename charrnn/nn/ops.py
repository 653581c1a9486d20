"""NumPy and TensorFlow behind the same few names, so a cell's step is written once for the
NumPy engine, the XLA loop, the exports and visualize (charrnn.nn.cells) and they cannot drift
apart."""

from __future__ import annotations

import functools
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

    # What a cell's step computes on: NumPy arrays under NumpyOps, tensors under tf_ops()'s.
    Array = np.ndarray | tf.Tensor

# ``ops`` in a cell's step: NumpyOps or tf_ops()'s TFOps, a class used as a namespace (the same
# names over NumPy or TensorFlow).  Any, not a Protocol: the members are the two libraries'
# functions with their own signatures, and a Protocol of ~25 names would repeat NumpyOps.
Ops = Any


def f32(a: np.ndarray) -> np.ndarray:
    """A float32, C-contiguous array (the array itself when it is one already)."""
    return np.ascontiguousarray(a, dtype=np.float32)


class NumpyOps:
    float32, int32, uint32 = np.float32, np.int32, np.uint32
    take = staticmethod(lambda a, i: a[i])
    tanh = staticmethod(np.tanh)
    rsqrt = staticmethod(lambda x: np.float32(1) / np.sqrt(x))
    mean_last = staticmethod(lambda x: np.mean(x, axis=-1, keepdims=True, dtype=np.float32))
    exp = staticmethod(np.exp)
    split = staticmethod(lambda x, n: np.split(x, n, axis=1))
    concat = staticmethod(lambda xs: np.concatenate(xs, axis=1))
    cumsum = staticmethod(lambda x: np.cumsum(x, axis=1, dtype=np.float32))
    sum_last = staticmethod(lambda x: np.sum(x, axis=-1, dtype=np.float32))
    rmax = staticmethod(lambda x: np.max(x, axis=1, keepdims=True))
    rsum = staticmethod(lambda x, dtype=np.float32: np.sum(x, axis=1, dtype=dtype))
    argmax = staticmethod(lambda x: np.argmax(x, axis=1).astype(np.int32))
    where = staticmethod(np.where)
    minimum = staticmethod(np.minimum)
    cast = staticmethod(lambda x, dtype: np.asarray(x).astype(dtype))
    take_rows = staticmethod(lambda a, j: np.take_along_axis(a, j[:, None], axis=1)[:, 0])
    shr = staticmethod(np.right_shift)
    xor = staticmethod(np.bitwise_xor)

    @staticmethod
    def sigmoid(x: np.ndarray) -> np.ndarray:
        return np.float32(0.5) * (np.tanh(np.float32(0.5) * x) + np.float32(1))  # no overflow

    @staticmethod
    def top_k(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        # Stable, so ties keep the lower id first, exactly like tf.math.top_k.
        idx = np.argsort(-x, axis=1, kind="stable")[:, :k].astype(np.int32)
        return np.take_along_axis(x, idx, axis=1), idx


@functools.cache
def tf_ops() -> tuple[ModuleType, type]:
    from charrnn.backend import tensorflow

    tf = tensorflow()

    class TFOps:
        float32, int32, uint32 = tf.float32, tf.int32, tf.uint32
        take = staticmethod(tf.gather)
        tanh = staticmethod(tf.tanh)
        rsqrt = staticmethod(tf.math.rsqrt)
        mean_last = staticmethod(lambda x: tf.reduce_mean(x, axis=-1, keepdims=True))
        sigmoid = staticmethod(tf.sigmoid)
        exp = staticmethod(tf.exp)
        split = staticmethod(lambda x, n: tf.split(x, n, axis=1))
        concat = staticmethod(lambda xs: tf.concat(xs, axis=1))
        cumsum = staticmethod(lambda x: tf.cumsum(x, axis=1))
        sum_last = staticmethod(lambda x: tf.reduce_sum(x, axis=-1))
        rmax = staticmethod(lambda x: tf.reduce_max(x, axis=1, keepdims=True))
        rsum = staticmethod(lambda x, dtype=tf.float32: tf.reduce_sum(tf.cast(x, dtype), axis=1))
        argmax = staticmethod(lambda x: tf.argmax(x, axis=1, output_type=tf.int32))
        where = staticmethod(tf.where)
        minimum = staticmethod(tf.minimum)
        cast = staticmethod(tf.cast)
        take_rows = staticmethod(lambda a, j: tf.gather(a, j, batch_dims=1))
        shr = staticmethod(tf.bitwise.right_shift)
        xor = staticmethod(tf.bitwise.bitwise_xor)
        top_k = staticmethod(lambda x, k: tf.math.top_k(x, k))

    return tf, TFOps
