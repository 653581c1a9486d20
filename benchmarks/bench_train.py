"""Benchmark training throughput of `charrnn train` against what a user would write instead.

Side by side in one run, on the same machine, the same data and the same model shapes:

  charrnn  a real `charrnn train` child process (the shipped defaults, --set for the shape;
           train.precision auto = bfloat16 matmuls on CPUs with AVX512_BF16/AMX);
           its plain progress lines on stderr (one per train.log_every steps) are timestamped
           as they arrive, and chars/s = log_every * batch * seq / (time between two lines).
  charrnn-fp32  the same with --set train.precision=float32.
  keras    plain Keras 3: Sequential(Embedding, LSTM x L, Dense), compile(Adam with
           global_clipnorm, sparse CE from logits), model.fit on a tf.data pipeline of
           (x, y) windows; one epoch per timed window.
  torch    PyTorch nn.LSTM of the same shape, Adam, clip_grad_norm_, hidden state carried
           (detached) across batches -- the classic char-rnn loop.  --cell mingru: charrnn's
           minGRU block written in PyTorch (embedding H wide, as charrnn's).
  keras-1thread  (only with --only) the keras reference with TF_NUM_INTRAOP_THREADS=1, the
           setting charrnn's train.intra_op_threads auto picks for small models on 2 cores.

Each reference runs in its own process; the three are run interleaved (charrnn keras torch,
charrnn keras torch, ...) for --rounds rounds so slow phases of a shared machine hit all of
them alike.  Within a process the first window (compilation, warm-up) is dropped, and for
charrnn also the last (it includes the final validation).  Reported: the median chars/s over
all timed windows of all rounds, and the ratios charrnn/keras and charrnn/torch.

--memory also trains charrnn (small shape) on the corpus and on one 100x larger (47 MB) and
compares the children's peak RSS (ru_maxrss): the ids are memory-mapped and a batch copies only
its own batch x (seq + 1) ids, so it must not grow with the corpus.

    python benchmarks/bench_train.py                      # both shapes, 3 rounds (~15 min)
    python benchmarks/bench_train.py --shapes small --rounds 1 --only keras,torch
    python benchmarks/bench_train.py --memory --shapes none
    python benchmarks/bench_train.py --cell gru           # the same with GRU layers everywhere
    python benchmarks/bench_train.py --cell mingru        # charrnn's minGRU block, and the
                                                          # same block in PyTorch (no Keras)

torch is only a benchmark reference (`pip install torch`), never a charrnn dependency.
"""

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "data", "shakespeare.txt")  # ~470 KB, 65 symbols

# name: (num_layers, rnn_size, batch_size, seq_length, steps per timed window)
SHAPES = {
    "small": (2, 128, 64, 100, 30),
    "medium": (2, 256, 64, 100, 10),
    "large": (3, 512, 50, 50, 5),
}
EMBEDDING = 64
LEARNING_RATE = 0.002
GRAD_CLIP = 5.0
# set to run the references as on an older CPU (oneDNN's, MKL's and PyTorch's own kernels) or
# TensorFlow as it runs by default on a CPU without AVX512_VNNI/BF16 (oneDNN ops off)
EMULATION = (
    "ONEDNN_MAX_CPU_ISA",
    "TF_ENABLE_ONEDNN_OPTS",
    "ATEN_CPU_CAPABILITY",
    "MKL_ENABLE_INSTRUCTIONS",
)
REFERENCES = ("charrnn", "charrnn-fp32", "keras", "torch", "keras-1thread")
DEFAULT_REFERENCES = REFERENCES[:4]


# --- the workers (each runs in its own process) -----------------------------------------


def load_ids(dataset):
    """The prepared train split and vocabulary size (charrnn's own format, memory-mapped)."""
    import numpy as np

    with open(os.path.join(dataset, "vocab.json"), encoding="utf-8") as f:
        vocab = len(json.load(f)["symbols"])
    ids = np.load(os.path.join(dataset, "train.npy"), mmap_mode="r", allow_pickle=False)
    return np.asarray(ids, dtype=np.int32), vocab


