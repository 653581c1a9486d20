"""The XLA engine in a child process, so that TensorFlow imports and compiles on
the other core while this process streams NumPy-generated text.

Why a process and not a thread: importing TensorFlow holds the GIL for long
stretches.  Measured on the 2-core test machine with the import in a background
thread, the NumPy loop in the main thread ran 5x slower and the import itself took
3x longer; in a child process both run at full speed.  The child imports
TensorFlow alone (not Keras, which the loop does not need) and keeps an XLA
compile cache in the user's cache directory.

Protocol (pipes, no pickle): a message is one JSON line, then the raw bytes of the
arrays it lists as [dtype, shape] (float32 or int32 only).
  parent -> child: {"op": "init", "cell", "names", "batch", "first_lane", "options"} + weights
                   {"op": "run", "t0", "sync"} + forced ids [+ tok, states if sync]
  child -> parent: {"ready": true} | {"error": "..."} | {"op": "out", "seconds"} + ids
The child holds the recurrent state between runs; "sync" hands it over once.

The parent never has to block on the child: ``poll_ready`` and ``poll_run`` read what
has come (the pipe is read without blocking into a buffer of its own) and say whether
the reply is whole, and ``fileno`` is the pipe to select on meanwhile -- so the server's
one engine thread steps other requests while a child starts or computes.  ``run`` is
the blocking call `charrnn sample` makes.

A child costs memory of its own, mostly TensorFlow's (``child_memory``), so a server
caps how many run at once (``ChildSlots``).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.generate.choice import Options
from charrnn.generate.xla_engine import CHUNK, XLAEngine
from charrnn.nn.step import Weights

DELAY_ENV = "CHARRNN_TEST_XLA_DELAY"  # test hook: seconds the child waits before importing
_DTYPES = {"float32": np.float32, "int32": np.int32}


def _send(f, header, arrays=()):
    arrays = [np.ascontiguousarray(a) for a in arrays]
    header = dict(header, arrays=[[str(a.dtype), list(a.shape)] for a in arrays])
    f.write(json.dumps(header).encode() + b"\n")
    for a in arrays:
        f.write(memoryview(a).cast("B"))
    f.flush()


def _layout(header):
    """[(dtype, shape, bytes)] of the arrays a header announces (taken out of it)."""
    out = []
    for dtype, shape in header.pop("arrays"):
        dt = np.dtype(_DTYPES[dtype])
        out.append((dt, tuple(shape), int(np.prod(shape, dtype=np.int64)) * dt.itemsize))
    return out


def _recv(f):
    """The next message from the blocking file ``f`` (the child's end)."""
    line = f.readline()
    if not line:
        raise EOFError
    header = json.loads(line)
    arrays = []
    for dt, shape, n in _layout(header):
        buf = f.read(n)
        if len(buf) < n:
            raise EOFError
        arrays.append(np.frombuffer(buf, dt).reshape(shape))
    return header, arrays


class _Inbox:
    """The parent's end of the child's stdout, read without ever blocking: ``take()``
    is the next whole message, or None while it has not all come."""

    def __init__(self, fd):
        self.fd, self.buf, self.eof = fd, bytearray(), False
        os.set_blocking(fd, False)

    def take(self) -> tuple[dict, list[np.ndarray]] | None:
        while not self.eof:
            try:
                data = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                break
            self.buf += data
            self.eof = not data
        end = self.buf.find(b"\n")
        if end < 0:
            if self.eof:
                raise EOFError
            return None
        header = json.loads(self.buf[:end])
        layout = _layout(header)
        if len(self.buf) < end + 1 + sum(n for *_, n in layout):
            if self.eof:
                raise EOFError
            return None
        arrays, at = [], end + 1
        for dt, shape, n in layout:
            arrays.append(np.frombuffer(bytes(self.buf[at : at + n]), dt).reshape(shape))
            at += n
        del self.buf[:at]
        return header, arrays


def cache_dir() -> str:
    """The XLA compile cache: per user, keyed by TensorFlow version and CPU, so a
    cached program is never run on a CPU or TensorFlow it was not built for."""
    import hashlib
    import platform
    from importlib.metadata import PackageNotFoundError, version

    try:
        tf_version = version("tensorflow")
    except PackageNotFoundError:
        tf_version = "unknown"
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = [
                x
                for x in f.read().split("\n\n")[0].splitlines()
                if x.split(":")[0].strip() in ("vendor_id", "model name", "flags")
            ]
        cpu += "\n".join(lines)
    except OSError:
        cpu += platform.processor()
    key = hashlib.sha256(cpu.encode()).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "charrnn", "xla", f"tf-{tf_version}-{key}")


