"""Dynamic evaluation (`charrnn evaluate --dynamic`): what it gains on held-out text, and
what it costs, against the same model scored the usual way, side by side.

For each corpus: `charrnn prepare` (the last 5% is the val split, never trained on) and a
2x128 LSTM trained for --steps steps (batch 32 x 100; reused when --work has it), then
the val text scored without and with dynamic evaluation at each (--lrs x --segments), in
bits per character, and the time per 100,000 characters of both (median of --repeats).

    python benchmarks/bench_dynamic.py --work /tmp/dyn

Corpora (../shared/corpora, see its README): the shipped Shakespeare plays, the first
1 MB of the DAHDI driver C source, the Korean LibreOffice help.
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "corpora"
SOURCES = {
    "shakespeare": (ROOT / "data" / "shakespeare.txt", None),
    "dahdi": (CORPORA / "dahdi_c.txt", 1_000_000),
    "korean": (CORPORA / "korean_libreoffice_help.txt", None),
}


def charrnn(*args, cwd, out=subprocess.DEVNULL):
    return subprocess.run(
        [sys.executable, "-m", "charrnn", *map(str, args)],
        cwd=cwd,
        check=True,
        stdout=out,
        stderr=subprocess.DEVNULL,
    )


def setup(work, name, steps):
    src, limit = SOURCES[name]
    if not (work / "runs" / name / "model.json").exists():
        data = src.read_bytes()
        (work / f"{name}.txt").write_bytes(data[:limit] if limit else data)
        charrnn("prepare", f"{name}.txt", "-o", f"data/{name}", "--force", "-q", cwd=work)
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
            "model.num_layers=2",
            "--set",
            "model.rnn_size=128",
            "--set",
            "train.batch_size=32",
            "--set",
            "train.seq_length=100",
            cwd=work,
        )
    val = work / f"val_{name}.txt"
    if not val.exists():
        with open(val, "wb") as f:
            charrnn("dump", f"data/{name}", "--split", "val", cwd=work, out=f)
    return val


def score(run, val, dynamic=None):
    """(bits per character, seconds of the scoring itself: in this process, after a warm-up
    call has compiled the steps, so TensorFlow's start-up is not counted)."""
    from charrnn.analysis.evaluate import evaluate

    t = time.perf_counter()
    r = evaluate(run, [str(val)], streams=1, dynamic=dynamic)
    return r["total"]["bits_per_char"], time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/charrnn-bench-dynamic"))
    ap.add_argument("--corpora", nargs="+", default=list(SOURCES))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.03, 0.1, 0.3])
    ap.add_argument("--segments", type=int, nargs="+", default=[50, 100])
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    print(
        "| corpus | val chars | static bits/char | dynamic (lr, segment): bits/char | "
        "gain | static s/100k chars | dynamic s/100k chars |"
    )
    print("|---|---:|---:|---|---:|---:|---:|")
    sys.path.insert(0, str(ROOT))
    from charrnn.analysis import dynamic
    from charrnn.store.loader import load

    default_args = {"segment": dynamic.SEGMENT, "lr": dynamic.LR}
    for name in a.corpora:
        val = setup(a.work, name, a.steps)
        chars = len(val.read_text(encoding="utf-8"))
        run = load(a.work / "runs" / name)
        warm = a.work / "warm.txt"
        warm.write_text(val.read_text(encoding="utf-8")[:300], encoding="utf-8")
        score(run, warm), score(run, warm, default_args)  # compile both steps
        static = [score(run, val) for _ in range(a.repeats)]
        grid = {
            (lr, seg): score(run, val, {"segment": seg, "lr": lr})
            for lr in a.lrs
            for seg in a.segments
        }
        default = [score(run, val, default_args) for _ in range(a.repeats)]
        cells = ", ".join(f"({lr:g}, {seg}): {b:.4f}" for (lr, seg), (b, _) in grid.items())
        per = 100_000 / chars
        print(
            f"| {name} | {chars:,} | {static[0][0]:.4f} | {cells}; default: "
            f"{default[0][0]:.4f} | {static[0][0] - default[0][0]:.3f} | "
            f"{statistics.median(s for _, s in static) * per:.1f} | "
            f"{statistics.median(s for _, s in default) * per:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
