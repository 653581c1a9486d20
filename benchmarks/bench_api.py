"""charrnn from Python against the command line: `import charrnn`, and the first generated
character from a .safetensors file.

    python benchmarks/bench_api.py                      # runs/quick, 7 repeats
    python benchmarks/bench_api.py --run runs/mine --repeat 11

Side by side in one run, the two of each pair alternating which goes first, after one
untimed warm-up of each (the page cache), medians over --repeat; every figure is a whole
fresh process, timed from just before it is started:

- import: wall time of `python -c "import charrnn"` against `python -c pass`, and their
  difference (the median of the paired differences; issue 29's target: at most 50 ms), and
  whether the import brought in tensorflow (it must not) or numpy;
- first character: a `python -c` that calls ``charrnn.load(FILE)`` and writes the first
  piece of ``model.stream(n=1, seed=1)`` against `charrnn sample FILE -n 1 --seed 1`, each
  process's stdout read byte by byte until the first byte, then to its end (the whole
  process); both must write the same character.

FILE is the model of --run (its best checkpoint) exported by `charrnn export` into a
temporary directory.  Both sides import this tree's charrnn (PYTHONPATH, working
directory /); `charrnn` is the console script beside this Python when it has one, else
`python -m charrnn`.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_serve import cpu  # the CPU model, its count and its vector flags (this directory)

HERE = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(HERE))
FIRST_PIECE = (
    "import sys, charrnn\n"
    "piece = next(charrnn.load(sys.argv[1]).stream(n=1, seed=1))\n"
    "sys.stdout.write(piece)\n"
    "sys.stdout.flush()\n"
)
IMPORT_CHECK = (
    "import sys, charrnn\n"
    "print(' '.join(m for m in ('tensorflow', 'keras', 'numpy') if m in sys.modules) or '-')\n"
)


def charrnn_command() -> list[str]:
    """The `charrnn` a user runs: the console script installed beside this Python (not a
    shim on PATH, which adds its own start-up), else `python -m charrnn`."""
    script = Path(sys.executable).parent / "charrnn"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "charrnn"]


def wall(argv: list[str]) -> float:
    """Seconds from starting ``argv`` to its exit."""
    t = time.perf_counter()
    subprocess.run(argv, env=ENV, cwd="/", check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def first_byte(argv: list[str]) -> tuple[float, float, bytes]:
    """(seconds to the first byte on stdout, seconds to exit, all of stdout) of ``argv``."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe nobody reads while we wait
        t = time.perf_counter()
        p = subprocess.Popen(argv, env=ENV, cwd="/", stdout=subprocess.PIPE, stderr=err)
        head = p.stdout.read(1)
        first = time.perf_counter() - t
        rest = p.stdout.read()
        code = p.wait()
        whole = time.perf_counter() - t
        if code != 0 or not head:
            err.seek(0)
            message = err.read().decode("utf-8", "replace")[-2000:]
            sys.exit(f"{' '.join(argv)} failed (exit {code}):\n{message}")
    return first, whole, head + rest


def interleaved(pair: dict, repeat: int, measure) -> dict:
    """{name: [figures]} of the two commands in ``pair``, one untimed warm-up each, then
    ``repeat`` rounds with the first going first in even rounds and last in odd ones."""
    names = list(pair)
    for name in names:
        measure(pair[name])
    got = {name: [] for name in names}
    for r in range(repeat):
        for name in names if r % 2 == 0 else names[::-1]:
            got[name].append(measure(pair[name]))
    return got


def export(run: Path, out: Path) -> Path:
    model = out / "model.safetensors"
    subprocess.run(
        [sys.executable, "-m", "charrnn", "export", str(run), "-o", str(model)],
        env=ENV,
        cwd="/",
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return model


def import_table(repeat: int) -> list[str]:
    got = interleaved(
        {
            "pass": [sys.executable, "-c", "pass"],
            "import": [sys.executable, "-c", "import charrnn"],
        },
        repeat,
        wall,
    )
    diffs = [(b - a) * 1000 for a, b in zip(got["pass"], got["import"])]
    modules = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK],
        env=ENV,
        cwd="/",
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ms = {k: [s * 1000 for s in v] for k, v in got.items()}
    return [
        "| process | wall ms | fastest ms |",
        "|---|---:|---:|",
        f"| `python -c pass` | {statistics.median(ms['pass']):.1f} | {min(ms['pass']):.1f} |",
        f'| `python -c "import charrnn"` | {statistics.median(ms["import"]):.1f} '
        f"| {min(ms['import']):.1f} |",
        f"| import charrnn, difference (target <= 50) | {statistics.median(diffs):.1f} "
        f"| {min(diffs):.1f} |",
        "",
        f"tensorflow imported by `import charrnn`: {'YES' if 'tensorflow' in modules else 'no'} "
        f"(of tensorflow, keras, numpy, in sys.modules after it: {modules})",
    ]


def first_char_table(model: Path, repeat: int) -> list[str]:
    cli = charrnn_command()
    got = interleaved(
        {
            "python": [sys.executable, "-c", FIRST_PIECE, str(model)],
            "cli": [*cli, "sample", str(model), "-n", "1", "--seed", "1"],
        },
        repeat,
        first_byte,
    )
    texts = {name: {r[2] for r in runs} for name, runs in got.items()}
    if texts["python"] != texts["cli"] or len(texts["cli"]) != 1:
        sys.exit(f"the two wrote different text: {texts}")
    first = {name: statistics.median(r[0] for r in runs) for name, runs in got.items()}
    whole = {name: statistics.median(r[1] for r in runs) for name, runs in got.items()}
    cli_name = "charrnn" if len(cli) == 1 else "python -m charrnn"
    return [
        "| from process start | first character s | whole process s |",
        "|---|---:|---:|",
        f"| Python: `charrnn.load(FILE)`, `next(model.stream(n=1))` | {first['python']:.3f} "
        f"| {whole['python']:.3f} |",
        f"| `{cli_name} sample FILE -n 1` | {first['cli']:.3f} | {whole['cli']:.3f} |",
        f"| Python / command line | {first['python'] / first['cli']:.2f}x "
        f"| {whole['python'] / whole['cli']:.2f}x |",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=Path("runs/quick"), help="a trained run")
    ap.add_argument("--repeat", type=int, default=7, help="timed runs of each (medians)")
    a = ap.parse_args()
    if not (a.run / "model.json").is_file():
        sys.exit(
            f"{a.run} is not a trained charrnn run (no model.json). Train the Quickstart's "
            "(`charrnn prepare data/shakespeare.txt && charrnn train --config quick.yaml`, "
            "which writes runs/quick) or pass another with --run"
        )
    commit = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"# charrnn API benchmark, {time.strftime('%Y-%m-%d')}: {cpu()}; Python "
        f"{platform.python_version()}; load {os.getloadavg()[0]:.1f}; charrnn {commit or '?'} "
        f"({HERE}); medians of {a.repeat} interleaved runs\n"
    )
    print("\n".join(import_table(a.repeat)))
    with tempfile.TemporaryDirectory() as tmp:
        model = export(a.run.resolve(), Path(tmp))
        print(f"\nFILE: {a.run} exported to model.safetensors ({model.stat().st_size:,} bytes)\n")
        print("\n".join(first_char_table(model, a.repeat)))


if __name__ == "__main__":
    main()
