"""Quality at a time budget: what the model scores on held-out text after the time you give it.

Each part runs on its own and appends one JSON line per training run to RESULTS
(default /tmp/charrnn-quality/results.jsonl); `table` prints them.

  python benchmarks/bench_quality.py run NAME --corpus FILE --minutes 3 [--set k=v ...]
  python benchmarks/bench_quality.py shakespeare [--minutes 10]  # shipped vs the before config
  python benchmarks/bench_quality.py korean --minutes 3 10 --seeds 0 1
  python benchmarks/bench_quality.py grid --corpus FILE --minutes 3 --seeds 0 1   # model sizes
  python benchmarks/bench_quality.py cells --minutes 3 10 --parallel   # LSTM against minGRU
  python benchmarks/bench_quality.py table [--filter TEXT]

Datasets are prepared with --val-fraction 0.05 --test-fraction 0.05: settings are tuned on
the validation split (the part after train) and figures are reported on the test split (the
last 5%), scored by `charrnn evaluate` in one pass (the first character context only, the
documented charge for characters outside the vocabulary).  The Shakespeare part also scores
the last 10% (validation + test, both unseen in training) nanoGPT's way: windows of 256
characters, each scored from an empty state.

--parallel runs two trainings at a time, side by side, each getting about half the machine:
twice the experiments in the same time for sweeps, with both sides of a comparison under the
same conditions.  (Pinning each to one core with taskset was 7x slower here: TensorFlow's
thread pools then fight over one core.)  Needs ../shared/corpora.
"""

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPORA = HERE.parent.parent / "shared" / "corpora"
WORK = Path(os.environ.get("CHARRNN_QUALITY_DIR", "/tmp/charrnn-quality"))
RESULTS = WORK / "results.jsonl"
ROOT = HERE.parent


def charrnn(*args, capture=False, tree=None):
    # -P: without it `-m` puts the current directory first on sys.path, ahead of PYTHONPATH,
    # and a run from this checkout would silently use it instead of ``tree``
    cmd = [sys.executable, "-P", "-m", "charrnn", *map(str, args)]
    env = dict(os.environ, PYTHONPATH=str(tree or ROOT))
    out = subprocess.run(
        cmd, env=env, check=True, text=True, stdout=subprocess.PIPE if capture else None
    )
    return out.stdout if capture else None


def prepare(corpus, jamo="auto", tree=None):
    """The dataset of ``corpus`` with the benchmark's split (train 90%, val 5%, test 5%)."""
    corpus = Path(corpus)
    if not corpus.is_absolute() and not corpus.exists():
        corpus = CORPORA / corpus
    # keyed by the text of prepare's module: when its rules change (what `--jamo auto`
    # decides, the split), datasets prepared by the old ones are not reused
    package = Path(tree or ROOT) / "charrnn"
    source = package / "store" / "prepare.py"
    source = source if source.is_file() else package / "data.py"  # a --tree before the move
    code = hashlib.sha1(source.read_bytes()).hexdigest()
    out = WORK / "data" / f"{corpus.stem}-jamo-{jamo}-{code[:8]}"
    if not (out / "vocab.json").exists():
        charrnn(
            "prepare",
            corpus,
            "-o",
            out,
            "--jamo",
            jamo,
            "--val-fraction",
            0.05,
            "--test-fraction",
            0.05,
            "--force",
            "-q",
            tree=tree,
        )
    text = {}
    for split in ("val", "test"):
        path = out.parent / f"{out.name}.{split}.txt"
        if not path.exists():
            path.write_bytes(
                charrnn("dump", out, "--split", split, capture=True, tree=tree).encode("utf-8")
            )
        text[split] = path
    return out, text


def evaluate(run, path, tree=None):
    """bits per character of ``path`` (one pass), from `charrnn evaluate --json`."""
    r = json.loads(
        charrnn("evaluate", run, path, "--streams", 1, "--json", capture=True, tree=tree)
    )["total"]
    return {
        "bpc": r["bits_per_char"],
        "nats_per_char": r["bits_per_char"] * math.log(2),
        "bpc_in_vocab": r["bits_per_char_in_vocab"],
        "oov_chars": r["oov_chars"],
    }