def _child():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent reports Ctrl-C
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints from TensorFlow cannot corrupt the protocol
    inp = sys.stdin.buffer
    try:
        header, arrays = _recv(inp)
    except EOFError:
        return
    try:
        time.sleep(float(os.environ.get(DELAY_ENV) or 0))
        try:
            path = cache_dir()
            os.makedirs(path, exist_ok=True)
            os.environ["TF_XLA_FLAGS"] = (
                os.environ.get("TF_XLA_FLAGS", "") + f" --tf_xla_persistent_cache_directory={path}"
            )
        except OSError:
            pass  # no cache: compile every time
        import tensorflow  # noqa: F401  (alone: charrnn.backend would add Keras)

        weights = Weights.from_arrays(header["cell"], dict(zip(header["names"], arrays)))
        engine = XLAEngine(
            weights, Options(**header["options"]), header["batch"], header["first_lane"]
        )
        engine.warm_up()
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
        _send(out, {"error": f"{type(e).__name__}: {e}"})
        return
    _send(out, {"ready": True})
    tok = states = None
    while True:
        try:
            header, arrays = _recv(inp)
        except EOFError:
            return
        forced = arrays[0]
        if header["sync"]:
            tok, states = arrays[1], list(arrays[2])
        try:
            t = time.perf_counter()
            outs = []
            for i in range(0, forced.shape[1], CHUNK):
                o, tok, states = engine.run(tok, states, header["t0"] + i, forced[:, i : i + CHUNK])
                outs.append(o)
            ids = np.concatenate(outs, axis=1) if outs else forced[:, :0]
        except Exception as e:  # noqa: BLE001
            _send(out, {"error": f"{type(e).__name__}: {e}"})
            return
        _send(out, {"op": "out", "seconds": time.perf_counter() - t}, [ids.astype(np.int32)])


class XLAProcess:
    """The parent's end: ``run(tok, states, t0, forced)`` like the in-process engines,
    returning (ids, last ids, None) -- the state stays in the child.  Or, never blocking:
    ``poll_ready()`` until True, ``send_run(...)``, then ``poll_run()`` until it gives the
    ids, selecting on ``fileno()`` in between."""

    def __init__(
        self,
        weights: Weights,
        options: Options,
        batch: int,
        first_lane: int = 0,
        verbose: bool = False,
    ):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "charrnn.generate.xla_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if verbose else subprocess.DEVNULL,
            start_new_session=True,
        )  # Ctrl-C and Ctrl-Z reach the parent only
        self._inbox = _Inbox(self.proc.stdout.fileno())
        named = weights.arrays()
        names, arrays = list(named), list(named.values())
        init = {
            "op": "init",
            "cell": weights.cell,
            "names": names,
            "batch": int(batch),
            "first_lane": int(first_lane),
            "options": asdict(options),
        }
        # Weights can be megabytes: write them while this process gets on with NumPy.
        self._writer = threading.Thread(target=self._write_init, args=(init, arrays), daemon=True)
        self._writer.start()
        self.ready = False
        self.synced = False
        self.running = False  # a run sent, its ids not yet taken
        self.seconds = 0.0  # the child's time computing the last run

    def _write_init(self, init, arrays):
        try:
            _send(self.proc.stdin, init, arrays)
        except OSError:
            pass  # the child is gone: its reply says so

    def fileno(self) -> int:
        """The pipe that becomes readable when the child has something to say."""
        return self._inbox.fd

    def _reply(self, wait):
        """The child's next message; None if it has not all come (and not ``wait``)."""
        try:
            while True:
                got = self._inbox.take()
                if got is not None or not wait:
                    break
                select.select([self._inbox.fd], [], [])
        except (EOFError, OSError, ValueError):
            status = self.proc.wait()
            raise CharrnnError(
                f"the TensorFlow engine process ended unexpectedly (status {status}); "
                "run with -v to see its messages"
            ) from None
        if got is not None and "error" in got[0]:
            raise CharrnnError(f"the TensorFlow engine failed: {got[0]['error']}")
        return got

    def poll_ready(self, wait: bool = False) -> bool:
        """Has TensorFlow imported and compiled?  (Never blocks unless ``wait``.)"""
        if not self.ready and self._reply(wait) is not None:
            self._writer.join()  # done: the child has read the weights
            self.ready = True
        return self.ready

    def wait_ready(self) -> None:
        self.poll_ready(wait=True)

    def send_run(
        self, tok: np.ndarray, states: list[np.ndarray], t0: int, forced: np.ndarray
    ) -> None:
        """Ask for the steps t0, t0 + 1, ... of ``forced`` (the child must be ready)."""
        assert self.ready and not self.running
        arrays = [forced]
        if not self.synced:
            arrays += [np.asarray(tok, np.int32), np.stack(states).astype(np.float32)]
        try:
            _send(self.proc.stdin, {"op": "run", "t0": int(t0), "sync": not self.synced}, arrays)
        except OSError:
            pass  # the reply says what happened
        self.synced = self.running = True

    def poll_run(self, wait: bool = False) -> np.ndarray | None:
        """The ids of the run sent, or None while the child computes (unless ``wait``)."""
        got = self._reply(wait)
        if got is None:
            return None
        self.running = False
        self.seconds = float(got[0].get("seconds", 0.0))
        return got[1][0]

    def run(
        self, tok: np.ndarray, states: list[np.ndarray], t0: int, forced: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, None]:
        self.wait_ready()
        self.send_run(tok, states, t0, forced)
        ids = self.poll_run(wait=True)
        return ids, ids[:, -1].copy(), None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


