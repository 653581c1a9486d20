"""Portable weights and export: start-up of `charrnn sample` and export times.

    python benchmarks/bench_export.py --ref /path/to/a/checkout/of/211de7e [--repeats 3]

Side by side in one run (medians over the repeats, the two interleaved):
  - time from starting `charrnn sample -n 200` to its first generated character, for a
    2x128 and a 3x512 LSTM: the reference checkout sampling its own run (it parses the
    TF checkpoint by hand), this checkout sampling its run directory (the checkpoint's
    weights.safetensors), the exported model.safetensors alone, and a run without
    weights files (an older run: TensorFlow loads first);
  - `charrnn export` of the 3x512 model to safetensors, ONNX and TFLite, wall time of
    the whole process (TensorFlow import, restore, conversion, the 200-step check).
Runs are made with each checkout's own `charrnn prepare` + `charrnn train --max-steps 1`
on random text (speed does not depend on the weights).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
VOCAB = 100


def charrnn(code, *args, **kw):
    # cwd "/": `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH
    env = dict(os.environ, PYTHONPATH=str(code))
    return subprocess.run(
        [sys.executable, "-m", "charrnn", *map(str, args)], env=env, check=True, cwd="/", **kw
    )


def make_run(code, root, layers, units):
    rng = np.random.default_rng(0)
    text = "".join(chr(c) for c in rng.integers(32, 32 + VOCAB, 20000))
    root.mkdir(parents=True)
    (root / "text.txt").write_text(text, encoding="utf-8")
    charrnn(code, "prepare", root / "text.txt", "-o", root / "data", "-q")
    sets = [
        f"model.num_layers={layers}",
        f"model.rnn_size={units}",
        "model.embedding_size=64",
        "train.batch_size=8",
        "train.seq_length=32",
    ]
    charrnn(
        code,
        "train",
        "--data",
        root / "data",
        "--out",
        root / "run",
        "--max-steps",
        1,
        *[a for s in sets for a in ("--set", s)],
        stderr=subprocess.DEVNULL,
    )
    return root / "run"


def first_char(code, target):
    env = dict(os.environ, PYTHONPATH=str(code))
    t = time.perf_counter()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "charrnn",
            "sample",
            str(target),
            "-n",
            "200",
            "--seed",
            "1",
            "--no-prime-echo",
        ],
        env=env,
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    p.stdout.read(1)
    first = time.perf_counter() - t
    p.stdout.read()
    assert p.wait() == 0
    return first


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", required=True, help="a checkout of the reference commit (211de7e)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats per figure (medians)")
    a = ap.parse_args()
    ref = Path(a.ref).resolve()
    for code in (ref, HERE):  # each side imports its own charrnn
        out = subprocess.run(
            [sys.executable, "-c", "import charrnn; print(charrnn.__file__)"],
            env=dict(os.environ, PYTHONPATH=str(code)),
            cwd="/",
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.startswith(str(code)), (code, out)
    print(
        f"# export benchmark: {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the start, repeats {a.repeats} (medians)\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = []
        for layers, units in ((2, 128), (3, 512)):
            name = f"{layers}x{units}"
            ref_run = make_run(ref, tmp / f"ref-{name}", layers, units)
            run = make_run(HERE, tmp / name, layers, units)
            model = tmp / f"{name}.safetensors"
            charrnn(HERE, "export", run, "-o", model, stderr=subprocess.DEVNULL)
            cases = {
                "reference, run directory": (ref, ref_run),
                "this, run directory": (HERE, run),
                "this, model.safetensors": (HERE, model),
                "this, a run without weights files": (HERE, ref_run),
            }
            times = {k: [] for k in cases}
            for _ in range(a.repeats):
                for k, (code, target) in cases.items():
                    times[k].append(first_char(code, target))
            for k, v in times.items():
                rows.append((name, k, statistics.median(v)))
                print(f"{name} {k}: {statistics.median(v):.2f} s", file=sys.stderr)
        base = {n: t for n, k, t in rows if k.startswith("reference")}
        print("| model | `charrnn sample -n 200` from | first character | vs reference |")
        print("|---|---|---|---|")
        for n, k, t in rows:
            print(f"| {n} LSTM | {k} | {t:.2f} s | {t / base[n]:.2f}x |")

        run = tmp / "3x512" / "run"
        print(
            "\n| 3x512 LSTM export | whole process (wall) | its CPU time | inside export() (wall) "
            "| size |"
        )
        print("|---|---|---|---|---|")
        for fmt in ("safetensors", "onnx", "tflite"):
            walls, cpus, inner = [], [], []
            for i in range(a.repeats):
                t, r = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
                p = charrnn(
                    HERE,
                    "export",
                    run,
                    "-o",
                    tmp / f"m{i}.{fmt}",
                    "--json",
                    capture_output=True,
                    text=True,
                )
                walls.append(time.perf_counter() - t)
                r2 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(r2.ru_utime - r.ru_utime + r2.ru_stime - r.ru_stime)
                info = json.loads(p.stdout)
                inner.append(info["seconds"])
            print(
                f"| {fmt} | {statistics.median(walls):.1f} s | {statistics.median(cpus):.1f} s "
                f"| {statistics.median(inner):.1f} s | {info['bytes'] / 1e6:.1f} MB |"
            )


if __name__ == "__main__":
    main()
