"""The novelty index at real size: building it (time, peak memory, bytes a character) and
a cached report (opening the index and reporting on samples: time and memory), each in a
fresh process, beside the old index (the whole text decoded to code points, then
libdivsufsort on them) on a prefix of the same text.

    python benchmarks/bench_novelty.py                     # the .py files of site-packages
    python benchmarks/bench_novelty.py --src DIR --include '*.c' --old-mb 20

The corpus is prepared once into --work with `charrnn prepare --include GLOB
--val-fraction 0.001` (nothing shipped).  Samples: 1,000 characters, half a copied
stretch of the train split, half letters the model could have made up.  Memory: the
process's high-water mark (VmHWM), whole and above what it held after its imports.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRELUDE = textwrap.dedent("""
    import json, os, random, sys, time
    sys.path.insert(0, {root!r})
    import numpy as np
    from charrnn.analysis import novelty
    from charrnn.store.dataset import iter_dump, load_dataset

    def hwm():
        return [int(l.split()[1]) * 1024 for l in open('/proc/self/status')
                if l.startswith('VmHWM')][0]

    base = hwm()
""")

BUILD = """
t = time.perf_counter()
index = novelty.dataset_index(sys.argv[1], on_info=lambda m: print(m, file=sys.stderr))
print(json.dumps({"seconds": time.perf_counter() - t, "base": base, "peak": hwm(),
                  "chars": index.suffixes.n}))
"""

REPORT = """
samples = json.load(open(sys.argv[2]))
t = time.perf_counter()
index = novelty.dataset_index(sys.argv[1])
first = index.report(samples[0])
opened = time.perf_counter() - t
times = []
for s in samples:
    t = time.perf_counter()
    r = index.report(s)
    times.append(time.perf_counter() - t)
    assert r["longest"] >= 500, r
print(json.dumps({"first": opened, "median": sorted(times)[len(times) // 2], "base": base,
                  "peak": hwm()}))
"""

OLD = """
from pydivsufsort import divsufsort
from charrnn.text import to_cps
t = time.perf_counter()  # as the old index_for: the train split decoded whole, then sorted
want, parts, have = int(float(sys.argv[2]) * 1e6), [], 0
for part in iter_dump(load_dataset(sys.argv[1]), "train"):
    parts.append(part)
    have += len(part)
    if have >= want:
        break
text = "".join(parts)[:want]
del parts
cps = np.ascontiguousarray(to_cps(text))
sa = divsufsort(cps.copy())
print(json.dumps({"seconds": time.perf_counter() - t, "base": base, "peak": hwm(),
                  "chars": len(text)}))
"""


def child(code, *args, cache):
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    out = subprocess.run(
        [sys.executable, "-c", PRELUDE.format(root=str(ROOT)) + code, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        sys.exit(out.stderr)
    return json.loads(out.stdout), out.stderr


def make_samples(data, k=20):
    sys.path.insert(0, str(ROOT))
    import random

    from charrnn.store.dataset import load_dataset

    ds = load_dataset(data)
    ids = ds.split("train")
    rng = random.Random(0)
    out = []
    for _ in range(k):
        at = rng.randrange(len(ids) - 600)
        copied = ds.vocab.decode(ids[at : at + 600])[:500]
        out.append(copied + "".join(rng.choice("qxzjv etaoin\n") for _ in range(500)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--src",
        type=Path,
        default=Path(sysconfig.get_paths()["purelib"]),
        help="the corpus: a directory (default: this Python's site-packages)",
    )
    ap.add_argument("--include", default="*.py", help="which files of --src")
    ap.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/charrnn-bench-novelty"),
        help="where the prepared corpus and the caches go (kept for the next run)",
    )
    ap.add_argument(
        "--old-mb",
        type=float,
        default=20,
        help="million characters of the old index to build beside (0: none)",
    )
    a = ap.parse_args()
    data, cache = a.work / "data", a.work / "cache"
    if not (data / "meta.json").is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "charrnn",
                "prepare",
                str(a.src),
                "--include",
                a.include,
                "-o",
                str(data),
                "--val-fraction",
                "0.001",
                "-q",
            ],
            check=True,
        )
    shutil.rmtree(cache, ignore_errors=True)
    built, said = child(BUILD, data, cache=cache)
    sizes = sum(f.stat().st_size for f in cache.rglob("*.npy"))
    samples = a.work / "samples.json"
    samples.write_text(json.dumps(make_samples(data)))
    reported, _ = child(REPORT, data, samples, cache=cache)
    n, gb = built["chars"], 1e9
    print(
        f"{n:,} characters ({a.src} {a.include}), vocabulary "
        f"{json.loads((data / 'vocab.json').read_text())['symbols'].__len__()} symbols"
    )
    print(said.rstrip())
    print(
        f"new index: built in {built['seconds']:.1f} s, peak {built['peak'] / gb:.2f} GB "
        f"({(built['peak'] - built['base']) / n:.2f} bytes a character above the imports' "
        f"{built['base'] / 1e6:.0f} MB); {sizes / gb:.2f} GB on disk ({sizes / n:.2f} bytes a "
        f"character, beside the dataset's own train.npy)"
    )
    print(
        f"cached report: open + first report {reported['first']:.3f} s, then "
        f"{reported['median'] * 1000:.1f} ms a 1,000-character sample (median of 20); "
        f"peak {reported['peak'] / 1e6:.0f} MB "
        f"({(reported['peak'] - reported['base']) / 1e6:.0f} MB above the imports)"
    )
    if a.old_mb:
        old, _ = child(OLD, data, a.old_mb, cache=cache)
        print(
            f"old index on the first {old['chars']:,} characters: built in "
            f"{old['seconds']:.1f} s, {(old['peak'] - old['base']) / old['chars']:.1f} bytes a "
            f"character above the imports ({old['peak'] / gb:.2f} GB peak); new, whole "
            f"corpus: {built['seconds'] / n * old['chars']:.1f} s for as many characters, "
            f"{(built['peak'] - built['base']) / n:.2f} bytes a character"
        )


if __name__ == "__main__":
    main()
