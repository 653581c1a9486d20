"""The parallel cells' recurrence h_t = a_t * h_{t-1} + b_t, forward and backward over a
training window: the plain loop charrnn uses (charrnn.nn.cells.minimal.linear_scan) against a
parallel Hillis-Steele scan (doubling_scan), side by side in one run.

  python benchmarks/bench_scan.py [--units 128 512] [--batch 64] [--window 100] [--repeats 20]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def doubling_scan(a, b, h0):
    """The same recurrence as a Hillis-Steele scan: log2(T) rounds over the whole window."""
    import tensorflow as tf

    T = a.shape[0]
    b = tf.concat([b[:1] + a[:1] * h0[None], b[1:]], 0)
    k = 1
    while k < T:
        b = b + a * tf.concat([tf.zeros_like(b[:k]), b[:-k]], 0)
        a = a * tf.concat([tf.ones_like(a[:k]), a[:-k]], 0)
        k *= 2
    return b


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--units", type=int, nargs="+", default=[128, 512], help="H")
    p.add_argument("--batch", type=int, default=64, help="B")
    p.add_argument("--window", type=int, default=100, help="T")
    p.add_argument("--repeats", type=int, default=20, help="timed calls; the median is shown")
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    from charrnn.nn.cells.minimal import linear_scan

    rng = np.random.default_rng(0)
    print(
        f"T={args.window} B={args.batch}, forward + backward, median of {args.repeats}; "
        f"{os.cpu_count()} cpu, load {os.getloadavg()[0]:.1f}"
    )
    for h in args.units:
        shape = (args.window, args.batch, h)
        a = tf.constant(rng.uniform(0, 1, shape).astype(np.float32))
        b = tf.constant(rng.normal(size=shape).astype(np.float32))
        h0 = tf.zeros(shape[1:])
        times = {}
        for name, scan in (("loop", linear_scan), ("doubling", doubling_scan)):

            @tf.function
            def step(a, b, h0, scan=scan):
                with tf.GradientTape() as tape:
                    tape.watch([a, b])
                    y = scan(a, b, h0)
                    loss = tf.reduce_sum(y * y)
                return tape.gradient(loss, [a, b])

            step(a, b, h0)[0].numpy()  # trace
            ts = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                step(a, b, h0)[0].numpy()
                ts.append(time.perf_counter() - t0)
            times[name] = statistics.median(ts)
        print(
            f"H={h:4}  loop {1e3 * times['loop']:7.2f} ms   doubling "
            f"{1e3 * times['doubling']:7.2f} ms   "
            f"doubling/loop {times['doubling'] / times['loop']:.1f}x"
        )


if __name__ == "__main__":
    main()
