"""How fast this machine multiplies matrices the way training will: `model: auto`'s probe.

``model: auto`` scales its calibration table (charrnn.training.autosize) by this machine's
speed over the calibration machine's.  The speed is measured with TensorFlow's own kernels
in the dtype of the run's matmuls (bfloat16 where its precision resolves to mixed_bfloat16),
on one thread, in a child process: TensorFlow fixes its thread pools once per process, and the
run's pool size depends on the model the probe helps choose.  A probe in NumPy measured its
BLAS instead: on a CPU the BLAS did not recognise (an AMD Zen 5) it ran AVX2 kernels that
read 3.8x slower than AVX-512 ones, while TensorFlow trained at full speed
(benchmarks/RESULTS.md, "model: auto's probe").

    python -m charrnn.training.probe bfloat16     # prints {"macs_per_s": ...}
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from charrnn.backend import tensorflow
from charrnn.errors import CharrnnError

# One LSTM step's matmul at batch 64: [64, embedding + units] x [embedding + units, 4 units]
# around the 2x256 reference size.
SHAPE = (64, 512, 1024)
SECONDS = 0.3
DTYPES = ("float32", "bfloat16")


def measure(dtype: str = "float32", seconds: float = SECONDS) -> float:
    """Multiply-adds per second, measured here in ``dtype`` (float32 or bfloat16); the
    process's TensorFlow must not have started yet."""
    if dtype not in DTYPES:
        raise CharrnnError(f"the probe's dtype is float32 or bfloat16, not {dtype!r}")
    tf = tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    m, k, n = SHAPE
    a = tf.random.stateless_normal((m, k), seed=(0, 1), dtype=getattr(tf, dtype))
    b = tf.random.stateless_normal((k, n), seed=(0, 2), dtype=getattr(tf, dtype))
    for _ in range(5):  # warm up: the kernel's first call sets up its plan
        tf.matmul(a, b).numpy()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or count < 10:
        tf.matmul(a, b).numpy()
        count += 1
    return count * m * k * n / elapsed


def run(dtype: str = "float32") -> float:
    """``measure`` in a child process (a few seconds, most of them TensorFlow's import).
    Raises CharrnnError if the child fails."""
    # the child imports this charrnn, wherever it was imported from
    here = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=path)
    command = [sys.executable, "-m", "charrnn.training.probe", dtype]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    except (OSError, subprocess.SubprocessError) as e:
        why = str(e)
    else:
        try:
            return float(json.loads(done.stdout.strip().splitlines()[-1])["macs_per_s"])
        except (IndexError, ValueError, KeyError, TypeError):
            why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    raise CharrnnError(
        f"model auto could not measure this machine's speed ({why}); give it as "
        "model.auto_throughput (symbols/s of a 2x256 LSTM)"
    )


if __name__ == "__main__":
    print(json.dumps({"macs_per_s": measure(*sys.argv[1:2])}))
