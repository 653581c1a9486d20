"""`charrnn serve` against `charrnn sample` run as a process per request, side by side.

For 1, 4 and 16 concurrent clients, each asking for one streamed sample of -n 500
characters (its own seed) of a 2x128 LSTM: requests per second (clients / wall time of
the round) and time to first character (from sending the request to the first generated
character), medians over --rounds.  The reference starts `charrnn sample RUN -n 500
--seed S` per request, as a program without a server would, and reads its stdout.

    python benchmarks/bench_serve.py --rounds 5

The model is trained here for a few steps (speed does not depend on the weights):
`charrnn prepare data/shakespeare.txt` and `charrnn train --config quick.yaml
--max-steps 30` in --work.
"""

import argparse
import http.client
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N = 500


def sh(*args, cwd):
    subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def setup(work: Path) -> Path:
    run = work / "runs" / "quick"
    if not (run / "model.json").exists():
        work.mkdir(parents=True, exist_ok=True)
        (work / "shakespeare.txt").write_bytes((ROOT / "data" / "shakespeare.txt").read_bytes())
        sh("prepare", "shakespeare.txt", "-o", "data/shakespeare", "--force", "-q", cwd=work)
        sh("train", "--config", "quick.yaml", "--data", "data/shakespeare", "--out", run,
           "--max-steps", 30, "--force", cwd=work)
    return run


def one_request(port, seed):
    """(time to the first generated character, total time) of one streamed request."""
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/generate", json.dumps({"n": N, "seed": seed, "stream": True}),
              {"Content-Type": "application/json"})
    first, chars = None, 0
    for line in c.getresponse():
        if line.startswith(b"data: ") and b'"text"' in line:
            text = json.loads(line[6:])["text"]
            if text and first is None:
                first = time.perf_counter() - t0
            chars += len(text)
    c.close()
    assert chars == N, chars
    return first, time.perf_counter() - t0


def one_process(run, seed):
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "charrnn", "sample", str(run), "-n", str(N),
                          "--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p.stdout.read(1)
    first = time.perf_counter() - t0
    rest = p.stdout.read()
    p.wait()
    assert p.returncode == 0 and len(rest) >= N - 1
    return first, time.perf_counter() - t0


def round_of(clients, job):
    """(requests per second, median time to first character) of ``clients`` at once."""
    results = [None] * clients

    def work(i):
        results[i] = job(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return clients / wall, statistics.median(r[0] for r in results)


def cpu():
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.*)", info).group(1)
        flags = re.search(r"flags\s*:\s*(.*)", info).group(1).split()
        return f"{model}, {os.cpu_count()} CPUs, " + " ".join(
            f for f in ("avx2", "avx512f", "avx512_bf16") if f in flags)
    except (OSError, AttributeError):
        return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--work", type=Path, default=Path("/tmp/charrnn-bench-serve"))
    a = ap.parse_args()
    run = setup(a.work)
    server = subprocess.Popen([sys.executable, "-m", "charrnn", "serve", str(run), "--port", "0",
                               "--max-streams", str(max(a.clients) * 2)],
                              stderr=subprocess.PIPE, text=True)
    port = int(re.search(r"127\.0\.0\.1:(\d+)", server.stderr.readline()).group(1))
    one_request(port, 0)  # warm
    print(f"# {cpu()}; Python {platform.python_version()}; {a.rounds} rounds, medians; "
          f"2x128 LSTM, n = {N}, streamed", flush=True)
    print("| clients | serve req/s | process-per-request req/s | ratio | serve first char | "
          "process first char |")
    print("|---:|---:|---:|---:|---:|---:|")
    try:
        for clients in a.clients:
            serve, proc = [], []
            for r in range(a.rounds):  # alternate, so both see the same machine
                seeds = r * 1000
                serve.append(round_of(clients, lambda i: one_request(port, seeds + i)))
                proc.append(round_of(clients, lambda i: one_process(run, seeds + i)))
            s_rps, p_rps = (statistics.median(x[0] for x in v) for v in (serve, proc))
            s_ttfc, p_ttfc = (statistics.median(x[1] for x in v) for v in (serve, proc))
            print(f"| {clients} | {s_rps:.1f} | {p_rps:.2f} | {s_rps / p_rps:.1f}x | "
                  f"{s_ttfc * 1000:.0f} ms | {p_ttfc * 1000:.0f} ms |", flush=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