def windows_nats(run, texts, window=256):
    """nanoGPT's scoring: consecutive windows of ``window`` predictions, each from an
    empty state, every position scored (the first from one character of context)."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from charrnn.store import loader as runs

    r = runs.load_run(run)
    text = "".join(Path(p).read_text(encoding="utf-8") for p in texts)
    if r.vocab.jamo or r.vocab.unknown_chars(text):
        raise SystemExit("windows scoring is for plain-character runs with no unknown characters")
    ids = np.asarray(r.vocab.encode(text), np.int32)
    n = (len(ids) - 1) // window
    x = np.stack([ids[i * window : i * window + window] for i in range(n)])
    y = np.stack([ids[i * window + 1 : i * window + window + 1] for i in range(n)])
    total = 0.0
    import tensorflow as tf

    for b in range(0, n, 64):
        logits = r.model(tf.constant(x[b : b + 64]))
        total += float(
            tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y[b : b + 64], logits))
        )
    return {"window": window, "windows": n, "nats_per_char": total / (n * window)}


def train_and_score(
    name, corpus, minutes, config=None, sets=(), seed=0, jamo="auto", tree=None, windows=False
):
    data, text = prepare(corpus, jamo, tree)
    out = WORK / "runs" / name
    args = [
        "train",
        "--data",
        data,
        "--out",
        out,
        "--max-time",
        f"{minutes}m",
        "--seed",
        seed,
        "--force",
    ]
    if config:
        args += ["--config", config]
    for s in sets:
        args += ["--set", s]
    start = time.monotonic()
    charrnn(*args, tree=tree)
    wall = time.monotonic() - start
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in metrics if "val_loss" in m]
    best = min(evals, key=lambda m: m["val_loss"])
    row = {
        "name": name,
        "corpus": Path(corpus).name,
        "jamo": jamo,
        "config": config,
        "sets": list(sets),
        "seed": seed,
        "minutes": minutes,
        "tree": str(tree or ROOT),
        "steps": metrics[-1]["step"],
        "wall_s": round(wall, 1),
        "best_step": best["step"],
        "val_loss": best["val_loss"],
        "val_bpc_char": best.get("val_bpc_char", best.get("val_bpc")),
        "test": evaluate(out, text["test"], tree),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
    }
    if windows:
        row["last10_windows"] = windows_nats(out, [text["val"], text["test"]])
    WORK.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return row


def calibrate(sizes, steps, precision):
    """Training throughput of each size here (median chars/s of the log windows after the
    first) and the probe: the constants of one of charrnn.training.autosize.CALIBRATIONS;
    beside them, what the shipped calibration predicts here from the probe (the check of a
    new machine, or of an emulated one)."""
    import statistics

    sys.path.insert(0, str(ROOT))
    from charrnn.training import autosize, probe

    data, _ = prepare("tinyshakespeare.txt")
    vocab = len(json.loads((data / "vocab.json").read_text())["symbols"])
    table = autosize.calibration_for(precision)
    probes, rows = [probe.run(table)], []
    for size in sizes:
        layers, units = map(int, size.split("x"))
        out = WORK / "runs" / f"calibrate-{size}"
        charrnn(
            "train",
            "--config",
            HERE / "shakespeare_before.yaml",
            "--data",
            data,
            "--out",
            out,
            "--force",
            "--max-steps",
            steps,
            "--set",
            f"model.num_layers={layers}",
            "--set",
            f"model.rnn_size={units}",
            "--set",
            f"model.embedding_size={autosize.embedding_size(units)}",
            "--set",
            f"train.log_every={steps // 5}",
            "--set",
            "train.eval_every=100000",
            "--set",
            "train.sample_length=0",
            "--set",
            f"train.precision={precision}",
        )
        logged = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        cps = statistics.median(m["chars_per_s"] for m in logged[1:] if "chars_per_s" in m)
        rows.append((size, autosize.macs_per_symbol(layers, units, vocab), cps))
        probes.append(probe.run(table))
    factor = statistics.median(probes) / autosize.CALIBRATIONS[table]["probe"]
    speed = autosize.Speed(factor, "", table)
    print(f"# {machine()}; {table} probe {statistics.median(probes):.4g} multiply-adds/s")
    print("\n| size | macs/symbol | chars/s | predicted | predicted / measured |")
    print("|---|---:|---:|---:|---:|")
    for size, m, cps in rows:
        layers, units = map(int, size.split("x"))
        predicted = autosize.symbols_per_second(layers, units, vocab, "lstm", speed)
        print(
            f"| {size} | {m / 1e6:.2f}M | {cps:,.0f} | {predicted:,.0f} | {predicted / cps:.2f} |"
        )
    print(
        json.dumps(
            {
                "machine": machine(),
                "date": time.strftime("%Y-%m-%d"),
                "table_for": table,
                "probe": statistics.median(probes),
                "table": [(m, round(cps)) for _, m, cps in rows],
            }
        )
    )


def machine():
    """bench_train's machine line (CPU flags, caches, emulation, precision auto) and the load."""
    sys.path.insert(0, str(HERE))
    from bench_train import machine as cpu

    return f"{cpu()}; load {os.getloadavg()[0]:.1f}"


