"""Sampling speed: charrnn's compiled engine against the naive per-character Keras loop.

    python benchmarks/bench_sample.py            # full table (a few minutes on 2 cores)
    python benchmarks/bench_sample.py --repeats 2   # quicker

For 2x128 and 3x512 LSTMs (vocabulary 100, random weights: speed does not depend
on them) it measures chars/s at batch 1 and with --num-samples 16 for
  - reference: the Keras model called eagerly once per character, sampling in NumPy
    (what classic char-rnn ports do),
  - charrnn's XLA loop (steady state, after compiling) and its NumPy engine,
and the time from starting a real `charrnn sample` process to its first generated
character on stdout (TensorFlow import included), plus that process's total time
for 20,000 characters.  Medians over the repeats; ratios against the reference.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as `charrnn sample` does
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from charrnn.backend import tensorflow  # noqa: E402
from charrnn.generate.choice import Options  # noqa: E402
from charrnn.generate.sampler import Sampler  # noqa: E402
from charrnn.nn.tensors import weights_from_model  # noqa: E402

VOCAB = 100


def make_run(root: Path, layers, units):
    """A real run directory: `charrnn prepare` on random text, then one training step."""
    from charrnn.training.config import load_config
    from charrnn.training.loop import train

    rng = np.random.default_rng(0)
    text = "".join(chr(c) for c in rng.integers(32, 32 + VOCAB, 20000))
    (root / "text.txt").write_text(text, encoding="utf-8")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "charrnn",
            "prepare",
            str(root / "text.txt"),
            "-o",
            str(root / "data"),
            "-q",
        ],
        check=True,
    )
    cfg, _ = load_config(
        sets=[
            f"model.num_layers={layers}",
            f"model.rnn_size={units}",
            "model.embedding_size=64",
            "train.max_steps=1",
            "train.batch_size=8",
            "train.seq_length=32",
        ],
        flags={"data": str(root / "data"), "train.out": str(root / "run")},
    )
    train(cfg, log=lambda s: None)
    return root / "run"


def naive_keras(model, batch, steps):
    """Reference: one eager Keras call per character, sampling in NumPy."""
    tf = tensorflow()
    rng = np.random.default_rng(0)
    tok = np.zeros((batch, 1), np.int32)
    states = model.initial_state(batch)
    t = time.perf_counter()
    for _ in range(steps):
        logits, states = model(tf.constant(tok), states=states, return_state=True)
        p = tf.nn.softmax(logits[:, -1]).numpy().astype(np.float64)
        tok = np.array([[rng.choice(VOCAB, p=row / row.sum())] for row in p], np.int32)
    return steps * batch / (time.perf_counter() - t)


def engine_rate(weights, batch, engine, steps, repeats):
    s = Sampler(weights, batch, Options(1.0, seed=1), engine=engine)
    s.generate(1)  # compile / warm up
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        s.generate(steps)
        rates.append(steps * batch / (time.perf_counter() - t))
    return statistics.median(rates)


def first_char(run, repeats, length=20000):
    """Seconds from starting `charrnn sample` to its first generated character, and in total."""
    cmd = [
        shutil.which("charrnn") or sys.executable,
        *([] if shutil.which("charrnn") else ["-m", "charrnn"]),
        "sample",
        str(run),
        "-n",
        str(length),
        "--seed",
        "1",
        "--no-prime-echo",
    ]
    firsts, totals = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        p.stdout.read(1)
        firsts.append(time.perf_counter() - t)
        p.stdout.read()
        p.wait()
        totals.append(time.perf_counter() - t)
        assert p.returncode == 0, p.returncode
    return statistics.median(firsts), statistics.median(totals)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="repeats per figure (medians)")
    a = ap.parse_args()
    repeats = a.repeats
    tf = tensorflow()
    print(
        f"# charrnn sample benchmark: {os.cpu_count()} CPUs, TensorFlow {tf.__version__}, "
        f"repeats {repeats} (medians)\n"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for layers, units in ((2, 128), (3, 512)):
            root = Path(tmp) / f"{layers}x{units}"
            root.mkdir()
            run = make_run(root, layers, units)
            from charrnn.store.loader import load_run

            model = load_run(run).model
            weights = weights_from_model(model)
            for batch in (1, 16):
                ref_steps = 60 if units == 128 else 20
                ref = statistics.median(
                    naive_keras(model, batch, ref_steps) for _ in range(repeats)
                )
                xla_steps = 20000 if units == 128 else 2000
                xla = engine_rate(weights, batch, "xla", xla_steps, repeats)
                npy = engine_rate(weights, batch, "numpy", xla_steps // 20, repeats)
                rows.append((f"{layers}x{units}", batch, ref, npy, xla))
                print(
                    f"{layers}x{units} batch {batch}: reference {ref:,.0f}, numpy {npy:,.0f}, "
                    f"xla {xla:,.0f} chars/s",
                    file=sys.stderr,
                )
            first, total = first_char(run, repeats)
            rows.append((f"{layers}x{units}", "cli", first, total, None))
            print(
                f"{layers}x{units}: first char {first:.2f} s, 20,000 chars {total:.2f} s",
                file=sys.stderr,
            )

    print(
        "| model | samples | naive Keras loop (chars/s) | charrnn NumPy engine | charrnn XLA loop "
        "| XLA / naive |"
    )
    print("|---|---|---|---|---|---|")
    for name, batch, ref, npy, xla in rows:
        if batch != "cli":
            print(
                f"| {name} LSTM | {batch} | {ref:,.0f} | {npy:,.0f} | {xla:,.0f} | "
                f"{xla / ref:,.0f}x |"
            )
    print("\n| model | `charrnn sample -n 20000`: first character | all 20,000 characters |")
    print("|---|---|---|")
    for name, batch, first, total, _ in rows:
        if batch == "cli":
            print(f"| {name} LSTM | {first:.2f} s | {total:.2f} s |")


if __name__ == "__main__":
    main()
