"""Before/after: one benchmark script run in this tree and in another checkout, interleaved.

    python benchmarks/bench_ab.py --ref ../ref-f4f0082 --rounds 3 bench_sample.py --repeats 2
    python benchmarks/bench_ab.py --ref ../ref-f4f0082 --rounds 2 bench_train.py \\
        --shapes small --only charrnn,charrnn-fp32 --rounds 1

Each round runs ``python TREE/benchmarks/SCRIPT ARGS`` with TREE as the working directory
(so the script and its `python -m charrnn` children use that tree's charrnn), the reference
tree first in odd rounds and this one first in even rounds, so a slow phase of a shared
machine hits both alike.  The scripts print their figures as Markdown tables; every numeric
cell is collected by (table header, row label, column) and reported as the median over the
rounds in each tree and their ratio (this tree / the reference).  Check out the reference
with `git worktree add ../ref-COMMIT COMMIT`.
"""

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"^\**([-+]?\d[\d,]*(?:\.\d+)?)\s*(x|%|ms|s|MB|MiB)?\**$")


def tables(text: str) -> dict:
    """{(header, row label, column name): float} for every numeric cell of every Markdown
    table in ``text``; a row's label is its first cell, with its second where the first
    repeats within the table (a shape at two batch sizes)."""
    cells = {}
    for header, rows in _tables(text):
        firsts = [row[0] for row in rows]
        for row in rows:
            label = row[0] if firsts.count(row[0]) == 1 else " / ".join(row[:2])
            for name, cell in zip(header[1:], row[1:]):
                m = NUMBER.match(cell)
                if m:
                    cells[(" | ".join(header), label, name)] = float(m.group(1).replace(",", ""))
    return cells


def _tables(text: str) -> list:
    """[(header cells, [row cells])] of the Markdown tables in ``text``."""
    found, rows = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            rows = None
            continue
        row = [c.strip() for c in line.strip("|").split("|")]
        if all(set(c) <= set("-: ") for c in row):
            continue
        if rows is None:
            rows = []
            found.append((row, rows))
        else:
            rows.append(row)
    return found


def run(tree: Path, script: str, args: list) -> dict:
    cmd = [sys.executable, str(tree / "benchmarks" / script), *args]
    print(f"# {tree.name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    out = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{tree}: {script} failed:\n{out.stderr[-2000:]}")
    return tables(out.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ref", required=True, type=Path, help="the other checkout (the before)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("script", help="a script of benchmarks/, e.g. bench_sample.py")
    p.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    a = p.parse_args()
    trees = {"ref": a.ref.resolve(), "new": HERE}
    got = {"ref": [], "new": []}
    for r in range(a.rounds):
        for name in ("ref", "new") if r % 2 == 0 else ("new", "ref"):
            got[name].append(run(trees[name], a.script, a.args))
    keys = [k for k in got["new"][0] if all(k in g for g in got["ref"] + got["new"])]
    print(f"{a.script} {' '.join(a.args)}: medians of {a.rounds} interleaved rounds")
    print(f"ref = {trees['ref']} (the before), new = {trees['new']}\n")
    print("| table | row | column | ref | new | new / ref |")
    print("|---|---|---|---:|---:|---:|")
    for header, row, col in keys:
        ref = statistics.median(g[(header, row, col)] for g in got["ref"])
        new = statistics.median(g[(header, row, col)] for g in got["new"])
        ratio = f"{new / ref:.3f}" if ref else "-"
        short = header.split(" | ")[0][:30]
        print(f"| {short} | {row} | {col} | {ref:,.4g} | {new:,.4g} | {ratio} |")


if __name__ == "__main__":
    main()