def pairs(jobs, parallel):
    """Run ``jobs`` (callables) one at a time, or two at a time side by side."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2 if parallel else 1) as pool:
        return [f.result() for f in [pool.submit(job) for job in jobs]]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="part", required=True)
    one = sub.add_parser("run", help="one training run, scored")
    one.add_argument("name")
    one.add_argument("--corpus", required=True)
    one.add_argument("--config")
    one.add_argument("--set", dest="sets", action="append", default=[])
    one.add_argument("--minutes", type=float, default=3)
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--jamo", default="auto")
    one.add_argument("--tree", help="a checkout to run instead of this one")
    one.add_argument("--windows", action="store_true")
    sh = sub.add_parser(
        "shakespeare",
        help="the shipped shakespeare.yaml against a reference "
        "config, tiny-shakespeare, same split and time",
    )
    sh.add_argument("--minutes", type=float, default=10)
    sh.add_argument("--ref-config", default=str(HERE / "shakespeare_before.yaml"))
    sh.add_argument("--seed", type=int, default=0)
    sh.add_argument("--parallel", action="store_true", help="both at once, side by side")
    ko = sub.add_parser("korean", help="jamo against syllables (and the default) on Korean")
    ko.add_argument("--corpus", default="korean_libreoffice_help.txt")
    ko.add_argument("--minutes", type=float, nargs="+", default=[3])
    ko.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ko.add_argument("--config", default=str(HERE / "grid.yaml"))
    ko.add_argument("--set", dest="sets", action="append", default=[])
    ko.add_argument(
        "--variants",
        nargs="+",
        default=["jamo", "syllables"],
        help="jamo, jamo-chars (train.seq_unit chars), syllables, default",
    )
    ko.add_argument("--parallel", action="store_true", help="two runs at a time")
    ko.add_argument("--tag", default="", help="appended to the run names")
    gr = sub.add_parser("grid", help="model sizes at one budget, and model: auto")
    gr.add_argument("--corpus", required=True)
    gr.add_argument("--minutes", type=float, default=3)
    gr.add_argument("--seeds", type=int, nargs="+", default=[0])
    gr.add_argument("--sizes", nargs="+", default=["1x256", "2x256", "2x384", "2x512", "auto"])
    gr.add_argument("--set", dest="sets", action="append", default=[])
    gr.add_argument("--parallel", action="store_true", help="two runs at a time")
    gr.add_argument("--config", default=str(HERE / "grid.yaml"))
    gr.add_argument("--tag", default="", help="appended to the run names")
    ce = sub.add_parser(
        "cells",
        help="shakespeare.yaml's LSTM against a parallel cell's "
        "config, corpus by corpus, budget by budget, side by side",
    )
    ce.add_argument(
        "--corpora",
        nargs="+",
        default=["tinyshakespeare.txt", "dahdi_c.txt", "korean_libreoffice_help.txt"],
    )
    ce.add_argument("--minutes", type=float, nargs="+", default=[3, 10])
    ce.add_argument("--seeds", type=int, nargs="+", default=[0])
    ce.add_argument("--config", default=str(HERE / "mingru.yaml"), help="the parallel cell's")
    ce.add_argument(
        "--set", dest="sets", action="append", default=[], help="for the parallel cell's runs only"
    )
    ce.add_argument("--tree", help="a checkout to run instead of this one")
    ce.add_argument("--parallel", action="store_true", help="each pair at once, side by side")
    ca = sub.add_parser("calibrate", help="throughput per size: autosize's cost model")
    ca.add_argument(
        "--sizes", nargs="+", default=["1x128", "2x128", "2x256", "2x384", "2x512", "3x512"]
    )
    ca.add_argument("--steps", type=int, default=25)
    ca.add_argument("--precision", default="auto", help="train.precision of the runs")
    tb = sub.add_parser("table", help="print the results")
    tb.add_argument("--filter", default="")
    a = p.parse_args(argv)

    if a.part == "calibrate":
        calibrate(a.sizes, a.steps, a.precision)
    elif a.part == "run":
        train_and_score(
            a.name, a.corpus, a.minutes, a.config, a.sets, a.seed, a.jamo, a.tree, a.windows
        )
    elif a.part == "shakespeare":
        prepare("tinyshakespeare.txt")
        pairs(
            [
                lambda name=name, config=config: train_and_score(
                    f"{name}-{a.minutes:g}m-s{a.seed}",
                    "tinyshakespeare.txt",
                    a.minutes,
                    config,
                    seed=a.seed,
                    windows=True,
                )
                for name, config in (
                    ("shakespeare-before", a.ref_config),
                    ("shakespeare-now", "shakespeare"),
                )
            ],
            a.parallel,
        )
    elif a.part == "korean":
        jamo = {"jamo": "on", "jamo-chars": "on", "syllables": "off", "default": "auto"}
        extra = {"jamo-chars": ["train.seq_unit=chars"]}
        for v in a.variants:  # once, before runs side by side would race to prepare them
            prepare(a.corpus, jamo[v])
        jobs = [
            lambda v=v, m=m, s=s: train_and_score(
                f"ko-{Path(a.corpus).stem}-{v}-{m:g}m-s{s}{a.tag}",
                a.corpus,
                m,
                a.config,
                a.sets + extra.get(v, []),
                s,
                jamo[v],
            )
            for m in a.minutes
            for s in a.seeds
            for v in a.variants
        ]
        pairs(jobs, a.parallel)
    elif a.part == "cells":
        for corpus in a.corpora:
            prepare(corpus, tree=a.tree)  # once, before a pair would race to prepare it
            for m in a.minutes:
                for s in a.seeds:
                    pairs(
                        [
                            lambda name=name, config=config, sets=sets, m=m, s=s, corpus=corpus: (
                                train_and_score(
                                    f"cells-{name}-{Path(corpus).stem}-{m:g}m-s{s}",
                                    corpus,
                                    m,
                                    config,
                                    sets,
                                    seed=s,
                                    tree=a.tree,
                                    windows=corpus == "tinyshakespeare.txt",
                                )
                            )
                            for name, config, sets in (
                                ("lstm", "shakespeare", []),
                                (Path(a.config).stem, a.config, a.sets),
                            )
                        ],
                        a.parallel,
                    )
    elif a.part == "grid":
        jobs = []
        prepare(a.corpus)
        for size in a.sizes:
            sets = list(a.sets)
            if size == "auto":
                sets.append("model.size=auto")
            else:
                layers, units = map(int, size.split("x"))
                sets += [
                    f"model.num_layers={layers}",
                    f"model.rnn_size={units}",
                    f"model.embedding_size={64 if units <= 256 else 128}",
                ]
            for s in a.seeds:
                jobs.append(
                    lambda sets=sets, size=size, s=s: train_and_score(
                        f"grid-{Path(a.corpus).stem}-{size}-{a.minutes:g}m-s{s}{a.tag}",
                        a.corpus,
                        a.minutes,
                        a.config,
                        sets,
                        s,
                    )
                )
        pairs(jobs, a.parallel)
    else:
        for line in RESULTS.read_text().splitlines():
            r = json.loads(line)
            if a.filter in r["name"]:
                w = r.get("last10_windows", {}).get("nats_per_char")
                print(
                    f"{r['name']:44} steps {r['steps']:6} best@{r['best_step']:6} "
                    f"val {r['val_loss']:.4f} val_bpc_char {r['val_bpc_char']:.4f} "
                    f"test {r['test']['nats_per_char']:.4f} nats {r['test']['bpc']:.4f} bpc"
                    + (f" last10/256 {w:.4f}" if w else "")
                    + f"  [{r['machine']}]"
                )


if __name__ == "__main__":
    main()