def worker_keras(dataset, L, H, B, T, steps, windows, cell="lstm"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    ids, V = load_ids(dataset)
    n = (len(ids) - 1) // T
    x = ids[: n * T].reshape(n, T)
    y = ids[1 : n * T + 1].reshape(n, T)
    data = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(n, seed=0)
        .batch(B, drop_remainder=True)
        .repeat()
        .prefetch(tf.data.AUTOTUNE)
    )
    model = keras.Sequential(
        [keras.Input((T,), dtype="int32"), keras.layers.Embedding(V, EMBEDDING)]
        + [
            {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell](H, return_sequences=True)
            for _ in range(L)
        ]
        + [keras.layers.Dense(V)]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE, global_clipnorm=GRAD_CLIP),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )

    times = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    model.fit(data, epochs=windows + 1, steps_per_epoch=steps, callbacks=[Clock()], verbose=0)
    return [steps * B * T / s for s in times[1:]]


def worker_torch(dataset, L, H, B, T, steps, windows, cell="lstm"):
    import numpy as np
    import torch
    from torch import nn

    torch.manual_seed(0)
    ids, V = load_ids(dataset)

    class CharRNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(V, EMBEDDING)
            self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](
                EMBEDDING, H, num_layers=L, batch_first=True
            )
            self.out = nn.Linear(H, V)

        def forward(self, x, hidden):
            y, hidden = self.rnn(self.embedding(x), hidden)
            return self.out(y), hidden

    class MinGRUBlock(nn.Module):
        """charrnn's block (charrnn/nn/cells/minimal.py): x += minGRU(rmsnorm(x)),
        x += F2 relu(F1 rmsnorm(x))^2; the recurrence h = (1 - z) h + z h~ as a plain loop
        (charrnn's own is a loop too: a parallel scan was slower on 2 cores)."""

        def __init__(self):
            super().__init__()
            self.norm, self.ff_norm = nn.RMSNorm(H, eps=1e-6), nn.RMSNorm(H, eps=1e-6)
            self.proj, self.ff_in, self.ff_out = (
                nn.Linear(H, 2 * H),
                nn.Linear(H, 4 * H),
                nn.Linear(4 * H, H),
            )

        def forward(self, x, h):
            z, candidate = self.proj(self.norm(x)).chunk(2, -1)
            z = torch.sigmoid(z)
            a, b, hs = 1 - z, z * candidate, []
            for t in range(x.shape[1]):
                h = a[:, t] * h + b[:, t]
                hs.append(h)
            x = x + torch.stack(hs, 1)
            return x + self.ff_out(torch.relu(self.ff_in(self.ff_norm(x))) ** 2), h

    class MinGRU(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(V, H)  # the residual stream, H wide
            self.blocks = nn.ModuleList(MinGRUBlock() for _ in range(L))
            self.norm, self.out = nn.RMSNorm(H, eps=1e-6), nn.Linear(H, V)

        def forward(self, x, hidden):
            x, new = self.embedding(x), []
            hidden = hidden or [torch.zeros(x.shape[0], H) for _ in self.blocks]
            for block, h in zip(self.blocks, hidden):
                x, h = block(x, h)
                new.append(h)
            return self.out(self.norm(x)), new

    model = MinGRU() if cell == "mingru" else CharRNN()
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()
    # B contiguous streams, consecutive batches continue them (truncated BPTT).
    per = (len(ids) - 1) // B
    streams = np.stack([ids[b * per : (b + 1) * per + 1] for b in range(B)])
    nb = (per - 1) // T
    hidden = None
    rates = []
    k = 0
    for _ in range(windows + 1):
        t0 = time.perf_counter()
        for _ in range(steps):
            if k % nb == 0:
                hidden = None
            chunk = torch.from_numpy(
                streams[:, (k % nb) * T : (k % nb + 1) * T + 1].astype(np.int64)
            )
            x, y = chunk[:, :-1], chunk[:, 1:]
            logits, hidden = model(x, hidden)
            hidden = hidden.detach() if cell == "gru" else type(hidden)(h.detach() for h in hidden)
            loss = loss_fn(logits.reshape(-1, V), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            opt.step()
            k += 1
        loss.item()
        rates.append(steps * B * T / (time.perf_counter() - t0))
    return rates[1:]


def worker_charrnn(dataset, L, H, B, T, steps, windows, cell="lstm", workdir=None, precision=None):
    """Run the real CLI and time its progress lines; returns (rates, peak RSS of the child)."""
    out = tempfile.mkdtemp(prefix="run-", dir=workdir)
    sets = {
        "model.cell": cell,
        "model.num_layers": L,
        "model.rnn_size": H,
        "model.embedding_size": EMBEDDING,
        "model.dropout": 0.0,
        "train.batch_size": B,
        "train.seq_length": T,
        "train.learning_rate": LEARNING_RATE,
        "train.grad_clip": GRAD_CLIP,
        "train.max_epochs": "null",
        "train.max_steps": (windows + 2) * steps,
        "train.log_every": steps,
        "train.eval_every": 10**9,
        "train.save_every": 10**9,
        "train.sample_length": 0,
    }
    if precision:
        sets["train.precision"] = precision
    cmd = [
        sys.executable,
        "-m",
        "charrnn",
        "train",
        "--data",
        dataset,
        "--out",
        os.path.join(out, "r"),
    ]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    proc = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT
    )
    stamps, lines = [], []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("step "):
            stamps.append(time.perf_counter())
    _, status, usage = os.wait4(proc.pid, 0)
    proc.wait()
    if os.waitstatus_to_exitcode(status) != 0 or len(stamps) < 3:
        sys.exit("charrnn train failed:\n" + "".join(lines[-20:]))
    gaps = [b - a for a, b in zip(stamps, stamps[1:])][:-1]  # drop the window with the final eval
    return [steps * B * T / g for g in gaps], usage.ru_maxrss * 1024


WORKERS = {"keras": worker_keras, "torch": worker_torch}


# --- the driver -------------------------------------------------------------------------


def prepare(text_path, out):
    subprocess.run(
        [sys.executable, "-m", "charrnn", "prepare", text_path, "-o", out, "-q"],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return out


def run_reference(name, dataset, shape, windows, workdir, cell):
    L, H, B, T, steps = SHAPES[shape]
    if name.startswith("charrnn"):
        precision = "float32" if name == "charrnn-fp32" else None
        rates, _ = worker_charrnn(dataset, L, H, B, T, steps, windows, cell, workdir, precision)
        return rates
    env = dict(os.environ)
    if name == "keras-1thread":  # the thread setting charrnn picks for small models on 2 cores
        name, env["TF_NUM_INTRAOP_THREADS"] = "keras", "1"
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        name,
        "--dataset",
        dataset,
        "--shapes",
        shape,
        "--windows",
        str(windows),
        "--cell",
        cell,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if res.returncode != 0:
        sys.exit(f"{name} worker failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def machine():
    """The CPU as the figures depend on it: model, CPUs, threads per core, caches, the flags
    that pick kernels and precision auto, and the variables that emulate another CPU."""
    cpu = platform.processor() or platform.machine()
    flags, per_core = set(), "?"
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read().split("\n\n")[0]
        fields = dict(ln.split(":", 1) for ln in info.splitlines() if ":" in ln)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        cpu, flags = fields.get("model name", cpu), set(fields.get("flags", "").split())
        per_core = int(fields["siblings"]) // int(fields["cpu cores"])
    except (OSError, KeyError, ValueError):
        pass
    caches = []
    for d in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        with contextlib.suppress(OSError):
            level, kind = (d / "level").read_text().strip(), (d / "type").read_text().strip()
            caches.append(
                f"L{level}{kind[0].lower() if kind != 'Unified' else ''} "
                f"{(d / 'size').read_text().strip()}"
            )
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
    emulated = [f"{k}={os.environ[k]}" for k in EMULATION if k in os.environ]
    sys.path.insert(0, ROOT)
    from charrnn.training.distribute import bfloat16_in_hardware  # as precision auto sees it

    auto = "mixed_bfloat16" if bfloat16_in_hardware() else "float32"
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {per_core} thread(s) per core, "
        f"{' '.join(caches) or 'caches ?'}; flags: {' '.join(f for f in wanted if f in flags)}"
        f"{'; emulating: ' + ' '.join(emulated) if emulated else ''}; "
        f"charrnn's precision auto: {auto}; "
        f"Python {platform.python_version()}"
    )


def versions():
    out = {}
    for mod in ("tensorflow", "keras", "torch"):
        res = subprocess.run(
            [sys.executable, "-c", f"import {mod}; print({mod}.__version__)"],
            capture_output=True,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        out[mod] = res.stdout.strip() or "not installed"
    return out


def memory_check(workdir, windows=1):
    """Peak RSS of `charrnn train` on a corpus and on one 100x larger."""
    blob = open(CORPUS, "rb").read()
    results = {}
    for factor in (1, 100):
        text = os.path.join(workdir, f"corpus{factor}.txt")
        with open(text, "wb") as f:
            for _ in range(factor):
                f.write(blob)
        ds = prepare(text, os.path.join(workdir, f"mem{factor}"))
        L, H, B, T, steps = SHAPES["small"]
        _, rss = worker_charrnn(ds, L, H, B, T, steps, windows, workdir=workdir)
        results[factor] = {"corpus_bytes": len(blob) * factor, "peak_rss": rss}
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--shapes",
        default="small,large",
        help="comma-separated: small (2x128, batch 64, seq 100), medium (2x256, batch 64, "
        "seq 100), large (3x512, batch 50, seq 50), or none",
    )
    p.add_argument(
        "--only",
        default=",".join(DEFAULT_REFERENCES),
        help=f"which references to run, of {', '.join(REFERENCES)}",
    )
    p.add_argument(
        "--cell",
        default="lstm",
        choices=("lstm", "gru", "mingru"),
        help="the recurrent cell (mingru: charrnn's block; no keras reference)",
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--windows", type=int, default=3, help="timed windows per process")
    p.add_argument("--memory", action="store_true", help="also check peak RSS vs corpus size")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--dataset", help=argparse.SUPPRESS)
    a = p.parse_args()

    if a.worker:
        L, H, B, T, steps = SHAPES[a.shapes]
        print(json.dumps(WORKERS[a.worker](a.dataset, L, H, B, T, steps, a.windows, a.cell)))
        return

    shapes = [s for s in a.shapes.split(",") if s and s != "none"]
    only = [r for r in REFERENCES if r in a.only.split(",")]
    if a.cell == "mingru":  # Keras has no minGRU layer
        only = [r for r in only if not r.startswith("keras")]
    report = {"machine": machine(), "versions": versions(), "cell": a.cell, "shapes": {}}
    print(
        f"# {report['machine']}; " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        dataset = prepare(CORPUS, os.path.join(tmp, "data"))
        for shape in shapes:
            rates = {r: [] for r in only}
            for rnd in range(a.rounds):
                for r in only:
                    got = run_reference(r, dataset, shape, a.windows, tmp, a.cell)
                    rates[r] += got
                    print(
                        f"{shape} round {rnd + 1} {r}: " + " ".join(f"{x:,.0f}" for x in got),
                        file=sys.stderr,
                        flush=True,
                    )
            med = {r: statistics.median(v) for r, v in rates.items()}
            report["shapes"][shape] = {"shape": SHAPES[shape][:4], "median": med, "rates": rates}
        if a.memory:
            report["memory"] = memory_check(tmp)

    ours = [r for r in only if r.startswith("charrnn")]
    refs = [r for r in only if not r.startswith("charrnn")]
    ratios = [(o, r) for o in ours for r in refs]
    print(
        "\n| shape | "
        + " | ".join(f"{r} chars/s" for r in only)
        + "".join(f" | {o}/{r}" for o, r in ratios)
        + " |"
    )
    print("|---" * (len(only) + len(ratios) + 1) + "|")
    for res in report["shapes"].values():
        L, H, B, T = res["shape"]
        med = res["median"]
        print(
            f"| {L}x{H} {a.cell}, batch {B}, seq {T} | "
            + " | ".join(f"{med[r]:,.0f}" for r in only)
            + "".join(f" | {med[o] / med[r]:.2f}x" for o, r in ratios)
            + " |"
        )
    if "memory" in report:
        for m in report["memory"].values():
            print(
                f"memory: corpus {m['corpus_bytes'] / 1e6:,.1f} MB -> charrnn train peak RSS "
                f"{m['peak_rss'] / 2**20:,.0f} MiB"
            )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
