"""A real-size corpus: ~200 MB of Python source through `charrnn prepare` and a 4-minute
`charrnn train`, as a new user with a real corpus would run them.

The corpus is built here from the .py files of the installed packages and the standard
library (sorted by path, UTF-8 only, each followed by a newline; nothing is shipped).  Each
run is a real `charrnn train` process; from its own lines and its rusage:

- the run's clock and the process's wall time against max_time (target: the clock within
  5% of max_time on a quiet machine);
- the share of wall time in training steps (target >= 80%);
- peak RSS (target < 2.5 GB) and the evaluations done;
- Ctrl-C: a run sent SIGINT mid-training, and one sent SIGINT inside a long evaluation
  (``train.eval_symbols=all``, the old behaviour's whole split): seconds to exit.

    python benchmarks/bench_bigcorpus.py                 # 200 MB, 240 s, both models
    python benchmarks/bench_bigcorpus.py --mb 20 --seconds 60 --only lstm   # a quick look
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

LSTM = [
    "--set",
    "model.cell=lstm",
    "--set",
    "model.num_layers=2",
    "--set",
    "model.rnn_size=256",
    "--set",
    "model.embedding_size=64",
    "--set",
    "train.batch_size=64",
    "--set",
    "train.seq_length=100",
]
AUTO = ["--set", "model.size=auto", "--set", "model.cell=auto"]


def cpu() -> dict:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    return {
        "model": model,
        "cores": os.cpu_count(),
        "flags": sorted(
            f
            for f in flags
            if f in {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
        ),
        "isa_cap": os.environ.get("ONEDNN_MAX_CPU_ISA"),
    }


def build_corpus(path: Path, megabytes: float) -> dict:
    """Concatenate installed .py files (site-packages, then the standard library) up to size."""
    roots = [Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["stdlib"])]
    limit, total, files = int(megabytes * 1e6), 0, 0
    with open(path, "wb") as out:
        for root in roots:
            for f in sorted(root.rglob("*.py")):
                if total >= limit:
                    break
                try:
                    data = f.read_bytes()
                    data.decode("utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                if b"\0" in data:
                    continue
                out.write(data + b"\n")
                total += len(data) + 1
                files += 1
    return {"bytes": total, "files": files}


def run_train(cmd, interrupt_after=None, interrupt_on=None):
    """Run ``cmd`` (a charrnn train); SIGINT after ``interrupt_after`` seconds or once a stderr
    line matches ``interrupt_on``.  Returns (stderr, wall seconds, exit code, seconds from
    SIGINT to exit)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    lines, sent = [], None

    def read():
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            print(
                f"  | {time.monotonic() - start:6.1f} s  {lines[-1]}", file=sys.stderr, flush=True
            )

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while proc.poll() is None:
        time.sleep(0.05)
        if sent is None and (
            (interrupt_on and any(re.search(interrupt_on, ln) for ln in lines))
            or (interrupt_after and time.monotonic() - start > interrupt_after)
        ):
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
    end = time.monotonic()
    reader.join()
    return "\n".join(lines), end - start, proc.returncode, (end - sent) if sent else None


def run_and_measure(name, data, out, seconds, extra):
    cmd = [
        sys.executable,
        "-m",
        "charrnn",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--force",
        "--max-time",
        f"{seconds}s",
        *extra,
    ]
    stderr, wall, code, _ = run_train([sys.executable, "-c", _WRAPPER, *cmd])
    rss = float(re.search(r"^peak_rss_mb ([0-9.]+)$", stderr, re.M).group(1))
    return summarise(name, stderr, wall, rss, code, seconds, out)


# Runs the command as a child and prints its peak RSS (from its own rusage) last.
_WRAPPER = """
import os, resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
print(f"peak_rss_mb {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f}",
      file=sys.stderr)
sys.exit(code)
"""


def summarise(name, stderr, wall, rss, code, budget, out):
    m = re.search(
        r"time: run clock ([0-9.]+) s of max_time [0-9.]+ s: steps ([0-9.]+) s, "
        r"evaluation ([0-9.]+) s, checkpoints ([0-9.]+) s",
        stderr,
    )
    clock, steps, evaluation, ckpt = (float(x) for x in m.groups()) if m else (None,) * 4
    metrics = (
        [json.loads(ln) for ln in (Path(out) / "metrics.jsonl").read_text().splitlines()]
        if (Path(out) / "metrics.jsonl").exists()
        else []
    )
    evals = [r for r in metrics if "val_loss" in r]
    model = re.search(r"^model: (.*)$", stderr, re.M)
    return {
        "run": name,
        "exit": code,
        "model": model.group(1) if model else None,
        "max_time": budget,
        "clock": clock,
        "clock_vs_budget": clock / budget if clock else None,
        "wall": round(wall, 1),
        "steps_s": steps,
        "step_share_of_wall": steps / wall if steps else None,
        "evaluation_s": evaluation,
        "checkpoints_s": ckpt,
        "evaluations": len(evals),
        "val_symbols": evals[-1]["val_symbols"] if evals else None,
        "last_step": metrics[-1]["step"] if metrics else None,
        "peak_rss_mb": rss,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=200, help="corpus size in MB")
    ap.add_argument("--seconds", type=int, default=240, help="max_time of each training run")
    ap.add_argument(
        "--only",
        default="lstm,auto,interrupt",
        help="which runs: lstm, auto, interrupt (comma-separated)",
    )
    ap.add_argument("--work", help="a directory to keep the corpus and runs in [default: temp]")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bigcorpus-"))
    work.mkdir(parents=True, exist_ok=True)
    report = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu(), "mb": args.mb}
    corpus, data = work / "corpus.py", work / "data"
    if not (data / "meta.json").exists():
        report["corpus"] = build_corpus(corpus, args.mb)
        start = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "charrnn", "prepare", str(corpus), "-o", str(data), "--force"],
            check=True,
        )
        report["prepare_s"] = round(time.monotonic() - start, 1)
    meta = json.loads((data / "meta.json").read_text())
    report["vocab"] = len(json.loads((data / "vocab.json").read_text())["symbols"])
    report["splits"] = {k: v.get("symbols") for k, v in meta.get("splits", {}).items()}
    runs = []
    only = args.only.split(",")
    if "lstm" in only:
        runs.append(run_and_measure("2x256 lstm", data, work / "lstm", args.seconds, LSTM))
    if "auto" in only:
        runs.append(run_and_measure("model auto", data, work / "auto", args.seconds, AUTO))
    if "interrupt" in only:
        base = [
            sys.executable,
            "-m",
            "charrnn",
            "train",
            "--data",
            str(data),
            "--force",
            "--max-time",
            f"{args.seconds}s",
            *LSTM,
        ]
        stderr, wall, code, latency = run_train(
            base + ["--out", str(work / "int1")], interrupt_after=60
        )
        runs.append(
            {
                "run": "SIGINT at 60 s",
                "exit": code,
                "sigint_to_exit_s": latency,
                "wall": round(wall, 1),
            }
        )
        stderr, wall, code, latency = run_train(
            base
            + [
                "--out",
                str(work / "int2"),
                "--set",
                "train.eval_every=20",
                "--set",
                "train.eval_symbols=all",
            ],
            interrupt_on=r"^evaluating: window",
        )
        runs.append(
            {
                "run": "SIGINT inside a whole-split evaluation",
                "exit": code,
                "sigint_to_exit_s": latency,
                "wall": round(wall, 1),
                "stopped": bool(re.search(r"evaluation stopped at window", stderr)),
            }
        )
    report["runs"] = runs
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
