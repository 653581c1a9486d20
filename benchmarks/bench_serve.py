"""`charrnn serve` against `charrnn sample` run as a process per request, side by side.

For 1, 4 and 16 concurrent clients, each asking for one streamed sample of -n 500
characters (its own seed) of a 2x128 LSTM: requests per second (clients / wall time of
the round) and time to first character (from sending the request to the first generated
character), medians over --rounds.  The reference starts `charrnn sample RUN -n 500
--seed S` per request, as a program without a server would, and reads its stdout.

    python benchmarks/bench_serve.py --rounds 5

--worst: instead, the server under the worst requests its default limits allow (issue 27):
/healthz and a 20-character generate timed by a probe client (median and slowest of
--probes, and of all those in --hold seconds under load) on the idle server (the
reference, same run) and while (a) the widest beam over --max-chars with the longest
prime runs, (b) every slot but one holds a worst
request (widest beams and 64 samples x --max-chars, alternating: the samples go past
NumPy's share, so they hand over to TensorFlow child processes, at most --max-children at
once); the server's resident memory (idle, peak, after), the most children live at once,
and the server's memory above idle plus its children's peaks against the bound /v1/model
states (which counts the children).

    python benchmarks/bench_serve.py --worst

--openai: instead, /v1/completions (OpenAI's API, streamed chunks) beside /v1/generate on
the same server and engine, the same requests (-n / max_tokens 500, a seed each): requests
per second and time to first character at 1, 4 and 16 clients, and their ratio (the OpenAI
route's cost: its checks and chunk shape; the issue asks for within 10%).

    python benchmarks/bench_serve.py --openai --rounds 5

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
    subprocess.run(
        [sys.executable, "-m", "charrnn", *map(str, args)],
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def setup(work: Path) -> Path:
    run = work / "runs" / "quick"
    if not (run / "model.json").exists():
        work.mkdir(parents=True, exist_ok=True)
        (work / "shakespeare.txt").write_bytes((ROOT / "data" / "shakespeare.txt").read_bytes())
        sh("prepare", "shakespeare.txt", "-o", "data/shakespeare", "--force", "-q", cwd=work)
        sh(
            "train",
            "--config",
            "quick.yaml",
            "--data",
            "data/shakespeare",
            "--out",
            run,
            "--max-steps",
            30,
            "--force",
            cwd=work,
        )
    return run


def one_request(port, seed):
    """(time to the first generated character, total time) of one streamed request."""
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request(
        "POST",
        "/v1/generate",
        json.dumps({"n": N, "seed": seed, "stream": True}),
        {"Content-Type": "application/json"},
    )
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


def one_completion(port, seed):
    """``one_request`` through POST /v1/completions (OpenAI's chunks, then [DONE])."""
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request(
        "POST",
        "/v1/completions",
        json.dumps({"prompt": "", "max_tokens": N, "seed": seed, "stream": True}),
        {"Content-Type": "application/json"},
    )
    first, chars, done = None, 0, False
    for line in c.getresponse():
        if line.startswith(b"data: [DONE]"):
            done = True
        elif line.startswith(b"data: "):
            text = json.loads(line[6:])["choices"][0]["text"]
            if text and first is None:
                first = time.perf_counter() - t0
            chars += len(text)
    c.close()
    assert chars == N and done, chars
    return first, time.perf_counter() - t0


def openai_beside_generate(port, clients_list, rounds):
    print(
        "| clients | /v1/completions req/s | /v1/generate req/s | ratio | completions first char "
        "| generate first char |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for clients in clients_list:
        oa, gen = [], []
        for r in range(rounds):  # alternate, so both see the same machine
            seeds = r * 1000
            oa.append(round_of(clients, lambda i, s=seeds: one_completion(port, s + i)))
            gen.append(round_of(clients, lambda i, s=seeds: one_request(port, s + i)))
        o_rps, g_rps = (statistics.median(x[0] for x in v) for v in (oa, gen))
        o_ttfc, g_ttfc = (statistics.median(x[1] for x in v) for v in (oa, gen))
        print(
            f"| {clients} | {o_rps:.1f} | {g_rps:.1f} | {o_rps / g_rps:.2f} | "
            f"{o_ttfc * 1000:.0f} ms | {g_ttfc * 1000:.0f} ms |",
            flush=True,
        )


def one_process(run, seed):
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "sample", str(run), "-n", str(N), "--seed", str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
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
            f for f in ("avx2", "avx512f", "avx512_bf16") if f in flags
        )
    except (OSError, AttributeError):
        return platform.processor()


def memory_mb(pid):
    """(resident, peak resident) MB of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    return tuple(
        int(re.search(rf"{k}:\s+(\d+) kB", status).group(1)) / 1024 for k in ("VmRSS", "VmHWM")
    )


def children(pid):
    """{pid: peak resident MB} of the live TensorFlow child processes of ``pid``."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"charrnn.generate.xla_process" in (d / "cmdline").read_bytes():
                found[int(d.name)] = memory_mb(int(d.name))[1]
        except (OSError, AttributeError):
            continue
    return found


class Watch(threading.Thread):
    """Every 0.1 s: the most children live at once and the most memory the server (above
    ``idle``) and its children (their peaks) held together, MB."""

    def __init__(self, pid, idle):
        super().__init__(daemon=True)
        self.pid, self.idle, self.most, self.held, self.on = pid, idle, 0, 0.0, True
        self.start()

    def run(self):
        while self.on:
            kids = children(self.pid)
            self.most = max(self.most, len(kids))
            self.held = max(self.held, memory_mb(self.pid)[0] - self.idle + sum(kids.values()))
            time.sleep(0.1)


def get(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request(
        method,
        path,
        json.dumps(body) if body is not None else None,
        {"Content-Type": "application/json"} if body is not None else {},
    )
    r = c.getresponse()
    out = r.status, json.loads(r.read())
    c.close()
    return out


def probe(port, probes, hold=0.0):
    """Median and slowest seconds of /healthz and of a 20-character generate: ``probes``
    of each, and more until ``hold`` seconds have passed."""
    health, gen = [], []
    end = time.perf_counter() + hold
    i = 0
    while i < probes or time.perf_counter() < end:
        t = time.perf_counter()
        assert get(port, "GET", "/healthz")[0] == 200
        health.append(time.perf_counter() - t)
        t = time.perf_counter()
        status, reply = get(port, "POST", "/v1/generate", {"n": 20, "seed": i})
        assert status == 200, reply
        gen.append(time.perf_counter() - t)
        i += 1
        time.sleep(0.05)
    return [(statistics.median(x), max(x)) for x in (health, gen)]


def worst(run, probes, hold):
    server = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "serve", str(run), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    port = int(re.search(r"127\.0\.0\.1:(\d+)", server.stderr.readline()).group(1))
    try:
        m = get(port, "GET", "/v1/model")[1]
        lim = m["limits"]
        n, streams = lim["max_chars"], lim["max_streams"]
        prime = ("the " * n)[:n]
        kinds = [
            {"n": n, "prime": prime, "beam": lim["max_beam"]},
            {"n": n, "prime": prime, "num_samples": lim["max_samples"], "top_p": 0.9},
        ]
        get(port, "POST", "/v1/generate", {"n": 20})  # warm
        idle_rss = memory_mb(server.pid)[0]
        print(
            f"# {cpu()}; Python {platform.python_version()}; {m['cell']} "
            f"{m['num_layers']}x{m['rnn_size']}, vocabulary {m['vocab_size']}; limits: "
            f"max_chars {n}, {streams} streams, beam {lim['max_beam']}, {lim['max_children']} "
            f"children of {lim['child_memory_mb']} MB, bound +{lim['memory_bound_mb']} MB; "
            f"at least {probes} probes (for {hold:g} s under load), median / slowest",
            flush=True,
        )
        print(
            "| load | /healthz | generate n=20 | server RSS now / peak (MB) | children now / most |"
        )
        print("|---|---:|---:|---:|---:|")
        watch = Watch(server.pid, idle_rss)

        def row(name, hold=0.0):
            (h50, hmax), (g50, gmax) = probe(port, probes, hold)
            rss, peak = memory_mb(server.pid)
            print(
                f"| {name} | {h50 * 1000:.0f} / {hmax * 1000:.0f} ms | {g50 * 1000:.0f} / "
                f"{gmax * 1000:.0f} ms | {rss:.0f} / {peak:.0f} | {len(children(server.pid))}"
                f" / {watch.most} |",
                flush=True,
            )

        row("idle (reference)")
        for name, bodies in (
            ("the widest beam, longest prime and n", kinds[:1]),
            (
                f"{streams - 1} worst requests (beams, 64 x n top_p samples)",
                [kinds[i % 2] for i in range(streams - 1)],
            ),
        ):
            conns = []
            for body in bodies:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
                c.request(
                    "POST", "/v1/generate", json.dumps(body), {"Content-Type": "application/json"}
                )
                conns.append(c)
            while get(port, "GET", "/healthz")[1]["active_streams"] < len(bodies):
                time.sleep(0.05)
            time.sleep(1)
            row(name, hold)
            for c in conns:
                c.sock.shutdown(2)
                c.close()
            while get(port, "GET", "/healthz")[1]["active_streams"]:
                time.sleep(0.05)
        watch.on = False
        watch.join()
        rss, peak = memory_mb(server.pid)
        print(
            f"\nresident memory: idle {idle_rss:.0f} MB, peak {peak:.0f} MB "
            f"(+{peak - idle_rss:.0f} MB), after the clients left {rss:.0f} MB; "
            f"with the children (their peaks) at "
            f"most +{watch.held:.0f} MB of the bound's +{lim['memory_bound_mb']} MB; at most "
            f"{watch.most} children at once, {len(children(server.pid))} left"
        )
    finally:
        server.terminate()
        server.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--work", type=Path, default=Path("/tmp/charrnn-bench-serve"))
    ap.add_argument("--worst", action="store_true", help="the server under the worst requests")
    ap.add_argument("--openai", action="store_true", help="/v1/completions beside /v1/generate")
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument(
        "--hold",
        type=float,
        default=20.0,
        help="--worst: seconds to probe each load (TensorFlow children take "
        "several to start, then compute)",
    )
    a = ap.parse_args()
    run = setup(a.work)
    if a.worst:
        return worst(run, a.probes, a.hold)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "charrnn",
            "serve",
            str(run),
            "--port",
            "0",
            "--max-streams",
            str(max(a.clients) * 2),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    port = int(re.search(r"127\.0\.0\.1:(\d+)", server.stderr.readline()).group(1))
    one_request(port, 0)  # warm
    print(
        f"# {cpu()}; Python {platform.python_version()}; {a.rounds} rounds, medians; "
        f"2x128 LSTM, n = {N}, streamed",
        flush=True,
    )
    try:
        if a.openai:
            return openai_beside_generate(port, a.clients, a.rounds)
        print(
            "| clients | serve req/s | process-per-request req/s | ratio | serve first char | "
            "process first char |"
        )
        print("|---:|---:|---:|---:|---:|---:|")
        for clients in a.clients:
            serve, proc = [], []
            for r in range(a.rounds):  # alternate, so both see the same machine
                seeds = r * 1000
                serve.append(round_of(clients, lambda i, s=seeds: one_request(port, s + i)))
                proc.append(round_of(clients, lambda i, s=seeds: one_process(run, s + i)))
            s_rps, p_rps = (statistics.median(x[0] for x in v) for v in (serve, proc))
            s_ttfc, p_ttfc = (statistics.median(x[1] for x in v) for v in (serve, proc))
            print(
                f"| {clients} | {s_rps:.1f} | {p_rps:.2f} | {s_rps / p_rps:.1f}x | "
                f"{s_ttfc * 1000:.0f} ms | {p_ttfc * 1000:.0f} ms |",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
