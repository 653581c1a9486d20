"""Benchmark `charrnn prepare` against the naive approach, side by side in one run.

Generates corpora of the shipped texts repeated (English+C: data/shakespeare.txt and
data/dahdi_drivers.c; Korean: data/korean_constitution.txt) at --size MB and 3x that,
runs each command as a child pinned to one CPU, and reports wall-clock MB/s, CPU MB/s
(user+sys, which other load on the machine does not inflate) and peak RSS (the child's
own ru_maxrss from os.wait4), as medians over --repeat runs.

The reference is what char-rnn-tensorflow's TextLoader does: read the whole file,
collections.Counter, a dict from characters to ids, np.array(list(map(vocab.get, data))),
np.save; for jamo, hangul_jamo.decompose on the whole text first (which, unlike
charrnn's scheme, is not even lossless).

Many small files (--files-mb): the .py files of the installed packages (site-packages, in
sorted order, up to --files-mb MB) copied into a tree, against one file of the same bytes
(their concatenation): `prepare TREE --include '*.py'` beside `prepare ONE.py`, so what
costs per file (listing, opening, encoding detection, hashing, Python) shows as the
difference.

    python benchmarks/bench_prepare.py            # about 8 minutes, mostly the reference
    python benchmarks/bench_prepare.py --size 20 --repeat 1   # a quick look
    python benchmarks/bench_prepare.py --no-corpora --files-mb 0   # all installed .py files
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data")

REFERENCE = r"""
import collections, sys
import numpy as np
path, out, jamo = sys.argv[1], sys.argv[2], sys.argv[3] == "on"
with open(path, encoding="utf-8") as f:
    data = f.read()
if jamo:
    import hangul_jamo
    data = hangul_jamo.decompose(data)
