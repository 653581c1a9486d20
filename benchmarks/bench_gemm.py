"""The float32 GEMM peak of this CPU beside what charrnn's fused LSTM pass makes of it.

Two parts, each in a child process per setting (TensorFlow fixes its threads and oneDNN choice
when it starts):

- gemm: GFLOP/s of one [M, K] x [K, N] matmul repeated in a `tf.function` loop (acc += a @ b;
  one matmul at a time, split over 1 or 2 intra-op threads), median of 5, at the shapes of a
  training step: the 2x128 step's [64, 128] x [128, 512], the 3x512 step's [50, 512] x
  [512, 2048], and its weight gradients' [2500, 512] x [512, 2048]; with --torch also
  `torch.mm` (a benchmark reference only, never a charrnn dependency).
- profile: `charrnn.nn.cells.lstm.lstm_stack` alone at a shape, forward, and forward plus
  backward (median of 9), with its matmul work in GFLOP/s (the recurrent and layers 1+'s input
  projections forward, twice that backward), so the gap to the GEMM figures is the loop's
  element-wise and bookkeeping work.

    python benchmarks/bench_gemm.py                          # this CPU as it is
    TF_ENABLE_ONEDNN_OPTS=0 ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 \\
        MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/bench_gemm.py --torch   # as AVX2-only

On Linux TensorFlow turns its oneDNN ops on by default only on CPUs with AVX512_VNNI,
AVX512_BF16, AVX_VNNI or AMX; `TF_ENABLE_ONEDNN_OPTS=0` is therefore what an AVX2 laptop runs.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAPES = [(64, 128, 512, 3000), (50, 512, 2048, 300), (2500, 512, 2048, 6)]

TF_GEMM = r"""
import json, statistics, sys, time
import tensorflow as tf
threads, (m, k, n, reps) = json.loads(sys.argv[1])
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(1)  # one matmul at a time, on `threads`
a, b = tf.random.normal([m, k]), tf.random.normal([k, n])

@tf.function(autograph=False)  # (autograph cannot read the source of `python -c`)
def loop():
    return tf.while_loop(
        lambda i, acc: i < reps, lambda i, acc: (i + 1, acc + tf.matmul(a, b)),
        (tf.constant(0), tf.zeros([m, n])),
        parallel_iterations=1,
    )[1]

loop().numpy()
ts = []
for _ in range(5):
    t = time.perf_counter(); loop().numpy(); ts.append(time.perf_counter() - t)
print(2 * m * k * n * reps / statistics.median(ts) / 1e9)
"""

TORCH_GEMM = r"""
import json, statistics, sys, time
import torch
threads, (m, k, n, reps) = json.loads(sys.argv[1])
torch.set_num_threads(threads)
a, b, out = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
for _ in range(3):
    torch.mm(a, b, out=out)
ts = []
for _ in range(5):
    t = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b, out=out)
    ts.append(time.perf_counter() - t)
print(2 * m * k * n * reps / statistics.median(ts) / 1e9)
"""

PROFILE = r"""
import json, statistics, sys, time
import tensorflow as tf
from charrnn.nn.cells.lstm import lstm_stack
L, H, B, T, threads = json.loads(sys.argv[1])
if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
g = tf.random.Generator.from_seed(0)
V, E = 65, 64
emb = tf.Variable(g.normal([V, E]) * 0.1)
shapes = [([E if k == 0 else H, 4 * H], [H, 4 * H], [4 * H]) for k in range(L)]
layers = [tuple(tf.Variable(g.normal(s) * 0.05) for s in layer) for layer in shapes]
ids = tf.constant(g.uniform([T, B], 0, V, dtype=tf.int32))
states = [tf.zeros([B, H]) for _ in range(2 * L)]
weights = [emb] + [w for layer in layers for w in layer]

@tf.function
def forward():
    return tf.reduce_sum(lstm_stack(ids, emb, layers, states)[0])

@tf.function
def both():
    with tf.GradientTape() as tape:
        out = lstm_stack(ids, emb, layers, states)[0]
        loss = tf.reduce_sum(out * out)
    return tf.add_n([tf.reduce_sum(d) for d in tape.gradient(loss, weights)])

def median_ms(f):
    f().numpy(); f().numpy()
    ts = []
    for _ in range(9):
        t = time.perf_counter(); f().numpy(); ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000

print(json.dumps([median_ms(forward), median_ms(both)]))
"""


def child(code, arg):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    p = subprocess.run(
        [sys.executable, "-c", code, json.dumps(arg)], capture_output=True, text=True, env=env
    )
    if p.returncode:
        sys.exit(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torch", action="store_true", help="also torch.mm (pip install torch)")
    ap.add_argument(
        "--profile",
        default="2x128x64x100,3x512x50x50",
        help="lstm_stack shapes, LAYERSxSIZExBATCHxSEQ, comma-separated ('' for none)",
    )
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_train import machine

    print(f"# {machine()}")
    print("| [M, K] x [K, N] | TF, 1 thread | TF, 2 threads |" + (" torch 1 | torch 2 |" * a.torch))
    print("|---|---:|---:|" + "---:|---:|" * a.torch)
    for shape in SHAPES:
        m, k, n, _ = shape
        row = [child(TF_GEMM, [t, shape]) for t in (1, 2)]
        row += [child(TORCH_GEMM, [t, shape]) for t in (1, 2)] if a.torch else []
        print(f"| [{m}, {k}] x [{k}, {n}] | " + " | ".join(f"{x:.0f}" for x in row) + " |")
    if not a.profile:
        return
    print("\n| lstm_stack | threads | forward ms | GFLOP/s | forward + backward ms | GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for spec in a.profile.split(","):
        L, H, B, T = map(int, spec.split("x"))
        flops = 2 * (L * H * 4 * H + (L - 1) * H * 4 * H) * B * T  # forward; backward twice
        for threads in (0, 1):
            fwd, both = child(PROFILE, [L, H, B, T, threads])
            print(
                f"| {L}x{H}, batch {B} x {T} | {threads or 'default'} | {fwd:.1f} | "
                f"{flops / fwd / 1e6:.0f} | {both:.1f} | {3 * flops / both / 1e6:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
