"""One train step of charrnn's Keras model, timed in-process: checkouts side by side.

Finer than bench_train.py (no data pipeline, no logging): a child process per checkout and
round builds the model (random weights and ids, Adam, global-norm clipping, the carried state as
in training), warms up 5 steps and reports the median of 30 more.  Checkouts run interleaved
(A B A B ...) so a slow phase of a shared machine hits them alike.  --threads 1 runs the same
with one inter-op thread too: the step's single-thread work, which parallelism cannot change.

    python benchmarks/bench_step.py --tree /tmp/before --tree . --rounds 3
    python benchmarks/bench_step.py --tree . --layers 3 --size 512 --batch 50 --seq 50
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, os, statistics, sys, time
import tensorflow as tf
a = json.loads(sys.argv[1])
tf.config.threading.set_intra_op_parallelism_threads(a["intra"])
tf.config.threading.set_inter_op_parallelism_threads(a["inter"])
import keras
import numpy as np
from charrnn.nn.model import build_model
if a["precision"] != "float32":
    keras.mixed_precision.set_global_policy(a["precision"])
keras.utils.set_random_seed(0)
model = build_model(65, cell=a["cell"], num_layers=a["layers"], rnn_size=a["size"],
                    embedding_size=64, dropout=a["dropout"])
opt = keras.optimizers.Adam(0.002)
opt.build(model.trainable_variables)
v = model.trainable_variables

@tf.function
def step(x, y, s):
    with tf.GradientTape() as tape:
        logits, s = model(x, states=s, return_state=True, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    g, _ = tf.clip_by_global_norm([tf.convert_to_tensor(g) for g in tape.gradient(loss, v)], 5.0)
    opt.apply_gradients(zip(g, v))
    return loss, s

rng = np.random.default_rng(0)
x, y = (tf.constant(rng.integers(0, 65, (a["batch"], a["seq"])), tf.int32) for _ in range(2))
s = model.initial_state(a["batch"])
for _ in range(5):
    loss, s = step(x, y, s)
times = []
for _ in range(30):
    t0 = time.perf_counter()
    loss, s = step(x, y, s)
    float(loss)
    times.append(time.perf_counter() - t0)
print(json.dumps({"ms": 1e3 * statistics.median(times)}))
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", action="append", required=True, help="a checkout (repeatable)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cell", default="lstm")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq", type=int, default=100)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--precision", default="float32", help="float32 or mixed_bfloat16")
    p.add_argument("--intra", type=int, default=1, help="intra-op threads (charrnn's auto: 1)")
    p.add_argument("--threads", type=int, default=0, help="inter-op threads (0: TF's default)")
    args = p.parse_args()
    spec = {
        k: getattr(args, k)
        for k in ("cell", "layers", "size", "batch", "seq", "dropout", "precision", "intra")
    }
    spec["inter"] = args.threads
    times = {t: [] for t in args.tree}
    for r in range(args.rounds):
        for tree in args.tree:
            env = dict(os.environ, PYTHONPATH=os.path.abspath(tree), TF_CPP_MIN_LOG_LEVEL="3")
            out = subprocess.run(
                [sys.executable, "-P", "-c", CHILD, json.dumps(spec)],
                env=env,
                capture_output=True,
                text=True,
            )
            if out.returncode:
                sys.exit(f"{tree} failed:\n{out.stderr[-2000:]}")
            ms = json.loads(out.stdout.strip().splitlines()[-1])["ms"]
            times[tree].append(ms)
            print(f"round {r + 1} {tree}: {ms:.1f} ms", file=sys.stderr, flush=True)
    chars = args.batch * args.seq
    first = statistics.median(times[args.tree[0]])
    print(
        f"{args.layers}x{args.size} {args.cell}, batch {args.batch} x {args.seq}, "
        f"{args.precision}, intra {args.intra}, inter {args.threads or 'default'}"
    )
    for tree, ts in times.items():
        med = statistics.median(ts)
        print(
            f"  {tree}: median {med:.1f} ms/step, {chars / med * 1e3:,.0f} chars/s, "
            f"{first / med:.2f}x the first"
        )


if __name__ == "__main__":
    main()