counter = collections.Counter(data)
chars = [c for c, _ in sorted(counter.items(), key=lambda x: -x[1])]
vocab = dict(zip(chars, range(len(chars))))
np.save(out, np.array(list(map(vocab.get, data))))
"""


def make_corpus(path, sources, size_mb):
    blob = b"".join(open(os.path.join(DATA, s), "rb").read() for s in sources)
    target, n = size_mb * 1_000_000, 0
    with open(path, "wb") as f:
        while n < target:
            f.write(blob)
            n += len(blob)
    return n


def make_tree(tree, one, size_mb):
    """Copy installed packages' .py files (sorted, non-empty, UTF-8, no hidden directories) into
    ``tree`` until ``size_mb`` MB (0: all of them) and their concatenation into ``one``;
    returns (files, bytes)."""
    site = sysconfig.get_paths()["purelib"]
    found = []
    for root, dirs, names in os.walk(site):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [
            os.path.join(root, n) for n in names if n.endswith(".py") and not n.startswith(".")
        ]
    found.sort()
    n = count = 0
    with open(one, "wb") as out:
        for src in found:
            data = open(src, "rb").read()
            try:
                data.decode("utf-8")  # so that one file of them all is UTF-8 too
            except UnicodeDecodeError:
                continue
            if not data:
                continue
            dst = os.path.join(tree, os.path.relpath(src, site))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, "wb") as f:
                f.write(data)
            out.write(data)
            n, count = n + len(data), count + 1
            if size_mb and n >= size_mb * 1_000_000:
                break
    return count, n


def run_child(cmd, cpu, env=None):
    """(wall seconds, cpu seconds, peak RSS bytes) of one child process."""
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if hasattr(os, "sched_setaffinity") else None
    t0 = time.perf_counter()
    p = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=pin,
        env=env,
        cwd=os.sep if env else None,
    )  # no charrnn/ in the cwd
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err.decode(errors='replace')}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024


def measure(cmd, cpu, repeat, cleanup, env=None):
    runs = []
    for _ in range(repeat):
        cleanup()
        runs.append(run_child(cmd, cpu, env))
    cleanup()
    return [statistics.median(x) for x in zip(*runs)]


def machine():
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    import numpy

    return (
        f"{model}, {os.cpu_count()} CPUs (child pinned to one), Python "
        f"{platform.python_version()}, "
        f"NumPy {numpy.__version__}, {platform.system()} {platform.release()}"
    )


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", type=int, default=100, help="corpus size in MB (the large one is 3x)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per row; the table shows medians")
    ap.add_argument("--cpu", type=int, default=0, help="CPU to pin the children to")
    ap.add_argument("--no-reference", action="store_true", help="skip the naive reference")
    ap.add_argument("--dir", help="where to put the corpora (default: a temporary directory)")
    ap.add_argument(
        "--files-mb",
        type=int,
        default=50,
        help="many small files: MB of installed .py files (0: all; -1: skip)",
    )
    ap.add_argument("--no-corpora", action="store_true", help="skip the repeated-corpus rows")
    ap.add_argument(
        "--baseline",
        metavar="DIR",
        help="many small files: also time the charrnn "
        "package in DIR (e.g. `git archive REV charrnn | tar -x -C DIR`) on the same "
        "tree, e.g. the version before a change",
    )
    args = ap.parse_args()

    load = f"{os.getloadavg()[0]:.2f}"
    tmp = os.path.abspath(args.dir or tempfile.mkdtemp(prefix="charrnn-bench-"))
    os.makedirs(tmp, exist_ok=True)
    out = os.path.join(tmp, "out")
    ref_out = os.path.join(tmp, "ref.npy")

    def cleanup():
        shutil.rmtree(out, ignore_errors=True)
        if os.path.exists(ref_out):
            os.remove(ref_out)

    charrnn = [sys.executable, "-m", "charrnn", "prepare", "-q", "-o", out]
    reference = [sys.executable, "-c", REFERENCE]
    rows, tree_rows = [], []
    corpora = (
        []
        if args.no_corpora
        else [
            ("English+C", ["shakespeare.txt", "dahdi_drivers.c"]),
            ("Korean", ["korean_constitution.txt"]),
        ]
    )
    try:
        if args.files_mb >= 0:
            tree, one = os.path.join(tmp, "tree"), os.path.join(tmp, "one.py")
            count, nbytes = make_tree(tree, one, args.files_mb)
            cases = [
                (f"{count:,} files", charrnn + [tree, "--include", "*.py"], None),
                ("one file", charrnn + [one], None),
            ]
            if args.baseline:
                env = dict(os.environ, PYTHONPATH=os.path.abspath(args.baseline))
                cases[1:1] = [(f"{count:,} files, baseline", cases[0][1], env)]
            for who, cmd, env in cases:
                wall, cpu, rss = measure(cmd, args.cpu, args.repeat, cleanup, env)
                tree_rows.append((who, nbytes, wall, cpu, rss))
                print(f"  {who} {nbytes / 1e6:.0f} MB: {wall:.2f} s", file=sys.stderr)
            shutil.rmtree(tree)
            os.remove(one)
        for label, sources in corpora:
            for scale in (1, 3):
                path = os.path.join(tmp, f"{label[:2].lower()}-{scale}.txt")
                nbytes = make_corpus(path, sources, args.size * scale)
                modes = ["off"] if label == "English+C" else ["on", "off"]
                for jamo in modes:
                    cases = [("charrnn prepare", charrnn + [path, "--jamo", jamo])]
                    if scale == 1 and not args.no_reference:
                        cases.append(("naive reference", reference + [path, ref_out, jamo]))
                    for who, cmd in cases:
                        wall, cpu, rss = measure(cmd, args.cpu, args.repeat, cleanup)
                        rows.append((label, nbytes, jamo, who, wall, cpu, rss))
                        print(
                            f"  {label} {nbytes / 1e6:.0f} MB jamo {jamo} {who}: {wall:.2f} s, "
                            f"{rss / 2**20:.0f} MiB",
                            file=sys.stderr,
                        )
                os.remove(path)
    finally:
        if not args.dir:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"Machine: {machine()}")
    print(
        f"Command: python {' '.join(sys.argv)} (medians of {args.repeat}); load before: "
        f"{load}, after: {os.getloadavg()[0]:.2f}\n"
    )
    if tree_rows:
        print(
            "| input | MB | wall s | MB/s (wall) | MB/s (CPU) | peak RSS MiB | CPU time / one "
            "file's |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for who, nbytes, wall, cpu, rss in tree_rows:
            print(
                f"| {who} | {nbytes / 1e6:.0f} | {wall:.2f} | {nbytes / 1e6 / wall:.1f} | "
                f"{nbytes / 1e6 / cpu:.1f} | {rss / 2**20:.0f} | {cpu / tree_rows[-1][3]:.2f}x |"
            )
        print()
    if not rows:
        return
    print(
        "| corpus | MB | jamo | command | wall s | MB/s (wall) | MB/s (CPU) | peak RSS MiB |"
        " speed-up vs reference | RSS reference / charrnn |"
    )
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|")
    ref = {(r[0], r[1], r[2]): r for r in rows if r[3] == "naive reference"}
    for label, nbytes, jamo, who, wall, cpu, rss in rows:
        mb = nbytes / 1e6
        vs = " | "
        r = ref.get((label, nbytes, jamo))
        if r and who != "naive reference":
            vs = f"{r[4] / wall:.1f}x | {r[6] / rss:.1f}x"
        print(
            f"| {label} | {mb:.0f} | {jamo} | {who} | {wall:.2f} | {mb / wall:.1f} | "
            f"{mb / cpu:.1f} | {rss / 2**20:.0f} | {vs} |"
        )


if __name__ == "__main__":
    main()
