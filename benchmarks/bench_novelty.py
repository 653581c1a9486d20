"""The novelty report's cost on a 1 MB training text: building the suffix-array index
(once, then cached) and one report per 1,000-character sample, medians over --repeats.

    python benchmarks/bench_novelty.py --corpus ../shared/corpora/dahdi_c.txt --repeats 5

Samples: half a copied stretch of the corpus, half text the corpus does not hold, so the
matching walks long and short matches alike.  The reference is a brute-force search for
the longest shared substring with Python's `in` (what a script without an index does),
on the same samples.
"""

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from charrnn.analysis.novelty import NoveltyIndex  # noqa: E402


def brute_longest(sample, text):
    best = 0
    for i in range(len(sample)):
        n = best + 1
        while i + n <= len(sample) and sample[i:i + n] in text:
            best, n = n, n + 1
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpora" / "dahdi_c.txt")
    ap.add_argument("--mb", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reference", type=int, default=2, help="samples for the brute-force reference")
    a = ap.parse_args()
    text = a.corpus.read_text(encoding="utf-8", errors="replace")[:int(a.mb * 1_000_000)]
    builds = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        index = NoveltyIndex.build(text)
        builds.append(time.perf_counter() - t)
    rng = random.Random(0)
    samples = []
    for _ in range(20):
        at = rng.randrange(len(text) - 500)
        samples.append(text[at:at + 500] + "".join(rng.choice("qxzjv \n") for _ in range(500)))
    reports = []
    for s in samples:
        t = time.perf_counter()
        r = index.report(s)
        reports.append(time.perf_counter() - t)
        assert r["longest"] >= 500
    brute = []
    for s in samples[:a.reference]:
        t = time.perf_counter()
        assert brute_longest(s, text) == index.report(s)["longest"]
        brute.append(time.perf_counter() - t)
    print(f"{len(text):,} characters of {a.corpus.name}: index built in "
          f"{statistics.median(builds):.3f} s (median of {a.repeats}); a report on a 1,000-character "
          f"sample {statistics.median(reports) * 1000:.1f} ms (median of {len(samples)}); "
          f"brute force {statistics.median(brute):.2f} s (median of {len(brute)}), "
          f"{statistics.median(brute) / statistics.median(reports):.0f}x slower")


if __name__ == "__main__":
    main()
