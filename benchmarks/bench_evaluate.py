"""`charrnn evaluate` on a big held-out file: chars/s and peak memory, this checkout beside a
reference checkout (the whole-file path) in the same run.

The text is real: the .py files of the installed packages (site-packages), concatenated to
--mb MB (nothing shipped).  Two 1x64 LSTM runs are made on it (reused when --work has them):
`big`, the whole vocabulary (thousands of symbols, as in issue 27), and `small`, prepare
--min-count 5000 (a hundred-odd symbols and the unknown symbol).  A model barely trained
scores as fast as a good one, so each trains --steps steps.

Each measurement is a child process (PYTHONPATH = the checkout) that loads the run, then times
`charrnn.analysis.evaluate.evaluate` on one file (TensorFlow's start and the load are not
counted).  Memory: its RSS after the load (TensorFlow's own, the model built), then its peak
RSS while scoring (Linux: the peak is reset after the load through /proc/self/clear_refs); the
difference is what scoring the file costs.  Files are the last N MB of the text.

    git worktree add /tmp/base <commit before the change>
    python benchmarks/bench_evaluate.py --base /tmp/base --work /tmp/bench-evaluate \\
        --sizes big:1:new,big:1:base,big:3:new,small:5:base,small:5:new,small:100:new
"""

import argparse
import json
import os
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
from charrnn.store.loader import load
from charrnn.analysis.evaluate import evaluate


def status(key):  # kB
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])


run = load(sys.argv[1], "best")
run.model  # built before the baseline is taken
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from the current RSS
base = status("VmRSS")
t = time.perf_counter()
r = evaluate(run, [sys.argv[2]])
dt = time.perf_counter() - t
print(json.dumps({"chars": r["total"]["chars"], "seconds": dt, "loss": r["total"]["loss_nats"],
                  "base_mb": base / 1024, "peak_mb": status("VmHWM") / 1024}))
"""


def corpus(work, mb):
    out = work / "corpus.txt"
    if out.exists():
        return out
    n, root = 0, Path(site.getsitepackages()[0])
    with open(out, "w", encoding="utf-8") as f:
        for p in sorted(root.rglob("*.py")):
            try:
                text = p.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            f.write(text)
            n += len(text)
            if n >= mb * 1_000_000:
                break
    return out


def charrnn(*args, cwd):
    subprocess.run(
        [sys.executable, "-m", "charrnn", *map(str, args)],
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def make_run(work, name, src, steps):
    if (work / "runs" / name / "model.json").exists():
        return work / "runs" / name
    extra = ["--min-count", "5000"] if name == "small" else []
    charrnn(
        "prepare",
        src,
        "-o",
        f"data/{name}",
        "--force",
        "-q",
        "--val-fraction",
        "0.0002",
        *extra,
        cwd=work,
    )
    charrnn(
        "train",
        "--data",
        f"data/{name}",
        "--out",
        f"runs/{name}",
        "--force",
        "--max-steps",
        steps,
        "--set",
        "model.num_layers=1",
        "--set",
        "model.rnn_size=64",
        "--set",
        "train.batch_size=32",
        "--set",
        "train.seq_length=64",
        "--set",
        "train.sample_length=0",
        cwd=work,
    )
    return work / "runs" / name


def held_out(work, src, mb):
    out = work / f"last_{mb}mb.txt"
    if not out.exists():
        with open(src, encoding="utf-8") as f:
            text = f.read()
        out.write_text(text[-int(mb * 1_000_000) :], encoding="utf-8")
    return out


def measure(tree, run, path):
    env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="2")
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(run), str(path)],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
    )
    if r.returncode:
        raise SystemExit(r.stderr[-2000:])
    return json.loads(r.stdout.splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="reference checkout")
    ap.add_argument("--work", type=Path, default=Path("/tmp/charrnn-bench-evaluate"))
    ap.add_argument("--mb", type=float, default=110, help="MB of .py text to gather")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument(
        "--sizes",
        default="big:1:new,big:1:base,big:3:new,small:5:base,small:5:new,small:100:new",
        help="run:MB:tree, measured in this order",
    )
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    src = corpus(a.work, a.mb)
    trees = {"new": ROOT, "base": a.base.resolve()}
    print(f"uptime: {os.getloadavg()}", flush=True)
    print(
        "| run (symbols) | file MB | checkout | chars | s | chars/s | loss nats | RSS after "
        "load MB | peak MB | peak - load MB |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for item in a.sizes.split(","):
        name, mb, tree = item.split(":")
        run = make_run(a.work, name, src, a.steps)
        symbols = (
            len(json.loads((run / "vocab.json").read_text())["symbols"])
            if (run / "vocab.json").exists()
            else "?"
        )
        m = measure(trees[tree], run, held_out(a.work, src, float(mb)))
        print(
            f"| {name} ({symbols}) | {mb} | {tree} | {m['chars']:,} | {m['seconds']:.1f} | "
            f"{m['chars'] / m['seconds']:,.0f} | {m['loss']:.6f} | {m['base_mb']:.0f} | "
            f"{m['peak_mb']:.0f} | {m['peak_mb'] - m['base_mb']:.0f} |",
            flush=True,
        )
    print(f"uptime: {os.getloadavg()}")


if __name__ == "__main__":
    main()