class ChildSlots:
    """At most ``cap`` TensorFlow children at once, shared by the samplers of a server
    (--max-children), handed out in the order asked.  ``take(who)`` is True when ``who``
    holds a slot (else it keeps its place in the queue and asks again later);
    ``give_back(who)`` when its child has ended or it no longer wants one.  Waiting for
    a slot changes no text: the handover to the child is at a fixed step, whenever the
    child comes."""

    def __init__(self, cap: int):
        self.cap = cap
        self.holders, self.queue = set(), []
        self.lock = threading.Lock()

    def take(self, who: object) -> bool:
        with self.lock:
            if who in self.holders:
                return True
            if who not in self.queue:
                self.queue.append(who)
            if self.queue.index(who) < self.cap - len(self.holders):
                self.queue.remove(who)
                self.holders.add(who)
                return True
            return False

    def give_back(self, who: object) -> None:
        with self.lock:
            self.holders.discard(who)
            if who in self.queue:
                self.queue.remove(who)

    @property
    def running(self) -> int:
        with self.lock:
            return len(self.holders)


# One child's peak resident memory, measured on the 2-core test machine with batch 64
# (benchmarks/RESULTS.md, "TensorFlow child memory"): 718-730 MB for models of up to
# 1.4 MB of weights -- TensorFlow itself (its libraries are shared pages: two children
# take less than twice this, so the figure is an upper bound) -- then up to 3.05 bytes
# per byte of float32 weights (the received copy, TensorFlow's, XLA's transient ones):
# 1,052 MB at 149 MB of weights, 1,571 MB at 276 MB, 1,997 MB at 586 MB.
CHILD_BASE = 800 * 2**20
CHILD_PER_WEIGHT_BYTE = 3.1


def child_memory(weights: Weights, batch: int, chunk_steps: int) -> int:
    """Bytes one child may hold at most: ``CHILD_BASE`` + ``CHILD_PER_WEIGHT_BYTE`` x the
    weights' bytes + the batch's states (4 copies) + one run's forced and returned ids
    (``chunk_steps`` steps, 4 copies on the two sides of the pipe)."""
    weight_bytes = sum(a.nbytes for a in weights.arrays().values())
    states = 4 * 4 * batch * weights.units * len(weights.layers) * weights.states_per_layer
    return int(
        CHILD_BASE + CHILD_PER_WEIGHT_BYTE * weight_bytes + states + 4 * 4 * batch * chunk_steps
    )


if __name__ == "__main__":
    _child()
