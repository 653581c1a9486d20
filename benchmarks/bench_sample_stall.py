"""Long samples: call overhead and the longest gap between writes, this tree against a
reference tree (e.g. main at 211de7e checked out beside it), in one run.

    git -C /work/main worktree add /work/ref-211de7e 211de7e
    python benchmarks/bench_sample_stall.py --ref /work/ref-211de7e
    python benchmarks/bench_sample_stall.py --ref /work/ref-211de7e --repeats 3 -n 61000

A 2x128 LSTM (vocabulary 100, one training step) as a real run, trained by each tree
itself (their checkpoint layouts differ); each tree runs `charrnn sample RUN -n N --seed 1`
as a real process with PYTHONPATH at that
tree, the two alternating, after one untimed warm-up each (page cache; the XLA
compile cache of this tree).  Every read of the process's stdout is timestamped:
total time, first byte, and the longest gap between two writes.

Call overhead = total time - N / steady rate, where the steady rate is that of the
compiled XLA loop once it is going (the same loop in both trees), measured here at
batch 1 in this process just before each pair of runs.  Medians over the repeats.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "benchmarks"))


def timed_sample(tree, run, n):
    """(total s, first byte s, longest gap s, output) of one `charrnn sample` process."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, "-m", "charrnn", "sample", str(run), "-n", str(n), "--seed", "1"]
    t0 = time.perf_counter()
    # cwd: `python -m` puts the working directory first on sys.path, ahead of
    # PYTHONPATH, so running from a charrnn checkout would import that one.
    p = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=Path(run).parent
    )
    fd, stamps, chunks = p.stdout.fileno(), [], []
    while True:
        data = os.read(fd, 1 << 16)
        if not data:
            break
        stamps.append(time.perf_counter())
        chunks.append(data)
    p.wait()
    total = time.perf_counter() - t0
    assert p.returncode == 0, (tree, p.returncode)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return total, stamps[0] - t0, max(gaps, default=0.0), b"".join(chunks)


class SteadyRate:
    """The compiled loop's rate once it is going, in this process; measured again
    before every pair of runs, since a shared machine's load changes by the minute."""

    def __init__(self, run):
        from charrnn.generate.choice import Options
        from charrnn.generate.sampler import Sampler
        from charrnn.store.loader import load

        self.s = Sampler(load(run).weights, 1, Options(1.0, seed=1), engine="xla")
        self.s.generate(1)

    def __call__(self, steps=30_000):
        t = time.perf_counter()
        self.s.generate(steps)
        return steps / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", required=True, help="the reference tree (a checkout of charrnn)")
    ap.add_argument(
        "--repeats", type=int, default=5, help="timed runs per tree and length (medians)"
    )
    ap.add_argument("-n", type=int, action="append", help="lengths [default: 61000 and 301000]")
    a = ap.parse_args()
    lengths = a.n or [61000, 301000]
    trees = {"reference": Path(a.ref).resolve(), "this tree": HERE}
    with tempfile.TemporaryDirectory() as tmp:
        from bench_export import make_run

        # each tree trains its own run: their checkpoint layouts differ (the reference
        # cannot read today's checkpoint directories)
        runs = {
            name: make_run(tree, Path(tmp) / name.replace(" ", "-"), 2, 128)
            for name, tree in trees.items()
        }
        steady = SteadyRate(runs["this tree"])
        load = os.getloadavg()[0]
        print(
            f"# 2x128 LSTM, {os.cpu_count()} CPUs, load average {load:.1f} at the start; "
            f"medians of {a.repeats}\n"
        )
        for name, tree in trees.items():  # each process imports its own tree's charrnn
            where = subprocess.run(
                [sys.executable, "-c", "import charrnn; print(charrnn.__file__)"],
                env=dict(os.environ, PYTHONPATH=str(tree)),
                cwd=tmp,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert where.startswith(str(tree)), (name, where)
        rows = []
        for n in lengths:
            res = {name: [] for name in trees}
            outs = {}
            for name, tree in trees.items():  # warm-up
                outs[name] = timed_sample(tree, runs[name], n)[3]
            rates = []
            for _ in range(a.repeats):
                rate = steady()
                rates.append(rate)
                for name, tree in trees.items():
                    total, first, gap, out = timed_sample(tree, runs[name], n)
                    assert out == outs[name], f"{name}: the text changed between runs"
                    res[name].append((total, total - n / rate, first, gap))
                    print(
                        f"  -n {n} {name}: total {total:.2f} s, overhead {total - n / rate:.2f} s "
                        f"(steady {rate:,.0f}/s), first byte {first:.2f} s, longest gap {gap:.2f} "
                        f"s",
                        file=sys.stderr,
                    )
            for name in trees:
                total, over, first, gap = (statistics.median(x) for x in zip(*res[name]))
                rows.append((n, name, total, over, first, gap, statistics.median(rates)))
        print(f"# load average {os.getloadavg()[0]:.1f} at the end\n")
    print(
        "| -n | tree | total | call overhead | first byte | longest gap between writes | steady "
        "rate |"
    )
    print("|---|---|---|---|---|---|---|")
    for n, name, total, over, first, gap, rate in rows:
        print(
            f"| {n:,} | {name} | {total:.2f} s | {over:.2f} s | {first:.2f} s | {gap:.2f} s "
            f"| {rate:,.0f}/s |"
        )
    for n in lengths:
        ref, new = (next(r for r in rows if r[0] == n and r[1] == name) for name in trees)
        print(
            f"\n-n {n:,}: overhead {new[3] / ref[3]:.2f}x the reference's, "
            f"longest gap {new[5] / ref[5]:.2f}x"
        )


if __name__ == "__main__":
    main()
