"""int8 weights, the arithmetic: symmetric, one float32 scale per output channel.

``quantize(W, axis)`` -> ``q = round(W / s)`` in [-127, 127] (int8, zero point 0) and ``s``
along ``axis``; ``dequantize`` gives back ``q * s`` in float32, as every runtime computes it.
Which tensors are matrices and how each export format stores them: charrnn.export.int8; an
int8 ``.safetensors`` file (``<name>`` int8, ``<name>.scale`` float32, the metadata key
``int8`` = JSON {name: channel axis}) is read back by charrnn.store.weightsfile.
"""

from __future__ import annotations

import numpy as np

QMAX = 127  # symmetric: -128 is never used, so q and -q are both representable
SCALE = ".scale"  # the suffix of a quantized tensor's scales in an int8 .safetensors file
META_KEY = "int8"  # metadata: JSON {name: channel axis} of the tensors stored as int8


def quantize(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(q int8, scale float32 [w.shape[axis]]) of ``w``, symmetric per channel along ``axis``."""
    w = np.asarray(w, np.float32)
    other = tuple(a for a in range(w.ndim) if a != axis)
    peak = np.abs(w).max(axis=other)
    scale = np.where(peak > 0, peak / QMAX, 1.0).astype(np.float32)  # an all-zero channel: 1
    q = np.clip(np.rint(w / np.expand_dims(scale, other)), -QMAX, QMAX).astype(np.int8)
    return q, scale


def dequantize(q: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    """``q * scale`` in float32, as every runtime computes it."""
    other = tuple(a for a in range(q.ndim) if a != axis)
    return q.astype(np.float32) * np.expand_dims(np.asarray(scale, np.float32), other)
